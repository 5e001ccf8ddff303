//! The message pump of an established session: client <-> upstream, one
//! frame at a time through the session's [`SessionHooks`], both directions
//! polled by one task.
//!
//! - Reads go into a per-direction buffer; every complete frame is split off
//!   (zero-copy `Bytes`), shown to the hook, and queued for the other side.
//!   A direction keeps reading while its source has data ready, and writes
//!   when the source has nothing more buffered: one write per burst, not per
//!   `DataRow`.
//! - Both directions progress independently (no deadlock when a client
//!   pipelines while the server streams results), with backpressure: a
//!   direction stops reading while its outbound queue is above
//!   [`HIGH_WATER`].
//! - Buffers are small while idle: read buffers are released after a large
//!   message, outbound buffers once drained, so an idle session holds about
//!   two 8 KiB read buffers.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;

use super::hooks::{SessionHooks, Traffic, Verdict};
use crate::wire::{
    Frame, PgError, WireError, frame::frame_len, split_frame, sqlstate, status, tag,
};

/// Read buffer granule.
const READ_CHUNK: usize = 8 * 1024;
/// A read buffer larger than this is released once empty.
const READ_KEEP: usize = 32 * 1024;
/// Outbound bytes above which a direction stops reading.
const HIGH_WATER: usize = 256 * 1024;
/// Frames at least this big are queued as they are instead of copied.
const BIG_FRAME: usize = 16 * 1024;
/// An outbound buffer larger than this is released once drained.
const OUT_KEEP: usize = 16 * 1024;
/// How long the final writes of an ending session may take.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session's relay stopped.
#[derive(Debug)]
pub enum EndReason {
    /// The client sent `Terminate`.
    ClientTerminate,
    /// The client closed the connection without `Terminate`.
    ClientClosed,
    /// The upstream closed the connection.
    UpstreamClosed,
    /// A client message exceeded `proxy.max_message_bytes`.
    ClientTooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// An upstream message exceeded `proxy.max_message_bytes`.
    UpstreamTooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The client broke the protocol.
    ClientProtocol(String),
    /// The upstream broke the protocol.
    UpstreamProtocol(String),
    /// Reading from or writing to the client failed.
    ClientIo(io::Error),
    /// Reading from or writing to the upstream failed.
    UpstreamIo(io::Error),
    /// A hook ended the session.
    Hook(PgError),
    /// The daemon is shutting down.
    Shutdown,
}

impl EndReason {
    /// Short code used as `reason` in `session_end`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ClientTerminate => "client_terminate",
            Self::ClientClosed => "client_closed",
            Self::UpstreamClosed => "upstream_closed",
            Self::ClientTooLarge { .. } => "client_message_too_large",
            Self::UpstreamTooLarge { .. } => "upstream_message_too_large",
            Self::ClientProtocol(_) => "client_protocol_violation",
            Self::UpstreamProtocol(_) => "upstream_protocol_violation",
            Self::ClientIo(_) => "client_io_error",
            Self::UpstreamIo(_) => "upstream_io_error",
            Self::Hook(_) => "refused_by_hook",
            Self::Shutdown => "shutdown",
        }
    }

    /// What the client is told before the connection is closed, if anything.
    pub fn client_error(&self, target: &str) -> Option<PgError> {
        Some(match self {
            Self::ClientTooLarge { len, max } => PgError::fatal(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("message of {len} bytes exceeds the interceptor's limit of {max} bytes"),
            )
            .with_hint("raise proxy.max_message_bytes in the interceptor configuration, or send smaller messages"),
            Self::UpstreamTooLarge { len, max } => PgError::fatal(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("target `{target}` sent a message of {len} bytes, over the interceptor's limit of {max} bytes"),
            )
            .with_hint("raise proxy.max_message_bytes in the interceptor configuration"),
            Self::ClientProtocol(what) => PgError::fatal(sqlstate::PROTOCOL_VIOLATION, what.clone()),
            Self::UpstreamProtocol(what) => PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("target `{target}` broke the protocol: {what}"),
            ),
            Self::UpstreamIo(e) => PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("connection to target `{target}` failed: {e}"),
            ),
            Self::Hook(e) => e.clone(),
            Self::Shutdown => PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because the interceptor is shutting down",
            ),
            Self::ClientTerminate | Self::ClientClosed | Self::UpstreamClosed | Self::ClientIo(_) => return None,
        })
    }

    /// Whether the client is gone or still owes the rest of an oversized
    /// message (which is then drained, so the client reads the error
    /// instead of a reset).
    fn client_unread(&self) -> bool {
        matches!(self, Self::ClientTooLarge { .. } | Self::ClientProtocol(_))
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientTerminate => f.write_str("client sent Terminate"),
            Self::ClientClosed => f.write_str("client closed the connection"),
            Self::UpstreamClosed => f.write_str("upstream closed the connection"),
            Self::ClientTooLarge { len, max } => {
                write!(f, "client message of {len} bytes over the limit of {max}")
            }
            Self::UpstreamTooLarge { len, max } => {
                write!(f, "upstream message of {len} bytes over the limit of {max}")
            }
            Self::ClientProtocol(w) => write!(f, "client protocol violation: {w}"),
            Self::UpstreamProtocol(w) => write!(f, "upstream protocol violation: {w}"),
            Self::ClientIo(e) => write!(f, "client i/o error: {e}"),
            Self::UpstreamIo(e) => write!(f, "upstream i/o error: {e}"),
            Self::Hook(e) => write!(f, "refused: {e}"),
            Self::Shutdown => f.write_str("daemon shutdown"),
        }
    }
}

/// Whole frames waiting to be written to one side.
#[derive(Default)]
struct Outbox {
    /// Big frames (and the small ones coalesced before them), in order.
    queue: VecDeque<Bytes>,
    /// Small frames coalesced after everything in `queue`.
    tail: BytesMut,
    /// Bytes in `queue` and `tail`.
    len: usize,
    /// Something was written since the last flush (TLS buffers records).
    needs_flush: bool,
}

impl Outbox {
    fn push(&mut self, frame: Frame) {
        let bytes = frame.into_bytes();
        self.len += bytes.len();
        if bytes.len() >= BIG_FRAME {
            if !self.tail.is_empty() {
                self.queue.push_back(self.tail.split().freeze());
            }
            self.queue.push_back(bytes);
        } else {
            self.tail.extend_from_slice(&bytes);
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes everything, then flushes. `Ready(Ok(true))` if it wrote anything.
    fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        while self.len > 0 {
            let chunk: &[u8] = match self.queue.front() {
                Some(front) => front,
                None => &self.tail,
            };
            let n = match Pin::new(&mut *w).poll_write(cx, chunk) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            };
            wrote = true;
            self.needs_flush = true;
            self.len -= n;
            match self.queue.front_mut() {
                Some(front) => {
                    front.advance(n);
                    if front.is_empty() {
                        self.queue.pop_front();
                    }
                }
                None => self.tail.advance(n),
            }
        }
        if self.tail.capacity() > OUT_KEEP {
            self.tail = BytesMut::new();
        }
        if self.needs_flush {
            match Pin::new(&mut *w).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(wrote))
    }
}

/// One direction's reading state.
#[derive(Default)]
struct Inbound {
    /// Bytes read, not yet split into frames (at most a partial frame
    /// between polls).
    buf: BytesMut,
    /// The source reached end of stream.
    eof: bool,
    /// Stop reading (Terminate seen, or the session is ending).
    stopped: bool,
}

/// Which way a frame travels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Client -> upstream.
    Frontend,
    /// Upstream -> client.
    Backend,
}

/// The relay of one session.
pub struct Relay<'a, C, U> {
    client: &'a mut C,
    upstream: &'a mut U,
    hooks: &'a mut dyn SessionHooks,
    max: usize,
    from_client: Inbound,
    from_upstream: Inbound,
    to_client: Outbox,
    to_upstream: Outbox,
    traffic: Traffic,
    /// The client sent `Terminate` (forwarded; end once written).
    terminated: bool,
    /// A frontend verdict being worked out ([`Verdict::Await`]): until it is
    /// ready no further client frame is processed (order is kept) and the
    /// client is not read, while the upstream side keeps flowing.
    deferred: Option<super::hooks::Deferred>,
}

impl<'a, C, U> Relay<'a, C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// A relay over an authenticated upstream; `upstream_buf` holds upstream
    /// bytes already read past `ReadyForQuery`.
    pub fn new(
        client: &'a mut C,
        upstream: &'a mut U,
        upstream_buf: BytesMut,
        hooks: &'a mut dyn SessionHooks,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            client,
            upstream,
            hooks,
            max: max_message_bytes,
            from_client: Inbound::default(),
            from_upstream: Inbound {
                buf: upstream_buf,
                ..Inbound::default()
            },
            to_client: Outbox::default(),
            to_upstream: Outbox::default(),
            traffic: Traffic::default(),
            terminated: false,
            deferred: None,
        }
    }

    /// Queues frames for the client ahead of the relay (the greeting).
    pub fn send_to_client(&mut self, frames: impl IntoIterator<Item = Frame>) {
        for f in frames {
            self.to_client.push(f);
        }
    }

    /// Runs until the session ends or `shutdown` completes; then writes what
    /// is owed (queued frames, the error for the client, `Terminate` for
    /// the upstream) within [`FINISH_TIMEOUT`] and closes both sides.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        target: &str,
    ) -> (EndReason, Traffic) {
        // Frames already in the upstream buffer (e.g. a NOTIFY that arrived
        // with ReadyForQuery) go through the hook like any other.
        let mut end = self.process(Dir::Backend).err();
        if end.is_none() {
            tokio::pin!(shutdown);
            end = Some(tokio::select! {
                end = std::future::poll_fn(|cx| self.poll_pump(cx)) => end,
                () = &mut shutdown => EndReason::Shutdown,
            });
        }
        let end = end.unwrap_or(EndReason::Shutdown);
        let error = end.client_error(target);
        let drain_client = end.client_unread();
        let _ = tokio::time::timeout(FINISH_TIMEOUT, self.finish(error, drain_client, &end)).await;
        (end, self.traffic)
    }

    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<EndReason> {
        loop {
            let mut progress = false;
            if let Some(deferred) = self.deferred.as_mut()
                && let Poll::Ready(verdict) = deferred.as_mut().poll(cx)
            {
                self.deferred = None;
                progress = true;
                if let Err(end) = self.apply(Dir::Frontend, verdict) {
                    return Poll::Ready(end);
                }
                // Frames that arrived while it was pending.
                if let Err(end) = self.process(Dir::Frontend) {
                    return Poll::Ready(end);
                }
            }
            // Client -> upstream.
            match self.poll_read_side(Dir::Frontend, cx) {
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Ready(Ok(p)) => progress |= p,
                Poll::Pending => {}
            }
            match self.to_upstream.poll_drain(self.upstream, cx) {
                Poll::Ready(Ok(p)) => progress |= p,
                Poll::Ready(Err(e)) => return Poll::Ready(EndReason::UpstreamIo(e)),
                Poll::Pending => {}
            }
            // Upstream -> client.
            match self.poll_read_side(Dir::Backend, cx) {
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Ready(Ok(p)) => progress |= p,
                Poll::Pending => {}
            }
            match self.to_client.poll_drain(self.client, cx) {
                Poll::Ready(Ok(p)) => progress |= p,
                Poll::Ready(Err(e)) => return Poll::Ready(EndReason::ClientIo(e)),
                Poll::Pending => {}
            }
            // Ends once what the closing side sent is delivered.
            let up_done = self.to_upstream.is_empty() && !self.to_upstream.needs_flush;
            if self.terminated && up_done {
                return Poll::Ready(EndReason::ClientTerminate);
            }
            if self.from_client.eof && up_done && self.deferred.is_none() {
                return Poll::Ready(EndReason::ClientClosed);
            }
            if self.from_upstream.eof && self.to_client.is_empty() && !self.to_client.needs_flush {
                return Poll::Ready(EndReason::UpstreamClosed);
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Reads from one side while it has data and its outbox has room,
    /// handing every complete frame to the hook. `Ready(Ok(progress))`.
    fn poll_read_side(&mut self, dir: Dir, cx: &mut Context<'_>) -> Poll<Result<bool, EndReason>> {
        let mut progress = false;
        loop {
            let (inbound, outbox_len) = match dir {
                Dir::Frontend => (&mut self.from_client, self.to_upstream.len),
                Dir::Backend => (&mut self.from_upstream, self.to_client.len),
            };
            // While a verdict is pending the client is still read (a little),
            // so that its going away is noticed: a statement held for a
            // person's approval may wait for minutes.
            let waiting =
                dir == Dir::Frontend && self.deferred.is_some() && inbound.buf.len() >= READ_CHUNK;
            if inbound.eof || inbound.stopped || outbox_len >= HIGH_WATER || waiting {
                return Poll::Ready(Ok(progress));
            }
            reserve_for_next(&mut inbound.buf, self.max);
            let read = match dir {
                Dir::Frontend => poll_read_buf(Pin::new(&mut *self.client), cx, &mut inbound.buf),
                Dir::Backend => poll_read_buf(Pin::new(&mut *self.upstream), cx, &mut inbound.buf),
            };
            match read {
                Poll::Pending if progress => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    inbound.eof = true;
                    if dir == Dir::Frontend && self.deferred.is_some() {
                        self.hooks.client_gone();
                    }
                    return Poll::Ready(Ok(true));
                }
                Poll::Ready(Ok(_)) => {
                    progress = true;
                    self.process(dir)?;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(match dir {
                        Dir::Frontend => EndReason::ClientIo(e),
                        Dir::Backend => EndReason::UpstreamIo(e),
                    }));
                }
            }
        }
    }

    /// Splits the complete frames off one side's buffer and applies the hook.
    fn process(&mut self, dir: Dir) -> Result<(), EndReason> {
        loop {
            let inbound = match dir {
                Dir::Frontend => &mut self.from_client,
                Dir::Backend => &mut self.from_upstream,
            };
            if inbound.stopped || (dir == Dir::Frontend && self.deferred.is_some()) {
                return Ok(());
            }
            let frame = match split_frame(&mut inbound.buf, self.max) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if inbound.buf.is_empty() && inbound.buf.capacity() > READ_KEEP {
                        inbound.buf = BytesMut::new();
                    }
                    return Ok(());
                }
                Err(e) => return Err(framing_error(dir, e)),
            };
            let len = frame.len() as u64;
            let verdict = match dir {
                Dir::Frontend => {
                    self.traffic.frontend_messages += 1;
                    self.traffic.frontend_bytes += len;
                    match frame.tag() {
                        // The proxy authenticated the client; a password
                        // now is a protocol violation, and is never
                        // forwarded (nor logged).
                        tag::frontend::PASSWORD => {
                            return Err(EndReason::ClientProtocol(
                                "unexpected password message: the interceptor authenticates clients by workload identity"
                                    .into(),
                            ));
                        }
                        tag::frontend::TERMINATE => {
                            self.terminated = true;
                            self.from_client.stopped = true;
                        }
                        _ => {}
                    }
                    self.hooks.frontend(frame)
                }
                Dir::Backend => {
                    self.traffic.backend_messages += 1;
                    self.traffic.backend_bytes += len;
                    self.hooks.backend(frame)
                }
            };
            self.apply(dir, verdict)?;
        }
    }

    /// Carries out a hook's verdict on a frame that travelled `dir`.
    fn apply(&mut self, dir: Dir, verdict: Verdict) -> Result<(), EndReason> {
        let (forward, back) = match dir {
            Dir::Frontend => (&mut self.to_upstream, &mut self.to_client),
            Dir::Backend => (&mut self.to_client, &mut self.to_upstream),
        };
        match verdict {
            Verdict::Forward(frame) => forward.push(frame),
            Verdict::Drop => {}
            Verdict::Reply(frames) => frames.into_iter().for_each(|f| back.push(f)),
            Verdict::Close(error) => return Err(EndReason::Hook(error)),
            Verdict::Await(deferred) if dir == Dir::Frontend => self.deferred = Some(deferred),
            Verdict::AwaitAfter(frames, deferred) if dir == Dir::Frontend => {
                for f in frames {
                    back.push(f);
                }
                self.deferred = Some(deferred);
            }
            Verdict::Await(_) | Verdict::AwaitAfter(..) => {
                return Err(EndReason::Hook(PgError::fatal(
                    crate::wire::sqlstate::INTERNAL_ERROR,
                    "interceptor: internal error: a backend message cannot wait",
                )));
            }
        }
        Ok(())
    }

    /// Delivers what is owed and closes both sides.
    async fn finish(&mut self, error: Option<PgError>, drain_client: bool, end: &EndReason) {
        if let Some(error) = error {
            self.to_client.push(error.to_frame());
        }
        let upstream_alive = !matches!(end, EndReason::UpstreamClosed | EndReason::UpstreamIo(_));
        if upstream_alive && !self.terminated {
            // Polite goodbye so the server logs a clean disconnect.
            self.to_upstream.push(status::terminate());
        }
        if !matches!(end, EndReason::ClientIo(_) | EndReason::ClientClosed) {
            let _ = std::future::poll_fn(|cx| self.to_client.poll_drain(self.client, cx)).await;
            let _ = self.client.shutdown().await;
        }
        if upstream_alive {
            let _ = std::future::poll_fn(|cx| self.to_upstream.poll_drain(self.upstream, cx)).await;
            let _ = self.upstream.shutdown().await;
        }
        if drain_client {
            // Read (and discard) what the client is still sending, so that
            // closing does not reset the connection before it has read the
            // error. Bounded by FINISH_TIMEOUT.
            let mut scratch = [0_u8; 8192];
            while matches!(self.client.read(&mut scratch).await, Ok(n) if n > 0) {}
        }
    }
}

/// Makes room for the next read: the rest of a partially buffered frame
/// (its length is known and bounded by `max`), or a read granule.
fn reserve_for_next(buf: &mut BytesMut, max: usize) {
    let rest_of_frame = match frame_len(buf, max) {
        Ok(Some(total)) if total > buf.len() => total - buf.len(),
        _ => 0,
    };
    if buf.capacity() - buf.len() < rest_of_frame.max(1024) {
        buf.reserve(rest_of_frame.max(READ_CHUNK));
    }
}

fn framing_error(dir: Dir, e: WireError) -> EndReason {
    match (dir, e) {
        (Dir::Frontend, WireError::TooLarge { len, max, .. }) => {
            EndReason::ClientTooLarge { len, max }
        }
        (Dir::Backend, WireError::TooLarge { len, max, .. }) => {
            EndReason::UpstreamTooLarge { len, max }
        }
        (Dir::Frontend, e) => EndReason::ClientProtocol(e.to_string()),
        (Dir::Backend, e) => EndReason::UpstreamProtocol(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;
    use crate::proxy::hooks::PassThrough;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        Frame::new(tag, body).as_bytes().to_vec()
    }

    /// A pass-through relay over in-memory pipes: (client end, upstream
    /// end, the relay's task), with a 4096-byte message limit.
    fn pass_through_relay() -> (
        tokio::io::DuplexStream,
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<(EndReason, Traffic)>,
    ) {
        let (client_app, mut client_proxy) = duplex(1 << 16);
        let (mut upstream_proxy, upstream_db) = duplex(1 << 16);
        let relay = tokio::spawn(async move {
            let mut hooks = PassThrough;
            Relay::new(
                &mut client_proxy,
                &mut upstream_proxy,
                BytesMut::new(),
                &mut hooks,
                4096,
            )
            .run(std::future::pending(), "db")
            .await
        });
        (client_app, upstream_db, relay)
    }

    #[tokio::test]
    async fn forwards_both_ways_and_ends_on_terminate() {
        let (mut client_app, mut client_proxy) = duplex(1 << 16);
        let (mut upstream_proxy, mut upstream_db) = duplex(1 << 16);
        let relay = tokio::spawn(async move {
            let mut hooks = PassThrough;
            Relay::new(
                &mut client_proxy,
                &mut upstream_proxy,
                BytesMut::new(),
                &mut hooks,
                1 << 20,
            )
            .run(std::future::pending(), "db")
            .await
        });
        let q = frame(b'Q', b"select 1\0");
        client_app.write_all(&q).await.unwrap();
        let mut got = vec![0; q.len()];
        upstream_db.read_exact(&mut got).await.unwrap();
        assert_eq!(got, q);
        let mut answer = frame(b'D', &vec![1; 40_000]);
        answer.extend(frame(b'Z', b"I"));
        upstream_db.write_all(&answer).await.unwrap();
        let mut got = vec![0; answer.len()];
        client_app.read_exact(&mut got).await.unwrap();
        assert_eq!(got, answer);
        client_app.write_all(&frame(b'X', b"")).await.unwrap();
        let (end, traffic) = relay.await.unwrap();
        assert!(matches!(end, EndReason::ClientTerminate), "{end}");
        assert_eq!(
            (traffic.frontend_messages, traffic.backend_messages),
            (2, 2)
        );
        assert_eq!(traffic.backend_bytes, answer.len() as u64);
        let mut rest = Vec::new();
        upstream_db.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, frame(b'X', b""), "Terminate forwarded exactly once");
    }

    #[tokio::test]
    async fn oversized_client_message_gets_54000_and_is_not_forwarded() {
        let (mut client_app, mut upstream_db, relay) = pass_through_relay();
        let mut big = vec![b'Q'];
        big.extend_from_slice(&(1_000_000_i32).to_be_bytes());
        big.extend_from_slice(&[b'x'; 2000]);
        client_app.write_all(&big).await.unwrap();
        let mut reply = Vec::new();
        client_app.read_to_end(&mut reply).await.unwrap();
        let err =
            crate::wire::error_response::parse_error_fields(&Frame::new(reply[0], &reply[5..]))
                .unwrap();
        assert_eq!(crate::wire::error_response::error_code(&err), Some("54000"));
        let (end, _) = relay.await.unwrap();
        assert!(
            matches!(end, EndReason::ClientTooLarge { max: 4096, .. }),
            "{end}"
        );
        let mut forwarded = Vec::new();
        upstream_db.read_to_end(&mut forwarded).await.unwrap();
        assert_eq!(
            forwarded,
            frame(b'X', b""),
            "only the proxy's Terminate reached upstream"
        );
    }

    #[tokio::test]
    async fn password_after_authentication_is_refused_not_forwarded() {
        let (mut client_app, mut upstream_db, relay) = pass_through_relay();
        client_app
            .write_all(&frame(b'p', b"hunter2\0"))
            .await
            .unwrap();
        let (end, _) = relay.await.unwrap();
        assert!(matches!(end, EndReason::ClientProtocol(_)), "{end}");
        let mut forwarded = Vec::new();
        upstream_db.read_to_end(&mut forwarded).await.unwrap();
        assert!(!forwarded.windows(7).any(|w| w == b"hunter2"));
    }

    #[tokio::test]
    async fn hook_reply_goes_back_to_the_client() {
        struct DenyQueries;
        impl SessionHooks for DenyQueries {
            fn frontend(&mut self, frame: Frame) -> Verdict {
                if frame.tag() == b'Q' {
                    Verdict::Reply(vec![
                        PgError::error("42501", "denied").to_frame(),
                        status::ready_for_query(
                            pgwire::messages::response::TransactionStatus::Idle,
                        ),
                    ])
                } else {
                    Verdict::Forward(frame)
                }
            }
        }
        let (mut client_app, mut client_proxy) = duplex(1 << 16);
        let (mut upstream_proxy, _upstream_db) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut hooks = DenyQueries;
            Relay::new(
                &mut client_proxy,
                &mut upstream_proxy,
                BytesMut::new(),
                &mut hooks,
                4096,
            )
            .run(std::future::pending(), "db")
            .await
        });
        client_app
            .write_all(&frame(b'Q', b"drop table t\0"))
            .await
            .unwrap();
        let mut head = [0_u8; 5];
        client_app.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], b'E');
    }

    #[tokio::test]
    async fn a_held_statement_lets_the_upstream_flow_and_notices_the_client_leaving() {
        use std::sync::{Arc, Mutex};
        /// Holds every Query until the client goes away.
        struct Hold {
            release: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
            gone: Arc<std::sync::atomic::AtomicBool>,
        }
        impl SessionHooks for Hold {
            fn frontend(&mut self, frame: Frame) -> Verdict {
                if frame.tag() != b'Q' {
                    return Verdict::Forward(frame);
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                *self.release.lock().unwrap() = Some(tx);
                Verdict::AwaitAfter(
                    vec![Frame::new(b'N', b"Mheld\0\0")],
                    Box::pin(async move {
                        let _ = rx.await;
                        Verdict::Drop
                    }),
                )
            }
            fn client_gone(&mut self) {
                self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Some(tx) = self.release.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        }
        let (mut client_app, mut client_proxy) = duplex(1 << 16);
        let (mut upstream_proxy, mut upstream_db) = duplex(1 << 16);
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let g = Arc::clone(&gone);
        let relay = tokio::spawn(async move {
            let mut hooks = Hold {
                release: Arc::default(),
                gone: g,
            };
            Relay::new(
                &mut client_proxy,
                &mut upstream_proxy,
                BytesMut::new(),
                &mut hooks,
                4096,
            )
            .run(std::future::pending(), "db")
            .await
        });
        client_app
            .write_all(&frame(b'Q', b"delete from t\0"))
            .await
            .unwrap();
        let notice = frame(b'N', b"Mheld\0\0");
        let mut got = vec![0; notice.len()];
        client_app.read_exact(&mut got).await.unwrap();
        assert_eq!(got, notice, "the notice goes out as the hold starts");
        // The server still talks to the client during the hold.
        let status = frame(b'S', b"TimeZone\0UTC\0");
        upstream_db.write_all(&status).await.unwrap();
        let mut got = vec![0; status.len()];
        client_app.read_exact(&mut got).await.unwrap();
        assert_eq!(got, status);
        // The client leaves while held: the hook hears of it, the wait ends.
        drop(client_app);
        let (end, _) = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("relay ended")
            .unwrap();
        assert!(gone.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(end, EndReason::ClientClosed), "{end}");
        let mut forwarded = Vec::new();
        upstream_db.read_to_end(&mut forwarded).await.unwrap();
        assert_eq!(
            forwarded,
            frame(b'X', b""),
            "the held Query never reached the upstream"
        );
    }
}
