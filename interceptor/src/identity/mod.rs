//! Workload attestation: who is calling, read from the kernel's view of the
//! calling process, never from anything the process says about itself.
//!
//! - [`attest`] reads `/proc/<pid>` through a pidfd-pinned view, so that every
//!   fact in one [`Attestation`] belongs to the same process (pid reuse is
//!   detected by comparing the process start time before and after, and by the
//!   pidfd still naming a live process).
//! - [`pid_of_tcp_peer`] finds the process owning the client end of a loopback
//!   TCP connection made straight to the proxy port (not redirected).
//!
//! Reading `/proc` and hashing executables block: call these from
//! `tokio::task::spawn_blocking`.

mod container;
mod exe_hash;
mod peer;
mod procfs;

use std::path::PathBuf;

pub use container::container_id;
pub use peer::pid_of_tcp_peer;
use serde::Serialize;

/// Longest parent chain recorded; init is usually reached well before.
const MAX_PARENTS: usize = 16;

/// What the proxy knows about the calling process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attestation {
    /// Process id (thread group id).
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22):
    /// with `pid`, identifies the process across pid reuse.
    pub start_time: u64,
    /// Resolved executable path (`/proc/<pid>/exe`); ` (deleted)` kept if the
    /// file was replaced after exec.
    pub exe: PathBuf,
    /// SHA-256 of the executable that is running (read through
    /// `/proc/<pid>/exe`, so a replaced file does not fool it).
    pub exe_sha256: String,
    /// Command line, argument by argument.
    pub cmdline: Vec<String>,
    /// `comm` of the process.
    pub comm: String,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Name of the real uid, if it has one.
    pub user: Option<String>,
    /// Name of the real gid, if it has one.
    pub group: Option<String>,
    /// cgroup v2 path of the process (`0::` line of `/proc/<pid>/cgroup`).
    pub cgroup: String,
    /// Container id found in the cgroup path (docker, containerd, CRI-O, podman).
    pub container_id: Option<String>,
    /// Parent chain, nearest first, up to init or [`MAX_PARENTS`].
    pub parents: Vec<ParentProcess>,
}

/// One ancestor of the calling process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentProcess {
    /// Process id.
    pub pid: u32,
    /// Executable path, when readable.
    pub exe: Option<PathBuf>,
    /// `comm`.
    pub comm: String,
    /// Real uid.
    pub uid: u32,
}

/// Why a process could not be attested.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The process is gone (it exited between connect and attestation).
    #[error("process {0} has exited")]
    Gone(u32),
    /// The pid now names another process than the one that was first read.
    #[error("process {pid} was replaced while it was being attested (pid reuse)")]
    PidReused {
        /// The reused pid.
        pid: u32,
    },
    /// A `/proc` file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Attests process `pid`. Every field comes from the same process: the start
/// time is read before and after, and a pidfd opened first must still name a
/// live process at the end.
pub fn attest(pid: u32) -> Result<Attestation, IdentityError> {
    let pidfd = procfs::PidFd::open(pid)?;
    let stat = procfs::stat(pid)?;
    let status = procfs::status(pid)?;
    let exe = procfs::exe(pid)?;
    let exe_sha256 = exe_hash::sha256_of_exe(pid)?;
    // Arguments can hold secrets (`psql -c "ALTER ROLE ... PASSWORD '..'"`,
    // a connection string with `password=`): never kept in clear.
    let cmdline = procfs::cmdline(pid)?
        .iter()
        .map(|a| crate::audit::secrets::redact_arg(a))
        .collect();
    let cgroup = procfs::cgroup_v2(pid)?;
    let parents = parents(stat.ppid);
    // Re-check: same start time and the pidfd's process still alive means the
    // pid was not reused while we read.
    let after = procfs::stat(pid)?;
    if after.start_time != stat.start_time || !pidfd.alive() {
        return Err(IdentityError::PidReused { pid });
    }
    Ok(Attestation {
        pid,
        start_time: stat.start_time,
        exe,
        exe_sha256,
        cmdline,
        comm: stat.comm,
        uid: status.uid,
        euid: status.euid,
        gid: status.gid,
        egid: status.egid,
        user: user_name(status.uid),
        group: group_name(status.gid),
        container_id: container_id(&cgroup),
        cgroup,
        parents,
    })
}

fn parents(mut ppid: u32) -> Vec<ParentProcess> {
    let mut chain = Vec::new();
    while ppid > 0 && chain.len() < MAX_PARENTS {
        let Ok(stat) = procfs::stat(ppid) else { break };
        let uid = procfs::status(ppid).map(|s| s.uid).unwrap_or(u32::MAX);
        chain.push(ParentProcess {
            pid: ppid,
            exe: procfs::exe(ppid).ok(),
            comm: stat.comm,
            uid,
        });
        ppid = stat.ppid;
    }
    chain
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attests_own_process() {
        let me = std::process::id();
        let a = attest(me).unwrap();
        assert_eq!(a.pid, me);
        assert_eq!(a.exe, std::env::current_exe().unwrap());
        assert_eq!(a.exe_sha256.len(), 64);
        assert_eq!(a.uid, nix::unistd::getuid().as_raw());
        assert!(!a.cmdline.is_empty());
        assert!(a.cgroup.starts_with('/'), "{}", a.cgroup);
        assert!(!a.parents.is_empty());
        assert_eq!(a.parents[0].pid, nix::unistd::getppid().as_raw() as u32);
    }

    #[test]
    fn exe_hash_matches_file_contents() {
        use sha2::Digest;
        let me = std::process::id();
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let want = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(attest(me).unwrap().exe_sha256, want);
        // Second call comes from the cache and must agree.
        assert_eq!(attest(me).unwrap().exe_sha256, want);
    }

    #[test]
    fn exited_process_is_refused() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(attest(pid).is_err());
    }
}
