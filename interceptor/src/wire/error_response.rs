//! `ErrorResponse` and `NoticeResponse`: built when the proxy itself refuses
//! something, parsed when the upstream reports a failure the proxy has to
//! explain (PostgreSQL protocol docs, "Error and Notice Message Fields").

use pgwire::messages::response::ErrorResponse;

use super::{Frame, WireError, tag};

/// SQLSTATE codes the proxy reports (PostgreSQL docs, Appendix A).
pub mod sqlstate {
    /// `protocol_violation`: malformed or unexpected message.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `program_limit_exceeded`: a message over `proxy.max_message_bytes`.
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// `sqlclient_unable_to_establish_sqlconnection`: upstream unreachable.
    pub const UNABLE_TO_CONNECT: &str = "08001";
    /// `sqlserver_rejected_establishment_of_sqlconnection`: destination is
    /// not a configured target.
    pub const REJECTED_CONNECTION: &str = "08004";
    /// `connection_failure`: the upstream went away mid-session.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// `invalid_authorization_specification`: caller not attested, no credential.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// `invalid_password`: the upstream refused the proxy's credential.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// `feature_not_supported`.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `admin_shutdown`: the daemon is stopping.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// `internal_error`.
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// Field codes.
mod field {
    pub const SEVERITY: u8 = b'S';
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
}

/// An error the proxy reports to a client, in PostgreSQL's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// `ERROR` (the session goes on) or `FATAL` (the session ends).
    pub severity: &'static str,
    /// SQLSTATE, see [`sqlstate`].
    pub code: String,
    /// Primary message.
    pub message: String,
    /// Optional detail line.
    pub detail: Option<String>,
    /// Optional hint: what to do about it.
    pub hint: Option<String>,
}

impl PgError {
    /// A `FATAL` error: the proxy closes the connection after sending it.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: "FATAL",
            code: code.to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// An `ERROR`: the session continues.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR",
            ..Self::fatal(code, message)
        }
    }

    /// Adds a detail line.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The pgwire message.
    pub fn to_message(&self) -> ErrorResponse {
        let mut fields = vec![
            (field::SEVERITY, self.severity.to_owned()),
            (field::SEVERITY_NONLOCALIZED, self.severity.to_owned()),
            (field::CODE, self.code.clone()),
            (field::MESSAGE, self.message.clone()),
        ];
        fields.extend(self.detail.clone().map(|d| (field::DETAIL, d)));
        fields.extend(self.hint.clone().map(|h| (field::HINT, h)));
        ErrorResponse::new(fields)
    }

    /// The `ErrorResponse` frame.
    pub fn to_frame(&self) -> Frame {
        // An ErrorResponse has no size limit in pgwire and no fixed field
        // that can fail to encode.
        Frame::encode(&self.to_message()).expect("ErrorResponse always encodes")
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

/// Parses the fields of an `ErrorResponse` or `NoticeResponse` frame.
/// Written out here rather than with pgwire's decoder, which assumes a
/// well-formed message (it would panic on a missing terminator).
pub fn parse_error_fields(frame: &Frame) -> Result<ErrorResponse, WireError> {
    let t = frame.tag();
    if t != tag::backend::ERROR_RESPONSE && t != tag::backend::NOTICE_RESPONSE {
        return Err(WireError::malformed(
            t,
            "not an ErrorResponse or NoticeResponse",
        ));
    }
    let mut rest = frame.body();
    let mut fields = Vec::new();
    loop {
        match rest.split_first() {
            None => return Err(WireError::malformed(t, "missing terminator")),
            Some((0, [])) => return Ok(ErrorResponse::new(fields)),
            Some((0, _)) => return Err(WireError::malformed(t, "bytes after terminator")),
            Some((code, tail)) => {
                let nul = tail
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or_else(|| WireError::malformed(t, "field is not NUL-terminated"))?;
                fields.push((*code, String::from_utf8_lossy(&tail[..nul]).into_owned()));
                rest = &tail[nul + 1..];
            }
        }
    }
}

/// The value of field `code` (e.g. `b'C'` for SQLSTATE, `b'M'` for message).
pub fn error_field(err: &ErrorResponse, code: u8) -> Option<&str> {
    err.fields
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v.as_str())
}

/// SQLSTATE of a parsed error.
pub fn error_code(err: &ErrorResponse) -> Option<&str> {
    error_field(err, field::CODE)
}

/// Primary message of a parsed error.
pub fn error_message(err: &ErrorResponse) -> Option<&str> {
    error_field(err, field::MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let e = PgError::fatal(sqlstate::UNABLE_TO_CONNECT, "could not connect")
            .with_detail("d")
            .with_hint("h");
        let parsed = parse_error_fields(&e.to_frame()).unwrap();
        assert_eq!(error_code(&parsed), Some("08001"));
        assert_eq!(error_message(&parsed), Some("could not connect"));
        assert_eq!(error_field(&parsed, b'S'), Some("FATAL"));
        assert_eq!(error_field(&parsed, b'H'), Some("h"));
    }

    #[test]
    fn malformed_error_frames_do_not_panic() {
        for body in [&b""[..], b"S", b"SFATAL", b"SFATAL\0", b"S\0", b"\0x"] {
            assert!(
                parse_error_fields(&Frame::new(b'E', body)).is_err(),
                "{body:?}"
            );
        }
        assert!(
            parse_error_fields(&Frame::new(b'E', b"\0"))
                .unwrap()
                .fields
                .is_empty()
        );
    }
}
