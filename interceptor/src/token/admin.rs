//! `token.*` operations of the admin socket:
//!
//! | op | request | result |
//! | --- | --- | --- |
//! | `token.issue` | `identity`, `ttl` (`"15m"`), `claims` (object of strings) | `token`, `id`, `identity`, `issuer`, `expires_at` |
//! | `token.revoke` | `id`, `any_issuer` (bool) | `id`, `identity`, `newly_revoked`, `expires_at` |
//! | `token.list` | | `tokens`: `[{id, identity, issued_at, expires_at, revoked, claims}]` |
//!
//! Each issue and revocation is recorded in the audit log as a `token`
//! event naming the token id, never the token.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::HostIssuer;
use crate::{
    admin::{AdminHandler, HandlerFuture, Peer},
    audit::{AuditEvent, AuditLog, TokenEvent},
};

/// Checks that an identity name can be issued a token for (e.g. that the
/// policy set in force has it); the error is shown to the operator.
pub type IdentityCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The `token.` handler.
pub struct TokenAdmin {
    issuer: Arc<HostIssuer>,
    audit: Option<AuditLog>,
    identity_check: IdentityCheck,
}

impl TokenAdmin {
    /// A handler issuing with `issuer`, recording into `audit`.
    pub fn new(
        issuer: Arc<HostIssuer>,
        audit: Option<AuditLog>,
        identity_check: IdentityCheck,
    ) -> Self {
        Self {
            issuer,
            audit,
            identity_check,
        }
    }

    async fn record(&self, event: TokenEvent) -> Result<(), String> {
        match &self.audit {
            Some(audit) => audit
                .append(AuditEvent::Token(event))
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot record in the audit log: {e}")),
            None => Ok(()),
        }
    }

    async fn issue(&self, request: &Value, peer: Peer) -> Result<Value, String> {
        let identity = request
            .get("identity")
            .and_then(Value::as_str)
            .ok_or("token.issue needs \"identity\"")?;
        let ttl = request
            .get("ttl")
            .and_then(Value::as_str)
            .ok_or("token.issue needs \"ttl\" (e.g. \"15m\")")?;
        let ttl = humantime::parse_duration(ttl)
            .map_err(|e| format!("--ttl `{ttl}` is not a duration like 15m: {e}"))?;
        let mut claims = Map::new();
        match request.get("claims") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if k.is_empty() || !v.is_string() {
                        return Err(format!(
                            "claim `{k}` must be a non-empty name with a string value"
                        ));
                    }
                    claims.insert(k.clone(), v.clone());
                }
            }
            Some(_) => return Err("\"claims\" must be an object of strings".into()),
        }
        (self.identity_check)(identity)?;
        let issued = self
            .issuer
            .issue(identity, ttl, claims, &peer.to_string())
            .map_err(|e| e.to_string())?;
        let event = TokenEvent {
            action: "issued".into(),
            token: issued.record.id.clone(),
            subject: Some(identity.to_owned()),
            issuer: Some(format!("admin {peer}")),
            detail: json!({
                "iss": self.issuer.issuer(),
                "ttl_secs": ttl.as_secs(),
                "expires_at": issued.record.expires_at,
                "claims": issued.record.claims,
            }),
        };
        if let Err(e) = self.record(event).await {
            // Not recorded, not handed out.
            let _ = self.issuer.revoke(&issued.record.id, true, "audit failure");
            return Err(format!("the token was not issued: {e}"));
        }
        tracing::info!(event = "token_issued", id = %issued.record.id, identity, expires_at = issued.record.expires_at, peer = %peer);
        Ok(json!({
            "token": issued.token,
            "id": issued.record.id,
            "identity": identity,
            "issuer": self.issuer.issuer(),
            "expires_at": issued.record.expires_at,
        }))
    }

    async fn revoke(&self, request: &Value, peer: Peer) -> Result<Value, String> {
        let id = request
            .get("id")
            .and_then(Value::as_str)
            .ok_or("token.revoke needs \"id\"")?;
        let any = request
            .get("any_issuer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let revoked = self
            .issuer
            .revoke(id, any, &peer.to_string())
            .map_err(|e| e.to_string())?;
        if revoked.newly_revoked {
            tracing::info!(event = "token_revoked", id, identity = revoked.identity.as_deref(), peer = %peer);
            let event = TokenEvent {
                action: "revoked".into(),
                token: id.to_owned(),
                subject: revoked.identity.clone(),
                issuer: Some(format!("admin {peer}")),
                detail: json!({ "expires_at": revoked.expires_at }),
            };
            // The revocation holds even if it cannot be recorded; say so.
            self.record(event)
                .await
                .map_err(|e| format!("the token is revoked, but {e}"))?;
        }
        serde_json::to_value(&revoked).map_err(|e| e.to_string())
    }

    fn list(&self) -> Value {
        let tokens: Vec<Value> = self
            .issuer
            .list()
            .into_iter()
            .map(|(r, revoked)| {
                json!({
                    "id": r.id, "identity": r.identity, "issued_at": r.issued_at,
                    "expires_at": r.expires_at, "revoked": revoked, "claims": r.claims,
                    "requested_by": r.requested_by,
                })
            })
            .collect();
        json!({ "tokens": tokens })
    }
}

impl AdminHandler for TokenAdmin {
    fn handle<'a>(&'a self, op: &'a str, request: Value, peer: Peer) -> HandlerFuture<'a> {
        Box::pin(async move {
            match op {
                "token.issue" => self.issue(&request, peer).await,
                "token.revoke" => self.revoke(&request, peer).await,
                "token.list" => Ok(self.list()),
                _ => Err(format!(
                    "unknown operation `{op}` (token.issue, token.revoke, token.list)"
                )),
            }
        })
    }
}
