//! Throughput and memory of the pass-through proxy against a real
//! PostgreSQL 15, with pgbench (`-S` select-only; simple and prepared
//! protocol; with and without reconnect per transaction `-C`), compared with
//! connecting straight to the server. Ignored by default (it takes about two
//! minutes); run in release mode:
//!
//! ```text
//! cargo test --release -p interceptor --test proxy_bench -- --ignored --nocapture
//! ```
//!
//! `PROXY_BENCH_SECS` (default 10) sets each run's duration,
//! `PROXY_BENCH_CLIENTS` (default 8) the pgbench clients.

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
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tps in: {stdout}"))
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
    let config = format!(
        "state_dir = \"{}\"\n[proxy]\nexplicit_target = \"db\"\n\
         [[target]]\nname = \"db\"\nport = {port}\nupstream = \"127.0.0.1:{port}\"\n\
         [credentials]\nfile = \"{}\"\n",
        work.path().join("state").display(),
        creds.display(),
        port = pg.port,
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let proxy = rt.block_on(Proxy::start(&config));
    let proxy_port = proxy.addr.port();

    println!("pgbench -S -c {clients} -T {secs}: tps direct / through the proxy");
    let mut worst: f64 = f64::MAX;
    for (name, args) in [
        ("simple", &["-M", "simple"][..]),
        ("prepared", &["-M", "prepared"][..]),
        ("simple -C", &["-M", "simple", "-C"][..]),
        ("prepared -C", &["-M", "prepared", "-C"][..]),
    ] {
        let direct = pgbench(pg.port, args, secs, clients);
        let proxied = pgbench(proxy_port, args, secs, clients);
        let ratio = proxied / direct;
        worst = worst.min(ratio);
        println!("{name:>12}: {direct:>10.0} {proxied:>10.0}  ratio {ratio:.3}");
    }

    // Idle sessions: RSS growth per open, idle, established session (the
    // raw clients here hold only their kernel sockets).
    let before = vm_rss_kib();
    let mut sessions = Vec::new();
    for _ in 0..idle {
        let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
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
    rt.block_on(proxy.stop());
    println!("worst throughput ratio {worst:.3}");
}
