//! Reading `/proc/<pid>`: the fields attestation needs, parsed defensively
//! (a process name may hold spaces and parentheses).

use std::{
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use super::IdentityError;

fn proc_err(path: impl Into<PathBuf>, e: impl ToString) -> IdentityError {
    IdentityError::Proc {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn read(pid: u32, file: &str) -> Result<String, IdentityError> {
    let path = format!("/proc/{pid}/{file}");
    fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IdentityError::Gone(pid),
        _ => proc_err(path, e),
    })
}

/// Fields of `/proc/<pid>/stat`.
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. `comm` is everything between the first `(` and
/// the last `)`, since the name itself may contain both (proc(5)).
pub fn stat(pid: u32) -> Result<Stat, IdentityError> {
    let text = read(pid, "stat")?;
    parse_stat(&text).ok_or_else(|| proc_err(format!("/proc/{pid}/stat"), "unexpected format"))
}

fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields after comm start at field 3 (state); ppid is field 4, starttime 22.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        start_time,
    })
}

/// Real and effective ids from `/proc/<pid>/status`.
pub struct Status {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
}

pub fn status(pid: u32) -> Result<Status, IdentityError> {
    let text = read(pid, "status")?;
    let ids = |key: &str| -> Option<(u32, u32)> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let mut it = line[key.len()..].split_whitespace().map(str::parse::<u32>);
        Some((it.next()?.ok()?, it.next()?.ok()?))
    };
    let bad = || proc_err(format!("/proc/{pid}/status"), "no Uid:/Gid: lines");
    let (uid, euid) = ids("Uid:").ok_or_else(bad)?;
    let (gid, egid) = ids("Gid:").ok_or_else(bad)?;
    Ok(Status {
        uid,
        euid,
        gid,
        egid,
    })
}

pub fn exe(pid: u32) -> Result<PathBuf, IdentityError> {
    let path = format!("/proc/{pid}/exe");
    fs::read_link(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IdentityError::Gone(pid),
        _ => proc_err(path, e),
    })
}

pub fn cmdline(pid: u32) -> Result<Vec<String>, IdentityError> {
    let path = format!("/proc/{pid}/cmdline");
    let bytes = fs::read(&path).map_err(|e| proc_err(&path, e))?;
    Ok(bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// The cgroup v2 path of the process (the `0::` line).
pub fn cgroup_v2(pid: u32) -> Result<String, IdentityError> {
    let text = read(pid, "cgroup")?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .ok_or_else(|| proc_err(format!("/proc/{pid}/cgroup"), "no cgroup v2 (0::) line"))
}

/// A pidfd: a handle on one process that does not move to a new process when
/// the pid is reused (pidfd_open(2), Linux 5.3).
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: u32) -> Result<Self, IdentityError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
        // no memory is passed to the kernel.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(IdentityError::Gone(pid));
        }
        // SAFETY: the syscall returned a fresh fd that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Whether the process the pidfd was opened on is still running.
    pub fn alive(&self) -> bool {
        // SAFETY: signal 0 only checks deliverability; the fd is owned by self.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        r == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_parens_in_comm() {
        let s =
            parse_stat("42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0")
                .unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.ppid, 7);
        assert_eq!(s.start_time, 12345);
    }
}
