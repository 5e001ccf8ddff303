//! `approvals.*` operations on the daemon's admin socket (root only), for
//! `interceptor approvals list | show | approve | deny`. Decisions made here
//! are recorded as made by `[approvals] cli_approver` (default
//! `root@<host>`), with the caller's uid checked against the requester's.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApprovalsConfig, Approver, Broker, Scope};
use crate::admin::{AdminHandler, HandlerFuture, Peer};

/// Serves `approvals.list`, `approvals.show`, `approvals.approve`, `approvals.deny`.
pub struct ApprovalsAdmin {
    broker: Arc<Broker>,
    name: String,
    groups: Vec<String>,
}

impl ApprovalsAdmin {
    /// The handler; CLI decisions are recorded under `config.cli_approver`
    /// or `root@<host>`.
    pub fn new(broker: Arc<Broker>, config: &ApprovalsConfig, host: &str) -> Self {
        Self {
            broker,
            name: config
                .cli_approver
                .clone()
                .unwrap_or_else(|| format!("root@{host}")),
            groups: config.cli_groups.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    minutes: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

impl AdminHandler for ApprovalsAdmin {
    fn handle<'a>(&'a self, op: &'a str, request: Value, peer: Peer) -> HandlerFuture<'a> {
        Box::pin(async move {
            let p: Params =
                serde_json::from_value(request).map_err(|e| format!("bad request: {e}"))?;
            let id = || {
                p.id.clone()
                    .ok_or_else(|| "give the request id (apr-...)".to_owned())
            };
            let who = Approver {
                name: self.name.clone(),
                groups: self.groups.clone(),
                uid: Some(peer.uid),
                via: "cli",
            };
            let view = match op {
                "approvals.list" => return Ok(json!({ "requests": self.broker.list(!p.all) })),
                "approvals.show" => {
                    let id = id()?;
                    self.broker
                        .show(&id)
                        .ok_or_else(|| format!("no approval request {id}"))?
                }
                "approvals.approve" => {
                    let scope = Scope::parse(p.scope.as_deref().unwrap_or("once"), p.minutes)?;
                    self.broker
                        .approve(&id()?, &who, scope, p.reason.clone())
                        .map_err(|e| e.to_string())?
                }
                "approvals.deny" => {
                    let reason = p
                        .reason
                        .clone()
                        .filter(|r| !r.trim().is_empty())
                        .ok_or("a denial needs --reason")?;
                    self.broker
                        .deny(&id()?, &who, reason)
                        .map_err(|e| e.to_string())?
                }
                other => {
                    return Err(format!(
                        "unknown operation `{other}` (approvals.list, .show, .approve, .deny)"
                    ));
                }
            };
            serde_json::to_value(view).map_err(|e| e.to_string())
        })
    }
}

/// Answers `approvals.*` on a daemon without an `[approvals]` table.
pub struct NotEnabled;

impl AdminHandler for NotEnabled {
    fn handle<'a>(&'a self, _op: &'a str, _request: Value, _peer: Peer) -> HandlerFuture<'a> {
        Box::pin(async {
            Err("approvals are not enabled on this daemon: `approve` statements are refused; add an [approvals] table to its configuration (see the Approvals section of the README)".to_owned())
        })
    }
}
