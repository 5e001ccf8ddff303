//! One record = one line: `{"seq":..,"ts":..,"prev":..,"kind":..,"event":..,"hash":..}`.
//! The hash is SHA-256 over the line's bytes before `,"hash":"`, so the
//! encoding is the bytes written; checking a record never re-serialises it.

use std::{io::Write as _, time::SystemTime};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::AuditEvent;

/// `prev` of record 1.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// `,"hash":"<64 hex>"}`: what ends every line before its `\n`.
pub(crate) const SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// A record read back from a segment, its hash checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Sequence number.
    pub seq: u64,
    /// Timestamp as written (RFC 3339, UTC, nanoseconds).
    pub ts: String,
    /// The same, parsed.
    pub time: SystemTime,
    /// Hash of the previous record (hex).
    pub prev: String,
    /// Event kind.
    pub kind: String,
    /// Event fields, as written (kept untyped so that a newer daemon's kinds
    /// still verify and export).
    pub event: serde_json::Value,
    /// This record's hash (hex).
    pub hash: String,
}

impl Record {
    /// The event as an [`AuditEvent`] (fails for kinds this build does not know).
    pub fn typed(&self) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "kind": self.kind, "event": self.event }))
    }

    /// `event.session`, if the event has one.
    pub fn session(&self) -> Option<&str> {
        self.event
            .get("session")
            .and_then(serde_json::Value::as_str)
    }
}

/// The envelope as parsed; `deny_unknown_fields` so nothing unhashed... and
/// nothing unexpected hides in a record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    seq: u64,
    ts: String,
    prev: String,
    kind: String,
    event: serde_json::Value,
    hash: String,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// Not in the record format at all.
    Malformed(String),
    /// Well-formed, but the content does not hash to the stated hash.
    HashMismatch {
        /// `hash` as written.
        stated: String,
        /// SHA-256 of the content.
        computed: String,
    },
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a valid record: {why}"),
            Self::HashMismatch { stated, computed } => {
                write!(
                    f,
                    "hash mismatch: the record says {stated}, its content hashes to {computed}"
                )
            }
        }
    }
}

/// The timestamp format of `ts`.
pub(crate) fn format_ts(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Appends the line (with its `\n`) for one record to `buf`; returns its hash (hex).
pub(crate) fn encode_into(
    buf: &mut Vec<u8>,
    seq: u64,
    ts: SystemTime,
    prev: &str,
    event: &AuditEvent,
) -> Result<String, serde_json::Error> {
    let start = buf.len();
    // Writing to a Vec cannot fail.
    let _ = write!(
        buf,
        "{{\"seq\":{seq},\"ts\":\"{}\",\"prev\":\"{prev}\",",
        format_ts(ts)
    );
    let event_start = buf.len();
    serde_json::to_writer(&mut *buf, event)?;
    // `{"kind":..,"event":..}` -> `"kind":..,"event":..` spliced into the envelope.
    buf.remove(event_start);
    buf.pop();
    let hash = hex::encode(Sha256::digest(&buf[start..]));
    buf.extend_from_slice(HASH_KEY);
    buf.extend_from_slice(hash.as_bytes());
    buf.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// Checks and parses one line (without its `\n`).
pub(crate) fn decode(line: &[u8]) -> Result<Record, LineError> {
    if line.len() < SUFFIX_LEN + 2 {
        return Err(LineError::Malformed(format!(
            "{} bytes is too short for a record",
            line.len()
        )));
    }
    let (body, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let stated = &suffix[HASH_KEY.len()..HASH_KEY.len() + 64];
    if !suffix.starts_with(HASH_KEY) || !suffix.ends_with(b"\"}") || !is_hex(stated) {
        return Err(LineError::Malformed(
            "it does not end with ,\"hash\":\"<64 hex>\"}".into(),
        ));
    }
    let stated = String::from_utf8_lossy(stated).into_owned();
    let computed = hex::encode(Sha256::digest(body));
    if computed != stated {
        return Err(LineError::HashMismatch { stated, computed });
    }
    let env: Envelope =
        serde_json::from_slice(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    if env.hash != stated {
        return Err(LineError::Malformed("two hash fields".into()));
    }
    if !is_hex(env.prev.as_bytes()) {
        return Err(LineError::Malformed(
            "prev is not 64 lowercase hex digits".into(),
        ));
    }
    let time = humantime::parse_rfc3339(&env.ts)
        .map_err(|e| LineError::Malformed(format!("ts {:?}: {e}", env.ts)))?;
    Ok(Record {
        seq: env.seq,
        ts: env.ts,
        time,
        prev: env.prev,
        kind: env.kind,
        event: env.event,
        hash: env.hash,
    })
}

/// The seq of a line that starts like a record, however damaged the rest.
pub(crate) fn peek_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn is_hex(s: &[u8]) -> bool {
    s.len() == 64
        && s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::DaemonStop;

    fn line(seq: u64, prev: &str) -> (Vec<u8>, String) {
        let mut buf = Vec::new();
        let ev = AuditEvent::DaemonStop(DaemonStop { reason: "x".into() });
        let h = encode_into(&mut buf, seq, SystemTime::UNIX_EPOCH, prev, &ev).unwrap();
        (buf, h)
    }

    #[test]
    fn round_trip() {
        let (buf, h) = line(7, GENESIS);
        let text = std::str::from_utf8(&buf).unwrap();
        assert!(
            text.starts_with(r#"{"seq":7,"ts":"1970-01-01T00:00:00.000000000Z","prev":"000"#),
            "{text}"
        );
        assert!(
            text.contains(r#","kind":"daemon_stop","event":{"reason":"x"},"hash":""#),
            "{text}"
        );
        let r = decode(&buf[..buf.len() - 1]).unwrap();
        assert_eq!(
            (r.seq, r.kind.as_str(), r.hash.as_str(), r.prev.as_str()),
            (7, "daemon_stop", h.as_str(), GENESIS)
        );
        assert_eq!(peek_seq(&buf), Some(7));
        // The documented external check: SHA-256 of the line minus its last 76 bytes.
        assert_eq!(hex::encode(Sha256::digest(&buf[..buf.len() - 76])), h);
    }

    #[test]
    fn any_changed_byte_is_caught() {
        let (buf, _) = line(1, GENESIS);
        let body = &buf[..buf.len() - 1];
        for i in 0..body.len() {
            let mut b = body.to_vec();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "byte {i} flipped went unnoticed");
        }
        assert!(matches!(
            decode(&body[..body.len() - 3]),
            Err(LineError::Malformed(_))
        ));
    }
}
