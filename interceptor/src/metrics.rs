//! Prometheus metrics (`[metrics] listen`): counters the daemon moves as it
//! works, served as text exposition with `prometheus-client`, beside
//! `/healthz` (the process answers) and `/readyz` (healthy by `status`:
//! programs attached, audit writing).
//!
//! Labels are bounded and never carry SQL, values or attested data: a
//! decision, a rule id (from the policy set or `builtin.*`), a route, a
//! reason code.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::Registry,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{audit::AuditLog, status::StatusAdmin};

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP;
    /// keep it on loopback). Unset: no endpoint.
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decided {
    decision: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rule {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

struct Metrics {
    registry: Registry,
    statements: Family<Decided, Counter>,
    refusals: Family<Rule, Counter>,
    decision_seconds: Histogram,
    sessions: Family<Route, Counter>,
    sessions_open: Gauge,
    connections_refused: Family<Reason, Counter>,
    policy_reloads: Family<Outcome, Counter>,
    audit_records: Gauge,
    audit_failed_batches: Gauge,
    audit_queued: Gauge,
    audit_writing: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("interceptor");
    let m = Metrics {
        statements: Family::default(),
        refusals: Family::default(),
        // 1 µs .. ~1 s.
        decision_seconds: Histogram::new(exponential_buckets(1e-6, 2.0, 21)),
        sessions: Family::default(),
        sessions_open: Gauge::default(),
        connections_refused: Family::default(),
        policy_reloads: Family::default(),
        audit_records: Gauge::default(),
        audit_failed_batches: Gauge::default(),
        audit_queued: Gauge::default(),
        audit_writing: Gauge::default(),
        registry: Registry::default(),
    };
    registry.register(
        "build",
        "The daemon's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register(
        "statements",
        "Statements decided, by decision and deciding rule",
        m.statements.clone(),
    );
    registry.register(
        "refusals",
        "Statements refused, by rule",
        m.refusals.clone(),
    );
    registry.register(
        "decision_seconds",
        "Time the proxy spends analysing and deciding a statement before it is forwarded",
        m.decision_seconds.clone(),
    );
    registry.register("sessions", "Sessions started, by route", m.sessions.clone());
    registry.register(
        "sessions_open",
        "Sessions open now",
        m.sessions_open.clone(),
    );
    registry.register(
        "connections_refused",
        "Connections refused before a session was recorded, by reason",
        m.connections_refused.clone(),
    );
    registry.register(
        "policy_reloads",
        "Policy reloads, by outcome (applied, rejected)",
        m.policy_reloads.clone(),
    );
    registry.register(
        "audit_records",
        "Audit records written since start",
        m.audit_records.clone(),
    );
    registry.register(
        "audit_failed_batches",
        "Audit writes that failed since start",
        m.audit_failed_batches.clone(),
    );
    registry.register(
        "audit_queued",
        "Audit appends waiting now",
        m.audit_queued.clone(),
    );
    registry.register(
        "audit_writing",
        "1 while the audit log writes, 0 while it fails",
        m.audit_writing.clone(),
    );
    Metrics { registry, ..m }
});

/// A statement was decided (`action`, the deciding `rule`) in `took`.
pub fn statement(action: &str, rule: &str, took: Duration) {
    let m = &*METRICS;
    m.statements
        .get_or_create(&Decided {
            decision: action.to_owned(),
            rule: rule.to_owned(),
        })
        .inc();
    if action == "deny" {
        m.refusals
            .get_or_create(&Rule {
                rule: rule.to_owned(),
            })
            .inc();
    }
    m.decision_seconds.observe(took.as_secs_f64());
}

/// A session started on `route`.
pub fn session_started(route: &str) {
    METRICS
        .sessions
        .get_or_create(&Route {
            route: route.to_owned(),
        })
        .inc();
    METRICS.sessions_open.inc();
}

/// A session ended.
pub fn session_ended() {
    METRICS.sessions_open.dec();
}

/// A connection was refused before a session was recorded.
pub fn connection_refused(reason: &str) {
    METRICS
        .connections_refused
        .get_or_create(&Reason {
            reason: reason.to_owned(),
        })
        .inc();
}

/// A policy reload was applied (`true`) or rejected.
pub fn policy_reload(applied: bool) {
    let outcome = if applied { "applied" } else { "rejected" };
    METRICS
        .policy_reloads
        .get_or_create(&Outcome {
            outcome: outcome.into(),
        })
        .inc();
}

/// The exposition text, with the audit gauges read from `audit` now.
pub fn render(audit: &AuditLog) -> String {
    let m = &*METRICS;
    let stats = audit.stats();
    m.audit_records
        .set(i64::try_from(stats.records).unwrap_or(i64::MAX));
    m.audit_failed_batches
        .set(i64::try_from(stats.failed_batches).unwrap_or(i64::MAX));
    m.audit_queued
        .set(i64::try_from(stats.queued).unwrap_or(i64::MAX));
    m.audit_writing.set(i64::from(audit.healthy()));
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &m.registry) {
        tracing::error!(event = "metrics_encode_failed", error = %e);
    }
    out
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    audit: AuditLog,
    status: Arc<StatusAdmin>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(event = "metrics_accept", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (audit, status) = (audit.clone(), Arc::clone(&status));
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (audit, status) = (audit.clone(), Arc::clone(&status));
                async move { Ok::<_, Infallible>(respond(req.uri().path(), &audit, &status)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

fn respond(path: &str, audit: &AuditLog, status: &StatusAdmin) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &'static str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(audit),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let r = status.report();
            let ready = r["health"] == "healthy";
            let body = if ready {
                "ready\n".to_owned()
            } else {
                format!("not ready: {}\n", r["problems"])
            };
            reply(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                "text/plain",
                body,
            )
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
