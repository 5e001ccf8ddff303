//! The upstream side: connect (bounded by `proxy.connect_timeout_ms`), TLS
//! per target, `StartupMessage` as the credential's role, and
//! authentication with the password only the daemon holds (trust,
//! cleartext, md5, SCRAM-SHA-256). Upstream authentication requests never
//! reach the client.

use std::{io, net::SocketAddr, time::Duration};

use bytes::BytesMut;
use pgwire::messages::startup::Authentication;
use postgres_protocol::authentication::{
    md5_hash,
    sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    cancel::CancelTarget, credentials::Credential, stream::UpstreamStream,
    tls::UpstreamTlsConnector,
};
use crate::wire::{
    Frame, PgError, WireError,
    auth::{self, AuthRequest},
    error_response::{error_code, error_field, error_message, parse_error_fields},
    read_frame, sqlstate, startup, status, tag,
};

/// Why the upstream session could not be established.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed (refused, unreachable...).
    #[error("could not connect to target `{target}` at {addr}: {source}")]
    Connect {
        /// Target name.
        target: String,
        /// Upstream address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Connect, TLS and authentication took longer than `connect_timeout_ms`.
    #[error("timed out after {ms} ms connecting to target `{target}` at {addr}")]
    Timeout {
        /// Target name.
        target: String,
        /// Upstream address.
        addr: SocketAddr,
        /// The timeout.
        ms: u64,
    },
    /// The server answered `N` to `SSLRequest` but the target requires TLS.
    #[error(
        "target `{target}` at {addr} does not accept TLS, but the target is configured with tls = \"{mode}\""
    )]
    TlsRefused {
        /// Target name.
        target: String,
        /// Upstream address.
        addr: SocketAddr,
        /// Configured mode.
        mode: &'static str,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name...).
    #[error("TLS handshake with target `{target}` at {addr} failed: {source}")]
    Tls {
        /// Target name.
        target: String,
        /// Upstream address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The server sent an `ErrorResponse` during startup or authentication.
    #[error("target `{target}` refused the session for role `{user}`: {message}")]
    Rejected {
        /// Target name.
        target: String,
        /// Role the proxy logged in as.
        user: String,
        /// Upstream SQLSTATE.
        code: String,
        /// Upstream message.
        message: String,
        /// Upstream detail, if any.
        detail: Option<String>,
        /// Whether it happened before authentication completed.
        during_auth: bool,
    },
    /// The server asked for an authentication method the proxy cannot do.
    #[error(
        "target `{target}` asked for {method} authentication, which the interceptor does not support"
    )]
    UnsupportedAuth {
        /// Target name.
        target: String,
        /// The method.
        method: String,
    },
    /// The server asked for a password and the credential holds none.
    #[error(
        "target `{target}` asked for a password for role `{user}`, but the interceptor holds none"
    )]
    NoPassword {
        /// Target name.
        target: String,
        /// Role.
        user: String,
    },
    /// The SCRAM exchange failed (including a server that could not prove
    /// it knows the password).
    #[error("SCRAM authentication with target `{target}` failed: {reason}")]
    Scram {
        /// Target name.
        target: String,
        /// Why.
        reason: String,
    },
    /// The server broke the protocol.
    #[error("target `{target}` sent an unexpected or malformed message: {source}")]
    Protocol {
        /// Target name.
        target: String,
        /// What was wrong.
        source: WireError,
    },
    /// The server closed the connection during startup.
    #[error("target `{target}` at {addr} closed the connection during startup")]
    Closed {
        /// Target name.
        target: String,
        /// Upstream address.
        addr: SocketAddr,
    },
}

impl UpstreamError {
    /// What the client is told.
    pub fn to_pg_error(&self) -> PgError {
        let msg = self.to_string();
        match self {
            Self::Rejected { code, detail, during_auth, .. } => {
                let e = PgError::fatal(code, msg);
                let e = match detail {
                    Some(d) => e.with_detail(d.clone()),
                    None => e,
                };
                if *during_auth {
                    e.with_hint("the interceptor logs in with the credential it holds for this target; check [[credential]] in its credentials file")
                } else {
                    e
                }
            }
            Self::NoPassword { .. } => PgError::fatal(sqlstate::INVALID_PASSWORD, msg)
                .with_hint("set password or password_env for this credential in the interceptor's credentials file"),
            Self::Scram { .. } => PgError::fatal(sqlstate::INVALID_PASSWORD, msg),
            Self::UnsupportedAuth { .. } => PgError::fatal(sqlstate::FEATURE_NOT_SUPPORTED, msg),
            Self::Protocol { .. } | Self::Closed { .. } => PgError::fatal(sqlstate::CONNECTION_FAILURE, msg),
            Self::Connect { .. } | Self::Timeout { .. } | Self::TlsRefused { .. } | Self::Tls { .. } => {
                PgError::fatal(sqlstate::UNABLE_TO_CONNECT, msg)
            }
        }
    }
}

/// The name of a target's `tls` mode, for errors.
pub fn tls_mode_name(tls: crate::config::UpstreamTls) -> &'static str {
    match tls {
        crate::config::UpstreamTls::Disable => "disable",
        crate::config::UpstreamTls::Require => "require",
        crate::config::UpstreamTls::VerifyFull => "verify-full",
    }
}

/// What to connect to, as whom.
pub struct UpstreamRequest<'a> {
    /// Target name.
    pub target: &'a str,
    /// Upstream address.
    pub addr: SocketAddr,
    /// TLS settings, `None` for plain TCP.
    pub tls: Option<&'a UpstreamTlsConnector>,
    /// `tls` mode name, for errors.
    pub tls_mode: &'static str,
    /// The credential to log in with.
    pub credential: &'a Credential,
    /// Database to open.
    pub database: &'a str,
    /// Other startup parameters passed through from the client.
    pub parameters: Vec<(&'a str, &'a str)>,
    /// Bound of every message read.
    pub max_message_bytes: usize,
}

/// An authenticated upstream session, at its first `ReadyForQuery`.
pub struct Upstream {
    /// The connection.
    pub stream: UpstreamStream,
    /// Bytes read past `ReadyForQuery`, handed to the relay.
    pub buf: BytesMut,
    /// The server's `BackendKeyData` (pid, secret), if it sent one.
    pub backend_key: Option<(i32, i32)>,
    /// `ParameterStatus` and `NoticeResponse` frames for the client, in order.
    pub greeting: Vec<Frame>,
    /// The `ReadyForQuery` frame.
    pub ready: Frame,
}

/// Connects, negotiates TLS and authenticates, all within `timeout`.
pub async fn establish(
    req: &UpstreamRequest<'_>,
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    let ms = timeout.as_millis() as u64;
    match tokio::time::timeout(timeout, establish_inner(req)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout {
            target: req.target.to_owned(),
            addr: req.addr,
            ms,
        }),
    }
}

async fn establish_inner(req: &UpstreamRequest<'_>) -> Result<Upstream, UpstreamError> {
    let mut stream = connect(req.target, req.addr, req.tls, req.tls_mode).await?;
    let protocol = |source| UpstreamError::Protocol {
        target: req.target.to_owned(),
        source,
    };
    let user = req.credential.user.as_str();
    let mut params = vec![("user", user), ("database", req.database)];
    params.extend(req.parameters.iter().copied());
    let packet = startup::startup_message(params).map_err(protocol)?;
    write(&mut stream, &packet, req).await?;

    let mut buf = BytesMut::with_capacity(1024);
    authenticate(&mut stream, &mut buf, req).await?;

    let mut greeting = Vec::new();
    let mut backend_key = None;
    loop {
        let frame = next_frame(&mut stream, &mut buf, req).await?;
        match frame.tag() {
            tag::backend::PARAMETER_STATUS | tag::backend::NOTICE_RESPONSE => greeting.push(frame),
            tag::backend::BACKEND_KEY_DATA => {
                backend_key = Some(status::parse_backend_key_data(&frame).map_err(protocol)?);
            }
            tag::backend::READY_FOR_QUERY => {
                return Ok(Upstream {
                    stream,
                    buf,
                    backend_key,
                    greeting,
                    ready: frame,
                });
            }
            tag::backend::ERROR_RESPONSE => return Err(rejected(&frame, req, false)),
            t => {
                return Err(protocol(WireError::malformed(
                    t,
                    "unexpected message after authentication",
                )));
            }
        }
    }
}

/// Answers the server's authentication requests until `AuthenticationOk`.
async fn authenticate(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    req: &UpstreamRequest<'_>,
) -> Result<(), UpstreamError> {
    let target = || req.target.to_owned();
    let protocol = |source| UpstreamError::Protocol {
        target: target(),
        source,
    };
    let user = req.credential.user.as_str();
    let password = || {
        req.credential
            .password
            .as_ref()
            .map(super::credentials::Secret::expose)
            .ok_or_else(|| UpstreamError::NoPassword {
                target: target(),
                user: user.to_owned(),
            })
    };
    let scram_err = |e: io::Error| UpstreamError::Scram {
        target: target(),
        reason: e.to_string(),
    };
    let mut scram: Option<ScramSha256> = None;
    let mut scram_done = false;
    loop {
        let frame = next_frame(stream, buf, req).await?;
        match frame.tag() {
            tag::backend::AUTHENTICATION => {}
            tag::backend::ERROR_RESPONSE => return Err(rejected(&frame, req, true)),
            // Protocol 3.0 without options is what the proxy asks for;
            // a server may still answer with it: nothing to act on.
            tag::backend::NEGOTIATE_PROTOCOL_VERSION | tag::backend::NOTICE_RESPONSE => continue,
            t => {
                return Err(protocol(WireError::malformed(
                    t,
                    "unexpected message during authentication",
                )));
            }
        }
        let request = match auth::parse_authentication(&frame).map_err(protocol)? {
            AuthRequest::Known(r) => r,
            AuthRequest::Unsupported { name, .. } => {
                return Err(UpstreamError::UnsupportedAuth {
                    target: target(),
                    method: name.to_owned(),
                });
            }
        };
        let answer = match request {
            Authentication::Ok => {
                if scram.is_some() && !scram_done {
                    // The server skipped SASLFinal: it never proved it knows
                    // the password (libpq refuses this too).
                    return Err(UpstreamError::Scram {
                        target: target(),
                        reason: "server completed authentication without SASL final message".into(),
                    });
                }
                return Ok(());
            }
            Authentication::CleartextPassword => auth::password_message(password()?),
            Authentication::MD5Password(salt) => {
                let salt: [u8; 4] = salt.try_into().map_err(|_| {
                    protocol(WireError::malformed(
                        tag::backend::AUTHENTICATION,
                        "md5 salt",
                    ))
                })?;
                auth::password_message(&md5_hash(user.as_bytes(), password()?.as_bytes(), salt))
            }
            Authentication::SASL(mechanisms) => {
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(UpstreamError::UnsupportedAuth {
                        target: target(),
                        method: format!("SASL ({})", mechanisms.join(", ")),
                    });
                }
                // No channel binding: "n" (client does not support it) is
                // accepted by servers that offer SCRAM-SHA-256-PLUS too.
                let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                let msg = auth::sasl_initial_response(SCRAM_SHA_256, s.message());
                scram = Some(s);
                msg
            }
            Authentication::SASLContinue(data) => {
                let s = scram.take().ok_or_else(|| {
                    protocol(WireError::malformed(
                        tag::backend::AUTHENTICATION,
                        "SASLContinue before SASL",
                    ))
                })?;
                // The salted password is 4096+ rounds of PBKDF2: milliseconds
                // of CPU, kept off the threads that relay other sessions.
                let s = tokio::task::spawn_blocking(move || {
                    let mut s = s;
                    s.update(&data).map(|()| s)
                })
                .await
                .map_err(|e| scram_err(io::Error::other(e)))?
                .map_err(scram_err)?;
                let msg = auth::sasl_response(s.message());
                scram = Some(s);
                msg
            }
            Authentication::SASLFinal(data) => {
                let s = scram.as_mut().ok_or_else(|| {
                    protocol(WireError::malformed(
                        tag::backend::AUTHENTICATION,
                        "SASLFinal before SASL",
                    ))
                })?;
                s.finish(&data).map_err(scram_err)?;
                scram_done = true;
                continue;
            }
            other => {
                return Err(UpstreamError::UnsupportedAuth {
                    target: target(),
                    method: format!("{other:?}"),
                });
            }
        };
        write(stream, answer.map_err(protocol)?.as_bytes(), req).await?;
    }
}

fn rejected(frame: &Frame, req: &UpstreamRequest<'_>, during_auth: bool) -> UpstreamError {
    match parse_error_fields(frame) {
        Ok(e) => UpstreamError::Rejected {
            target: req.target.to_owned(),
            user: req.credential.user.clone(),
            code: error_code(&e)
                .unwrap_or(sqlstate::CONNECTION_FAILURE)
                .to_owned(),
            message: error_message(&e).unwrap_or("(no message)").to_owned(),
            detail: error_field(&e, b'D').map(str::to_owned),
            during_auth,
        },
        Err(source) => UpstreamError::Protocol {
            target: req.target.to_owned(),
            source,
        },
    }
}

async fn next_frame(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    req: &UpstreamRequest<'_>,
) -> Result<Frame, UpstreamError> {
    match read_frame(stream, buf, req.max_message_bytes).await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) | Err(WireError::UnexpectedEof) => Err(UpstreamError::Closed {
            target: req.target.to_owned(),
            addr: req.addr,
        }),
        Err(WireError::Io(source)) => Err(UpstreamError::Connect {
            target: req.target.to_owned(),
            addr: req.addr,
            source,
        }),
        Err(source) => Err(UpstreamError::Protocol {
            target: req.target.to_owned(),
            source,
        }),
    }
}

async fn write(
    stream: &mut UpstreamStream,
    data: &[u8],
    req: &UpstreamRequest<'_>,
) -> Result<(), UpstreamError> {
    let io_err = |source| UpstreamError::Connect {
        target: req.target.to_owned(),
        addr: req.addr,
        source,
    };
    stream.write_all(data).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)
}

/// TCP connect plus, when `tls` is set, `SSLRequest` and the handshake.
async fn connect(
    target: &str,
    addr: SocketAddr,
    tls: Option<&UpstreamTlsConnector>,
    tls_mode: &'static str,
) -> Result<UpstreamStream, UpstreamError> {
    let io_err = |source| UpstreamError::Connect {
        target: target.to_owned(),
        addr,
        source,
    };
    let mut tcp = TcpStream::connect(addr).await.map_err(io_err)?;
    // Small request/response messages: do not wait for Nagle.
    tcp.set_nodelay(true).map_err(io_err)?;
    super::keepalive(&tcp);
    let Some(tls) = tls else {
        return Ok(UpstreamStream::Tcp(tcp));
    };
    tcp.write_all(&startup::ssl_request())
        .await
        .map_err(io_err)?;
    // Exactly one byte: anything sent after 'S' must be TLS (CVE-2021-23222).
    let mut answer = [0_u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io_err)?;
    if answer[0] != b'S' {
        return Err(UpstreamError::TlsRefused {
            target: target.to_owned(),
            addr,
            mode: tls_mode,
        });
    }
    let stream = tls
        .connector()
        .connect(tls.server_name(addr), tcp)
        .await
        .map_err(|source| UpstreamError::Tls {
            target: target.to_owned(),
            addr,
            source,
        })?;
    Ok(UpstreamStream::Tls(Box::new(stream)))
}

/// Sends a `CancelRequest` for `to` on a new connection (TLS when the
/// session's connection uses it) and waits for the server to close it,
/// which it does once the request is handled.
pub async fn send_cancel(
    to: &CancelTarget,
    tls: Option<&UpstreamTlsConnector>,
    timeout: Duration,
) -> Result<(), UpstreamError> {
    let work = async {
        let tls = if to.tls { tls } else { None };
        let mut stream = connect(&to.target, to.addr, tls, "require").await?;
        let io_err = |source| UpstreamError::Connect {
            target: to.target.clone(),
            addr: to.addr,
            source,
        };
        stream
            .write_all(&startup::cancel_request(to.pid, to.secret))
            .await
            .map_err(io_err)?;
        stream.flush().await.map_err(io_err)?;
        let mut sink = [0_u8; 64];
        while stream.read(&mut sink).await.map_err(io_err)? > 0 {}
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::Timeout {
                target: to.target.clone(),
                addr: to.addr,
                ms: timeout.as_millis() as u64,
            })
        })
}
