//! The maps shared with the daemon. Names and value types are the contract
//! with `interceptor/src/ebpf/maps.rs` (see `interceptor_common::map_names`).

use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap},
};
use interceptor_common::{ClientKey, Settings, SockRecord, TargetKey};

/// Where the proxy listens and how the programs are attached; one entry,
/// written by the daemon before the programs are attached.
#[map]
pub(crate) static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Redirected destinations: (port, v4-mapped address) with the port always in
/// the prefix. The value is the target's index in the config (informational).
#[map]
pub(crate) static TARGETS: LpmTrie<TargetKey, u32> = LpmTrie::with_max_entries(1024, 0);

/// `[ebpf] unix_allow`: the unix socket paths (108 bytes, zero-padded)
/// watched processes may connect to. Read by the raw `connect_unix`
/// program the daemon assembles (`interceptor/src/ebpf/unix.rs`), not by
/// the programs here; declared here so that it is made with the object.
#[map]
pub(crate) static UNIX_ALLOW: HashMap<[u8; 108], u8> = HashMap::with_max_entries(1024, 0);

/// Task mode: cgroup ids whose tasks (and their descendants') are intercepted.
#[map]
pub(crate) static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// Records by the client's local address, read (and deleted) by the proxy.
/// LRU: an evicted record makes the proxy refuse the connection, never pass
/// it. `max_entries` is set by the daemon from `ebpf.max_connections`.
#[map]
pub(crate) static CLIENTS: LruHashMap<ClientKey, SockRecord> =
    LruHashMap::with_max_entries(65_536, 0);

/// The record of each redirected socket, freed with the socket.
#[btf_map]
pub(crate) static SOCKS: SkStorage<SockRecord> = SkStorage::new();
