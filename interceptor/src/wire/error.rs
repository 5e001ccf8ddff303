//! Errors of the wire layer: what is wrong with the bytes a peer sent.

use std::io;

/// A message that cannot be framed or decoded, or a transport failure while
/// reading one.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
    /// The length field announces more than the configured limit. Nothing of
    /// the message has been buffered.
    #[error("message `{}` of {len} bytes exceeds the limit of {max} bytes", printable(*tag))]
    TooLarge {
        /// Message type byte (0 for startup-phase packets, which have none).
        tag: u8,
        /// Announced length (including the length field itself).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The length field is smaller than the length field itself.
    #[error("message `{}` has an invalid length {len}", printable(*tag))]
    InvalidLength {
        /// Message type byte.
        tag: u8,
        /// Announced length.
        len: i64,
    },
    /// The startup packet is not one PostgreSQL would accept.
    #[error("invalid startup packet: {0}")]
    InvalidStartup(String),
    /// A message the proxy needs to look inside is malformed.
    #[error("malformed `{}` message: {what}", printable(*tag))]
    Malformed {
        /// Message type byte.
        tag: u8,
        /// What is wrong.
        what: String,
    },
    /// pgwire could not encode or decode a message.
    #[error("protocol error: {0}")]
    Pgwire(#[from] pgwire::error::PgWireError),
}

impl WireError {
    pub(crate) fn malformed(tag: u8, what: impl Into<String>) -> Self {
        Self::Malformed {
            tag,
            what: what.into(),
        }
    }
}

/// The tag as a character when it is one, for messages.
pub(crate) fn printable(tag: u8) -> char {
    if tag.is_ascii_graphic() {
        char::from(tag)
    } else {
        '?'
    }
}
