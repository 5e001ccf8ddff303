//! Webhook notifications: a JSON POST (or a Slack-compatible `{"text"}`
//! body) to every configured URL on each new request and each decision.
//! Sent from their own tasks, retried with backoff; the outcome is recorded
//! in the audit log. A failing webhook never holds up or loses a request.

use std::{sync::Arc, time::Duration};

use super::{ApprovalError, WebhookConfig, WebhookFormat, broker::View, request::State};
use crate::audit::{ApprovalEvent, AuditEvent, AuditLog};

/// Sends notifications to the configured webhooks.
#[derive(Clone)]
pub struct Notifier {
    hooks: Arc<Vec<WebhookConfig>>,
    client: reqwest::Client,
    audit: AuditLog,
}

impl Notifier {
    /// A notifier for `hooks`, recording outcomes in `audit`.
    pub fn new(hooks: &[WebhookConfig], audit: AuditLog) -> Result<Self, ApprovalError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("interceptor/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApprovalError::State(format!("cannot build the webhook client: {e}")))?;
        Ok(Self {
            hooks: Arc::new(hooks.to_vec()),
            client,
            audit,
        })
    }

    /// Announces `what` (`requested`, `approved`, `denied`, ...) for `view`
    /// to every webhook, in the background.
    pub fn send(&self, what: &str, view: &View) {
        if self.hooks.is_empty() {
            return;
        }
        let json = serde_json::json!({
            "event": format!("approval.{what}"),
            "request": view,
        });
        let text = slack_text(what, view);
        for hook in self.hooks.iter().cloned() {
            let body = match hook.format {
                WebhookFormat::Json => json.clone(),
                WebhookFormat::Slack => serde_json::json!({ "text": text }),
            };
            let me = self.clone();
            let (id, session, statement) = (
                view.request.id.clone(),
                view.request.session.clone(),
                view.request.statement,
            );
            let what = what.to_owned();
            tokio::spawn(async move {
                let outcome = me.deliver(&hook, &body).await;
                let (decision, detail) = match &outcome {
                    Ok((status, attempts)) => (
                        "notified",
                        serde_json::json!({"url": hook.url, "event": what, "status": status, "attempts": attempts}),
                    ),
                    Err((error, attempts)) => (
                        "notify_failed",
                        serde_json::json!({"url": hook.url, "event": what, "error": error, "attempts": attempts}),
                    ),
                };
                if let Err((error, _)) = &outcome {
                    tracing::warn!(event = "approval_webhook_failed", request = %id, url = %hook.url, error = %error, "webhook notification failed");
                }
                let ev = AuditEvent::Approval(ApprovalEvent {
                    session: Some(session),
                    statement: Some(statement),
                    request: id,
                    decision: decision.into(),
                    approver: None,
                    reason: None,
                    detail,
                });
                if let Err(e) = me.audit.append(ev).await {
                    tracing::error!(event = "audit_error", error = %e, "a webhook outcome could not be recorded");
                }
            });
        }
    }

    /// POSTs with retries; `Ok((status, attempts))` on a 2xx.
    async fn deliver(
        &self,
        hook: &WebhookConfig,
        body: &serde_json::Value,
    ) -> Result<(u16, u32), (String, u32)> {
        let mut backoff = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=hook.attempts {
            let sent = self
                .client
                .post(&hook.url)
                .timeout(Duration::from_millis(hook.timeout_ms))
                .json(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok((r.status().as_u16(), attempt)),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            if attempt < hook.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        Err((last, hook.attempts))
    }
}

/// One line for people.
fn slack_text(what: &str, v: &View) -> String {
    let r = &v.request;
    match &v.status {
        State::Pending if what == "requested" => format!(
            "Approval needed: *{}* — identity `{}` on {} ({}/{}) wants to run:\n```{}```\nrule `{}`: {}; expires {}.",
            r.id, r.identity, r.host, r.target, r.database, r.sql, r.rule, r.reason, r.expires_at
        ),
        State::Pending => format!(
            "*{}*: {} of {} approvals ({})",
            r.id,
            v.approvals.len(),
            r.approvers_required,
            v.approvals.join(", ")
        ),
        State::Approved { by, scope, .. } => {
            format!("*{}* approved by {} (scope {scope})", r.id, by.join(", "))
        }
        State::Denied { by, reason } => format!("*{}* denied by {by}: {reason}", r.id),
        State::Expired => format!("*{}* expired without a decision", r.id),
        State::Withdrawn { reason } => format!("*{}* withdrawn: {reason}", r.id),
        State::DeniedByRestart => format!(
            "*{}* denied: the interceptor restarted while it was pending",
            r.id
        ),
    }
}
