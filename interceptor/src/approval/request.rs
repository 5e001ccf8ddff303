//! What an approval request is, the states it goes through, and who decides.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::spec::{Mode, ScopeKind};

/// A statement held (or refused, in retry mode) for a person's decision.
/// Persisted while pending, shown to approvers, sent to webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Short random id, `apr-` and 8 characters.
    pub id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it expires unless decided (RFC 3339).
    pub expires_at: String,
    /// `expires_at` as Unix seconds (for restarts and ordering).
    pub expires_unix: u64,
    /// Host the statement was made on.
    pub host: String,
    /// Audit session id.
    pub session: String,
    /// Audit statement counter within the session.
    pub statement: u64,
    /// Proxy session number (routes a client's `CancelRequest` to it).
    #[serde(default)]
    pub proxy_session: u64,
    /// Policy identity of the requester.
    pub identity: String,
    /// Attested uid of the calling process.
    pub uid: u32,
    /// Attested user name of the calling process, if known.
    #[serde(default)]
    pub user: Option<String>,
    /// The attested calling process (as in `session_start`).
    #[serde(default)]
    pub attestation: serde_json::Value,
    /// Target name.
    pub target: String,
    /// Database.
    pub database: String,
    /// Database user from the client's startup packet.
    pub db_user: String,
    /// The SQL as sent.
    pub sql: String,
    /// Bind parameters as approvers see them (masked unless
    /// `[approvals] reveal_params`), `None` = NULL.
    #[serde(default)]
    pub params: Vec<Option<String>>,
    /// `simple` or `extended`.
    pub protocol: String,
    /// Rule that asked for approval.
    pub rule: String,
    /// The rule's reason.
    pub reason: String,
    /// `hold` or `retry`.
    pub mode: Mode,
    /// Scopes the approver may grant.
    pub scopes: Vec<ScopeKind>,
    /// Longest identity scope, minutes.
    pub max_identity_minutes: u64,
    /// Distinct approvers needed.
    pub approvers_required: u32,
    /// Retry mode: how long an approval may be used to re-run the statement, seconds.
    #[serde(default)]
    pub valid_for_secs: u64,
    /// Groups allowed to decide (empty: any approver).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// What an approval covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// once | session | identity.
    pub kind: ScopeKind,
    /// For `identity`: minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u64>,
}

impl Scope {
    /// This statement, once.
    pub const ONCE: Self = Self {
        kind: ScopeKind::Once,
        minutes: None,
    };

    /// Parses `once`, `session`, `identity` (needs minutes) or `identity:N`.
    pub fn parse(text: &str, minutes: Option<u64>) -> Result<Self, String> {
        let (kind, inline) = match text.split_once(':') {
            Some((k, m)) => (
                k,
                Some(
                    m.parse::<u64>()
                        .map_err(|_| format!("bad minutes in scope `{text}`"))?,
                ),
            ),
            None => (text, None),
        };
        let kind = match kind {
            "once" => ScopeKind::Once,
            "session" => ScopeKind::Session,
            "identity" => ScopeKind::Identity,
            _ => {
                return Err(format!(
                    "unknown scope `{text}` (once, session or identity:MINUTES)"
                ));
            }
        };
        let minutes = inline.or(minutes);
        match (kind, minutes) {
            (ScopeKind::Identity, None | Some(0)) => {
                Err("the identity scope needs a positive number of minutes (identity:30)".into())
            }
            (ScopeKind::Identity, m) => Ok(Self { kind, minutes: m }),
            (_, Some(_)) => Err(format!(
                "minutes only go with the identity scope, not `{}`",
                kind.as_str()
            )),
            (_, None) => Ok(Self {
                kind,
                minutes: None,
            }),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, self.minutes) {
            (ScopeKind::Identity, Some(m)) => write!(f, "identity for {m} min"),
            (k, _) => f.write_str(k.as_str()),
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Waiting for a decision.
    Pending,
    /// Approved by enough distinct approvers.
    Approved {
        /// Approvers, in order.
        by: Vec<String>,
        /// What the approval covers.
        scope: Scope,
        /// The last approver's reason, if given.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Denied by an approver.
    Denied {
        /// The approver.
        by: String,
        /// Why.
        reason: String,
    },
    /// Nobody decided in time.
    Expired,
    /// The client cancelled or went away, or its session ended.
    Withdrawn {
        /// Why.
        reason: String,
    },
    /// The daemon restarted (or stopped) while the request was pending.
    DeniedByRestart,
}

impl State {
    /// Whether the request is still waiting.
    pub fn is_pending(&self) -> bool {
        matches!(self, Self::Pending)
    }

    /// Short name (`pending`, `approved`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved { .. } => "approved",
            Self::Denied { .. } => "denied",
            Self::Expired => "expired",
            Self::Withdrawn { .. } => "withdrawn",
            Self::DeniedByRestart => "denied_by_restart",
        }
    }
}

/// Who is deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// Name recorded with the decision.
    pub name: String,
    /// Groups (rules may restrict deciding to some).
    pub groups: Vec<String>,
    /// Unix uid, for decisions made on the host (admin socket).
    pub uid: Option<u32>,
    /// How they authenticated: `cli`, `token`, `oidc`.
    pub via: &'static str,
}

/// Identifies "the same statement": SHA-256 over the SQL bytes and each
/// parameter (length-prefixed, NULL distinct from empty).
pub fn statement_key(sql: &[u8], params: &[Option<&[u8]>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((sql.len() as u64).to_be_bytes());
    h.update(sql);
    for p in params {
        match p {
            None => h.update([0xff; 8]),
            Some(v) => {
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    }
    h.finalize().into()
}

/// A fresh request id: `apr-` and 8 base-32 characters (40 random bits).
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bits: u64 = rand::random();
    let mut id = String::from("apr-");
    for i in 0..8 {
        id.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        assert_eq!(Scope::parse("once", None).unwrap(), Scope::ONCE);
        assert_eq!(Scope::parse("identity:30", None).unwrap().minutes, Some(30));
        assert_eq!(Scope::parse("identity", Some(5)).unwrap().minutes, Some(5));
        assert!(Scope::parse("identity", None).is_err());
        assert!(Scope::parse("session", Some(3)).is_err());
        assert!(Scope::parse("forever", None).is_err());
    }

    #[test]
    fn keys_distinguish_sql_params_and_null() {
        let a = statement_key(b"DELETE FROM t WHERE id = $1", &[Some(b"1")]);
        assert_ne!(
            a,
            statement_key(b"DELETE FROM t WHERE id = $1", &[Some(b"2")])
        );
        assert_ne!(
            a,
            statement_key(b"DELETE FROM t WHERE id = $1 ", &[Some(b"1")])
        );
        assert_ne!(
            statement_key(b"x", &[None]),
            statement_key(b"x", &[Some(b"")])
        );
        assert_eq!(
            a,
            statement_key(b"DELETE FROM t WHERE id = $1", &[Some(b"1")])
        );
        let id = new_id();
        assert!(id.starts_with("apr-") && id.len() == 12, "{id}");
    }
}
