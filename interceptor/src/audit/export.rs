//! `audit export`: the log as one JSON object per record, for a SIEM or a
//! central store. Checkpoints are exported too: a checkpoint kept off the
//! host is what proves, later, that the records before it existed.
//!
//! Each line: `{"seq":N,"ts":"...","host":"h","kind":"statement","session":"4242-1"|null,"event":{...},"prev":"<hex>","hash":"<hex>"}`
//! with `event` exactly as recorded (field names in the module doc's
//! table); `host` is the host of the daemon run the record belongs to.

use std::{
    io::{self, Write},
    path::Path,
    str::FromStr,
};

use serde::Serialize;

use super::{AuditError, segment::read_records};

/// Output format of `audit export`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// JSON Lines.
    #[default]
    Jsonl,
}

impl FromStr for ExportFormat {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" | "json-lines" | "ndjson" => Ok(Self::Jsonl),
            other => Err(AuditError::Usage(format!(
                "unknown export format {other:?} (known: jsonl)"
            ))),
        }
    }
}

#[derive(Serialize)]
struct Exported<'a> {
    seq: u64,
    ts: &'a str,
    host: Option<&'a str>,
    kind: &'a str,
    session: Option<&'a str>,
    event: &'a serde_json::Value,
    prev: &'a str,
    hash: &'a str,
}

/// Writes the records of the log in `dir` with seq greater than `after_seq`
/// (all when `None`) to `out`; returns how many. Each record's hash is
/// checked on the way (a bad one stops the export with an error naming it),
/// the chain and signatures are `verify`'s job.
pub fn export(
    dir: &Path,
    format: ExportFormat,
    after_seq: Option<u64>,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let ExportFormat::Jsonl = format;
    let mut host: Option<String> = None;
    let mut count = 0;
    let mut failed: Option<io::Error> = None;
    read_records(dir, |r| {
        if matches!(r.kind.as_str(), "daemon_start" | "checkpoint")
            && let Some(h) = r.event.get("host").and_then(serde_json::Value::as_str)
        {
            host = Some(h.to_owned());
        }
        if after_seq.is_some_and(|after| r.seq <= after) {
            return true;
        }
        let line = Exported {
            seq: r.seq,
            ts: &r.ts,
            host: host.as_deref(),
            kind: &r.kind,
            session: r.session(),
            event: &r.event,
            prev: &r.prev,
            hash: &r.hash,
        };
        match serde_json::to_writer(&mut *out, &line)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
        {
            Ok(()) => {
                count += 1;
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(AuditError::io("<output>", e));
    }
    out.flush().map_err(|e| AuditError::io("<output>", e))?;
    Ok(count)
}
