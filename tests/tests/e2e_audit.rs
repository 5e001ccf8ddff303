//! End-to-end: sessions through the interceptor are recorded in the per-host
//! audit log, and the security team's tools read them back: `sessions
//! list/show`, `replay`, `audit export`, `audit verify`.

use std::{process::Command, time::Duration};

use interceptor_tests::{
    Stack, paths,
    stack::{DB, TARGET, USER},
};
use serde_json::Value;
use tokio_postgres::NoTls;

fn stack() -> Stack {
    Stack::start_with(|c, pg| {
        c.explicit_target = Some(TARGET.to_owned());
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap()
}

fn interceptor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(paths::interceptor_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every record, as `audit export` gives them.
fn export(dir: &str) -> Vec<Value> {
    let (code, out, err) = interceptor(&["audit", "export", dir]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the records of `session` include a `session_end`.
fn wait_session_end(dir: &str, session: &str) -> Vec<Value> {
    for _ in 0..100 {
        let recs: Vec<Value> = export(dir)
            .into_iter()
            .filter(|r| r["session"] == session)
            .collect();
        if recs.iter().any(|r| r["kind"] == "session_end") {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no session_end recorded for {session}");
}

#[test]
fn a_psql_session_is_recorded_shown_replayed_and_verified() {
    let mut s = stack();
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let mut psql = s.psql(
        &s.conninfo(),
        &[
            "select count(*) from customers",
            "select pg_read_file('/etc/hostname')",
        ],
    );
    psql.args(["-v", "ON_ERROR_STOP=0"]);
    let out = s.run_inside(&mut psql).unwrap();
    assert!(out.stdout.contains('3'), "{out}");

    // The session's records: start (with the attested psql), both
    // statements with their decisions, results, end.
    let start = export(&audit)
        .into_iter()
        .find(|r| r["kind"] == "session_start" && r["event"]["attestation"]["pid"] == out.pid)
        .unwrap_or_else(|| panic!("no session_start for psql pid {}", out.pid));
    let session = start["session"].as_str().unwrap().to_owned();
    assert_eq!(start["event"]["target"], TARGET);
    assert_eq!(start["event"]["database"], DB);
    assert_eq!(start["event"]["route"], "redirected");
    let recs = wait_session_end(&audit, &session);
    let statements: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "statement").collect();
    assert_eq!(statements.len(), 2, "{recs:#?}");
    assert_eq!(
        statements[0]["event"]["sql"],
        "select count(*) from customers"
    );
    assert_eq!(statements[0]["event"]["decision"]["action"], "allow");
    assert_eq!(statements[1]["event"]["decision"]["action"], "deny");
    assert_eq!(
        statements[1]["event"]["decision"]["rule"],
        "builtin.dangerous-function"
    );
    let results: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "result").collect();
    assert!(
        results
            .iter()
            .any(|r| r["event"]["command_tag"] == "SELECT 1" && r["event"]["rows"] == 1),
        "{results:#?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r["event"]["error_sqlstate"] == "42501"),
        "{results:#?}"
    );
    let end = recs.iter().find(|r| r["kind"] == "session_end").unwrap();
    assert_eq!(end["event"]["statements"], 2);
    assert_eq!(end["event"]["refused"], 1);
    // The password appears nowhere in the log.
    let (_, all, _) = interceptor(&["audit", "export", &audit]);
    assert!(
        !all.contains(&s.password),
        "the database password is in the audit log"
    );

    // The security team's tools.
    let (code, list, err) =
        interceptor(&["sessions", "list", "--dir", &audit, "--decision", "deny"]);
    assert_eq!(code, 0, "{err}");
    assert!(list.contains(&session), "{list}");
    let (code, show, err) = interceptor(&["sessions", "show", &session, "--dir", &audit]);
    assert_eq!(code, 0, "{err}");
    assert!(
        show.contains("select count(*) from customers")
            && show.contains("builtin.dangerous-function"),
        "{show}"
    );
    let (code, replay, err) = interceptor(&["replay", &session, "--speed", "0", "--dir", &audit]);
    assert_eq!(code, 0, "{err}");
    assert!(
        replay.contains("pg_read_file") && replay.contains("deny"),
        "{replay}"
    );

    // The daemon is killed (its files stay); the log verifies, also against
    // a key kept elsewhere.
    s.daemon.kill();
    let pubkey = tempfile::NamedTempFile::new().unwrap();
    let (code, pem, err) = interceptor(&["audit", "pubkey", &audit]);
    assert_eq!(code, 0, "{err}");
    let pem: String = pem
        .lines()
        .take_while(|l| !l.starts_with("fingerprint"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(pubkey.path(), pem).unwrap();
    let (code, verify, err) = interceptor(&[
        "audit",
        "verify",
        &audit,
        "--pubkey",
        &pubkey.path().display().to_string(),
    ]);
    assert_eq!(code, 0, "{verify}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_concurrent_sessions_of_m_statements_give_exactly_n_times_m_records() {
    const N: usize = 8;
    const M: usize = 25;
    let s = stack();
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let addr = s.daemon.listen();
    let conninfo = format!(
        "host={} port={} dbname={DB} user={USER} application_name=load",
        addr.ip(),
        addr.port()
    );
    let mut tasks = Vec::new();
    for i in 0..N {
        let conninfo = conninfo.clone();
        tasks.push(tokio::spawn(async move {
            let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
            let conn = tokio::spawn(conn);
            for j in 0..M {
                let n: i32 = client
                    .query_one(&format!("select {i} * 1000 + {j}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n as usize, i * 1000 + j);
            }
            drop(client);
            let _ = conn.await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let sessions: Vec<String> = export(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "session_start" && r["event"]["application_name"] == "load")
        .map(|r| r["session"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sessions.len(), N);
    for id in &sessions {
        wait_session_end(&audit, id);
    }
    let statements = export(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "statement" && sessions.iter().any(|s| r["session"] == s.as_str()))
        .count();
    assert_eq!(
        statements,
        N * M,
        "every statement is recorded exactly once"
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("interceptor-test-audit-")
            .tempdir()
            .unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs for the audit directory");
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_audit_disk_refuses_statements_until_space_returns() {
    let fs = Tmpfs::new("2m");
    let audit_dir = fs.0.path().join("audit");
    let s = Stack::start_with(|c, _| c.audit_dir = Some(audit_dir.clone())).unwrap();
    let count = || {
        s.pg.sql(DB, "select count(*) from orders")
            .unwrap()
            .trim()
            .to_owned()
    };
    let insert = |id: u32| {
        let mut psql = s.psql(
            &s.conninfo(),
            &[&format!(
                "insert into orders values ({id}, 1, 1.00, '2024-05-01')"
            )],
        );
        s.run_inside(&mut psql).unwrap()
    };
    assert!(insert(201).success());
    assert_eq!(count(), "5");

    // Fill the filesystem the log is on.
    let filler = fs.0.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let refused = insert(202);
    assert!(
        !refused.success(),
        "a statement that cannot be recorded must not run: {refused}"
    );
    assert!(
        refused
            .stderr
            .contains("cannot be recorded in the audit log"),
        "{refused}"
    );
    assert_eq!(count(), "5", "the refused statement reached the database");

    // Space returns: recording resumes and statements run again.
    std::fs::remove_file(&filler).unwrap();
    let mut ok = false;
    for _ in 0..40 {
        let out = insert(203);
        if out.success() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(ok, "statements still refused after space returned");
    assert_eq!(count(), "6");
    let (code, verify, err) = interceptor(&["audit", "verify", &audit_dir.display().to_string()]);
    assert_eq!(code, 0, "{verify}{err}");
    drop(s);
}

/// A session refused after it was identified (a startup setting no rule
/// allows, a database that does not exist, a refused identity) ends on the
/// record with the reason; none stays open in `sessions list`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sessions_end_on_the_record_with_their_reason() {
    let s = stack();
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let addr = s.daemon.listen();
    let base = format!("host={} port={} user={USER}", addr.ip(), addr.port());
    for extra in [
        format!("dbname={DB} application_name=guarded options='-c search_path=elsewhere'"),
        "dbname=no_such_database".to_owned(),
    ] {
        let e = tokio_postgres::connect(&format!("{base} {extra}"), NoTls)
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            e.as_db_error().is_some(),
            "refused with a PostgreSQL error: {e}"
        );
    }
    let starts: Vec<Value> = export(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "session_start")
        .collect();
    let of = |pred: &dyn Fn(&Value) -> bool| -> String {
        let r = starts
            .iter()
            .find(|r| pred(r))
            .unwrap_or_else(|| panic!("no such session_start: {starts:#?}"));
        r["session"].as_str().unwrap().to_owned()
    };
    let guarded = of(&|r| r["event"]["application_name"] == "guarded");
    let missing = of(&|r| r["event"]["database"] == "no_such_database");

    let recs = wait_session_end(&audit, &guarded);
    let end = &recs.iter().find(|r| r["kind"] == "session_end").unwrap()["event"];
    assert_eq!(end["reason"], "refused", "{end}");
    assert!(
        end["detail"]
            .as_str()
            .is_some_and(|d| d.contains("search_path")),
        "{end}"
    );

    let recs = wait_session_end(&audit, &missing);
    let end = &recs.iter().find(|r| r["kind"] == "session_end").unwrap()["event"];
    assert!(
        end["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no_such_database")),
        "{end}"
    );

    let (code, list, err) = interceptor(&["sessions", "list", "--dir", &audit]);
    assert_eq!(code, 0, "{err}");
    for id in [&guarded, &missing] {
        let line = list
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed: {list}"));
        assert!(!line.contains("(open)"), "{line}");
    }
}

/// A 60 MiB statement is refused (over the analyser's 1 MiB)
/// and recorded as a bounded prefix with the length and hash of the whole;
/// another session goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_statement_makes_a_bounded_record() {
    let s = stack();
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let addr = s.daemon.listen();
    let conninfo = format!(
        "host={} port={} dbname={DB} user={USER}",
        addr.ip(),
        addr.port()
    );
    let (big, conn) = tokio_postgres::connect(&format!("{conninfo} application_name=huge"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let (other, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(conn);
    let sql = format!("SELECT '{}' AS huge", "x".repeat(60 << 20));
    let sent = sql.clone();
    let huge = tokio::spawn(async move { big.simple_query(&sent).await.map(|_| ()) });
    let n: i64 = other
        .query_one("select count(*) from customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    let e = huge.await.unwrap().unwrap_err();
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    assert!(msg.contains("bytes"), "refused for its length: {msg}");

    let recs = export(&audit);
    let rec = recs
        .iter()
        .find(|r| r["kind"] == "statement" && r["event"]["sql_full"]["bytes"] == sql.len())
        .unwrap_or_else(|| panic!("no bounded record for the {} byte statement", sql.len()));
    // The prefix ends inside the literal, which the lexer cannot read: the
    // text up to it is kept, the rest is in the digest only.
    let recorded = rec["event"]["sql"].as_str().unwrap();
    assert!(
        recorded.len() <= 64 * 1024 && recorded.starts_with("SELECT [not recorded:"),
        "{recorded}"
    );
    use sha2::Digest as _;
    assert_eq!(
        rec["event"]["sql_full"]["sha256"],
        hex::encode(sha2::Sha256::digest(sql.as_bytes()))
    );
    assert!(
        recs.iter().all(|r| r.to_string().len() < 256 * 1024),
        "a record over 256 KiB"
    );
}

/// Connections refused before any session is recorded are records too:
/// a malformed startup packet, a replication connection.
#[test]
fn refused_connections_are_recorded() {
    let s = stack();
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let addr = s.daemon.listen();
    let bad = interceptor_tests::process::run(
        &mut interceptor_tests::probe::probe(&addr.ip().to_string(), addr.port(), "bad-version"),
        interceptor_tests::stack::CLIENT_TIMEOUT,
    )
    .unwrap();
    assert!(bad.stdout.contains("error_"), "{bad}");
    let conninfo = format!(
        "host={} port={} dbname={DB} user={USER} replication=database",
        addr.ip(),
        addr.port()
    );
    let repl = interceptor_tests::process::run(
        &mut s.psql(&conninfo, &["select 1"]),
        interceptor_tests::stack::CLIENT_TIMEOUT,
    )
    .unwrap();
    assert!(
        !repl.success() && repl.stderr.contains("replication"),
        "{repl}"
    );
    let mut found = Vec::new();
    for _ in 0..50 {
        found = export(&audit)
            .into_iter()
            .filter(|r| r["kind"] == "connection_refused")
            .collect();
        if found.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        found
            .iter()
            .any(|r| r["event"]["reason"] == "client_protocol_violation"),
        "the malformed startup: {found:#?}"
    );
    let r = found
        .iter()
        .find(|r| {
            r["event"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("replication"))
        })
        .unwrap_or_else(|| panic!("the replication connection: {found:#?}"));
    assert_eq!(r["event"]["user"], USER);
    assert_eq!(r["event"]["sqlstate"], "0A000");
}

/// Secrets in statement text never reach the log: a role's password, a
/// connection string's password, values the content detectors find; the
/// records say what was taken out, with equal marks for equal values.
#[test]
fn secrets_in_statements_are_not_recorded() {
    let s = stack();
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let addr = s.daemon.listen();
    let conninfo = format!(
        "host={} port={} dbname={DB} user={USER}",
        addr.ip(),
        addr.port()
    );
    let mut psql = s.psql(
        &conninfo,
        &[
            "CREATE ROLE audit_probe LOGIN PASSWORD 'hunter2-xyz'",
            "DROP ROLE audit_probe",
            "select dblink_connect('host=db user=u password=topsecret')",
            "select '111-22-3333' as a, '111-22-3333' as b",
        ],
    );
    psql.args(["-v", "ON_ERROR_STOP=0"]);
    let out = interceptor_tests::process::run(&mut psql, interceptor_tests::stack::CLIENT_TIMEOUT)
        .unwrap();
    let (_, all, _) = interceptor(&["audit", "export", &audit]);
    for secret in ["hunter2-xyz", "topsecret", "111-22-3333"] {
        assert!(
            !all.contains(secret),
            "`{secret}` is in the audit log ({out})"
        );
    }
    let recs = export(&audit);
    let sql_of = |needle: &str| -> Value {
        recs.iter()
            .find(|r| {
                r["kind"] == "statement"
                    && r["event"]["sql"]
                        .as_str()
                        .is_some_and(|q| q.contains(needle))
            })
            .unwrap_or_else(|| panic!("no statement record with `{needle}`"))["event"]
            .clone()
    };
    let role = sql_of("CREATE ROLE audit_probe");
    assert!(
        role["sql"]
            .as_str()
            .unwrap()
            .contains("PASSWORD '[REDACTED:password:"),
        "{role}"
    );
    assert_eq!(role["sql_redacted"], serde_json::json!(["password"]));
    assert_eq!(
        sql_of("dblink_connect")["sql_redacted"],
        serde_json::json!(["conninfo"])
    );
    let ssn = sql_of("as a,");
    let text = ssn["sql"].as_str().unwrap();
    let marks: Vec<&str> = text
        .split("[REDACTED:ssn:")
        .skip(1)
        .map(|m| &m[..12])
        .collect();
    assert_eq!(marks.len(), 2, "{text}");
    assert_eq!(marks[0], marks[1], "equal values, equal marks: {text}");
}
