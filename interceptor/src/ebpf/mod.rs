//! Kernel side, user half: load `interceptor-ebpf`, attach it to the watched
//! cgroups, pin links and maps in bpffs, and look up connect records.
//!
//! CONTRACT (used by `main.rs` and `proxy/`; keep these signatures):
//! - `Redirector::start(&Config) -> Result<Redirector, EbpfError>`
//! - `Redirector::take(&self, client: SocketAddr) -> Option<ConnectRecord>`
//!   (`client` = the accepted socket's peer address = the client's local address)
//! - `uninstall(pin_dir: &Path) -> Result<(), EbpfError>`
//! - `cgroup2_mount() -> Result<PathBuf, EbpfError>`
//!
//! # What the kernel does
//!
//! - `cgroup/connect4`, `cgroup/connect6`: a TCP connect to a target
//!   (port + optional address ranges, IPv4-mapped IPv6 matched as IPv4) is
//!   recorded with its caller in socket storage and rewritten to the proxy
//!   listener (`::ffff:<v4 listener>` for v4-mapped destinations; native IPv6
//!   goes to `proxy.listen6` or is refused). No record, no connect (`EPERM`).
//!   The proxy's own listeners are never redirected.
//! - `sockops`: on the active open, the record is published in `CLIENTS`
//!   under the client's local address, which [`Redirector::take`] reads; it
//!   is dropped again when that socket closes.
//! - `cgroup/getpeername4/6`: the client sees the address it asked for.
//! - `cgroup/connect_unix` (raw instructions, `unix.rs`): a connect to a path
//!   containing `.s.PGSQL.` is rewritten to `proxy.unix_socket`
//!   (`ebpf.unix_sockets = "redirect"` and the socket configured) or refused.
//!
//! # Attach modes
//!
//! - `cgroup`: the programs are attached to each watched cgroup and run for
//!   sockets *created* in it or below it (cgroup programs follow the socket's
//!   cgroup, fixed at `socket()`). A socket created before its process moved
//!   into a watched cgroup runs the programs of the cgroup it was created in.
//! - `task`: the programs are attached to `attach_to` and intercept a connect
//!   when the *calling task's* current cgroup, or an ancestor (up to
//!   `MAX_CGROUP_LEVEL` levels), is watched. This also catches sockets created
//!   before the task moved into a watched cgroup, as long as they were
//!   created somewhere below `attach_to`; sockets created outside `attach_to`
//!   run no program of ours at all. The unix-socket check follows the same rule.
//!
//! # Failing closed
//!
//! Links are pinned in `ebpf.pin_dir` (bpffs, mounted at `/sys/fs/bpf` if
//! needed): when the daemon is gone, watched connects to targets still go to
//! the closed proxy port and fail. A restart updates the pinned links in
//! place, reuses the pinned record maps and rewrites the settings.
//!
//! # Layout
//!
//! - `cgroup`: the cgroup v2 mount, resolving configured cgroups.
//! - `load`: [`Redirector::start`].
//! - `maps`: map contents and conversions.
//! - `pin`: bpffs, pinned links, [`uninstall`].
//! - `unix`, `insn`, `btf`: the raw `connect_unix` program, its assembler and
//!   the kernel BTF lookups it needs.
//! - `sys`: the raw `bpf()` calls (the only `unsafe` code here).

mod btf;
mod cgroup;
mod error;
mod insn;
mod load;
mod maps;
mod pin;
mod sys;
pub(crate) mod unix;

/// Entries of the `UNIX_ALLOW` map (`[ebpf] unix_allow`).
pub const MAX_UNIX_ALLOW: usize = 1024;

use std::{
    net::SocketAddr,
    sync::{Mutex, PoisonError},
};

use aya::maps::{HashMap, MapData};
use interceptor_common::{ClientKey, SockRecord};

pub use cgroup::cgroup2_mount;
pub use error::EbpfError;
pub use load::attached_counts;
pub use pin::uninstall;

use crate::config::Config;

/// What the kernel recorded when a watched process connected: the original
/// destination and the caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectRecord {
    /// Where the client meant to go.
    pub orig_dst: SocketAddr,
    /// Thread id of the caller.
    pub pid: u32,
    /// Process id (thread group id) of the caller.
    pub tgid: u32,
    /// Real uid of the caller.
    pub uid: u32,
    /// Real gid of the caller.
    pub gid: u32,
    /// cgroup v2 id of the caller at connect time.
    pub cgroup_id: u64,
    /// `comm` of the calling thread at connect time.
    pub comm: String,
}

/// The attached kernel programs, from the daemon's side: a handle on the
/// records of redirected connections.
pub struct Redirector {
    /// `CLIENTS`: records by client address. A `Mutex` because aya's map
    /// handle needs `&mut` to delete; lookups are two short syscalls.
    clients: Mutex<HashMap<MapData, ClientKey, SockRecord>>,
}

impl Redirector {
    /// Loads the programs, fills their maps from `config` and attaches them
    /// to the watched cgroups through pinned links (idempotent: a second
    /// start replaces the programs of the existing links).
    pub fn start(config: &Config) -> Result<Self, EbpfError> {
        load::start(config)
    }

    /// The record of the redirected connection whose client address (the
    /// accepted socket's peer address) is `client`, removed so it is used
    /// once. `None`: not a redirected connection, or its record was lost
    /// (closed, evicted) — the caller refuses it either way unless it was
    /// meant to reach the proxy directly.
    pub fn take(&self, client: SocketAddr) -> Option<ConnectRecord> {
        let key = maps::client_key(client);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let raw = clients.get(&key, 0).ok()?;
        // If the delete fails the close hook still drops the entry.
        let _ = clients.remove(&key);
        Some(maps::connect_record(&raw))
    }
}

// Shared by the proxy's tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Redirector>();
};
