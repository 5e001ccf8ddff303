//! Append throughput of the audit log (what `cargo xtask bench` reports):
//! `cargo test --release -p interceptor --test audit_bench -- --ignored --nocapture`.

use interceptor::audit::{AuditConfig, Durability, bench_append_with, verify};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn append_throughput() {
    let dir = tempfile::tempdir().unwrap();
    for durability in [Durability::Sync, Durability::Written] {
        for (tasks, per_task) in [(1, 2_000), (8, 2_000), (64, 1_000), (256, 400)] {
            let sub = dir.path().join(format!("{durability:?}-{tasks}"));
            let cfg = AuditConfig {
                host: "bench".into(),
                durability,
                ..AuditConfig::in_dir(&sub)
            };
            let r = bench_append_with(&cfg, tasks, per_task).await.unwrap();
            println!(
                "{durability:?} {tasks:>4} tasks: {:>9.0} records/s ({} records, {} fdatasyncs, {:.1} records/sync); \
                 one core per record: encode+hash {:.0}/s, +Ed25519 sign {:.0}/s",
                r.records_per_sec,
                r.records,
                r.syncs,
                r.records_per_sync,
                r.hash_per_sec,
                r.sign_per_sec
            );
            assert!(verify(&sub, None).unwrap().last_seq >= r.records);
        }
    }
}
