//! `cargo xtask setup`: installs what the build and the tests need on a
//! Debian bookworm host of this kind, skipping whatever is already there, so
//! that a second run is a quick no-op.
//!
//! - apt: LLVM 22 (for bpf-linker), PostgreSQL 15 server and client,
//!   pgbouncer (the bench's pass-through peer), python3 (a test client).
//! - rustup: a nightly toolchain with `rust-src` (the eBPF crate is built
//!   with `-Z build-std`); an existing nightly is kept as it is.
//! - `bpf-linker`, built against LLVM 22 (the nightly's LLVM).

use std::time::Instant;

use anyhow::bail;

use crate::sh::{self, cmd};

/// Debian packages the build and the tests need.
const APT_PACKAGES: [&str; 9] = [
    "llvm-22-dev",
    "libclang-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "postgresql-15",
    "postgresql-client-15",
    "pgbouncer",
    "python3",
];

/// Where LLVM 22's tools are; first on PATH while bpf-linker is built.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    apt()?;
    nightly()?;
    bpf_linker()?;
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
