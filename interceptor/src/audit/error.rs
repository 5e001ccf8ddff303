//! [`AuditError`]: the audit layer's one error type.

use std::{io, path::PathBuf};

/// What went wrong in the audit layer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file or directory of the log could not be read or written.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The open segment file was removed or replaced by someone else.
    #[error("audit segment {} was removed or replaced while it was open", path.display())]
    SegmentGone {
        /// The segment's path.
        path: PathBuf,
    },
    /// Recording is not working: this append was not recorded. The proxy
    /// refuses statements with this message until it works again.
    #[error(
        "audit log cannot be written ({reason}); statements are refused until recording works again"
    )]
    Unavailable {
        /// The underlying failure.
        reason: String,
    },
    /// A key file is missing, unreadable or not an Ed25519 key.
    #[error("audit key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log is damaged in a way recovery must not paper over.
    #[error(
        "audit log {} is damaged at line {line} (byte {offset}): {reason}; run `interceptor audit verify` and keep the directory as evidence",
        path.display()
    )]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Byte offset of the line.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record of the log could not be read (query and export tools).
    #[error("{}: line {line}: {reason}; run `interceptor audit verify`", path.display())]
    BadRecord {
        /// The segment.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An event could not be encoded.
    #[error("audit event cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The `[audit]` configuration is unusable.
    #[error("audit config: {0}")]
    Config(String),
    /// [`super::AuditLog::enqueue`] found the queue full.
    #[error("audit queue is full ({0} records waiting)")]
    QueueFull(usize),
    /// The log was closed (or its writer stopped).
    #[error("audit log is closed")]
    Closed,
    /// A command-line argument is unusable (`--since`, a session id...).
    #[error("{0}")]
    Usage(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
