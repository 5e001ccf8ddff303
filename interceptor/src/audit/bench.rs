//! Append throughput for `cargo xtask bench`: records per second sustained
//! with `fdatasync` (group commit), and what signing every record instead of
//! checkpoints would cost.

use std::{
    path::Path,
    time::{Instant, SystemTime},
};

use super::{
    AuditConfig, AuditError, AuditEvent, AuditLog, DecisionRecord, StatementEvent,
    keys::HostKey,
    record::{self, GENESIS},
};

/// What [`bench_append`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Statement records appended (each awaited until synced).
    pub records: u64,
    /// Concurrent appending tasks.
    pub tasks: usize,
    /// Wall time of the appends, seconds.
    pub secs: f64,
    /// `records / secs`: the headline figure.
    pub records_per_sec: f64,
    /// `fdatasync`s it took (group commit: far fewer than records).
    pub syncs: u64,
    /// Records per `fdatasync`.
    pub records_per_sync: f64,
    /// Records encoded + hashed per second on one core (the writer's CPU
    /// work per record today).
    pub hash_per_sec: f64,
    /// Records encoded + hashed + Ed25519-signed per second on one core:
    /// the ceiling if every record were signed instead of checkpoints.
    pub sign_per_sec: f64,
}

/// A typical statement record.
fn sample(task: usize, i: usize) -> AuditEvent {
    AuditEvent::Statement(StatementEvent {
        session: format!("1-{task}"),
        statement: i as u64 + 1,
        sql: format!(
            "SELECT id, name, email, created_at FROM customers WHERE id = $1 AND tenant = 'bench-{task}' LIMIT 100 /* {i} */"
        ),
        params: vec![Some("42".into())],
        protocol: "extended".into(),
        decision: DecisionRecord {
            action: "allow".into(),
            rule: "read-only-customers".into(),
            reason: "reads of customers are allowed for ci".into(),
            max_rows: Some(10_000),
        },
        sql_full: None,
        sql_redacted: Vec::new(),
    })
}

/// Opens a fresh log in `dir`, has `n_tasks` tasks append `per_task`
/// statement records each (every append awaited until synced), closes it,
/// and measures per-record hashing and signing on one core for comparison.
pub async fn bench_append(
    dir: &Path,
    n_tasks: usize,
    per_task: usize,
) -> Result<BenchReport, AuditError> {
    bench_append_with(
        &AuditConfig {
            host: "bench".into(),
            ..AuditConfig::in_dir(dir)
        },
        n_tasks,
        per_task,
    )
    .await
}

/// [`bench_append`] with a config of one's own (e.g. `durability =
/// Written`); `cfg.dir` should be a fresh directory.
#[allow(clippy::cast_precision_loss)] // rates
pub async fn bench_append_with(
    cfg: &AuditConfig,
    n_tasks: usize,
    per_task: usize,
) -> Result<BenchReport, AuditError> {
    let log = AuditLog::open(cfg)?;
    let before = log.stats();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..n_tasks {
        let log = log.clone();
        tasks.spawn(async move {
            for i in 0..per_task {
                log.append(sample(t, i)).await?;
            }
            Ok::<_, AuditError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| AuditError::Unavailable {
            reason: format!("bench task: {e}"),
        })??;
    }
    let secs = started.elapsed().as_secs_f64();
    let syncs = log.stats().syncs - before.syncs;
    log.close("bench").await?;

    let records = (n_tasks * per_task) as u64;
    let (hash_per_sec, sign_per_sec) = per_record_costs(20_000)?;
    Ok(BenchReport {
        records,
        tasks: n_tasks,
        secs,
        records_per_sec: records as f64 / secs,
        syncs,
        records_per_sync: records as f64 / syncs.max(1) as f64,
        hash_per_sec,
        sign_per_sec,
    })
}

/// Records per second encoded + hashed, and encoded + hashed + signed.
#[allow(clippy::cast_precision_loss)] // rates
fn per_record_costs(n: usize) -> Result<(f64, f64), AuditError> {
    let key = HostKey::from_seed([7; 32]);
    let events: Vec<AuditEvent> = (0..n).map(|i| sample(0, i)).collect();
    let mut buf = Vec::with_capacity(1024);
    let now = SystemTime::now();
    let mut run = |sign: bool| -> Result<f64, AuditError> {
        let t = Instant::now();
        let mut prev = GENESIS.to_owned();
        for (i, e) in events.iter().enumerate() {
            buf.clear();
            prev = record::encode_into(&mut buf, i as u64 + 1, now, &prev, e)?;
            if sign {
                std::hint::black_box(key.sign("bench", i as u64 + 1, &prev, "record"));
            }
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };
    Ok((run(false)?, run(true)?))
}
