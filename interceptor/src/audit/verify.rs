//! [`verify()`]: re-checks the whole log and names the first bad record.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use ed25519_dalek::VerifyingKey;

use super::{
    AuditError, Checkpoint, CheckpointReason,
    keys::{self, fingerprint, load_public_key},
    record::{self, GENESIS, LineError},
    segment::{self, Line, SegmentFile},
};

/// What is wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Its content does not match its hash, or it is not a record.
    Modified,
    /// Records are missing: a seq gap, or `prev` does not link.
    Removed,
    /// Records are out of order (seq or time).
    Reordered,
    /// The log was cut: a record cut mid-way, a segment without its seal, a
    /// missing segment.
    Truncated,
    /// A checkpoint's signature does not verify with the key.
    BadSignature,
}

impl Problem {
    /// Stable name (`modified`, `removed`, `reordered`, `truncated`, `bad_signature`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modified => "modified",
            Self::Removed => "removed",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
            Self::BadSignature => "bad_signature",
        }
    }

    /// Exit code of `audit verify` for it: 10 modified, 11 removed,
    /// 12 reordered, 13 truncated, 14 bad signature.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Modified => 10,
            Self::Removed => 11,
            Self::Reordered => 12,
            Self::Truncated => 13,
            Self::BadSignature => 14,
        }
    }
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong.
    pub problem: Problem,
    /// The segment file.
    pub segment: PathBuf,
    /// 1-based line, when the problem is at a record.
    pub line: Option<usize>,
    /// Byte offset of that line.
    pub offset: Option<u64>,
    /// The seq of the record (as it says), or the first missing seq.
    pub seq: Option<u64>,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.problem.as_str(), self.segment.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(offset) = self.offset {
            write!(f, " (byte {offset})")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Why the log is not intact, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was altered: the first bad record.
    #[error("{0}")]
    Tampered(Box<Finding>),
    /// The log could not be checked (no such directory, no key...).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Where the key that checked the signatures came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--pubkey`: a copy kept elsewhere.
    Given(PathBuf),
    /// `keys/host.pub` of the directory checked, which whoever can rewrite
    /// the log can also replace.
    LogDirectory(PathBuf),
}

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files.
    pub segments: usize,
    /// Records.
    pub records: u64,
    /// Last seq.
    pub last_seq: u64,
    /// First and last timestamps.
    pub first_ts: Option<String>,
    /// Last timestamp.
    pub last_ts: Option<String>,
    /// Checkpoints (signatures checked).
    pub checkpoints: u64,
    /// Seq of the last checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Records after the last checkpoint: chained, not yet signed.
    pub unsigned: u64,
    /// Hosts named by the checkpoints.
    pub hosts: Vec<String>,
    /// `SHA256:...` of the key used.
    pub key_fingerprint: String,
    /// Where it came from.
    pub key_source: KeySource,
}

/// A record the log must still hold: kept elsewhere (a witness file, a
/// checkpoint shipped off the host), it shows a log cut back or restored
/// from an older copy, which verifies as intact on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The log reaches at least this seq ...
    pub seq: u64,
    /// ... and the record there has this hash (hex), if given.
    pub hash: Option<String>,
}

impl Expect {
    /// `SEQ` or `SEQ:HASH`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (seq, hash) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b.to_ascii_lowercase())),
            None => (s, None),
        };
        let seq = seq
            .parse()
            .map_err(|_| format!("`{s}`: expected SEQ or SEQ:HASH"))?;
        if hash
            .as_ref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("`{s}`: the hash is 64 hex digits"));
        }
        Ok(Self { seq, hash })
    }

    /// The checkpoint in a witness file (`[audit] witness`): its head.
    pub fn from_witness(path: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("cannot read the witness {}: {e}", path.display()))?;
        let cp: Checkpoint = serde_json::from_str(&text)
            .map_err(|e| format!("the witness {} is not a checkpoint: {e}", path.display()))?;
        Ok(Self {
            seq: cp.head_seq,
            hash: Some(cp.head_hash),
        })
    }
}

/// Checks the log in `dir` with `pubkey` (a file: SPKI PEM, or 32 bytes in
/// base64/hex), or else the directory's own `keys/host.pub`.
pub fn verify(dir: &Path, pubkey: Option<&Path>) -> Result<VerifyReport, VerifyError> {
    verify_expecting(dir, pubkey, None)
}

/// [`verify`], and the log must hold what `expect` says.
pub fn verify_expecting(
    dir: &Path,
    pubkey: Option<&Path>,
    expect: Option<&Expect>,
) -> Result<VerifyReport, VerifyError> {
    let key_source = pubkey.map_or_else(
        || KeySource::LogDirectory(keys::public_path(dir)),
        |p| KeySource::Given(p.to_owned()),
    );
    let key = match &key_source {
        KeySource::Given(p) | KeySource::LogDirectory(p) => load_public_key(p)?,
    };
    let segments = segment::list(dir)?;
    if segments.is_empty() {
        let why = if dir.is_dir() {
            "no segment-*.log files here"
        } else {
            "no such directory"
        };
        return Err(
            AuditError::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, why)).into(),
        );
    }
    let mut v = Verifier {
        key,
        expect: expect.cloned(),
        expect_met: false,
        expected: 1,
        prev: GENESIS.to_owned(),
        last_time: None,
        report: VerifyReport {
            segments: segments.len(),
            records: 0,
            last_seq: 0,
            first_ts: None,
            last_ts: None,
            checkpoints: 0,
            last_checkpoint: None,
            unsigned: 0,
            hosts: Vec::new(),
            key_fingerprint: fingerprint(&key),
            key_source,
        },
    };
    for (i, seg) in segments.iter().enumerate() {
        v.segment(seg, i + 1 == segments.len())
            .map_err(|f| VerifyError::Tampered(Box::new(f)))?;
    }
    v.report.unsigned = v.report.last_seq - v.report.last_checkpoint.unwrap_or(0);
    if let Some(e) = &v.expect
        && !v.expect_met
    {
        let last = segments.last().expect("not empty");
        return Err(VerifyError::Tampered(Box::new(Finding {
            problem: Problem::Truncated,
            segment: last.path.clone(),
            line: None,
            offset: None,
            seq: Some(e.seq),
            detail: format!(
                "the log ends at seq {} but must reach seq {} (a checkpoint kept elsewhere): it was cut back, its newest segment deleted, or an older copy restored",
                v.report.last_seq, e.seq
            ),
        })));
    }
    Ok(v.report)
}

struct Verifier {
    key: VerifyingKey,
    expect: Option<Expect>,
    expect_met: bool,
    /// Seq the next record must have.
    expected: u64,
    /// Hash the next record's `prev` must be.
    prev: String,
    last_time: Option<SystemTime>,
    report: VerifyReport,
}

impl Verifier {
    fn segment(&mut self, seg: &SegmentFile, last: bool) -> Result<(), Finding> {
        let at_file = |problem, seq, detail: String| Finding {
            problem,
            segment: seg.path.clone(),
            line: None,
            offset: None,
            seq,
            detail,
        };
        if seg.first_seq > self.expected {
            let what = if self.expected == 1 {
                "the log's first segment(s) are missing".to_owned()
            } else {
                format!("segment {} is missing", segment::file_name(self.expected))
            };
            return Err(at_file(
                Problem::Truncated,
                Some(self.expected),
                format!(
                    "records {}..{} are missing: {what}",
                    self.expected,
                    seg.first_seq - 1
                ),
            ));
        }
        if seg.first_seq < self.expected {
            return Err(at_file(
                Problem::Reordered,
                Some(seg.first_seq),
                format!(
                    "segment starts at seq {} but the log already reached seq {}",
                    seg.first_seq,
                    self.expected - 1
                ),
            ));
        }
        let data = fs::read(&seg.path)
            .map_err(|e| at_file(Problem::Truncated, None, format!("cannot read: {e}")))?;
        let (lines, tail) = segment::lines(&data);
        let mut sealed = false;
        for (i, line) in lines.iter().enumerate() {
            let at = |problem, seq, detail: String| Finding {
                problem,
                segment: seg.path.clone(),
                line: Some(line.number),
                offset: Some(line.offset),
                seq,
                detail,
            };
            if sealed {
                return Err(at(
                    Problem::Modified,
                    record::peek_seq(line.bytes),
                    "a record after the segment's seal".into(),
                ));
            }
            let r = match record::decode(line.bytes) {
                Ok(r) => r,
                Err(e @ LineError::HashMismatch { .. }) => {
                    return Err(at(
                        Problem::Modified,
                        record::peek_seq(line.bytes),
                        format!("record content changed ({e})"),
                    ));
                }
                Err(e) => {
                    return Err(at(
                        Problem::Modified,
                        record::peek_seq(line.bytes),
                        e.to_string(),
                    ));
                }
            };
            if r.seq > self.expected {
                let later = lines[i + 1..]
                    .iter()
                    .any(|l| record::peek_seq(l.bytes) == Some(self.expected));
                return Err(if later {
                    at(
                        Problem::Reordered,
                        Some(r.seq),
                        format!("seq {} comes before seq {}", r.seq, self.expected),
                    )
                } else {
                    at(
                        Problem::Removed,
                        Some(self.expected),
                        format!("records {}..{} are missing", self.expected, r.seq - 1),
                    )
                });
            }
            if r.seq < self.expected {
                return Err(at(
                    Problem::Reordered,
                    Some(r.seq),
                    format!(
                        "seq {} after seq {} (moved or duplicated)",
                        r.seq,
                        self.expected - 1
                    ),
                ));
            }
            if r.prev != self.prev {
                return Err(at(
                    Problem::Removed,
                    Some(r.seq),
                    format!(
                        "prev does not match the hash of seq {}: a record before it was removed or replaced and the chain re-hashed",
                        r.seq - 1
                    ),
                ));
            }
            if self.last_time.is_some_and(|t| r.time < t) {
                return Err(at(
                    Problem::Reordered,
                    Some(r.seq),
                    format!("timestamp {} goes back in time", r.ts),
                ));
            }
            if r.kind == "checkpoint" {
                let cp: Checkpoint = serde_json::from_value(r.event.clone()).map_err(|e| {
                    at(
                        Problem::Modified,
                        Some(r.seq),
                        format!("malformed checkpoint: {e}"),
                    )
                })?;
                self.checkpoint(&cp, r.seq)
                    .map_err(|(p, d)| at(p, Some(r.seq), d))?;
                sealed = cp.reason == CheckpointReason::Seal;
            }
            if let Some(e) = &self.expect
                && e.seq == r.seq
            {
                if e.hash.as_ref().is_some_and(|h| *h != r.hash) {
                    return Err(at(
                        Problem::Modified,
                        Some(r.seq),
                        format!(
                            "the record at seq {} is not the one a checkpoint kept elsewhere names (hash {} instead of {}): the log was rewritten or replaced from there on",
                            r.seq,
                            r.hash,
                            e.hash.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                self.expect_met = true;
            }
            self.accept(&r);
        }
        if let Some(tail) = tail {
            let live = if last {
                "; if the daemon is running this may be a write in progress, run verify again"
            } else {
                ""
            };
            return Err(self.cut(
                seg,
                &tail,
                format!(
                    "last record cut mid-way ({} bytes without end){live}",
                    tail.bytes.len()
                ),
            ));
        }
        if !last && !sealed {
            return Err(at_file(
                Problem::Truncated,
                Some(self.expected),
                "segment does not end with its signed seal: records were cut from its end".into(),
            ));
        }
        Ok(())
    }

    fn checkpoint(&mut self, cp: &Checkpoint, seq: u64) -> Result<(), (Problem, String)> {
        if cp.head_seq + 1 != seq {
            return Err((
                Problem::Modified,
                format!(
                    "checkpoint names seq {} as its head, not seq {}",
                    cp.head_seq,
                    seq - 1
                ),
            ));
        }
        if cp.head_hash != self.prev {
            return Err((
                Problem::Modified,
                format!(
                    "checkpoint signs head hash {} but the chain has {}: records up to seq {} were altered and re-hashed",
                    cp.head_hash,
                    self.prev,
                    seq - 1
                ),
            ));
        }
        if !keys::verify_checkpoint(&self.key, cp) {
            return Err((
                Problem::BadSignature,
                format!(
                    "checkpoint signature (key {}) does not verify with key {}",
                    cp.key, self.report.key_fingerprint
                ),
            ));
        }
        self.report.checkpoints += 1;
        self.report.last_checkpoint = Some(seq);
        if !self.report.hosts.contains(&cp.host) {
            self.report.hosts.push(cp.host.clone());
        }
        Ok(())
    }

    fn accept(&mut self, r: &record::Record) {
        self.expected = r.seq + 1;
        self.prev.clone_from(&r.hash);
        self.last_time = Some(r.time);
        self.report.records += 1;
        self.report.last_seq = r.seq;
        if self.report.first_ts.is_none() {
            self.report.first_ts = Some(r.ts.clone());
        }
        self.report.last_ts = Some(r.ts.clone());
    }

    fn cut(&self, seg: &SegmentFile, tail: &Line<'_>, detail: String) -> Finding {
        Finding {
            problem: Problem::Truncated,
            segment: seg.path.clone(),
            line: Some(tail.number),
            offset: Some(tail.offset),
            seq: record::peek_seq(tail.bytes).or(Some(self.expected)),
            detail,
        }
    }
}
