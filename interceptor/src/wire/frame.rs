//! Framing of regular (post-startup) messages: one type byte, a big-endian
//! `i32` length that counts itself but not the type byte, then the body
//! (PostgreSQL protocol docs, "Message Formats").
//!
//! A [`Frame`] keeps the whole message (type byte, length, body) as one
//! [`Bytes`], so forwarding it is a plain write and decoding is done only by
//! whoever needs to look inside.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::WireError;

/// Type byte plus length field.
pub const HEADER_LEN: usize = 5;

/// One complete protocol message, undecoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Type byte, length and body, exactly as on the wire.
    raw: Bytes,
}

impl Frame {
    /// Builds a frame from a type byte and a body.
    pub fn new(tag: u8, body: &[u8]) -> Self {
        let mut raw = BytesMut::with_capacity(HEADER_LEN + body.len());
        raw.put_u8(tag);
        raw.put_u32((body.len() + 4) as u32);
        raw.put_slice(body);
        Self { raw: raw.freeze() }
    }

    /// Builds a frame whose body `write` appends to the buffer (no copy of
    /// the body afterwards); the length field is filled in after.
    pub fn build(tag: u8, capacity: usize, write: impl FnOnce(&mut BytesMut)) -> Self {
        let mut raw = BytesMut::with_capacity(HEADER_LEN + capacity);
        raw.put_u8(tag);
        raw.put_u32(0);
        write(&mut raw);
        let len = (raw.len() - 1) as u32;
        raw[1..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Self { raw: raw.freeze() }
    }

    /// Wraps bytes that are known to hold exactly one well-framed message.
    fn from_raw(raw: Bytes) -> Self {
        debug_assert!(raw.len() >= HEADER_LEN);
        Self { raw }
    }

    /// Encodes a pgwire message (which writes its own type byte and length).
    pub fn encode<M: pgwire::messages::Message>(msg: &M) -> Result<Self, WireError> {
        let mut raw = BytesMut::with_capacity(msg.message_length() + 1);
        msg.encode(&mut raw)?;
        if raw.len() < HEADER_LEN {
            return Err(WireError::malformed(0, "encoded message has no type byte"));
        }
        Ok(Self { raw: raw.freeze() })
    }

    /// The message type byte.
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The body, after type byte and length.
    pub fn body(&self) -> &[u8] {
        &self.raw[HEADER_LEN..]
    }

    /// The whole message as on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// The whole message as on the wire.
    pub fn into_bytes(self) -> Bytes {
        self.raw
    }

    /// Length on the wire, type byte included.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Never true: a frame has at least its header. Present for clippy's
    /// `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Decodes the frame with pgwire. The message is handed to pgwire in a
    /// buffer of exactly its own size, so a decoder cannot read past it.
    /// Callers check the minimum body length pgwire's decoder assumes first
    /// (pgwire reads fixed fields with panicking `get_*` calls).
    pub fn decode<M: pgwire::messages::Message>(
        &self,
        ctx: &pgwire::messages::DecodeContext,
    ) -> Result<M, WireError> {
        let mut buf = BytesMut::from(&self.raw[..]);
        match M::decode(&mut buf, ctx)? {
            Some(msg) => Ok(msg),
            None => Err(WireError::malformed(self.tag(), "truncated")),
        }
    }
}

impl fmt::Debug for Frame {
    // Bodies may hold query text, row data or (on the frontend side, before
    // authentication) passwords: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("tag", &super::error::printable(self.tag()))
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Length the message at the front of `buf` occupies on the wire, once its
/// header is buffered; checks it against `max`.
///
/// An oversized length is reported before any of the body is buffered, so a
/// peer cannot make the proxy allocate more than `max`.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = (&buf[1..HEADER_LEN]).get_i32();
    if len < 4 {
        return Err(WireError::InvalidLength {
            tag,
            len: i64::from(len),
        });
    }
    let total = len as usize + 1;
    if total > max {
        return Err(WireError::TooLarge {
            tag,
            len: total,
            max,
        });
    }
    Ok(Some(total))
}

/// Splits the first complete message off `buf`, if it is all there.
/// `max` bounds the whole message, type byte included.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, WireError> {
    match frame_len(buf, max)? {
        Some(total) if buf.len() >= total => {
            Ok(Some(Frame::from_raw(buf.split_to(total).freeze())))
        }
        _ => Ok(None),
    }
}

/// Reads one message from `reader`, buffering in `buf` (which may already hold
/// the start of it, and may be left holding the start of the next one).
/// `Ok(None)` is a clean end of stream between messages.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Frame>, WireError> {
    loop {
        if let Some(frame) = split_frame(buf, max)? {
            return Ok(Some(frame));
        }
        // Reserve what the message needs (bounded by `max`, checked above).
        let want = frame_len(buf, max)?.map_or(HEADER_LEN, |total| total - buf.len());
        buf.reserve(want.max(512));
        if reader.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(WireError::UnexpectedEof)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(tag: u8, body: &[u8]) -> Vec<u8> {
        Frame::new(tag, body).as_bytes().to_vec()
    }

    #[test]
    fn splits_complete_frames_and_keeps_the_rest() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&raw(b'Q', b"select 1\0"));
        buf.extend_from_slice(&raw(b'S', b""));
        buf.extend_from_slice(&raw(b'X', b"")[..3]);
        let a = split_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(a.tag(), b'Q');
        assert_eq!(a.body(), b"select 1\0");
        let b = split_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((b.tag(), b.body().len(), b.len()), (b'S', 0, 5));
        assert!(split_frame(&mut buf, 1024).unwrap().is_none());
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn oversized_is_refused_from_the_header_alone() {
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_i32(100 << 20);
        let e = split_frame(&mut buf, 1 << 20).unwrap_err();
        assert!(
            matches!(e, WireError::TooLarge { tag: b'Q', len, max } if len == (100 << 20) + 1 && max == 1 << 20),
            "{e}"
        );
        assert!(e.to_string().contains("exceeds"), "{e}");
    }

    #[test]
    fn negative_and_short_lengths_are_refused() {
        for len in [-1_i32, 0, 3, i32::MIN] {
            let mut buf = BytesMut::new();
            buf.put_u8(b'P');
            buf.put_i32(len);
            assert!(
                matches!(
                    split_frame(&mut buf, 1024),
                    Err(WireError::InvalidLength { .. })
                ),
                "{len}"
            );
        }
    }

    #[test]
    fn debug_does_not_print_the_body() {
        let f = Frame::new(b'p', b"hunter2\0");
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn read_frame_across_reads_and_eof() {
        let mut data = raw(b'D', &[7; 3000]);
        data.extend_from_slice(&raw(b'Z', b"I"));
        let mut reader = &data[..];
        let mut buf = BytesMut::new();
        let d = read_frame(&mut reader, &mut buf, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body().len(), 3000);
        let z = read_frame(&mut reader, &mut buf, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(z.body(), b"I");
        assert!(
            read_frame(&mut reader, &mut buf, 1 << 20)
                .await
                .unwrap()
                .is_none()
        );
        let cut = raw(b'D', &[1; 10]);
        let mut reader = &cut[..8];
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_frame(&mut reader, &mut buf, 1024).await,
            Err(WireError::UnexpectedEof)
        ));
    }
}
