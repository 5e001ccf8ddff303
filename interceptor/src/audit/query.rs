//! Sessions as the security team sees them: one summary per session, the
//! filters of `sessions list`, all records of one session.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::{AuditError, Record, segment::read_records};

/// `sessions list` filters; `None` = any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Sessions that started at or after this time.
    pub since: Option<SystemTime>,
    /// Sessions whose policy identity is this, or whose executable's path
    /// or file name is this.
    pub identity: Option<String>,
    /// Sessions on this host.
    pub host: Option<String>,
    /// Sessions with at least one statement decided so (`allow`, `deny`,
    /// `approve`).
    pub decision: Option<String>,
}

/// One session, summed up from its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// Session id.
    pub session: String,
    /// Host.
    pub host: Option<String>,
    /// `ts` of `session_start` (or of its first record, if the start is gone).
    pub start: String,
    /// `ts` of `session_end`.
    pub end: Option<String>,
    /// Policy identity.
    pub identity: Option<String>,
    /// Executable of the calling process.
    pub exe: Option<String>,
    /// Its uid.
    pub uid: Option<u64>,
    /// Target name.
    pub target: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// Database user from the startup packet.
    pub user: Option<String>,
    /// Statements (from `session_end`, else counted).
    pub statements: u64,
    /// Statements refused (from `session_end`, else the denied ones counted).
    pub refused: u64,
    /// `session_end.reason`; `None` while the session is open (or the
    /// daemon died).
    pub end_reason: Option<String>,
    /// Decisions seen on its statements, sorted.
    pub decisions: Vec<String>,
    #[serde(skip)]
    start_time: SystemTime,
}

impl SessionSummary {
    fn new(id: &str, r: &Record) -> Self {
        Self {
            session: id.to_owned(),
            host: None,
            start: r.ts.clone(),
            end: None,
            identity: None,
            exe: None,
            uid: None,
            target: None,
            database: None,
            user: None,
            statements: 0,
            refused: 0,
            end_reason: None,
            decisions: Vec::new(),
            start_time: r.time,
        }
    }

    fn matches(&self, f: &SessionFilter) -> bool {
        let identity_ok = f.identity.as_ref().is_none_or(|want| {
            self.identity.as_ref() == Some(want)
                || self.exe.as_ref().is_some_and(|exe| {
                    exe == want
                        || Path::new(exe)
                            .file_name()
                            .is_some_and(|n| n == want.as_str())
                })
        });
        f.since.is_none_or(|t| self.start_time >= t)
            && identity_ok
            && f.host
                .as_ref()
                .is_none_or(|h| self.host.as_ref() == Some(h))
            && f.decision
                .as_ref()
                .is_none_or(|d| self.decisions.contains(d))
    }
}

fn str_field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// The sessions of the log in `dir` that pass `filter`, in start order.
pub fn list_sessions(
    dir: &Path,
    filter: &SessionFilter,
) -> Result<Vec<SessionSummary>, AuditError> {
    let mut sessions: Vec<SessionSummary> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut decisions: Vec<BTreeSet<String>> = Vec::new();
    let mut counted: Vec<(u64, u64)> = Vec::new();
    read_records(dir, |r| {
        let Some(id) = r.session() else { return true };
        let i = *index.entry(id.to_owned()).or_insert_with(|| {
            sessions.push(SessionSummary::new(id, r));
            decisions.push(BTreeSet::new());
            counted.push((0, 0));
            sessions.len() - 1
        });
        let s = &mut sessions[i];
        let ev = &r.event;
        match r.kind.as_str() {
            "session_start" => {
                s.start.clone_from(&r.ts);
                s.start_time = r.time;
                s.host = str_field(ev, "host");
                s.identity = str_field(ev, "identity");
                s.target = str_field(ev, "target");
                s.database = str_field(ev, "database");
                s.user = str_field(ev, "user");
                s.exe = ev.get("attestation").and_then(|a| str_field(a, "exe"));
                s.uid = ev
                    .get("attestation")
                    .and_then(|a| a.get("uid"))
                    .and_then(serde_json::Value::as_u64);
            }
            "statement" => {
                let action = ev
                    .get("decision")
                    .and_then(|d| str_field(d, "action"))
                    .unwrap_or_default();
                counted[i].0 += 1;
                if action == "deny" {
                    counted[i].1 += 1;
                }
                decisions[i].insert(action);
            }
            "session_end" => {
                s.end = Some(r.ts.clone());
                s.end_reason = str_field(ev, "reason");
                s.statements = ev
                    .get("statements")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(counted[i].0);
                s.refused = ev
                    .get("refused")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(counted[i].1);
            }
            _ => {}
        }
        true
    })?;
    for (i, s) in sessions.iter_mut().enumerate() {
        if s.end_reason.is_none() {
            (s.statements, s.refused) = counted[i];
        }
        s.decisions = std::mem::take(&mut decisions[i]).into_iter().collect();
    }
    sessions.retain(|s| s.matches(filter));
    Ok(sessions)
}

/// Every record of session `id`, in order.
pub fn session_records(dir: &Path, id: &str) -> Result<Vec<Record>, AuditError> {
    let mut out = Vec::new();
    read_records(dir, |r| {
        if r.session() == Some(id) {
            out.push(r.clone());
        }
        true
    })?;
    Ok(out)
}

/// `--since`: an RFC 3339 UTC time (`2026-05-20T10:00:00Z`, or with a space
/// and without `Z`), or a duration back from now (`90m`, `1h`, `2days`).
pub fn parse_since(s: &str) -> Result<SystemTime, AuditError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let d: Duration = humantime::parse_duration(s).map_err(|_| {
        AuditError::Usage(format!(
            "--since {s:?}: expected an RFC 3339 UTC time (2026-05-20T10:00:00Z) or a duration (1h, 30m, 2days)"
        ))
    })?;
    Ok(SystemTime::now()
        .checked_sub(d)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let t = parse_since("2026-05-20T10:00:00Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-05-20T10:00:00Z"
        );
        let ago = parse_since("1h").unwrap();
        let d = SystemTime::now().duration_since(ago).unwrap();
        assert!(d >= Duration::from_hours(1) && d < Duration::from_secs(3700));
        assert!(parse_since("yesterday-ish").is_err());
    }
}
