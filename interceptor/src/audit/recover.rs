//! What [`super::AuditLog::open`] does with the previous run's files: find
//! the last complete record, cut a torn tail, say where to continue.

use std::{
    fs::{self, OpenOptions},
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{
    AuditError, Record, TornTail,
    record::{self, GENESIS},
    segment::{self, SegmentFile},
};

/// Where the chain continues.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// Seq of the next record.
    pub next_seq: u64,
    /// Hash of the last record ([`GENESIS`] on a new log).
    pub head: String,
    /// Timestamp of the last record.
    pub last_ts: Option<SystemTime>,
    /// The segment to keep appending to; `None` = start a new one.
    pub resume: Option<Resume>,
    /// What was cut, if anything.
    pub torn: Option<TornTail>,
}

/// An unsealed last segment to append to.
#[derive(Debug)]
pub(crate) struct Resume {
    /// Its path.
    pub path: PathBuf,
    /// Its length (after any cut).
    pub len: u64,
    /// Time of its first record (for rotation by age); `None` when empty.
    pub started: Option<SystemTime>,
}

/// The valid prefix of one segment.
struct Scan {
    /// Last valid record.
    last: Option<Record>,
    /// Time of the first one.
    first_ts: Option<SystemTime>,
    /// Bytes of valid records.
    valid_len: u64,
    /// First and last seq seen in the bytes past `valid_len`.
    dropped_seqs: Option<[u64; 2]>,
}

/// Recovers the log in `dir` (which exists).
pub(crate) fn recover(dir: &Path) -> Result<Recovery, AuditError> {
    let segments = segment::list(dir)?;
    let Some(last_seg) = segments.last() else {
        return Ok(Recovery {
            next_seq: 1,
            head: GENESIS.to_owned(),
            last_ts: None,
            resume: None,
            torn: None,
        });
    };
    let data = fs::read(&last_seg.path).map_err(|e| AuditError::io(&last_seg.path, e))?;
    let scan = scan(last_seg, &data)?;
    let torn_bytes = data.len() as u64 - scan.valid_len;
    if torn_bytes > 0 {
        let f = OpenOptions::new()
            .write(true)
            .open(&last_seg.path)
            .map_err(|e| AuditError::io(&last_seg.path, e))?;
        f.set_len(scan.valid_len)
            .and_then(|()| f.sync_all())
            .map_err(|e| AuditError::io(&last_seg.path, e))?;
        tracing::warn!(segment = %last_seg.path.display(), bytes = torn_bytes, "audit log: cut a torn tail");
    }

    let (head, resume) = if let Some(last) = scan.last {
        let sealed = is_seal(&last);
        let resume = (!sealed).then(|| Resume {
            path: last_seg.path.clone(),
            len: scan.valid_len,
            started: scan.first_ts,
        });
        (Some(last), resume)
    } else {
        // The last segment is empty (or was only a torn record): the chain
        // ends in the segment before it, and this one continues it.
        let before = match segments.len().checked_sub(2).map(|i| &segments[i]) {
            Some(prev) => previous_head(prev)?,
            None => None,
        };
        let expected = before.as_ref().map_or(1, |r| r.seq + 1);
        if last_seg.first_seq != expected {
            return Err(AuditError::Corrupt {
                path: last_seg.path.clone(),
                line: 1,
                offset: 0,
                reason: format!(
                    "empty segment named for seq {} but the chain ends at {}",
                    last_seg.first_seq,
                    expected - 1
                ),
            });
        }
        (
            before,
            Some(Resume {
                path: last_seg.path.clone(),
                len: 0,
                started: None,
            }),
        )
    };

    let last_good_seq = head.as_ref().map_or(0, |r| r.seq);
    let torn = (torn_bytes > 0).then(|| TornTail {
        segment: last_seg.name(),
        offset: scan.valid_len,
        bytes_dropped: torn_bytes,
        last_good_seq,
        dropped_seqs: scan.dropped_seqs,
    });
    Ok(Recovery {
        next_seq: last_good_seq + 1,
        last_ts: head.as_ref().map(|r| r.time),
        head: head.map_or_else(|| GENESIS.to_owned(), |r| r.hash),
        resume,
        torn,
    })
}

/// The last record of a non-last segment, which must be whole.
fn previous_head(seg: &SegmentFile) -> Result<Option<Record>, AuditError> {
    let data = fs::read(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
    let scan = scan(seg, &data)?;
    if scan.valid_len != data.len() as u64 {
        let (lines, _) = segment::lines(&data);
        let line = lines
            .iter()
            .find(|l| l.offset >= scan.valid_len)
            .map_or(lines.len() + 1, |l| l.number);
        return Err(AuditError::Corrupt {
            path: seg.path.clone(),
            line,
            offset: scan.valid_len,
            reason: "a segment before the last one ends in a damaged record".into(),
        });
    }
    Ok(scan.last)
}

/// Walks the segment's records while each is whole and linked to the one
/// before. Past the first that is not, nothing may be a valid record:
/// otherwise this is damage, not a torn tail.
fn scan(seg: &SegmentFile, data: &[u8]) -> Result<Scan, AuditError> {
    let (lines, tail) = segment::lines(data);
    let mut out = Scan {
        last: None,
        first_ts: None,
        valid_len: 0,
        dropped_seqs: None,
    };
    let mut bad = None;
    for (i, line) in lines.iter().enumerate() {
        let linked = match (record::decode(line.bytes), &out.last) {
            (Ok(r), None) if r.seq == seg.first_seq => Some(r),
            (Ok(r), Some(prev))
                if r.seq == prev.seq + 1 && r.prev == prev.hash && !is_seal(prev) =>
            {
                Some(r)
            }
            _ => None,
        };
        let Some(r) = linked else {
            bad = Some(i);
            break;
        };
        out.first_ts.get_or_insert(r.time);
        out.valid_len = line.end();
        out.last = Some(r);
    }
    let rest = bad.map_or(&lines[lines.len()..], |i| &lines[i..]);
    if let Some(first_bad) = rest.first()
        && let Some(good) = rest[1..].iter().find(|l| record::decode(l.bytes).is_ok())
    {
        return Err(AuditError::Corrupt {
            path: seg.path.clone(),
            line: first_bad.number,
            offset: first_bad.offset,
            reason: format!(
                "this record is damaged or out of place but line {} after it is intact: not a torn tail",
                good.number
            ),
        });
    }
    let seqs = rest
        .iter()
        .chain(tail.as_ref())
        .filter_map(|l| record::peek_seq(l.bytes));
    out.dropped_seqs = seqs.fold(None, |acc, s| match acc {
        None => Some([s, s]),
        Some([lo, hi]) => Some([lo.min(s), hi.max(s)]),
    });
    Ok(out)
}

/// Whether a record is a segment's seal.
pub(crate) fn is_seal(r: &Record) -> bool {
    r.kind == "checkpoint"
        && r.event.get("reason").and_then(serde_json::Value::as_str) == Some("seal")
}
