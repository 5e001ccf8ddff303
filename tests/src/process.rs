//! Running commands: as another user, with a deadline, and a process-wide
//! "interrupted" flag (set by `cargo xtask`'s Ctrl-C handler) that every long
//! wait here checks, so the caller unwinds and its guards clean up.

use std::{
    fmt,
    io::Read,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sys::signal::Signal, unistd::Pid};

/// Set when the user pressed Ctrl-C; waits give up with an error.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Fails when Ctrl-C was pressed.
pub fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps for `d`, waking early (with an error) on Ctrl-C.
pub fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// Makes `cmd` run as the local user `name` (uid, primary gid, no
/// supplementary groups: std drops them when the parent is root), with that
/// user's `HOME`/`USER`/`LOGNAME`.
pub fn as_user<'a>(cmd: &'a mut Command, name: &str) -> anyhow::Result<&'a mut Command> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up user {name}"))?
        .with_context(|| format!("no local user `{name}`"))?;
    Ok(cmd
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .env("HOME", &user.dir)
        .env("USER", name)
        .env("LOGNAME", name))
}

/// uid and gid of the local user `name`.
pub fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let user =
        nix::unistd::User::from_name(name)?.with_context(|| format!("no local user `{name}`"))?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

/// Sends SIGKILL to `pid` (a process this harness started).
pub fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Sends SIGTERM to `pid` (a process this harness started).
pub fn terminate(pid: u32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
}

/// What a finished command did, as text.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, for messages.
    pub command: String,
    /// Its pid (to match it against the daemon's attestation).
    pub pid: u32,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Outcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// This outcome as an error unless it succeeded.
    pub fn ok(self) -> anyhow::Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            bail!("{self}")
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "unknown status".to_owned(),
        };
        write!(
            f,
            "`{}` (pid {}) ended with {status}\n--- stdout\n{}--- stderr\n{}---",
            self.command, self.pid, self.stdout, self.stderr
        )
    }
}

/// A printable form of `cmd` for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` (stdin from /dev/null, output captured) and waits at most
/// `timeout`; on timeout the process is killed and that is an error.
pub fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = describe(cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting `{command}`"))?;
    wait(child, command, timeout)
}

/// Waits for a child started with piped stdout/stderr, killing it (by pid)
/// after `timeout`.
pub fn wait(mut child: Child, command: String, timeout: Duration) -> anyhow::Result<Outcome> {
    let pid = child.id();
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read_all(child.stdout.take().map(|s| Box::new(s) as _));
    let err = read_all(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let (mut interrupted, mut timed_out) = (false, false);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        interrupted = INTERRUPTED.load(Ordering::Relaxed);
        timed_out = Instant::now() >= deadline;
        if interrupted || timed_out {
            kill(pid);
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let outcome = Outcome {
        command,
        pid,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    if interrupted {
        bail!("interrupted while running {}", outcome.command);
    }
    if timed_out {
        bail!("timed out after {timeout:?}: {outcome}");
    }
    Ok(outcome)
}
