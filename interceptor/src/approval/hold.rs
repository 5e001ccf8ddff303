//! Pieces a session uses for a statement that needs approval: the bind
//! parameters, how approvers see them, the client's error for each outcome,
//! and withdrawing a request whose client went away.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Broker, request::State};
use crate::wire::PgError;

/// SQLSTATE of a refusal (`insufficient_privilege`), as for policy refusals.
const REFUSED: &str = "42501";
/// SQLSTATE of a withdrawn request: `query_canceled`, what a cancelled
/// statement gets from the server.
const CANCELED: &str = "57014";

/// Bind parameters as sent: (format code 0 text / 1 binary, value; `None` = NULL).
pub type RawParams = Vec<(i16, Option<Vec<u8>>)>;

/// The parameter values of a `Bind` body (`None` = NULL) with their format
/// codes (0 text, 1 binary). `None` if the body is malformed.
pub fn bind_params(body: &[u8]) -> Option<RawParams> {
    let bind = crate::wire::values::Bind::parse(body)?;
    Some(
        bind.params
            .iter()
            .enumerate()
            .map(|(i, v)| (bind.param_format(i), v.map(<[u8]>::to_vec)))
            .collect(),
    )
}

/// How approvers, webhooks and the audit log see a parameter: as sent when
/// `reveal` (binary as `\x` hex), else its length and a short hash, enough to
/// tell two values apart without showing them.
pub fn shown_param(format: i16, value: Option<&[u8]>, reveal: bool) -> Option<String> {
    let v = value?;
    Some(if reveal {
        if format == 0 {
            String::from_utf8_lossy(v).into_owned()
        } else {
            format!("\\x{}", hex::encode(v))
        }
    } else {
        let h = Sha256::digest(v);
        format!(
            "<masked: {} bytes, sha256 {}>",
            v.len(),
            hex::encode(&h[..4])
        )
    })
}

/// The error the client gets when its held statement is not run.
pub fn outcome_error(state: &State, id: &str, rule: &str, detail: String) -> PgError {
    let (code, message) = match state {
        State::Denied { by, reason } => (
            REFUSED,
            format!(
                "interceptor: statement denied by {by} (approval request {id}, rule {rule}): {reason}"
            ),
        ),
        State::Expired => (
            REFUSED,
            format!(
                "interceptor: approval request {id} expired without a decision (rule {rule}); the statement was not run"
            ),
        ),
        State::Withdrawn { reason } => (
            CANCELED,
            format!(
                "interceptor: approval request {id} withdrawn: {reason}; the statement was not run"
            ),
        ),
        State::DeniedByRestart => (
            REFUSED,
            format!(
                "interceptor: approval request {id} denied: the interceptor stopped while it was pending (rule {rule})"
            ),
        ),
        State::Pending | State::Approved { .. } => (
            REFUSED,
            format!("interceptor: approval request {id} was not decided (rule {rule})"),
        ),
    };
    PgError::error(code, message).with_detail(detail)
}

/// Withdraws a held request if the wait is dropped before a decision (the
/// session ended while its statement was held).
pub struct WithdrawOnDrop {
    /// The broker, until disarmed.
    broker: Option<Arc<Broker>>,
    /// The request.
    id: String,
}

impl WithdrawOnDrop {
    /// Arms the guard for request `id`.
    pub fn new(broker: Arc<Broker>, id: String) -> Self {
        Self {
            broker: Some(broker),
            id,
        }
    }

    /// The wait ended with a decision.
    pub fn disarm(&mut self) {
        self.broker = None;
    }
}

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.withdraw(
                &self.id,
                "the client's session ended while the statement was held",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_parameters_are_read_and_masked() {
        // portal "", statement "s1", one format code (text), 2 params: "42", NULL; 0 result formats.
        let mut body = b"\0s1\0".to_vec();
        body.extend_from_slice(&1_i16.to_be_bytes());
        body.extend_from_slice(&0_i16.to_be_bytes());
        body.extend_from_slice(&2_i16.to_be_bytes());
        body.extend_from_slice(&2_i32.to_be_bytes());
        body.extend_from_slice(b"42");
        body.extend_from_slice(&(-1_i32).to_be_bytes());
        body.extend_from_slice(&0_i16.to_be_bytes());
        let p = bind_params(&body).unwrap();
        assert_eq!(p, vec![(0, Some(b"42".to_vec())), (0, None)]);
        assert_eq!(shown_param(0, Some(b"42"), true).unwrap(), "42");
        let masked = shown_param(0, Some(b"42"), false).unwrap();
        assert!(
            masked.starts_with("<masked: 2 bytes") && !masked.contains("42 "),
            "{masked}"
        );
        assert_eq!(shown_param(1, Some(&[1, 2]), true).unwrap(), "\\x0102");
        assert!(
            bind_params(&body[..body.len() - 6]).is_none(),
            "truncated body"
        );
    }

    #[test]
    fn client_errors_name_request_decider_and_reason() {
        let e = outcome_error(
            &State::Denied {
                by: "alice".into(),
                reason: "not during peak".into(),
            },
            "apr-x",
            "r1",
            String::new(),
        );
        assert_eq!(e.code, "42501");
        assert!(
            e.message.contains("apr-x")
                && e.message.contains("alice")
                && e.message.contains("not during peak")
        );
        let w = outcome_error(
            &State::Withdrawn {
                reason: "cancelled".into(),
            },
            "apr-y",
            "r1",
            String::new(),
        );
        assert_eq!(w.code, "57014");
    }
}
