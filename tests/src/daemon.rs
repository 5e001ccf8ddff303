//! `interceptor run` under test: a generated config and root-only credentials
//! file in a temporary directory, a per-daemon bpffs pin directory and proxy
//! port, stdout's JSON events collected. `Drop` kills the daemon by pid and
//! runs `interceptor uninstall --pin-dir` so no program stays attached.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;
use toml::{Table, Value as Toml};

use crate::{
    paths,
    pg::PgCluster,
    process::{self, Outcome},
};

/// The policy set the tests of the data path run under: every caller is
/// `anyone`, and anyone may run whatever the built-in guards let through.
pub const PASS_THROUGH_POLICY: &str = r#"# Pass-through for the end-to-end tests of the data path.
[defaults]
identity = "anyone"
unparseable = "allow"

[[identity]]
name = "anyone"

[[rule]]
id = "pass-through"
identities = ["*"]
action = "allow"
"#;

/// How long `interceptor run` may take to load its programs and listen.
const READY_TIMEOUT: Duration = Duration::from_mins(1);

/// One `[[target]]`.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Target name (credentials, logs, error messages).
    pub name: String,
    /// Destination ranges redirected; empty = any address.
    pub addrs: Vec<String>,
    /// Destination port redirected.
    pub port: u16,
    /// Where the proxy connects; `None` = the original destination.
    pub upstream: Option<SocketAddr>,
}

impl TargetSpec {
    /// The target for `pg`'s own address (127.0.0.1/32, its port).
    pub fn for_cluster(name: &str, pg: &PgCluster) -> Self {
        Self {
            name: name.to_owned(),
            addrs: vec!["127.0.0.1/32".to_owned()],
            port: pg.port(),
            upstream: None,
        }
    }
}

/// One `[[credential]]` of the credentials file.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Target it is for.
    pub target: String,
    /// Database user.
    pub user: String,
    /// Its password (only the daemon ever sees it).
    pub password: String,
    /// Used when the client asks for a user with no credential of its own.
    pub default: bool,
}

/// A statement holding this makes a debug daemon panic in that session.
pub const TEST_PANIC_MARKER: &str = "interceptor-test-panic-7f3a";

/// What to put in the daemon's config.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The `interceptor` binary (debug for tests, release for the bench).
    pub binary: PathBuf,
    /// Watched cgroups (absolute paths).
    pub cgroups: Vec<PathBuf>,
    /// `[[target]]` entries.
    pub targets: Vec<TargetSpec>,
    /// Entries of the credentials file.
    pub credentials: Vec<Credential>,
    /// Also listen on `[::1]` (for redirected IPv6 connects).
    pub listen6: bool,
    /// Also listen on a unix socket (for redirected `.s.PGSQL.*` connects),
    /// `.s.PGSQL.<port of the first target>`.
    pub unix_socket: bool,
    /// `[ebpf] unix_sockets` (`redirect` or `refuse`); `None` = default.
    pub unix_sockets: Option<String>,
    /// `[ebpf] refuse_ports`.
    pub refuse_ports: Vec<u16>,
    /// `[ebpf] unix_allow`.
    pub unix_allow: Option<Vec<String>>,
    /// `[proxy] explicit_target`.
    pub explicit_target: Option<String>,
    /// bpffs pin directory; `None` = a fresh `/sys/fs/bpf/interceptor-test-<pid>-<n>`.
    pub pin_dir: Option<PathBuf>,
    /// Prefix of the generated pin directory name.
    pub name_prefix: String,
    /// Proxy port (v4, and v6 when `listen6`); `None` = a free one.
    pub listen_port: Option<u16>,
    /// Policy directory; `None` = [`PASS_THROUGH_POLICY`] in the daemon's
    /// temporary directory.
    pub policy_dir: Option<PathBuf>,
    /// Audit directory; `None` = `audit/` in the daemon's state directory.
    pub audit_dir: Option<PathBuf>,
    /// Raw TOML appended to the rendered config (whole sections such as
    /// `[token]` / `[[token.issuer]]` that the fields above do not cover).
    pub extra_toml: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            binary: paths::interceptor_bin(),
            cgroups: Vec::new(),
            targets: Vec::new(),
            credentials: Vec::new(),
            listen6: false,
            unix_socket: false,
            unix_sockets: None,
            refuse_ports: Vec::new(),
            unix_allow: None,
            explicit_target: None,
            pin_dir: None,
            name_prefix: "interceptor-test".to_owned(),
            listen_port: None,
            policy_dir: None,
            audit_dir: None,
            extra_toml: String::new(),
        }
    }
}

impl DaemonConfig {
    /// Watches `cgroup`, intercepts `pg` as target `target`, authenticating
    /// upstream as `user`/`password` (the default credential).
    pub fn for_cluster(
        cgroup: &Path,
        pg: &PgCluster,
        target: &str,
        user: &str,
        password: &str,
    ) -> Self {
        Self {
            cgroups: vec![cgroup.to_owned()],
            targets: vec![TargetSpec::for_cluster(target, pg)],
            credentials: vec![Credential {
                target: target.to_owned(),
                user: user.to_owned(),
                password: password.to_owned(),
                default: true,
            }],
            ..Self::default()
        }
    }

    /// The config file's text.
    pub fn render(&self, layout: &Layout) -> String {
        let mut root = Table::new();
        root.insert("state_dir".into(), path_value(&layout.state_dir));
        let mut proxy = Table::new();
        proxy.insert("listen".into(), Toml::String(layout.listen.to_string()));
        if let Some(l6) = layout.listen6 {
            proxy.insert("listen6".into(), Toml::String(l6.to_string()));
        }
        if let Some(sock) = &layout.unix_socket {
            proxy.insert("unix_socket".into(), path_value(sock));
        }
        if let Some(t) = &self.explicit_target {
            proxy.insert("explicit_target".into(), Toml::String(t.clone()));
        }
        root.insert("proxy".into(), Toml::Table(proxy));
        let mut ebpf = Table::new();
        ebpf.insert(
            "cgroups".into(),
            Toml::Array(self.cgroups.iter().map(|c| path_value(c)).collect()),
        );
        ebpf.insert("pin_dir".into(), path_value(&layout.pin_dir));
        if !self.refuse_ports.is_empty() {
            ebpf.insert(
                "refuse_ports".into(),
                Toml::Array(
                    self.refuse_ports
                        .iter()
                        .map(|p| Toml::Integer(i64::from(*p)))
                        .collect(),
                ),
            );
        }
        if let Some(list) = &self.unix_allow {
            ebpf.insert(
                "unix_allow".into(),
                Toml::Array(list.iter().cloned().map(Toml::String).collect()),
            );
        }
        if let Some(u) = &self.unix_sockets {
            ebpf.insert("unix_sockets".into(), Toml::String(u.clone()));
        }
        root.insert("ebpf".into(), Toml::Table(ebpf));
        let targets = self
            .targets
            .iter()
            .map(|t| {
                let mut tt = Table::new();
                tt.insert("name".into(), Toml::String(t.name.clone()));
                tt.insert(
                    "addrs".into(),
                    Toml::Array(t.addrs.iter().cloned().map(Toml::String).collect()),
                );
                tt.insert("port".into(), Toml::Integer(i64::from(t.port)));
                if let Some(u) = t.upstream {
                    tt.insert("upstream".into(), Toml::String(u.to_string()));
                }
                Toml::Table(tt)
            })
            .collect();
        root.insert("target".into(), Toml::Array(targets));
        let mut creds = Table::new();
        creds.insert("file".into(), path_value(&layout.credentials));
        root.insert("credentials".into(), Toml::Table(creds));
        let mut policy = Table::new();
        policy.insert("dir".into(), path_value(&layout.policy_dir));
        root.insert("policy".into(), Toml::Table(policy));
        let mut audit = Table::new();
        audit.insert("dir".into(), path_value(&layout.audit_dir));
        root.insert("audit".into(), Toml::Table(audit));
        let mut log = Table::new();
        log.insert("format".into(), Toml::String("json".into()));
        root.insert("log".into(), Toml::Table(log));
        let mut admin = Table::new();
        admin.insert("socket".into(), path_value(&layout.admin_socket));
        root.insert("admin".into(), Toml::Table(admin));
        let mut text = toml::to_string(&root).expect("a TOML table serializes");
        if !self.extra_toml.is_empty() {
            text.push('\n');
            text.push_str(&self.extra_toml);
            text.push('\n');
        }
        text
    }

    /// The credentials file's text.
    pub fn render_credentials(&self) -> String {
        let list = self
            .credentials
            .iter()
            .map(|c| {
                let mut t = Table::new();
                t.insert("target".into(), Toml::String(c.target.clone()));
                t.insert("user".into(), Toml::String(c.user.clone()));
                t.insert("password".into(), Toml::String(c.password.clone()));
                t.insert("default".into(), Toml::Boolean(c.default));
                Toml::Table(t)
            })
            .collect();
        let mut root = Table::new();
        root.insert("credential".into(), Toml::Array(list));
        toml::to_string(&root).expect("a TOML table serializes")
    }
}

fn path_value(p: &Path) -> Toml {
    Toml::String(p.to_string_lossy().into_owned())
}

/// Where one daemon's files, pins and listeners are.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The config file.
    pub config: PathBuf,
    /// The credentials file (0600).
    pub credentials: PathBuf,
    /// `state_dir` (0700): the generated TLS certificate lands here.
    pub state_dir: PathBuf,
    /// bpffs pin directory.
    pub pin_dir: PathBuf,
    /// IPv4 proxy listener.
    pub listen: SocketAddr,
    /// IPv6 proxy listener.
    pub listen6: Option<SocketAddr>,
    /// Proxy unix socket.
    pub unix_socket: Option<PathBuf>,
    /// Policy directory.
    pub policy_dir: PathBuf,
    /// Audit log directory (inside the state directory, so it survives a
    /// restart of the same daemon).
    pub audit_dir: PathBuf,
    /// The daemon's admin socket (in the state directory).
    pub admin_socket: PathBuf,
}

/// A free port on both 127.0.0.1 and [::1] (the v4 and v6 listeners share it).
fn free_dual_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let port = paths::free_port()?;
        if TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free on both 127.0.0.1 and [::1]")
}

/// Everything the daemon printed, line by line.
#[derive(Default)]
struct Log {
    /// (`true` for stdout, the line).
    lines: Mutex<Vec<(bool, String)>>,
    /// Signalled on every new line and at EOF.
    changed: Condvar,
    /// Drain the pipe but keep nothing (see [`Daemon::discard_output`]).
    discard: std::sync::atomic::AtomicBool,
}

impl Log {
    fn follow(self: &Arc<Self>, stream: impl Read + Send + 'static, stdout: bool) {
        let log = Arc::clone(self);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if log.discard.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                log.lines.lock().expect("log lock").push((stdout, line));
                log.changed.notify_all();
            }
            log.changed.notify_all();
        });
    }
}

/// A running `interceptor run`.
pub struct Daemon {
    /// Settings it was started with (kept for restarts).
    config: DaemonConfig,
    /// Files and listeners.
    layout: Layout,
    /// Temporary directory holding config, credentials and state; removed on drop.
    _dir: tempfile::TempDir,
    /// The running process, if any.
    child: Option<Child>,
    /// Its output.
    log: Arc<Log>,
}

impl Daemon {
    /// Writes the config and credentials and starts the daemon, waiting for
    /// its `ready` event.
    pub fn start(config: DaemonConfig) -> anyhow::Result<Self> {
        let mut daemon = Self::prepare(config)?;
        daemon.spawn()?;
        Ok(daemon)
    }

    /// Writes config and credentials into a fresh directory without starting.
    fn prepare(config: DaemonConfig) -> anyhow::Result<Self> {
        let binary = &config.binary;
        if !binary.exists() {
            bail!(
                "{} does not exist: build it first (`cargo build -p interceptor`; `cargo xtask test` does)",
                binary.display()
            );
        }
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "the end-to-end tests load eBPF programs and need root: run `cargo xtask test` as root"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("interceptor-daemon-")
            .tempdir()?;
        // 0755: clients running as other users reach the proxy's unix socket;
        // the files inside are 0600 and the state directory 0700.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let state_dir = dir.path().join("state");
        fs::create_dir(&state_dir)?;
        fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700))?;
        let port = match config.listen_port {
            Some(p) => p,
            None => free_dual_port()?,
        };
        let audit_dir = config
            .audit_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("audit"));
        let layout = Layout {
            audit_dir,
            admin_socket: state_dir.join("admin.sock"),
            config: dir.path().join("interceptor.toml"),
            credentials: dir.path().join("credentials.toml"),
            state_dir,
            pin_dir: config.pin_dir.clone().unwrap_or_else(|| {
                Path::new("/sys/fs/bpf").join(paths::unique_name(&config.name_prefix))
            }),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            listen6: config
                .listen6
                .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, port))),
            // Named after the first target's port: every redirected unix
            // connect lands on this one socket, and the proxy takes the
            // target from its name.
            unix_socket: config.unix_socket.then(|| {
                dir.path().join(format!(
                    ".s.PGSQL.{}",
                    config.targets.first().map_or(5432, |t| t.port)
                ))
            }),
            policy_dir: config
                .policy_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("policies")),
        };
        if config.policy_dir.is_none() {
            fs::create_dir(&layout.policy_dir)?;
            write_private(
                &layout.policy_dir.join("00-pass-through.toml"),
                PASS_THROUGH_POLICY,
            )?;
        }
        write_private(&layout.credentials, &config.render_credentials())?;
        write_private(&layout.config, &config.render(&layout))?;
        Ok(Self {
            config,
            layout,
            _dir: dir,
            child: None,
            log: Arc::default(),
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.config.binary);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.layout.config)
            .env("RUST_BACKTRACE", "1")
            // Debug builds panic on a statement holding this marker (see
            // `test_panic` in the daemon): a panic must end one session only.
            .env("INTERCEPTOR_TEST_PANIC", TEST_PANIC_MARKER)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the terminal reaches
            // `cargo xtask`, which then stops the daemon and cleans up.
            .process_group(0);
        cmd
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        // One daemon starts at a time in this process: the first one mounts
        // bpffs at /sys/fs/bpf if the host has not, and two racing mounts
        // would stack and hide each other's pins.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The `ready` line must be seen.
        self.log
            .discard
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let first_line = self.log.lines.lock().expect("log lock").len();
        let mut child = self
            .command()
            .spawn()
            .with_context(|| format!("starting {}", self.config.binary.display()))?;
        self.log.follow(child.stdout.take().expect("piped"), true);
        self.log.follow(child.stderr.take().expect("piped"), false);
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            process::check_interrupted()?;
            {
                let lines = self.log.lines.lock().expect("log lock");
                if lines[first_line..].iter().any(|(out, l)| {
                    *out && parse_event(l)
                        .is_some_and(|e| event_name(&e).as_deref() == Some("ready"))
                }) {
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                // Let the readers drain what is left.
                thread::sleep(Duration::from_millis(100));
                bail!(
                    "interceptor run exited with {status} before it was ready:\n{}",
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "interceptor run was not ready after {READY_TIMEOUT:?}:\n{}",
                    self.output()
                );
            }
            let lines = self.log.lines.lock().expect("log lock");
            let _ = self
                .log
                .changed
                .wait_timeout(lines, Duration::from_millis(100));
        }
    }

    /// Kills the daemon (SIGKILL, no chance to clean up: its links stay
    /// pinned) and starts it again with the same config and pin directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Stops the daemon with SIGTERM (a clean stop), waits for it, and
    /// starts it again with the same config and state.
    pub fn restart_clean(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
        self.spawn()
    }

    /// SIGKILLs the daemon by pid and reaps it. Pins stay (fail-closed).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(child.id());
            let _ = child.wait();
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Files, pins and listeners.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The IPv4 proxy listener.
    pub fn listen(&self) -> SocketAddr {
        self.layout.listen
    }

    /// Every JSON event the daemon printed on stdout so far.
    pub fn events(&self) -> Vec<Value> {
        self.log
            .lines
            .lock()
            .expect("log lock")
            .iter()
            .filter(|(out, _)| *out)
            .filter_map(|(_, l)| parse_event(l))
            .collect()
    }

    /// Events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| event_name(e).as_deref() == Some(name))
            .collect()
    }

    /// Waits up to `timeout` for an event that `pred` accepts.
    pub fn wait_event(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Some(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let lines = self.log.lines.lock().expect("log lock");
            let _ = self
                .log
                .changed
                .wait_timeout(lines, (deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// The `session_start` event whose attested process is `pid`.
    pub fn session_start_of(&self, pid: u32, timeout: Duration) -> Option<Value> {
        self.wait_event(timeout, |e| {
            event_name(e).as_deref() == Some("session_start")
                && field(e, "attestation.pid").and_then(|v| v.as_u64()) == Some(u64::from(pid))
        })
    }

    /// From now on, read the daemon's output without keeping it: a
    /// benchmark logs a line per statement, millions of them.
    pub fn discard_output(&self) {
        self.log
            .discard
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Everything the daemon printed (stdout and stderr), for messages and
    /// for checking that secrets never appear.
    pub fn output(&self) -> String {
        let lines = self.log.lines.lock().expect("log lock");
        let mut out = String::new();
        for (stdout, l) in lines.iter() {
            out.push_str(if *stdout { "out| " } else { "err| " });
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// The daemon's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("the daemon is not running")?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// Runs `interceptor run` with `config` when it is expected to fail
    /// (bad config, port in use): returns what it printed and its status,
    /// killing it if it is still running after `timeout`, and removes any
    /// pins it left.
    pub fn run_to_exit(config: DaemonConfig, timeout: Duration) -> anyhow::Result<Outcome> {
        let daemon = Self::prepare(config)?;
        let outcome = process::run(&mut daemon.command(), timeout);
        drop(daemon);
        outcome
    }

    /// Replaces the generated config file with `text` (for malformed-config tests).
    pub fn run_config_text_to_exit(text: &str, timeout: Duration) -> anyhow::Result<Outcome> {
        let daemon = Self::prepare(DaemonConfig::default())?;
        write_private(&daemon.layout.config, text)?;
        let outcome = process::run(&mut daemon.command(), timeout);
        drop(daemon);
        outcome
    }
}

/// `interceptor uninstall --pin-dir DIR` with `binary`, then removes what is left.
pub fn uninstall(binary: &Path, pin_dir: &Path) -> anyhow::Result<()> {
    if !pin_dir.exists() {
        return Ok(());
    }
    let mut cmd = Command::new(binary);
    cmd.arg("uninstall").arg("--pin-dir").arg(pin_dir);
    let out = process::run(&mut cmd, Duration::from_mins(1))?;
    if pin_dir.exists() {
        // Unlinking a pin drops the link; the programs detach with the last reference.
        let _ = fs::remove_dir_all(pin_dir);
    }
    if !out.success() {
        bail!("{out}");
    }
    if pin_dir.exists() {
        bail!("{} still exists after uninstall", pin_dir.display());
    }
    Ok(())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "--- interceptor output ({})\n{}",
                self.layout.config.display(),
                self.output()
            );
        }
        if let Err(e) = uninstall(&self.config.binary, &self.layout.pin_dir) {
            eprintln!(
                "warning: uninstall of {} failed: {e:#}",
                self.layout.pin_dir.display()
            );
        }
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A stdout line as a JSON object, if it is one.
pub fn parse_event(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// `e` with every string that holds a JSON object or array (how some
/// loggers write nested values) replaced by that value, for printing.
pub fn expanded(e: &Value) -> Value {
    match e {
        Value::String(s) if s.starts_with(['{', '[']) => {
            serde_json::from_str::<Value>(s).map_or_else(|_| e.clone(), |v| expanded(&v))
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), expanded(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(expanded).collect()),
        other => other.clone(),
    }
}

/// The `event` field of an event.
pub fn event_name(e: &Value) -> Option<String> {
    field(e, "event").and_then(|v| v.as_str().map(str::to_owned))
}

/// A dotted field of an event (`attestation.pid`), looked up at the top
/// level and, for loggers that nest, under `fields`. A nested object that
/// the logger wrote as a JSON string is looked into as well.
pub fn field(e: &Value, dotted: &str) -> Option<Value> {
    let get = |root: &Value| {
        dotted.split('.').try_fold(root.clone(), |v, k| match v {
            Value::String(s) => serde_json::from_str::<Value>(&s).ok()?.get(k).cloned(),
            v => v.get(k).cloned(),
        })
    };
    get(e).or_else(|| e.get("fields").and_then(get))
}
