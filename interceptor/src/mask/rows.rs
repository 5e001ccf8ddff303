//! Rewriting what the server sends on its way to the client: `DataRow`s,
//! COPY data (text, CSV, binary), errors and notices that echo values,
//! `ParameterStatus` reports and notification payloads.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use bytes::BufMut;
use regex::Regex;

use super::{
    detect::Detectors,
    lineage::{CopyFormat, CopyLayout},
    plan::{ColMask, StmtPlan},
    policy::Profile,
    strategy::Strategy,
};
use crate::wire::{Frame, tag::backend as be};

/// Type OIDs whose values are text in both formats.
const TEXT_TYPES: &[u32] = &[25, 1043, 1042, 19, 705, 18, 142];
const JSON: u32 = 114;
const JSONB: u32 = 3802;

/// Type OIDs that cannot hold a value any built-in detector finds (too few
/// digits, no separators): int2, int4, bool, float4/8, date, time(tz),
/// timestamp(tz), interval, oid, uuid. Numbers that can (int8, numeric)
/// are scanned.
const UNSCANNED_TYPES: &[u32] = &[
    21, 23, 16, 700, 701, 1082, 1083, 1266, 1114, 1184, 1186, 26, 2950,
];

fn scannable(format: i16, ty: u32) -> bool {
    if TEXT_TYPES.contains(&ty) || ty == JSON || ty == JSONB {
        return true;
    }
    format == 0 && !UNSCANNED_TYPES.contains(&ty)
}

/// What was masked in one result, for the audit record.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Per column index: (column name, mask, values masked).
    pub columns: BTreeMap<usize, (String, ColMask, u64)>,
    /// Detector hits by category.
    pub detected: BTreeMap<String, u64>,
}

impl Stats {
    /// Counts a masked value of column `i`.
    fn count(&mut self, i: usize, first: impl FnOnce() -> (String, ColMask)) {
        match self.columns.get_mut(&i) {
            Some(e) => e.2 += 1,
            None => {
                let (name, m) = first();
                self.columns.insert(i, (name, m, 1));
            }
        }
    }

    /// One line per masked column or detector category.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .columns
            .values()
            .map(|(name, m, n)| {
                format!(
                    "{name}: {} as {} from {} ({n} values)",
                    m.strategy, m.category, m.why
                )
            })
            .collect();
        out.extend(
            self.detected
                .iter()
                .map(|(cat, n)| format!("content detector: {cat} ({n} values)")),
        );
        out
    }

    /// Whether anything was masked.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detected.is_empty()
    }
}

/// The shape of a result being sent: its plan, column formats and types.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Column masks.
    pub plan: StmtPlan,
    /// Format code per column (0 text, 1 binary).
    pub formats: Vec<i16>,
    /// Type OID per column (0: unknown).
    pub types: Vec<u32>,
    /// Column names (from `RowDescription`; may be empty).
    pub names: Vec<String>,
}

impl Shape {
    fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }
}

/// Masks values for one identity.
#[derive(Clone)]
pub struct Masker {
    profile: Arc<Profile>,
    detectors: Option<Arc<Detectors>>,
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("profile", &self.profile)
            .field("detectors", &self.detectors.is_some())
            .finish_non_exhaustive()
    }
}

impl Masker {
    /// A masker for `profile` with `detectors` (ignored when the profile
    /// switches them off) and the token key.
    pub fn new(profile: Arc<Profile>, detectors: Arc<Detectors>, key: Arc<[u8; 32]>) -> Self {
        let detectors = (profile.detectors && !detectors.is_empty()).then_some(detectors);
        Self {
            profile,
            detectors,
            key,
        }
    }

    /// Whether rows with a clean plan pass untouched.
    pub fn passes_clean(&self) -> bool {
        self.detectors.is_none()
    }

    /// A masked value in the given format and type; `None` = NULL.
    fn mask_value(&self, m: &ColMask, format: i16, ty: u32, value: &[u8]) -> Option<Vec<u8>> {
        let text_like = TEXT_TYPES.contains(&ty) || (ty == 0 && format == 0);
        let as_text = |v: &[u8]| {
            m.strategy
                .apply(&m.category, &String::from_utf8_lossy(v), &self.key)
        };
        match (format, ty) {
            _ if m.strategy == Strategy::Null => None,
            (_, JSON) | (0, JSONB) => {
                let masked = as_text(value)?;
                Some(serde_json::Value::String(masked).to_string().into_bytes())
            }
            (1, JSONB) => {
                let masked = as_text(value.get(1..).unwrap_or_default())?;
                let mut out = vec![1u8];
                out.extend(serde_json::Value::String(masked).to_string().into_bytes());
                Some(out)
            }
            _ if text_like => as_text(value).map(String::into_bytes),
            // A number, date, array, composite... cannot carry a
            // redaction text: NULL.
            _ => None,
        }
    }

    /// Detectors over one text value; `None` = unchanged.
    fn detect(&self, value: &str, stats: &mut Stats) -> Option<String> {
        let d = self.detectors.as_ref()?;
        let hits = d.scan(value);
        if hits.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(value.len());
        let mut at = 0;
        let mut changed = false;
        for h in hits {
            let s = self.profile.strategy(h.category);
            if s == Strategy::Raw {
                continue;
            }
            out.push_str(&value[at..h.start]);
            let hit = &value[h.start..h.end];
            // A part of a value cannot be NULL: redacted.
            let s = if s == Strategy::Null {
                Strategy::Redact
            } else {
                s
            };
            out.push_str(&s.apply(h.category, hit, &self.key).unwrap_or_default());
            at = h.end;
            changed = true;
            *stats.detected.entry(h.category.to_owned()).or_default() += 1;
        }
        if !changed {
            return None;
        }
        out.push_str(&value[at..]);
        Some(out)
    }

    /// Detectors over free text (`ParameterStatus` values, notification
    /// payloads, error fields).
    pub fn text<'a>(&self, value: &'a str) -> Cow<'a, str> {
        match self.detect(value, &mut Stats::default()) {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(value),
        }
    }

    /// A `DataRow` with its values masked. One pass over the row; nothing
    /// is allocated for a row that passes unchanged, and a changed row is
    /// written once, straight into its frame.
    pub fn data_row(&self, shape: &Shape, frame: Frame, stats: &mut Stats) -> Frame {
        if shape.plan.is_clean() && self.detectors.is_none() {
            return frame;
        }
        let body = frame.body();
        let Some(values) = crate::wire::values::data_row(body) else {
            // Not a well-formed row: nothing of it may pass.
            return Frame::new(be::DATA_ROW, &0u16.to_be_bytes());
        };
        let n = values.len();
        // Masked values are written into one scratch buffer: (column,
        // range in scratch), `None` = NULL.
        let mut scratch: Vec<u8> = Vec::with_capacity(128);
        let mut replaced: Vec<(usize, Option<(usize, usize)>)> = Vec::with_capacity(4);
        for (i, value) in values.iter().enumerate() {
            let Some(bytes) = *value else { continue };
            let format = shape.format(i);
            let ty = shape.types.get(i).copied().unwrap_or(0);
            if let Some(m) = shape.plan.column(i, n) {
                stats.count(i, || {
                    (
                        shape
                            .names
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| format!("column {}", i + 1)),
                        m.clone(),
                    )
                });
                let start = scratch.len();
                let text_like = TEXT_TYPES.contains(&ty) || (ty == 0 && format == 0);
                let written = if text_like {
                    m.strategy
                        .apply_into(&m.category, bytes, &self.key, &mut scratch)
                } else {
                    match self.mask_value(m, format, ty, bytes) {
                        Some(v) => {
                            scratch.extend(v);
                            true
                        }
                        None => false,
                    }
                };
                replaced.push((i, written.then_some((start, scratch.len()))));
            } else if self.detectors.is_some() && scannable(format, ty) {
                let (prefix, text) = if format == 1 && ty == JSONB && !bytes.is_empty() {
                    bytes.split_at(1)
                } else {
                    (&bytes[..0], bytes)
                };
                if let Some(s) = std::str::from_utf8(text)
                    .ok()
                    .and_then(|s| self.detect(s, stats))
                {
                    let start = scratch.len();
                    scratch.extend_from_slice(prefix);
                    scratch.extend_from_slice(s.as_bytes());
                    replaced.push((i, Some((start, scratch.len()))));
                }
            }
        }
        if replaced.is_empty() {
            return frame;
        }
        Frame::build(be::DATA_ROW, body.len() + 32, |out| {
            out.put_u16(n as u16);
            let mut next = replaced.iter().peekable();
            for (i, original) in values.iter().enumerate() {
                let value: Option<&[u8]> = match next.peek() {
                    Some((j, v)) if *j == i => {
                        next.next();
                        v.map(|(s, e)| &scratch[s..e])
                    }
                    _ => *original,
                };
                match value {
                    None => out.put_i32(-1),
                    Some(b) => {
                        out.put_i32(b.len() as i32);
                        out.put_slice(b);
                    }
                }
            }
        })
    }

    /// One COPY OUT data message with its fields masked.
    pub fn copy_data(&self, copy: &mut CopyOut, frame: Frame, stats: &mut Stats) -> Frame {
        if copy.plan.is_clean() && self.detectors.is_none() {
            return frame;
        }
        if copy.header && copy.layout.format != CopyFormat::Binary {
            // Column names, not values.
            copy.header = false;
            return frame;
        }
        let body = frame.body();
        let out = match copy.layout.format {
            CopyFormat::Text => self.copy_text(copy, body, stats),
            CopyFormat::Csv => self.copy_csv(copy, body, stats),
            CopyFormat::Binary => self.copy_binary(copy, body, stats),
        };
        match out {
            Some(b) => Frame::new(be::COPY_DATA, &b),
            None => frame,
        }
    }

    fn field_mask(&self, copy: &CopyOut, i: usize, n: usize, stats: &mut Stats) -> Option<ColMask> {
        let m = copy.plan.column(i, n)?.clone();
        let e = stats
            .columns
            .entry(i)
            .or_insert_with(|| (format!("column {}", i + 1), m.clone(), 0));
        e.2 += 1;
        Some(m)
    }

    fn copy_text(&self, copy: &CopyOut, body: &[u8], stats: &mut Stats) -> Option<Vec<u8>> {
        let l = &copy.layout;
        let line = body.strip_suffix(b"\n").unwrap_or(body);
        let fields = split_text(line, l.delimiter);
        let n = fields.len();
        let mut changed = false;
        let mut out = Vec::with_capacity(body.len() + 16);
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(l.delimiter);
            }
            let new = if *f == l.null.as_slice() {
                None
            } else if let Some(m) = self.field_mask(copy, i, n, stats) {
                Some(
                    match m.strategy.apply(&m.category, &unescape_text(f), &self.key) {
                        Some(v) => escape_text(&v, l.delimiter),
                        None => l.null.clone(),
                    },
                )
            } else {
                self.detect(&unescape_text(f), stats)
                    .map(|v| escape_text(&v, l.delimiter))
            };
            match new {
                Some(v) => {
                    out.extend(v);
                    changed = true;
                }
                None => out.extend_from_slice(f),
            }
        }
        out.push(b'\n');
        changed.then_some(out)
    }

    fn copy_csv(&self, copy: &CopyOut, body: &[u8], stats: &mut Stats) -> Option<Vec<u8>> {
        let text = String::from_utf8_lossy(body);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let l = &copy.layout;
        let (delimiter, quote, escape) = (
            char::from(l.delimiter),
            char::from(l.quote),
            char::from(l.escape),
        );
        let null = String::from_utf8_lossy(&l.null);
        let fields = split_csv(line, delimiter, quote, escape);
        let n = fields.len();
        let mut changed = false;
        let mut parts = Vec::with_capacity(n);
        let requote = |v: &str| quote_csv(v, quote, escape);
        for (i, (value, quoted)) in fields.iter().enumerate() {
            let is_null = !quoted && *value == null;
            let new = if is_null {
                None
            } else if let Some(m) = self.field_mask(copy, i, n, stats) {
                Some(
                    m.strategy
                        .apply(&m.category, value, &self.key)
                        .map_or_else(|| null.clone().into_owned(), |v| requote(&v)),
                )
            } else {
                self.detect(value, stats).map(|v| requote(&v))
            };
            match new {
                Some(v) => {
                    parts.push(v);
                    changed = true;
                }
                None if *quoted => parts.push(requote(value)),
                None => parts.push(value.clone()),
            }
        }
        changed
            .then(|| format!("{}\n", parts.join(delimiter.encode_utf8(&mut [0; 4]))).into_bytes())
    }

    fn copy_binary(&self, copy: &mut CopyOut, body: &[u8], stats: &mut Stats) -> Option<Vec<u8>> {
        const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
        let mut at = 0;
        let mut out = Vec::with_capacity(body.len() + 16);
        if !copy.header_seen {
            if !body.starts_with(SIGNATURE) || body.len() < SIGNATURE.len() + 8 {
                return Some(Vec::new());
            }
            let ext = u32::from_be_bytes(
                body[SIGNATURE.len() + 4..SIGNATURE.len() + 8]
                    .try_into()
                    .ok()?,
            ) as usize;
            at = SIGNATURE.len() + 8 + ext;
            out.extend_from_slice(body.get(..at)?);
            copy.header_seen = true;
        }
        let mut changed = false;
        while at + 2 <= body.len() {
            let count = i16::from_be_bytes(body[at..at + 2].try_into().ok()?);
            out.extend_from_slice(&body[at..at + 2]);
            at += 2;
            if count < 0 {
                break; // trailer
            }
            let n = count as usize;
            for i in 0..n {
                let Some(len) = body
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_be_bytes)
                else {
                    // Truncated: nothing of it may pass.
                    return Some(Vec::new());
                };
                at += 4;
                if len < 0 {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    continue;
                }
                let Some(v) = body.get(at..at + len as usize) else {
                    return Some(Vec::new());
                };
                at += len as usize;
                let new = if let Some(m) = self.field_mask(copy, i, n, stats) {
                    // Types are unknown in binary COPY: text-looking values
                    // get the strategy, anything else NULL.
                    let ty = if std::str::from_utf8(v).is_ok() {
                        25
                    } else {
                        0
                    };
                    Some(if ty == 25 {
                        self.mask_value(&m, 1, 25, v)
                    } else {
                        None
                    })
                } else {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| self.detect(s, stats))
                        .map(|s| Some(s.into_bytes()))
                };
                match new {
                    Some(Some(b)) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend(b);
                        changed = true;
                    }
                    Some(None) => {
                        out.extend_from_slice(&(-1i32).to_be_bytes());
                        changed = true;
                    }
                    None => {
                        out.extend_from_slice(&len.to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        changed.then_some(out)
    }

    /// An `ErrorResponse` or `NoticeResponse` with echoed values masked. With
    /// `sensitive`, values the server quotes back (a unique violation's
    /// key, a failing row, invalid input) are redacted whatever they are.
    pub fn error_fields(&self, frame: Frame, sensitive: bool) -> Frame {
        if !sensitive && self.detectors.is_none() {
            return frame;
        }
        let body = frame.body();
        let mut out = Vec::with_capacity(body.len());
        let mut changed = false;
        let mut at = 0;
        while at < body.len() && body[at] != 0 {
            let code = body[at];
            let Some(end) = body[at + 1..]
                .iter()
                .position(|b| *b == 0)
                .map(|p| at + 1 + p)
            else {
                break;
            };
            let value = String::from_utf8_lossy(&body[at + 1..end]);
            let mut v: Cow<'_, str> = value.clone();
            if matches!(code, b'M' | b'D' | b'H' | b'W' | b'q' | b'P' | b'p') {
                if sensitive {
                    v = Cow::Owned(redact_echoes(code, &v));
                }
                if let Cow::Owned(s) = self.text(&v) {
                    v = Cow::Owned(s);
                }
            }
            changed |= v != value;
            out.push(code);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
            at = end + 1;
        }
        out.push(0);
        if changed {
            Frame::new(frame.tag(), &out)
        } else {
            frame
        }
    }

    /// A `ParameterStatus` with its value scanned.
    pub fn parameter_status(&self, frame: Frame) -> Frame {
        if self.detectors.is_none() {
            return frame;
        }
        let body = frame.body();
        let Some(nul) = body.iter().position(|b| *b == 0) else {
            return frame;
        };
        let value = String::from_utf8_lossy(
            body[nul + 1..]
                .strip_suffix(&[0])
                .unwrap_or(&body[nul + 1..]),
        );
        match self.text(&value) {
            Cow::Borrowed(_) => frame,
            Cow::Owned(v) => {
                let mut out = body[..=nul].to_vec();
                out.extend_from_slice(v.as_bytes());
                out.push(0);
                Frame::new(frame.tag(), &out)
            }
        }
    }

    /// A `NotificationResponse` with its payload scanned.
    pub fn notification(&self, frame: Frame) -> Frame {
        if self.detectors.is_none() {
            return frame;
        }
        let body = frame.body();
        let Some(ch_end) = body
            .get(4..)
            .and_then(|b| b.iter().position(|c| *c == 0))
            .map(|p| 4 + p)
        else {
            return frame;
        };
        let payload = &body[ch_end + 1..];
        let payload = String::from_utf8_lossy(payload.strip_suffix(&[0]).unwrap_or(payload));
        match self.text(&payload) {
            Cow::Borrowed(_) => frame,
            Cow::Owned(v) => {
                let mut out = body[..=ch_end].to_vec();
                out.extend_from_slice(v.as_bytes());
                out.push(0);
                Frame::new(frame.tag(), &out)
            }
        }
    }
}

/// A COPY OUT in progress.
#[derive(Debug, Clone)]
pub struct CopyOut {
    /// How its rows are laid out.
    pub layout: CopyLayout,
    /// Column masks.
    pub plan: StmtPlan,
    header_seen: bool,
    /// The header line (`HEADER`) is still to come.
    header: bool,
}

impl CopyOut {
    /// A COPY OUT laid out as `layout`, masked by `plan`.
    pub fn new(layout: CopyLayout, plan: StmtPlan) -> Self {
        let header = layout.header;
        Self {
            layout,
            plan,
            header_seen: false,
            header,
        }
    }
}

fn redact_echoes(code: u8, v: &str) -> String {
    use std::sync::OnceLock;
    static KEY: OnceLock<Regex> = OnceLock::new();
    static ROW: OnceLock<Regex> = OnceLock::new();
    static QUOTED: OnceLock<Regex> = OnceLock::new();
    let key = KEY.get_or_init(|| Regex::new(r"\)=\((?s:.*)\)").expect("compiles"));
    let row =
        ROW.get_or_init(|| Regex::new(r"(?s)(Failing row contains) \(.*\)").expect("compiles"));
    let quoted = QUOTED.get_or_init(|| Regex::new(r#"(?s): "(.*)"$"#).expect("compiles"));
    match code {
        b'D' => {
            let v = key.replace_all(v, ")=([REDACTED])");
            row.replace_all(&v, "$1 ([REDACTED])").into_owned()
        }
        b'M' => quoted.replace(v, ": \"[REDACTED]\"").into_owned(),
        _ => v.to_owned(),
    }
}

fn unescape_text(f: &[u8]) -> String {
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        if f[i] == b'\\' && i + 1 < f.len() {
            i += 1;
            out.push(match f[i] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                c => c,
            });
        } else {
            out.push(f[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A text-format line's fields, split at every `delimiter` that no
/// backslash escapes (PostgreSQL writes a delimiter inside a value as
/// `\<delimiter>`), still escaped.
fn split_text(line: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < line.len() {
        if line[i] == b'\\' {
            i += 2;
            continue;
        }
        if line[i] == delimiter {
            out.push(&line[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    out.push(&line[start.min(line.len())..]);
    out
}

/// A value as PostgreSQL's text format writes it (`CopyAttributeOutText`).
fn escape_text(v: &str, delimiter: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            _ if b == delimiter => out.extend_from_slice(&[b'\\', b]),
            _ => out.push(b),
        }
    }
    out
}

/// CSV fields: (value, was quoted), as PostgreSQL's CSV reader splits them
/// (`CopyReadAttributesCSV`): inside quotes, `escape` before `quote` or
/// `escape` takes it literally, and a lone `quote` ends the quoted part.
fn split_csv(line: &str, delimiter: char, quote: char, escape: char) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == escape && chars.peek().is_some_and(|n| *n == quote || *n == escape) {
                cur.push(chars.next().unwrap_or(c));
            } else if c == quote {
                in_quotes = false;
            } else {
                cur.push(c);
            }
        } else if c == quote {
            in_quotes = true;
            quoted = true;
        } else if c == delimiter {
            out.push((std::mem::take(&mut cur), quoted));
            quoted = false;
        } else {
            cur.push(c);
        }
    }
    out.push((cur, quoted));
    out
}

/// A value quoted as PostgreSQL's CSV writer does (`CopyAttributeOutCSV`).
fn quote_csv(v: &str, quote: char, escape: char) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push(quote);
    for c in v.chars() {
        if c == quote || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::detect::builtin;
    use bytes::BytesMut;

    fn masker() -> Masker {
        Masker::new(
            Arc::new(Profile::default()),
            Arc::new(Detectors::new(builtin())),
            Arc::new([1; 32]),
        )
    }

    fn row(values: &[Option<&str>]) -> Frame {
        let mut b = BytesMut::new();
        b.put_u16(values.len() as u16);
        for v in values {
            match v {
                None => b.put_i32(-1),
                Some(s) => {
                    b.put_i32(s.len() as i32);
                    b.put_slice(s.as_bytes());
                }
            }
        }
        Frame::new(be::DATA_ROW, &b)
    }

    fn values(f: &Frame) -> Vec<Option<String>> {
        crate::wire::values::data_row(f.body())
            .unwrap()
            .into_iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    fn ssn_mask(s: Strategy) -> ColMask {
        ColMask {
            strategy: s,
            category: "ssn".into(),
            why: "public.customers.ssn".into(),
        }
    }

    #[test]
    fn data_rows() {
        let m = masker();
        let shape = Shape {
            plan: StmtPlan::Columns(Arc::new(vec![
                None,
                Some(ssn_mask(Strategy::Redact)),
                Some(ssn_mask(Strategy::Redact)),
            ])),
            formats: vec![0, 0, 1],
            types: vec![25, 25, 23],
            names: vec!["name".into(), "ssn".into(), "n".into()],
        };
        let mut stats = Stats::default();
        let out = m.data_row(
            &shape,
            row(&[
                Some("Ann, mail ann@example.com"),
                Some("123-45-6789"),
                Some("\0\0\0\x07"),
            ]),
            &mut stats,
        );
        assert_eq!(
            values(&out),
            [
                Some("Ann, mail [REDACTED:email]".into()),
                Some("[REDACTED:ssn]".into()),
                None
            ]
        );
        assert_eq!(stats.columns.len(), 2);
        assert_eq!(stats.detected.get("email"), Some(&1));
        // A row of a different width: every column suspect.
        let out = m.data_row(&shape, row(&[Some("x"), Some("987-65-4321")]), &mut stats);
        assert_eq!(
            values(&out),
            [Some("[REDACTED:ssn]".into()), Some("[REDACTED:ssn]".into())]
        );
    }

    /// Rows as PostgreSQL writes them under each set of options; the masked
    /// field is found and rebuilt with the same options.
    #[test]
    fn copy_with_options() {
        let m = masker();
        let plan = StmtPlan::Columns(Arc::new(vec![
            None,
            Some(ssn_mask(Strategy::Partial(4))),
            None,
        ]));
        let layout = |format, delimiter, null: &str, quote, escape| CopyLayout {
            format,
            delimiter,
            null: null.as_bytes().to_vec(),
            quote,
            escape,
            header: false,
        };
        let cases: &[(CopyLayout, &[u8], &str)] = &[
            // psycopg2's copy_to: DELIMITER E'\t' NULL '\N'.
            (
                layout(CopyFormat::Text, b'\t', "\\N", b'"', b'"'),
                b"a\\tb\t123-45-6789\t\\N\n",
                "a\\tb\t***-**-6789\t\\N\n",
            ),
            // A delimiter inside a value is escaped; an escaped one is not a split.
            (
                layout(CopyFormat::Text, b'|', "\\N", b'"', b'"'),
                b"x\\|y|123-45-6789|z\n",
                "x\\|y|***-**-6789|z\n",
            ),
            // A NULL string of one's own, in the masked column and beside it.
            (
                layout(CopyFormat::Text, b'|', "NIL", b'"', b'"'),
                b"NIL|NIL|NIL\n",
                "NIL|NIL|NIL\n",
            ),
            (
                layout(CopyFormat::Text, b',', "", b'"', b'"'),
                b"1,987-65-4321,\n",
                "1,***-**-4321,\n",
            ),
            // CSV with ';', a quote and escape of one's own.
            (
                layout(CopyFormat::Csv, b';', "", b'"', b'"'),
                b"\"a;b\";123-45-6789;\n",
                "\"a;b\";\"***-**-6789\";\n",
            ),
            (
                layout(CopyFormat::Csv, b',', "", b'\'', b'\\'),
                b"'it\\'s, x',123-45-6789,''\n",
                "'it\\'s, x','***-**-6789',''\n",
            ),
            (
                layout(CopyFormat::Csv, b',', "NULL", b'"', b'"'),
                b"NULL,\"123-45-6789\",\"NULL\"\n",
                "NULL,\"***-**-6789\",\"NULL\"\n",
            ),
            // A quoted value holding the delimiter and an escaped quote in the masked column.
            (
                layout(CopyFormat::Csv, b'|', "", b'"', b'\\'),
                b"1|\"12\\\"3-45|6789\"|x\n",
                "1|\"**\\\"*-**|6789\"|x\n",
            ),
        ];
        for (l, row, want) in cases {
            let mut stats = Stats::default();
            let mut copy = CopyOut::new(l.clone(), plan.clone());
            let out = m.copy_data(&mut copy, Frame::new(be::COPY_DATA, row), &mut stats);
            assert_eq!(
                String::from_utf8_lossy(out.body()),
                *want,
                "{l:?} {}",
                String::from_utf8_lossy(row)
            );
        }
        // A header line passes as it is, once.
        let mut l = layout(CopyFormat::Csv, b';', "", b'"', b'"');
        l.header = true;
        let mut copy = CopyOut::new(l, plan.clone());
        let mut stats = Stats::default();
        let out = m.copy_data(
            &mut copy,
            Frame::new(be::COPY_DATA, b"id;ssn;x\n"),
            &mut stats,
        );
        assert_eq!(out.body(), b"id;ssn;x\n");
        let out = m.copy_data(
            &mut copy,
            Frame::new(be::COPY_DATA, b"1;123-45-6789;x\n"),
            &mut stats,
        );
        assert_eq!(String::from_utf8_lossy(out.body()), "1;\"***-**-6789\";x\n");
    }

    #[test]
    fn copy_formats() {
        let m = masker();
        let plan = StmtPlan::Columns(Arc::new(vec![None, Some(ssn_mask(Strategy::Partial(4)))]));
        let mut stats = Stats::default();
        let mut text = CopyOut::new(CopyLayout::new(CopyFormat::Text), plan.clone());
        let out = m.copy_data(
            &mut text,
            Frame::new(be::COPY_DATA, b"a\\tb\t123-45-6789\n"),
            &mut stats,
        );
        assert_eq!(out.body(), b"a\\tb\t***-**-6789\n");
        let mut csv = CopyOut::new(CopyLayout::new(CopyFormat::Csv), plan.clone());
        let out = m.copy_data(
            &mut csv,
            Frame::new(be::COPY_DATA, b"\"x,\"\"y\",123-45-6789\n"),
            &mut stats,
        );
        assert_eq!(
            String::from_utf8_lossy(out.body()),
            "\"x,\"\"y\",\"***-**-6789\"\n"
        );
        let mut bin = CopyOut::new(CopyLayout::new(CopyFormat::Binary), plan);
        let mut body = b"PGCOPY\n\xff\r\n\0".to_vec();
        body.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(2i16.to_be_bytes());
        body.extend(1i32.to_be_bytes());
        body.push(b'a');
        body.extend(11i32.to_be_bytes());
        body.extend(b"123-45-6789");
        let out = m.copy_data(&mut bin, Frame::new(be::COPY_DATA, &body), &mut stats);
        assert!(!String::from_utf8_lossy(out.body()).contains("123-45"));
        assert!(String::from_utf8_lossy(out.body()).contains("***-**-6789"));
    }

    #[test]
    fn errors_and_async_messages() {
        let m = masker();
        let err = crate::wire::PgError::error(
            "23505",
            "duplicate key value violates unique constraint \"c_ssn_key\"",
        )
        .with_detail("Key (secret_code)=(hunter2) already exists.")
        .to_frame();
        let out = m.error_fields(err, true);
        let text = String::from_utf8_lossy(out.body()).into_owned();
        assert!(
            !text.contains("hunter2") && text.contains("Key (secret_code)=([REDACTED])"),
            "{text}"
        );
        let err = crate::wire::PgError::error(
            "22P02",
            "invalid input syntax for type integer: \"s3cr3t\"",
        )
        .to_frame();
        assert!(!String::from_utf8_lossy(m.error_fields(err, true).body()).contains("s3cr3t"));
        let mut b = 42i32.to_be_bytes().to_vec();
        b.extend(b"ch\0ssn 123-45-6789\0");
        let out = m.notification(Frame::new(be::NOTIFICATION_RESPONSE, &b));
        assert!(!String::from_utf8_lossy(out.body()).contains("123-45-6789"));
    }
}
