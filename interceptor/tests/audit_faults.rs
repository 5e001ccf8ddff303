//! The audit log under faults: torn tails, kill -9 mid-burst, a full disk,
//! a removed directory, rotation by age, and load.

mod audit_support;

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use audit_support::*;
use interceptor::audit::{AuditConfig, AuditError, AuditLog, Durability, verify};

#[tokio::test]
async fn torn_tail_is_cut_recorded_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 3).await;
    let before = records(dir.path());
    let last = segments(dir.path()).pop().unwrap();

    // A crash mid-write: the last record is cut, and half of another follows.
    let mut ls = lines(&last);
    let lost = ls.pop().unwrap();
    let lost_seq = before.last().unwrap().seq;
    ls.push(lost[..lost.len() / 2].to_owned());
    write_lines(&last, &ls);
    assert!(verify(dir.path(), None).is_err());

    let log = AuditLog::open(&cfg(dir.path())).unwrap();
    log.append(statement("after-1", 1, "SELECT 'after'", "allow"))
        .await
        .unwrap();
    log.close("test").await.unwrap();

    verify(dir.path(), None).unwrap();
    let after = records(dir.path());
    // No complete record lost: all but the cut one are there, unchanged.
    assert_eq!(&after[..before.len() - 1], &before[..before.len() - 1]);
    let torn = after
        .iter()
        .find(|r| r.kind == "torn_tail")
        .expect("torn_tail recorded");
    assert_eq!(torn.seq, lost_seq, "the cut record's seq is reused");
    assert_eq!(torn.event["last_good_seq"].as_u64(), Some(lost_seq - 1));
    assert_eq!(
        torn.event["bytes_dropped"].as_u64(),
        Some((lost.len() / 2) as u64)
    );
    assert_eq!(
        torn.event["dropped_seqs"],
        serde_json::json!([lost_seq, lost_seq])
    );
    assert_eq!(after[before.len()].kind, "daemon_start");
}

#[tokio::test]
async fn zeros_after_a_power_loss_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 1).await;
    let last = segments(dir.path()).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&[0; 4096]).unwrap();
    drop(f);
    let log = AuditLog::open(&cfg(dir.path())).unwrap();
    log.close("test").await.unwrap();
    verify(dir.path(), None).unwrap();
    let torn: Vec<_> = records(dir.path())
        .into_iter()
        .filter(|r| r.kind == "torn_tail")
        .collect();
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0].event["bytes_dropped"].as_u64(), Some(4096));
}

#[tokio::test]
async fn damage_before_intact_records_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&cfg(dir.path())).unwrap();
    for n in 1..=5 {
        log.append(statement("d-1", n, "SELECT 1", "allow"))
            .await
            .unwrap();
    }
    log.close("test").await.unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let mut ls = lines(&seg);
    ls[2] = ls[2].replacen("SELECT 1", "SELECT 2", 1);
    write_lines(&seg, &ls);
    let err = AuditLog::open(&cfg(dir.path())).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { line: 3, .. }), "{err}");
    // Nothing was cut.
    assert_eq!(lines(&seg), ls);
}

#[tokio::test]
async fn segments_rotate_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let c = AuditConfig {
        segment_max_bytes: 1 << 20,
        segment_max_age_secs: 1,
        ..cfg(dir.path())
    };
    let log = AuditLog::open(&c).unwrap();
    log.append(statement("a-1", 1, "SELECT 1", "allow"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    log.append(statement("a-1", 2, "SELECT 2", "allow"))
        .await
        .unwrap();
    log.close("test").await.unwrap();
    assert_eq!(segments(dir.path()).len(), 2);
    verify(dir.path(), None).unwrap();
}

#[tokio::test]
async fn periodic_checkpoints_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = AuditConfig {
        checkpoint_every_ms: 100,
        checkpoint_every_records: 1_000_000,
        ..cfg(dir.path())
    };
    let log = AuditLog::open(&c).unwrap();
    log.append(statement("p-1", 1, "SELECT 1", "allow"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        verify(dir.path(), None).unwrap().unsigned,
        0,
        "idle writer signed the tail"
    );
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_n_tasks_by_m_appends() {
    const N: usize = 32;
    const M: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    // A tiny queue: backpressure makes appends wait, never drops them.
    let c = AuditConfig {
        segment_max_bytes: 256 << 10,
        checkpoint_every_records: 500,
        queue_capacity: 8,
        ..cfg(dir.path())
    };
    let log = AuditLog::open(&c).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..N {
        let log = log.clone();
        tasks.spawn(async move {
            let id = log.session_id(t as u64 + 1);
            for m in 0..M {
                log.append(statement(
                    &id,
                    m as u64 + 1,
                    &format!("SELECT {t}, {m}"),
                    "allow",
                ))
                .await
                .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let stats = log.stats();
    log.close("test").await.unwrap();
    let report = verify(dir.path(), None).unwrap();
    let statements: Vec<_> = records(dir.path())
        .into_iter()
        .filter(|r| r.kind == "statement")
        .collect();
    assert_eq!(statements.len(), N * M);
    let distinct: HashSet<_> = statements
        .iter()
        .map(|r| r.event["sql"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), N * M);
    assert!(report.segments > 1);
    assert!(stats.syncs < (N * M) as u64, "group commit: {stats:?}");
}

/// The child of `kill9_during_a_burst`: appends forever, printing each
/// acknowledged seq. Does nothing unless started by that test.
#[test]
fn kill9_child() {
    let Ok(dir) = std::env::var("INTERCEPTOR_AUDIT_KILL9_DIR") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let durability = match std::env::var("INTERCEPTOR_AUDIT_KILL9_MODE").as_deref() {
            Ok("written") => Durability::Written,
            _ => Durability::Sync,
        };
        let c = AuditConfig {
            segment_max_bytes: 64 << 10,
            durability,
            ..cfg(Path::new(&dir))
        };
        let log = AuditLog::open(&c).unwrap();
        let deadline = Instant::now() + Duration::from_mins(1);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let seq = log
                        .append(statement(
                            &format!("k-{t}"),
                            i,
                            &format!("burst {t} {i}"),
                            "allow",
                        ))
                        .await
                        .unwrap();
                    println!("ACK {seq} {t} {i}");
                    i += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn kill9_during_a_burst_loses_no_acknowledged_record() {
    kill9_during_a_burst("sync");
}

/// With `durability = "written"` an append is acknowledged once written,
/// before `fdatasync`: a killed daemon still loses nothing acknowledged.
#[test]
fn kill9_during_a_burst_loses_nothing_acknowledged_when_written() {
    kill9_during_a_burst("written");
}

fn kill9_during_a_burst(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("INTERCEPTOR_AUDIT_KILL9_DIR", dir.path())
        .env("INTERCEPTOR_AUDIT_KILL9_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                let _ = tx.send((v[0], v[1], v[2]));
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    while acked.len() < 3000 && Instant::now() < deadline {
        if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(a);
        }
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(
        acked.len() >= 3000,
        "{mode}: child acknowledged only {} appends",
        acked.len()
    );

    // Restart: recovery, then everything acknowledged is there, intact.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = AuditLog::open(&cfg(dir.path())).unwrap();
        log.close("test").await.unwrap();
    });
    verify(dir.path(), None).unwrap();
    let by_seq: HashMap<u64, String> = records(dir.path())
        .into_iter()
        .filter(|r| r.kind == "statement")
        .map(|r| (r.seq, r.event["sql"].as_str().unwrap().to_owned()))
        .collect();
    for (seq, t, i) in &acked {
        assert_eq!(
            by_seq.get(seq).map(String::as_str),
            Some(format!("burst {t} {i}").as_str()),
            "{mode}: acknowledged seq {seq}"
        );
    }
}

/// A small tmpfs mounted over a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        use nix::mount::{MsFlags, mount};
        let dir = tempfile::tempdir().unwrap();
        let opts = format!("size={size},mode=0700");
        match mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        ) {
            Ok(()) => Some(Self { dir }),
            Err(e) => {
                eprintln!("SKIPPED: cannot mount a tmpfs ({e}); this test needs root");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use nix::mount::{MntFlags, umount2};
        if umount2(self.dir.path(), MntFlags::empty()).is_err() {
            let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
        }
    }
}

/// Fills the filesystem of `path` with a file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    for chunk in [64 << 10, 4096, 512, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

#[tokio::test]
async fn disk_full_refuses_then_recovers() {
    let Some(fs_) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = fs_.path().join("audit");
    {
        let log = AuditLog::open(&AuditConfig {
            segment_max_bytes: 1 << 20,
            ..cfg(&dir)
        })
        .unwrap();
        for n in 1..=5 {
            log.append(statement("f-1", n, "SELECT 1", "allow"))
                .await
                .unwrap();
        }
        assert!(log.healthy());

        let filler = fill(fs_.path());
        // Bigger than any slack left in the segment's last page: the write is
        // partial, then fails; it must be cut back.
        let big = "x".repeat(16 << 10);
        let err = log
            .append(statement("f-1", 6, &big, "allow"))
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(!log.healthy());
        assert!(log.last_error().unwrap().contains("No space left"));
        // The log as it is on disk is intact (the partial batch was cut).
        verify(&dir, None).unwrap();

        fs::remove_file(filler).unwrap();
        let seq = log
            .append(statement("f-1", 7, &big, "allow"))
            .await
            .unwrap();
        assert!(log.healthy());
        assert!(seq > 5);
        log.close("test").await.unwrap();
    }
    verify(&dir, None).unwrap();
    let all = records(&dir);
    let recovered = all
        .iter()
        .find(|r| r.kind == "write_recovered")
        .expect("write_recovered recorded");
    assert!(
        recovered.event["refused"].as_u64().unwrap() >= 1,
        "{:?}",
        recovered.event
    );
    assert!(
        recovered.event["error"]
            .as_str()
            .unwrap()
            .contains("No space left")
    );
    assert!(
        !all.iter().any(|r| r.event["statement"] == 6),
        "the refused append is not in the log"
    );
    assert!(all.iter().any(|r| r.event["statement"] == 7));
}

#[tokio::test]
async fn removed_directory_is_noticed_and_writing_resumes() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("audit");
    let log = AuditLog::open(&cfg(&dir)).unwrap();
    log.append(statement("r-1", 1, "SELECT 1", "allow"))
        .await
        .unwrap();
    fs::remove_dir_all(&dir).unwrap();

    let err = log
        .append(statement("r-1", 2, "SELECT 2", "allow"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("removed or replaced"), "{err}");
    assert!(!log.healthy());

    // The writer recreates the directory (root-only) and continues the chain
    // in a new segment; the key files are written again.
    let seq = log
        .append(statement("r-1", 3, "SELECT 3", "allow"))
        .await
        .unwrap();
    assert!(log.healthy());
    log.close("test").await.unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let all = records(&dir);
    assert_eq!(all[0].kind, "write_recovered");
    assert!(
        all[0].event["error"]
            .as_str()
            .unwrap()
            .contains("removed or replaced")
    );
    assert!(all.iter().any(|r| r.seq == seq));
    // verify names what vanished with the directory.
    let f = finding(&dir, None);
    assert_eq!(f.problem, interceptor::audit::Problem::Truncated, "{f}");
    assert_eq!(f.seq, Some(1), "{f}");
}

#[tokio::test]
async fn written_durability_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let c = AuditConfig {
        durability: Durability::Written,
        sync_interval_ms: 20,
        ..cfg(dir.path())
    };
    let log = AuditLog::open(&c).unwrap();
    let before = log.stats().syncs;
    for n in 1..=5 {
        log.append(statement("w-1", n, "SELECT 1", "allow"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = log.stats().syncs;
    assert!(after > before && after - before <= 5, "{before} -> {after}");
    log.close("test").await.unwrap();
    verify(dir.path(), None).unwrap();
}
