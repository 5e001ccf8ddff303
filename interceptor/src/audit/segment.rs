//! Segment files: `segment-<first seq, 20 digits>.log`, listed in seq order,
//! split into lines.

use std::{
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use super::{AuditError, Record, record};

/// A segment file found in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// Its path.
    pub path: PathBuf,
    /// The seq its name says it starts with.
    pub first_seq: u64,
}

impl SegmentFile {
    /// The file name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

/// The file name of the segment starting at `first_seq`.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("segment-{first_seq:020}.log")
}

/// The first seq a segment file name stands for.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of `dir`, in seq order (an absent directory has none).
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io(dir, e))?;
        if let Some(first_seq) = entry.file_name().to_str().and_then(parse_name) {
            out.push(SegmentFile {
                path: entry.path(),
                first_seq,
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// One `\n`-terminated line of a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// 1-based line number.
    pub number: usize,
    /// Byte offset of its first byte.
    pub offset: u64,
    /// Its bytes, without the `\n`.
    pub bytes: &'a [u8],
}

impl Line<'_> {
    /// Offset just past its `\n`.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64 + 1
    }
}

/// Splits a segment's contents into complete lines and what follows the
/// last `\n` (a record cut mid-way), if anything.
pub(crate) fn lines(data: &[u8]) -> (Vec<Line<'_>>, Option<Line<'_>>) {
    let mut out = Vec::new();
    let mut offset = 0usize;
    let mut rest = data;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        out.push(Line {
            number: out.len() + 1,
            offset: offset as u64,
            bytes: &rest[..nl],
        });
        offset += nl + 1;
        rest = &rest[nl + 1..];
    }
    let tail = (!rest.is_empty()).then(|| Line {
        number: out.len() + 1,
        offset: offset as u64,
        bytes: rest,
    });
    (out, tail)
}

/// Reads every record of the log in `dir`, segment by segment, each record's
/// hash checked (but not the chain: that is [`super::verify()`]'s job).
/// `visit` gets each record and returns `false` to stop. A line that is not
/// a valid record is an error naming segment and line; a record cut
/// mid-way at the very end of the log (a write in progress, or a torn tail
/// the daemon has not repaired yet) is skipped.
pub fn read_records(dir: &Path, mut visit: impl FnMut(&Record) -> bool) -> Result<(), AuditError> {
    let segments = list(dir)?;
    if segments.is_empty() {
        return Err(AuditError::io(
            dir,
            std::io::Error::new(ErrorKind::NotFound, "no audit segments here"),
        ));
    }
    for (i, seg) in segments.iter().enumerate() {
        let data = fs::read(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
        let (lines, tail) = lines(&data);
        if let (Some(tail), false) = (tail, i + 1 == segments.len()) {
            return Err(AuditError::BadRecord {
                path: seg.path.clone(),
                line: tail.number,
                reason: "record cut mid-way".into(),
            });
        }
        for line in lines {
            let rec = record::decode(line.bytes).map_err(|e| AuditError::BadRecord {
                path: seg.path.clone(),
                line: line.number,
                reason: e.to_string(),
            })?;
            if !visit(&rec) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(42), "segment-00000000000000000042.log");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("segment-42.log"), None);
        assert_eq!(parse_name("segment-00000000000000000042.log.bak"), None);
    }

    #[test]
    fn splits_lines_and_tail() {
        let (l, t) = lines(b"ab\ncd\nef");
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[1].number, l[1].offset, l[1].bytes, l[1].end()),
            (2, 3, &b"cd"[..], 6)
        );
        let t = t.unwrap();
        assert_eq!((t.number, t.offset, t.bytes), (3, 6, &b"ef"[..]));
        assert!(lines(b"ab\n").1.is_none());
        assert!(lines(b"").0.is_empty());
    }
}
