//! Helpers for the audit log's integration tests (`audit_chain`,
//! `audit_faults`): small configs, sample sessions, reading and rewriting
//! segment files the way a forger would. Included with `mod audit_support;`;
//! built on its own as an empty test crate too.
#![allow(dead_code)]

use std::{
    fs,
    path::{Path, PathBuf},
};

use interceptor::audit::{
    AuditConfig, AuditEvent, AuditLog, DecisionRecord, Finding, Record, ResultSummary, SessionEnd,
    SessionStart, StatementEvent, VerifyError, read_records, verify,
};
use sha2::{Digest, Sha256};

/// A config for tests: small segments (so there are several), a checkpoint
/// every 10 records, none by time (deterministic).
pub fn cfg(dir: &Path) -> AuditConfig {
    AuditConfig {
        host: "test-host".into(),
        segment_max_bytes: 4096,
        checkpoint_every_records: 10,
        checkpoint_every_ms: 3_600_000,
        ..AuditConfig::in_dir(dir)
    }
}

pub fn session_start(id: &str, exe: &str, identity: &str) -> AuditEvent {
    AuditEvent::SessionStart(SessionStart {
        session: id.into(),
        host: "test-host".into(),
        peer: "127.0.0.1:40000".into(),
        route: "redirected".into(),
        orig_dst: Some("127.0.0.5:5432".into()),
        target: "main-db".into(),
        upstream: Some("127.0.0.1:5432".into()),
        database: "app".into(),
        user: "ci".into(),
        upstream_user: Some("app_rw".into()),
        application_name: Some("psql".into()),
        client_tls: false,
        identity: Some(identity.into()),
        attestation: serde_json::json!({ "pid": 4242, "exe": exe, "uid": 1000, "cmdline": [exe, "-c", "select 1"] }),
        token: None,
        refused: None,
    })
}

pub fn statement(session: &str, n: u64, sql: &str, action: &str) -> AuditEvent {
    AuditEvent::Statement(StatementEvent {
        session: session.into(),
        statement: n,
        sql: sql.into(),
        params: vec![Some("***".into()), None],
        protocol: "simple".into(),
        decision: DecisionRecord {
            action: action.into(),
            rule: format!("rule-{action}"),
            reason: format!("because {action}"),
            max_rows: None,
        },
        sql_full: None,
        sql_redacted: Vec::new(),
    })
}

pub fn result(session: &str, n: u64) -> AuditEvent {
    AuditEvent::StatementResult(ResultSummary {
        session: session.into(),
        statement: n,
        command_tag: Some("SELECT 2".into()),
        rows: 2,
        bytes: 64,
        masked_columns: vec!["email".into()],
        params: vec![],
        duration_us: 1500,
        error_sqlstate: None,
        error_message: None,
    })
}

pub fn session_end(session: &str, statements: u64, refused: u64) -> AuditEvent {
    AuditEvent::SessionEnd(SessionEnd {
        session: session.into(),
        reason: "client_terminate".into(),
        detail: None,
        duration_ms: 20,
        statements,
        refused,
        bytes_in: 100,
        bytes_out: 200,
    })
}

/// Writes a log of `sessions` sessions of 5 statements each (one denied),
/// closes it, returns the session ids. With [`cfg`] that is several sealed
/// segments.
pub async fn build_log(dir: &Path, sessions: u64) -> Vec<String> {
    let log = AuditLog::open(&cfg(dir)).unwrap();
    let mut ids = Vec::new();
    for s in 1..=sessions {
        let id = log.session_id(s);
        log.append(session_start(&id, "/usr/bin/psql", "ci-readonly"))
            .await
            .unwrap();
        for n in 1..=5 {
            let action = if n == 3 { "deny" } else { "allow" };
            log.append(statement(
                &id,
                n,
                &format!("SELECT * FROM t{n} /* session {s} */"),
                action,
            ))
            .await
            .unwrap();
            if action == "allow" {
                log.append(result(&id, n)).await.unwrap();
            }
        }
        log.append(session_end(&id, 5, 1)).await.unwrap();
        ids.push(id);
    }
    log.close("test").await.unwrap();
    ids
}

/// The segment files of `dir`, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .collect();
    v.sort();
    v
}

/// The lines of a segment, each with its `\n`.
pub fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.concat()).unwrap();
}

/// Every record of the log.
pub fn records(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    read_records(dir, |r| {
        out.push(r.clone());
        true
    })
    .unwrap();
    out
}

/// The finding `verify` reports (panics if the log verifies).
pub fn finding(dir: &Path, pubkey: Option<&Path>) -> Finding {
    match verify(dir, pubkey) {
        Ok(r) => panic!("log verified: {r:?}"),
        Err(VerifyError::Tampered(f)) => *f,
        Err(e) => panic!("verify could not run: {e}"),
    }
}

/// What a forger without the key can do: set a line's `prev` (and a
/// checkpoint's `head_hash`), recompute its hash (SHA-256 of the line before `,"hash":"`, as the format says).
/// Returns the new line and its hash.
pub fn rehash_line(line: &str, prev: &str) -> (String, String) {
    let body = line.trim_end_matches('\n');
    let prefix = &body[..body.len() - 75];
    let at = prefix.find("\"prev\":\"").unwrap() + 8;
    let mut prefix = format!("{}{}{}", &prefix[..at], prev, &prefix[at + 64..]);
    // A checkpoint names its head too: a consistent forger updates it.
    if let Some(h) = prefix.find("\"head_hash\":\"") {
        let at = h + 13;
        prefix = format!("{}{}{}", &prefix[..at], prev, &prefix[at + 64..]);
    }
    let hash = hex::encode(Sha256::digest(prefix.as_bytes()));
    (format!("{prefix},\"hash\":\"{hash}\"}}\n"), hash)
}

/// The hash a line states.
pub fn line_hash(line: &str) -> String {
    let body = line.trim_end_matches('\n');
    body[body.len() - 66..body.len() - 2].to_owned()
}

/// Re-hashes every segment from line `from_line` (0-based) of segment
/// `from_seg` on, so that the whole chain is consistent again.
pub fn rehash_from(dir: &Path, from_seg: usize, from_line: usize) {
    let segs = segments(dir);
    let mut prev: Option<String> = None;
    for (si, seg) in segs.iter().enumerate().skip(from_seg) {
        let mut ls = lines(seg);
        let start = if si == from_seg { from_line } else { 0 };
        if prev.is_none() {
            prev = Some(if start == 0 {
                line_hash(lines(&segs[si - 1]).last().unwrap())
            } else {
                line_hash(&ls[start - 1])
            });
        }
        for l in ls.iter_mut().skip(start) {
            let (new, hash) = rehash_line(l, prev.as_deref().unwrap());
            *l = new;
            prev = Some(hash);
        }
        write_lines(seg, &ls);
    }
}
