//! Where things are: the workspace, the built binaries; and unique names and
//! free loopback ports so that tests running side by side never share a
//! cgroup, a pin directory or a listener.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

/// The workspace root (the harness is always built in place).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The `interceptor` binary the tests run: `INTERCEPTOR_BIN` when set, else
/// `target/debug/interceptor` (built by `cargo xtask test` before the tests).
pub fn interceptor_bin() -> PathBuf {
    std::env::var_os("INTERCEPTOR_BIN").map_or_else(
        || target_dir().join("debug").join("interceptor"),
        PathBuf::from,
    )
}

/// A name no other test, test process or earlier run uses at the same time:
/// `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
