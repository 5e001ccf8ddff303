//! Throughput and memory of the pass-through proxy against a real
//! PostgreSQL 15, with pgbench (`-S` select-only; simple and prepared
//! protocol; with and without reconnect per transaction `-C`), compared with
//! connecting straight to the server. Ignored by default (it takes several
//! minutes); run in release mode:
//!
//! ```text
//! cargo test --release -p interceptor --test proxy_bench -- --ignored --nocapture
//! ```
//!
//! `PROXY_BENCH_SECS` (default 10) sets each run's duration,
//! `PROXY_BENCH_ROUNDS` (default 3) the interleaved rounds (medians kept),
//! `PROXY_BENCH_CLIENTS` (default 8) the pgbench clients,
//! `PROXY_BENCH_IDLE` (default 500) the idle sessions for the memory probe,
//! `PROXY_BENCH_RUNTIME=current` runs the proxy on a current-thread runtime
//! (`=<n>`: a multi-thread runtime with n workers),
//! `PROXY_BENCH_QUICK=1` skips the `-C` runs, `PROXY_BENCH_SSLMODE`
//! (default `disable`: the test server has TLS off) is pgbench's sslmode. A plain byte forwarder
//! (`tokio::io::copy_bidirectional`, no framing) is measured too, as the
//! ceiling any proxy hop has on this machine.

mod proxy_support;

use std::{
    io::{Read, Write},
    process::Command,
    sync::Arc,
    time::Duration,
};

use proxy_support::{Captured, Postgres, Proxy, startup_packet, write_credentials};

const BENCH_PW: &str = "bench-pw-Qa8z";

/// Everyone may read and write the pgbench tables (the analysis, the
/// decision and the recording all run; nothing is refused).
const BENCH_POLICY: &str = r#"
[defaults]
identity = "bench"
[[identity]]
name = "bench"
[[rule]]
id = "no-destruction"
identities = ["*"]
commands = ["DROP", "TRUNCATE"]
action = "deny"
[[rule]]
id = "bench"
identities = ["*"]
classes = ["read", "write", "transaction", "session"]
tables = ["public.*", "pg_catalog.*"]
action = "allow"
"#;

/// Statements per second through `sql::analyze` on a realistic mix.
fn analyser_throughput() {
    let mix = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        "UPDATE pgbench_accounts SET abalance = abalance + -4215 WHERE aid = 48213;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -4215, CURRENT_TIMESTAMP);",
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(orders)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;",
        "WITH recent AS (SELECT customer_id, sum(amount) AS total FROM orders WHERE placed_at > now() - interval '30 days' GROUP BY 1) SELECT c.name, r.total FROM customers c JOIN recent r ON r.customer_id = c.id ORDER BY r.total DESC LIMIT 10",
        "BEGIN",
        "COMMIT",
    ];
    let limits = interceptor::sql::Limits::default();
    let n: u32 = 20_000;
    let started = std::time::Instant::now();
    for i in 0..n {
        let _ = std::hint::black_box(interceptor::sql::analyze(
            mix[i as usize % mix.len()],
            &limits,
        ));
    }
    let per_sec = f64::from(n) / started.elapsed().as_secs_f64();
    println!(
        "analyser: {per_sec:.0} statements/s on a mix of {} statements (one core)",
        mix.len()
    );
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs pgbench and returns its tps.
fn pgbench(port: u16, args: &[&str], secs: u32, clients: u32) -> f64 {
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "bench_user",
            "-n",
            "-S",
        ])
        .args([
            "-T",
            &secs.to_string(),
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(4).to_string(),
        ])
        .args(args)
        .arg("bench")
        .env("PGPASSWORD", BENCH_PW)
        // Like for like: the test server has TLS off, so a default
        // (sslmode=prefer) pgbench would talk TLS to the proxy only.
        .env(
            "PGSSLMODE",
            std::env::var("PROXY_BENCH_SSLMODE").unwrap_or_else(|_| "disable".into()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no tps in: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A byte-level TCP forwarder to `port` on its own listener: the cost of
/// the extra hop alone.
async fn forwarder(port: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                else {
                    return;
                };
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    local
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench() {
    let _captured = Captured::install(tracing::Level::INFO);
    let secs = env_or("PROXY_BENCH_SECS", 10);
    let clients = env_or("PROXY_BENCH_CLIENTS", 8);
    let idle = env_or("PROXY_BENCH_IDLE", 500);
    let rounds = env_or("PROXY_BENCH_ROUNDS", 3);
    let pg = Postgres::start(
        "bench-super",
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        &format!("-c max_connections={}", idle + 50),
    );
    pg.psql_super(
        "postgres",
        &format!("CREATE ROLE bench_user LOGIN PASSWORD '{BENCH_PW}'"),
    );
    pg.psql_super("postgres", "CREATE DATABASE bench OWNER bench_user");
    let init = Command::new("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            "10",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "bench_user",
            "bench",
        ])
        .env("PGPASSWORD", BENCH_PW)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let work = tempfile::Builder::new()
        .prefix("interceptor-bench-")
        .tempdir()
        .unwrap();
    let creds = work.path().join("credentials.toml");
    write_credentials(
        &creds,
        &format!(
            "[[credential]]\ntarget = \"db\"\nuser = \"bench_user\"\npassword = \"{BENCH_PW}\"\ndefault = true\n"
        ),
    );
    let pg_port = pg.port;
    let config = format!(
        "state_dir = \"{}\"\n[proxy]\nexplicit_target = \"db\"\n\
         [[target]]\nname = \"db\"\nport = {port}\nupstream = \"127.0.0.1:{port}\"\n\
         [credentials]\nfile = \"{}\"\n",
        work.path().join("state").display(),
        creds.display(),
        port = pg.port,
    );
    // The proxy and the forwarder run on their own thread and runtime;
    // this thread runs pgbench and the idle clients.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = match std::env::var("PROXY_BENCH_RUNTIME").as_deref() {
            Ok("current") => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            Ok(n) if n.parse::<usize>().is_ok() => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n.parse().unwrap())
                .enable_all()
                .build()
                .unwrap(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        rt.block_on(async move {
            let proxy = Proxy::start(&config).await;
            // The same proxy with policy enforcement and audit recording, as
            // the daemon runs it.
            let policy_dir = tempfile::tempdir().unwrap();
            std::fs::write(policy_dir.path().join("bench.toml"), BENCH_POLICY).unwrap();
            let store =
                Arc::new(interceptor::policy::PolicyStore::open(policy_dir.path()).unwrap());
            let audit_dir = tempfile::tempdir().unwrap();
            let audit = interceptor::audit::AuditLog::open(
                &interceptor::audit::AuditConfig::in_dir(audit_dir.path().join("audit")),
            )
            .unwrap();
            let hooks = Arc::new(interceptor::policy::session::PolicyFactory::new(
                store,
                audit.clone(),
            ));
            let guarded = Proxy::start_with_hooks(&config, hooks).await;
            ready_tx
                .send((proxy.addr, forwarder(pg_port).await, guarded.addr))
                .unwrap();
            let _ = stop_rx.await;
            proxy.stop().await;
            guarded.stop().await;
            let _ = audit.close("bench").await;
        });
    });
    let (proxy_addr, forwarder_port, guarded_addr) = ready_rx.recv().unwrap();
    let proxy_port = proxy_addr.port();
    let guarded_port = guarded_addr.port();
    analyser_throughput();

    println!("pgbench -S -c {clients} -T {secs}: tps direct / raw forwarder / interceptor");
    let mut worst: f64 = f64::MAX;
    let quick = std::env::var_os("PROXY_BENCH_QUICK").is_some();
    for (name, args) in [
        ("simple", &["-M", "simple"][..]),
        ("prepared", &["-M", "prepared"][..]),
        ("simple -C", &["-M", "simple", "-C"][..]),
        ("prepared -C", &["-M", "prepared", "-C"][..]),
    ] {
        if quick && args.contains(&"-C") {
            continue;
        }
        // Interleaved rounds, median of each: other load on the machine
        // then hits all three alike.
        let (mut d, mut f, mut p, mut g) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            d.push(pgbench(pg.port, args, secs, clients));
            f.push(pgbench(forwarder_port, args, secs, clients));
            p.push(pgbench(proxy_port, args, secs, clients));
            g.push(pgbench(guarded_port, args, secs, clients));
        }
        let (direct, forwarded, proxied, guarded) = (median(d), median(f), median(p), median(g));
        let ratio = proxied / direct;
        worst = worst.min(ratio);
        println!(
            "{name:>12}: {direct:>8.0} {forwarded:>8.0} ({:.3}) {proxied:>8.0}  ratio {ratio:.3} | policy+audit {guarded:>8.0} ({:.3} of direct, {:.3} of pass-through)",
            forwarded / direct,
            guarded / direct,
            guarded / proxied
        );
    }

    // Idle sessions: RSS growth per open, idle, established session (the
    // raw clients here hold only their kernel sockets).
    let before = vm_rss_kib();
    let mut sessions = Vec::new();
    for _ in 0..idle {
        let mut s = std::net::TcpStream::connect(proxy_addr).unwrap();
        s.write_all(&startup_packet(&[
            ("user", "bench_user"),
            ("database", "bench"),
        ]))
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Read the greeting up to ReadyForQuery ('Z', length 5, status).
        let mut seen = Vec::new();
        let mut buf = [0_u8; 1024];
        while !seen.windows(5).any(|w| w == b"Z\0\0\0\x05") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "greeting cut short");
            seen.extend_from_slice(&buf[..n]);
        }
        sessions.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = vm_rss_kib();
    let per_session = (after.saturating_sub(before)) * 1024 / u64::from(idle);
    println!(
        "idle sessions: {idle}, RSS {before} KiB -> {after} KiB, about {per_session} bytes per session"
    );
    drop(sessions);
    stop_tx.send(()).unwrap();
    server.join().unwrap();
    println!("worst throughput ratio {worst:.3}");
}
