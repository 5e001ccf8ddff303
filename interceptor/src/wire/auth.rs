//! Authentication messages. The proxy answers its clients with
//! `AuthenticationOk` itself and authenticates to the upstream with
//! `PasswordMessage` (cleartext, md5) or SASL (SCRAM-SHA-256).
//! PostgreSQL protocol docs, "Authentication" and "SASL Authentication".

use bytes::Bytes;
use pgwire::messages::{
    DecodeContext,
    startup::{Authentication, Password, SASLInitialResponse, SASLResponse},
};

use super::{Frame, WireError, tag};

/// What the upstream asked for in an `Authentication*` message.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthRequest {
    /// A request pgwire models (`Ok`, cleartext, md5, SASL and its steps).
    Known(Authentication),
    /// A method the proxy cannot answer (GSSAPI, SSPI, SCM credentials...).
    Unsupported {
        /// The `Authentication` code.
        code: i32,
        /// Its name in the protocol docs.
        name: &'static str,
    },
}

/// Parses an `Authentication*` frame from the upstream.
pub fn parse_authentication(frame: &Frame) -> Result<AuthRequest, WireError> {
    let t = frame.tag();
    if t != tag::backend::AUTHENTICATION {
        return Err(WireError::malformed(t, "not an Authentication message"));
    }
    let body = frame.body();
    let Some(code) = body
        .get(..4)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    else {
        return Err(WireError::malformed(t, "no authentication code"));
    };
    let name = match code {
        0 | 3 | 10 | 11 | 12 => None,
        5 if body.len() == 8 => None,
        5 => {
            return Err(WireError::malformed(
                t,
                "AuthenticationMD5Password without a 4-byte salt",
            ));
        }
        2 => Some("KerberosV5"),
        6 => Some("SCMCredential"),
        7 => Some("GSS"),
        8 => Some("GSSContinue"),
        9 => Some("SSPI"),
        _ => Some("unknown"),
    };
    if let Some(name) = name {
        return Ok(AuthRequest::Unsupported { code, name });
    }
    // Length checked above for every fixed field pgwire reads.
    frame
        .decode::<Authentication>(&DecodeContext::default())
        .map(AuthRequest::Known)
}

/// `AuthenticationOk`.
pub fn authentication_ok() -> Frame {
    Frame::encode(&Authentication::Ok).expect("fixed-size message")
}

/// `AuthenticationCleartextPassword`: the proxy asks the client for its
/// workload token (only over loopback or the unix socket).
pub fn authentication_cleartext_password() -> Frame {
    Frame::encode(&Authentication::CleartextPassword).expect("fixed-size message")
}

/// The text of a client's `PasswordMessage` (`p`, a null-terminated string).
pub fn parse_password_message(frame: &Frame) -> Result<String, WireError> {
    let body = frame.body();
    let text = body.strip_suffix(&[0]).ok_or_else(|| {
        WireError::malformed(frame.tag(), "PasswordMessage without a terminating null")
    })?;
    String::from_utf8(text.to_vec())
        .map_err(|_| WireError::malformed(frame.tag(), "PasswordMessage is not UTF-8"))
}

/// `PasswordMessage` carrying a cleartext password or an md5 hash.
pub fn password_message(password: &str) -> Result<Frame, WireError> {
    Frame::encode(&Password::new(password.to_owned()))
}

/// `SASLInitialResponse` for `mechanism`.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Result<Frame, WireError> {
    Frame::encode(&SASLInitialResponse::new(
        mechanism.to_owned(),
        Some(Bytes::copy_from_slice(data)),
    ))
}

/// `SASLResponse`.
pub fn sasl_response(data: &[u8]) -> Result<Frame, WireError> {
    Frame::encode(&SASLResponse::new(Bytes::copy_from_slice(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(body: &[u8]) -> Frame {
        Frame::new(b'R', body)
    }

    #[test]
    fn parses_the_requests_the_proxy_answers() {
        assert_eq!(
            parse_authentication(&authentication_ok()).unwrap(),
            AuthRequest::Known(Authentication::Ok)
        );
        assert_eq!(
            parse_authentication(&auth(&[0, 0, 0, 5, 1, 2, 3, 4])).unwrap(),
            AuthRequest::Known(Authentication::MD5Password(vec![1, 2, 3, 4]))
        );
        assert_eq!(
            parse_authentication(&auth(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"))
                .unwrap(),
            AuthRequest::Known(Authentication::SASL(vec![
                "SCRAM-SHA-256-PLUS".into(),
                "SCRAM-SHA-256".into()
            ]))
        );
        assert_eq!(
            parse_authentication(&auth(b"\0\0\0\x0br=abc")).unwrap(),
            AuthRequest::Known(Authentication::SASLContinue(Bytes::from_static(b"r=abc")))
        );
        assert_eq!(
            parse_authentication(&auth(&[0, 0, 0, 7])).unwrap(),
            AuthRequest::Unsupported {
                code: 7,
                name: "GSS"
            }
        );
    }

    #[test]
    fn short_messages_are_errors_not_panics() {
        for body in [&b""[..], &[0, 0], &[0, 0, 0, 5, 1]] {
            assert!(parse_authentication(&auth(body)).is_err(), "{body:?}");
        }
    }

    #[test]
    fn password_message_layout() {
        let f = password_message("pw").unwrap();
        assert_eq!(f.tag(), b'p');
        assert_eq!(f.body(), b"pw\0");
        let f = sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x").unwrap();
        assert_eq!(&f.body()[..14], b"SCRAM-SHA-256\0");
        assert_eq!(&f.body()[14..18], &9_i32.to_be_bytes());
    }
}
