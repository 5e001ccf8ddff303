//! The one error type of the eBPF layer.

use std::{io, path::PathBuf};

/// Why the kernel side could not be set up or torn down. Each message says
/// what to change where there is something to change.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// No cgroup v2 hierarchy is mounted.
    #[error(
        "no cgroup2 filesystem in /proc/self/mountinfo (fix: mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`)"
    )]
    NoCgroup2,
    /// A configured cgroup does not exist.
    #[error(
        "cgroup {path} does not exist (fix: create it with `mkdir {path}` or correct ebpf.{field})"
    )]
    CgroupMissing {
        /// The resolved path.
        path: PathBuf,
        /// `cgroups` or `attach_to`.
        field: &'static str,
    },
    /// A configured cgroup path is outside the cgroup v2 hierarchy.
    #[error(
        "{path} is not inside the cgroup v2 mount {mount} (fix: give a path relative to {mount} or below it)"
    )]
    CgroupOutside {
        /// The configured path.
        path: PathBuf,
        /// The cgroup v2 mount.
        mount: PathBuf,
    },
    /// Watching this cgroup would intercept the daemon itself.
    #[error(
        "the daemon runs in cgroup {own}, which is watched through {watched}: its upstream connections would loop (fix: run the daemon outside the watched cgroups)"
    )]
    DaemonWatched {
        /// The daemon's cgroup.
        own: PathBuf,
        /// The watched cgroup or attach point covering it.
        watched: PathBuf,
    },
    /// Task mode: a watched cgroup is not below `attach_to`.
    #[error(
        "watched cgroup {cgroup} is not below ebpf.attach_to {attach_to}: sockets created there would not be seen (fix: choose an attach_to that contains every watched cgroup)"
    )]
    TaskOutsideAttach {
        /// The watched cgroup.
        cgroup: PathBuf,
        /// The attach point.
        attach_to: PathBuf,
    },
    /// The pin directory is not on a bpf filesystem and one could not be mounted.
    #[error(
        "{path} is not on a bpf filesystem (fix: `mount -t bpf bpf /sys/fs/bpf` and keep ebpf.pin_dir below it)"
    )]
    NotBpffs {
        /// The pin directory.
        path: PathBuf,
    },
    /// The pin directory must be a directory of its own, not the bpffs root.
    #[error(
        "ebpf.pin_dir {0} is the root of a bpf filesystem (fix: use a directory of its own, e.g. /sys/fs/bpf/interceptor)"
    )]
    PinDirIsRoot(PathBuf),
    /// A file system or syscall step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// aya could not load the eBPF object.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded (the verifier said no, or it is missing).
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// aya's error (with the verifier log).
        source: aya::programs::ProgramError,
    },
    /// A map is missing or could not be read or written.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// aya's error.
        source: aya::maps::MapError,
    },
    /// The object lacks a program or map this code expects.
    #[error("the eBPF object has no {0} (stale build?)")]
    Missing(&'static str),
    /// The kernel's BTF lacks something the unix-socket program needs.
    #[error("kernel BTF: {0}")]
    Btf(String),
    /// The unix-socket program could not be assembled.
    #[error("assembling the connect_unix program: {0}")]
    UnixProgram(String),
    /// The kernel refused the unix-socket program.
    #[error("loading the connect_unix program: {error}\n{log}")]
    LoadUnix {
        /// The `bpf()` error.
        error: io::Error,
        /// The tail of the verifier log.
        log: String,
    },
    /// `proxy.unix_socket` does not fit in `sockaddr_un.sun_path`.
    #[error("proxy.unix_socket {0} must be a non-empty path shorter than 108 bytes")]
    UnixSocketPath(PathBuf),
    /// More targets than the kernel map holds.
    #[error("{0} target address ranges configured; at most {1} are supported")]
    TooManyTargets(usize, u32),
    /// Attaching a program to a cgroup failed.
    #[error("attaching {hook} to {cgroup}: {source}")]
    Attach {
        /// Hook name.
        hook: &'static str,
        /// The cgroup.
        cgroup: PathBuf,
        /// The `bpf()` error.
        source: io::Error,
    },
}

impl EbpfError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
