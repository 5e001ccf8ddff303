//! The writer thread: takes everything queued, encodes it onto the chain,
//! writes it with one `pwrite` and one `fdatasync` (group commit), adds
//! checkpoints, rotates segments, and on failure cuts the file back to its
//! last synced length and retries.

use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use super::{
    AuditConfig, AuditError, AuditEvent, Checkpoint, CheckpointReason, DaemonStop, Durability,
    WriteRecovered,
    keys::{self, HostKey},
    queue::{Msg, Next, Shared},
    record::{self, format_ts},
    recover::Recovery,
    segment,
};

/// How often a broken writer retries on its own (the proxy refuses
/// statements meanwhile, so no append may come to trigger a retry).
const RETRY: Duration = Duration::from_millis(500);

/// The head of the chain. Cloned before a batch, replaced once it is synced:
/// a failed batch leaves it as it was.
#[derive(Debug, Clone)]
struct Chain {
    next_seq: u64,
    head: String,
    last_ts: SystemTime,
    /// Records since the last checkpoint.
    unsigned: u64,
    last_checkpoint: Instant,
}

/// The segment being appended to.
struct OpenSegment {
    file: File,
    path: PathBuf,
    /// Bytes synced.
    len: u64,
    /// A failed write left bytes past `len` that could not be cut yet.
    dirty: bool,
    /// When its first record was written (rotation by age).
    started: Option<SystemTime>,
    /// Since when bytes up to `len` are written but not yet synced
    /// ([`Durability::Written`]).
    unsynced_since: Option<Instant>,
    /// (device, inode): tells whether its path still names it.
    id: (u64, u64),
}

impl OpenSegment {
    fn open(path: PathBuf, len: u64, started: Option<SystemTime>) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AuditError::io(&path, e))?;
        let meta = file.metadata().map_err(|e| AuditError::io(&path, e))?;
        if meta.len() != len {
            return Err(AuditError::Corrupt {
                path,
                line: 0,
                offset: len,
                reason: format!(
                    "segment is {} bytes, {len} expected (written by someone else?)",
                    meta.len()
                ),
            });
        }
        Ok(Self {
            file,
            path,
            len,
            dirty: false,
            started,
            unsynced_since: None,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Whether the path still names this file (it was not removed, renamed
    /// or replaced, and neither was its directory).
    fn still_linked(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
}

/// A stretch of failed writes.
struct Failure {
    since: SystemTime,
    error: String,
    batches: u64,
    refused: u64,
    last_attempt: Instant,
}

/// Limits from the config.
struct Limits {
    segment_bytes: u64,
    segment_age: Duration,
    checkpoint_records: u64,
    checkpoint_every: Duration,
    durability: Durability,
    sync_interval: Duration,
}

/// The writer: owns the files and the chain head.
pub(crate) struct Writer {
    dir: PathBuf,
    host: String,
    key: HostKey,
    limits: Limits,
    chain: Chain,
    seg: Option<OpenSegment>,
    failure: Option<Failure>,
    shared: Arc<Shared>,
    /// `[audit] witness`.
    witness: Option<PathBuf>,
}

impl Writer {
    /// A writer continuing where recovery left the log.
    pub fn new(
        cfg: &AuditConfig,
        host: String,
        key: HostKey,
        rec: &Recovery,
        shared: Arc<Shared>,
    ) -> Result<Self, AuditError> {
        let seg = match &rec.resume {
            Some(r) => Some(OpenSegment::open(r.path.clone(), r.len, r.started)?),
            None => None,
        };
        Ok(Self {
            dir: cfg.dir.clone(),
            host,
            key,
            limits: Limits {
                segment_bytes: cfg.segment_max_bytes,
                segment_age: Duration::from_secs(cfg.segment_max_age_secs),
                checkpoint_records: cfg.checkpoint_every_records,
                checkpoint_every: Duration::from_millis(cfg.checkpoint_every_ms),
                durability: cfg.durability,
                sync_interval: Duration::from_millis(cfg.sync_interval_ms),
            },
            chain: Chain {
                next_seq: rec.next_seq,
                head: rec.head.clone(),
                last_ts: rec.last_ts.unwrap_or(SystemTime::UNIX_EPOCH),
                unsigned: 0,
                last_checkpoint: Instant::now(),
            },
            seg,
            failure: None,
            shared,
            witness: cfg.witness.clone(),
        })
    }

    /// Writes `events` as one synced batch, followed by a checkpoint when
    /// `checkpoint` says so or one is due. Returns each event's seq (or why
    /// it alone could not be encoded); an `Err` means nothing was written.
    pub fn commit(
        &mut self,
        events: &[&AuditEvent],
        checkpoint: Option<CheckpointReason>,
    ) -> Result<Vec<Result<u64, AuditError>>, AuditError> {
        self.prepare()?;
        let mut chain = self.chain.clone();
        let mut buf = Vec::with_capacity(events.len() * 512 + 1024);
        let mut internal = 0;
        if let Some(f) = &self.failure {
            let ev = AuditEvent::WriteRecovered(WriteRecovered {
                since: format_ts(f.since),
                error: f.error.clone(),
                failed_batches: f.batches,
                refused: f.refused,
            });
            Self::push(&mut chain, &mut buf, &ev)?;
            internal += 1;
        }
        let results: Vec<_> = events
            .iter()
            .map(|e| Self::push(&mut chain, &mut buf, e))
            .collect();
        let due = chain.unsigned >= self.limits.checkpoint_records
            || (chain.unsigned > 0
                && chain.last_checkpoint.elapsed() >= self.limits.checkpoint_every);
        let checkpoint = checkpoint.or(due.then_some(CheckpointReason::Periodic));
        let mut signed = None;
        if let Some(reason) = checkpoint {
            signed = Some(self.push_checkpoint(&mut chain, &mut buf, reason)?);
            internal += 1;
        }
        self.write(&buf, checkpoint.is_some())?;
        if let (Some(path), Some(cp)) = (&self.witness, &signed) {
            write_witness(path, cp);
        }
        let written = results.iter().filter(|r| r.is_ok()).count() + internal;
        self.shared
            .counters
            .records
            .fetch_add(written as u64, Ordering::Relaxed);
        if checkpoint.is_some() {
            self.shared
                .counters
                .checkpoints
                .fetch_add(1, Ordering::Relaxed);
        }
        self.chain = chain;
        Ok(results)
    }

    /// [`Self::commit`], keeping the health flag and the failure stretch up to date.
    fn commit_tracked(
        &mut self,
        events: &[&AuditEvent],
        checkpoint: Option<CheckpointReason>,
    ) -> Result<Vec<Result<u64, AuditError>>, String> {
        match self.commit(events, checkpoint) {
            Ok(results) => {
                if let Some(f) = self.failure.take() {
                    tracing::info!(
                        failed_batches = f.batches,
                        refused = f.refused,
                        "audit log: recording works again"
                    );
                }
                self.shared.set_healthy();
                Ok(results)
            }
            Err(e) => {
                let why = e.to_string();
                self.record_failure(why.clone(), events.len() as u64);
                Err(why)
            }
        }
    }

    /// Starts or extends a stretch of failed writes.
    fn record_failure(&mut self, why: String, refused: u64) {
        tracing::error!(error = %why, "audit log: write failed; statements are refused until it works again");
        let f = self.failure.get_or_insert_with(|| Failure {
            since: SystemTime::now(),
            error: why.clone(),
            batches: 0,
            refused: 0,
            last_attempt: Instant::now(),
        });
        f.batches += 1;
        f.refused += refused;
        f.last_attempt = Instant::now();
        self.shared
            .counters
            .failed_batches
            .fetch_add(1, Ordering::Relaxed);
        self.shared.set_broken(why);
    }

    /// Encodes one record onto `chain`/`buf`; on error both are unchanged.
    fn push(chain: &mut Chain, buf: &mut Vec<u8>, event: &AuditEvent) -> Result<u64, AuditError> {
        let ts = SystemTime::now().max(chain.last_ts);
        let start = buf.len();
        let hash = record::encode_into(buf, chain.next_seq, ts, &chain.head, event)
            .inspect_err(|_| buf.truncate(start))?;
        let seq = chain.next_seq;
        chain.next_seq += 1;
        chain.head = hash;
        chain.last_ts = ts;
        if matches!(event, AuditEvent::Checkpoint(_)) {
            chain.unsigned = 0;
            chain.last_checkpoint = Instant::now();
        } else {
            chain.unsigned += 1;
        }
        Ok(seq)
    }

    fn push_checkpoint(
        &self,
        chain: &mut Chain,
        buf: &mut Vec<u8>,
        reason: CheckpointReason,
    ) -> Result<Checkpoint, AuditError> {
        let head_seq = chain.next_seq - 1;
        let cp = Checkpoint {
            head_seq,
            head_hash: chain.head.clone(),
            host: self.host.clone(),
            reason,
            key: self.key.fingerprint.clone(),
            sig: self
                .key
                .sign(&self.host, head_seq, &chain.head, reason.as_str()),
        };
        Self::push(chain, buf, &AuditEvent::Checkpoint(cp.clone()))?;
        Ok(cp)
    }

    /// Makes the log ready for a batch: cuts what a failed write left,
    /// notices a removed segment, rotates, opens a segment.
    fn prepare(&mut self) -> Result<(), AuditError> {
        if let Some(seg) = &mut self.seg
            && seg.dirty
        {
            seg.file
                .set_len(seg.len)
                .and_then(|()| seg.file.sync_data())
                .map_err(|e| AuditError::io(&seg.path, e))?;
            seg.dirty = false;
        }
        if let Some(seg) = &self.seg
            && !seg.still_linked()
        {
            let path = seg.path.clone();
            self.seg = None;
            return Err(AuditError::SegmentGone { path });
        }
        if let Some(seg) = &self.seg
            && seg.len > 0
            && (seg.len >= self.limits.segment_bytes
                || seg
                    .started
                    .is_some_and(|t| t.elapsed().unwrap_or_default() >= self.limits.segment_age))
        {
            self.seal()?;
        }
        if self.seg.is_none() {
            self.seg = Some(self.create_segment()?);
        }
        Ok(())
    }

    /// Ends the current segment with a signed seal; the next batch starts a
    /// new one.
    fn seal(&mut self) -> Result<(), AuditError> {
        let mut chain = self.chain.clone();
        let mut buf = Vec::with_capacity(512);
        self.push_checkpoint(&mut chain, &mut buf, CheckpointReason::Seal)?;
        self.write(&buf, true)?;
        self.shared.counters.records.fetch_add(1, Ordering::Relaxed);
        self.shared
            .counters
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        self.chain = chain;
        self.seg = None;
        Ok(())
    }

    /// Creates the segment for the next seq (and the directory and key
    /// files, if someone removed them).
    fn create_segment(&self) -> Result<OpenSegment, AuditError> {
        keys::create_private_dir(&self.dir)?;
        self.key.write_files(&self.dir)?;
        let path = self.dir.join(segment::file_name(self.chain.next_seq));
        let seg = OpenSegment::open(path, 0, None)?;
        keys::sync_dir(&self.dir)?;
        Ok(seg)
    }

    /// Writes `buf` at the end of the segment and syncs it (always with
    /// [`Durability::Sync`] or `sync`; else when the last sync is
    /// `sync_interval` old), or leaves the segment as it was.
    fn write(&mut self, buf: &[u8], sync: bool) -> Result<(), AuditError> {
        let limits = &self.limits;
        let Some(seg) = self.seg.as_mut() else {
            return Err(AuditError::Unavailable {
                reason: "no open segment".into(),
            });
        };
        let sync = sync
            || limits.durability == Durability::Sync
            || seg
                .unsynced_since
                .is_some_and(|t| t.elapsed() >= limits.sync_interval);
        let written = seg.file.write_all_at(buf, seg.len);
        if let Err(e) = written.and_then(|()| if sync { seg.file.sync_data() } else { Ok(()) }) {
            // Cut this batch (none of it was acknowledged), including pages
            // of unknown state after a failed fsync; if that fails too, the
            // next batch tries again before writing anything. Bytes before it
            // that were acknowledged unsynced (`Written`) stay: the next
            // attempt syncs them first.
            seg.dirty = seg
                .file
                .set_len(seg.len)
                .and_then(|()| seg.file.sync_data())
                .is_err();
            return Err(AuditError::io(&seg.path, e));
        }
        if !seg.still_linked() {
            let path = seg.path.clone();
            self.seg = None;
            return Err(AuditError::SegmentGone { path });
        }
        seg.len += buf.len() as u64;
        seg.started.get_or_insert_with(SystemTime::now);
        if sync {
            seg.unsynced_since = None;
            self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        } else {
            seg.unsynced_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// [`Durability::Written`]: syncs what was written when it is due and no
    /// batch came to do it.
    fn sync_due(&mut self) {
        let Some(seg) = self.seg.as_mut() else { return };
        if seg.unsynced_since.is_none() {
            return;
        }
        match seg.file.sync_data() {
            Ok(()) => {
                seg.unsynced_since = None;
                self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let why = AuditError::io(&seg.path, e).to_string();
                // The next batch (or the retry) syncs before it writes.
                seg.unsynced_since = Some(
                    Instant::now()
                        .checked_sub(self.limits.sync_interval)
                        .unwrap_or_else(Instant::now),
                );
                self.record_failure(why, 0);
            }
        }
    }

    /// When the writer must wake up without work: to retry, to write a
    /// checkpoint over unsigned records, or to sync written records.
    fn deadline(&self) -> Option<Instant> {
        if let Some(f) = &self.failure {
            return Some(f.last_attempt + RETRY);
        }
        let checkpoint = (self.chain.unsigned > 0)
            .then(|| self.chain.last_checkpoint + self.limits.checkpoint_every);
        let sync = self
            .seg
            .as_ref()
            .and_then(|s| s.unsynced_since)
            .map(|t| t + self.limits.sync_interval);
        checkpoint.into_iter().chain(sync).min()
    }

    /// The thread's body.
    pub fn run(mut self) {
        struct StopGuard(Arc<Shared>);
        impl Drop for StopGuard {
            fn drop(&mut self) {
                self.0.stop("the audit writer stopped");
            }
        }
        let _guard = StopGuard(self.shared.clone());
        loop {
            match self.shared.next(self.deadline()) {
                Next::Batch(msgs) => self.answer(msgs),
                Next::Timeout => {
                    let checkpoint_due = self.chain.unsigned > 0
                        && self.chain.last_checkpoint.elapsed() >= self.limits.checkpoint_every;
                    if self.failure.is_some() {
                        let _ = self.commit_tracked(&[], None);
                    } else if checkpoint_due {
                        let _ = self.commit_tracked(&[], Some(CheckpointReason::Periodic));
                    } else {
                        self.sync_due();
                    }
                }
                Next::Close { reason, reply } => {
                    let stop = AuditEvent::DaemonStop(DaemonStop { reason });
                    let result = match self.commit_tracked(&[&stop], Some(CheckpointReason::Stop)) {
                        Ok(mut r) => r.pop().unwrap_or(Err(AuditError::Closed)),
                        Err(reason) => Err(AuditError::Unavailable { reason }),
                    };
                    // Close the file before answering, so that the caller
                    // may unmount or move the directory at once.
                    self.seg = None;
                    let _ = reply.send(result);
                    return;
                }
                Next::Dropped => {
                    if self.chain.unsigned > 0 || self.failure.is_some() {
                        let _ = self.commit_tracked(&[], Some(CheckpointReason::Stop));
                    }
                    return;
                }
            }
        }
    }

    /// Writes a batch of appends and answers each.
    fn answer(&mut self, msgs: Vec<Msg>) {
        let events: Vec<&AuditEvent> = msgs
            .iter()
            .filter_map(|m| match m {
                Msg::Append { event, .. } => Some(event),
                Msg::Close { .. } => None,
            })
            .collect();
        let (mut written, failed) = match self.commit_tracked(&events, None) {
            Ok(r) => (r.into_iter(), None),
            Err(why) => (Vec::new().into_iter(), Some(why)),
        };
        for msg in msgs {
            if let Msg::Append { reply, permit, .. } = msg {
                let r = match &failed {
                    Some(why) => Err(AuditError::Unavailable {
                        reason: why.clone(),
                    }),
                    None => written.next().unwrap_or(Err(AuditError::Closed)),
                };
                let _ = reply.send(r);
                drop(permit);
            }
        }
    }
}

/// Rewrites the witness file with `cp` (write to a temporary file, fsync,
/// rename): it never holds a torn checkpoint. A failure is logged; the log
/// itself is unaffected.
fn write_witness(path: &std::path::Path, cp: &Checkpoint) {
    let result = (|| -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(
            &mut f,
            serde_json::to_string(cp)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        tracing::error!(event = "audit_witness_failed", path = %path.display(), error = %e, "the audit witness file could not be written");
    }
}
