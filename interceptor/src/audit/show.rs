//! How records read to a person: `sessions show` and `replay`.
//!
//! Everything printed from a record goes through [`clean`]: the SQL and
//! names come from the workload, which must not be able to send escape
//! sequences to the terminal of whoever reads the log.

use std::{
    fmt::Write as _,
    io::{self, Write},
    time::{Duration, SystemTime},
};

use serde_json::Value;

use super::Record;

/// Control characters (but newline and tab) shown as `\u{..}`.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn opt(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(clean)
}

/// One record as lines of text.
pub(crate) fn describe(r: &Record) -> Vec<String> {
    let e = &r.event;
    let mut out = Vec::new();
    match r.kind.as_str() {
        "session_start" => {
            let a = e.get("attestation").unwrap_or(&Value::Null);
            out.push(format!(
                "session {} started on {}: {} (pid {}, uid {}) identity {}",
                clean(s(e, "session")),
                clean(s(e, "host")),
                clean(s(a, "exe")),
                n(a, "pid"),
                n(a, "uid"),
                opt(e, "identity").unwrap_or_else(|| "-".into()),
            ));
            out.push(format!(
                "  -> target {} database {} as {} via {} from {}{}{}",
                clean(s(e, "target")),
                clean(s(e, "database")),
                clean(s(e, "user")),
                clean(s(e, "route")),
                clean(s(e, "peer")),
                opt(e, "orig_dst")
                    .map(|d| format!(" (to {d})"))
                    .unwrap_or_default(),
                opt(e, "application_name")
                    .map(|a| format!(" application_name {a}"))
                    .unwrap_or_default(),
            ));
        }
        "statement" => {
            let sql = clean(s(e, "sql")).replace('\n', "\n     ");
            out.push(format!(
                "#{} {}: {sql}",
                n(e, "statement"),
                clean(s(e, "protocol"))
            ));
            if let Some(params) = e
                .get("params")
                .and_then(Value::as_array)
                .filter(|p| !p.is_empty())
            {
                let shown: Vec<String> = params
                    .iter()
                    .map(|p| {
                        p.as_str()
                            .map_or_else(|| "NULL".to_owned(), |v| format!("'{}'", clean(v)))
                    })
                    .collect();
                out.push(format!("   params: {}", shown.join(", ")));
            }
            let d = e.get("decision").unwrap_or(&Value::Null);
            out.push(format!(
                "   decision: {} (rule {}): {}",
                clean(s(d, "action")),
                clean(s(d, "rule")),
                clean(s(d, "reason"))
            ));
        }
        "result" => {
            let outcome = match (opt(e, "error_sqlstate"), opt(e, "command_tag")) {
                (Some(state), _) => {
                    format!(
                        "error {state}{}",
                        opt(e, "error_message")
                            .map(|m| format!(" {m}"))
                            .unwrap_or_default()
                    )
                }
                (None, Some(tag)) => tag,
                (None, None) => "-".into(),
            };
            let masked: Vec<String> = e
                .get("masked_columns")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
                .unwrap_or_default();
            out.push(format!(
                "#{} result: {outcome}, {} rows, {} bytes{}, {:.3} ms",
                n(e, "statement"),
                n(e, "rows"),
                n(e, "bytes"),
                if masked.is_empty() {
                    String::new()
                } else {
                    format!(", masked: {}", masked.join(", "))
                },
                Duration::from_micros(n(e, "duration_us")).as_secs_f64() * 1000.0,
            ));
        }
        "approval" => {
            let d = e.get("detail").cloned().unwrap_or_default();
            let extra = match s(e, "decision") {
                "requested" => format!(
                    " ({} mode, rule {}, expires {}): {}",
                    clean(s(&d, "mode")),
                    clean(s(&d, "rule")),
                    clean(s(&d, "expires_at")),
                    clean(s(&d, "sql"))
                ),
                "notified" | "notify_failed" => format!(
                    " ({} to {}{})",
                    clean(s(&d, "event")),
                    clean(s(&d, "url")),
                    opt(&d, "error")
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                ),
                "approved" | "approval_recorded" | "grant_used" => d
                    .get("scope")
                    .map(|sc| format!(" (scope {})", clean(s(sc, "kind"))))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            out.push(format!(
                "approval {}{}: {}{}{}{}",
                clean(s(e, "request")),
                e.get("statement")
                    .and_then(Value::as_u64)
                    .map(|n| format!(" for #{n}"))
                    .unwrap_or_default(),
                clean(s(e, "decision")),
                opt(e, "approver")
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default(),
                extra,
                opt(e, "reason")
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
            ));
        }
        "session_end" => out.push(format!(
            "session ended: {}{} after {} ms, {} statements, {} refused, {} bytes in, {} bytes out",
            clean(s(e, "reason")),
            opt(e, "detail")
                .filter(|d| !d.is_empty())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            n(e, "duration_ms"),
            n(e, "statements"),
            n(e, "refused"),
            n(e, "bytes_in"),
            n(e, "bytes_out"),
        )),
        other => out.push(format!("{} {}", clean(other), clean(&e.to_string()))),
    }
    out
}

/// `sessions show`: every record of the session with its time and seq, the
/// attestation in full.
pub(crate) fn show(records: &[Record], out: &mut dyn Write) -> io::Result<()> {
    for r in records {
        let mut lines = describe(r).into_iter();
        writeln!(
            out,
            "{}  seq {:<8} {}",
            r.ts,
            r.seq,
            lines.next().unwrap_or_default()
        )?;
        for l in lines {
            writeln!(out, "{:49}{l}", "")?;
        }
        if r.kind == "session_start"
            && let Some(a) = r.event.get("attestation").filter(|a| !a.is_null())
        {
            let pretty = serde_json::to_string_pretty(a).unwrap_or_default();
            for l in clean(&pretty).lines() {
                writeln!(out, "{:51}{l}", "")?;
            }
        }
    }
    Ok(())
}

/// `replay`: the session's records with their original spacing in time
/// divided by `speed` (0 = no waiting), each prefixed with the time since
/// the session started. `sleep` waits (a parameter so tests need not).
pub(crate) fn replay(
    records: &[Record],
    speed: f64,
    out: &mut dyn Write,
    sleep: &mut dyn FnMut(Duration),
) -> io::Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let t0 = first.time;
    let mut prev: SystemTime = t0;
    for r in records {
        let gap = r.time.duration_since(prev).unwrap_or_default();
        if speed > 0.0 && !gap.is_zero() {
            sleep(gap.div_f64(speed));
        }
        prev = r.time;
        let at = r.time.duration_since(t0).unwrap_or_default().as_secs_f64();
        let mut lines = describe(r).into_iter();
        writeln!(out, "[+{at:>9.3}s] {}", lines.next().unwrap_or_default())?;
        for l in lines {
            writeln!(out, "{:13}{l}", "")?;
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_neutralised() {
        assert_eq!(clean("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\nc");
    }
}
