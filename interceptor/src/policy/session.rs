//! Enforcing the policy on a live session: a [`SessionHooks`] that decides
//! every statement before it reaches the server.
//!
//! A refused statement is never sent. In its place the proxy sends a
//! *sentinel*: a statement made of one unique word, which PostgreSQL rejects
//! at parse time (`syntax error at or near "interceptor_refused_…"`). The
//! server's error comes back in exactly the place the refused statement's
//! result would have, and is rewritten into the refusal. So responses stay in
//! order in pipelines, and inside a transaction block the server itself
//! marks the block failed, as it would have for a real error; after a refused
//! Parse the server skips to Sync, so the statement's Bind/Execute fail as
//! they would for a statement that does not exist.
//!
//! Row limits count `DataRow` (and COPY OUT `CopyData`) per statement; past
//! the limit the rows are dropped and the statement ends in an error.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use super::{
    Action, Context, Decision, PolicySet, PolicyStore, Subject, TokenFacts,
    masking::{
        PlanInput, SessionMask, Slot, bind_formats, bind_params, plan_message, row_description,
    },
    startup::check_startup,
};
use crate::{
    approval::{
        self, ApprovalRequest, ApprovalSpec, Broker, Mode, State,
        hold::{
            RawParams, WithdrawOnDrop, bind_params as raw_bind_params, outcome_error, shown_param,
        },
        request::statement_key,
    },
    audit::{
        AuditEvent, AuditLog, DecisionRecord, ResultSummary, SessionEnd, SessionStart,
        StatementEvent,
    },
    mask::{
        catalog::CatalogPool,
        lineage::{CopyFormat, CopyLayout},
        own::SearchPath,
        rows::{CopyOut, Masker, Shape, Stats},
    },
    proxy::hooks::{HooksFactory, SessionHooks, SessionInfo, SessionSummary, Verdict},
    sql,
    token::{TokenError, TokenOutcome, Validator},
    wire::{
        Frame, PgError,
        error_response::{error_code, error_message, parse_error_fields},
        sqlstate,
        tag::{backend as be, frontend as fe},
        values::Bind,
    },
};

/// SQLSTATE of a refusal: insufficient_privilege.
pub const REFUSED: &str = "42501";
/// SQLSTATE of a syntax error, what the sentinel produces.
const SYNTAX_ERROR: &str = "42601";

/// Builds [`PolicyHooks`] for each session from the live policy store,
/// recording into the audit log.
pub struct PolicyFactory {
    store: Arc<PolicyStore>,
    audit: AuditLog,
    limits: sql::Limits,
    /// The approval workflow, when `[approvals]` is configured; without it
    /// `approve` statements are refused.
    approvals: Option<Arc<Broker>>,
    catalogs: Option<Arc<CatalogPool>>,
    mask_key: Arc<[u8; 32]>,
    /// `[audit] record_secrets`.
    record_secrets: bool,
    /// Validates workload tokens; `None`: identities that need one never match.
    tokens: Option<Arc<Validator>>,
}

impl PolicyFactory {
    /// Hooks deciding from `store`'s current set at each statement and
    /// recording every session, statement and result in `audit`.
    pub fn new(store: Arc<PolicyStore>, audit: AuditLog) -> Self {
        Self {
            store,
            audit,
            limits: sql::Limits::default(),
            catalogs: None,
            mask_key: Arc::new(rand::random()),
            record_secrets: false,
            tokens: None,
            approvals: None,
        }
    }

    /// Masking reads the catalog through `catalogs` and makes tokens with
    /// `key` (the same key gives the same tokens across restarts).
    #[must_use]
    pub fn with_masking(mut self, catalogs: Arc<CatalogPool>, key: [u8; 32]) -> Self {
        self.catalogs = Some(catalogs);
        self.mask_key = Arc::new(key);
        self
    }

    /// Records statement text as sent, secrets included (`[audit]
    /// record_secrets`); by default they are replaced by keyed marks.
    #[must_use]
    pub fn with_record_secrets(mut self, on: bool) -> Self {
        self.record_secrets = on;
        self
    }

    /// Checks workload tokens with `validator` for identities that use them.
    #[must_use]
    pub fn with_tokens(mut self, validator: Arc<Validator>) -> Self {
        self.tokens = Some(validator);
        self
    }

    /// Holds `approve` statements for a decision through `broker`.
    #[must_use]
    pub fn with_approvals(mut self, broker: Arc<Broker>) -> Self {
        self.approvals = Some(broker);
        self
    }
}

/// The error a client gets when its statement or session cannot be recorded.
fn unrecorded(reason: &str) -> PgError {
    PgError::error(
        sqlstate::INTERNAL_ERROR,
        format!("interceptor: refused because it cannot be recorded in the audit log: {reason}"),
    )
    .with_hint(
        "nothing was sent to the database; the host's operators must restore the audit directory",
    )
}

/// Why a session is refused at connect, for the client and the audit log.
fn refusal(info: &SessionInfo, has_token_identities: bool) -> (&'static str, PgError) {
    let a = &info.attestation;
    match &info.token {
        TokenOutcome::Rejected(e) => (
            e.reason(),
            PgError::fatal(sqlstate::INVALID_PASSWORD, format!("interceptor: token refused: {e}"))
                .with_detail(format!("reason: {}", e.reason())),
        ),
        TokenOutcome::Missing => (
            TokenError::Missing.reason(),
            PgError::fatal(sqlstate::INVALID_PASSWORD, format!("interceptor: {}", TokenError::Missing))
                .with_detail(format!("reason: {}", TokenError::Missing.reason()))
                .with_hint("e.g. PGPASSWORD=\"$ACTIONS_ID_TOKEN\" (see the Tokens section of the interceptor README)"),
        ),
        TokenOutcome::Verified(t) => (
            "token_claims_mismatch",
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "interceptor: no policy identity accepts this process with this token (issuer {}, subject {})",
                    t.issuer_name,
                    t.subject.as_deref().unwrap_or("-")
                ),
            )
            .with_detail(format!(
                "reason: token_claims_mismatch; process {} uid {} in cgroup {}",
                a.exe.display(),
                a.uid,
                a.cgroup
            ))
            .with_hint("the token is valid, but its claims (repository, ref, ...) or this process are not what the policy allows"),
        ),
        TokenOutcome::NotAsked => (
            "no_identity",
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "interceptor: no policy identity matches this process ({} uid {} in cgroup {})",
                    a.exe.display(),
                    a.uid,
                    a.cgroup
                ),
            )
            .with_hint(if has_token_identities {
                "ask the owners of this host's interceptor policy to add an [[identity]] for this job, or present the job's token"
            } else {
                "ask the owners of this host's interceptor policy to add an [[identity]] for this job"
            }),
        ),
    }
}

impl HooksFactory for PolicyFactory {
    fn refused(&self, refusal: &crate::audit::ConnectionRefused) {
        record_later(
            &self.audit,
            AuditEvent::ConnectionRefused(refusal.clone()),
            "connection_refused",
        );
    }

    fn cancel(&self, session: u64) -> bool {
        self.approvals.as_ref().is_some_and(|b| {
            b.withdraw_session(
                session,
                "the client cancelled the statement (CancelRequest)",
            ) > 0
        })
    }

    fn token_validator(
        &self,
        attestation: &crate::identity::Attestation,
    ) -> Option<Arc<Validator>> {
        let tokens = self.tokens.as_ref()?;
        self.store
            .current()
            .wants_token(&Subject::from(attestation))
            .then(|| Arc::clone(tokens))
    }

    fn open(&self, info: &Arc<SessionInfo>) -> Result<Box<dyn SessionHooks>, PgError> {
        let set = self.store.current();
        let mut subject = Subject::from(info.attestation.as_ref());
        subject.token = info.token.verified().map(TokenFacts::from);
        // A token that was presented and failed is refused outright, never
        // read as "no token".
        let identity = match &info.token {
            TokenOutcome::Rejected(_) => None,
            _ => set.identify(&subject),
        };
        let session = self.audit.session_id(info.id);
        // Every session is recorded, refused ones too; one that cannot be
        // recorded does not start.
        let mut start = SessionStart::from_info(
            session.clone(),
            self.audit.host(),
            info,
            identity.map(str::to_owned),
        );
        let refused = identity.is_none().then(|| {
            refusal(
                info,
                set.identities
                    .iter()
                    .any(super::engine::CompiledIdentity::uses_token),
            )
        });
        start.refused = refused.as_ref().map(|(reason, _)| (*reason).to_owned());
        let start_receipt = match self.audit.enqueue(AuditEvent::SessionStart(start)) {
            Ok(r) => r,
            Err(e) => {
                let mut err = unrecorded(&e.to_string());
                err.severity = "FATAL";
                return Err(err);
            }
        };
        // A session refused here ends here, on the record, with the reason.
        let end_refused = |err: PgError| -> PgError {
            record_later(
                &self.audit,
                AuditEvent::SessionEnd(SessionEnd {
                    session: session.clone(),
                    reason: "refused".to_owned(),
                    detail: Some(format!("{}: {}", err.code, err.message)),
                    duration_ms: 0,
                    statements: 0,
                    refused: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                }),
                "session_end",
            );
            err
        };
        let (Some(identity), None) = (identity, &refused) else {
            return Err(end_refused(
                refused.map_or_else(|| refusal(info, false).1, |(_, err)| err),
            ));
        };
        check_startup(info, &set, identity).map_err(end_refused)?;
        tracing::info!(
            event = "identity",
            session = info.id,
            audit_session = %session,
            identity,
            token_issuer = info.token.verified().map(|t| t.issuer_name.as_str()),
            "session identified"
        );
        Ok(Box::new(PolicyHooks {
            record_secrets: self.record_secrets,
            start_receipt: Some(start_receipt),
            store: Arc::clone(&self.store),
            info: Arc::clone(info),
            identity: identity.to_owned(),
            limits: self.limits,
            audit: self.audit.clone(),
            session,
            nonce: rand::random(),
            seq: 0,
            statement_seq: 0,
            refusals: Arc::default(),
            pending: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            prepared: HashMap::new(),
            drain: false,
            refused: Arc::default(),
            approvals: self.approvals.clone(),
            held: None,
            approve_sql: HashMap::new(),
            bound: HashMap::new(),
            mask: SessionMask {
                catalogs: self.catalogs.clone(),
                ..SessionMask::with_search_path(
                    self.catalogs.as_ref().map(|c| c.for_session(info)),
                    Arc::clone(&self.mask_key),
                    startup_search_path(info),
                )
            },
        }))
    }
}

/// The `search_path` a session starts with: a startup parameter, or
/// `-c search_path=...` in `options`; else the role's default.
fn startup_search_path(info: &SessionInfo) -> SearchPath {
    let from_options = info
        .parameters
        .get("options")
        .and_then(|o| {
            super::startup::parse_options(o)
                .into_iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case("search_path"))
        })
        .map(|(_, v)| v);
    match info.parameters.get("search_path").cloned().or(from_options) {
        Some(v) => SearchPath::Set(v),
        None => SearchPath::Default,
    }
}

/// Whether a message may change what the session itself created (so the
/// next one is planned against an uncertain state until it is answered).
fn may_change_own(analysis: &Result<sql::Analysis, sql::SqlError>) -> bool {
    use sql::StatementClass as C;
    match analysis {
        Ok(a) => a.statements.iter().any(|f| {
            f.classes
                .iter()
                .any(|c| matches!(c, C::Ddl | C::Transaction | C::Code))
                || f.settings.iter().any(|(n, _)| n == "search_path")
                || !f.functions.is_empty() && f.classes.contains(&C::Write)
        }),
        Err(_) => true,
    }
}

/// A result the server owes the client, in order.
#[derive(Debug)]
enum Pending {
    /// A simple Query (or a sentinel in place of one): ends at ReadyForQuery.
    Query(RowCount),
    /// An Execute: ends at CommandComplete, PortalSuspended, EmptyQuery or
    /// an error.
    Execute(RowCount),
    /// A Sync: ends at ReadyForQuery.
    Sync,
}

/// A statement whose result is on its way: its row limit, and what the
/// result record needs.
#[derive(Debug)]
struct RowCount {
    limit: Option<u64>,
    rule: String,
    rows: u64,
    bytes: u64,
    exceeded: bool,
    /// Statement counter of the audit record (0: not recorded, e.g. an
    /// Execute of a statement prepared before a failure).
    statement: u64,
    started: Instant,
    /// Masks of the message's statements (None: nothing to mask).
    masks: Option<Slot>,
    /// Extended protocol: the portal executed.
    portal: Option<Vec<u8>>,
    /// The result being sent: its shape and masker.
    shape: Option<Shape>,
    copy: Option<CopyOut>,
    masker: Option<Masker>,
    stats: Stats,
    /// Bind parameters of an Execute.
    params: Vec<Option<String>>,
}

impl Default for RowCount {
    fn default() -> Self {
        Self {
            limit: None,
            rule: String::new(),
            rows: 0,
            bytes: 0,
            exceeded: false,
            statement: 0,
            started: Instant::now(),
            masks: None,
            portal: None,
            shape: None,
            copy: None,
            masker: None,
            stats: Stats::default(),
            params: Vec::new(),
        }
    }
}

impl RowCount {
    fn new(d: &Decision, statement: u64) -> Self {
        Self {
            limit: d.max_rows,
            rule: d.rule.clone(),
            statement,
            ..Self::default()
        }
    }

    /// Counts a row; `false` = drop it.
    fn admit(&mut self, len: usize) -> bool {
        self.rows += 1;
        if self.limit.is_some_and(|l| self.rows > l) {
            self.exceeded = true;
        }
        if !self.exceeded {
            // Bytes that reach the client; dropped rows do not.
            self.bytes += len as u64;
        }
        !self.exceeded
    }

    fn error(&self) -> Frame {
        PgError::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "interceptor: result cut off by rule {}: more than {} rows",
                self.rule,
                self.limit.unwrap_or_default()
            ),
        )
        .with_hint("add a LIMIT or a narrower WHERE clause")
        .to_frame()
    }
}

/// Per-session enforcement state.
pub struct PolicyHooks {
    /// `[audit] record_secrets`: statement text recorded as sent.
    record_secrets: bool,
    /// The `session_start` record on its way to disk: the session is
    /// admitted once it is there ([`SessionHooks::admit`]).
    start_receipt: Option<crate::audit::Receipt>,
    store: Arc<PolicyStore>,
    info: Arc<SessionInfo>,
    identity: String,
    limits: sql::Limits,
    audit: AuditLog,
    /// Audit session id (unique across daemon restarts).
    session: String,
    /// Random per session, so sentinels cannot collide with client SQL.
    nonce: u32,
    seq: u64,
    /// Audit statement counter.
    statement_seq: u64,
    /// Refusals waiting for their sentinel's syntax error: token -> error.
    /// Shared with the deferred verdicts that may add one when recording fails.
    refusals: Arc<Mutex<VecDeque<(String, PgError)>>>,
    /// Results owed, oldest first.
    pending: VecDeque<Pending>,
    /// Row limits and audit counters of prepared statements (extended
    /// protocol), by name.
    statements: HashMap<Vec<u8>, (Decision, u64)>,
    /// Statement of each bound portal.
    portals: HashMap<Vec<u8>, Vec<u8>>,
    /// SQL-level `PREPARE name AS ...`: its facts (those of the inner
    /// statement, as the analyser reports them).
    prepared: HashMap<String, sql::StatementFacts>,
    /// After a cut-off, drop results until ReadyForQuery.
    drain: bool,
    /// Statements refused, for the session record.
    refused: Arc<AtomicU64>,
    /// Masking state.
    mask: SessionMask,
    /// The approval workflow (None: `approve` is refused).
    approvals: Option<Arc<Broker>>,
    /// The request of the statement held now, if any.
    held: Option<String>,
    /// SQL of prepared statements that need approval to execute, by name.
    approve_sql: HashMap<Vec<u8>, String>,
    /// Bind parameters of portals of such statements.
    bound: HashMap<Vec<u8>, RawParams>,
}

impl PolicyHooks {
    fn decide(&mut self, sql_text: &str) -> (Decision, Arc<Result<sql::Analysis, sql::SqlError>>) {
        let started = std::time::Instant::now();
        let set = self.store.current();
        let analysis_entry = sql::analyze_cached(sql_text, &self.limits);
        let analysis = analysis_entry.as_ref();
        let ctx = Context {
            identity: &self.identity,
            target: &self.info.target,
            database: &self.info.database,
        };
        let decision = match analysis {
            Ok(a) if a.statements.iter().any(|f| f.command == "EXECUTE") => {
                self.decide_with_prepared(&set, &ctx, a)
            }
            _ => set.decide(&ctx, analysis),
        };
        if decision.action == Action::Allow
            && let Ok(a) = &analysis
        {
            self.remember_prepares(a);
        }
        // The audit log is the record of statements; this line is for
        // debugging (one synchronous JSON line per statement costs a quarter
        // of the daemon's CPU under load).
        tracing::debug!(
            event = "statement",
            session = self.info.id,
            identity = %self.identity,
            action = ?decision.action,
            rule = %decision.rule,
            reason = %decision.reason,
            sql = %truncate(sql_text, 4096),
        );
        crate::metrics::statement(
            decision.action.as_str(),
            &decision.rule,
            started.elapsed(),
        );
        (decision, analysis_entry)
    }

    /// `EXECUTE name` runs what `PREPARE name` parsed earlier in this
    /// session: decide it as that statement (with today's policy). An
    /// unknown name is refused.
    fn decide_with_prepared(
        &self,
        set: &PolicySet,
        ctx: &Context<'_>,
        a: &sql::Analysis,
    ) -> Decision {
        let mut expanded = a.clone();
        // PREPAREs earlier in the same message count too.
        let mut earlier: HashMap<String, sql::StatementFacts> = HashMap::new();
        for f in &mut expanded.statements {
            if f.command == "PREPARE"
                && let Some(n) = f.prepared_name()
            {
                earlier.insert(n, f.clone());
            }
            if f.command == "EXECUTE" {
                let name = f.prepared_name();
                match name
                    .as_ref()
                    .and_then(|n| earlier.get(n).or_else(|| self.prepared.get(n)))
                {
                    Some(inner) => {
                        // Decided as what PREPARE parsed (its facts are the
                        // inner statement's), named after the inner command.
                        let mut inner = inner.clone();
                        inner.command = inner
                            .nested
                            .iter()
                            .next()
                            .cloned()
                            .unwrap_or_else(|| "EXECUTE".into());
                        inner.text.clone_from(&f.text);
                        *f = inner;
                    }
                    None => {
                        return Decision {
                            action: Action::Deny,
                            rule: "builtin.unknown-prepared".into(),
                            reason: format!(
                                "EXECUTE of a statement this session did not PREPARE through the interceptor ({})",
                                name.unwrap_or_default()
                            ),
                            max_rows: None,
                        };
                    }
                }
            }
        }
        set.decide(ctx, &Ok(expanded))
    }

    fn remember_prepares(&mut self, a: &sql::Analysis) {
        for f in &a.statements {
            match f.command.as_str() {
                "PREPARE" => {
                    if let Some(name) = f.prepared_name() {
                        self.prepared.insert(name, f.clone());
                    }
                }
                "DEALLOCATE" => match f.prepared_name() {
                    Some(n) => {
                        self.prepared.remove(&n);
                    }
                    None => self.prepared.clear(), // DEALLOCATE ALL
                },
                _ => {}
            }
        }
    }

    /// The error a client sees for a refused statement.
    fn refusal(&self, d: &Decision) -> PgError {
        let message = match d.action {
            Action::Approve => format!(
                "interceptor: statement requires approval (rule {}): {}; no approval workflow is enabled on this host, so it is refused",
                d.rule, d.reason
            ),
            _ => format!(
                "interceptor: statement refused by rule {}: {}",
                d.rule, d.reason
            ),
        };
        let code = if d.rule == super::engine::SYNTAX_ERROR_RULE {
            SYNTAX_ERROR
        } else {
            REFUSED
        };
        PgError::error(code, message).with_detail(self.refusal_detail())
    }

    /// A fresh sentinel word (not yet standing for anything).
    fn token(&mut self) -> String {
        self.seq += 1;
        format!("interceptor_refused_{:08x}_{}", self.nonce, self.seq)
    }

    /// A fresh sentinel word and the refusal it stands for.
    fn sentinel(&mut self, err: PgError) -> String {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let token = self.token();
        lock(&self.refusals).push_back((token.clone(), err));
        token
    }

    /// Records the statement, and only once it is durable lets `frame` go.
    /// When it cannot be recorded, a sentinel of the same `kind` (Query or
    /// Parse of statement `name`) goes instead and the client is told why.
    fn record_then(
        &mut self,
        event: StatementEvent,
        frame: Frame,
        kind: u8,
        name: &[u8],
    ) -> Verdict {
        let receipt = if self.audit.healthy() {
            self.audit
                .enqueue(AuditEvent::Statement(event))
                .map_err(|e| e.to_string())
        } else {
            Err(self
                .audit
                .last_error()
                .unwrap_or_else(|| "the audit log is not writable".into()))
        };
        let receipt = match receipt {
            Ok(r) => r,
            Err(reason) => {
                let token = self.sentinel(unrecorded(&reason));
                return Verdict::Forward(sentinel_frame(kind, name, &token));
            }
        };
        let token = self.token();
        let fallback = sentinel_frame(kind, name, &token);
        let refusals = Arc::clone(&self.refusals);
        Verdict::Await(Box::pin(async move {
            match receipt.await {
                Ok(_) => Verdict::Forward(frame),
                Err(e) => {
                    lock(&refusals).push_back((token, unrecorded(&e.to_string())));
                    Verdict::Forward(fallback)
                }
            }
        }))
    }

    fn statement_event(
        &mut self,
        sql_text: &str,
        protocol: &str,
        d: &Decision,
    ) -> (u64, StatementEvent) {
        self.statement_seq += 1;
        let (sql, sql_full) = StatementEvent::bounded_sql(sql_text);
        let (sql, sql_redacted) = if self.record_secrets {
            (sql, Vec::new())
        } else {
            let detectors = Arc::clone(self.store.current().masking.detectors());
            let r = crate::audit::secrets::redact(&sql, &detectors, &self.mask.key);
            (r.text, r.reasons)
        };
        let ev = StatementEvent {
            session: self.session.clone(),
            statement: self.statement_seq,
            sql,
            params: Vec::new(),
            protocol: protocol.to_owned(),
            decision: DecisionRecord::from(d),
            sql_full,
            sql_redacted,
        };
        (self.statement_seq, ev)
    }

    /// Appends a result record without holding the session up: results
    /// are recorded after they reach the client (their statement was
    /// recorded before it was sent).
    fn record_result(
        &self,
        c: &RowCount,
        command_tag: Option<String>,
        error: Option<(String, String)>,
    ) {
        let masker = c.masker.as_ref().or(self.mask.masker.as_ref());
        record_result(&self.audit, &self.session, c, masker, command_tag, error);
    }
}

/// Appends a result record without holding the session up: results are
/// recorded after they reach the client (their statement was recorded
/// before it was sent).
fn record_result(
    audit: &AuditLog,
    session: &str,
    c: &RowCount,
    masker: Option<&Masker>,
    command_tag: Option<String>,
    error: Option<(String, String)>,
) {
    {
        if c.statement == 0 {
            return;
        }
        let (error_sqlstate, error_message) =
            error.map_or((None, None), |(s, m)| (Some(s), Some(m)));
        let ev = AuditEvent::StatementResult(ResultSummary {
            session: session.to_owned(),
            statement: c.statement,
            command_tag,
            rows: c.rows.min(c.limit.unwrap_or(u64::MAX)),
            bytes: c.bytes,
            masked_columns: c.stats.describe(),
            params: c
                .params
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map(|v| masker.map_or_else(|| v.clone(), |m| m.text(v).into_owned()))
                })
                .collect(),
            duration_us: c.started.elapsed().as_micros() as u64,
            error_sqlstate,
            error_message,
        });
        record_later(audit, ev, "result");
    }
}

impl PolicyHooks {
    /// An allowed statement: planned for masking (which may still refuse
    /// it), recorded, and only then sent. Identities that see everything
    /// raw go straight to [`Self::record_then`].
    /// What planning a statement's result masks needs, if this identity's
    /// results are masked at all.
    fn plan_input(
        &mut self,
        analysis: Arc<Result<sql::Analysis, sql::SqlError>>,
    ) -> Option<PlanInput> {
        self.before_send(&analysis);
        let set = self.store.current();
        let profile = set.masking.profile(&self.identity);
        let masker = self.mask.masker(&set.masking, &profile)?;
        let own = self.mask.own_for_planning();
        if may_change_own(&analysis) {
            self.mask.own_inflight = true;
        }
        Some(PlanInput {
            catalog: self.mask.catalog.clone(),
            policy: Arc::clone(&set.masking),
            profile,
            masker,
            analysis,
            named: Arc::clone(&self.mask.named),
            own,
        })
    }

    /// Catalog bookkeeping for a statement about to be sent, whoever sends
    /// it: DDL makes the catalog's answers stale (now, and again when its
    /// transaction ends).
    fn before_send(&mut self, analysis: &Result<sql::Analysis, sql::SqlError>) {
        let ddl = match analysis {
            Ok(a) => a
                .statements
                .iter()
                .any(|f| f.classes.contains(&sql::StatementClass::Ddl)),
            // Unanalysable SQL may be anything.
            Err(_) => true,
        };
        if ddl {
            self.mask.ddl = true;
            if let Some(c) = &self.mask.catalog {
                c.invalidate();
            }
        }
    }

    /// `DROP DATABASE`, `ALTER DATABASE` and `CREATE DATABASE` (whose
    /// `TEMPLATE` must have no other sessions) find the proxy's own catalog
    /// connections in their way: those of this target are closed first.
    fn database_command(
        &self,
        analysis: &Result<sql::Analysis, sql::SqlError>,
    ) -> Option<Arc<crate::mask::catalog::CatalogPool>> {
        let a = analysis.as_ref().ok()?;
        a.statements
            .iter()
            .any(|f| {
                matches!(
                    f.command.as_str(),
                    "DROP DATABASE" | "ALTER DATABASE" | "CREATE DATABASE"
                )
            })
            .then(|| self.mask.catalogs.clone())
            .flatten()
    }

    fn record_masked(
        &mut self,
        mut event: StatementEvent,
        frame: Frame,
        kind: u8,
        name: &[u8],
        analysis: Arc<Result<sql::Analysis, sql::SqlError>>,
        slot: &Slot,
    ) -> Verdict {
        let close = self.database_command(&analysis);
        let Some(input) = self.plan_input(analysis) else {
            let verdict = self.record_then(event, frame, kind, name);
            return match (close, &self.info.target) {
                (Some(pool), target) => {
                    let target = target.clone();
                    Verdict::Await(Box::pin(async move {
                        pool.close_target(&target).await;
                        match verdict {
                            Verdict::Await(next) => next.await,
                            other => other,
                        }
                    }))
                }
                (None, _) => verdict,
            };
        };
        let target = self.info.target.clone();
        let token = self.token();
        let refusal_frame = sentinel_frame(kind, name, &token);
        let fallback_token = self.token();
        let fallback = sentinel_frame(kind, name, &fallback_token);
        let refusals = Arc::clone(&self.refusals);
        let refused = Arc::clone(&self.refused);
        let audit = self.audit.clone();
        let detail = self.refusal_detail();
        let slot = Arc::clone(slot);
        Verdict::Await(Box::pin(async move {
            if let Some(pool) = close {
                pool.close_target(&target).await;
            }
            let send = match plan_message(input).await {
                Ok(masks) => {
                    *lock(&slot) = masks.into();
                    frame
                }
                Err(reason) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    let err = PgError::error(REFUSED, format!("interceptor: statement refused by rule {MASKING_RULE}: {reason}"))
                        .with_detail(detail)
                        .with_hint("ask for an identity that may see these values, or leave the masked columns out");
                    event.decision = DecisionRecord {
                        action: "deny".into(),
                        rule: MASKING_RULE.into(),
                        reason,
                        max_rows: None,
                    };
                    lock(&refusals).push_back((token, err));
                    refusal_frame
                }
            };
            match durable(&audit, event).await {
                Ok(()) => Verdict::Forward(send),
                Err(e) => {
                    lock(&refusals).push_back((fallback_token, unrecorded(&e)));
                    Verdict::Forward(fallback)
                }
            }
        }))
    }

    fn refusal_detail(&self) -> String {
        format!(
            "identity {} on target {}, database {}",
            self.identity, self.info.target, self.info.database
        )
    }

    fn query(&mut self, frame: Frame) -> Verdict {
        let Some(sql_text) = cstr(frame.body(), 0).map(|(s, _)| s) else {
            return Verdict::Close(PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "interceptor: malformed Query message",
            ));
        };
        let sql_text = String::from_utf8_lossy(sql_text).into_owned();
        #[cfg(debug_assertions)]
        test_panic(&sql_text);
        let (d, analysis) = self.decide(&sql_text);
        let (n, event) = self.statement_event(&sql_text, "simple", &d);
        let slot = Slot::default();
        self.pending.push_back(Pending::Query(RowCount {
            masks: Some(Arc::clone(&slot)),
            ..RowCount::new(&d, n)
        }));
        if d.action == Action::Allow {
            return self.record_masked(event, frame, fe::QUERY, b"", analysis, &slot);
        }
        if d.action == Action::Approve && self.approvals.is_some() {
            let held = Held {
                sql: sql_text,
                params: Vec::new(),
                protocol: "simple",
                statement: n,
            };
            return self.approval(
                held,
                &d,
                Some(event),
                Some((analysis, slot)),
                frame,
                fe::QUERY,
            );
        }
        let token = self.sentinel(self.refusal(&d));
        self.record_then(
            event,
            sentinel_frame(fe::QUERY, b"", &token),
            fe::QUERY,
            b"",
        )
    }

    fn parse(&mut self, frame: Frame) -> Verdict {
        let body = frame.body();
        let parsed =
            cstr(body, 0).and_then(|(name, next)| cstr(body, next).map(|(q, _)| (name, q)));
        let Some((name, sql_text)) = parsed else {
            return Verdict::Close(PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "interceptor: malformed Parse message",
            ));
        };
        let name = name.to_vec();
        let sql_text = String::from_utf8_lossy(sql_text).into_owned();
        let (d, analysis) = self.decide(&sql_text);
        let (n, event) = self.statement_event(&sql_text, "extended", &d);
        self.mask.statement_desc.remove(&name);
        if d.action == Action::Allow {
            self.statements.insert(name.clone(), (d, n));
            let slot = Slot::default();
            self.mask.statements.insert(name.clone(), Arc::clone(&slot));
            self.approve_sql.remove(&name);
            return self.record_masked(event, frame, fe::PARSE, &name, analysis, &slot);
        }
        if d.action == Action::Approve && self.approvals.is_some() {
            // Preparing runs nothing: the statement is held when a portal
            // of it is executed, with its parameters known; its result masks
            // are planned now, as for an allowed statement.
            self.statements.insert(name.clone(), (d, n));
            self.approve_sql.insert(name.clone(), sql_text);
            let slot = Slot::default();
            self.mask.statements.insert(name.clone(), Arc::clone(&slot));
            return self.record_masked(event, frame, fe::PARSE, &name, analysis, &slot);
        }
        self.statements.remove(&name);
        self.mask.statements.remove(&name);
        self.approve_sql.remove(&name);
        let token = self.sentinel(self.refusal(&d));
        self.record_then(
            event,
            sentinel_frame(fe::PARSE, &name, &token),
            fe::PARSE,
            &name,
        )
    }
}

/// A statement that needs approval, as its request shows it.
struct Held {
    sql: String,
    /// Bind parameters (format code, value) of an Execute.
    params: RawParams,
    protocol: &'static str,
    /// Audit statement counter.
    statement: u64,
}

impl PolicyHooks {
    /// The approval settings of `rule` in the policy in force.
    fn approval_spec(&self, rule: &str) -> ApprovalSpec {
        self.store
            .current()
            .rules
            .iter()
            .find(|r| r.spec.id == rule)
            .and_then(|r| r.spec.approval.clone())
            .unwrap_or_default()
    }

    /// An Execute of a portal whose statement needs approval: what its
    /// request shows, and the decision.
    fn held_execute(&self, frame: &Frame) -> Option<(Held, Decision)> {
        let portal = cstr(frame.body(), 0)?.0;
        let stmt = self.portals.get(portal)?;
        let sql = self.approve_sql.get(stmt)?.clone();
        let (d, n) = self.statements.get(stmt)?.clone();
        let params = self.bound.get(portal).cloned().unwrap_or_default();
        Some((
            Held {
                sql,
                params,
                protocol: "extended",
                statement: n,
            },
            d,
        ))
    }

    /// Sends `frame` once `event` (if any) is recorded.
    fn send_recorded(&mut self, event: Option<StatementEvent>, frame: Frame, kind: u8) -> Verdict {
        match event {
            Some(ev) => self.record_then(ev, frame, kind, b""),
            None => Verdict::Forward(frame),
        }
    }

    /// A statement whose rule says `approve`: run it under an earlier
    /// approval that covers it, or make a request and hold it (`hold`) or
    /// refuse it with the request id (`retry`). `frame` is the Query or
    /// Execute; `event` the statement record still to be written (simple
    /// protocol; an Execute's statement was recorded at Parse).
    #[allow(clippy::too_many_arguments)]
    fn approval(
        &mut self,
        held: Held,
        d: &Decision,
        event: Option<StatementEvent>,
        mask: Option<(Arc<Result<sql::Analysis, sql::SqlError>>, Slot)>,
        frame: Frame,
        kind: u8,
    ) -> Verdict {
        let broker = Arc::clone(self.approvals.as_ref().expect("checked by the caller"));
        // A refused Query is replaced by a sentinel Query; a refused Execute
        // by a Parse of the unnamed statement, whose error ends the batch up
        // to Sync exactly where the Execute's error would.
        let skind = if kind == fe::QUERY {
            fe::QUERY
        } else {
            fe::PARSE
        };
        let param_refs: Vec<Option<&[u8]>> =
            held.params.iter().map(|(_, v)| v.as_deref()).collect();
        let key = statement_key(held.sql.as_bytes(), &param_refs);
        let detail = format!(
            "identity {} on target {}, database {}",
            self.identity, self.info.target, self.info.database
        );

        if let Some((request, scope)) = broker.covered(&self.identity, &self.session, &d.rule, &key)
        {
            let event = event.map(|mut ev| {
                ev.decision.reason = format!(
                    "{}; approved by request {request} (scope {scope})",
                    ev.decision.reason
                );
                ev
            });
            let verdict = match (event, mask) {
                // Its result is masked as an allowed statement's would be.
                (Some(ev), Some((analysis, slot))) => {
                    self.record_masked(ev, frame, skind, b"", analysis, &slot)
                }
                (ev, _) => self.send_recorded(ev, frame, skind),
            };
            broker.grant_used(&request, scope, &self.session, held.statement);
            return verdict;
        }

        let spec = self.approval_spec(&d.rule);
        let expiry = spec.expiry(broker.default_expiry());
        let (created_at, expires_at, expires_unix) = Broker::times(expiry);
        let a = &self.info.attestation;
        let request = ApprovalRequest {
            id: approval::request::new_id(),
            created_at,
            expires_at,
            expires_unix,
            host: self.audit.host().to_owned(),
            session: self.session.clone(),
            statement: held.statement,
            proxy_session: self.info.id,
            identity: self.identity.clone(),
            uid: a.uid,
            user: a.user.clone(),
            attestation: serde_json::to_value(a.as_ref()).unwrap_or_default(),
            target: self.info.target.clone(),
            database: self.info.database.clone(),
            db_user: self.info.user.clone(),
            sql: held.sql.clone(),
            params: held
                .params
                .iter()
                .map(|(f, v)| shown_param(*f, v.as_deref(), broker.reveal_params()))
                .collect(),
            protocol: held.protocol.into(),
            rule: d.rule.clone(),
            reason: d.reason.clone(),
            mode: spec.mode,
            scopes: spec.scopes.clone(),
            max_identity_minutes: spec.max_identity_minutes,
            approvers_required: spec.approvers,
            groups: spec.groups.clone(),
            valid_for_secs: spec.validity().as_secs(),
        };

        if spec.mode == Mode::Retry {
            let existing = broker.pending_same(&self.identity, &key);
            let made = match existing {
                Some(r) => Ok((r, false)),
                None => broker
                    .request(request, key, expiry)
                    .map(|r| (r.request, true)),
            };
            let err = match made {
                Ok((r, fresh)) => {
                    let what = if fresh {
                        "was created"
                    } else {
                        "is still pending"
                    };
                    PgError::error(
                        REFUSED,
                        format!(
                            "interceptor: statement needs approval (rule {}): {}; approval request {} {what}: run the same statement again once it is approved (the request expires {})",
                            d.rule, d.reason, r.id, r.expires_at
                        ),
                    )
                    .with_detail(detail)
                    .with_hint(format!("an approver runs `interceptor approvals approve {}` or uses the approvals HTTP API", r.id))
                }
                Err(e) => unrecorded(&e.to_string()),
            };
            let token = self.sentinel(err);
            return self.send_recorded(event, sentinel_frame(skind, b"", &token), skind);
        }

        // Hold: the statement record first, then the request.
        let stmt_receipt = match event {
            Some(ev) => {
                let receipt = if self.audit.healthy() {
                    self.audit
                        .enqueue(AuditEvent::Statement(ev))
                        .map_err(|e| e.to_string())
                } else {
                    Err(self
                        .audit
                        .last_error()
                        .unwrap_or_else(|| "the audit log is not writable".into()))
                };
                match receipt {
                    Ok(r) => Some(r),
                    Err(reason) => {
                        let token = self.sentinel(unrecorded(&reason));
                        return Verdict::Forward(sentinel_frame(skind, b"", &token));
                    }
                }
            }
            None => None,
        };
        let requested = match broker.request(request, key, expiry) {
            Ok(r) => r,
            Err(e) => {
                let token = self.sentinel(unrecorded(&e.to_string()));
                return Verdict::Forward(sentinel_frame(skind, b"", &token));
            }
        };
        let req = requested.request;
        let id = req.id.clone();
        self.held = Some(id.clone());
        // A simple Query's result masks are planned once it is approved (an
        // Execute's were planned at its Parse).
        let plan =
            mask.and_then(|(analysis, slot)| self.plan_input(analysis).map(|input| (input, slot)));
        let mask_token = self.token();
        let mask_fallback = sentinel_frame(skind, b"", &mask_token);
        let mask_detail = self.refusal_detail();
        let notice = notice_frame(&format!(
            "interceptor: statement held for approval: request {id} (rule {}): {}; it runs once approved, or fails if denied or not decided by {}",
            d.rule, d.reason, req.expires_at
        ));
        let token = self.token();
        let fallback = sentinel_frame(skind, b"", &token);
        let refusals = Arc::clone(&self.refusals);
        let refused = Arc::clone(&self.refused);
        let session = self.session.clone();
        let rule = d.rule.clone();
        let mut state_rx = requested.state;
        let receipt = requested.receipt;
        Verdict::AwaitAfter(
            vec![notice],
            Box::pin(async move {
                let mut guard = WithdrawOnDrop::new(Arc::clone(&broker), id.clone());
                let recorded = match stmt_receipt {
                    Some(r) => r.await.map(|_| ()),
                    None => Ok(()),
                };
                let recorded = match recorded {
                    Ok(()) => receipt.await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = recorded {
                    refused.fetch_add(1, Ordering::Relaxed);
                    guard.disarm();
                    broker.withdraw(&id, "it could not be recorded in the audit log");
                    lock(&refusals).push_back((token, unrecorded(&e.to_string())));
                    return Verdict::Forward(fallback);
                }
                let state = match state_rx.wait_for(|s| !s.is_pending()).await {
                    Ok(s) => s.clone(),
                    Err(_) => State::DeniedByRestart,
                };
                guard.disarm();
                if matches!(state, State::Approved { .. }) {
                    if let Some((input, slot)) = plan {
                        match plan_message(input).await {
                            Ok(masks) => *lock(&slot) = masks.into(),
                            Err(reason) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                let err = PgError::error(REFUSED, format!("interceptor: statement refused by rule {MASKING_RULE}: {reason}"))
                                    .with_detail(mask_detail)
                                    .with_hint("ask for an identity that may see these values, or leave the masked columns out");
                                lock(&refusals).push_back((mask_token, err));
                                return Verdict::Forward(mask_fallback);
                            }
                        }
                    }
                    broker.executed(
                        &req,
                        &session,
                        req.statement,
                        "held statement sent to the database",
                    );
                    return Verdict::Forward(frame);
                }
                refused.fetch_add(1, Ordering::Relaxed);
                lock(&refusals).push_back((token, outcome_error(&state, &id, &rule, detail)));
                Verdict::Forward(fallback)
            }),
        )
    }
}

/// A `NoticeResponse` for the client (shown by psql as it waits).
fn notice_frame(message: &str) -> Frame {
    let mut body = Vec::with_capacity(message.len() + 32);
    for (code, value) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', "00000"),
        (b'M', message),
    ] {
        body.push(code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    Frame::new(crate::wire::tag::backend::NOTICE_RESPONSE, &body)
}

impl SessionHooks for PolicyHooks {
    fn frontend(&mut self, frame: Frame) -> Verdict {
        if matches!(frame.tag(), fe::QUERY | fe::FUNCTION_CALL) {
            // Each ends a batch (one ReadyForQuery), as Sync does.
            self.mask.batches_sent += 1;
        }
        match frame.tag() {
            fe::QUERY => self.query(frame),
            fe::PARSE => self.parse(frame),
            fe::BIND => {
                let body = frame.body();
                if let Some((portal, next)) = cstr(body, 0)
                    && let Some((stmt, _)) = cstr(body, next)
                {
                    self.portals.insert(portal.to_vec(), stmt.to_vec());
                    if self.approve_sql.contains_key(stmt) {
                        self.bound
                            .insert(portal.to_vec(), raw_bind_params(body).unwrap_or_default());
                    } else if !self.bound.is_empty() {
                        self.bound.remove(portal);
                    }
                }
                if let Some(bind) = Bind::parse(body) {
                    let (portal, stmt, formats) = bind_formats(&bind);
                    self.mask.portal_desc.remove(&portal);
                    self.mask.params.insert(portal.clone(), bind_params(&bind));
                    self.mask.portals.insert(portal, (stmt, formats));
                }
                Verdict::Forward(frame)
            }
            fe::EXECUTE => {
                let held = if self.approve_sql.is_empty() {
                    None
                } else {
                    self.held_execute(&frame)
                };
                let portal = cstr(frame.body(), 0).map(|(p, _)| p.to_vec());
                let stmt = portal.as_ref().and_then(|p| self.portals.get(p));
                let mut count = stmt
                    .and_then(|s| self.statements.get(s))
                    .map(|(d, n)| RowCount::new(d, *n))
                    .unwrap_or_default();
                count.masks = stmt.and_then(|s| self.mask.statements.get(s)).cloned();
                count.params = portal
                    .as_ref()
                    .and_then(|p| self.mask.params.get(p))
                    .cloned()
                    .unwrap_or_default();
                count.portal = portal;
                self.pending.push_back(Pending::Execute(count));
                if let Some((held, d)) = held {
                    return self.approval(held, &d, None, None, frame, fe::EXECUTE);
                }
                Verdict::Forward(frame)
            }
            fe::SYNC => {
                self.mask.batches_sent += 1;
                self.pending.push_back(Pending::Sync);
                Verdict::Forward(frame)
            }
            fe::CLOSE => {
                let body = frame.body();
                if let (Some(kind), Some((name, _))) = (body.first(), cstr(body, 1)) {
                    match kind {
                        b'S' => {
                            self.statements.remove(name);
                            self.approve_sql.remove(name);
                            self.mask.statements.remove(name);
                            self.mask.statement_desc.remove(name);
                        }
                        b'P' => {
                            self.portals.remove(name);
                            self.mask.portals.remove(name);
                            self.mask.portal_desc.remove(name);
                            self.mask.params.remove(name);
                        }
                        _ => {}
                    }
                }
                Verdict::Forward(frame)
            }
            fe::FUNCTION_CALL => {
                let err = PgError::error(
                    REFUSED,
                    "interceptor: the FunctionCall protocol message is refused (it calls functions by OID, out of policy's sight)",
                )
                .with_hint("call the function in a SELECT");
                let token = self.sentinel(err);
                self.pending.push_back(Pending::Query(RowCount::default()));
                Verdict::Forward(sentinel_frame(fe::QUERY, b"", &token))
            }
            fe::DESCRIBE => {
                let body = frame.body();
                if let (Some(kind), Some((name, _))) = (body.first(), cstr(body, 1)) {
                    self.mask.describe_sent(*kind, name);
                }
                Verdict::Forward(frame)
            }
            fe::FLUSH | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL | fe::TERMINATE => {
                Verdict::Forward(frame)
            }
            other => Verdict::Close(PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "interceptor: frontend message type {:?} is not on the allow-list",
                    char::from(other)
                ),
            )),
        }
    }

    fn backend(&mut self, frame: Frame) -> Verdict {
        match frame.tag() {
            be::DATA_ROW | be::COPY_DATA => {
                if self.drain {
                    return Verdict::Drop;
                }
                let mask = &self.mask;
                let (frame, admitted) = match self
                    .pending
                    .iter_mut()
                    .find(|p| !matches!(p, Pending::Sync))
                {
                    Some(Pending::Query(c) | Pending::Execute(c)) => {
                        let frame = mask_result(mask, c, frame);
                        let admitted = c.admit(frame.len());
                        (frame, admitted)
                    }
                    // Rows no statement of ours owns: masked whole with the
                    // session's masker (never let through as they are).
                    _ => (orphan_rows(&self.mask, frame), true),
                };
                if admitted {
                    Verdict::Forward(frame)
                } else {
                    Verdict::Drop
                }
            }
            be::ROW_DESCRIPTION => {
                let describe = !matches!(self.pending.front(), Some(Pending::Query(_)));
                if describe {
                    if let Some((kind, name)) = self.mask.describe_answered()
                        && let Some(d) = row_description(frame.body())
                    {
                        match kind {
                            b'S' => self.mask.statement_desc.insert(name, d),
                            _ => self.mask.portal_desc.insert(name, d),
                        };
                    }
                } else if let Some(Pending::Query(c)) = self.pending.front_mut()
                    && let Some(m) = c.masks.as_ref().and_then(|s| lock(s).front().cloned())
                    && let Some(d) = row_description(frame.body())
                {
                    let formats = d.formats.clone();
                    c.shape = Some(m.shape(d, formats));
                    c.masker = Some(m.masker);
                }
                if self.drain {
                    Verdict::Drop
                } else {
                    Verdict::Forward(frame)
                }
            }
            be::NO_DATA => {
                if !matches!(self.pending.front(), Some(Pending::Query(_))) {
                    self.mask.describe_answered();
                }
                if self.drain {
                    Verdict::Drop
                } else {
                    Verdict::Forward(frame)
                }
            }
            be::COPY_OUT_RESPONSE => {
                if let Some(Pending::Query(c) | Pending::Execute(c)) = self
                    .pending
                    .iter_mut()
                    .find(|p| !matches!(p, Pending::Sync))
                    && let Some(m) = c.masks.as_ref().and_then(|s| lock(s).front().cloned())
                {
                    let binary = frame.body().first() == Some(&1);
                    // The server's word on binary or not stands over the
                    // statement's options.
                    let layout = match m.copy {
                        Some(l) if binary == (l.format == CopyFormat::Binary) => l,
                        _ => CopyLayout::new(if binary {
                            CopyFormat::Binary
                        } else {
                            CopyFormat::Text
                        }),
                    };
                    c.copy = Some(CopyOut::new(layout, m.plan));
                    c.masker = Some(m.masker);
                }
                if self.drain {
                    Verdict::Drop
                } else {
                    Verdict::Forward(frame)
                }
            }
            be::COMMAND_COMPLETE
            | be::PORTAL_SUSPENDED
            | be::EMPTY_QUERY_RESPONSE
            | be::COPY_DONE => {
                if self.drain {
                    return Verdict::Drop;
                }
                let is_copy_done = frame.tag() == be::COPY_DONE;
                let tag = (frame.tag() == be::COMMAND_COMPLETE)
                    .then(|| {
                        cstr(frame.body(), 0).map(|(t, _)| String::from_utf8_lossy(t).into_owned())
                    })
                    .flatten();
                let is_execute = matches!(self.pending.front(), Some(Pending::Execute(_)));
                let c = match self.pending.front_mut() {
                    Some(Pending::Query(c) | Pending::Execute(c)) => c,
                    _ => return Verdict::Forward(frame),
                };
                if c.exceeded {
                    let err = c.error();
                    let summary = std::mem::take(c);
                    if is_execute {
                        self.pending.pop_front();
                    }
                    self.drain = true;
                    let msg = format!(
                        "row limit of {} exceeded",
                        summary.limit.unwrap_or_default()
                    );
                    self.record_result(
                        &summary,
                        None,
                        Some((sqlstate::PROGRAM_LIMIT_EXCEEDED.into(), msg)),
                    );
                    return Verdict::Forward(err);
                }
                if is_copy_done {
                    return Verdict::Forward(frame);
                }
                if let Some(tag) = &tag
                    && let Some(m) = c.masks.as_ref().and_then(|s| lock(s).front().cloned())
                    && !m.effects.is_empty()
                {
                    // What the statement created, dropped or wrote into the
                    // session's own relations now holds.
                    self.mask.own.completed(&m.effects, tag);
                }
                // One result per statement (a multi-statement Query has
                // several): record it and start counting afresh.
                let done = std::mem::replace(
                    c,
                    RowCount {
                        statement: c.statement,
                        limit: c.limit,
                        rule: c.rule.clone(),
                        masks: c.masks.clone(),
                        portal: c.portal.clone(),
                        ..RowCount::default()
                    },
                );
                if is_execute {
                    self.pending.pop_front();
                } else if let Some(slot) = &done.masks {
                    // The next statement of the Query has the next mask; a
                    // mask for the whole message (SQL that could not be
                    // analysed statement by statement) stays for the rest.
                    let mut slot = lock(slot);
                    if slot.len() > 1 {
                        slot.pop_front();
                    }
                }
                self.record_result(&done, tag, None);
                Verdict::Forward(frame)
            }
            be::ERROR_RESPONSE => {
                // Outside a block the implicit transaction is undone.
                self.mask.own.error();
                let frame = self.rewrite_sentinel(frame);
                if self.drain {
                    return Verdict::Drop;
                }
                let frame = self.mask_message(frame);
                if let Some(Pending::Query(c) | Pending::Execute(c)) = self.pending.front_mut() {
                    let failed = std::mem::take(c);
                    let fields = parse_error_fields(&frame).ok();
                    let code = fields
                        .as_ref()
                        .and_then(|e| error_code(e).map(str::to_owned))
                        .unwrap_or_default();
                    let msg = fields
                        .as_ref()
                        .and_then(|e| error_message(e).map(str::to_owned))
                        .unwrap_or_default();
                    self.record_result(&failed, None, Some((code, msg)));
                }
                // An error ends the current Execute; the server then skips
                // the rest of the batch up to Sync.
                while matches!(self.pending.front(), Some(Pending::Execute(_))) {
                    self.pending.pop_front();
                }
                Verdict::Forward(frame)
            }
            be::READY_FOR_QUERY => {
                self.drain = false;
                self.mask.batch_done();
                let status = frame.body().first().copied().unwrap_or(b'I');
                self.mask.own.ready(status);
                if self.mask.batches_done >= self.mask.batches_sent {
                    self.mask.own_inflight = false;
                }
                if self.mask.ddl {
                    // Again when the transaction ends: the catalog
                    // connection only sees DDL once it is committed.
                    if status == b'I' {
                        self.mask.ddl = false;
                    }
                    if let Some(c) = &self.mask.catalog {
                        c.invalidate();
                    }
                }
                while let Some(p) = self.pending.pop_front() {
                    if matches!(p, Pending::Query(_) | Pending::Sync) {
                        break;
                    }
                }
                Verdict::Forward(frame)
            }
            // Asynchronous messages pass even while draining (masked).
            be::NOTICE_RESPONSE => Verdict::Forward(self.mask_message(frame)),
            be::NOTIFICATION_RESPONSE => match &self.mask.masker {
                Some(m) => Verdict::Forward(m.notification(frame)),
                None => Verdict::Forward(frame),
            },
            be::PARAMETER_STATUS => match &self.mask.masker {
                Some(m) => Verdict::Forward(m.parameter_status(frame)),
                None => Verdict::Forward(frame),
            },
            _ if self.drain => Verdict::Drop,
            _ => Verdict::Forward(frame),
        }
    }

    fn admit(&mut self) -> Option<crate::proxy::hooks::Admission> {
        let receipt = self.start_receipt.take()?;
        Some(Box::pin(async move {
            receipt.await.map(|_| ()).map_err(|e| {
                let mut err = unrecorded(&e.to_string());
                err.severity = "FATAL";
                err
            })
        }))
    }

    fn client_gone(&mut self) {
        if let (Some(b), Some(id)) = (&self.approvals, self.held.take()) {
            b.withdraw(&id, "the client disconnected while the statement was held");
        }
    }

    fn end(&mut self, summary: &SessionSummary) {
        if let Some(b) = &self.approvals {
            if let Some(id) = self.held.take() {
                b.withdraw(
                    &id,
                    "the client's session ended while the statement was held",
                );
            }
            b.session_ended(&self.session);
        }
        let ev = AuditEvent::SessionEnd(SessionEnd {
            session: self.session.clone(),
            reason: summary.reason.to_owned(),
            detail: Some(summary.detail.clone()).filter(|d| !d.is_empty()),
            duration_ms: summary.duration_ms,
            statements: self.statement_seq,
            refused: self.refused.load(Ordering::Relaxed),
            bytes_in: summary.traffic.frontend_bytes,
            bytes_out: summary.traffic.backend_bytes,
        });
        record_later(&self.audit, ev, "session_end");
    }
}

impl PolicyHooks {
    /// An error or notice with echoed values masked: redacted outright when
    /// the current statement had sensitive data in reach.
    fn mask_message(&self, frame: Frame) -> Frame {
        let current = self.pending.iter().find_map(|p| match p {
            Pending::Query(c) | Pending::Execute(c) => Some(c),
            Pending::Sync => None,
        });
        let m = current.and_then(|c| c.masks.as_ref().and_then(|s| lock(s).front().cloned()));
        let sensitive = m.as_ref().is_some_and(|m| m.sensitive);
        match m.map(|m| m.masker).or_else(|| self.mask.masker.clone()) {
            Some(masker) => masker.error_fields(frame, sensitive),
            None => frame,
        }
    }

    /// Replaces the server's syntax error for a sentinel with the refusal.
    fn rewrite_sentinel(&mut self, frame: Frame) -> Frame {
        let mut refusals = lock(&self.refusals);
        if refusals.is_empty() {
            return frame;
        }
        let Ok(err) = parse_error_fields(&frame) else {
            return frame;
        };
        if error_code(&err) != Some(SYNTAX_ERROR) {
            return frame;
        }
        let Some(message) = error_message(&err) else {
            return frame;
        };
        match refusals
            .iter()
            .position(|(t, _)| message.contains(t.as_str()))
        {
            Some(i) => {
                // Refusals are answered in order; older ones without an
                // answer cannot get one any more.
                let (_, refusal) = refusals.drain(..=i).last().expect("position is in range");
                refusal.to_frame()
            }
            None => frame,
        }
    }
}

/// Appends a record nobody waits for (results, session ends: what they
/// describe has already happened). Queued without a task per record; only a
/// full queue makes a task wait for room, so nothing is dropped.
/// Debug builds only: a statement containing `INTERCEPTOR_TEST_PANIC` (an
/// environment variable of the daemon) panics in this session's task, so
/// the tests can show that a panic ends that session and nothing else.
#[cfg(debug_assertions)]
fn test_panic(sql: &str) {
    static MARKER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(m) = MARKER.get_or_init(|| {
        std::env::var("INTERCEPTOR_TEST_PANIC")
            .ok()
            .filter(|m| !m.is_empty())
    }) && sql.contains(m.as_str())
    {
        panic!("test panic: the statement holds the marker");
    }
}

fn record_later(audit: &AuditLog, ev: AuditEvent, what: &'static str) {
    match audit.enqueue(ev.clone()) {
        Ok(_receipt) => {}
        Err(crate::audit::AuditError::QueueFull(_)) => {
            let audit = audit.clone();
            tokio::spawn(async move {
                if let Err(e) = audit.append(ev).await {
                    tracing::error!(event = "audit_error", record = what, error = %e, "a record could not be written");
                }
            });
        }
        Err(e) => {
            tracing::error!(event = "audit_error", record = what, error = %e, "a record could not be written")
        }
    }
}

/// Rule id of masking refusals.
pub const MASKING_RULE: &str = "builtin.masking";

/// A DataRow or COPY data of result `c`, masked.
fn mask_result(mask: &SessionMask, c: &mut RowCount, frame: Frame) -> Frame {
    let Some(slot) = &c.masks else { return frame };
    if frame.tag() == be::COPY_DATA {
        return match (&mut c.copy, &c.masker) {
            (Some(copy), Some(m)) => m.copy_data(copy, frame, &mut c.stats),
            _ => frame,
        };
    }
    if c.shape.is_none() {
        // An Execute: its statement's mask, the portal's formats.
        let Some(m) = lock(slot).front().cloned() else {
            return frame;
        };
        let portal = c.portal.clone().unwrap_or_default();
        c.shape = Some(mask.execute_shape(&portal, &m));
        c.masker = Some(m.masker);
    }
    match (&c.shape, &c.masker) {
        (Some(shape), Some(m)) => m.data_row(shape, frame, &mut c.stats),
        _ => frame,
    }
}

/// Rows that arrive when no Query or Execute is owed: masked whole (every
/// column redacted or NULL) for an identity that masks anything.
fn orphan_rows(mask: &SessionMask, frame: Frame) -> Frame {
    let Some(m) = &mask.masker else { return frame };
    if frame.tag() == be::COPY_DATA {
        // Without its COPY's format the fields cannot be found: dropped.
        return Frame::new(be::COPY_DATA, b"");
    }
    let all = crate::mask::plan::ColMask {
        strategy: crate::mask::Strategy::Redact,
        category: "unknown".into(),
        why: "rows no statement asked for".into(),
    };
    let shape = Shape {
        plan: crate::mask::plan::StmtPlan::All(all),
        formats: Vec::new(),
        types: Vec::new(),
        names: Vec::new(),
    };
    m.data_row(&shape, frame, &mut Stats::default())
}

/// Appends a statement record and waits until it is durable.
async fn durable(audit: &AuditLog, event: StatementEvent) -> Result<(), String> {
    if !audit.healthy() {
        return Err(audit
            .last_error()
            .unwrap_or_else(|| "the audit log is not writable".into()));
    }
    let receipt = audit
        .enqueue(AuditEvent::Statement(event))
        .map_err(|e| e.to_string())?;
    receipt.await.map(|_| ()).map_err(|e| e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Query, or a Parse of statement `name`, whose text is the sentinel
/// word: the server rejects it at parse time (and, after a Parse, skips to
/// Sync), so its error stands exactly where the refused statement's would.
fn sentinel_frame(kind: u8, name: &[u8], token: &str) -> Frame {
    let mut body = Vec::with_capacity(name.len() + token.len() + 4);
    if kind == fe::PARSE {
        body.extend_from_slice(name);
        body.push(0);
    }
    body.extend_from_slice(token.as_bytes());
    body.push(0);
    if kind == fe::PARSE {
        body.extend_from_slice(&[0, 0]); // no parameter types
    }
    Frame::new(kind, &body)
}

/// A NUL-terminated string at `at` in `body` and the offset after it.
fn cstr(body: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = body.get(at..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    Some((&rest[..nul], at + nul + 1))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_count() {
        let d = Decision {
            action: Action::Allow,
            rule: "r".into(),
            reason: String::new(),
            max_rows: Some(2),
        };
        let mut c = RowCount::new(&d, 1);
        assert!(c.admit(10) && c.admit(10));
        assert!(!c.admit(10));
        assert_eq!(c.bytes, 20);
        assert!(c.exceeded);
    }
}
