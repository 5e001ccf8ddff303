//! Privileged test of the kernel side: real programs, real cgroups, real
//! sockets. Needs root, cgroup v2 and a kernel with BTF (6.7+ for the unix
//! socket hook); skipped when not root.
//!
//! Safety rules this test keeps: traffic only on loopback; programs attached
//! only to cgroups this test creates (`interceptor-test-<pid>-*`); its cgroups
//! and bpffs pins are removed by a guard even when an assertion fails; only
//! processes it started are killed, by pid.

use std::{
    io::{BufRead, BufReader, ErrorKind},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::{
        fs::MetadataExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use interceptor::{
    config::Config,
    ebpf::{self, ConnectRecord, Redirector},
};

/// Connects as the arguments say and reports on one line:
/// `ok <peer host> <peer port> <local host> <local port>` / `ok` (unix) or
/// `err <errno>`; then holds the connection until the other side closes it.
/// `late <cgroup>` as first arguments: create the socket first, then move
/// into `<cgroup>`, then connect.
const CLIENT: &str = r#"
import socket, sys
args = sys.argv[1:]
late = None
if args[0] == "late":
    late, args = args[1], args[2:]
kind = args[0]
fam = {"tcp4": socket.AF_INET, "tcp6": socket.AF_INET6, "unix": socket.AF_UNIX}[kind]
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(10)
if late:
    with open(late + "/cgroup.procs", "w") as f:
        f.write(str(__import__("os").getpid()))
try:
    s.connect(args[1] if kind == "unix" else (args[1], int(args[2])))
except OSError as e:
    print("err", e.errno, flush=True)
    sys.exit(0)
if kind == "unix":
    print("ok", flush=True)
else:
    p, l = s.getpeername(), s.getsockname()
    print("ok", p[0], p[1], l[0], l[1], flush=True)
try:
    s.recv(1)
except OSError:
    pass
"#;

const EPERM: &str = "err 1";
const ECONNREFUSED: &str = "err 111";

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A started client process and its output; killed (by pid) and reaped on
/// drop, so a failing assertion leaves no process in our cgroups.
struct Client {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Client {
    /// Runs the client script, inside `cgroup` if given (the shell moves
    /// itself there, then execs python: same pid).
    fn spawn(cgroup: Option<&Path>, args: &[&str]) -> Self {
        let mut cmd = match cgroup {
            Some(cg) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
                    .arg(cg)
                    .arg(python());
                c
            }
            None => Command::new(python()),
        };
        let mut child = cmd
            .arg("-c")
            .arg(CLIENT)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    /// The client's report line.
    fn report(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // `Child::kill` does not signal a child that was already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Owns the cgroups and pin directories the test creates and removes them on
/// drop, failure included. Declared before any `Client`, so it is dropped
/// after them: the cgroups are empty by then.
struct Env {
    /// Cgroups created, parents first.
    cgroups: Vec<PathBuf>,
    pin_dirs: Vec<PathBuf>,
}

impl Env {
    fn new() -> Self {
        Self {
            cgroups: Vec::new(),
            pin_dirs: Vec::new(),
        }
    }

    /// Creates a cgroup of ours below the cgroup v2 mount (or below `parent`).
    fn cgroup(&mut self, parent: Option<&Path>, name: &str) -> PathBuf {
        let base = parent.map_or_else(|| ebpf::cgroup2_mount().unwrap(), Path::to_owned);
        let path = base.join(format!("interceptor-test-{}-{name}", std::process::id()));
        assert!(path.starts_with(ebpf::cgroup2_mount().unwrap()));
        std::fs::create_dir(&path).unwrap();
        self.cgroups.push(path.clone());
        path
    }

    fn pin_dir(&mut self, name: &str) -> PathBuf {
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/interceptor-test-{}-{name}",
            std::process::id()
        ));
        self.pin_dirs.push(path.clone());
        path
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for dir in &self.pin_dirs {
            if let Err(e) = ebpf::uninstall(dir) {
                eprintln!("cleanup: uninstall {}: {e}", dir.display());
            }
        }
        for cg in self.cgroups.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(cg) {
                if e.kind() == ErrorKind::NotFound {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("cleanup: rmdir {}: {e}", cg.display());
                    break;
                }
                sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One client run to its report, then closed and reaped.
fn run(cgroup: Option<&Path>, args: &[&str]) -> String {
    Client::spawn(cgroup, args).report()
}

fn accept_tcp(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok(s) => return Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                sleep(Duration::from_millis(10));
            }
            Err(_) => return None,
        }
    }
}

/// Whether a connection is waiting on `listener` (no waiting).
fn pending_tcp(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_ok()
}

fn accept_unix(listener: &UnixListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok(_) => return true,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                sleep(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
}

fn pending_unix(listener: &UnixListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_ok()
}

fn config(text: &str) -> Config {
    Config::parse(Path::new("ebpf_redirect.toml"), text).unwrap()
}

fn privileged() -> bool {
    if !nix::unistd::geteuid().is_root() || ebpf::cgroup2_mount().is_err() {
        eprintln!("skipped: needs root and cgroup v2");
        return false;
    }
    true
}

fn assert_record(rec: &ConnectRecord, dst: &str, pid: u32, cgroup: &Path) {
    assert_eq!(rec.orig_dst, dst.parse::<SocketAddr>().unwrap(), "{rec:?}");
    assert_eq!((rec.pid, rec.tgid), (pid, pid), "{rec:?}");
    assert_eq!(rec.uid, nix::unistd::getuid().as_raw(), "{rec:?}");
    assert_eq!(rec.gid, nix::unistd::getgid().as_raw(), "{rec:?}");
    assert_eq!(
        rec.cgroup_id,
        std::fs::metadata(cgroup).unwrap().ino(),
        "{rec:?}"
    );
    assert!(rec.comm.starts_with("python3"), "{rec:?}");
}

/// The redirected connection of `client`: accepted on `proxy`, its record
/// taken, the client's report checked against `reported_peer`.
fn redirected(
    redirector: &Redirector,
    proxy: &TcpListener,
    cgroup: &Path,
    args: &[&str],
    orig: &str,
    reported_peer: &str,
) {
    let mut c = Client::spawn(Some(cgroup), args);
    let (stream, peer) =
        accept_tcp(proxy).unwrap_or_else(|| panic!("{args:?}: nothing reached the proxy"));
    let rec = redirector
        .take(peer)
        .unwrap_or_else(|| panic!("{args:?}: no record for {peer}"));
    assert_record(&rec, orig, c.pid(), cgroup);
    assert_eq!(redirector.take(peer), None, "a record is taken once");
    let line = c.report();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.first(), Some(&"ok"), "{args:?}: {line}");
    assert_eq!(
        format!("{} {}", fields[1], fields[2]),
        reported_peer,
        "getpeername: {line}"
    );
    assert_eq!(
        fields[4],
        peer.port().to_string(),
        "client local port = proxy's peer port: {line}"
    );
    drop(stream);
}

#[test]
fn cgroup_mode_redirects_records_and_fails_closed() {
    if !privileged() {
        return;
    }
    let mut env = Env::new();
    let cg = env.cgroup(None, "cg");
    let pin_dir = env.pin_dir("cg");

    // The "database": a real listener on a loopback address nothing else uses.
    let db = TcpListener::bind("127.0.0.42:0").unwrap();
    let port = db.local_addr().unwrap().port();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pg_sock = tmp.path().join(".s.PGSQL.5432");
    let proxy_sock = tmp.path().join("proxy.sock");
    let pg_unix = UnixListener::bind(&pg_sock).unwrap();
    let proxy_unix = UnixListener::bind(&proxy_sock).unwrap();

    let base = format!(
        "[ebpf]\ncgroups = [\"{cg}\"]\npin_dir = \"{pins}\"\n\
         [[target]]\nname = \"db\"\naddrs = [\"127.0.0.42/32\", \"::1/128\"]\nport = {port}\n",
        cg = cg.display(),
        pins = pin_dir.display(),
    );
    let cfg = config(&format!(
        "[proxy]\nlisten = \"{}\"\nunix_socket = \"{}\"\n{base}",
        proxy.local_addr().unwrap(),
        proxy_sock.display()
    ));
    let redirector = Redirector::start(&cfg).unwrap();
    for (hook, n) in ebpf::attached_counts(&cg).unwrap() {
        assert_eq!(n, 1, "{hook}");
    }
    let p = port.to_string();

    // IPv4, and the same address v4-mapped on a dual-stack socket.
    redirected(
        &redirector,
        &proxy,
        &cg,
        &["tcp4", "127.0.0.42", &p],
        &format!("127.0.0.42:{p}"),
        &format!("127.0.0.42 {p}"),
    );
    redirected(
        &redirector,
        &proxy,
        &cg,
        &["tcp6", "::ffff:127.0.0.42", &p],
        &format!("127.0.0.42:{p}"),
        &format!("::ffff:127.0.0.42 {p}"),
    );
    // A record not taken before the client's socket closes is dropped, so a
    // later connection from the same address and port cannot inherit it.
    let mut c = Client::spawn(Some(&cg), &["tcp4", "127.0.0.42", &p]);
    let (stream, peer) = accept_tcp(&proxy).unwrap();
    assert!(c.report().starts_with("ok"));
    drop(stream);
    drop(c);
    sleep(Duration::from_millis(500));
    assert_eq!(redirector.take(peer), None, "record outlived its socket");
    // Native IPv6 without an IPv6 listener: refused, never direct.
    assert_eq!(run(Some(&cg), &["tcp6", "::1", &p]), EPERM);
    // Another port on the same address is not a target.
    assert!(run(Some(&cg), &["tcp4", "127.0.0.42", "1"]).starts_with("err 111"));
    // Outside the cgroup: direct to the database.
    let line = run(None, &["tcp4", "127.0.0.42", &p]);
    assert!(line.starts_with(&format!("ok 127.0.0.42 {p}")), "{line}");
    assert!(accept_tcp(&db).is_some());
    drop(TcpStream::connect(("127.0.0.42", port)).unwrap());
    assert!(accept_tcp(&db).is_some());
    // cgroup mode judges the socket by where it was created: created outside,
    // connected after moving in, it goes direct (documented).
    let line = run(
        None,
        &["late", cg.to_str().unwrap(), "tcp4", "127.0.0.42", &p],
    );
    assert!(line.starts_with(&format!("ok 127.0.0.42 {p}")), "{line}");
    assert!(accept_tcp(&db).is_some());

    // Unix sockets: redirected to the proxy's socket; direct from outside.
    let mut c = Client::spawn(Some(&cg), &["unix", pg_sock.to_str().unwrap()]);
    assert!(
        accept_unix(&proxy_unix),
        "unix connect did not reach the proxy"
    );
    assert_eq!(c.report(), "ok");
    assert!(!pending_unix(&pg_unix), "unix connect went direct");
    drop(c);
    drop(UnixStream::connect(&pg_sock).unwrap());
    assert!(accept_unix(&pg_unix));

    // Restart with another config while the first daemon still runs: links
    // are updated in place (no second program), settings rewritten.
    let proxy6 = TcpListener::bind("[::1]:0").unwrap();
    let cfg2 = config(&format!(
        "[proxy]\nlisten = \"{}\"\nlisten6 = \"{}\"\n\
         [ebpf]\ncgroups = [\"{}\"]\npin_dir = \"{}\"\nunix_sockets = \"refuse\"\n\
         [[target]]\nname = \"db\"\naddrs = [\"127.0.0.42/32\", \"::1/128\"]\nport = {port}\n",
        proxy.local_addr().unwrap(),
        proxy6.local_addr().unwrap(),
        cg.display(),
        pin_dir.display(),
    ));
    let redirector2 = Redirector::start(&cfg2).unwrap();
    drop(redirector);
    for (hook, n) in ebpf::attached_counts(&cg).unwrap() {
        assert_eq!(n, 1, "{hook} after restart");
    }
    redirected(
        &redirector2,
        &proxy6,
        &cg,
        &["tcp6", "::1", &p],
        &format!("[::1]:{p}"),
        &format!("::1 {p}"),
    );
    redirected(
        &redirector2,
        &proxy,
        &cg,
        &["tcp4", "127.0.0.42", &p],
        &format!("127.0.0.42:{p}"),
        &format!("127.0.0.42 {p}"),
    );
    assert_eq!(run(Some(&cg), &["unix", pg_sock.to_str().unwrap()]), EPERM);
    assert!(!pending_unix(&pg_unix));

    // The daemon dies: the pinned programs stay; a watched connect goes to the
    // closed proxy port and is refused while the database is listening.
    drop(redirector2);
    drop(proxy);
    assert_eq!(run(Some(&cg), &["tcp4", "127.0.0.42", &p]), ECONNREFUSED);
    assert!(
        !pending_tcp(&db),
        "a watched connect went direct with the daemon gone"
    );

    // Uninstall detaches everything: the same connect now goes direct.
    ebpf::uninstall(&pin_dir).unwrap();
    assert!(!pin_dir.exists());
    for (hook, n) in ebpf::attached_counts(&cg).unwrap() {
        assert_eq!(n, 0, "{hook} after uninstall");
    }
    let line = run(Some(&cg), &["tcp4", "127.0.0.42", &p]);
    assert!(line.starts_with("ok 127.0.0.42"), "{line}");
    assert!(accept_tcp(&db).is_some());
}

#[test]
fn task_mode_decides_by_the_callers_cgroup() {
    if !privileged() {
        return;
    }
    let mut env = Env::new();
    let parent = env.cgroup(None, "task");
    let watched = env.cgroup(Some(&parent), "watched");
    let other = env.cgroup(Some(&parent), "other");
    let pin_dir = env.pin_dir("task");

    let db = TcpListener::bind("127.0.0.43:0").unwrap();
    let port = db.local_addr().unwrap().port();
    let p = port.to_string();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pg_sock = tmp.path().join(".s.PGSQL.5432");
    let pg_unix = UnixListener::bind(&pg_sock).unwrap();

    let cfg = config(&format!(
        "[proxy]\nlisten = \"{}\"\n\
         [ebpf]\nmode = \"task\"\nattach_to = \"{}\"\ncgroups = [\"{}\"]\npin_dir = \"{}\"\nunix_sockets = \"refuse\"\n\
         [[target]]\nname = \"db\"\naddrs = [\"127.0.0.43\"]\nport = {port}\n",
        proxy.local_addr().unwrap(),
        parent.display(),
        watched.display(),
        pin_dir.display(),
    ));
    let redirector = Redirector::start(&cfg).unwrap();
    for (hook, n) in ebpf::attached_counts(&parent).unwrap() {
        assert_eq!(n, 1, "{hook}");
    }
    assert!(
        ebpf::attached_counts(&watched)
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    );

    let orig = format!("127.0.0.43:{p}");
    let peer = format!("127.0.0.43 {p}");
    redirected(
        &redirector,
        &proxy,
        &watched,
        &["tcp4", "127.0.0.43", &p],
        &orig,
        &peer,
    );
    // A sibling below attach_to that is not watched: direct.
    let line = run(Some(&other), &["tcp4", "127.0.0.43", &p]);
    assert!(line.starts_with(&format!("ok {peer}")), "{line}");
    assert!(accept_tcp(&db).is_some());
    // Socket created in `other`, connect after moving into `watched`:
    // intercepted, the task's cgroup decides.
    let mut c = Client::spawn(
        Some(&other),
        &["late", watched.to_str().unwrap(), "tcp4", "127.0.0.43", &p],
    );
    let (stream, from) = accept_tcp(&proxy).expect("late mover not redirected");
    let rec = redirector.take(from).expect("record");
    assert_record(&rec, &orig, c.pid(), &watched);
    assert!(c.report().starts_with(&format!("ok {peer}")));
    drop(stream);
    drop(c);
    // Unix sockets: refused for the watched cgroup only.
    assert_eq!(
        run(Some(&watched), &["unix", pg_sock.to_str().unwrap()]),
        EPERM
    );
    assert_eq!(
        run(Some(&other), &["unix", pg_sock.to_str().unwrap()]),
        "ok"
    );
    assert!(accept_unix(&pg_unix));
    drop(redirector);
}
