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
    time::Duration,
};

use proxy_support::{Captured, Postgres, Proxy, startup_packet, write_credentials};

const BENCH_PW: &str = "bench-pw-Qa8z";

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs pgbench and returns its tps.
fn pgbench(port: u16, args: &[&str], secs: u32, clients: u32) -> f64 {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "bench_user", "-n", "-S"])
        .args(["-T", &secs.to_string(), "-c", &clients.to_string(), "-j", &clients.min(4).to_string()])
        .args(args)
        .arg("bench")
        .env("PGPASSWORD", BENCH_PW)
        // Like for like: the test server has TLS off, so a default
        // (sslmode=prefer) pgbench would talk TLS to the proxy only.
        .env("PGSSLMODE", std::env::var("PROXY_BENCH_SSLMODE").unwrap_or_else(|_| "disable".into()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tps in: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
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
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
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
        .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
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
    pg.psql_super("postgres", &format!("CREATE ROLE bench_user LOGIN PASSWORD '{BENCH_PW}'"));
    pg.psql_super("postgres", "CREATE DATABASE bench OWNER bench_user");
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", "-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "bench_user", "bench"])
        .env("PGPASSWORD", BENCH_PW)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    let work = tempfile::Builder::new().prefix("interceptor-bench-").tempdir().unwrap();
    let creds = work.path().join("credentials.toml");
    write_credentials(
        &creds,
        &format!("[[credential]]\ntarget = \"db\"\nuser = \"bench_user\"\npassword = \"{BENCH_PW}\"\ndefault = true\n"),
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
            Ok("current") => tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            Ok(n) if n.parse::<usize>().is_ok() => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n.parse().unwrap())
                .enable_all()
                .build()
                .unwrap(),
            _ => tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap(),
        };
        rt.block_on(async move {
            let proxy = Proxy::start(&config).await;
            ready_tx.send((proxy.addr, forwarder(pg_port).await)).unwrap();
            let _ = stop_rx.await;
            proxy.stop().await;
        });
    });
    let (proxy_addr, forwarder_port) = ready_rx.recv().unwrap();
    let proxy_port = proxy_addr.port();

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
        let (mut d, mut f, mut p) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            d.push(pgbench(pg.port, args, secs, clients));
            f.push(pgbench(forwarder_port, args, secs, clients));
            p.push(pgbench(proxy_port, args, secs, clients));
        }
        let (direct, forwarded, proxied) = (median(d), median(f), median(p));
        let ratio = proxied / direct;
        worst = worst.min(ratio);
        println!(
            "{name:>12}: {direct:>8.0} {forwarded:>8.0} ({:.3}) {proxied:>8.0}  ratio {ratio:.3}",
            forwarded / direct
        );
    }

    // Idle sessions: RSS growth per open, idle, established session (the
    // raw clients here hold only their kernel sockets).
    let before = vm_rss_kib();
    let mut sessions = Vec::new();
    for _ in 0..idle {
        let mut s = std::net::TcpStream::connect(proxy_addr).unwrap();
        s.write_all(&startup_packet(&[("user", "bench_user"), ("database", "bench")])).unwrap();
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
    println!("idle sessions: {idle}, RSS {before} KiB -> {after} KiB, about {per_session} bytes per session");
    drop(sessions);
    stop_tx.send(()).unwrap();
    server.join().unwrap();
    println!("worst throughput ratio {worst:.3}");
}
