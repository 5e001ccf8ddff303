//! Just-in-time approval of risky statements: a statement whose rule says
//! `approve` is not sent; an [`ApprovalRequest`] is made and a person
//! decides. In `hold` mode the statement waits on its open connection and
//! runs (or fails) with the decision; in `retry` mode it is refused at once
//! and the exact same statement may be re-run once approved.
//!
//! - `spec`: the `approval` table of a policy rule (mode, expiry, scopes,
//!   approvers, groups).
//! - `config`: the daemon's `[approvals]` table (HTTP API, approvers,
//!   webhooks, state file).
//! - `request`: the request, its states, scopes, approvers, statement keys.
//! - `broker`: every request of the daemon, decisions, grants, expiry,
//!   persistence for restarts, audit records.
//! - `webhook`: notifications of new requests and decisions.
//! - `http`: the approvers' HTTP API; `admin`: the same on the admin socket (CLI).
//! - `hold`: what a session does with a statement that needs approval.

pub mod admin;
pub mod broker;
pub mod config;
pub mod hold;
pub mod http;
pub mod request;
pub mod spec;
pub mod webhook;

pub use broker::{Broker, View};
pub use config::{ApprovalsConfig, ApproverConfig, WebhookConfig, WebhookFormat};
pub use request::{ApprovalRequest, Approver, Scope, State};
pub use spec::{ApprovalSpec, Mode, ScopeKind};

/// What can go wrong deciding or making requests. Each variant is a
/// condition a caller (HTTP API, admin socket) answers differently.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApprovalError {
    /// No such request.
    #[error("no approval request {0}")]
    NotFound(String),
    /// Already decided, expired or withdrawn.
    #[error("approval request {0} is no longer pending ({1})")]
    NotPending(String, String),
    /// The requester tried to decide its own request.
    #[error("{0}")]
    SelfApproval(String),
    /// The approver may not decide this request.
    #[error("{0}")]
    Forbidden(String),
    /// The scope asked for is not allowed.
    #[error("{0}")]
    Scope(String),
    /// This approver already approved.
    #[error("{0} already approved this request; another approver is needed")]
    AlreadyApproved(String),
    /// The audit log cannot record it.
    #[error("cannot be recorded in the audit log: {0}")]
    Unrecorded(String),
    /// The state file or the HTTP client cannot be set up.
    #[error("{0}")]
    State(String),
}

#[cfg(test)]
mod tests;
