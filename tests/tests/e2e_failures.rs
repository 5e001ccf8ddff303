//! End-to-end: what a user sees when something is wrong. The daemon dies
//! (watched connects are refused, never direct; a restart picks the pins up
//! again), an upstream is down, bad bytes arrive, the config is wrong.

use std::{
    net::{Ipv4Addr, TcpListener},
    time::Duration,
};

use interceptor_tests::{
    Credential, Daemon, DaemonConfig, Stack, TargetSpec, cgroup2_mount, paths,
    probe::{probe, value},
    process,
    stack::{CLIENT_TIMEOUT, DB, USER},
};

#[test]
fn after_the_daemon_is_killed_a_watched_connect_is_refused_and_a_restart_recovers() {
    let mut s = Stack::start().unwrap();
    let out = s
        .run_inside(&mut s.psql(&s.conninfo(), &["select 'before'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());

    s.daemon.kill();
    assert!(
        s.daemon.layout().pin_dir.exists(),
        "the pins went away with the daemon"
    );
    let out = s
        .run_inside(&mut s.psql(&s.conninfo(), &["select 'while down'"]))
        .unwrap();
    assert!(
        !out.success(),
        "a watched psql got through with the daemon down: {out}"
    );
    assert!(
        out.stderr.contains("Connection refused"),
        "expected `Connection refused`: {out}"
    );
    // Refused rather than sent to the database, which is up and answers
    // outside the cgroup.
    let mut outside = s.psql(&s.conninfo(), &["select 'db up'"]);
    outside.env("PGPASSWORD", &s.password);
    let direct = process::run(&mut outside, CLIENT_TIMEOUT).unwrap();
    assert!(direct.success(), "{direct}");
    let raw = s
        .run_inside(&mut probe("127.0.0.1", s.pg.port(), "startup"))
        .unwrap();
    assert_eq!(
        value(&raw.stdout, "connect_error"),
        Some("Connection refused"),
        "{raw}"
    );

    s.daemon.restart().unwrap();
    let out = s
        .run_inside(&mut s.psql(&s.conninfo(), &["select 'after restart'"]))
        .unwrap();
    assert!(
        out.success(),
        "after a restart on the same pins: {out}\n{}",
        s.daemon.output()
    );
    assert_eq!(out.stdout.trim(), "after restart");
    s.expect_session(out.pid);
}

#[test]
fn an_upstream_that_is_down_gives_an_error_naming_the_target_and_others_keep_working() {
    let down_port = paths::free_port().unwrap();
    let s = Stack::start_with(|c, _| {
        c.targets.push(TargetSpec {
            name: "orders-replica".into(),
            addrs: vec!["127.0.0.1/32".into()],
            port: down_port,
            upstream: None,
        });
        c.credentials.push(Credential {
            target: "orders-replica".into(),
            user: USER.into(),
            password: "unused".into(),
            default: true,
        });
    })
    .unwrap();
    let conninfo = format!("host=127.0.0.1 port={down_port} dbname={DB} user={USER}");
    let out = s.run_inside(&mut s.psql(&conninfo, &["select 1"])).unwrap();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("orders-replica"),
        "the error does not name the target: {out}"
    );

    let out = s
        .run_inside(&mut s.psql(&s.conninfo(), &["select 'still serving'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(out.stdout.trim(), "still serving");
}

#[test]
fn malformed_and_oversized_startup_packets_get_an_error_and_the_daemon_keeps_serving() {
    let mut s = Stack::start().unwrap();
    for mode in ["bad-version", "oversized"] {
        let out = s
            .run_inside(&mut probe("127.0.0.1", s.pg.port(), mode))
            .unwrap();
        assert_eq!(
            value(&out.stdout, "first"),
            Some("E"),
            "{mode}: expected an ErrorResponse: {out}"
        );
        assert!(
            value(&out.stdout, "error_M").is_some_and(|m| !m.is_empty()),
            "{mode}: {out}"
        );
    }
    assert!(s.daemon.is_running());
    let out = s
        .run_inside(&mut s.psql(&s.conninfo(), &["select 'fine'"]))
        .unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
}

#[test]
fn a_config_naming_a_missing_cgroup_is_a_clear_error() {
    let missing = cgroup2_mount()
        .unwrap()
        .join(paths::unique_name("interceptor-test-missing"));
    let config = DaemonConfig {
        cgroups: vec![missing.clone()],
        targets: vec![db_target()],
        credentials: vec![db_credential()],
        ..DaemonConfig::default()
    };
    let out = Daemon::run_to_exit(config, Duration::from_mins(1)).unwrap();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "the error does not name {}: {out}",
        missing.display()
    );
}

#[test]
fn a_config_mistake_names_file_and_line() {
    let out = Daemon::run_config_text_to_exit(
        "[[target]]\nname = \"db\"\nprot = 5432\n",
        Duration::from_mins(1),
    )
    .unwrap();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("interceptor.toml:3"),
        "no file:line in: {out}"
    );
    assert!(out.stderr.contains("prot"), "{out}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let cg = interceptor_tests::TestCgroup::new().unwrap();
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = DaemonConfig {
        cgroups: vec![cg.path().to_owned()],
        targets: vec![db_target()],
        credentials: vec![db_credential()],
        listen_port: Some(port),
        ..DaemonConfig::default()
    };
    let out = Daemon::run_to_exit(config, Duration::from_mins(1)).unwrap();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "the error does not name the address: {out}"
    );
    drop(taken);
}

/// A target on 127.0.0.1:5432 for the tests that never connect.
fn db_target() -> TargetSpec {
    TargetSpec {
        name: "db".into(),
        addrs: vec!["127.0.0.1/32".into()],
        port: 5432,
        upstream: None,
    }
}

/// Its credential.
fn db_credential() -> Credential {
    Credential {
        target: "db".into(),
        user: "app".into(),
        password: "x".into(),
        default: true,
    }
}

/// A panic in one session's task (a debug daemon panics on a marker
/// statement) closes that session only: a session running at the same time
/// finishes its work, the daemon keeps serving, the panic is logged.
#[test]
fn a_panic_in_one_session_ends_that_session_only() {
    let s = Stack::start().unwrap();
    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            s.run_inside(&mut s.psql(
                &s.conninfo(),
                &["select pg_sleep(2)", "select 'other alive'"],
            ))
            .unwrap()
        });
        let marker = format!("select '{}'", interceptor_tests::daemon::TEST_PANIC_MARKER);
        let out = s
            .run_inside(&mut s.psql(&s.conninfo(), &[&marker]))
            .unwrap();
        assert!(
            !out.success(),
            "the marker statement should end its session: {out}"
        );
        let other = other.join().unwrap();
        assert!(
            other.success() && other.stdout.contains("other alive"),
            "{other}\n{}",
            s.daemon.output()
        );
    });
    let found = s
        .daemon
        .wait_event(Duration::from_secs(10), |e| e["event"] == "session_panic");
    assert!(
        found.is_some(),
        "no session_panic event: {}",
        s.daemon.output()
    );
    let out = s
        .run_inside(&mut s.psql(&s.conninfo(), &["select 'after'"]))
        .unwrap();
    assert!(out.success() && out.stdout.contains("after"), "{out}");
}
