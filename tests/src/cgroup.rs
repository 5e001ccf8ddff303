//! A child cgroup v2 made for one test (or the demo, or the bench), and the
//! way to start a command inside it.
//!
//! The cgroup v2 mount is read from `/proc/self/mountinfo`: on these hosts it
//! is `/sys/fs/cgroup/unified` (hybrid), on a pure v2 host `/sys/fs/cgroup`.

use std::{
    fs, io,
    os::{
        fd::AsRawFd as _,
        unix::{fs::MetadataExt as _, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    paths,
    process::{self, Outcome},
};

/// Where cgroup v2 is mounted (the first `cgroup2` entry of
/// `/proc/self/mountinfo`).
pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <super opts>"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        if let Some(mount) = left.split_whitespace().nth(4) {
            return Ok(PathBuf::from(unescape_mountinfo(mount)));
        }
    }
    bail!("cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mountinfo)")
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        if let Some(c) = code {
            out.push(char::from(c));
            rest = &rest[i + 4..];
        } else {
            out.push('\\');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// A cgroup v2 directory this process created under the cgroup2 mount.
/// `Drop` kills what runs in it (only ever processes started here, by pid)
/// and removes it.
#[derive(Debug)]
pub struct TestCgroup {
    /// Absolute path, `<mount>/<name>`.
    path: PathBuf,
    /// Name relative to the mount (what the daemon's config may name).
    name: String,
}

impl TestCgroup {
    /// Creates `<mount>/interceptor-test-<pid>-<n>`.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_prefix("interceptor-test")
    }

    /// Creates `<mount>/<prefix>-<pid>-<n>`.
    pub fn with_prefix(prefix: &str) -> anyhow::Result<Self> {
        let name = paths::unique_name(prefix);
        let path = cgroup2_mount()?.join(&name);
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self { path, name })
    }

    /// Absolute path of the cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path relative to the cgroup2 mount.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup id (the directory's inode number on cgroup2), as
    /// `bpf_get_current_cgroup_id()` reports it.
    pub fn id(&self) -> anyhow::Result<u64> {
        Ok(fs::metadata(&self.path)?.ino())
    }

    /// Processes currently in the cgroup.
    pub fn procs(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Starts `cmd` inside this cgroup (see [`run_in_cgroup`]).
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        run_in_cgroup(self, cmd)
    }

    /// Runs `cmd` inside this cgroup with stdin from /dev/null, captures its
    /// output, and kills it after `timeout`.
    pub fn run(&self, cmd: &mut Command, timeout: Duration) -> anyhow::Result<Outcome> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command = process::describe(cmd);
        let child = self
            .spawn(cmd)
            .with_context(|| format!("starting `{command}` in {}", self.name))?;
        process::wait(child, command, timeout)
    }
}

/// Starts `cmd` as a member of `cg` from its first instruction: the child
/// writes itself into `cgroup.procs` between fork and exec, so even its first
/// `connect()` is judged by the programs attached to `cg`.
pub fn run_in_cgroup(cg: &TestCgroup, cmd: &mut Command) -> io::Result<Child> {
    // Opened by the (root) parent: since Linux 5.16 the migration permission
    // check uses the opener's credentials, so this works even when `cmd`
    // drops to another uid before exec.
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cg.path.join("cgroup.procs"))?;
    let fd = procs.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // write(2), which is async-signal-safe, on an fd that stays open until
    // `spawn` returns (`procs` lives to the end of this function). Writing
    // "0" moves the writing process itself (cgroup v2 `cgroup.procs`).
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let child = cmd.spawn();
    drop(procs);
    child
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Everything in here was started by this harness (a child
            // inherits its parent's cgroup), so it is ours to stop.
            let procs = self.procs();
            if procs.is_empty() {
                match fs::remove_dir(&self.path) {
                    Ok(()) => return,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                    Err(e) if Instant::now() >= deadline => {
                        eprintln!("warning: cannot remove cgroup {}: {e}", self.path.display());
                        return;
                    }
                    Err(_) => {}
                }
            } else if Instant::now() >= deadline {
                eprintln!(
                    "warning: cgroup {} still holds {procs:?}",
                    self.path.display()
                );
                return;
            }
            for pid in procs {
                process::kill(pid);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape_mountinfo(r"/a\040b\\c"), r"/a b\\c");
        assert_eq!(unescape_mountinfo("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }
}
