//! Test harness shared by the end-to-end tests (`tests/tests/e2e_*.rs`) and
//! by `cargo xtask demo` / `cargo xtask bench`.
//!
//! Everything here is privileged and real: a PostgreSQL cluster started as
//! the unprivileged `postgres` user, a cgroup v2 directory, the `interceptor`
//! daemon loading its eBPF programs. Each piece is a guard whose `Drop` stops
//! what it started (by pid) and removes what it created, so a failing test
//! leaves nothing behind.
//!
//! # Layout
//!
//! - [`paths`]: the workspace, the built binaries, unique names, free ports.
//! - [`process`]: running commands as another user, with a timeout, and the
//!   Ctrl-C flag the long waits check.
//! - [`pg`]: [`PgCluster`], a throw-away PostgreSQL on 127.0.0.1.
//! - [`cgroup`]: [`TestCgroup`], a child cgroup v2 directory, and
//!   [`run_in_cgroup`], which starts a command inside it.
//! - [`daemon`]: [`Daemon`], `interceptor run` with a generated config and
//!   credentials file, its JSON events collected.
//! - [`http`]: a tiny HTTP client for the approvals API and a webhook receiver.
//! - [`compat`]: where setup put the compatibility suite's drivers (venv,
//!   node_modules, pgjdbc).
//! - [`cleanup`]: removes our cgroups and pins left by a run that was killed.
//! - [`probe`]: a raw-socket Python client for peer addresses and bad bytes.
//! - [`stack`]: [`Stack`], the usual arrangement of the three for one test,
//!   and unchanged `psql` with a clean environment.
//!
//! # Safety on shared machines
//!
//! All traffic stays on loopback; programs are attached only to cgroups made
//! here (`interceptor-test-<pid>-<n>` or a caller-chosen prefix); pins live
//! in a per-daemon directory under `/sys/fs/bpf`; processes are stopped by
//! the pid we started.

// Prose names (PostgreSQL, SCRAM, bpffs) are not code items.
#![allow(clippy::doc_markdown)]

pub mod cgroup;
pub mod cleanup;
pub mod compat;
pub mod daemon;
pub mod http;
pub mod paths;
pub mod pg;
pub mod probe;
pub mod process;
pub mod stack;

pub use cgroup::{TestCgroup, cgroup2_mount, run_in_cgroup};
pub use daemon::{Credential, Daemon, DaemonConfig, TargetSpec};
pub use pg::{PgCluster, PgOptions};
pub use stack::Stack;
