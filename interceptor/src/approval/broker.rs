//! [`Broker`]: every approval request of the daemon, shared by all sessions,
//! the HTTP API and the admin socket. Requests move Pending -> Approved /
//! Denied / Expired / Withdrawn / `DeniedByRestart` exactly once; each move is
//! recorded in the audit log and wakes the held session through a `watch`.
//! Approvals of wider scope (and retry-mode approvals) become [`Grant`]s that
//! later statements are checked against.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::{
    ApprovalError,
    request::{ApprovalRequest, Approver, Scope, State},
    spec::{Mode, ScopeKind},
    webhook::Notifier,
};
use crate::audit::{ApprovalEvent, AuditEvent, AuditLog, Receipt};

/// A request as shown to approvers: the request, where it stands, and the
/// approvals collected so far.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The request.
    #[serde(flatten)]
    pub request: ApprovalRequest,
    /// Where it stands.
    pub status: State,
    /// Approvers so far (with N distinct approvers required).
    pub approvals: Vec<String>,
}

/// An approval that covers later statements.
#[derive(Debug, Clone)]
struct Grant {
    /// The request it came from.
    request: String,
    kind: ScopeKind,
    identity: String,
    /// For session scope: the audit session.
    session: Option<String>,
    rule: String,
    /// For once/session scope: the statement key.
    key: Option<[u8; 32]>,
    /// Uses left (`None` = any number until `until`).
    uses: Option<u32>,
    until: Instant,
}

struct Entry {
    request: ApprovalRequest,
    key: [u8; 32],
    state: State,
    approvals: Vec<(String, Option<String>)>,
    tx: watch::Sender<State>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    grants: Vec<Grant>,
}

/// What a statement that needs approval gets from [`Broker::request`].
pub struct Requested {
    /// The request as made.
    pub request: ApprovalRequest,
    /// Changes when the request is decided.
    pub state: watch::Receiver<State>,
    /// The `requested` record's durability.
    pub receipt: Receipt,
}

/// The daemon's approval requests and grants.
pub struct Broker {
    inner: Mutex<Inner>,
    audit: AuditLog,
    notifier: Notifier,
    default_expiry: Duration,
    reveal_params: bool,
    /// Pending requests on disk (a restart denies them on the record).
    state_file: PathBuf,
    /// Wakes the persister.
    dirty: Notify,
    /// Lets expiry timers and the persister find the broker again.
    me: std::sync::Weak<Broker>,
}

/// Unix seconds now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Broker {
    /// Opens the broker: pending requests left in `state_file` by the
    /// previous run are recorded as `denied_by_restart` (never approved),
    /// then the file is emptied.
    pub async fn open(
        config: &super::ApprovalsConfig,
        state_file: PathBuf,
        audit: AuditLog,
    ) -> Result<Arc<Self>, ApprovalError> {
        let notifier = Notifier::new(&config.webhooks, audit.clone())?;
        let broker = Arc::new_cyclic(|me| Self {
            inner: Mutex::default(),
            audit,
            notifier,
            default_expiry: config.default_expiry(),
            reveal_params: config.reveal_params,
            state_file,
            dirty: Notify::new(),
            me: me.clone(),
        });
        broker.recover().await?;
        tokio::spawn(Arc::clone(&broker).persist_loop());
        Ok(broker)
    }

    async fn recover(&self) -> Result<(), ApprovalError> {
        let text = match std::fs::read_to_string(&self.state_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ApprovalError::State(format!(
                    "cannot read {}: {e}",
                    self.state_file.display()
                )));
            }
        };
        let left: Vec<ApprovalRequest> = serde_json::from_str(&text).map_err(|e| {
            ApprovalError::State(format!(
                "{} is not a list of approval requests ({e}); move it away to start",
                self.state_file.display()
            ))
        })?;
        for r in left {
            tracing::warn!(event = "approval_denied_by_restart", request = %r.id, identity = %r.identity, "pending approval request denied: the daemon restarted");
            let ev = Self::event(&r, "denied_by_restart", None, Some("the interceptor restarted while the request was pending; the held client was disconnected".into()), serde_json::json!({"sql": r.sql, "rule": r.rule, "identity": r.identity}));
            self.audit
                .append(ev)
                .await
                .map_err(|e| ApprovalError::Unrecorded(e.to_string()))?;
            self.notifier.send(
                "denied_by_restart",
                &View {
                    request: r,
                    status: State::DeniedByRestart,
                    approvals: vec![],
                },
            );
        }
        write_state(&self.state_file, "[]").map_err(ApprovalError::State)
    }

    /// Whether bind parameters are shown unmasked.
    pub fn reveal_params(&self) -> bool {
        self.reveal_params
    }

    /// The default request lifetime.
    pub fn default_expiry(&self) -> Duration {
        self.default_expiry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn event(
        r: &ApprovalRequest,
        decision: &str,
        approver: Option<String>,
        reason: Option<String>,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent::Approval(ApprovalEvent {
            session: Some(r.session.clone()),
            statement: Some(r.statement),
            request: r.id.clone(),
            decision: decision.to_owned(),
            approver,
            reason,
            detail,
        })
    }

    /// Records an event nobody waits for (what it describes already happened).
    fn record(&self, ev: AuditEvent) {
        if let Err(e) = self.audit.enqueue(ev.clone()) {
            let audit = self.audit.clone();
            tracing::warn!(event = "audit_error", error = %e, "approval record queued late");
            tokio::spawn(async move {
                if let Err(e) = audit.append(ev).await {
                    tracing::error!(event = "audit_error", error = %e, "an approval record could not be written");
                }
            });
        }
    }

    /// A grant covering this statement, consumed if use-limited: the id of
    /// the request it came from.
    pub fn covered(
        &self,
        identity: &str,
        session: &str,
        rule: &str,
        key: &[u8; 32],
    ) -> Option<(String, Scope)> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.grants.retain(|g| g.until > now && g.uses != Some(0));
        let g = inner.grants.iter_mut().find(|g| {
            g.identity == identity
                && g.rule == rule
                && match g.kind {
                    ScopeKind::Once => g.key.as_ref() == Some(key),
                    ScopeKind::Session => {
                        g.key.as_ref() == Some(key) && g.session.as_deref() == Some(session)
                    }
                    ScopeKind::Identity => true,
                }
        })?;
        if let Some(u) = &mut g.uses {
            *u -= 1;
        }
        let scope = Scope {
            kind: g.kind,
            minutes: (g.kind == ScopeKind::Identity).then(|| {
                g.until
                    .saturating_duration_since(now)
                    .as_secs()
                    .div_ceil(60)
            }),
        };
        Some((g.request.clone(), scope))
    }

    /// A pending retry-mode request for the same statement by the same
    /// identity (a re-run before the decision does not make a new one).
    pub fn pending_same(&self, identity: &str, key: &[u8; 32]) -> Option<ApprovalRequest> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .find(|e| {
                e.state.is_pending()
                    && e.request.mode == Mode::Retry
                    && e.request.identity == identity
                    && &e.key == key
            })
            .map(|e| e.request.clone())
    }

    /// Makes a request: recorded (`requested`), persisted, announced, and
    /// expired by a timer unless decided first.
    pub fn request(
        &self,
        request: ApprovalRequest,
        key: [u8; 32],
        expiry: Duration,
    ) -> Result<Requested, ApprovalError> {
        let ev = Self::event(
            &request,
            "requested",
            None,
            Some(request.reason.clone()),
            serde_json::to_value(&request).unwrap_or_default(),
        );
        let receipt = self
            .audit
            .enqueue(ev)
            .map_err(|e| ApprovalError::Unrecorded(e.to_string()))?;
        let (tx, rx) = watch::channel(State::Pending);
        let id = request.id.clone();
        {
            let mut inner = self.lock();
            inner.entries.insert(
                id.clone(),
                Entry {
                    request: request.clone(),
                    key,
                    state: State::Pending,
                    approvals: Vec::new(),
                    tx,
                },
            );
        }
        self.dirty.notify_one();
        tracing::info!(event = "approval_requested", request = %id, identity = %request.identity, rule = %request.rule, mode = ?request.mode, "statement needs approval");
        self.notifier.send(
            "requested",
            &View {
                request: request.clone(),
                status: State::Pending,
                approvals: vec![],
            },
        );
        let weak = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(expiry).await;
            if let Some(b) = weak.upgrade() {
                b.finish(
                    &id,
                    State::Expired,
                    None,
                    Some("nobody decided before the request expired".into()),
                );
            }
        });
        Ok(Requested {
            request,
            state: rx,
            receipt,
        })
    }

    /// Moves a pending request to a final state: records, wakes, persists,
    /// notifies. `false` if it was no longer pending.
    #[allow(clippy::needless_pass_by_value)] // a final state is handed over, as it is stored
    fn finish(
        &self,
        id: &str,
        state: State,
        approver: Option<String>,
        reason: Option<String>,
    ) -> bool {
        let view = {
            let mut inner = self.lock();
            let Some(e) = inner.entries.get_mut(id) else {
                return false;
            };
            if !e.state.is_pending() {
                return false;
            }
            e.state = state.clone();
            e.tx.send_replace(state.clone());
            let view = View {
                request: e.request.clone(),
                status: state.clone(),
                approvals: e.approvals.iter().map(|(a, _)| a.clone()).collect(),
            };
            if let State::Approved { scope, .. } = &state {
                let r = &e.request;
                let grant = match (r.mode, scope.kind) {
                    // The held statement itself runs: nothing more to grant.
                    (Mode::Hold, ScopeKind::Once) => None,
                    (_, kind) => Some(Grant {
                        request: r.id.clone(),
                        kind,
                        identity: r.identity.clone(),
                        session: (kind == ScopeKind::Session).then(|| r.session.clone()),
                        rule: r.rule.clone(),
                        key: (kind != ScopeKind::Identity).then_some(e.key),
                        uses: (kind == ScopeKind::Once).then_some(1),
                        until: Instant::now()
                            + match kind {
                                ScopeKind::Identity => {
                                    Duration::from_secs(scope.minutes.unwrap_or(1) * 60)
                                }
                                // Session grants end with the session, or after a day.
                                ScopeKind::Session => Duration::from_hours(24),
                                ScopeKind::Once => Duration::from_secs(r.valid_for_secs.max(1)),
                            },
                    }),
                };
                inner.grants.extend(grant);
            }
            view
        };
        let detail = match &state {
            State::Approved { by, scope, .. } => {
                serde_json::json!({"scope": scope, "approvers": by})
            }
            _ => serde_json::json!({}),
        };
        let name = state.name();
        tracing::info!(event = "approval_decided", request = %id, state = name, approver = approver.as_deref(), "approval request decided");
        self.record(Self::event(&view.request, name, approver, reason, detail));
        self.dirty.notify_one();
        self.notifier.send(name, &view);
        true
    }

    /// An approver approves. With N approvers required, the request is
    /// approved on the N-th distinct one.
    pub fn approve(
        &self,
        id: &str,
        who: &Approver,
        scope: Scope,
        reason: Option<String>,
    ) -> Result<View, ApprovalError> {
        let done = {
            let mut inner = self.lock();
            let e = inner
                .entries
                .get_mut(id)
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            check_decider(e, who)?;
            let r = &e.request;
            if !r.scopes.contains(&scope.kind) {
                return Err(ApprovalError::Scope(format!(
                    "rule {} allows the scopes {}; `{}` is not one of them",
                    r.rule,
                    r.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    scope.kind.as_str()
                )));
            }
            if scope.kind == ScopeKind::Identity
                && scope.minutes.unwrap_or(0) > r.max_identity_minutes
            {
                return Err(ApprovalError::Scope(format!(
                    "rule {} allows the identity scope for at most {} minutes",
                    r.rule, r.max_identity_minutes
                )));
            }
            if e.approvals.iter().any(|(a, _)| a == &who.name) {
                return Err(ApprovalError::AlreadyApproved(who.name.clone()));
            }
            e.approvals.push((who.name.clone(), reason.clone()));
            let have = e.approvals.len() as u32;
            let need = r.approvers_required;
            if have < need {
                let view = View {
                    request: r.clone(),
                    status: e.state.clone(),
                    approvals: e.approvals.iter().map(|(a, _)| a.clone()).collect(),
                };
                Err(view)
            } else {
                Ok(e.approvals
                    .iter()
                    .map(|(a, _)| a.clone())
                    .collect::<Vec<_>>())
            }
        };
        match done {
            Err(view) => {
                // Not yet enough approvers: record this one and wait for more.
                let detail = serde_json::json!({"scope": scope, "approvals": view.approvals.len(), "required": view.request.approvers_required, "via": who.via});
                self.record(Self::event(
                    &view.request,
                    "approval_recorded",
                    Some(who.name.clone()),
                    reason,
                    detail,
                ));
                self.notifier.send("approval_recorded", &view);
                Ok(view)
            }
            Ok(by) => {
                self.finish(
                    id,
                    State::Approved {
                        by,
                        scope,
                        reason: reason.clone(),
                    },
                    Some(who.name.clone()),
                    reason,
                );
                self.show(id)
                    .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
            }
        }
    }

    /// An approver denies.
    pub fn deny(&self, id: &str, who: &Approver, reason: String) -> Result<View, ApprovalError> {
        {
            let mut inner = self.lock();
            let e = inner
                .entries
                .get_mut(id)
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            check_decider(e, who)?;
        }
        let state = State::Denied {
            by: who.name.clone(),
            reason: reason.clone(),
        };
        if !self.finish(id, state, Some(who.name.clone()), Some(reason)) {
            return Err(ApprovalError::NotPending(
                id.to_owned(),
                "decided meanwhile".into(),
            ));
        }
        self.show(id)
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
    }

    /// The client withdrew the request (`CancelRequest`, disconnect).
    pub fn withdraw(&self, id: &str, reason: &str) -> bool {
        self.finish(
            id,
            State::Withdrawn {
                reason: reason.to_owned(),
            },
            None,
            Some(reason.to_owned()),
        )
    }

    /// Withdraws the pending hold-mode requests of a proxy session; how many.
    pub fn withdraw_session(&self, proxy_session: u64, reason: &str) -> usize {
        let ids: Vec<String> = self
            .lock()
            .entries
            .values()
            .filter(|e| {
                e.state.is_pending()
                    && e.request.mode == Mode::Hold
                    && e.request.proxy_session == proxy_session
            })
            .map(|e| e.request.id.clone())
            .collect();
        ids.iter().filter(|id| self.withdraw(id, reason)).count()
    }

    /// Session grants die with their session.
    pub fn session_ended(&self, session: &str) {
        self.lock()
            .grants
            .retain(|g| g.session.as_deref() != Some(session));
    }

    /// The held statement was sent to the database (or a grant let one through).
    pub fn executed(&self, request: &ApprovalRequest, session: &str, statement: u64, how: &str) {
        let ev = AuditEvent::Approval(ApprovalEvent {
            session: Some(session.to_owned()),
            statement: Some(statement),
            request: request.id.clone(),
            decision: "executed".into(),
            approver: None,
            reason: None,
            detail: serde_json::json!({"how": how}),
        });
        self.record(ev);
    }

    /// A later statement ran under a grant from `request`.
    pub fn grant_used(&self, request: &str, scope: Scope, session: &str, statement: u64) {
        let ev = AuditEvent::Approval(ApprovalEvent {
            session: Some(session.to_owned()),
            statement: Some(statement),
            request: request.to_owned(),
            decision: "grant_used".into(),
            approver: None,
            reason: None,
            detail: serde_json::json!({"scope": scope}),
        });
        self.record(ev);
    }

    /// Every request still known, newest first (pending ones, and decided
    /// ones of this run).
    pub fn list(&self, pending_only: bool) -> Vec<View> {
        let inner = self.lock();
        let mut v: Vec<View> = inner
            .entries
            .values()
            .filter(|e| !pending_only || e.state.is_pending())
            .map(|e| View {
                request: e.request.clone(),
                status: e.state.clone(),
                approvals: e.approvals.iter().map(|(a, _)| a.clone()).collect(),
            })
            .collect();
        v.sort_by(|a, b| {
            b.request
                .created_at
                .cmp(&a.request.created_at)
                .then(b.request.id.cmp(&a.request.id))
        });
        v
    }

    /// One request.
    pub fn show(&self, id: &str) -> Option<View> {
        let inner = self.lock();
        inner.entries.get(id).map(|e| View {
            request: e.request.clone(),
            status: e.state.clone(),
            approvals: e.approvals.iter().map(|(a, _)| a.clone()).collect(),
        })
    }

    /// Number of pending requests.
    pub fn pending(&self) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.state.is_pending())
            .count()
    }

    /// At a clean stop: every pending request is denied on the record (the
    /// held clients are disconnected by the stop).
    pub fn shutdown(&self) {
        let ids: Vec<String> = self
            .lock()
            .entries
            .values()
            .filter(|e| e.state.is_pending())
            .map(|e| e.request.id.clone())
            .collect();
        for id in &ids {
            self.finish(
                id,
                State::DeniedByRestart,
                None,
                Some("the interceptor stopped while the request was pending".into()),
            );
        }
        let _ = write_state(&self.state_file, "[]");
    }

    fn snapshot(&self) -> String {
        let inner = self.lock();
        let pending: Vec<&ApprovalRequest> = inner
            .entries
            .values()
            .filter(|e| e.state.is_pending())
            .map(|e| &e.request)
            .collect();
        serde_json::to_string(&pending).unwrap_or_else(|_| "[]".into())
    }

    /// Writes the pending requests whenever they change (coalesced), and
    /// forgets decided requests an hour after they were decided.
    async fn persist_loop(self: Arc<Self>) {
        loop {
            let notified = self.dirty.notified();
            let text = self.snapshot();
            let path = self.state_file.clone();
            self.prune();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || write_state(&path, &text)).await
            {
                tracing::error!(event = "approval_state_error", error = %e, "pending approvals could not be saved");
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_mins(1)) => {}
            }
        }
    }

    fn prune(&self) {
        let now = unix_now();
        self.lock()
            .entries
            .retain(|_, e| e.state.is_pending() || e.request.expires_unix + 3600 > now);
    }

    /// Builds the request timestamps for a lifetime.
    pub fn times(expiry: Duration) -> (String, String, u64) {
        let now = SystemTime::now();
        let until = now + expiry;
        (
            rfc3339(now),
            rfc3339(until),
            until.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        )
    }
}

/// Refuses deciders who may not decide this request.
fn check_decider(e: &Entry, who: &Approver) -> Result<(), ApprovalError> {
    let r = &e.request;
    if !e.state.is_pending() {
        return Err(ApprovalError::NotPending(
            r.id.clone(),
            e.state.name().into(),
        ));
    }
    let same_name = [Some(&r.identity), r.user.as_ref()]
        .into_iter()
        .flatten()
        .any(|n| n.eq_ignore_ascii_case(&who.name));
    if same_name || who.uid.is_some_and(|u| u == r.uid) {
        return Err(ApprovalError::SelfApproval(format!(
            "{} cannot decide request {} made by identity {} (uid {}): a requester never approves its own request",
            who.name, r.id, r.identity, r.uid
        )));
    }
    if !r.groups.is_empty() && !who.groups.iter().any(|g| r.groups.contains(g)) {
        return Err(ApprovalError::Forbidden(format!(
            "{} is not in an approver group of rule {} ({})",
            who.name,
            r.rule,
            r.groups.join(", ")
        )));
    }
    Ok(())
}

/// Writes `text` to `path` atomically, root-only.
fn write_state(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))
}
