//! The session-state messages the proxy builds or inspects around
//! authentication: `ParameterStatus`, `BackendKeyData`, `ReadyForQuery`,
//! `NegotiateProtocolVersion`, `Terminate`.

use pgwire::messages::{
    DecodeContext,
    response::{ReadyForQuery, TransactionStatus},
    startup::{BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup},
    terminate::Terminate,
};

use super::{Frame, WireError, tag};

/// `ParameterStatus`.
pub fn parameter_status(name: &str, value: &str) -> Result<Frame, WireError> {
    Frame::encode(&ParameterStatus::new(name.to_owned(), value.to_owned()))
}

/// Parses a `ParameterStatus` frame.
pub fn parse_parameter_status(frame: &Frame) -> Result<ParameterStatus, WireError> {
    if frame.tag() != tag::backend::PARAMETER_STATUS {
        return Err(WireError::malformed(
            frame.tag(),
            "not a ParameterStatus message",
        ));
    }
    // pgwire reads two C strings bounded by the buffer: no fixed fields.
    frame.decode(&DecodeContext::default())
}

/// `BackendKeyData` with a protocol 3.0 (4-byte) secret.
pub fn backend_key_data(pid: i32, secret: i32) -> Frame {
    Frame::encode(&BackendKeyData::new(pid, SecretKey::I32(secret))).expect("fixed-size message")
}

/// Parses a protocol 3.0 `BackendKeyData` into `(pid, secret)`.
pub fn parse_backend_key_data(frame: &Frame) -> Result<(i32, i32), WireError> {
    let body = frame.body();
    if frame.tag() != tag::backend::BACKEND_KEY_DATA || body.len() != 8 {
        return Err(WireError::malformed(
            frame.tag(),
            "BackendKeyData must carry a 4-byte pid and 4-byte key",
        ));
    }
    let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let secret = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    Ok((pid, secret))
}

/// `ReadyForQuery`.
pub fn ready_for_query(status: TransactionStatus) -> Frame {
    Frame::encode(&ReadyForQuery::new(status)).expect("fixed-size message")
}

/// Transaction status of a `ReadyForQuery` frame.
pub fn parse_ready_for_query(frame: &Frame) -> Result<TransactionStatus, WireError> {
    match (frame.tag(), frame.body()) {
        (tag::backend::READY_FOR_QUERY, [status]) => {
            TransactionStatus::try_from(*status).map_err(Into::into)
        }
        (t, _) => Err(WireError::malformed(
            t,
            "ReadyForQuery must carry one status byte",
        )),
    }
}

/// `NegotiateProtocolVersion` with the newest version the proxy speaks, 3.0
/// (sent as the full protocol number, as the server sends
/// `PG_PROTOCOL_LATEST`), and the `_pq_.*` options it does not recognise.
pub fn negotiate_protocol_version(unsupported: Vec<String>) -> Result<Frame, WireError> {
    Frame::encode(&NegotiateProtocolVersion::new(
        Startup::PROTOCOL_VERSION_3_0,
        unsupported,
    ))
}

/// `Terminate`.
pub fn terminate() -> Frame {
    Frame::encode(&Terminate::new()).expect("fixed-size message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(
            parse_backend_key_data(&backend_key_data(7, -9)).unwrap(),
            (7, -9)
        );
        assert!(parse_backend_key_data(&Frame::new(b'K', &[0; 7])).is_err());
        let ps =
            parse_parameter_status(&parameter_status("server_version", "15.8").unwrap()).unwrap();
        assert_eq!(
            (ps.name.as_str(), ps.value.as_str()),
            ("server_version", "15.8")
        );
        let z = ready_for_query(TransactionStatus::Transaction);
        assert_eq!(z.as_bytes().as_ref(), b"Z\0\0\0\x05T");
        assert_eq!(
            parse_ready_for_query(&z).unwrap(),
            TransactionStatus::Transaction
        );
        assert!(parse_ready_for_query(&Frame::new(b'Z', b"")).is_err());
        assert!(parse_ready_for_query(&Frame::new(b'Z', b"?")).is_err());
        assert_eq!(terminate().as_bytes().as_ref(), b"X\0\0\0\x04");
        let v = negotiate_protocol_version(vec!["_pq_.x".into()]).unwrap();
        assert_eq!(&v.body()[..8], &[0, 3, 0, 0, 0, 0, 0, 1]);
    }
}
