//! The proxy: listeners, one task per client session, the upstream
//! connection and its authentication, TLS on both sides, cancel routing.
//!
//! - [`listener`](self): accept loop and graceful shutdown.
//! - `session`: one connection from accept to close (origin, attestation,
//!   startup negotiation, target, credential, greeting).
//! - `relay`: the message pump between client and upstream.
//! - [`hooks`]: the per-session interception point for policy, masking and
//!   audit ([`SessionHooks`], [`HooksFactory`]).
//! - [`upstream`]: connect, TLS and authentication to the database.
//! - [`credentials`]: the root-only credentials file.
//! - [`tls`]: rustls set-up for both sides.
//! - [`cancel`]: proxy-issued cancel keys -> upstream backends.
//! - [`stream`]: plain/TLS, TCP/unix stream enums.
//!
//! CONTRACT (used by `main.rs` and tests; keep these signatures):
//! - `pub struct Listeners { pub v4: TcpListener, pub v6: Option<TcpListener>, pub unix: Option<UnixListener> }`
//! - `pub trait OrigDstLookup: Send + Sync + 'static { fn lookup(&self, peer: SocketAddr) -> Option<ConnectRecord>; }`
//! - `pub async fn run(config: Arc<Config>, listeners: Listeners, lookup: Arc<dyn OrigDstLookup>, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError>`

pub mod cancel;
pub mod credentials;
mod error;
pub mod hooks;
mod listener;
pub mod relay;
mod session;
pub mod stream;
pub mod tls;
pub mod upstream;

/// TCP keepalive after a minute of silence: a statement held for a
/// person's approval leaves both connections idle for minutes, and
/// middleboxes drop idle flows; a dead peer is then noticed too.
pub(crate) fn keepalive(stream: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &60);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &15);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &4);
}

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

pub use cancel::{CancelKey, CancelMap, CancelTarget};
pub use credentials::{Credential, Credentials, CredentialsError, Secret};
pub use error::{ProxyError, SessionError};
pub use hooks::{
    HooksFactory, PassThrough, Route, SessionHooks, SessionInfo, SessionSummary, Traffic, Verdict,
};
pub use relay::EndReason;
pub use tls::TlsError;
use tokio::net::{TcpListener, UnixListener};
pub use upstream::UpstreamError;

use crate::{config::Config, ebpf::ConnectRecord};

/// The bound listeners the proxy serves (bound by the caller, so tests can
/// bind port 0 and the daemon can bind before attaching the kernel programs).
#[derive(Debug)]
pub struct Listeners {
    /// IPv4 loopback listener.
    pub v4: TcpListener,
    /// IPv6 loopback listener.
    pub v6: Option<TcpListener>,
    /// Unix socket listener (`.s.PGSQL.<port>`).
    pub unix: Option<UnixListener>,
}

/// Finds the original destination and caller of a redirected connection.
pub trait OrigDstLookup: Send + Sync + 'static {
    /// The record for the accepted socket whose peer is `peer` (the client's
    /// local address); `None`: the connection was not redirected.
    fn lookup(&self, peer: SocketAddr) -> Option<ConnectRecord>;
}

/// No connection is redirected (tests, or a proxy used only explicitly).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRedirect;

impl OrigDstLookup for NoRedirect {
    fn lookup(&self, _peer: SocketAddr) -> Option<ConnectRecord> {
        None
    }
}

/// Serves `listeners` with pass-through sessions until `shutdown` completes.
pub async fn run(
    config: Arc<Config>,
    listeners: Listeners,
    lookup: Arc<dyn OrigDstLookup>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    run_with_hooks(config, listeners, lookup, Arc::new(PassThrough), shutdown).await
}

/// [`run`], with each session's [`SessionHooks`] made by `hooks`.
///
/// Fails at once (before accepting) when the credentials file or the TLS
/// set-up is unusable; afterwards errors end single sessions, never the
/// proxy.
pub async fn run_with_hooks(
    config: Arc<Config>,
    listeners: Listeners,
    lookup: Arc<dyn OrigDstLookup>,
    hooks: Arc<dyn HooksFactory>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let credentials = Credentials::load(&config)?;
    let acceptor = tls::client_acceptor(&config)?;
    let upstream_tls = tls::upstream_connectors(&config)?;
    let listener_err = |listener: &str| {
        let listener = listener.to_owned();
        move |source| ProxyError::Listener { listener, source }
    };
    let mut own_addrs = vec![listeners.v4.local_addr().map_err(listener_err("v4"))?];
    if let Some(v6) = &listeners.v6 {
        own_addrs.push(v6.local_addr().map_err(listener_err("v6"))?);
    }
    let unix_target = listeners
        .unix
        .as_ref()
        .and_then(|l| listener::unix_target(&config, l));
    tracing::info!(
        event = "proxy_start",
        listen = ?own_addrs,
        credentials = credentials.len(),
        unix_target = unix_target.as_deref(),
        explicit_target = config.proxy.explicit_target.as_deref(),
        "proxy accepting connections"
    );
    let shared = Arc::new(session::Shared {
        config,
        credentials,
        acceptor,
        upstream_tls,
        cancels: CancelMap::new(),
        lookup,
        hooks,
        unix_target,
        own_addrs,
        next_id: AtomicU64::new(1),
    });
    listener::serve(shared, listeners, shutdown).await;
    tracing::info!(event = "proxy_stop", "proxy stopped");
    Ok(())
}

/// Opens upstream connections the way sessions do, for the proxy's own use
/// (masking's catalog lookups): same target, credential, TLS and database.
pub struct UpstreamConnector {
    config: Arc<Config>,
    credentials: Credentials,
    tls: std::collections::HashMap<String, tls::UpstreamTlsConnector>,
}

impl UpstreamConnector {
    /// Loads the credentials and TLS settings of `config`.
    pub fn new(config: Arc<Config>) -> Result<Self, ProxyError> {
        let credentials = Credentials::load(&config)?;
        let tls = tls::upstream_connectors(&config)?;
        Ok(Self {
            config,
            credentials,
            tls,
        })
    }
}

impl crate::mask::catalog::Connector for UpstreamConnector {
    fn connect<'a>(
        &'a self,
        info: &'a hooks::SessionInfo,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<upstream::Upstream, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let target = self
                .config
                .target(&info.target)
                .ok_or_else(|| format!("target `{}` is not configured", info.target))?;
            let credential = self
                .credentials
                .for_session(&info.target, &info.user)
                .map_err(|e| e.to_string())?;
            let request = upstream::UpstreamRequest {
                target: &target.name,
                addr: info.upstream,
                tls: self.tls.get(&target.name),
                tls_mode: upstream::tls_mode_name(target.tls),
                credential,
                database: &info.database,
                parameters: vec![("application_name", "interceptor-catalog")],
                max_message_bytes: self.config.proxy.max_message_bytes,
            };
            upstream::establish(
                &request,
                std::time::Duration::from_millis(self.config.proxy.connect_timeout_ms),
            )
            .await
            .map_err(|e| e.to_string())
        })
    }
}
