//! `cargo xtask setup`: installs what the build and the tests need on a
//! Debian bookworm host of this kind, skipping whatever is already there, so
//! that a second run is a quick no-op.
//!
//! - apt: LLVM 22 (for bpf-linker), PostgreSQL 15 server and client,
//!   pgbouncer (the bench's pass-through peer), python3 (a test client).
//! - rustup: a nightly toolchain with `rust-src` (the eBPF crate is built
//!   with `-Z build-std`); an existing nightly is kept as it is.
//! - `bpf-linker`, built against LLVM 22 (the nightly's LLVM).
//! - The compatibility suite's real drivers (`tests/tests/e2e_compat.rs`):
//!   a Python venv from `tests/compat/python/requirements.txt` (psycopg2,
//!   psycopg 3, asyncpg, SQLAlchemy, Alembic, Django), node-postgres from
//!   `tests/compat/node/package-lock.json` (`npm ci`), and pgjdbc from
//!   Debian. Each cache is named by the hash of its pins (see
//!   `interceptor_tests::compat`) and marked complete last, so an
//!   interrupted build is redone and a second run is a no-op.

use std::time::Instant;

use anyhow::bail;

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path};

use anyhow::Context as _;
use interceptor_tests::compat;

use crate::sh::{self, cmd};

/// Debian packages the build and the tests need.
const APT_PACKAGES: [&str; 12] = [
    "llvm-22-dev",
    "libclang-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "postgresql-15",
    "postgresql-client-15",
    "pgbouncer",
    "python3",
    // The compatibility suite: Debian's Python with venv (psycopg2, Django ...
    // come from PyPI into a venv) and pgjdbc (run by the JDK of the image).
    "python3-venv",
    "libpostgresql-jdbc-java",
    // A real scraper for the metrics test.
    "prometheus",
];

/// Where LLVM 22's tools are; first on PATH while bpf-linker is built.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    apt()?;
    nightly()?;
    bpf_linker()?;
    cargo_fuzz()?;
    compat_drivers()?;
    println!("setup: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn installed(package: &str) -> bool {
    sh::stdout_of(&mut cmd("dpkg-query", &["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("setup: apt packages present ({})", APT_PACKAGES.join(" "));
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("missing packages {missing:?}: run `cargo xtask setup` as root to install them");
    }
    println!("setup: installing {}", missing.join(" "));
    sh::run(cmd("apt-get", &["update"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    let mut install = cmd("apt-get", &["install", "-y"]);
    install
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    sh::run(&mut install)
}

fn nightly() -> anyhow::Result<()> {
    if sh::succeeds(&mut cmd("rustc", &["+nightly", "--version"])) {
        println!("setup: nightly toolchain present");
    } else {
        println!("setup: installing the nightly toolchain");
        sh::run(&mut cmd(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        ))?;
    }
    let components = sh::stdout_of(&mut cmd(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    ))
    .unwrap_or_default();
    if components.lines().any(|l| l.trim().starts_with("rust-src")) {
        println!("setup: nightly rust-src present");
        Ok(())
    } else {
        sh::run(&mut cmd(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        ))
    }
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(v) = sh::stdout_of(&mut cmd("bpf-linker", &["--version"])) {
        println!("setup: {} present", v.trim());
        return Ok(());
    }
    println!("setup: building bpf-linker against LLVM 22 (a few minutes)");
    let path = std::env::var("PATH").unwrap_or_default();
    sh::run(
        sh::cargo(&[
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("PATH", format!("{LLVM_BIN}:{path}")),
    )
}

/// cargo-fuzz, for `cargo xtask fuzz` and the fuzz smoke of `cargo xtask test`.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    if let Some(v) = sh::stdout_of(&mut cmd("cargo", &["fuzz", "--version"])) {
        println!("setup: {} present", v.trim());
        return Ok(());
    }
    println!("setup: installing cargo-fuzz");
    sh::run(&mut sh::cargo(&["install", "cargo-fuzz", "--locked"]))
}

/// The venv and node_modules of the compatibility suite (pgjdbc is an apt
/// package above).
fn compat_drivers() -> anyhow::Result<()> {
    let root = Path::new(compat::CACHE_ROOT);
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    // The clients of the suite run as `nobody` and load from here.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;

    let venv = compat::venv_dir()?;
    if venv.join(compat::DONE_MARKER).exists() {
        println!("setup: compat venv present ({})", venv.display());
    } else {
        let started = Instant::now();
        println!("setup: building the compat venv {}", venv.display());
        // Built in place (a venv's launchers name their own path); the
        // marker, written last, says it is complete, and a directory without
        // it is an interrupted build, removed first.
        if venv.exists() {
            fs::remove_dir_all(&venv)?;
        }
        sh::run(cmd(compat::SYSTEM_PYTHON, &["-m", "venv"]).arg(&venv))?;
        sh::run(
            cmd(
                venv.join("bin").join("python"),
                &[
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-input",
                    "-r",
                ],
            )
            .arg(compat::requirements()),
        )?;
        fs::set_permissions(&venv, fs::Permissions::from_mode(0o755))?;
        fs::write(venv.join(compat::DONE_MARKER), "")?;
        println!(
            "setup: compat venv built in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }

    let node = compat::node_dir()?;
    if node.join(compat::DONE_MARKER).exists() {
        println!("setup: compat node_modules present ({})", node.display());
        return Ok(());
    }
    if !sh::succeeds(&mut cmd("npm", &["--version"])) {
        bail!("npm is missing (node-postgres of the compat suite): install Debian's `nodejs npm`");
    }
    let started = Instant::now();
    println!("setup: installing node-postgres into {}", node.display());
    let scratch = scratch_dir(&node)?;
    for f in ["package.json", "package-lock.json"] {
        fs::copy(compat::node_project().join(f), scratch.join(f))?;
    }
    sh::run(
        cmd(
            "npm",
            &["ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        )
        .current_dir(&scratch),
    )?;
    finish(&scratch, &node)?;
    fs::write(node.join(compat::DONE_MARKER), "")?;
    println!(
        "setup: node-postgres installed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A fresh `<dir>.partial` (a leftover of an interrupted run is removed).
fn scratch_dir(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let scratch = dir.with_extension("partial");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    fs::create_dir_all(&scratch)?;
    Ok(scratch)
}

/// Moves a completed scratch directory to its final name, world-readable.
fn finish(scratch: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::rename(scratch, dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}
