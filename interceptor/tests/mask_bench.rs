//! Masking throughput: rows per second of a large result (1,000,000 rows by
//! default) read by psql, straight from PostgreSQL, through the proxy with
//! policy and audit for an identity that sees everything raw, and through
//! the same proxy for an identity whose two sensitive columns are masked
//! (with the content detectors on). Same run, interleaved rounds, medians.
//! Ignored by default; `cargo xtask bench` runs it in release mode:
//!
//! ```text
//! cargo test --release -p interceptor --test mask_bench -- --ignored --nocapture
//! ```
//!
//! `MASK_BENCH_ROWS` (default 1000000) and `MASK_BENCH_ROUNDS` (default 3).

mod proxy_support;

use std::{path::Path, process::Command, sync::Arc, time::Instant};

use proxy_support::{Captured, Postgres, Proxy, write_credentials};

const PW: &str = "mask-bench-pw-7Hq";

fn policy(masked: bool) -> String {
    let profile = if masked {
        "[[masking]]\nidentities = [\"bench\"]\nstrategies = { ssn = \"partial\", card = \"hash\" }\n"
    } else {
        "[[masking]]\nidentities = [\"bench\"]\ndefault = \"raw\"\ndetectors = false\n"
    };
    format!(
        "[defaults]\nidentity = \"bench\"\n[[identity]]\nname = \"bench\"\n\
         [[rule]]\nid = \"read\"\nidentities = [\"*\"]\nclasses = [\"read\", \"session\", \"transaction\"]\naction = \"allow\"\n\
         [[sensitive]]\ncolumns = [\"public.people.ssn\"]\ncategory = \"ssn\"\n\
         [[sensitive]]\ncolumns = [\"public.people.card\"]\ncategory = \"card\"\n{profile}"
    )
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds psql takes to read the whole result, and a checksum of it.
fn read_all(port: u16, query: &str) -> (f64, String) {
    let started = Instant::now();
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "bench_user",
            "-d",
            "bench",
            "-c",
            query,
        ])
        .env("PGPASSWORD", PW)
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let sample = text.lines().next().unwrap_or_default().to_owned();
    (secs, sample)
}

/// CPU seconds this process (the proxies' threads) has used.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn guarded(
    config: &str,
    masked: bool,
) -> (Proxy, interceptor::audit::AuditLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy(masked)).unwrap();
    let store = Arc::new(interceptor::policy::PolicyStore::open(dir.path()).unwrap());
    let audit = interceptor::audit::AuditLog::open(&interceptor::audit::AuditConfig::in_dir(
        dir.path().join("audit"),
    ))
    .unwrap();
    let cfg =
        Arc::new(interceptor::config::Config::parse(Path::new("bench.toml"), config).unwrap());
    let connector = interceptor::proxy::UpstreamConnector::new(cfg).unwrap();
    let pool = Arc::new(interceptor::mask::catalog::CatalogPool::new(
        Arc::new(connector),
        &interceptor::mask::catalog::CatalogConfig::default(),
    ));
    let hooks = Arc::new(
        interceptor::policy::session::PolicyFactory::new(store, audit.clone())
            .with_masking(pool, [9; 32]),
    );
    (Proxy::start_with_hooks(config, hooks).await, audit, dir)
}

#[test]
#[ignore = "benchmark; run by cargo xtask bench"]
fn bench() {
    let _captured = Captured::install(tracing::Level::WARN);
    let rows = env_or("MASK_BENCH_ROWS", 1_000_000);
    let rounds = env_or("MASK_BENCH_ROUNDS", 3);
    let pg = Postgres::start(
        "mask-bench-super",
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        "",
    );
    pg.psql_super(
        "postgres",
        &format!("CREATE ROLE bench_user LOGIN PASSWORD '{PW}'"),
    );
    pg.psql_super("postgres", "CREATE DATABASE bench OWNER bench_user");
    pg.psql_super(
        "bench",
        &format!(
            "CREATE TABLE people (id int, name text, ssn text, card text); \
             INSERT INTO people SELECT g, 'person ' || g, \
               lpad((g % 900)::text, 3, '0') || '-' || lpad((g % 90)::text, 2, '0') || '-' || lpad((g % 9000)::text, 4, '0'), \
               '4111' || lpad(g::text, 12, '0') FROM generate_series(1, {rows}) g; \
             ALTER TABLE people OWNER TO bench_user; ANALYZE people;"
        ),
    );
    let work = tempfile::Builder::new()
        .prefix("interceptor-bench-")
        .tempdir()
        .unwrap();
    let creds = work.path().join("credentials.toml");
    write_credentials(
        &creds,
        &format!(
            "[[credential]]\ntarget = \"db\"\nuser = \"bench_user\"\npassword = \"{PW}\"\ndefault = true\n"
        ),
    );
    let config = format!(
        "state_dir = \"{}\"\n[proxy]\nexplicit_target = \"db\"\n\
         [[target]]\nname = \"db\"\nport = {port}\nupstream = \"127.0.0.1:{port}\"\n\
         [credentials]\nfile = \"{}\"\n",
        work.path().join("state").display(),
        creds.display(),
        port = pg.port,
    );
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (raw, raw_audit, _d1) = guarded(&config, false).await;
            let (masked, masked_audit, _d2) = guarded(&config, true).await;
            ready_tx
                .send((raw.addr.port(), masked.addr.port()))
                .unwrap();
            let _ = stop_rx.await;
            raw.stop().await;
            masked.stop().await;
            let _ = raw_audit.close("bench").await;
            let _ = masked_audit.close("bench").await;
        });
    });
    let (raw_port, masked_port) = ready_rx.recv().unwrap();
    let query = "select id, name, ssn, card from people";
    let (mut d, mut r, mut m) = (Vec::new(), Vec::new(), Vec::new());
    let mut samples = (String::new(), String::new());
    let (mut cpu_raw, mut cpu_masked) = (0.0, 0.0);
    for _ in 0..rounds {
        d.push(read_all(pg.port, query).0);
        let c0 = cpu_secs();
        r.push(read_all(raw_port, query).0);
        let c1 = cpu_secs();
        let (secs, sample) = read_all(masked_port, query);
        cpu_masked += cpu_secs() - c1;
        cpu_raw += c1 - c0;
        m.push(secs);
        samples = (
            read_all(
                raw_port,
                "select id, name, ssn, card from people where id = 1",
            )
            .1,
            sample,
        );
    }
    let rate = |s: f64| rows as f64 / s;
    let (direct, raw, masked) = (rate(median(d)), rate(median(r)), rate(median(m)));
    println!("masking: {rows} rows x 4 columns read by psql, rows/s (median of {rounds})");
    println!(
        "  direct {direct:>10.0} | proxy unmasked {raw:>10.0} ({:.3} of direct) | proxy, 2 columns masked + detectors {masked:>10.0} ({:.3} of unmasked, {:.3} of direct)",
        raw / direct,
        masked / raw,
        masked / direct
    );
    println!(
        "  proxy CPU per 1M rows: unmasked {:.2} s, masked {:.2} s",
        cpu_raw / rounds as f64 * 1e6 / rows as f64,
        cpu_masked / rounds as f64 * 1e6 / rows as f64
    );
    println!(
        "  first row unmasked: {} | masked: {}",
        samples.0, samples.1
    );
    assert!(
        !samples.1.contains("4111000000000001"),
        "the masked run returned a raw card number"
    );
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}
