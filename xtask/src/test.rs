//! `cargo xtask test`: setup, build, then every test: the unit tests of every
//! crate, then the privileged end-to-end tests (`tests/`), which load eBPF
//! into the running kernel, create cgroups and start PostgreSQL clusters.
//!
//! The end-to-end tests run side by side (`--test-threads`, default 2): each
//! has its own cgroup, pin directory, proxy port and cluster, and the harness
//! starts one daemon at a time.

use std::time::Instant;

use anyhow::{Context as _, bail};
use interceptor_tests::{cleanup, paths};

use crate::{setup, sh};

#[derive(clap::Args)]
pub struct Args {
    /// Parallel end-to-end tests.
    #[arg(long, default_value_t = 2)]
    test_threads: usize,
    /// Only run tests whose name contains this (passed to the test binaries);
    /// skips the fuzz smoke.
    filter: Option<String>,
    /// Seconds each fuzz target runs in the smoke.
    #[arg(long, default_value_t = 15)]
    fuzz_secs: u64,
    /// Skip the fuzz smoke.
    #[arg(long)]
    no_fuzz: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the end-to-end tests load eBPF programs and create cgroups: run `cargo xtask test` as root"
        );
    }
    setup::run()?;

    // The binaries the end-to-end tests start: the daemon and the Rust client.
    sh::run(&mut sh::cargo(&[
        "build",
        "-p",
        "interceptor",
        "-p",
        "interceptor-tests",
        "--bins",
    ]))
    .context("building interceptor")?;
    let bin = paths::interceptor_bin();
    for stale in cleanup::remove_stale(&bin) {
        println!("test: removed leftover {stale}");
    }
    let built = Instant::now();

    let filter: Vec<&str> = args.filter.as_deref().into_iter().collect();
    // Unit tests (and any integration test outside tests/) of every crate.
    // interceptor-ebpf is built for the bpf target by interceptor's build
    // script and has no host tests.
    let mut unit = sh::cargo(&[
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "interceptor-ebpf",
        "--exclude",
        "interceptor-tests",
        "--",
    ]);
    unit.args(&filter);
    // Both suites run even when the first fails: one failure must not hide another.
    let unit_result = sh::run(&mut unit).context("unit tests");
    let units = Instant::now();

    let threads = format!("--test-threads={}", args.test_threads);
    let mut e2e = sh::cargo(&[
        "test",
        "--no-fail-fast",
        "-p",
        "interceptor-tests",
        "--",
        &threads,
    ]);
    e2e.args(&filter).env("INTERCEPTOR_BIN", &bin);
    let e2e_result = sh::run(&mut e2e).context("end-to-end tests");

    // A short run of every fuzz target (the real runs: `cargo xtask fuzz`).
    let fuzz_started = Instant::now();
    let fuzz_result = if args.filter.is_some() || args.no_fuzz {
        Ok(())
    } else {
        crate::fuzz::smoke(args.fuzz_secs).context("fuzz smoke")
    };
    let fuzzed = fuzz_started.elapsed();

    let leftovers = cleanup::remove_stale(&bin);
    println!(
        "test: build {:.0}s, unit tests {:.0}s, end-to-end tests {:.0}s, fuzz smoke {:.0}s, total {:.0}s",
        (built - started).as_secs_f64(),
        (units - built).as_secs_f64(),
        (units.elapsed() - fuzzed).as_secs_f64(),
        fuzzed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let failures: Vec<String> = [unit_result, e2e_result, fuzz_result]
        .into_iter()
        .filter_map(Result::err)
        .map(|e| format!("{e:#}"))
        .collect();
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    if !leftovers.is_empty() {
        bail!("the tests left cgroups or pins behind: {leftovers:?}");
    }
    Ok(())
}
