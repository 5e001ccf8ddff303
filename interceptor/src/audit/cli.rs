//! The functions behind `interceptor audit verify|pubkey|export`,
//! `interceptor sessions list|show` and `interceptor replay`. Each writes
//! its report to `out` (stdout in the CLI), errors to stderr, and returns
//! the process exit code:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done; for `verify`: the log is intact |
//! | 1 | could not be done (no such directory, no key, unknown session, bad argument) |
//! | 10 | `verify`: a record was modified |
//! | 11 | `verify`: records were removed |
//! | 12 | `verify`: records were reordered |
//! | 13 | `verify`: the log was truncated (record cut, seal or segment missing) |
//! | 14 | `verify`: a checkpoint signature does not verify |

use std::{
    fmt::Write as _,
    io::{self, Write},
    path::Path,
};

use super::{
    AuditError, ExportFormat, KeySource, SessionFilter, VerifyError,
    export::export,
    keys,
    query::{list_sessions, session_records},
    show, verify,
};

/// Where the daemon keeps the log unless configured otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/interceptor/audit";
/// Exit code: done / intact.
pub const EXIT_OK: u8 = 0;
/// Exit code: could not be done.
pub const EXIT_ERROR: u8 = 1;

fn fail(e: &dyn std::fmt::Display) -> u8 {
    eprintln!("interceptor: {e}");
    EXIT_ERROR
}

/// Output errors: a closed pipe (`| head`) is not a failure.
fn written(r: io::Result<()>) -> u8 {
    match r {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => fail(&e),
    }
}

/// `audit verify [DIR] [--pubkey FILE]`: 0 when intact, 10..14 naming the
/// first bad record, 1 when it cannot be checked.
pub fn audit_verify(
    dir: &Path,
    pubkey: Option<&Path>,
    expect: Option<&verify::Expect>,
    out: &mut dyn Write,
) -> u8 {
    match verify::verify_expecting(dir, pubkey, expect) {
        Ok(r) => {
            let mut lines = || -> io::Result<()> {
                writeln!(out, "audit log {}: intact", dir.display())?;
                writeln!(out, "  segments:    {}", r.segments)?;
                writeln!(out, "  records:     {} (seq 1..{})", r.records, r.last_seq)?;
                if let (Some(a), Some(b)) = (&r.first_ts, &r.last_ts) {
                    writeln!(out, "  time:        {a} .. {b}")?;
                }
                writeln!(
                    out,
                    "  checkpoints: {} signed, last at seq {}",
                    r.checkpoints,
                    r.last_checkpoint
                        .map_or_else(|| "-".into(), |s| s.to_string())
                )?;
                if r.unsigned > 0 {
                    writeln!(
                        out,
                        "  unsigned:    {} record(s) after the last checkpoint are hash-chained but not yet signed \
                         (someone with root could still rewrite or cut them undetected)",
                        r.unsigned
                    )?;
                }
                writeln!(out, "  hosts:       {}", r.hosts.join(", "))?;
                let (KeySource::Given(p) | KeySource::LogDirectory(p)) = &r.key_source;
                writeln!(
                    out,
                    "  key:         {} (from {})",
                    r.key_fingerprint,
                    p.display()
                )?;
                if let KeySource::LogDirectory(_) = &r.key_source {
                    writeln!(
                        out,
                        "  note: the key was read from the log directory itself: whoever could rewrite the log could have replaced it too. \
                         Verify with --pubkey FILE, a copy of `interceptor audit pubkey` kept off this host."
                    )?;
                }
                Ok(())
            };
            written(lines())
        }
        Err(VerifyError::Tampered(f)) => {
            let _ = writeln!(out, "audit log {}: NOT intact", dir.display());
            let _ = writeln!(out, "FAIL {f}");
            f.problem.exit_code()
        }
        Err(VerifyError::Audit(e)) => fail(&e),
    }
}

/// `audit pubkey [DIR]`: the host's public key (SPKI PEM, usable with
/// `verify --pubkey` and `openssl pkey -pubin`) and its fingerprint.
pub fn audit_pubkey(dir: &Path, out: &mut dyn Write) -> u8 {
    match keys::existing_public_key(dir) {
        Ok(key) => written(
            write!(out, "{}", keys::public_pem(&key))
                .and_then(|()| writeln!(out, "fingerprint: {}", keys::fingerprint(&key))),
        ),
        Err(e) => fail(&e),
    }
}

/// `audit export [DIR] [--format jsonl] [--after SEQ]`: one JSON object per
/// record (see [`super::export()`]).
pub fn audit_export(
    dir: &Path,
    format: ExportFormat,
    after_seq: Option<u64>,
    out: &mut dyn Write,
) -> u8 {
    match export(dir, format, after_seq, out) {
        Ok(_) => EXIT_OK,
        Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => fail(&e),
    }
}

/// `sessions list [DIR] [--since T] [--identity X] [--host H] [--decision D]`: a table.
pub fn sessions_list(dir: &Path, filter: &SessionFilter, out: &mut dyn Write) -> u8 {
    let sessions = match list_sessions(dir, filter) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let dash = || "-".to_owned();
    let mut rows = vec![
        [
            "SESSION",
            "START",
            "HOST",
            "IDENTITY",
            "EXE",
            "TARGET/DB",
            "STMTS",
            "REFUSED",
            "END",
        ]
        .map(str::to_owned),
    ];
    for s in &sessions {
        rows.push([
            s.session.clone(),
            s.start
                .get(..19)
                .map_or_else(|| s.start.clone(), |t| format!("{t}Z")),
            s.host.clone().unwrap_or_else(dash),
            s.identity.clone().unwrap_or_else(dash),
            s.exe.clone().unwrap_or_else(dash),
            format!(
                "{}/{}",
                s.target.as_deref().unwrap_or("-"),
                s.database.as_deref().unwrap_or("-")
            ),
            s.statements.to_string(),
            s.refused.to_string(),
            s.end_reason.clone().unwrap_or_else(|| "(open)".into()),
        ]);
    }
    let rows: Vec<[String; 9]> = rows
        .into_iter()
        .map(|r| r.map(|c| show::clean(&c).replace('\n', " ")))
        .collect();
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut table = || -> io::Result<()> {
        for r in &rows {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    let _ = write!(line, "{c:<w$}  ");
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    };
    written(table())
}

fn records_of(dir: &Path, id: &str) -> Result<Vec<super::Record>, AuditError> {
    let records = session_records(dir, id)?;
    if records.is_empty() {
        return Err(AuditError::Usage(format!(
            "no session {id:?} in {}",
            dir.display()
        )));
    }
    Ok(records)
}

/// `sessions show ID [DIR]`: every record of one session, in order.
pub fn sessions_show(dir: &Path, id: &str, out: &mut dyn Write) -> u8 {
    match records_of(dir, id) {
        Ok(records) => written(show::show(&records, out)),
        Err(e) => fail(&e),
    }
}

/// `replay ID [DIR] [--speed N]`: plays the session back with its original
/// timing divided by `speed` (0 = no waiting).
pub fn replay(dir: &Path, id: &str, speed: f64, out: &mut dyn Write) -> u8 {
    if !speed.is_finite() || speed < 0.0 {
        return fail(&format!(
            "--speed {speed}: expected 0 (no waiting) or a positive factor"
        ));
    }
    match records_of(dir, id) {
        Ok(records) => written(show::replay(&records, speed, out, &mut std::thread::sleep)),
        Err(e) => fail(&e),
    }
}
