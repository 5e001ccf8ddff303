//! The approvers' HTTP API (plain HTTP/1.1; put it on loopback or behind a
//! TLS-terminating proxy):
//!
//! | method and path | |
//! | --- | --- |
//! | `GET /v1/approvals[?all=1]` | pending requests (all known with `all`) |
//! | `GET /v1/approvals/{id}` | one request |
//! | `POST /v1/approvals/{id}/approve` `{"scope": "once"\|"session"\|"identity", "minutes": N, "reason": "..."}` | approve |
//! | `POST /v1/approvals/{id}/deny` `{"reason": "..."}` | deny (a reason is required) |
//!
//! Every call carries `Authorization: Bearer <token>`: an approver token
//! (its SHA-256 in `[[approvals.approver]]`) or an OIDC ID token from an
//! `[approvals.oidc]` issuer whose claim names a configured approver
//! (`oidc_subject`). The approver's name is
//! recorded with the decision. Errors are `{"error": "..."}` with 400, 401,
//! 403 (self-approval, group), 404, 409 (no longer pending, already
//! approved by this approver).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ApprovalError, Approver, ApproverConfig, Broker, Scope, config::ApproverOidc};
use crate::token::Validator;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Who may call the API.
pub struct Authenticator {
    /// Approvers with a token, by the token's SHA-256.
    by_token: Vec<([u8; 32], ApproverConfig)>,
    /// OIDC sign-in: the validator of the approvers' issuers, the claim
    /// naming the approver, and the approvers who may sign in so.
    oidc: Option<(Validator, String, Vec<ApproverConfig>)>,
}

impl Authenticator {
    /// From the configured approvers (and OIDC issuers, if any).
    pub fn new(approvers: &[ApproverConfig], oidc: Option<&ApproverOidc>) -> Result<Self, String> {
        let by_token = approvers
            .iter()
            .filter_map(|a| {
                let h = hex::decode(a.token_sha256.as_deref()?).ok()?;
                Some((h.try_into().ok()?, a.clone()))
            })
            .collect();
        let oidc = match oidc {
            Some(o) => {
                let validator = Validator::new(o.issuers.clone())?;
                let who = approvers
                    .iter()
                    .filter(|a| a.oidc_subject.is_some())
                    .cloned()
                    .collect();
                Some((validator, o.claim.clone(), who))
            }
            None => None,
        };
        Ok(Self { by_token, oidc })
    }

    /// The approver a bearer token (approver token or OIDC ID token) belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Approver, String> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare every entry without stopping early at a match.
        let mut found = None;
        for (want, a) in &self.by_token {
            let same = want
                .iter()
                .zip(h.iter())
                .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
                == 0;
            if same {
                found = Some(a);
            }
        }
        if let Some(a) = found {
            return Ok(Approver {
                name: a.name.clone(),
                groups: a.groups.clone(),
                uid: None,
                via: "token",
            });
        }
        let Some((validator, claim, who)) = &self.oidc else {
            return Err("approver token not recognised".into());
        };
        if token.split('.').count() != 3 {
            return Err("approver token not recognised".into());
        }
        let verified = validator
            .validate(token)
            .await
            .map_err(|e| format!("ID token refused: {e}"))?;
        let value = verified
            .claim_str(claim)
            .ok_or_else(|| format!("the ID token has no `{claim}` claim"))?;
        let a = who
            .iter()
            .find(|a| a.oidc_subject.as_deref() == Some(value.as_str()))
            .ok_or_else(|| format!("{claim} `{value}` is not a configured approver"))?;
        Ok(Approver {
            name: a.name.clone(),
            groups: a.groups.clone(),
            uid: None,
            via: "oidc",
        })
    }
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    auth: Arc<Authenticator>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(event = "approvals_http_accept", error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (broker, auth) = (Arc::clone(&broker), Arc::clone(&auth));
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (broker, auth) = (Arc::clone(&broker), Arc::clone(&auth));
                async move { Ok::<_, Infallible>(handle(req, &broker, &auth, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(event = "approvals_http_conn", error = %e, "connection ended with an error");
            }
        });
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// HTTP status of an approval error.
pub fn status_of(e: &ApprovalError) -> StatusCode {
    match e {
        ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalError::NotPending(..) | ApprovalError::AlreadyApproved(_) => StatusCode::CONFLICT,
        ApprovalError::SelfApproval(_) | ApprovalError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApprovalError::Scope(_) => StatusCode::BAD_REQUEST,
        ApprovalError::Unrecorded(_) | ApprovalError::State(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Body of `approve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApproveBody {
    /// `once` (default), `session`, `identity` or `identity:N`.
    pub scope: Option<String>,
    /// Minutes, for the identity scope.
    pub minutes: Option<u64>,
    /// Why.
    pub reason: Option<String>,
}

/// Body of `deny`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenyBody {
    /// Why (required).
    pub reason: Option<String>,
}

async fn handle(
    req: Request<Incoming>,
    broker: &Broker,
    auth: &Authenticator,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <approver token>",
        );
    };
    let approver = match auth.authenticate(&token).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(event = "approvals_http_unauthenticated", peer = %peer, error = %why, "approver not authenticated");
            return error(StatusCode::UNAUTHORIZED, why);
        }
    };
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let all = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "all=1" || p == "all=true"));
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            );
        }
    };
    match (method, parts.as_slice()) {
        (Method::GET, ["v1", "approvals"]) => json(StatusCode::OK, &broker.list(!all)),
        (Method::GET, ["v1", "approvals", id]) => match broker.show(id) {
            Some(v) => json(StatusCode::OK, &v),
            None => error(StatusCode::NOT_FOUND, format!("no approval request {id}")),
        },
        (Method::POST, ["v1", "approvals", id, "approve"]) => {
            let b: ApproveBody = if body.is_empty() {
                ApproveBody::default()
            } else {
                match serde_json::from_slice(&body) {
                    Ok(b) => b,
                    Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad body: {e}")),
                }
            };
            let scope = match Scope::parse(b.scope.as_deref().unwrap_or("once"), b.minutes) {
                Ok(s) => s,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match broker.approve(id, &approver, scope, b.reason) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => error(status_of(&e), e.to_string()),
            }
        }
        (Method::POST, ["v1", "approvals", id, "deny"]) => {
            let b: DenyBody = match serde_json::from_slice(&body) {
                Ok(b) => b,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("bad body: {e} (expected {{\"reason\": \"...\"}})"),
                    );
                }
            };
            let Some(reason) = b.reason.filter(|r| !r.trim().is_empty()) else {
                return error(StatusCode::BAD_REQUEST, "a denial needs a reason");
            };
            match broker.deny(id, &approver, reason) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => error(status_of(&e), e.to_string()),
            }
        }
        (_, ["v1", "approvals", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "see the Approvals section of the README for the API",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown path; the API lives under /v1/approvals",
        ),
    }
}
