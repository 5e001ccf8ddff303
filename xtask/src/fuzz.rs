//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (libFuzzer, nightly,
//! AddressSanitizer), each for a while, seeded from `fuzz/corpus/<target>/`
//! (new inputs are added there, so the corpus grows run by run). A crash is
//! copied to `fuzz/regressions/<target>/`, which the ordinary tests replay
//! (`interceptor/tests/fuzz_corpus.rs`), and fails the run.
//!
//! `smoke` is the short run `cargo xtask test` makes: every target for a
//! few seconds, new inputs kept in a temporary directory, not the corpus.

use std::{path::Path, time::Instant};

use anyhow::{Context as _, bail};
use interceptor_tests::paths;

use crate::sh;

/// The targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 4] = ["sql_policy", "frontend", "backend", "audit_line"];

#[derive(clap::Args)]
pub struct Args {
    /// Minutes per target.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Only this target.
    #[arg(long)]
    target: Option<String>,
    /// Without AddressSanitizer (about twice the executions; the C parser's
    /// memory errors are then found only when they crash).
    #[arg(long)]
    no_sanitizer: bool,
}

/// How the targets are built (and run: `cargo fuzz run` rebuilds on any
/// difference).
#[derive(Clone, Copy)]
enum Mode {
    /// Release with AddressSanitizer (`cargo xtask fuzz`).
    Thorough,
    /// Release without a sanitizer (`cargo xtask fuzz --no-sanitizer`).
    Fast,
    /// Debug without a sanitizer: the quickest build, for the smoke.
    Smoke,
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Self::Thorough => &["--release"],
            Self::Fast => &["--release", "--sanitizer", "none"],
            Self::Smoke => &["--dev", "--sanitizer", "none"],
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    crate::setup::cargo_fuzz()?;
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target `{t}` (targets: {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let mode = if args.no_sanitizer {
        Mode::Fast
    } else {
        Mode::Thorough
    };
    build(mode)?;
    let secs = (args.minutes * 60.0).max(1.0) as u64;
    let mut report = Vec::new();
    for t in targets {
        let corpus = paths::workspace_root().join("fuzz/corpus").join(t);
        report.push((t, fuzz(mode, t, secs, &[&corpus])?));
    }
    print_report(&report);
    Ok(())
}

/// Every target for `secs` seconds; new inputs go to a temporary directory.
pub fn smoke(secs: u64) -> anyhow::Result<()> {
    crate::setup::cargo_fuzz()?;
    build(Mode::Smoke)?;
    let mut report = Vec::new();
    for t in TARGETS {
        let scratch = tempfile::tempdir()?;
        let corpus = paths::workspace_root().join("fuzz/corpus").join(t);
        report.push((t, fuzz(Mode::Smoke, t, secs, &[scratch.path(), &corpus])?));
    }
    print_report(&report);
    Ok(())
}

fn build(mode: Mode) -> anyhow::Result<()> {
    let mut c = fuzz_cmd(&["build"]);
    c.args(mode.flags());
    sh::run(&mut c).context("building the fuzz targets")
}

fn fuzz_cmd(args: &[&str]) -> std::process::Command {
    let mut c = sh::cmd("cargo", &["+nightly", "fuzz"]);
    c.args(args)
        .arg("--fuzz-dir")
        .arg(paths::workspace_root().join("fuzz"));
    c.current_dir(paths::workspace_root());
    // The eBPF object is not needed by the fuzzed code.
    c.env_remove("RUSTC").env_remove("RUSTC_WORKSPACE_WRAPPER");
    c
}

/// (executions, seconds).
fn fuzz(mode: Mode, target: &str, secs: u64, corpora: &[&Path]) -> anyhow::Result<(u64, f64)> {
    let artifacts = paths::workspace_root().join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    for c in corpora {
        std::fs::create_dir_all(c)?;
    }
    let mut c = fuzz_cmd(&["run"]);
    c.args(mode.flags()).arg(target).arg("--");
    for dir in corpora {
        c.arg(dir);
    }
    c.arg(format!("-max_total_time={secs}"))
        .arg("-print_final_stats=1")
        .arg("-max_len=65536")
        .arg("-rss_limit_mb=4096")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    println!("+ fuzz {target} for {secs}s");
    let started = Instant::now();
    let out = c
        .output()
        .with_context(|| format!("running fuzz target {target}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let kept = keep_crashes(target, &artifacts)?;
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "fuzz target {target} failed ({}); crash inputs copied to fuzz/regressions/{target}/: {kept:?}\n{}",
            out.status,
            tail.join("\n")
        );
    }
    let execs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Ok((execs, elapsed))
}

fn keep_crashes(target: &str, artifacts: &Path) -> anyhow::Result<Vec<String>> {
    let dest = paths::workspace_root()
        .join("fuzz/regressions")
        .join(target);
    std::fs::create_dir_all(&dest)?;
    let mut kept = Vec::new();
    for e in std::fs::read_dir(artifacts)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        std::fs::copy(e.path(), dest.join(&name))?;
        kept.push(name);
    }
    Ok(kept)
}

fn print_report(report: &[(&str, (u64, f64))]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "fuzz: load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<12} {:>14} {:>10} {:>12}",
        "target", "executions", "seconds", "exec/s"
    );
    for (t, (n, s)) in report {
        println!(
            "{t:<12} {n:>14} {s:>10.0} {:>12.0}",
            *n as f64 / s.max(0.001)
        );
    }
}
