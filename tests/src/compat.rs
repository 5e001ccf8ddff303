//! Where the compatibility suite's real drivers live (installed by
//! `cargo xtask setup`, used by `tests/tests/e2e_compat.rs`).
//!
//! Both caches sit under [`CACHE_ROOT`], outside the work tree so a fresh
//! clone (CI) can make them and world-readable so clients running as
//! `nobody` load them. Each directory is named by a hash of what it was
//! built from (the pinned `requirements.txt`, the npm lockfile), so a
//! changed pin builds a new one and an unchanged one is a no-op.

use std::{fs, path::PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::paths;

/// Root of the caches.
pub const CACHE_ROOT: &str = "/var/cache/interceptor-tests";

/// Debian's pgjdbc (`libpostgresql-jdbc-java`).
pub const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Debian's Python (the venv's base; `python3-venv`), not a pyenv shim.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// `tests/compat/` in the work tree: the scenario scripts.
pub fn scripts_dir() -> PathBuf {
    paths::workspace_root().join("tests").join("compat")
}

/// The pinned Python requirements.
pub fn requirements() -> PathBuf {
    scripts_dir().join("python").join("requirements.txt")
}

/// The node project (package.json + package-lock.json).
pub fn node_project() -> PathBuf {
    scripts_dir().join("node")
}

fn short_hash(parts: &[PathBuf]) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(hex::encode(&h.finalize()[..6]))
}

/// The venv for the current `requirements.txt`.
pub fn venv_dir() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(CACHE_ROOT).join(format!("venv-{}", short_hash(&[requirements()])?)))
}

/// The `node_modules` parent for the current lockfile.
pub fn node_dir() -> anyhow::Result<PathBuf> {
    let p = node_project();
    Ok(PathBuf::from(CACHE_ROOT).join(format!(
        "node-{}",
        short_hash(&[p.join("package.json"), p.join("package-lock.json")])?
    )))
}

/// The venv's interpreter.
pub fn python() -> anyhow::Result<PathBuf> {
    Ok(venv_dir()?.join("bin").join("python"))
}

/// Marker written last by setup: the cache is complete.
pub const DONE_MARKER: &str = ".complete";
