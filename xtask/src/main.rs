//! `cargo xtask <task>`: the project's chores, one module a task.
//!
//! - [`setup`]: install what the build and the tests need (idempotent).
//! - [`test`]: setup, build, every unit and end-to-end test.
//! - [`demo`]: a throw-away PostgreSQL, the interceptor on a demo cgroup, and
//!   an unchanged `psql` inside it.
//! - [`bench`]: pgbench direct / pgbouncer / proxy port / eBPF redirect, and
//!   memory per idle session.
//!
//! Shared pieces (PostgreSQL cluster, cgroup, daemon) come from the
//! `interceptor-tests` harness, so the demo and the bench run exactly what
//! the end-to-end tests run.

// Prose names (PostgreSQL, pgbench, bpffs) are not code items.
#![allow(clippy::doc_markdown)]

mod bench;
mod demo;
mod fuzz;
mod setup;
mod sh;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "interceptor's build, test, demo and bench tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces and packages the build and tests need (idempotent).
    Setup,
    /// Setup, build, then run every test (unit and privileged end-to-end).
    Test(test::Args),
    /// Run the interceptor on a demo cgroup and an unchanged psql inside it.
    Demo(demo::Args),
    /// Benchmark the pass-through against direct and pgbouncer (not a test).
    Bench(bench::Args),
    /// Run the cargo-fuzz targets of fuzz/ (nightly, libFuzzer), growing their corpora.
    Fuzz(fuzz::Args),
}

fn main() -> anyhow::Result<()> {
    sh::install_ctrl_c_handler()?;
    sh::raise_fd_limit();
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test(args) => test::run(&args),
        Task::Demo(args) => demo::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Fuzz(args) => fuzz::run(&args),
    }
}
