//! interceptor: a host-level guard for database access from CI runners and AI
//! coding agents.
//!
//! # Layout
//!
//! The modules follow the data path of a connection:
//!
//! - [`admin`]: the root-only admin socket the CLI talks to the daemon
//!   through (one JSON line each way), handlers registered by op prefix.
//! - [`approval`]: just-in-time approval of `approve` statements: requests,
//!   decisions (CLI, HTTP API), scopes and grants, expiry, webhooks, the
//!   hold of a statement on its open connection, restarts.
//! - [`audit`]: the per-host audit log: hash-chained segment files with
//!   signed checkpoints, group-committed by one writer thread, recovered
//!   after a crash; verification, session queries, replay and export.
//! - [`config`]: the daemon's typed TOML configuration (targets, watched
//!   cgroups, listeners, credentials file), validated after parsing; errors
//!   name file, line and fix.
//! - [`ebpf`]: loads the kernel programs (`interceptor-ebpf`), attaches them to
//!   the watched cgroups, pins links and maps in bpffs, and looks up the
//!   [`ebpf::ConnectRecord`] (original destination + caller) of an accepted
//!   socket.
//! - [`identity`]: workload attestation of the calling process (exe path and
//!   SHA-256, command line, uid/gid and names, cgroup, container id, parent
//!   chain), guarded against pid reuse.
//! - [`policy`]: identities (selectors over the attestation) and rules
//!   (allow / deny / approve per statement class, relation, function), the
//!   built-in guards, test cases; loaded as a set and swapped whole on reload.
//! - [`proxy`]: the listeners, one task per client session, the upstream
//!   connection and its authentication, TLS on both sides, cancel routing.
//! - [`sql`]: statement analysis with sqlparser (Postgres dialect), the facts
//!   policy decides on (classes, relations, functions, COPY, settings),
//!   cross-checked with the server's own grammar (`pg_query`).
//! - [`token`]: workload tokens presented as the password: OIDC JWT
//!   validation against each trusted issuer's JWKS (cached, rotated), the
//!   host's own `EdDSA` issuer with persisted revocations.
//! - [`wire`]: PostgreSQL protocol framing (raw frames kept as `Bytes`, decoded
//!   lazily with pgwire where the proxy needs to look inside).
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod admin;
pub mod approval;
pub mod audit;
pub mod config;
pub mod ebpf;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod mask;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod sql;
pub mod status;
pub mod token;
pub mod wire;
