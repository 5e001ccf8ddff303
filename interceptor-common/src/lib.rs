//! `#[repr(C)]` types shared by the eBPF programs and the daemon.
//!
//! Every type here crosses the kernel/user boundary as raw bytes through a BPF
//! map, so each is `#[repr(C)]`, has explicit padding fields (zeroed, so equal
//! keys hash equally) and is `Copy`. With the `user` feature they implement
//! `aya::Pod`.
#![no_std]

/// `AF_INET`, as the kernel spells it in `bpf_sock_addr.user_family`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Names of the maps in the eBPF object, as the loader looks them up.
pub mod map_names {
    /// [`crate::Settings`], one entry: where the proxy listens, attach mode.
    pub const SETTINGS: &str = "SETTINGS";
    /// LPM trie of [`crate::TargetKey`]: the destinations that are redirected.
    pub const TARGETS: &str = "TARGETS";
    /// Hash of watched cgroup ids (task mode).
    pub const WATCHED: &str = "WATCHED";
    /// Hash of unix socket paths (108 bytes, zero-padded) watched processes
    /// may connect to (`[ebpf] unix_allow`).
    pub const UNIX_ALLOW: &str = "UNIX_ALLOW";
    /// Socket-local storage of [`crate::SockRecord`] (connect -> sock_ops,
    /// getpeername).
    pub const SOCKS: &str = "SOCKS";
    /// LRU hash [`crate::ClientKey`] -> [`crate::SockRecord`]: what the proxy reads.
    pub const CLIENTS: &str = "CLIENTS";
}

/// Program names in the eBPF object (its exported function names).
pub mod prog_names {
    /// `cgroup/connect4`.
    pub const CONNECT4: &str = "connect4";
    /// `cgroup/connect6`.
    pub const CONNECT6: &str = "connect6";
    /// `cgroup/getpeername4`.
    pub const GETPEERNAME4: &str = "getpeername4";
    /// `cgroup/getpeername6`.
    pub const GETPEERNAME6: &str = "getpeername6";
    /// `sockops` (section name; the symbol cannot be the same).
    pub const SOCK_OPS: &str = "sock_ops";
}

/// [`Settings::flags`]: an IPv6 proxy listener is configured; without it a
/// native IPv6 connect to a target is refused.
pub const SETTINGS_HAS_PROXY6: u32 = 1;
/// [`Settings::flags`]: task mode; a connect is intercepted only when the
/// calling task's cgroup (or one of its ancestors) is in `WATCHED`.
pub const SETTINGS_TASK_MODE: u32 = 2;

/// A `TARGETS` value that refuses the connect (EPERM) instead of redirecting
/// it: `[ebpf] refuse_ports`, the ports of databases, poolers and forwarders
/// that are not a target's.
pub const TARGET_REFUSE: u32 = u32::MAX;

/// How deep the task-mode check walks the calling task's cgroup ancestry
/// (levels below the root). Deeper cgroups are judged by their first
/// `MAX_CGROUP_LEVEL` ancestors only.
pub const MAX_CGROUP_LEVEL: i32 = 32;

/// The daemon's settings, one entry of the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// IPv4 proxy listener address, network byte order (as `user_ip4`).
    pub proxy4_addr: [u8; 4],
    /// IPv4 proxy listener port, host byte order.
    pub proxy4_port: u16,
    /// IPv6 proxy listener port, host byte order (valid with [`SETTINGS_HAS_PROXY6`]).
    pub proxy6_port: u16,
    /// IPv6 proxy listener address, network byte order.
    pub proxy6_addr: [u8; 16],
    /// `SETTINGS_*` bits.
    pub flags: u32,
}

/// Data of a `TARGETS` LPM-trie key: port first, so a prefix of 16 bits means
/// "this port, any address" and `16 + n` means "this port, first n bits of the
/// (v4-mapped) address".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetKey {
    /// Destination port, network byte order.
    pub port: [u8; 2],
    /// Destination address: IPv6, or IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub addr: [u8; 16],
}

/// Bits of a [`TargetKey`]: the LPM trie's `max_prefixlen`.
pub const TARGET_KEY_BITS: u32 = 8 * 18;

/// Key of `CLIENTS`: the client socket's local address, which is the peer
/// address of the socket the proxy accepts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// IPv6, or IPv4 as v4-mapped IPv6.
    pub addr: [u8; 16],
    /// Local port, host byte order.
    pub port: u16,
    /// Always zero.
    pub pad: u16,
}

/// What the connect hook records for a redirected socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRecord {
    /// Original destination address: IPv6, or IPv4 as v4-mapped IPv6.
    pub orig_addr: [u8; 16],
    /// Original destination port, host byte order.
    pub orig_port: u16,
    /// Family of the caller's socket ([`AF_INET`] or [`AF_INET6`]).
    pub family: u16,
    /// Thread id of the caller.
    pub pid: u32,
    /// Thread group id (process id) of the caller.
    pub tgid: u32,
    /// Real uid of the caller.
    pub uid: u32,
    /// Real gid of the caller.
    pub gid: u32,
    /// Always zero.
    pub pad: u32,
    /// cgroup v2 id of the caller at connect time.
    pub cgroup_id: u64,
    /// Socket cookie of the client socket (set by sock_ops; lets the close
    /// hook delete only its own `CLIENTS` entry).
    pub cookie: u64,
    /// `comm` of the calling thread, NUL-padded.
    pub comm: [u8; 16],
}

impl SockRecord {
    /// An all-zero record (the programs fill it field by field).
    pub const fn zeroed() -> Self {
        Self {
            orig_addr: [0; 16],
            orig_port: 0,
            family: 0,
            pid: 0,
            tgid: 0,
            uid: 0,
            gid: 0,
            pad: 0,
            cgroup_id: 0,
            cookie: 0,
            comm: [0; 16],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all four are `#[repr(C)]`, `Copy`, made only of integers and
    // integer arrays, with every padding byte an explicit field: any bit
    // pattern is a valid value and there is no uninitialised byte.
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::TargetKey {}
    unsafe impl aya::Pod for super::ClientKey {}
    unsafe impl aya::Pod for super::SockRecord {}
}

// The layouts are part of the kernel/user contract: fail the build if a field
// change moves them.
const _: () = assert!(core::mem::size_of::<Settings>() == 28);
const _: () = assert!(core::mem::size_of::<TargetKey>() == 18);
const _: () = assert!(core::mem::size_of::<ClientKey>() == 20);
const _: () = assert!(core::mem::size_of::<SockRecord>() == 72);
