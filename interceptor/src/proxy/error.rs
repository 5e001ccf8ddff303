//! Errors of the proxy layer: [`ProxyError`] stops the daemon's proxy (set-up
//! failures), [`SessionError`] ends one session (and says what the client is
//! told). The layers below have their own: [`super::UpstreamError`],
//! [`super::CredentialsError`], [`super::TlsError`], [`crate::wire::WireError`].

use std::io;

use super::{CredentialsError, TlsError, UpstreamError};
use crate::wire::{PgError, WireError, sqlstate};

/// The proxy cannot start or keep accepting.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The credentials file is unusable.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener failed in a way retrying will not fix.
    #[error("listener {listener}: {source}")]
    Listener {
        /// Which listener.
        listener: String,
        /// Why.
        source: io::Error,
    },
}

/// Why a session ended before or instead of relaying.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The proxy refuses the session; the client is told this error.
    #[error("{0}")]
    Refused(PgError),
    /// The upstream session could not be established.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The client sent something unparseable during startup.
    #[error("client: {0}")]
    Wire(#[from] WireError),
    /// The TLS handshake with the client failed.
    #[error("TLS handshake with the client failed: {0}")]
    ClientTls(io::Error),
    /// The client did not complete startup in time.
    #[error("client did not complete startup within {0} s")]
    StartupTimeout(u64),
    /// The client went away.
    #[error("client i/o: {0}")]
    Io(#[from] io::Error),
}

impl SessionError {
    /// What the client is told, if it can still be told anything.
    pub fn client_error(&self) -> Option<PgError> {
        match self {
            Self::Refused(e) => Some(e.clone()),
            Self::Upstream(e) => Some(e.to_pg_error()),
            Self::Wire(WireError::Io(_) | WireError::UnexpectedEof)
            | Self::ClientTls(_)
            | Self::Io(_) => None,
            Self::Wire(e @ WireError::TooLarge { .. }) => Some(PgError::fatal(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                e.to_string(),
            )),
            Self::Wire(e) => Some(PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())),
            Self::StartupTimeout(_) => Some(PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                self.to_string(),
            )),
        }
    }

    /// Short machine-readable reason for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::Upstream(
                UpstreamError::Rejected { .. }
                | UpstreamError::NoPassword { .. }
                | UpstreamError::Scram { .. },
            ) => "upstream_auth_failed",
            Self::Upstream(_) => "upstream_unavailable",
            Self::Wire(_) => "client_protocol_violation",
            Self::ClientTls(_) => "client_tls_failed",
            Self::StartupTimeout(_) => "startup_timeout",
            Self::Io(_) => "client_io_error",
        }
    }
}
