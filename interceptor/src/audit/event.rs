//! [`AuditEvent`]: what is recorded. The serde names are the stable field
//! names of the on-disk format and of `audit export` (see the module doc's
//! table); add fields with `#[serde(default)]`, never rename one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    policy::Decision,
    proxy::hooks::{Route, SessionInfo},
};

/// One audited event. On disk `kind` is the variant's snake-case name and
/// `event` its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The daemon started (after recovery, before any session).
    DaemonStart(DaemonStart),
    /// The daemon stopped cleanly.
    DaemonStop(DaemonStop),
    /// A client session was accepted and attested.
    SessionStart(SessionStart),
    /// A statement and the decision on it, before it is forwarded.
    Statement(StatementEvent),
    /// What came back for a statement.
    #[serde(rename = "result")]
    StatementResult(ResultSummary),
    /// An approval request or decision.
    Approval(ApprovalEvent),
    /// A session ended.
    SessionEnd(SessionEnd),
    /// A token was issued or revoked.
    Token(TokenEvent),
    /// A connection refused before any session was recorded for it
    /// (startup packet, TLS, replication, no target, attestation ...).
    ConnectionRefused(ConnectionRefused),
    /// Recovery cut a partially written tail.
    TornTail(TornTail),
    /// Recording works again after failing.
    WriteRecovered(WriteRecovered),
    /// A signed checkpoint (written by the log itself).
    Checkpoint(Checkpoint),
}

impl AuditEvent {
    /// The `kind` written on disk.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DaemonStart(_) => "daemon_start",
            Self::DaemonStop(_) => "daemon_stop",
            Self::SessionStart(_) => "session_start",
            Self::Statement(_) => "statement",
            Self::StatementResult(_) => "result",
            Self::Approval(_) => "approval",
            Self::SessionEnd(_) => "session_end",
            Self::Token(_) => "token",
            Self::ConnectionRefused(_) => "connection_refused",
            Self::TornTail(_) => "torn_tail",
            Self::WriteRecovered(_) => "write_recovered",
            Self::Checkpoint(_) => "checkpoint",
        }
    }

    /// The session the event belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            Self::SessionStart(e) => Some(&e.session),
            Self::Statement(e) => Some(&e.session),
            Self::StatementResult(e) => Some(&e.session),
            Self::Approval(e) => e.session.as_deref(),
            Self::SessionEnd(e) => Some(&e.session),
            _ => None,
        }
    }
}

/// `daemon_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStart {
    /// Host name.
    pub host: String,
    /// Daemon version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// Kernel boot id (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Fingerprint of the signing key (`SHA256:<base64>`).
    pub key: String,
    /// Last seq written before this start (`None` on a new log).
    #[serde(default)]
    pub resumed_after: Option<u64>,
}

/// `daemon_stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStop {
    /// Why (`shutdown`, `signal`...).
    pub reason: String,
}

/// `session_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    /// Session id ([`super::AuditLog::session_id`]).
    pub session: String,
    /// Host name.
    pub host: String,
    /// Client address (`unix` for the unix socket).
    pub peer: String,
    /// `redirected`, `explicit` or `unix`.
    pub route: String,
    /// Where the client meant to go (redirected connections).
    #[serde(default)]
    pub orig_dst: Option<String>,
    /// Configured target name.
    pub target: String,
    /// Upstream address.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Database from the startup packet.
    pub database: String,
    /// User from the startup packet.
    pub user: String,
    /// Role the proxy logs in as upstream.
    #[serde(default)]
    pub upstream_user: Option<String>,
    /// `application_name` from the startup packet.
    #[serde(default)]
    pub application_name: Option<String>,
    /// Whether the client connection uses TLS.
    #[serde(default)]
    pub client_tls: bool,
    /// Policy identity the caller matched.
    #[serde(default)]
    pub identity: Option<String>,
    /// The attested calling process ([`crate::identity::Attestation`] as JSON).
    #[serde(default)]
    pub attestation: serde_json::Value,
    /// The workload token: `{status: "verified", issuer_name, issuer,
    /// subject, jti, exp, host_issued, claims}`, or `{status: "missing" |
    /// "rejected", reason}`; absent when none was asked for. Never the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<serde_json::Value>,
    /// Why the session was refused at connect (`no_identity`,
    /// `token_claims_mismatch`, `token_expired`, ...); absent when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl SessionStart {
    /// The event for a session the proxy opened: `session` from
    /// [`super::AuditLog::session_id`], `identity` the matched policy identity.
    pub fn from_info(
        session: String,
        host: &str,
        info: &SessionInfo,
        identity: Option<String>,
    ) -> Self {
        let route = match info.route {
            Route::Redirected => "redirected",
            Route::Explicit => "explicit",
            Route::Unix => "unix",
        };
        Self {
            session,
            host: host.to_owned(),
            peer: info.peer.clone(),
            route: route.to_owned(),
            orig_dst: info.orig_dst.map(|a| a.to_string()),
            target: info.target.clone(),
            upstream: Some(info.upstream.to_string()),
            database: info.database.clone(),
            user: info.user.clone(),
            upstream_user: Some(info.upstream_user.clone()),
            application_name: info.application_name.clone(),
            client_tls: info.client_tls,
            identity,
            attestation: serde_json::to_value(Arc::as_ref(&info.attestation))
                .unwrap_or(serde_json::Value::Null),
            token: info.token.to_record(),
            refused: None,
        }
    }
}

/// The decision on a statement, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// `allow`, `deny` or `approve`.
    pub action: String,
    /// Rule id (`builtin.*`, `default-deny`...).
    pub rule: String,
    /// Why, for people.
    pub reason: String,
    /// Row limit applied, if any.
    #[serde(default)]
    pub max_rows: Option<u64>,
}

impl From<&Decision> for DecisionRecord {
    fn from(d: &Decision) -> Self {
        Self {
            action: d.action.as_str().to_owned(),
            rule: d.rule.clone(),
            reason: d.reason.clone(),
            max_rows: d.max_rows,
        }
    }
}

/// `statement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEvent {
    /// Session id.
    pub session: String,
    /// Per-session statement counter, from 1.
    pub statement: u64,
    /// SQL text as received; for a statement longer than
    /// [`MAX_RECORDED_SQL`], its first bytes (see `sql_full`).
    pub sql: String,
    /// Bind parameters, already masked by the caller (`None` = SQL NULL).
    #[serde(default)]
    pub params: Vec<Option<String>>,
    /// `simple` or `extended`.
    pub protocol: String,
    /// What the policy decided.
    pub decision: DecisionRecord,
    /// Set when `sql` holds only a prefix: the whole text's length and hash,
    /// which prove what was sent without one record holding megabytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_full: Option<SqlDigest>,
    /// Why constants of `sql` were replaced by `'[REDACTED:<why>:<mark>]'`
    /// (`password`, `conninfo`, a detector category), in order; empty when
    /// the text is as sent (see `audit::secrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sql_redacted: Vec<String>,
}

/// Most bytes of statement text one `statement` record holds.
pub const MAX_RECORDED_SQL: usize = 64 * 1024;

/// The whole of a statement text recorded in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlDigest {
    /// Length in bytes.
    pub bytes: usize,
    /// SHA-256 of the whole text, hex.
    pub sha256: String,
}

impl StatementEvent {
    /// `text` as a record holds it: whole up to [`MAX_RECORDED_SQL`] bytes,
    /// else its first bytes (cut at a character boundary) and the digest.
    pub fn bounded_sql(text: &str) -> (String, Option<SqlDigest>) {
        if text.len() <= MAX_RECORDED_SQL {
            return (text.to_owned(), None);
        }
        use sha2::Digest as _;
        let cut = text.floor_char_boundary(MAX_RECORDED_SQL);
        let digest = SqlDigest {
            bytes: text.len(),
            sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())),
        };
        (text[..cut].to_owned(), Some(digest))
    }
}

/// `result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSummary {
    /// Session id.
    pub session: String,
    /// The statement counter this result answers.
    pub statement: u64,
    /// `CommandComplete` tag (`SELECT 3`), if the statement completed.
    #[serde(default)]
    pub command_tag: Option<String>,
    /// Rows sent to the client.
    #[serde(default)]
    pub rows: u64,
    /// Bytes of rows sent to the client.
    #[serde(default)]
    pub bytes: u64,
    /// Columns whose values were masked.
    #[serde(default)]
    pub masked_columns: Vec<String>,
    /// Bind parameters of this execution (extended protocol) as text
    /// (binary ones as `\x` hex), each cut at 1 KiB; values the content
    /// detectors recognise are masked as results are for the identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
    /// From forwarding to completion, microseconds.
    #[serde(default)]
    pub duration_us: u64,
    /// SQLSTATE of the error, if the statement failed.
    #[serde(default)]
    pub error_sqlstate: Option<String>,
    /// Error message, if the statement failed.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// `approval`: a generic shape until the approval workflow lands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalEvent {
    /// Session id, if the approval is for a session's statement.
    #[serde(default)]
    pub session: Option<String>,
    /// Statement counter, if any.
    #[serde(default)]
    pub statement: Option<u64>,
    /// Approval request id.
    pub request: String,
    /// `requested`, `approved`, `rejected`, `expired`...
    pub decision: String,
    /// Who decided.
    #[serde(default)]
    pub approver: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Anything else.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// `session_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Session id.
    pub session: String,
    /// Machine-readable reason (`client_terminate`, `upstream_closed`...).
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub detail: Option<String>,
    /// Session duration, milliseconds.
    pub duration_ms: u64,
    /// Statements seen.
    pub statements: u64,
    /// Statements refused (denied, not approved, or not recordable).
    pub refused: u64,
    /// Client -> proxy bytes.
    pub bytes_in: u64,
    /// Proxy -> client bytes.
    pub bytes_out: u64,
}

/// `token`: issued or revoked (the token issue defines the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEvent {
    /// `issued` or `revoked`.
    pub action: String,
    /// Token id (never the token itself).
    pub token: String,
    /// Who or what it is for.
    #[serde(default)]
    pub subject: Option<String>,
    /// Who issued or revoked it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Anything else.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// `connection_refused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRefused {
    /// The daemon's connection counter (as in its own log's `session_id`).
    pub connection: u64,
    /// The client's address (`unix:pid=N` on the unix socket).
    pub peer: String,
    /// The address it dialled, when redirected.
    #[serde(default)]
    pub orig_dst: Option<String>,
    /// Target, user and database, as far as they were known.
    #[serde(default)]
    pub target: Option<String>,
    /// See `target`.
    #[serde(default)]
    pub user: Option<String>,
    /// See `target`.
    #[serde(default)]
    pub database: Option<String>,
    /// Short reason code (`client_protocol_violation`, `client_tls_failed`,
    /// `startup_timeout`, `refused` ...).
    pub reason: String,
    /// SQLSTATE sent to the client, if one was.
    #[serde(default)]
    pub sqlstate: Option<String>,
    /// The error, for people.
    pub error: String,
    /// The attested caller, when attestation got that far.
    #[serde(default)]
    pub attestation: Option<serde_json::Value>,
    /// From accept to refusal.
    pub duration_ms: u64,
}

/// `torn_tail`: what recovery cut from the last segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    /// Segment file name.
    pub segment: String,
    /// Where the tail started (the segment's length after the cut).
    pub offset: u64,
    /// Bytes removed.
    pub bytes_dropped: u64,
    /// Last complete record kept (0 = none).
    pub last_good_seq: u64,
    /// First and last seq readable in the dropped bytes, if any.
    #[serde(default)]
    pub dropped_seqs: Option<[u64; 2]>,
}

/// `write_recovered`: recording failed for a while and works again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecovered {
    /// When the first write failed (RFC 3339).
    pub since: String,
    /// The first failure.
    pub error: String,
    /// Writes that failed.
    pub failed_batches: u64,
    /// Appends that were answered with an error (not recorded).
    pub refused: u64,
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointReason {
    /// Every N records / T milliseconds.
    Periodic,
    /// At daemon start, after recovery.
    Start,
    /// At a clean stop.
    Stop,
    /// The last record of a segment.
    Seal,
}

impl CheckpointReason {
    /// The name written on disk and signed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Periodic => "periodic",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Seal => "seal",
        }
    }
}

/// `checkpoint`: a signature over the chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Seq of the record before the checkpoint.
    pub head_seq: u64,
    /// Its hash (hex).
    pub head_hash: String,
    /// Host name (signed).
    pub host: String,
    /// Why it was written (signed).
    pub reason: CheckpointReason,
    /// Fingerprint of the signing key.
    pub key: String,
    /// Ed25519 signature, base64, over the message in the module doc.
    pub sig: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacently_tagged_shape() {
        let e = AuditEvent::DaemonStop(DaemonStop {
            reason: "shutdown".into(),
        });
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"kind":"daemon_stop","event":{"reason":"shutdown"}}"#
        );
        let r = AuditEvent::StatementResult(ResultSummary {
            session: "1-1".into(),
            statement: 1,
            command_tag: Some("SELECT 1".into()),
            rows: 1,
            bytes: 10,
            masked_columns: vec![],
            params: vec![],
            duration_us: 5,
            error_sqlstate: None,
            error_message: None,
        });
        let s = serde_json::to_string(&r).unwrap();
        assert!(
            s.starts_with(r#"{"kind":"result","event":{"session":"1-1""#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<AuditEvent>(&s).unwrap(), r);
        assert_eq!(r.kind(), "result");
    }
}
