//! What the [`super::AuditLog`] handles and the writer thread share: the
//! bounded queue of appends, the health flag, counters.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{AuditError, AuditEvent};

/// Most appends written by one `pwrite` + `fdatasync`.
const MAX_BATCH: usize = 8192;

/// The answer to one append.
pub(crate) type Reply = oneshot::Sender<Result<u64, AuditError>>;

/// A queued request for the writer.
// `Close` is rare; boxing the event would cost an allocation per append.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    /// Record this event.
    Append {
        /// The event.
        event: AuditEvent,
        /// Where the seq (or the error) goes.
        reply: Reply,
        /// The queue slot, released once answered.
        permit: OwnedSemaphorePermit,
    },
    /// Record `daemon_stop` and a final checkpoint, then stop.
    Close {
        /// `daemon_stop.reason`.
        reason: String,
        /// Where the seq of `daemon_stop` goes.
        reply: Reply,
    },
}

/// What the writer is to do next.
pub(crate) enum Next {
    /// Write these appends.
    Batch(Vec<Msg>),
    /// Close as asked.
    Close {
        /// `daemon_stop.reason`.
        reason: String,
        /// Where the seq of `daemon_stop` goes.
        reply: Reply,
    },
    /// The deadline passed with nothing queued.
    Timeout,
    /// Every handle is gone and nothing is queued.
    Dropped,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Msg>,
    /// No new appends: closing or the writer stopped.
    closed: bool,
    /// Every handle was dropped.
    dropped: bool,
}

/// Counters, for `stats()` and the bench.
#[derive(Default)]
pub(crate) struct Counters {
    /// Records written (internal ones included).
    pub records: AtomicU64,
    /// Successful `pwrite` + `fdatasync`s.
    pub syncs: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Batches that failed.
    pub failed_batches: AtomicU64,
}

/// Shared between the handles and the writer.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// One permit per queued append: the bounded queue (waiting for a permit
    /// is the backpressure).
    pub permits: Arc<Semaphore>,
    /// Queue capacity, for messages.
    pub capacity: usize,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Counters.
    pub counters: Counters,
}

impl Shared {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves the queue consistent (only
        // push/pop under it), so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a message; `Close` also shuts the door behind it.
    pub fn push(&self, msg: Msg) -> Result<(), AuditError> {
        let mut q = self.lock();
        if q.closed {
            return Err(AuditError::Closed);
        }
        if matches!(msg, Msg::Close { .. }) {
            q.closed = true;
            self.permits.close();
        }
        q.items.push_back(msg);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    /// Waits for work: queued appends (up to [`MAX_BATCH`], stopping before a
    /// close), a close, or `deadline`.
    pub fn next(&self, deadline: Option<Instant>) -> Next {
        let mut q = self.lock();
        loop {
            if matches!(q.items.front(), Some(Msg::Close { .. }))
                && let Some(Msg::Close { reason, reply }) = q.items.pop_front()
            {
                return Next::Close { reason, reply };
            }
            if !q.items.is_empty() {
                let mut batch = Vec::with_capacity(q.items.len().min(MAX_BATCH));
                while batch.len() < MAX_BATCH && matches!(q.items.front(), Some(Msg::Append { .. }))
                {
                    batch.extend(q.items.pop_front());
                }
                return Next::Batch(batch);
            }
            if q.dropped {
                return Next::Dropped;
            }
            q = match deadline {
                None => self
                    .wake
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Next::Timeout;
                    }
                    self.wake
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Every handle is gone: the writer finishes what is queued and stops.
    pub fn release(&self) {
        self.lock().dropped = true;
        self.wake.notify_one();
    }

    /// The writer stopped (or panicked): refuse everything from now on and
    /// drop what is queued, which answers its waiters with `Closed`.
    pub fn stop(&self, why: &str) {
        let mut q = self.lock();
        q.closed = true;
        q.items.clear();
        drop(q);
        self.permits.close();
        self.set_broken(why.to_owned());
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_healthy(&self) {
        self.healthy.store(true, Ordering::Release);
    }

    pub fn set_broken(&self, why: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
        self.healthy.store(false, Ordering::Release);
    }

    /// Appends queued now.
    pub fn queued(&self) -> usize {
        self.lock().items.len()
    }
}
