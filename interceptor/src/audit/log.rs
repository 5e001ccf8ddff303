//! [`AuditLog`]: the handle sessions append through.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use tokio::sync::oneshot;

use super::{
    AuditConfig, AuditError, AuditEvent, CheckpointReason, DaemonStart,
    keys::{self, HostKey},
    queue::{Msg, Shared},
    recover,
    writer::Writer,
};

/// The audit log of this host, open for appending. Cheap to clone; every
/// clone appends to the same log through one writer thread, which stops
/// (after a final checkpoint) when the last clone is dropped or
/// [`AuditLog::close`] is called.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    dir: PathBuf,
    host: String,
    fingerprint: String,
    /// Seq of this run's `daemon_start`: the prefix of session ids.
    start_seq: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.inner.dir)
            .field("host", &self.inner.host)
            .field("start_seq", &self.inner.start_seq)
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

/// Counters of a log since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Records written (internal ones included).
    pub records: u64,
    /// Successful writes, each one `pwrite` + `fdatasync`.
    pub syncs: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Writes that failed.
    pub failed_batches: u64,
    /// Appends waiting now.
    pub queued: usize,
}

/// An append on its way to disk: resolves to its seq once it is synced.
#[must_use = "an append is recorded only once its receipt resolves to Ok"]
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<u64, AuditError>>);

impl Future for Receipt {
    type Output = Result<u64, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(AuditError::Closed)))
    }
}

impl Receipt {
    /// Blocks the thread until the record is synced (not from async code).
    pub fn wait_blocking(self) -> Result<u64, AuditError> {
        self.0.blocking_recv().unwrap_or(Err(AuditError::Closed))
    }
}

impl AuditLog {
    /// Opens (creating, 0700) the log in `cfg.dir`: loads or generates the
    /// host key, recovers from the previous run (cutting and recording a torn
    /// tail), appends `daemon_start` and a `start` checkpoint (synced before
    /// this returns), and starts the writer thread.
    pub fn open(cfg: &AuditConfig) -> Result<Self, AuditError> {
        cfg.validate()?;
        let host = cfg.resolved_host()?;
        keys::create_private_dir(&cfg.dir)?;
        let lock = lock_dir(&cfg.dir)?;
        let key = HostKey::load_or_create(&cfg.dir)?;
        let fingerprint = key.fingerprint.clone();
        let rec = recover::recover(&cfg.dir)?;
        let shared = Arc::new(Shared::new(cfg.queue_capacity));
        let mut writer = Writer::new(cfg, host.clone(), key, &rec, shared.clone())?;

        let mut first = Vec::new();
        if let Some(torn) = rec.torn.clone() {
            first.push(AuditEvent::TornTail(torn));
        }
        first.push(AuditEvent::DaemonStart(DaemonStart {
            host: host.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned()),
            key: fingerprint.clone(),
            resumed_after: rec.next_seq.checked_sub(1).filter(|&s| s > 0),
        }));
        let refs: Vec<&AuditEvent> = first.iter().collect();
        let start_seq = writer
            .commit(&refs, Some(CheckpointReason::Start))?
            .pop()
            .unwrap_or(Err(AuditError::Closed))?;

        // The writer thread holds the directory lock for as long as it
        // writes: two writers appending to one directory would break each
        // other's chain.
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let _lock = lock;
                writer.run();
            })
            .map_err(|e| AuditError::io(&cfg.dir, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                dir: cfg.dir.clone(),
                host,
                fingerprint,
                start_seq,
            }),
        })
    }

    /// Records `event`; resolves to its seq once it is on disk. Waits while
    /// the queue is full. Fails with [`AuditError::Unavailable`] when the
    /// write failed: the event is then not recorded, and the caller must not
    /// act as if it were (the proxy refuses the statement).
    pub async fn append(&self, event: AuditEvent) -> Result<u64, AuditError> {
        refuse_internal(&event)?;
        let permit = self
            .inner
            .shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuditError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.inner.shared.push(Msg::Append {
            event,
            reply,
            permit,
        })?;
        Receipt(rx).await
    }

    /// Queues `event` without waiting, for callers that cannot await here
    /// (e.g. a synchronous hook that holds the message until the receipt
    /// resolves). Fails at once with [`AuditError::QueueFull`] instead of
    /// waiting for room.
    pub fn enqueue(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        refuse_internal(&event)?;
        let shared = &self.inner.shared;
        let permit = shared
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::Closed => AuditError::Closed,
                tokio::sync::TryAcquireError::NoPermits => AuditError::QueueFull(shared.capacity),
            })?;
        let (reply, rx) = oneshot::channel();
        shared.push(Msg::Append {
            event,
            reply,
            permit,
        })?;
        Ok(Receipt(rx))
    }

    /// Whether the last write succeeded. While false, appends fail and the
    /// proxy should refuse statements with [`Self::last_error`]; the writer
    /// retries on its own every half second.
    pub fn healthy(&self) -> bool {
        self.inner.shared.healthy()
    }

    /// The most recent write failure (kept after recovery, for status).
    pub fn last_error(&self) -> Option<String> {
        self.inner.shared.last_error()
    }

    /// The log-wide id of this run's session number `n` (the proxy's
    /// per-run counter): `"<seq of this run's daemon_start>-<n>"`. Unique in
    /// this host's log across restarts; with the host name, everywhere.
    pub fn session_id(&self, n: u64) -> String {
        format!("{}-{n}", self.inner.start_seq)
    }

    /// Seq of this run's `daemon_start`.
    pub fn start_seq(&self) -> u64 {
        self.inner.start_seq
    }

    /// The host name recorded.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `SHA256:...` fingerprint of the signing key.
    pub fn key_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.shared.counters;
        Stats {
            records: c.records.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            queued: self.inner.shared.queued(),
        }
    }

    /// Writes what is queued, then `daemon_stop { reason }` and a final
    /// checkpoint, and stops the writer (its files are closed when this
    /// returns). Later appends fail with [`AuditError::Closed`]. Returns the
    /// seq of `daemon_stop`.
    pub async fn close(&self, reason: &str) -> Result<u64, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.inner.shared.push(Msg::Close {
            reason: reason.to_owned(),
            reply,
        })?;
        let seq = Receipt(rx).await;
        self.inner
            .shared
            .set_broken("the audit log is closed".into());
        seq
    }
}

/// Kinds only the log writes: a caller's forged checkpoint would make the
/// log fail verification, a forged `torn_tail` would mislead.
fn refuse_internal(event: &AuditEvent) -> Result<(), AuditError> {
    match event {
        AuditEvent::Checkpoint(_)
        | AuditEvent::DaemonStart(_)
        | AuditEvent::DaemonStop(_)
        | AuditEvent::TornTail(_)
        | AuditEvent::WriteRecovered(_) => Err(AuditError::Usage(format!(
            "{} records are written by the audit log itself (use close() for daemon_stop)",
            event.kind()
        ))),
        _ => Ok(()),
    }
}

/// Takes the directory's lock, or says who holds it.
fn lock_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    // A writer that was just closed may still be finishing: wait a little
    // before calling the directory taken.
    let mut file = file;
    for _ in 0..40 {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err((_, errno)) => return Err(AuditError::io(&path, std::io::Error::from(errno))),
        }
    }
    Err(AuditError::io(
        &path,
        std::io::Error::other(
            "another interceptor holds this audit directory; give each daemon its own [audit] dir",
        ),
    ))
}
