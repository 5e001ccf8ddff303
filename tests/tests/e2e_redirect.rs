//! End-to-end: unchanged clients inside a watched cgroup connect to the
//! database's own address and reach it through the proxy, which knows who
//! they are; everything outside the cgroup, or to other ports, is untouched.
//!
//! Each test has its own cgroup, cluster, daemon, pin directory and port.

use std::{
    io::Write as _,
    net::{Ipv4Addr, TcpListener},
    path::Path,
    process::Command,
    thread,
    time::Duration,
};

use interceptor_tests::{
    Stack,
    probe::{probe, value},
    process,
    stack::{CLIENT_TIMEOUT, DB, TARGET, USER, real_psql, session_id, str_field, u64_field},
};

#[test]
fn psql_inside_reaches_the_database_through_the_proxy_and_is_attested() {
    let s = Stack::start().unwrap();
    let mut psql = s.psql(
        &s.conninfo(),
        &["select current_user, current_database(), count(*) from customers"],
    );
    process::as_user(&mut psql, "nobody").unwrap();
    assert!(
        psql.get_envs().all(|(k, v)| k != "PGPASSWORD"
            && v.is_none_or(|v| !v.to_string_lossy().contains(&s.password))),
        "the test itself gave psql the password"
    );
    let out = s.run_inside(&mut psql).unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(out.stdout.trim(), format!("{USER}|{DB}|3"));

    let e = s.expect_session(out.pid);
    assert_eq!(str_field(&e, "target").as_deref(), Some(TARGET), "{e}");
    assert_eq!(
        str_field(&e, "orig_dst").as_deref(),
        Some(s.pg.addr().to_string().as_str()),
        "{e}"
    );
    assert_eq!(str_field(&e, "user").as_deref(), Some(USER), "{e}");
    assert_eq!(str_field(&e, "database").as_deref(), Some(DB), "{e}");
    // Debian's /usr/bin/psql is a perl wrapper that execs the real binary in
    // the same process: the kernel, and so the attestation, see the binary.
    let exe = real_psql().unwrap();
    assert_eq!(
        str_field(&e, "attestation.exe").as_deref(),
        exe.to_str(),
        "{e}"
    );
    let sha = process::run(Command::new("sha256sum").arg(&exe), CLIENT_TIMEOUT)
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(
        str_field(&e, "attestation.exe_sha256").as_deref(),
        sha.stdout.split_whitespace().next(),
        "{e}"
    );
    let (nobody_uid, _) = process::user_ids("nobody").unwrap();
    assert_eq!(
        u64_field(&e, "attestation.uid"),
        Some(u64::from(nobody_uid)),
        "{e}"
    );
    assert_eq!(
        str_field(&e, "attestation.user").as_deref(),
        Some("nobody"),
        "{e}"
    );
    let cgroup = str_field(&e, "attestation.cgroup").unwrap_or_default();
    assert!(
        cgroup.ends_with(s.cg.name()),
        "attested cgroup {cgroup:?} is not {}: {e}",
        s.cg.name()
    );

    // The session ends when psql does.
    let session = session_id(&e);
    assert!(session.is_some(), "no session id in {e}");
    let end = s.daemon.wait_event(Duration::from_secs(5), |x| {
        str_field(x, "event").as_deref() == Some("session_end") && session_id(x) == session
    });
    assert!(
        end.is_some(),
        "no session_end for {e}\n{}",
        s.daemon.output()
    );

    // The database saw the proxy's login as `app` (the log shows the
    // connection), and the workload never had the password.
    s.assert_password_not_in(&[&out.stdout, &out.stderr]);
}

#[test]
fn rust_client_extended_protocol_inside_the_cgroup() {
    let s = Stack::start().unwrap();
    let bin = env!("CARGO_BIN_EXE_pgclient");
    let mut client = Command::new(bin);
    client.args(["query", &s.conninfo()]).env_clear();
    let out = s.run_inside(&mut client).unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    for line in [
        "n=42",
        "user=app",
        "db=demo",
        "again=2",
        "rows=500 chars=125250",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line}: {out}"
        );
    }
    let e = s.expect_session(out.pid);
    let exe = std::fs::canonicalize(bin).unwrap();
    assert_eq!(
        str_field(&e, "attestation.exe").as_deref(),
        exe.to_str(),
        "{e}"
    );
    assert_eq!(u64_field(&e, "attestation.uid"), Some(0), "{e}");
    s.assert_password_not_in(&[&out.stdout, &out.stderr]);
}

#[test]
fn cancel_request_reaches_the_right_backend() {
    let s = Stack::start().unwrap();
    let mut client = Command::new(env!("CARGO_BIN_EXE_pgclient"));
    client.args(["cancel", &s.conninfo()]).env_clear();
    let out = s.run_inside(&mut client).unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(
        value(&out.stdout, "sqlstate"),
        Some("57014"),
        "not cancelled as query_canceled: {out}"
    );
    let ms: u64 = value(&out.stdout, "elapsed_ms").unwrap().parse().unwrap();
    assert!(ms < 10_000, "the cancel took {ms} ms: {out}");
    assert_eq!(value(&out.stdout, "after"), Some("7"), "{out}");
}

#[test]
fn getpeername_shows_the_original_destination() {
    let s = Stack::start().unwrap();
    let out = s
        .run_inside(&mut probe("127.0.0.1", s.pg.port(), "startup"))
        .unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(
        value(&out.stdout, "peer"),
        Some(s.pg.addr().to_string().as_str()),
        "{out}"
    );
    // The real server would ask for SCRAM (10); the proxy accepts the
    // attested client without a password (0).
    assert_eq!(value(&out.stdout, "first"), Some("R"), "{out}");
    assert_eq!(value(&out.stdout, "auth"), Some("0"), "{out}");
    let e = s.expect_session(out.pid);
    assert_eq!(
        str_field(&e, "attestation.exe").as_deref(),
        std::fs::canonicalize("/usr/bin/python3").unwrap().to_str(),
        "{e}"
    );
}

#[test]
fn ipv4_mapped_ipv6_is_caught() {
    let s = Stack::start().unwrap();
    let mapped = "::ffff:127.0.0.1";
    let out = s
        .run_inside(&mut probe(mapped, s.pg.port(), "startup"))
        .unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(
        value(&out.stdout, "peer"),
        Some(format!("{mapped}:{}", s.pg.port()).as_str()),
        "{out}"
    );
    assert_eq!(
        value(&out.stdout, "auth"),
        Some("0"),
        "the v4-mapped connect went straight to the database: {out}"
    );
    s.expect_session(out.pid);

    // And psql with the mapped address as host.
    let conninfo = format!("host={mapped} port={} dbname={DB} user={USER}", s.pg.port());
    let out = s
        .run_inside(&mut s.psql(&conninfo, &["select 'mapped ok'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(out.stdout.trim(), "mapped ok");
    s.expect_session(out.pid);
}

/// With the README's target (`addrs = ["127.0.0.1/32"]`), every other
/// spelling of this host on the port reaches the database only through the
/// proxy: the unspecified addresses (which the kernel turns into loopback
/// after the connect hook), the rest of 127.0.0.0/8, `::1`, and the
/// v4-mapped forms. The cluster listens on 127.0.0.1 only, so the target
/// names it as upstream.
#[test]
fn every_spelling_of_this_host_is_redirected() {
    let s = Stack::start_with(|c, pg| {
        c.listen6 = true;
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    for host in [
        "0.0.0.0",
        "127.0.0.2",
        "127.1.2.3",
        "::ffff:0.0.0.0",
        "::ffff:127.0.0.9",
        "::",
        "::1",
    ] {
        let out = s
            .run_inside(&mut probe(host, s.pg.port(), "startup"))
            .unwrap();
        assert_eq!(
            value(&out.stdout, "auth"),
            Some("0"),
            "{host}: not answered by the proxy: {out}\n{}",
            s.daemon.output()
        );
        s.expect_session(out.pid);
    }
    // psql too, by the unspecified address.
    let conninfo = format!("host=0.0.0.0 port={} dbname={DB} user={USER}", s.pg.port());
    let out = s
        .run_inside(&mut s.psql(&conninfo, &["select 'any ok'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(out.stdout.trim(), "any ok");
    let e = s.expect_session(out.pid);
    assert_eq!(
        str_field(&e, "orig_dst").as_deref(),
        Some(format!("0.0.0.0:{}", s.pg.port()).as_str()),
        "{e}"
    );
}

/// `[ebpf] refuse_ports`: another port of the database (a forwarder here,
/// a plain TCP listener on loopback standing for a pooler or a second
/// server port) is refused from watched cgroups on every spelling of the
/// address, while processes outside reach it and the target still works.
#[test]
fn a_refused_port_cannot_be_reached_from_a_watched_cgroup() {
    let forwarder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = forwarder.local_addr().unwrap().port();
    let s = Stack::start_with(|c, _| c.refuse_ports = vec![port]).unwrap();
    for host in ["127.0.0.1", "127.0.0.5", "0.0.0.0", "::ffff:127.0.0.1"] {
        let out = s.run_inside(&mut probe(host, port, "startup")).unwrap();
        assert_eq!(
            value(&out.stdout, "connect_error"),
            Some("Operation not permitted"),
            "{host}: {out}"
        );
    }
    // Outside the cgroup the port is untouched.
    let outside = probe("127.0.0.1", port, "connect").output().unwrap();
    let stdout = String::from_utf8_lossy(&outside.stdout);
    assert!(!stdout.contains("connect_error"), "{stdout}");
    // The target itself is still redirected.
    let out = s
        .run_inside(&mut probe("127.0.0.1", s.pg.port(), "startup"))
        .unwrap();
    assert_eq!(value(&out.stdout, "auth"), Some("0"), "{out}");
    drop(forwarder);
}

#[test]
fn ipv6_loopback_is_caught() {
    // The cluster listens on 127.0.0.1 only: a connect to [::1] reaches it
    // only through the proxy (target upstream = the cluster).
    let s = Stack::start_with(|c, pg| {
        c.listen6 = true;
        c.targets[0].addrs.push("::1/128".into());
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    let conninfo = format!("host=::1 port={} dbname={DB} user={USER}", s.pg.port());
    let out = s
        .run_inside(&mut s.psql(&conninfo, &["select 'v6 ok'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(out.stdout.trim(), "v6 ok");
    let e = s.expect_session(out.pid);
    assert_eq!(
        str_field(&e, "orig_dst").as_deref(),
        Some(format!("[::1]:{}", s.pg.port()).as_str()),
        "{e}"
    );

    let out = s
        .run_inside(&mut probe("::1", s.pg.port(), "startup"))
        .unwrap();
    assert_eq!(
        value(&out.stdout, "peer"),
        Some(format!("::1:{}", s.pg.port()).as_str()),
        "{out}"
    );
    assert_eq!(value(&out.stdout, "auth"), Some("0"), "{out}");
}

#[test]
fn unix_socket_connect_goes_through_the_proxy() {
    // Every redirected unix connect lands on the proxy's one socket, named
    // `.s.PGSQL.<target port>`; a unix connect has no TCP destination, so
    // the target names its upstream.
    let s = Stack::start_with(|c, pg| {
        c.unix_socket = true;
        c.unix_sockets = Some("redirect".into());
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    let sock_dir = s.pg.socket_dir();
    let conninfo = format!(
        "host={} port={} dbname={DB} user={USER}",
        sock_dir.display(),
        s.pg.port()
    );
    let out = s
        .run_inside(&mut s.psql(&conninfo, &["select 'unix ok', current_user"]))
        .unwrap();
    assert!(
        out.success(),
        "a unix-socket connect from the watched cgroup failed: {out}\n{}",
        s.daemon.output()
    );
    assert_eq!(out.stdout.trim(), format!("unix ok|{USER}"));
    let e = s.expect_session(out.pid);
    assert_eq!(
        str_field(&e, "attestation.exe").as_deref(),
        real_psql().unwrap().to_str(),
        "{e}"
    );

    // The same socket from outside the cgroup is the real server, which
    // wants the password.
    let out = process::run(&mut s.psql(&conninfo, &["select 1"]), CLIENT_TIMEOUT).unwrap();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("password"), "{out}");
}

/// A unix connect by path, as a watched workload would make it: `plain`
/// connects to the path, `fd` to `/proc/self/fd/N` of an `O_PATH` open of
/// it; then a startup packet, printing `auth=` as the TCP probe does.
const UNIX_PROBE: &str = r#"
import os, socket, struct, sys
mode, path = sys.argv[1], sys.argv[2]
target = path
if mode == "fd":
    target = "/proc/self/fd/%d" % os.open(path, os.O_PATH)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
try:
    s.connect(target)
except OSError as e:
    print("connect_error=%s" % e.strerror)
    sys.exit(3)
print("connected")
body = struct.pack("!I", 196608) + b"user\0app\0database\0demo\0\0"
try:
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    t = s.recv(1)
    if t == b"R":
        s.recv(4)
        print("auth=%d" % struct.unpack("!I", s.recv(4))[0])
    else:
        print("first=%r" % t)
except OSError as e:
    print("io_error=%s" % e.strerror)
"#;

fn unix_probe(mode: &str, path: &Path) -> Command {
    let mut c = Command::new("python3");
    c.args(["-c", UNIX_PROBE, mode]).arg(path);
    c
}

/// `[ebpf] unix_allow`: a watched process may connect only to the listed
/// unix paths besides the PostgreSQL names (redirected), so the database's
/// socket reached by any other name is refused: a symlink, a hard link,
/// `/proc/self/fd/N` of an `O_PATH` descriptor, a bind mount of the socket
/// file onto another name (in a private mount namespace); an unlisted
/// socket too, a listed one works. Outside the cgroup nothing changes.
#[test]
fn a_postgres_socket_by_another_name_is_refused_with_an_allow_list() {
    let dir = tempfile::Builder::new()
        .prefix("interceptor-unix-")
        .tempdir()
        .unwrap();
    let allowed_path = dir.path().join("allowed.sock");
    let _allowed = std::os::unix::net::UnixListener::bind(&allowed_path).unwrap();
    let other_path = dir.path().join("other.sock");
    let _other = std::os::unix::net::UnixListener::bind(&other_path).unwrap();
    let listed = allowed_path.display().to_string();
    let s = Stack::start_with(|c, pg| {
        c.unix_socket = true;
        c.unix_sockets = Some("redirect".into());
        c.unix_allow = Some(vec![listed]);
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    let real = s.pg.socket_dir().join(format!(".s.PGSQL.{}", s.pg.port()));
    let link = dir.path().join("db-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let hard = dir.path().join("db-hard");
    let have_hard = std::fs::hard_link(&real, &hard).is_ok();
    let refused = |out: &interceptor_tests::process::Outcome, what: &str| {
        assert_eq!(
            value(&out.stdout, "connect_error"),
            Some("Operation not permitted"),
            "{what}: {out}"
        );
    };

    // The PostgreSQL name: redirected to the proxy (AuthenticationOk).
    let out = s.run_inside(&mut unix_probe("plain", &real)).unwrap();
    assert_eq!(
        value(&out.stdout, "auth"),
        Some("0"),
        "{out}\n{}",
        s.daemon.output()
    );
    refused(
        &s.run_inside(&mut unix_probe("plain", &link)).unwrap(),
        "symlink",
    );
    if have_hard {
        refused(
            &s.run_inside(&mut unix_probe("plain", &hard)).unwrap(),
            "hard link",
        );
    }
    refused(
        &s.run_inside(&mut unix_probe("fd", &real)).unwrap(),
        "/proc/self/fd",
    );
    let target = dir.path().join("mounted");
    std::fs::write(&target, b"").unwrap();
    let script = format!(
        "mount --bind '{}' '{}' && exec python3 -c \"$0\" plain '{}'",
        real.display(),
        target.display(),
        target.display()
    );
    let mut bind = Command::new("unshare");
    bind.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        UNIX_PROBE,
    ]);
    refused(&s.run_inside(&mut bind).unwrap(), "bind mount");
    refused(
        &s.run_inside(&mut unix_probe("plain", &other_path)).unwrap(),
        "an unlisted socket",
    );
    let out = s
        .run_inside(&mut unix_probe("plain", &allowed_path))
        .unwrap();
    assert!(out.stdout.contains("connected"), "the listed socket: {out}");

    // Outside: the symlink is the database, which wants a password (SCRAM).
    let out = process::run(&mut unix_probe("plain", &link), CLIENT_TIMEOUT).unwrap();
    assert!(
        out.stdout.contains("connected") && value(&out.stdout, "auth") != Some("0"),
        "{out}"
    );
}

#[test]
fn a_process_outside_the_cgroup_is_untouched() {
    let s = Stack::start().unwrap();
    // Outside, the database's address is the database: SCRAM, wants the password.
    let out = process::run(&mut s.psql(&s.conninfo(), &["select 1"]), CLIENT_TIMEOUT).unwrap();
    assert!(
        !out.success(),
        "an outside psql got in without a password: {out}"
    );
    assert!(out.stderr.contains("password"), "{out}");
    let mut with_password = s.psql(&s.conninfo(), &["select 'direct ok'"]);
    with_password.env("PGPASSWORD", &s.password);
    let out = process::run(&mut with_password, CLIENT_TIMEOUT).unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "direct ok");
    let out = process::run(
        &mut probe("127.0.0.1", s.pg.port(), "startup"),
        CLIENT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(
        value(&out.stdout, "auth"),
        Some("10"),
        "outside, the server itself asks for SCRAM: {out}"
    );
    thread::sleep(Duration::from_millis(500));
    assert!(
        s.daemon.events_named("session_start").is_empty(),
        "the proxy saw a connection from outside the cgroup:\n{}",
        s.daemon.output()
    );
}

#[test]
fn other_ports_from_inside_are_untouched() {
    let s = Stack::start().unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello from the real listener").unwrap();
    });
    let out = s.run_inside(&mut probe("127.0.0.1", port, "read")).unwrap();
    server.join().unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(
        value(&out.stdout, "data"),
        Some("hello from the real listener"),
        "{out}"
    );
    assert!(
        s.session_of(out.pid).is_none(),
        "a non-database port was redirected"
    );
}

#[test]
fn sslmode_require_from_inside_works() {
    let s = Stack::start().unwrap();
    let conninfo = format!("{} sslmode=require", s.conninfo());
    let out = s
        .run_inside(&mut s.psql(&conninfo, &["\\conninfo", "select 'tls ok'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert!(
        out.stdout.contains("SSL connection (protocol: TLS"),
        "psql did not get TLS: {out}"
    );
    assert!(out.stdout.lines().any(|l| l == "tls ok"), "{out}");
    s.expect_session(out.pid);
}

#[test]
fn copy_both_ways_through_the_proxy() {
    let s = Stack::start().unwrap();
    let out = s
        .run_inside(&mut s.psql(
            &s.conninfo(),
            &[
                "\\copy (select id, name from customers order by id) to stdout with (format csv)",
                "create temp table nums (n int)",
                "\\copy nums from program 'seq 1 1000'",
                "select count(*), sum(n) from nums",
            ],
        ))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "1,Ada Lovelace",
            "2,Grace Hopper",
            "3,Edsger Dijkstra",
            "CREATE TABLE",
            "COPY 1000",
            "1000|500500"
        ],
        "{out}"
    );
}
