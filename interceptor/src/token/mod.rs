//! Workload tokens: a CI provider's OIDC ID token (GitHub Actions, GitLab
//! CI, ...) or a token this host issued, presented as the database
//! password and checked here before its claims select a policy identity.
//!
//! # Layout
//!
//! - [`config`]: `[token]` and `[[token.issuer]]` (issuer, audiences, JWKS
//!   file or URL, refresh, algorithm allow-list, leeway), validated.
//! - [`jwks`](self): each issuer's key set, cached with a refresh interval and
//!   a last good copy; an unknown `kid` causes at most one early reload per
//!   `refetch_min` (key rotation).
//! - [`Validator`]: signature, `alg` allow-list (never `none` nor HMAC),
//!   `iss`, `aud`, `exp`/`nbf`/`iat` with leeway, revocation; the result is
//!   a [`VerifiedToken`], the refusal a [`TokenError`] with a stable
//!   [`TokenError::reason`] and a message that never echoes the token.
//! - [`host`]: the host's own `EdDSA` issuer (`interceptor token issue` /
//!   `revoke`), its key and its persisted issued/revoked records.
//! - [`admin`]: the `token.*` operations of the admin socket.

pub mod admin;
pub mod config;
mod error;
pub mod host;
mod jwks;
mod validate;

#[cfg(test)]
mod tests;

pub use config::{HOST_ISSUER_NAME, IssuerConfig, TokenConfig, TokenConfigError};
pub use error::TokenError;
pub use host::{HostIssuer, HostIssuerConfig, HostTokenError};
pub use validate::{DEFAULT_MAX_TOKEN_BYTES, HostTrust, Revocations, Validator, VerifiedToken};

/// What became of the token for one connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TokenOutcome {
    /// The policy needed no token for this caller: no password was asked.
    #[default]
    NotAsked,
    /// A password was asked and none came (empty, or the client left).
    Missing,
    /// A valid token.
    Verified(std::sync::Arc<VerifiedToken>),
    /// A token that failed validation.
    Rejected(TokenError),
}

impl TokenOutcome {
    /// The verified token, if any.
    pub fn verified(&self) -> Option<&VerifiedToken> {
        match self {
            Self::Verified(t) => Some(t),
            _ => None,
        }
    }

    /// What the audit record and the event log keep: the verified claims
    /// (never the token), or why it was refused; `None` when none was asked.
    pub fn to_record(&self) -> Option<serde_json::Value> {
        match self {
            Self::NotAsked => None,
            Self::Missing => Some(
                serde_json::json!({ "status": "missing", "reason": TokenError::Missing.reason() }),
            ),
            Self::Verified(t) => Some(serde_json::json!({
                "status": "verified",
                "issuer_name": t.issuer_name,
                "issuer": t.issuer,
                "subject": t.subject,
                "jti": t.jti,
                "exp": t.exp,
                "host_issued": t.host_issued,
                "claims": t.claims,
            })),
            Self::Rejected(e) => {
                Some(serde_json::json!({ "status": "rejected", "reason": e.reason() }))
            }
        }
    }
}
