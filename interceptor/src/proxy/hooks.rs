//! Where policy, masking and audit plug in: one [`SessionHooks`] value per
//! session sees every frontend message before it is forwarded upstream and
//! every backend message before it reaches the client, as raw [`Frame`]s
//! (decode lazily, only what the hook needs).
//!
//! The proxy itself installs [`PassThrough`]. A daemon with policy passes a
//! [`HooksFactory`] to [`super::run_with_hooks`].

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use serde::Serialize;

use crate::{
    ebpf::ConnectRecord,
    identity::Attestation,
    token::{TokenOutcome, Validator},
    wire::{Frame, PgError},
};

/// How a connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Redirected by the kernel programs; the original destination is known.
    Redirected,
    /// Made straight to the proxy's TCP port (`proxy.explicit_target`).
    Explicit,
    /// Made to the proxy's unix socket.
    Unix,
}

/// What the proxy knows about a session when it opens it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Daemon-unique session id.
    pub id: u64,
    /// How the connection arrived.
    pub route: Route,
    /// Client address (`unix` for the unix socket).
    pub peer: String,
    /// Where the client meant to go (redirected connections only).
    pub orig_dst: Option<SocketAddr>,
    /// Configured target name.
    pub target: String,
    /// Upstream address the proxy connects to.
    pub upstream: SocketAddr,
    /// Database from the client's startup packet (default: its user).
    pub database: String,
    /// User from the client's startup packet.
    pub user: String,
    /// Database role the proxy logs in as (from the credential).
    pub upstream_user: String,
    /// `application_name` from the client's startup packet.
    pub application_name: Option<String>,
    /// Every other startup parameter (`options`, `client_encoding`...),
    /// passed on to the upstream as sent.
    pub parameters: BTreeMap<String, String>,
    /// Whether the client connection uses TLS.
    pub client_tls: bool,
    /// The attested calling process.
    #[serde(serialize_with = "serialize_arc")]
    pub attestation: Arc<Attestation>,
    /// What the kernel recorded at connect time (redirected connections).
    pub connect_record: Option<ConnectRecord>,
    /// The workload token presented as the password, if one was asked for.
    #[serde(skip)]
    pub token: TokenOutcome,
}

fn serialize_arc<S: serde::Serializer, T: Serialize>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    T::serialize(v, s)
}

/// What to do with one message.
pub enum Verdict {
    /// Send it on (possibly rewritten).
    Forward(Frame),
    /// Swallow it.
    Drop,
    /// Do not forward; send these frames back to the side it came from
    /// (e.g. an `ErrorResponse` + `ReadyForQuery` for a refused `Query`).
    /// They are queued behind what is already on its way to that side.
    Reply(Vec<Frame>),
    /// End the session with this error to the client.
    Close(PgError),
    /// Decide later (frontend messages only): the relay stops reading the
    /// client until the future yields the verdict, while the upstream keeps
    /// flowing. For work a statement must wait for before it may be sent:
    /// its audit record being durable, a person's approval.
    Await(Deferred),
    /// Like [`Verdict::Await`], after sending these frames to the client
    /// now (e.g. a `NoticeResponse` saying the statement is held for
    /// approval, and under which request id).
    AwaitAfter(Vec<Frame>, Deferred),
}

/// A verdict still being worked out; see [`Verdict::Await`].
pub type Deferred = std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send>>;

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forward(frame) => f.debug_tuple("Forward").field(frame).finish(),
            Self::Drop => f.write_str("Drop"),
            Self::Reply(frames) => f.debug_tuple("Reply").field(frames).finish(),
            Self::Close(e) => f.debug_tuple("Close").field(e).finish(),
            Self::Await(_) => f.write_str("Await(..)"),
            Self::AwaitAfter(frames, _) => f
                .debug_tuple("AwaitAfter")
                .field(frames)
                .finish_non_exhaustive(),
        }
    }
}

/// Per-session interception. Called on the session's task, between reads
/// and writes: a hook must not block.
pub trait SessionHooks: Send {
    /// A message from the client, before it goes upstream.
    fn frontend(&mut self, frame: Frame) -> Verdict {
        Verdict::Forward(frame)
    }

    /// A message from the upstream, before it goes to the client.
    fn backend(&mut self, frame: Frame) -> Verdict {
        Verdict::Forward(frame)
    }

    /// The client closed its connection while a verdict was pending
    /// ([`Verdict::Await`]): what it waited for may be abandoned (e.g. an
    /// approval request withdrawn), which resolves the wait.
    fn client_gone(&mut self) {}

    /// The session ended (after the last message, before `session_end`).
    fn end(&mut self, _summary: &SessionSummary) {}

    /// Awaited after [`HooksFactory::open`], before the upstream connection
    /// is made: an error refuses the session (e.g. its start could not be
    /// recorded durably).
    fn admit(&mut self) -> Option<Admission> {
        None
    }
}

/// See [`SessionHooks::admit`].
pub type Admission =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PgError>> + Send>>;

/// Creates the hooks of each session.
pub trait HooksFactory: Send + Sync + 'static {
    /// Called once the caller is attested and the target and credential are
    /// known, before the upstream connection is made; an error refuses the
    /// session with it.
    fn open(&self, info: &Arc<SessionInfo>) -> Result<Box<dyn SessionHooks>, PgError>;

    /// A `CancelRequest` arrived for session `session` (its
    /// [`SessionInfo::id`]): `true` if the hooks dealt with it (e.g.
    /// withdrew a statement held for approval), so it is not forwarded.
    fn cancel(&self, _session: u64) -> bool {
        false
    }

    /// A connection was refused before [`Self::open`] recorded a session
    /// for it: every refusal at any layer is recorded.
    fn refused(&self, _refusal: &crate::audit::ConnectionRefused) {}

    /// Whether the caller must be asked for a workload token (as its
    /// password) before [`Self::open`]; the validator to check it with.
    fn token_validator(&self, _attestation: &Attestation) -> Option<Arc<Validator>> {
        None
    }
}

/// Forwards everything unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl SessionHooks for PassThrough {}

impl HooksFactory for PassThrough {
    fn open(&self, _info: &Arc<SessionInfo>) -> Result<Box<dyn SessionHooks>, PgError> {
        Ok(Box::new(PassThrough))
    }
}

/// Traffic of a session, counted as received by the proxy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Client -> proxy messages (after startup).
    pub frontend_messages: u64,
    /// Client -> proxy bytes (after startup).
    pub frontend_bytes: u64,
    /// Upstream -> proxy messages (after authentication).
    pub backend_messages: u64,
    /// Upstream -> proxy bytes (after authentication).
    pub backend_bytes: u64,
}

/// How a session ended, for hooks and the `session_end` event.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    /// Short machine-readable reason, see [`super::relay::EndReason::code`].
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// Traffic both ways.
    pub traffic: Traffic,
    /// Session duration in milliseconds.
    pub duration_ms: u64,
}
