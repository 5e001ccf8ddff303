//! Kernel side, user half: load `interceptor-ebpf`, attach it to the watched
//! cgroups, pin links and maps in bpffs, and look up connect records.
//!
//! CONTRACT (used by `main.rs` and `proxy/`; keep these signatures):
//! - `Redirector::start(&Config) -> Result<Redirector, EbpfError>`
//! - `Redirector::take(&self, client: SocketAddr) -> Option<ConnectRecord>`
//!   (`client` = the accepted socket's peer address = the client's local address)
//! - `uninstall(pin_dir: &Path) -> Result<(), EbpfError>`
//! - `cgroup2_mount() -> Result<PathBuf, EbpfError>`

use std::net::SocketAddr;

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
