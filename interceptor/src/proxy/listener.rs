//! The accept loop: one task per connection on every listener, graceful
//! shutdown (stop accepting, tell sessions, wait for their goodbyes).

use std::{io, sync::Arc, time::Duration};

use tokio::net::{TcpListener, UnixListener};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Listeners,
    session::{self, Conn, Shared},
};
use crate::config::Config;

/// How long shutdown waits for sessions to say goodbye.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after an accept error (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts until `shutdown` completes, then ends the sessions.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            () = &mut shutdown => break,
            r = listeners.v4.accept() => tcp(r, "v4"),
            r = accept_tcp(listeners.v6.as_ref()) => tcp(r, "v6"),
            r = accept_unix(listeners.unix.as_ref()) => unix(r),
        };
        match conn {
            Some(conn) => {
                // A panic in a session ends that session's task only (tokio
                // catches it); it is logged as an error, and the daemon and
                // every other session go on.
                let session = tokio::spawn(session::serve(
                    Arc::clone(&shared),
                    conn,
                    token.child_token(),
                ));
                tracker.spawn(async move {
                    if let Err(e) = session.await
                        && e.is_panic()
                    {
                        let panic = e.into_panic();
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(event = "session_panic", panic = %what, "a session's task panicked; the session was closed");
                    }
                });
            }
            None => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
    token.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            event = "shutdown",
            sessions = tracker.len(),
            "sessions still open after the drain timeout"
        );
    }
}

fn tcp(r: io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>, which: &str) -> Option<Conn> {
    let (stream, peer) = r.map_err(|e| accept_error(which, &e)).ok()?;
    let local = stream
        .local_addr()
        .map_err(|e| accept_error(which, &e))
        .ok()?;
    Some(Conn::Tcp {
        stream,
        peer,
        local,
    })
}

fn unix(r: io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>) -> Option<Conn> {
    let (stream, _) = r.map_err(|e| accept_error("unix", &e)).ok()?;
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    Some(Conn::Unix { stream, pid })
}

fn accept_error(which: &str, e: &io::Error) {
    // Transient (EMFILE, ECONNABORTED...): keep serving.
    tracing::warn!(event = "accept_error", listener = which, error = %e, "accept failed");
}

async fn accept_tcp(
    l: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_unix(
    l: Option<&UnixListener>,
) -> io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The target of connections on the unix socket: the one target whose port
/// the socket is named after (`.s.PGSQL.<port>`), else `explicit_target`.
pub(crate) fn unix_target(config: &Config, listener: &UnixListener) -> Option<String> {
    let port = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(std::path::Path::to_path_buf))
        .and_then(|p| {
            p.file_name()?
                .to_str()?
                .strip_prefix(".s.PGSQL.")?
                .parse::<u16>()
                .ok()
        });
    if let Some(port) = port {
        let mut matching = config.targets.iter().filter(|t| t.port == port);
        if let (Some(t), None) = (matching.next(), matching.next()) {
            return Some(t.name.clone());
        }
    }
    config.proxy.explicit_target.clone()
}
