//! Running commands the way a task wants them: echoed, output shown, a
//! failure is an error naming the command; and Ctrl-C turned into a flag so
//! that the task unwinds and its guards clean up.

use std::{
    ffi::OsStr,
    process::{Command, Stdio},
    sync::atomic::Ordering,
};

use anyhow::{Context as _, bail};
use interceptor_tests::{paths, process};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

extern "C" fn on_interrupt(_: libc::c_int) {
    process::INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM set [`process::INTERRUPTED`] instead of killing the task:
/// every wait in the harness checks it, so the task returns an error and the
/// `Drop` guards stop the daemon and PostgreSQL and remove cgroups and pins.
pub fn install_ctrl_c_handler() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; no other handler is installed for these signals.
        unsafe { sigaction(sig, &action) }.context("installing the Ctrl-C handler")?;
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one. Children inherit it:
/// the daemon holds two sockets per session, and the bench opens 1,000.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A command for `program`.
pub fn cmd(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// `cargo` (the one running us), in the workspace root.
pub fn cargo(args: &[&str]) -> Command {
    let mut c = cmd(
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        args,
    );
    c.current_dir(paths::workspace_root());
    c
}

/// Runs `c` with the terminal's stdout/stderr, echoing it first; non-zero
/// exit is an error.
pub fn run(c: &mut Command) -> anyhow::Result<()> {
    let line = process::describe(c);
    println!("+ {line}");
    let status = c
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting `{line}`"))?;
    process::check_interrupted()?;
    if !status.success() {
        bail!("`{line}` failed with {status}");
    }
    Ok(())
}

/// Whether `c` runs and exits 0 (output discarded).
pub fn succeeds(c: &mut Command) -> bool {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `c`'s stdout, if it runs and exits 0.
pub fn stdout_of(c: &mut Command) -> Option<String> {
    let out = c.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
