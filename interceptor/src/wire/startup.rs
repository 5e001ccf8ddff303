//! The startup phase: packets with a length but no type byte
//! (`StartupMessage`, `SSLRequest`, `GSSENCRequest`, `CancelRequest`;
//! PostgreSQL protocol docs, "Start-up" and "Message Formats").
//!
//! Parsing is strict and mirrors the server's `ProcessStartupPacket`: the
//! length is bounded before anything is buffered, and a packet the server
//! would reject is rejected with an error that says why.

use std::collections::BTreeMap;

use bytes::{Buf, BytesMut};
use pgwire::messages::{
    cancel::CancelRequest,
    startup::{GssEncRequest, SecretKey, SslRequest, Startup},
};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::WireError;

/// Largest startup-phase packet the server accepts
/// (`MAX_STARTUP_PACKET_LENGTH` in `pqcomm.h`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// Magic number of `CancelRequest` (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Magic number of `SSLRequest` (1234.5679).
pub const SSL_REQUEST_CODE: u32 = SslRequest::BODY_MAGIC_NUMBER as u32;
/// Magic number of `GSSENCRequest` (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = GssEncRequest::BODY_MAGIC_NUMBER as u32;
/// First byte of a TLS handshake record: a client using PostgreSQL 17's
/// `sslnegotiation=direct` starts TLS without an `SSLRequest`.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// One startup-phase packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS; answer `S` or `N`.
    SslRequest,
    /// The client asks for GSSAPI encryption; answer `G` or `N`.
    GssEncRequest,
    /// The client wants a running query cancelled.
    CancelRequest(CancelRequest),
    /// The client's `StartupMessage`.
    Startup(Startup),
}

impl StartupPacket {
    /// Parses a whole packet, length field included.
    pub fn parse(packet: &[u8]) -> Result<Self, WireError> {
        if packet.len() < 8 {
            return Err(WireError::InvalidStartup(format!(
                "packet of {} bytes is too short",
                packet.len()
            )));
        }
        let mut buf = packet;
        let len = buf.get_u32() as usize;
        if len != packet.len() {
            return Err(WireError::InvalidStartup(format!(
                "length field says {len} bytes, packet has {}",
                packet.len()
            )));
        }
        let code = buf.get_u32();
        match code {
            SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if len != 8 => {
                Err(WireError::InvalidStartup(format!(
                    "{} request of {len} bytes (must be 8)",
                    if code == SSL_REQUEST_CODE {
                        "SSL"
                    } else {
                        "GSSENC"
                    }
                )))
            }
            SSL_REQUEST_CODE => Ok(Self::SslRequest),
            GSSENC_REQUEST_CODE => Ok(Self::GssEncRequest),
            CANCEL_REQUEST_CODE => parse_cancel(buf).map(Self::CancelRequest),
            _ => parse_startup(code, buf).map(Self::Startup),
        }
    }
}

fn parse_cancel(mut buf: &[u8]) -> Result<CancelRequest, WireError> {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows 4..=256.
    if buf.len() < 8 || buf.len() > 4 + 256 {
        return Err(WireError::InvalidStartup(format!(
            "cancel request of {} bytes is not a valid CancelRequest",
            buf.len() + 8
        )));
    }
    let pid = buf.get_i32();
    let secret_key = if buf.len() == 4 {
        SecretKey::I32(buf.get_i32())
    } else {
        SecretKey::Bytes(bytes::Bytes::copy_from_slice(buf))
    };
    Ok(CancelRequest::new(pid, secret_key))
}

fn parse_startup(code: u32, body: &[u8]) -> Result<Startup, WireError> {
    let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
    if major != 3 {
        return Err(WireError::InvalidStartup(format!(
            "unsupported frontend protocol {major}.{minor}: the proxy supports 3.0"
        )));
    }
    // Name/value pairs of NUL-terminated strings, then one more NUL, which
    // must be the last byte (as the server checks in ProcessStartupPacket).
    let terminator = || WireError::InvalidStartup("expected a NUL terminator as last byte".into());
    let mut parameters = BTreeMap::new();
    let mut rest = body;
    loop {
        match rest {
            [0] => break,
            [] | [0, ..] => return Err(terminator()),
            _ => {}
        }
        let name = take_cstr(&mut rest)?.ok_or_else(terminator)?;
        let value = take_cstr(&mut rest)?
            .ok_or_else(|| WireError::InvalidStartup(format!("parameter `{name}` has no value")))?;
        if parameters.insert(name.clone(), value).is_some() {
            return Err(WireError::InvalidStartup(format!(
                "parameter `{name}` is given twice"
            )));
        }
    }
    let mut startup = Startup::new();
    startup.protocol_number_major = major;
    startup.protocol_number_minor = minor;
    startup.parameters = parameters;
    Ok(startup)
}

/// Takes one NUL-terminated UTF-8 string off the front of `rest`;
/// `Ok(None)` when there is no NUL.
fn take_cstr(rest: &mut &[u8]) -> Result<Option<String>, WireError> {
    let Some(nul) = rest.iter().position(|b| *b == 0) else {
        return Ok(None);
    };
    let s = std::str::from_utf8(&rest[..nul])
        .map_err(|_| WireError::InvalidStartup("parameter is not valid UTF-8".into()))?
        .to_owned();
    *rest = &rest[nul + 1..];
    Ok(Some(s))
}

/// Reads one startup-phase packet. `Ok(None)`: the client closed the
/// connection before sending anything (e.g. a port probe).
pub async fn read_startup_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<StartupPacket>, WireError> {
    let mut len = [0_u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let total = u32::from_be_bytes(len) as usize;
    if total < 8 {
        return Err(WireError::InvalidStartup(format!(
            "invalid length {total} of startup packet"
        )));
    }
    if total > MAX_STARTUP_PACKET_LEN {
        return Err(WireError::TooLarge {
            tag: 0,
            len: total,
            max: MAX_STARTUP_PACKET_LEN,
        });
    }
    let mut packet = BytesMut::zeroed(total);
    packet[..4].copy_from_slice(&len);
    reader
        .read_exact(&mut packet[4..])
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => WireError::UnexpectedEof,
            _ => e.into(),
        })?;
    StartupPacket::parse(&packet).map(Some)
}

/// The proxy's own `StartupMessage` towards the upstream (protocol 3.0).
pub fn startup_message<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<bytes::Bytes, WireError> {
    let mut startup = Startup::new();
    startup.parameters = params
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    encode_untagged(&startup)
}

/// An `SSLRequest` packet.
pub fn ssl_request() -> bytes::Bytes {
    encode_untagged(&SslRequest::new()).expect("fixed-size message")
}

/// A `CancelRequest` packet for a protocol 3.0 key.
pub fn cancel_request(pid: i32, secret: i32) -> bytes::Bytes {
    encode_untagged(&CancelRequest::new(pid, SecretKey::I32(secret))).expect("fixed-size message")
}

fn encode_untagged<M: pgwire::messages::Message>(msg: &M) -> Result<bytes::Bytes, WireError> {
    let mut buf = BytesMut::with_capacity(msg.message_length());
    msg.encode(&mut buf)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut p = BytesMut::new();
        p.put_u32((8 + body.len()) as u32);
        p.put_u32(code);
        p.put_slice(body);
        p.to_vec()
    }

    #[test]
    fn startup_message_round_trip() {
        let raw = startup_message([
            ("user", "alice"),
            ("database", "db"),
            ("application_name", "psql"),
        ])
        .unwrap();
        let StartupPacket::Startup(s) = StartupPacket::parse(&raw).unwrap() else {
            panic!()
        };
        assert_eq!((s.protocol_number_major, s.protocol_number_minor), (3, 0));
        assert_eq!(s.parameters["user"], "alice");
        assert_eq!(s.parameters["application_name"], "psql");
    }

    #[test]
    fn negotiation_and_cancel_packets() {
        assert_eq!(
            StartupPacket::parse(&ssl_request()).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            StartupPacket::parse(&packet(GSSENC_REQUEST_CODE, b"")).unwrap(),
            StartupPacket::GssEncRequest
        );
        let StartupPacket::CancelRequest(c) =
            StartupPacket::parse(&cancel_request(42, -7)).unwrap()
        else {
            panic!()
        };
        assert_eq!((c.pid, c.secret_key), (42, SecretKey::I32(-7)));
    }

    #[test]
    fn malformed_startup_packets_say_why() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (packet(3 << 16, b"user\0alice\0"), "NUL terminator"),
            (packet(3 << 16, b"user\0alice\0database\0"), "no value"),
            (packet(3 << 16, b"user\0a\0user\0b\0\0"), "twice"),
            (packet(2 << 16, b"\0"), "unsupported frontend protocol 2.0"),
            (packet(3 << 16, b"user\0\xff\xfe\0\0"), "UTF-8"),
            (packet(CANCEL_REQUEST_CODE, b"\0\0"), "CancelRequest"),
            (packet(SSL_REQUEST_CODE, b"xx"), "must be 8"),
        ];
        for (p, want) in cases {
            let e = StartupPacket::parse(&p).unwrap_err();
            assert!(e.to_string().contains(want), "{e} should mention {want}");
        }
        let mut bad_len = packet(3 << 16, b"\0");
        bad_len[3] += 1;
        assert!(
            StartupPacket::parse(&bad_len)
                .unwrap_err()
                .to_string()
                .contains("length field")
        );
    }

    #[tokio::test]
    async fn read_bounds_length_before_buffering() {
        let mut huge = BytesMut::new();
        huge.put_u32(1 << 30);
        huge.put_u32(3 << 16);
        let e = read_startup_packet(&mut &huge[..]).await.unwrap_err();
        assert!(
            matches!(e, WireError::TooLarge { len, .. } if len == 1 << 30),
            "{e}"
        );
        let e = read_startup_packet(&mut &[0_u8, 0, 0, 4][..])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid length 4"), "{e}");
        assert!(read_startup_packet(&mut &[][..]).await.unwrap().is_none());
        let short = packet(3 << 16, b"user\0a\0\0");
        let e = read_startup_packet(&mut &short[..short.len() - 2])
            .await
            .unwrap_err();
        assert!(matches!(e, WireError::UnexpectedEof), "{e}");
    }
}
