//! One client session, from accept to close:
//!
//! 1. origin: the kernel's connect record for the peer (redirected), else
//!    `proxy.explicit_target` (straight to the TCP port), or the unix
//!    socket's peer credentials; attestation of the caller starts once the
//!    client has sent its first bytes (a bounded number at once), on a
//!    blocking thread, while the client negotiates;
//! 2. startup: `SSLRequest` -> TLS, `GSSENCRequest` -> `N`,
//!    `CancelRequest` -> routed by [`super::cancel`], `StartupMessage`;
//! 3. checks, each refusing with a clear `ErrorResponse`: caller attested,
//!    destination is a configured target, a credential is held;
//! 4. upstream connected and authenticated with that credential; the client
//!    gets `AuthenticationOk`, the server's `ParameterStatus`es, a
//!    proxy-issued `BackendKeyData` and `ReadyForQuery`;
//! 5. [`super::relay`] until either side ends.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pgwire::messages::{cancel::CancelRequest, startup::Startup};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpStream, UnixStream},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{
    OrigDstLookup, SessionError,
    cancel::{CancelKey, CancelMap, CancelTarget},
    credentials::Credentials,
    hooks::{HooksFactory, Route, SessionInfo, SessionSummary},
    relay::Relay,
    stream::ClientStream,
    tls::{ALPN_POSTGRESQL, UpstreamTlsConnector},
    upstream::{self, UpstreamRequest},
};
use crate::{
    config::Config,
    ebpf::ConnectRecord,
    identity::{self, Attestation},
    token::{TokenError, TokenOutcome, Validator},
    wire::{
        PgError, StartupPacket, WireError, auth, read_frame, read_startup_packet, sqlstate,
        startup::TLS_HANDSHAKE_BYTE, status,
    },
};

/// How long a client may take from connect to `StartupMessage` (the
/// server's `authentication_timeout` default).
const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);

/// What every session shares.
pub(crate) struct Shared {
    /// The configuration the proxy was started with.
    pub config: Arc<Config>,
    /// Credentials, loaded at start.
    pub credentials: Credentials,
    /// TLS towards clients.
    pub acceptor: TlsAcceptor,
    /// TLS towards upstreams, per target name (absent: `tls = "disable"`).
    pub upstream_tls: HashMap<String, UpstreamTlsConnector>,
    /// Proxy cancel keys of live sessions.
    pub cancels: Arc<CancelMap>,
    /// Original destination and caller of redirected connections.
    pub lookup: Arc<dyn OrigDstLookup>,
    /// Creates each session's hooks.
    pub hooks: Arc<dyn HooksFactory>,
    /// Target of connections on the unix socket.
    pub unix_target: Option<String>,
    /// The proxy's own TCP listeners: never an upstream (it would loop).
    pub own_addrs: Vec<SocketAddr>,
    /// Source of session ids.
    pub next_id: AtomicU64,
}

/// An accepted connection.
pub(crate) enum Conn {
    /// On a TCP listener.
    Tcp {
        /// The socket.
        stream: TcpStream,
        /// Client address.
        peer: SocketAddr,
        /// Listener address it arrived on.
        local: SocketAddr,
    },
    /// On the unix listener.
    Unix {
        /// The socket.
        stream: UnixStream,
        /// Caller pid from `SO_PEERCRED`.
        pid: Option<u32>,
    },
}

/// Where the connection came from and who made it, as known at accept.
enum Origin {
    /// Redirected by the kernel programs.
    Redirected(ConnectRecord),
    /// Straight to the proxy port, for `explicit_target`.
    Explicit {
        /// The target name.
        target: String,
    },
    /// On the unix socket.
    Unix,
    /// Straight to the proxy port with no `explicit_target`: refused.
    Unknown {
        /// The listener it arrived on.
        local: SocketAddr,
    },
}

/// Attestation running on a blocking thread; the error is already a message.
type AttestTask = JoinHandle<Result<Attestation, String>>;

/// Attestation not started yet: it reads `/proc` (and, for the explicit
/// route, looks for the socket's owner), so it starts only once the
/// client has sent its first bytes, and at most [`MAX_ATTESTING`] run at
/// once: a flood of connections dropped before the startup packet costs
/// no `/proc` work, and cannot hold the blocking pool.
type AttestJob = Box<dyn FnOnce() -> Result<Attestation, String> + Send>;

/// Attestations running at once.
const MAX_ATTESTING: usize = 16;

fn attesting() -> &'static Arc<tokio::sync::Semaphore> {
    static SLOTS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_ATTESTING)))
}

/// Starts `job` on a blocking thread once a slot is free.
async fn start_attestation(job: AttestJob) -> AttestTask {
    let slot = Arc::clone(attesting()).acquire_owned().await;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        job()
    })
}

/// Waits until the client has sent something (TCP: a byte to peek at), so
/// that a connection closed before its startup packet is never attested.
/// `Ok(false)`: it closed (or failed) first; `Err`: it sent nothing for
/// [`STARTUP_TIMEOUT`].
async fn client_sent_something(client: &ClientStream) -> Result<bool, SessionError> {
    match client {
        ClientStream::Tcp(tcp) => {
            let mut first = [0_u8; 1];
            match tokio::time::timeout(STARTUP_TIMEOUT, tcp.peek(&mut first)).await {
                Err(_) => Err(SessionError::StartupTimeout(STARTUP_TIMEOUT.as_secs())),
                Ok(Ok(n)) => Ok(n > 0),
                Ok(Err(_)) => Ok(false),
            }
        }
        // The unix socket's peer is known by SO_PEERCRED: cheap.
        _ => Ok(true),
    }
}

/// Per-session facts gathered before the session is established, for the
/// `session_refused` event.
struct Context {
    id: u64,
    started: Instant,
    peer: String,
    origin: Origin,
    target: Option<String>,
    user: Option<String>,
    database: Option<String>,
    attestation: Option<Arc<Attestation>>,
    /// The token's verified claims or why it was refused (never the token).
    token: Option<serde_json::Value>,
    /// The hooks opened a session for it (recorded `session_start`, and so
    /// its `session_end`); a refusal before is a `connection_refused`.
    opened: bool,
}

/// Serves one connection until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Conn, shutdown: CancellationToken) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (client, peer, origin, attest) = accept(&shared, conn);
    let mut ctx = Context {
        id,
        started: Instant::now(),
        peer,
        origin,
        target: None,
        user: None,
        database: None,
        attestation: None,
        token: None,
        opened: false,
    };
    // Startup is not worth finishing when the daemon stops: dropped here.
    // An established session ends through the relay's own shutdown path
    // (goodbye to both sides, `session_end`), outside this race.
    let established = tokio::select! {
        r = start(&shared, &mut ctx, client, attest) => r,
        () = shutdown.cancelled() => None,
    };
    if let Some((mut client, ready)) = established {
        relay(&shared, &ctx, &mut client, ready, &shutdown).await;
    }
}

/// Resolves the origin and starts attestation.
fn accept(shared: &Shared, conn: Conn) -> (ClientStream, String, Origin, Option<AttestJob>) {
    match conn {
        Conn::Tcp {
            stream,
            peer,
            local,
        } => {
            // Latency of small messages matters more than packet count.
            let _ = stream.set_nodelay(true);
            super::keepalive(&stream);
            let (origin, attest) = match shared.lookup.lookup(peer) {
                Some(record) => {
                    // The connect record names the caller: no search.
                    let pid = record.tgid;
                    let job: AttestJob =
                        Box::new(move || identity::attest(pid).map_err(|e| e.to_string()));
                    (Origin::Redirected(record), Some(job))
                }
                None => {
                    match &shared.config.proxy.explicit_target {
                        Some(target) => {
                            let job: AttestJob = Box::new(move || {
                                let pid = identity::pid_of_tcp_peer(peer, local).ok_or_else(|| {
                                    format!("cannot find the local process that owns client socket {peer}")
                                })?;
                                identity::attest(pid).map_err(|e| e.to_string())
                            });
                            (
                                Origin::Explicit {
                                    target: target.clone(),
                                },
                                Some(job),
                            )
                        }
                        None => (Origin::Unknown { local }, None),
                    }
                }
            };
            (ClientStream::Tcp(stream), peer.to_string(), origin, attest)
        }
        Conn::Unix { stream, pid } => {
            let job: AttestJob = Box::new(move || {
                let pid = pid.ok_or("the unix socket peer has no process id (SO_PEERCRED)")?;
                identity::attest(pid).map_err(|e| e.to_string())
            });
            let peer = pid.map_or_else(|| "unix".to_owned(), |p| format!("unix:pid={p}"));
            (ClientStream::Unix(stream), peer, Origin::Unix, Some(job))
        }
    }
}

/// The startup packet's outcome.
enum Negotiated {
    /// A `StartupMessage`: a session.
    Startup(Box<Startup>),
    /// A `CancelRequest`.
    Cancel(CancelRequest),
    /// The client left before sending anything.
    Gone,
}

/// Steps 2 to 4; `None` when the connection ended (refused, cancel
/// request, client gone), having told the client why when it can.
async fn start(
    shared: &Shared,
    ctx: &mut Context,
    client: ClientStream,
    attest: Option<AttestJob>,
) -> Option<(ClientStream, Ready)> {
    // Attestation runs while the client negotiates, once it has sent
    // something; a connection gone before that is not a session.
    match client_sent_something(&client).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            refused(shared, ctx, &e);
            return None;
        }
    }
    let attest = match attest {
        Some(job) => Some(start_attestation(job).await),
        None => None,
    };
    let negotiated = tokio::time::timeout(STARTUP_TIMEOUT, negotiate(shared, client)).await;
    let (mut client, startup) = match negotiated {
        Err(_) => {
            refused(
                shared,
                ctx,
                &SessionError::StartupTimeout(STARTUP_TIMEOUT.as_secs()),
            );
            return None;
        }
        Ok(Err((client, err))) => {
            if let Some(mut client) = client {
                send_error(&mut client, err.client_error()).await;
            }
            refused(shared, ctx, &err);
            return None;
        }
        Ok(Ok((_, Negotiated::Gone))) => return None,
        Ok(Ok((_, Negotiated::Cancel(req)))) => {
            cancel(shared, ctx, &req).await;
            return None;
        }
        Ok(Ok((client, Negotiated::Startup(startup)))) => (client, startup),
    };
    match establish(shared, ctx, &mut client, *startup, attest).await {
        Ok(ready) => Some((client, ready)),
        Err(err) => {
            send_error(&mut client, err.client_error()).await;
            refused(shared, ctx, &err);
            None
        }
    }
}

/// Startup-phase packets until a `StartupMessage` or `CancelRequest`.
/// On error, the stream is returned when the client can still be told why.
async fn negotiate(
    shared: &Shared,
    mut client: ClientStream,
) -> Result<(ClientStream, Negotiated), (Option<ClientStream>, SessionError)> {
    // PostgreSQL 17 clients with sslnegotiation=direct open with a TLS
    // ClientHello instead of SSLRequest.
    let mut direct_tls = false;
    if let ClientStream::Tcp(tcp) = &client {
        let mut first = [0_u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Ok((client, Negotiated::Gone)),
            Ok(_) if first[0] == TLS_HANDSHAKE_BYTE => {
                client = accept_tls(&shared.acceptor, client)
                    .await
                    .map_err(|e| (None, e))?;
                direct_tls = true;
            }
            Ok(_) => {}
            Err(e) => return Err((None, e.into())),
        }
    }
    if direct_tls && !alpn_is_postgresql(&client) {
        let err = WireError::InvalidStartup(
            "direct TLS connection without ALPN protocol \"postgresql\"".into(),
        );
        return Err((Some(client), err.into()));
    }
    let mut gss_answered = false;
    loop {
        let packet = match read_startup_packet(&mut client).await {
            Ok(Some(packet)) => packet,
            Ok(None) => return Ok((client, Negotiated::Gone)),
            Err(e) => return Err((Some(client), e.into())),
        };
        match packet {
            StartupPacket::SslRequest if client.is_tls() => {
                let err = WireError::InvalidStartup(
                    "SSLRequest on a connection that already uses TLS".into(),
                );
                return Err((Some(client), err.into()));
            }
            StartupPacket::SslRequest => {
                if let Err(e) = client.write_all(b"S").await {
                    return Err((None, e.into()));
                }
                client = accept_tls(&shared.acceptor, client)
                    .await
                    .map_err(|e| (None, e))?;
            }
            StartupPacket::GssEncRequest if gss_answered => {
                let err = WireError::InvalidStartup("second GSSENCRequest".into());
                return Err((Some(client), err.into()));
            }
            StartupPacket::GssEncRequest => {
                // No GSSAPI encryption: the client goes on with its next
                // startup packet (SSLRequest or StartupMessage).
                gss_answered = true;
                if let Err(e) = client.write_all(b"N").await {
                    return Err((None, e.into()));
                }
            }
            StartupPacket::CancelRequest(req) => return Ok((client, Negotiated::Cancel(req))),
            StartupPacket::Startup(startup) => {
                return Ok((client, Negotiated::Startup(Box::new(startup))));
            }
        }
    }
}

async fn accept_tls(
    acceptor: &TlsAcceptor,
    client: ClientStream,
) -> Result<ClientStream, SessionError> {
    match client {
        ClientStream::Tcp(s) => acceptor
            .accept(s)
            .await
            .map(|t| ClientStream::TlsTcp(Box::new(t)))
            .map_err(SessionError::ClientTls),
        ClientStream::Unix(s) => acceptor
            .accept(s)
            .await
            .map(|t| ClientStream::TlsUnix(Box::new(t)))
            .map_err(SessionError::ClientTls),
        ClientStream::TlsTcp(_) | ClientStream::TlsUnix(_) => Err(SessionError::Wire(
            WireError::InvalidStartup("TLS requested twice".into()),
        )),
    }
}

fn alpn_is_postgresql(client: &ClientStream) -> bool {
    let alpn = match client {
        ClientStream::TlsTcp(t) => t.get_ref().1.alpn_protocol(),
        ClientStream::TlsUnix(t) => t.get_ref().1.alpn_protocol(),
        ClientStream::Tcp(_) | ClientStream::Unix(_) => None,
    };
    alpn == Some(ALPN_POSTGRESQL)
}

/// Everything the relay needs once the upstream is authenticated.
struct Ready {
    info: Arc<SessionInfo>,
    upstream: upstream::Upstream,
    hooks: Box<dyn super::hooks::SessionHooks>,
    greeting: Vec<crate::wire::Frame>,
    _cancel: Option<super::cancel::CancelRegistration>,
}

fn refuse(code: &str, message: impl Into<String>) -> SessionError {
    SessionError::Refused(PgError::fatal(code, message))
}

fn refuse_hint(code: &str, message: impl Into<String>, hint: &str) -> SessionError {
    SessionError::Refused(PgError::fatal(code, message).with_hint(hint))
}

/// Steps 3 and 4: checks, upstream, greeting.
async fn establish(
    shared: &Shared,
    ctx: &mut Context,
    client: &mut ClientStream,
    startup: Startup,
    attest: Option<AttestTask>,
) -> Result<Ready, SessionError> {
    let config = &shared.config;
    let mut params = startup.parameters;
    let user = params
        .remove("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            refuse(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    let database = params
        .remove("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    ctx.user = Some(user.clone());
    ctx.database = Some(database.clone());
    if params
        .get("replication")
        .is_some_and(|v| !matches!(v.as_str(), "false" | "off" | "no" | "0"))
    {
        return Err(refuse(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through the interceptor",
        ));
    }
    // Protocol options (`_pq_.*`) and minor versions above 3.0 are declined
    // with NegotiateProtocolVersion, as a 3.0 server does.
    let pq_options: Vec<String> = params
        .keys()
        .filter(|k| k.starts_with("_pq_."))
        .cloned()
        .collect();
    params.retain(|k, _| !k.starts_with("_pq_."));
    let negotiate = if startup.protocol_number_minor > 0 || !pq_options.is_empty() {
        Some(status::negotiate_protocol_version(pq_options)?)
    } else {
        None
    };

    // Which target.
    let (route, orig_dst, record, target) = match &ctx.origin {
        Origin::Redirected(record) => {
            let target = config.target_for(record.orig_dst).ok_or_else(|| {
                refuse(
                    sqlstate::REJECTED_CONNECTION,
                    format!(
                        "connection to {} is not to a configured interceptor target",
                        record.orig_dst
                    ),
                )
            })?;
            (
                Route::Redirected,
                Some(record.orig_dst),
                Some(record.clone()),
                target,
            )
        }
        Origin::Explicit { target } => {
            let target = config.target(target).ok_or_else(|| {
                refuse(
                    sqlstate::REJECTED_CONNECTION,
                    format!("explicit_target `{target}` is not a configured target"),
                )
            })?;
            (Route::Explicit, None, None, target)
        }
        Origin::Unix => {
            let name = shared.unix_target.as_deref().ok_or_else(|| {
                refuse_hint(
                    sqlstate::REJECTED_CONNECTION,
                    "no target for connections on the interceptor's unix socket",
                    "name the socket .s.PGSQL.<port> of exactly one target's port, or set proxy.explicit_target",
                )
            })?;
            let target = config.target(name).ok_or_else(|| {
                refuse(
                    sqlstate::REJECTED_CONNECTION,
                    format!("target `{name}` is not configured"),
                )
            })?;
            (Route::Unix, None, None, target)
        }
        Origin::Unknown { local } => {
            return Err(refuse_hint(
                sqlstate::REJECTED_CONNECTION,
                format!(
                    "connection made straight to the interceptor at {local}, and no explicit_target is configured"
                ),
                "connect to the database's own address (the interceptor redirects it), or set proxy.explicit_target",
            ));
        }
    };
    ctx.target = Some(target.name.clone());

    // Who: fail closed.
    let attestation = match attest {
        Some(task) => match tokio::time::timeout(STARTUP_TIMEOUT, task).await {
            Ok(joined) => joined.map_err(|e| e.to_string()).and_then(|r| r),
            Err(_) => Err(format!(
                "attestation took longer than {} s",
                STARTUP_TIMEOUT.as_secs()
            )),
        },
        None => Err("no caller to attest".to_owned()),
    }
    .map_err(|e| {
        refuse(
            sqlstate::INVALID_AUTHORIZATION,
            format!("the interceptor could not attest the calling process: {e}"),
        )
    })?;
    let attestation = Arc::new(attestation);
    ctx.attestation = Some(Arc::clone(&attestation));

    let credential = shared
        .credentials
        .for_session(&target.name, &user)
        .map_err(|e| refuse(sqlstate::INVALID_AUTHORIZATION, e.to_string()))?;

    let Some(addr) = target.upstream.or(orig_dst) else {
        return Err(refuse_hint(
            sqlstate::UNABLE_TO_CONNECT,
            format!(
                "target `{}` has no upstream address for connections that were not redirected",
                target.name
            ),
            "set upstream = \"host:port\" in the [[target]]",
        ));
    };
    if shared.own_addrs.contains(&addr) {
        return Err(refuse(
            sqlstate::UNABLE_TO_CONNECT,
            format!(
                "target `{}` points at the interceptor itself ({addr})",
                target.name
            ),
        ));
    }

    // The workload token, when the policy needs one for this caller: asked
    // for as a cleartext password (the client is on loopback or the unix
    // socket, or on TLS).
    let token = match shared.hooks.token_validator(&attestation) {
        None => TokenOutcome::NotAsked,
        Some(validator) => ask_token(client, &validator).await?,
    };
    ctx.token = token.to_record();

    let info = Arc::new(SessionInfo {
        id: ctx.id,
        route,
        peer: ctx.peer.clone(),
        orig_dst,
        target: target.name.clone(),
        upstream: addr,
        database: database.clone(),
        user: user.clone(),
        upstream_user: credential.user.clone(),
        application_name: params.get("application_name").cloned(),
        parameters: params.clone(),
        client_tls: client.is_tls(),
        attestation,
        connect_record: record,
        token,
    });
    let opened = shared.hooks.open(&info);
    // Recorded either way: open() writes session_start before it decides.
    ctx.opened = true;
    let mut hooks = opened.map_err(SessionError::Refused)?;
    if let Some(admission) = hooks.admit() {
        admission.await.map_err(SessionError::Refused)?;
    }

    let tls = shared.upstream_tls.get(&target.name);
    let request = UpstreamRequest {
        target: &target.name,
        addr,
        tls,
        tls_mode: upstream::tls_mode_name(target.tls),
        credential,
        database: &database,
        parameters: params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        max_message_bytes: config.proxy.max_message_bytes,
    };
    let upstream = match upstream::establish(
        &request,
        Duration::from_millis(config.proxy.connect_timeout_ms),
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            // The session was opened (and recorded): it ends on the record
            // with why (upstream down, TLS, authentication, no such database).
            let err = SessionError::from(e);
            hooks.end(&super::hooks::SessionSummary {
                reason: err.code(),
                detail: err.to_string(),
                traffic: super::hooks::Traffic::default(),
                duration_ms: ctx.started.elapsed().as_millis() as u64,
            });
            return Err(err);
        }
    };

    let cancel = upstream.backend_key.map(|(pid, secret)| {
        shared.cancels.register(CancelTarget {
            target: target.name.clone(),
            addr,
            pid,
            secret,
            tls: upstream.stream.is_tls(),
            session: info.id,
        })
    });
    let mut greeting = Vec::with_capacity(upstream.greeting.len() + 4);
    greeting.extend(negotiate);
    greeting.push(auth::authentication_ok());
    greeting.extend(upstream.greeting.iter().cloned());
    if let Some(reg) = &cancel {
        let CancelKey { pid, secret } = reg.key();
        greeting.push(status::backend_key_data(pid, secret));
    }
    greeting.push(upstream.ready.clone());
    Ok(Ready {
        info,
        upstream,
        hooks,
        greeting,
        _cancel: cancel,
    })
}

/// Asks the client for its token (`AuthenticationCleartextPassword`) and
/// validates what it sends. A client that leaves instead (libpq with no
/// password: `fe_sendauth: no password supplied`) or sends an empty
/// password has presented no token.
async fn ask_token(
    client: &mut ClientStream,
    validator: &Validator,
) -> Result<TokenOutcome, SessionError> {
    let frame = auth::authentication_cleartext_password();
    client.write_all(frame.as_bytes()).await?;
    client.flush().await?;
    let mut buf = bytes::BytesMut::new();
    // Bounded by the largest token (plus the message's own bytes), not by
    // the proxy's message limit: nothing bigger is worth reading.
    let max = validator.max_token_bytes() + 64;
    let read = tokio::time::timeout(STARTUP_TIMEOUT, read_frame(client, &mut buf, max)).await;
    let frame = match read {
        Err(_) => return Err(SessionError::StartupTimeout(STARTUP_TIMEOUT.as_secs())),
        Ok(Ok(Some(frame))) => frame,
        // Gone: still recorded as a session refused for want of a token.
        Ok(Ok(None) | Err(WireError::UnexpectedEof | WireError::Io(_))) => {
            return Ok(TokenOutcome::Missing);
        }
        Ok(Err(WireError::TooLarge { tag: b'p', .. })) => {
            return Ok(TokenOutcome::Rejected(TokenError::TooLarge));
        }
        Ok(Err(e)) => return Err(e.into()),
    };
    if frame.tag() != b'p' || !buf.is_empty() {
        return Err(WireError::InvalidStartup(format!(
            "expected a PasswordMessage in answer to the password request, got message type {}",
            frame.tag() as char
        ))
        .into());
    }
    let password = auth::parse_password_message(&frame)?;
    if password.trim().is_empty() {
        return Ok(TokenOutcome::Missing);
    }
    Ok(match validator.validate(&password).await {
        Ok(t) => TokenOutcome::Verified(Arc::new(t)),
        Err(e) => TokenOutcome::Rejected(e),
    })
}

async fn relay(
    shared: &Shared,
    ctx: &Context,
    client: &mut ClientStream,
    ready: Ready,
    shutdown: &CancellationToken,
) {
    let Ready {
        info,
        mut upstream,
        mut hooks,
        greeting,
        _cancel,
    } = ready;
    let upstream_tls = upstream.stream.is_tls();
    crate::metrics::session_started(route_name(info.route));
    tracing::info!(
        event = "session_start",
        session_id = info.id,
        route = route_name(info.route),
        peer = %info.peer,
        orig_dst = info.orig_dst.map(|a| a.to_string()),
        target = %info.target,
        upstream = %info.upstream,
        database = %info.database,
        user = %info.user,
        upstream_user = %info.upstream_user,
        application_name = info.application_name.as_deref(),
        client_tls = info.client_tls,
        upstream_tls,
        attestation = %json(&*info.attestation),
        connect_record = info.connect_record.as_ref().map(json),
        token = info.token.to_record().as_ref().map(json),
        "session started"
    );
    let buf = std::mem::take(&mut upstream.buf);
    let mut relay = Relay::new(
        client,
        &mut upstream.stream,
        buf,
        hooks.as_mut(),
        shared.config.proxy.max_message_bytes,
    );
    relay.send_to_client(greeting);
    let (end, traffic) = relay.run(shutdown.cancelled(), &info.target).await;
    crate::metrics::session_ended();
    let summary = SessionSummary {
        reason: end.code(),
        detail: end.to_string(),
        traffic,
        duration_ms: ctx.started.elapsed().as_millis() as u64,
    };
    hooks.end(&summary);
    tracing::info!(
        event = "session_end",
        session_id = info.id,
        target = %info.target,
        user = %info.user,
        reason = summary.reason,
        detail = %summary.detail,
        duration_ms = summary.duration_ms,
        frontend_messages = traffic.frontend_messages,
        frontend_bytes = traffic.frontend_bytes,
        backend_messages = traffic.backend_messages,
        backend_bytes = traffic.backend_bytes,
        "session ended"
    );
}

/// A `CancelRequest`: forward it to the backend its key belongs to. The
/// client gets no answer either way (as from a server).
async fn cancel(shared: &Shared, ctx: &Context, req: &CancelRequest) {
    let Some(secret) = req.secret_key.as_i32() else {
        tracing::info!(event = "cancel_request", session_id = ctx.id, peer = %ctx.peer, forwarded = false, "cancel request with a key the interceptor never issued");
        return;
    };
    let key = CancelKey {
        pid: req.pid,
        secret,
    };
    let Some(to) = shared.cancels.get(key) else {
        tracing::info!(event = "cancel_request", session_id = ctx.id, peer = %ctx.peer, forwarded = false, "cancel request for no live session");
        return;
    };
    if shared.hooks.cancel(to.session) {
        tracing::info!(event = "cancel_request", session_id = ctx.id, peer = %ctx.peer, cancelled_session = to.session, forwarded = false, "cancel request withdrew a statement held for approval");
        return;
    }
    let timeout = Duration::from_millis(shared.config.proxy.connect_timeout_ms);
    match upstream::send_cancel(&to, shared.upstream_tls.get(&to.target), timeout).await {
        Ok(()) => tracing::info!(
            event = "cancel_request",
            session_id = ctx.id,
            peer = %ctx.peer,
            target = %to.target,
            upstream = %to.addr,
            forwarded = true,
            "cancel request forwarded"
        ),
        Err(e) => tracing::warn!(
            event = "cancel_request",
            session_id = ctx.id,
            peer = %ctx.peer,
            target = %to.target,
            forwarded = false,
            error = %e,
            "cancel request could not be forwarded"
        ),
    }
}

/// Tells the client why, then closes.
async fn send_error(client: &mut ClientStream, error: Option<PgError>) {
    if let Some(error) = error {
        let frame = error.to_frame();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = client.write_all(frame.as_bytes()).await;
            let _ = client.flush().await;
            let _ = client.shutdown().await;
        })
        .await;
    }
}

fn refused(shared: &Shared, ctx: &Context, err: &SessionError) {
    let origin = match &ctx.origin {
        Origin::Redirected(r) => Some(r.orig_dst.to_string()),
        Origin::Explicit { .. } | Origin::Unix | Origin::Unknown { .. } => None,
    };
    let sqlstate = err.client_error().map(|e| e.code);
    tracing::warn!(
        event = "session_refused",
        session_id = ctx.id,
        peer = %ctx.peer,
        orig_dst = origin,
        target = ctx.target.as_deref(),
        user = ctx.user.as_deref(),
        database = ctx.database.as_deref(),
        reason = err.code(),
        sqlstate = sqlstate.as_deref(),
        error = %err,
        attestation = ctx.attestation.as_deref().map(json),
        token = ctx.token.as_ref().map(json),
        duration_ms = ctx.started.elapsed().as_millis() as u64,
        "session refused"
    );
    if !ctx.opened {
        crate::metrics::connection_refused(err.code());
        shared.hooks.refused(&crate::audit::ConnectionRefused {
            connection: ctx.id,
            peer: ctx.peer.clone(),
            orig_dst: origin,
            target: ctx.target.clone(),
            user: ctx.user.clone(),
            database: ctx.database.clone(),
            reason: err.code().to_owned(),
            sqlstate: sqlstate.map(|s| s.to_string()),
            error: err.to_string(),
            attestation: ctx
                .attestation
                .as_deref()
                .and_then(|a| serde_json::to_value(a).ok()),
            duration_ms: ctx.started.elapsed().as_millis() as u64,
        });
    }
}

fn route_name(route: Route) -> &'static str {
    match route {
        Route::Redirected => "redirected",
        Route::Explicit => "explicit",
        Route::Unix => "unix",
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
