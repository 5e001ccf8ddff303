//! End-to-end: a real Prometheus (Debian's, started here on loopback)
//! scrapes the daemon's `[metrics]` endpoint; a refused statement moves the
//! refusal counter by one, the decision histogram has samples, and the
//! exposition holds no SQL or values.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use interceptor_tests::Stack;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// GET `path` from `addr`: (status, body); `None` while nothing listens.
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    assert!(addr.ip().is_loopback());
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path).unwrap_or_else(|| panic!("nothing answers on {addr}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Prometheus server, stopped (by its pid) when dropped; its directory
/// (config, data) goes with it.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus(scrape: SocketAddr, web: SocketAddr) -> Prometheus {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: run `cargo xtask setup`"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: interceptor\n    static_configs:\n      - targets: ['{scrape}']\n"
        ),
    )
    .unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Prometheus { child, _dir: dir }
}

/// The value of PromQL `query` once Prometheus has one, waiting a while.
fn query(web: SocketAddr, query: &str, want: impl Fn(f64) -> bool) -> f64 {
    let encoded: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((status, body)) = try_get(web, &format!("/api/v1/query?query={encoded}")) {
            if status == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if let Some(x) = v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    && want(x)
                {
                    return x;
                }
                last = body;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("Prometheus never answered `{query}` as wanted; last answer: {last}");
}

#[test]
fn a_real_prometheus_scrapes_refusals_and_latency() {
    let port = free_port();
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = Stack::start_with(|c, _| c.extra_toml = format!("[metrics]\nlisten = \"{metrics}\"\n"))
        .unwrap();
    assert_eq!(get(metrics, "/healthz").0, 200);
    assert_eq!(get(metrics, "/readyz").0, 200);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prom = prometheus(metrics, web);
    let rule = "builtin.dangerous-function";
    // Prometheus has scraped the endpoint before the statement.
    query(web, "up{job=\"interceptor\"}", |x| x == 1.0);
    let before = query(
        web,
        &format!("sum(interceptor_refusals_total{{rule=\"{rule}\"}}) or vector(0)"),
        |_| true,
    );

    let mut psql = s.psql(
        &s.conninfo(),
        &[
            "select 'canary-7731-value' as c",
            "select pg_read_file('/etc/hostname')",
        ],
    );
    psql.args(["-v", "ON_ERROR_STOP=0"]);
    let out = s.run_inside(&mut psql).unwrap();
    assert!(out.stderr.contains(rule), "{out}");

    let after = query(
        web,
        &format!("sum(interceptor_refusals_total{{rule=\"{rule}\"}})"),
        |x| x >= before + 1.0,
    );
    assert_eq!(after, before + 1.0, "one refusal, one increment");
    let samples = query(web, "sum(interceptor_decision_seconds_count)", |x| x >= 2.0);
    assert!(samples >= 2.0);
    query(
        web,
        "interceptor_sessions_total{route=\"redirected\"}",
        |x| x >= 1.0,
    );

    // Nothing of the statements in the exposition.
    let (status, text) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    for canary in ["canary-7731", "pg_read_file", "/etc/hostname", "select"] {
        assert!(!text.contains(canary), "`{canary}` in the metrics:\n{text}");
    }
}
