//! `cargo xtask bench`: how much the pass-through costs (a benchmark, not a
//! timed test; run it on an otherwise idle machine).
//!
//! One PostgreSQL cluster (pgbench scale `--scale`), and pgbench select-only
//! (`-S`, `--clients` clients, `--threads` threads, `--duration` seconds) over
//! four paths:
//!
//! | path | how pgbench connects |
//! | --- | --- |
//! | direct | to the database's address, with the password |
//! | pgbouncer | to Debian's pgbouncer (session pooling, SCRAM against the database) |
//! | proxy port | to the interceptor's listener (`explicit_target`), no password |
//! | eBPF redirect | from a watched cgroup to the database's own address, no password |
//!
//! for the simple and the extended (`-M prepared`) protocol and for a new
//! connection per transaction (`-C`). Then memory per idle session: the
//! daemon's RSS before and after `--sessions` idle sessions through it.
//! Then approvals: pgbench through a daemon with an `approve` rule, without
//! and with `--holds` statements held for approval (each on its own open
//! session), measured in the same run.
//! The table goes to stdout and to `target/bench.txt`.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use interceptor_tests::{
    Daemon, DaemonConfig, PgCluster, PgOptions, TestCgroup, paths, pg::random_hex, process,
};

use crate::{setup, sh};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per pgbench run.
    #[arg(long, default_value_t = 12)]
    duration: u32,
    /// pgbench clients (-c).
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// pgbench threads (-j).
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// pgbench scale factor (-s) of the initial data.
    #[arg(long, default_value_t = 10)]
    scale: u32,
    /// Idle sessions opened through the proxy for the memory figure.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Statements held for approval while pgbench runs (the approvals figure).
    #[arg(long, default_value_t = 200)]
    holds: usize,
    /// Only the approvals figure (pgbench with and without pending holds).
    #[arg(long)]
    approvals_only: bool,
    /// Rounds of the approvals figure (none, idle, held in turn).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

/// How pgbench reaches the database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Pgbouncer,
    ProxyPort,
    Redirect,
}

impl Path {
    const ALL: [Path; 4] = [
        Path::Direct,
        Path::Pgbouncer,
        Path::ProxyPort,
        Path::Redirect,
    ];

    fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Pgbouncer => "pgbouncer",
            Path::ProxyPort => "interceptor port",
            Path::Redirect => "eBPF redirect",
        }
    }
}

/// Protocol variants measured.
const MODES: [(&str, &[&str]); 3] = [
    ("simple", &["-M", "simple"]),
    ("prepared", &["-M", "prepared"]),
    ("simple -C", &["-M", "simple", "-C"]),
];

const USER: &str = "bench";

/// Everything the runs need.
struct Rig<'a> {
    args: &'a Args,
    pg: &'a PgCluster,
    password: &'a str,
    bouncer: &'a Pgbouncer,
    daemon: &'a Daemon,
    cg: &'a TestCgroup,
}

impl Rig<'_> {
    /// One pgbench run; returns its tps.
    fn pgbench(&self, path: Path, mode: &[&str], seconds: u32) -> anyhow::Result<f64> {
        let port = match path {
            Path::Direct | Path::Redirect => self.pg.port(),
            Path::Pgbouncer => self.bouncer.port,
            Path::ProxyPort => self.daemon.listen().port(),
        };
        let a = self.args;
        let mut cmd = Command::new(self.pg.bindir().join("pgbench"));
        cmd.args(["-n", "-S", "-h", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-U", USER])
            .args([
                "-c",
                &a.clients.to_string(),
                "-j",
                &a.threads.to_string(),
                "-T",
                &seconds.to_string(),
            ])
            .args(mode)
            .arg("bench")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            // Like for like: the proxy offers TLS, the server and pgbouncer
            // here do not; libpq's default `prefer` would encrypt one path only.
            .env("PGSSLMODE", "disable");
        if matches!(path, Path::Direct | Path::Pgbouncer) {
            cmd.env("PGPASSWORD", self.password);
        }
        let timeout = Duration::from_secs(u64::from(seconds) + 120);
        let out = if path == Path::Redirect {
            self.cg.run(&mut cmd, timeout)?
        } else {
            process::run(&mut cmd, timeout)?
        };
        let out = out
            .ok()
            .with_context(|| format!("pgbench over {}", path.label()))?;
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no `tps = ` in pgbench's output:\n{}", out.stdout))
    }
}

/// Debian's pgbouncer on loopback, as the `postgres` user, session pooling,
/// SCRAM towards clients and the database. `Drop` stops it by pid.
struct Pgbouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Pgbouncer {
    fn start(pg: &PgCluster, user: &str, password: &str, pool: u32) -> anyhow::Result<Self> {
        let (uid, gid) = process::user_ids("postgres")?;
        let dir = tempfile::Builder::new()
            .prefix("interceptor-pgbouncer-")
            .tempdir()?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        let port = paths::free_port()?;
        let ini = dir.path().join("pgbouncer.ini");
        let userlist = dir.path().join("userlist.txt");
        let text = format!(
            "[databases]\n\
             bench = host=127.0.0.1 port={pg_port} dbname=bench\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {userlist}\n\
             pool_mode = session\n\
             max_client_conn = 200\n\
             default_pool_size = {pool}\n\
             logfile = {log}\n\
             log_connections = 0\n\
             log_disconnections = 0\n",
            pg_port = pg.port(),
            userlist = userlist.display(),
            log = dir.path().join("pgbouncer.log").display(),
        );
        for (file, content) in [
            (&ini, text),
            (&userlist, format!("\"{user}\" \"{password}\"\n")),
        ] {
            fs::write(file, content)?;
            fs::set_permissions(file, fs::Permissions::from_mode(0o600))?;
            std::os::unix::fs::chown(file, Some(uid), Some(gid))?;
        }
        let mut cmd = Command::new("pgbouncer");
        cmd.arg(&ini)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        process::as_user(&mut cmd, "postgres")?;
        let child = cmd.spawn().context("starting pgbouncer")?;
        let log = dir.path().join("pgbouncer.log");
        let mut bouncer = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            process::check_interrupted()?;
            if let Some(status) = bouncer.child.try_wait()? {
                bail!(
                    "pgbouncer exited with {status}: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("pgbouncer is not listening on {port}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(bouncer)
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        process::terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                process::kill(self.child.id());
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Memory per idle session: RSS before and after `n` sessions redirected
/// from the watched cgroup (tokio-postgres clients held open by
/// `pgclient idle`, connecting to the database's own address).
fn idle_memory(
    daemon: &Daemon,
    pg: &PgCluster,
    cg: &TestCgroup,
    pgclient: &std::path::Path,
    n: usize,
) -> anyhow::Result<(u64, u64)> {
    let before = daemon.rss_kib()?;
    let conninfo = format!("host=127.0.0.1 port={} dbname=bench user={USER}", pg.port());
    let mut child = cg
        .spawn(
            Command::new(pgclient)
                .args(["idle", &conninfo, &n.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .context("starting pgclient idle")?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let result = (|| {
        let deadline = Instant::now() + Duration::from_mins(3);
        loop {
            process::check_interrupted()?;
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line == format!("open {n}") => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("pgclient idle exited early"),
            }
            if Instant::now() > deadline {
                bail!("{n} idle sessions were not open after 180s");
            }
        }
        process::sleep(Duration::from_secs(2))?;
        let backends = pg.backends_of(USER)?;
        if backends < n {
            bail!(
                "only {backends} backends for {n} sessions: the sessions did not all reach the database"
            );
        }
        daemon.rss_kib()
    })();
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if matches!(child.try_wait(), Ok(None)) {
        process::kill(pid);
        let _ = child.wait();
    }
    Ok((before, result?))
}

fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |l| l.trim_start_matches([' ', '\t', ':']));
    let cores = thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem} RAM, kernel {}",
        kernel.trim()
    )
}

/// The 1-minute load average: other work on the machine skews every figure.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the bench loads eBPF programs and creates a cgroup: run `cargo xtask bench` as root"
        );
    }
    setup::run()?;
    sh::run(&mut sh::cargo(&[
        "build",
        "--release",
        "-p",
        "interceptor",
        "-p",
        "interceptor-tests",
        "--bins",
    ]))?;
    let release = paths::target_dir().join("release");

    let max_connections = u32::try_from(args.sessions.max(args.holds))? + 4 * args.clients + 64;
    let pg = PgCluster::start_with(&PgOptions {
        max_connections,
        ..PgOptions::default()
    })?;
    let password = random_hex(16)?;
    pg.create_user_db(USER, &password, "bench")?;
    println!("bench: pgbench -i -s {} on {}", args.scale, pg.addr());
    let init = process::run(
        Command::new(pg.bindir().join("pgbench"))
            .args(["-i", "-q", "-s", &args.scale.to_string(), "-h", "127.0.0.1"])
            .args(["-p", &pg.port().to_string(), "-U", USER, "bench"])
            .env("PGPASSWORD", &password),
        Duration::from_mins(10),
    )?;
    init.ok().context("pgbench -i")?;

    let bouncer = Pgbouncer::start(&pg, USER, &password, args.clients * 2)?;
    if args.approvals_only {
        let holds = approval_holds(args, &pg, &password, &bouncer, &release)?;
        let text = format!(
            "interceptor bench (approvals only), {}\nload average (1 min) {}\n\n{holds}",
            machine(),
            load_average()
        );
        println!("\n{text}");
        fs::write(paths::target_dir().join("bench-approvals.txt"), &text)?;
        return Ok(());
    }
    let cg = TestCgroup::with_prefix("interceptor-bench")?;
    let mut config = DaemonConfig {
        binary: release.join("interceptor"),
        explicit_target: Some("bench".into()),
        name_prefix: "interceptor-bench".into(),
        ..DaemonConfig::for_cluster(cg.path(), &pg, "bench", USER, &password)
    };
    // Connections made straight to the proxy port have no original
    // destination: the target names its upstream.
    config.targets[0].upstream = Some(pg.addr());
    let daemon = Daemon::start(config)?;
    // One JSON line per statement: read, not kept.
    daemon.discard_output();
    println!(
        "bench: pgbouncer on 127.0.0.1:{}, interceptor (release) on {}, watched cgroup {}",
        bouncer.port,
        daemon.listen(),
        cg.name()
    );

    // Memory first, on a fresh daemon: nothing retained from earlier runs.
    println!(
        "bench: opening {} idle sessions through the eBPF redirect",
        args.sessions
    );
    let (rss_before, rss_after) =
        idle_memory(&daemon, &pg, &cg, &release.join("pgclient"), args.sessions)?;

    let load_before = load_average();
    let rig = Rig {
        args,
        pg: &pg,
        password: &password,
        bouncer: &bouncer,
        daemon: &daemon,
        cg: &cg,
    };
    println!("bench: warm-up");
    for path in Path::ALL {
        rig.pgbench(path, &["-M", "simple"], 2)?;
    }
    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();
    for (mode, flags) in MODES {
        let mut tps = Vec::new();
        for path in Path::ALL {
            let t = rig.pgbench(path, flags, args.duration)?;
            println!("bench: {mode:<10} {:<17} {t:>10.1} tps", path.label());
            tps.push(t);
        }
        results.push((mode, tps));
    }

    let holds = approval_holds(args, &pg, &password, &bouncer, &release)?;

    let mut table = String::new();
    writeln!(table, "interceptor bench, {}", machine())?;
    writeln!(
        table,
        "load average (1 min) before the runs {load_before}, after {}; other work on the machine skews the figures",
        load_average()
    )?;
    writeln!(
        table,
        "pgbench -S -c {} -j {} -T {} (scale {}), PostgreSQL on 127.0.0.1, interceptor release build\n",
        args.clients, args.threads, args.duration, args.scale
    )?;
    writeln!(
        table,
        "| protocol   | direct tps | pgbouncer tps (ratio) | interceptor port tps (ratio) | eBPF redirect tps (ratio) | redirect / port |"
    )?;
    writeln!(table, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for (mode, tps) in &results {
        let direct = tps[0];
        let cell = |t: f64| format!("{t:.0} ({:.3})", t / direct);
        writeln!(
            table,
            "| {mode:<10} | {direct:.0} | {} | {} | {} | {:.3} |",
            cell(tps[1]),
            cell(tps[2]),
            cell(tps[3]),
            tps[3] / tps[2]
        )?;
    }
    #[allow(clippy::cast_precision_loss)] // KiB and session counts are far below 2^52
    let per_session = rss_after.saturating_sub(rss_before) as f64 / args.sessions as f64;
    writeln!(
        table,
        "\nidle sessions redirected through the proxy: {}; daemon RSS {rss_before} KiB before, {rss_after} KiB after: {per_session:.1} KiB per session",
        args.sessions
    )?;
    writeln!(table, "\n{holds}")?;
    println!("\n{table}");
    let file: PathBuf = paths::target_dir().join("bench.txt");
    fs::write(&file, &table)?;
    // Stop this run's daemon, cluster and pgbouncer before the in-process
    // benches, so they measure on a quiet machine.
    drop(rig);
    drop((daemon, bouncer, pg, cg));
    let more = in_process_benches()?;
    fs::write(&file, format!("{table}\n{more}"))?;
    println!("bench: written to {}", file.display());
    Ok(())
}

/// Policy of the approvals figure: DELETE needs approval, the rest passes.
const HOLD_POLICY: &str = r#"
[defaults]
identity = "anyone"
unparseable = "allow"

[[identity]]
name = "anyone"

[[rule]]
id = "deletes-need-approval"
identities = ["*"]
commands = ["DELETE"]
action = "approve"
approval = { expires_after = "2h" }

[[rule]]
id = "pass-through"
identities = ["*"]
action = "allow"
"#;

/// pgbench through the proxy port of a daemon with an `approve` rule:
/// without holds, with `--holds` statements held for approval on their own
/// open sessions, and without again (same daemon, same run). Unrelated
/// sessions must not slow down while statements wait for people.
fn approval_holds(
    args: &Args,
    pg: &PgCluster,
    password: &str,
    bouncer: &Pgbouncer,
    release: &std::path::Path,
) -> anyhow::Result<String> {
    let policy = tempfile::Builder::new()
        .prefix("interceptor-bench-policy-")
        .tempdir()?;
    fs::write(policy.path().join("policy.toml"), HOLD_POLICY)?;
    let cg = TestCgroup::with_prefix("interceptor-bench-holds")?;
    let mut config = DaemonConfig {
        binary: release.join("interceptor"),
        explicit_target: Some("bench".into()),
        name_prefix: "interceptor-bench-holds".into(),
        policy_dir: Some(policy.path().to_owned()),
        extra_toml: "[approvals]\ndefault_expiry = \"2h\"\n".into(),
        ..DaemonConfig::for_cluster(cg.path(), pg, "bench", USER, password)
    };
    config.targets[0].upstream = Some(pg.addr());
    let daemon = Daemon::start(config)?;
    daemon.discard_output();
    let rig = Rig {
        args,
        pg,
        password,
        bouncer,
        daemon: &daemon,
        cg: &cg,
    };
    let run = |label: &str| -> anyhow::Result<f64> {
        let t = rig.pgbench(Path::ProxyPort, &["-M", "simple"], args.duration)?;
        println!("bench: approvals, {label:<26} {t:>10.1} tps");
        Ok(t)
    };
    rig.pgbench(Path::ProxyPort, &["-M", "simple"], 2)?;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=bench user={USER} sslmode=disable",
        daemon.listen().port()
    );
    let n = args.holds;
    // Control: as many sessions open but idle (each is a backend too), to
    // tell what the holds cost beyond open sessions.
    let with_idle = || -> anyhow::Result<f64> {
        let mut idle = Command::new(release.join("pgclient"))
            .args(["idle", &conninfo, &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting pgclient idle")?;
        let opened = {
            let mut line = String::new();
            let stdout = idle.stdout.take().expect("piped");
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        };
        let result = match opened {
            Ok(l) if l.trim() == format!("open {n}") => run(&format!("{n} idle sessions")),
            Ok(l) => Err(anyhow::anyhow!("pgclient idle said `{}`", l.trim())),
            Err(e) => Err(e.into()),
        };
        drop(idle.stdin.take());
        let _ = idle.wait();
        result
    };
    let pending = || -> anyhow::Result<usize> {
        let out = Command::new(release.join("interceptor"))
            .args(["approvals", "list", "--json", "--socket"])
            .arg(&daemon.layout().admin_socket)
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(v["requests"].as_array().map_or(0, Vec::len))
    };
    let with_holds = || -> anyhow::Result<f64> {
        let mut holder = Command::new(release.join("pgclient"))
            .args([
                "hold",
                &conninfo,
                &n.to_string(),
                "DELETE FROM pgbench_history WHERE aid < 0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting pgclient hold")?;
        let deadline = Instant::now() + Duration::from_mins(2);
        let result = (|| {
            loop {
                process::check_interrupted()?;
                let held = pending()?;
                if held >= n {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("only {held} of {n} statements were held after 120s");
                }
                thread::sleep(Duration::from_millis(200));
            }
            let t = run(&format!("{n} held statements"))?;
            let still = pending()?;
            if still < n {
                bail!("holds ended during the run: {still} of {n} still pending");
            }
            Ok(t)
        })();
        // Closing the sessions withdraws the requests.
        drop(holder.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(holder.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if matches!(holder.try_wait(), Ok(None)) {
            process::kill(holder.id());
            let _ = holder.wait();
        }
        while pending()? > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        result
    };
    // Rounds of (none, idle, held): drift and other work on the machine
    // touch all three alike.
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        let none = run(&format!("round {round}: no other sessions"))?;
        let idle = with_idle()?;
        let held = with_holds()?;
        rows.push((none, idle, held));
    }
    let mut table = format!(
        "approvals: pgbench -S -M simple (-c {} -T {}) through the interceptor port of a daemon with an approve rule,\n\
         beside {n} other sessions that are idle or each hold a statement waiting for approval (same run, rounds in turn):\n\
         | round | no other sessions tps | {n} idle tps | {n} held tps | held / none | held / idle |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
        args.clients, args.duration
    );
    for (i, (none, idle, held)) in rows.iter().enumerate() {
        writeln!(
            table,
            "| {} | {none:.0} | {idle:.0} | {held:.0} | {:.3} | {:.3} |",
            i + 1,
            held / none,
            held / idle
        )?;
    }
    let sum = |f: &dyn Fn(&(f64, f64, f64)) -> f64| rows.iter().map(f).sum::<f64>();
    let count = f64::from(args.rounds.max(1));
    writeln!(
        table,
        "| all | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
        sum(&|r| r.0) / count,
        sum(&|r| r.1) / count,
        sum(&|r| r.2) / count,
        sum(&|r| r.2) / sum(&|r| r.0),
        sum(&|r| r.2) / sum(&|r| r.1)
    )?;
    Ok(table)
}

/// The benches that run the proxy and the audit log inside a test binary:
/// pass-through proxy vs the same proxy with policy and recording (same
/// run), the analyser's statements per second, audit records per second
/// with and without fsync per batch.
fn in_process_benches() -> anyhow::Result<String> {
    let mut cmd = sh::cargo(&[
        "test",
        "--release",
        "-p",
        "interceptor",
        "--test",
        "proxy_bench",
        "--test",
        "audit_bench",
        "--test",
        "mask_bench",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("PROXY_BENCH_ROUNDS", "1")
        .env("PROXY_BENCH_SECS", "8")
        .env("PROXY_BENCH_IDLE", "200");
    let out = cmd.output().context("running the in-process benches")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!(
            "in-process benches failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("running ") && !l.starts_with("test ") && !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect())
}
