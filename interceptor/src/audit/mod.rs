//! The per-host audit log: every session, statement, decision, approval and
//! result summary, appended to hash-chained segment files with signed
//! checkpoints; and the tools that verify, query, export and replay it.
//!
//! # Layout
//!
//! - `config`: [`AuditConfig`], the `[audit]` table of the daemon config.
//! - `event`: [`AuditEvent`], what is recorded (stable field names, below).
//! - `record`: one record = one line; its encoding and its hash.
//! - `segment`: segment file names, listing, splitting a file into lines.
//! - `keys`: the host's Ed25519 key, fingerprints, checkpoint signatures.
//! - `recover`: what [`AuditLog::open`] does with the previous run's files.
//! - `queue`: the bounded queue between the handles and the writer, the
//!   health flag.
//! - `writer`: the writer thread: group commit, checkpoints, rotation,
//!   failure and retry.
//! - `log`: [`AuditLog`], the cheap handle the proxy sessions append through.
//! - `verify`: [`verify()`], the integrity check.
//! - `query`, `show`, `export`: sessions, the session view and replay, SIEM
//!   export. `cli`: the functions behind the `interceptor audit ...`,
//!   `sessions ...` and `replay` commands. `bench`: append throughput.
//!
//! # On disk
//!
//! ```text
//! <dir>/                                   0700, root only
//!   keys/host.key                          Ed25519 private key, PKCS#8 PEM, 0600
//!   keys/host.pub                          public key, SPKI PEM
//!   segment-00000000000000000001.log       records 1 ..
//!   segment-00000000000000004242.log       records 4242 .. (name = first seq)
//! ```
//!
//! A segment is JSON Lines: one record per line, `\n`-terminated, fields in
//! this order:
//!
//! ```text
//! {"seq":42,"ts":"2026-05-20T10:00:00.123456789Z","prev":"<64 hex>","kind":"statement","event":{...},"hash":"<64 hex>"}
//! ```
//!
//! - `seq`: 1, 2, 3 ... with no gap, across segments and daemon restarts.
//! - `ts`: UTC, RFC 3339 with nanoseconds, taken by the writer when it
//!   writes; never decreases (a clock stepping back is clamped).
//! - `prev`: the `hash` of record `seq - 1`; 64 zeros for record 1.
//! - `kind` and `event`: the [`AuditEvent`] (`kind` names the variant).
//! - `hash`: hex SHA-256 of the line's bytes before `,"hash":"`, i.e. of
//!   exactly what was written for seq, ts, prev, kind and event. The bytes
//!   are the encoding: nothing is re-serialised to check a record, so a
//!   record's hash can be checked with any SHA-256 tool: it is the SHA-256
//!   of the line without its last 76 bytes (`,"hash":"<64 hex>"}` and `\n`).
//!
//! # Checkpoints
//!
//! Signing every record would cost about as much as everything else the
//! writer does together (`cargo xtask bench` measures both). Instead a
//! `checkpoint` record is appended every `checkpoint_every_records` records
//! or `checkpoint_every_ms`, whichever comes first (at the end of the batch
//! that crosses the line), at daemon start and stop, and as the last record
//! of every segment (`reason: "seal"`, written when the segment is rotated
//! by size or age). It signs, with the host's Ed25519 key, the message
//!
//! ```text
//! interceptor-audit-checkpoint-v1\n<host>\n<head_seq>\n<head_hash>\n<reason>\n
//! ```
//!
//! where `head_seq`/`head_hash` are the record just before the checkpoint.
//! As every hash covers the previous one, the last checkpoint's signature
//! covers every record before it, checkpoints included.
//!
//! # Writing
//!
//! [`AuditLog::append`] queues the event (a bounded queue: a full queue
//! makes callers wait, nothing is dropped) and resolves once the record is
//! on disk. One writer thread takes everything queued, writes it with one
//! `pwrite`, `fdatasync`s once and then answers every waiter (group
//! commit). With `durability = "written"` ([`Durability::Written`]) it
//! answers once the batch is written, before the `fdatasync`, which then
//! runs at least every `sync_interval_ms` and with every checkpoint: a
//! record then survives a crash or `kill -9` of the daemon but not a power
//! loss within that interval, and an append no longer waits for the disk. When the write or sync fails (disk full, directory removed,
//! permissions), the file is truncated back to its last synced length, every
//! waiter of the batch gets [`AuditError::Unavailable`], [`AuditLog::healthy`]
//! turns false, and the writer retries on its own every half second and
//! with every new append. The first batch that succeeds starts with a
//! `write_recovered` record (since when, why, how many appends were
//! refused); the chain continues from the last synced record. A segment
//! file removed or replaced under the writer is detected after each write
//! (its path no longer names the open file); the writer then continues in a
//! new segment, recreating the directory and key files if they are gone, and
//! verification reports the records that vanished with the old file.
//!
//! # Recovery
//!
//! [`AuditLog::open`] reads the last segment: every record whose hash and
//! link to the previous one hold is kept; what follows the last such record
//! (a record cut mid-way by a crash, zeros after a power loss) is a torn
//! tail. It is truncated away and a `torn_tail` record says where, how many
//! bytes and which seqs were dropped (those seqs are reused: they were never
//! acknowledged, since a record is acknowledged only after `fdatasync`).
//! A bad record followed by good ones is not a torn tail but damage: `open`
//! refuses to continue such a log (run `interceptor audit verify`, keep the
//! evidence, move the directory aside). Then `daemon_start` and a `start`
//! checkpoint are appended.
//!
//! # What `verify` detects, and what it cannot
//!
//! [`verify()`] re-computes every hash and checks seq continuity, `prev`
//! links across segments, non-decreasing timestamps, that every segment but
//! the last ends with its seal, and every checkpoint signature. It names the
//! first bad record: *modified* (hash mismatch, malformed record),
//! *removed* (seq gap, broken `prev` link), *reordered*, *truncated* (a
//! record cut mid-way, a segment without its seal, a missing segment) or
//! *bad signature*.
//!
//! Someone who can write the directory but does not hold the key can rewrite
//! records and re-hash the chain consistently, but cannot sign: everything up
//! to the last checkpoint is protected by its signature. Two things are not:
//!
//! - records after the last checkpoint (at most one checkpoint interval;
//!   `verify` reports how many) can be rewritten or cut consistently;
//! - cutting the log back to an earlier checkpoint, or deleting the newest
//!   segments, leaves a log that is valid as far as it goes.
//!
//! Both need root on the host (the directory is root-only). What mitigates
//! them is getting checkpoints off the host quickly: ship `audit export`
//! (which includes the checkpoints) to a central store, where a checkpoint
//! already seen for seq N proves that records 1..N existed with those hashes.
//! Root can also read the private key; keep a copy of the public key
//! elsewhere (`interceptor audit pubkey`) and verify with `--pubkey`: without
//! it `verify` trusts `keys/host.pub` from the directory it checks, which a
//! forger could have replaced along with the log.
//!
//! # Session ids
//!
//! The proxy numbers sessions from 1 in every daemon run. Records name a
//! session by [`AuditLog::session_id`]: `"<seq of this run's daemon_start>-<n>"`,
//! e.g. `"4242-17"`, unique within the host's log (and, with the host name,
//! everywhere).
//!
//! # Events
//!
//! `kind` and the fields of `event` (every field is always written; `null`
//! or `[]` when absent):
//!
//! | kind | fields |
//! | --- | --- |
//! | `daemon_start` | `host`, `version`, `pid`, `boot_id`, `key` (fingerprint), `resumed_after` (last seq of the previous run) |
//! | `daemon_stop` | `reason` |
//! | `session_start` | `session`, `host`, `peer`, `route` (`redirected`/`explicit`/`unix`), `orig_dst`, `target`, `upstream`, `database`, `user`, `upstream_user`, `application_name`, `client_tls`, `identity`, `attestation` (pid, exe, exe_sha256, cmdline, uid, ..., parents) |
//! | `statement` | `session`, `statement` (per-session counter), `sql`, `params` (masked by the caller), `protocol` (`simple`/`extended`), `decision` {`action` (`allow`/`deny`/`approve`), `rule`, `reason`, `max_rows`} |
//! | `result` | `session`, `statement`, `command_tag`, `rows`, `bytes`, `masked_columns`, `duration_us`, `error_sqlstate`, `error_message` |
//! | `approval` | `session`, `statement`, `request`, `decision` (`requested`/`approved`/`rejected`/`expired`...), `approver`, `reason`, `detail` |
//! | `session_end` | `session`, `reason`, `detail`, `duration_ms`, `statements`, `refused`, `bytes_in`, `bytes_out` |
//! | `connection_refused` | `connection`, `peer`, `orig_dst`, `target`, `user`, `database`, `reason`, `sqlstate`, `error`, `attestation`, `duration_ms`: a connection refused before any session was recorded for it (malformed or timed-out startup, client TLS failure, replication connection, no target, attestation failure ...) |
//! | `token` | `action` (`issued`/`revoked`), `token`, `subject`, `issuer`, `detail` |
//! | `torn_tail` | `segment`, `offset`, `bytes_dropped`, `last_good_seq`, `dropped_seqs` ([first, last] or null) |
//! | `write_recovered` | `since`, `error`, `failed_batches`, `refused` |
//! | `checkpoint` | `head_seq`, `head_hash`, `host`, `reason` (`periodic`/`start`/`stop`/`seal`), `key`, `sig` (base64) |

mod bench;
pub mod cli;
mod config;
mod error;
mod event;
mod export;
mod keys;
mod log;
mod query;
mod queue;
mod record;
mod recover;
pub mod secrets;
mod segment;
mod show;
pub mod verify;
mod writer;

pub use bench::{BenchReport, bench_append, bench_append_with};
pub use config::{AuditConfig, Durability};
pub use error::AuditError;
pub use event::{
    ApprovalEvent, AuditEvent, Checkpoint, CheckpointReason, ConnectionRefused, DaemonStart,
    DaemonStop, DecisionRecord, ResultSummary, SessionEnd, SessionStart, SqlDigest, StatementEvent,
    TokenEvent, TornTail, WriteRecovered,
};
pub use export::{ExportFormat, export};
pub use keys::{fingerprint, load_public_key};
pub use log::{AuditLog, Receipt, Stats};
pub use query::{SessionFilter, SessionSummary, list_sessions, parse_since, session_records};
pub use record::Record;

/// Decodes one segment line as `audit verify` and `audit export` read it
/// (for the fuzz targets; the error is for people).
#[doc(hidden)]
pub fn decode_line(line: &[u8]) -> Result<Record, String> {
    record::decode(line).map_err(|e| format!("{e:?}"))
}
pub use segment::read_records;
pub use verify::{Finding, KeySource, Problem, VerifyError, VerifyReport, verify};
