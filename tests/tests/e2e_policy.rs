//! End-to-end: every statement is decided before the database sees it.
//! Unchanged psql inside a watched cgroup (simple protocol) and a Rust client
//! (extended protocol) send statements a CI job or an agent might; refusals
//! name the rule, the session stays usable, and the database shows no effect.

use std::{fs, path::Path, process::Command, time::Duration};

use interceptor_tests::{
    Stack,
    stack::{DB, TARGET, USER},
};
use tokio_postgres::{Client, NoTls, error::SqlState};

const POLICY: &str = r#"
[defaults]
identity = "tester"

[[identity]]
name = "ci"
cgroup = ["/interceptor-test-*"]

[[identity]]
name = "tester"

[[rule]]
id = "no-destruction"
identities = ["*"]
commands = ["DROP", "TRUNCATE", "ALTER SYSTEM"]
action = "deny"
reason = "destructive commands are never run from CI"

[[rule]]
id = "no-privilege-changes"
identities = ["*"]
classes = ["privilege"]
action = "deny"

[[rule]]
id = "deletes-need-approval"
identities = ["*"]
commands = ["DELETE"]
action = "approve"

[[rule]]
id = "read-write"
identities = ["*"]
classes = ["read", "write", "transaction", "session"]
tables = ["public.*", "pg_catalog.*"]
action = "allow"
max_rows = 3
"#;

fn write_policy(dir: &Path, text: &str) {
    fs::create_dir_all(dir).unwrap();
    // Write then rename: the daemon's watcher never sees a half-written file.
    let tmp = dir.join(".policy.toml.tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join("policy.toml")).unwrap();
}

fn stack() -> (Stack, tempfile::TempDir) {
    let policy = tempfile::tempdir().unwrap();
    write_policy(policy.path(), POLICY);
    let dir = policy.path().to_owned();
    let s = Stack::start_with(|c, pg| {
        c.policy_dir = Some(dir);
        // The Rust client connects to the proxy port itself (not redirected):
        // it needs to know where the target lives.
        c.explicit_target = Some(TARGET.to_owned());
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    (s, policy)
}

/// psql reading a script from its arguments, continuing after errors.
fn psql_script(s: &Stack, sql: &[&str]) -> Command {
    let mut cmd = s.psql(&s.conninfo(), &[]);
    cmd.args(["-v", "ON_ERROR_STOP=0"]);
    for q in sql {
        cmd.args(["-c", q]);
    }
    cmd
}

fn database_untouched(s: &Stack) {
    let out = s
        .pg
        .sql(DB, "select (select count(*) from orders), (select count(*) from customers), (select rolsuper from pg_roles where rolname = 'app')")
        .unwrap();
    assert_eq!(
        out.trim(),
        "4|3|f",
        "the database shows an effect of a refused statement"
    );
    let dbs =
        s.pg.sql(
            "postgres",
            "select count(*) from pg_database where datname = 'demo'",
        )
        .unwrap();
    assert_eq!(dbs.trim(), "1");
}

#[test]
fn psql_refusals_name_the_rule_and_leave_the_database_untouched() {
    let (s, _policy) = stack();
    // An allowed read works, through the proxy, as identity `ci`.
    let mut ok = s.psql(&s.conninfo(), &["select name from customers where id = 2"]);
    let out = s.run_inside(&mut ok).unwrap();
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert_eq!(out.stdout.trim(), "Grace Hopper");

    let cases: &[(&str, &str)] = &[
        ("DROP DATABASE demo", "no-destruction"),
        ("drop table orders", "no-destruction"),
        ("TRUNCATE orders", "no-destruction"),
        ("ALTER ROLE app SUPERUSER", "no-privilege-changes"),
        ("SET ROLE postgres", "no-privilege-changes"),
        (
            "COPY customers TO PROGRAM 'cat > /dev/null'",
            "builtin.copy-program",
        ),
        (
            "COPY customers TO '/tmp/interceptor-copy-test'",
            "builtin.copy-file",
        ),
        (
            "SELECT pg_read_file('/etc/hostname')",
            "builtin.dangerous-function",
        ),
        (
            "select set_config('search_path', 'secret', false)",
            "builtin.guarded-setting",
        ),
        (
            "select set_config('standard_conforming_strings', 'off', false)",
            "builtin.lexing-setting",
        ),
        (
            "select set_config(name, 'off', false) from pg_settings limit 1",
            "builtin.dangerous-function",
        ),
        (
            "select set_config('sea' || 'rch_path', 'x', false)",
            "builtin.dangerous-function",
        ),
        (
            "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
            "deletes-need-approval",
        ),
        ("SELECT 1; DROP TABLE customers", "no-destruction"),
        (
            "select 1 /* a /* nested */ comment */; drop table customers",
            "no-destruction",
        ),
        (
            "DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$",
            "default-deny",
        ),
        ("SELEC * FRM customers", "builtin.syntax-error"),
    ];
    for (sql, rule) in cases {
        let mut psql = s.psql(&s.conninfo(), &[sql]);
        let out = s.run_inside(&mut psql).unwrap();
        assert!(!out.success(), "`{sql}` was not refused: {out}");
        assert!(
            out.stderr.contains(&format!("by rule {rule}"))
                || out.stderr.contains(&format!("(rule {rule})")),
            "`{sql}`: the refusal does not name rule {rule}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("interceptor:"), "{}", out.stderr);
    }
    database_untouched(&s);
    // Each refusal is in the audit log with its rule.
    let out = Command::new(interceptor_tests::paths::interceptor_bin())
        .args(["audit", "export"])
        .arg(&s.daemon.layout().audit_dir)
        .output()
        .unwrap();
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (sql, rule) in cases {
        assert!(
            records.iter().any(|r| r["kind"] == "statement"
                && r["event"]["sql"] == *sql
                && r["event"]["decision"]["rule"] == *rule
                && r["event"]["decision"]["action"] != "allow"),
            "no audit record of the refusal of `{sql}` by {rule}"
        );
    }
}

#[test]
fn a_refusal_inside_a_transaction_block_fails_the_block_like_postgres() {
    let (s, _policy) = stack();
    let mut psql = psql_script(
        &s,
        &[
            "BEGIN",
            "DROP TABLE orders",
            "SELECT 1",
            "ROLLBACK",
            "SELECT 42",
        ],
    );
    let out = s.run_inside(&mut psql).unwrap();
    assert!(out.stderr.contains("by rule no-destruction"), "{out}");
    assert!(
        out.stderr.contains("current transaction is aborted"),
        "the block must be failed after a refusal: {out}"
    );
    assert!(
        out.stdout.trim().ends_with("42"),
        "the session stays usable after ROLLBACK: {out}"
    );
    database_untouched(&s);
}

#[test]
fn the_row_limit_cuts_off_a_massive_select_and_the_session_goes_on() {
    let (s, _policy) = stack();
    let mut psql = psql_script(
        &s,
        &[
            "SELECT id FROM orders ORDER BY id",
            "SELECT id FROM orders ORDER BY id LIMIT 2",
            "SELECT 'still here'",
        ],
    );
    let out = s.run_inside(&mut psql).unwrap();
    assert!(out.stderr.contains("more than 3 rows"), "{out}");
    assert!(out.stderr.contains("rule read-write"), "{out}");
    assert!(
        !out.stdout.contains("104"),
        "rows past the limit must not reach the client: {out}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["101", "102", "still here"], "{out}");
}

#[test]
fn lexing_settings_in_the_startup_packet_are_refused() {
    let (s, _policy) = stack();
    let mut psql = s.psql(&s.conninfo(), &["select 1"]);
    psql.env("PGOPTIONS", "-c standard_conforming_strings=off");
    let out = s.run_inside(&mut psql).unwrap();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("builtin.lexing-setting"), "{out}");
}

async fn connect(s: &Stack) -> Client {
    let addr = s.daemon.listen();
    let conninfo = format!(
        "host={} port={} dbname={DB} user={USER}",
        addr.ip(),
        addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn db_error(e: &tokio_postgres::Error) -> (SqlState, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (db.code().clone(), db.message().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_refusals_are_clean_and_never_reach_the_server() {
    let (s, _policy) = stack();
    let client = connect(&s).await;

    // Decided at Parse: the statement is never prepared upstream.
    let e = client.prepare("DROP TABLE orders").await.unwrap_err();
    let (code, msg) = db_error(&e);
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{msg}");
    assert!(msg.contains("by rule no-destruction"), "{msg}");

    // Parse + Bind + Execute in one round trip (query with parameters).
    let e = client
        .query("DELETE FROM orders WHERE id = $1", &[&101i32])
        .await
        .unwrap_err();
    assert!(
        db_error(&e)
            .1
            .contains("requires approval (rule deletes-need-approval)"),
        "{e}"
    );

    // The session stays usable, with parameters and prepared statements.
    let stmt = client
        .prepare("select count(*) from orders where amount > $1::float8")
        .await
        .unwrap();
    let n: i64 = client.query_one(&stmt, &[&50.0f64]).await.unwrap().get(0);
    assert_eq!(n, 3);

    // A refusal inside a transaction fails the transaction.
    client.batch_execute("BEGIN").await.unwrap();
    client.prepare("TRUNCATE customers").await.unwrap_err();
    let e = client.query("select 1", &[]).await.unwrap_err();
    assert_eq!(db_error(&e).0, SqlState::IN_FAILED_SQL_TRANSACTION);
    client.batch_execute("ROLLBACK").await.unwrap();

    // The row limit applies to Execute too.
    let e = client
        .query("select id from orders", &[])
        .await
        .unwrap_err();
    assert!(db_error(&e).1.contains("more than 3 rows"), "{e}");
    let rows = client
        .query("select id from orders order by id limit 3", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);

    // A permitted statement with a smuggled second one, simple protocol.
    let e = client
        .batch_execute("select 1; drop table customers")
        .await
        .unwrap_err();
    assert!(db_error(&e).1.contains("no-destruction"), "{e}");

    // SQL-level PREPARE/EXECUTE: EXECUTE is decided as what was prepared.
    client
        .batch_execute("PREPARE del(int) AS DELETE FROM orders WHERE id = $1")
        .await
        .unwrap_err();
    let e = client.batch_execute("EXECUTE del(101)").await.unwrap_err();
    assert!(db_error(&e).1.contains("builtin.unknown-prepared"), "{e}");
    client
        .batch_execute("PREPARE one AS SELECT name FROM customers WHERE id = 1")
        .await
        .unwrap();
    client.batch_execute("EXECUTE one").await.unwrap();

    database_untouched(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_changes_decisions_without_dropping_the_session() {
    let (s, policy) = stack();
    let client = connect(&s).await;
    let rows = client
        .query("select name from customers order by id limit 1", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "Ada Lovelace");

    // A broken edit is rejected; the old set stays in force.
    write_policy(policy.path(), "[[rule]]\nid = \"x\"\n");
    wait_for(&s, "policy_rejected");
    client
        .query("select name from customers limit 1", &[])
        .await
        .unwrap();

    // A valid edit is swapped in; the same session gets it on its next statement.
    let tightened = POLICY.replacen(
        "[[rule]]\nid = \"no-destruction\"",
        "[[rule]]\nid = \"customers-off-limits\"\nidentities = [\"*\"]\ntables = [\"public.customers\"]\naction = \"deny\"\n\n[[rule]]\nid = \"no-destruction\"",
        1,
    );
    write_policy(policy.path(), &tightened);
    wait_for(&s, "policy_reloaded");
    let e = client
        .query("select name from customers limit 1", &[])
        .await
        .unwrap_err();
    assert!(db_error(&e).1.contains("customers-off-limits"), "{e}");
    let n: i64 = client
        .query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4, "the session survived the reload");
}

fn wait_for(s: &Stack, event: &str) {
    let found = s
        .daemon
        .wait_event(Duration::from_secs(20), |e| e["event"] == event);
    assert!(found.is_some(), "no {event} event: {}", s.daemon.output());
}

/// An edit and SIGHUP right after the daemon reports ready (while its tasks
/// are still starting) are applied, not lost, and do not stop the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_right_after_start_is_applied() {
    let (mut s, policy) = stack();
    let tightened = POLICY.replacen(
        "[[rule]]\nid = \"no-destruction\"",
        "[[rule]]\nid = \"early-edit\"\nidentities = [\"*\"]\ntables = [\"public.customers\"]\naction = \"deny\"\n\n[[rule]]\nid = \"no-destruction\"",
        1,
    );
    write_policy(policy.path(), &tightened);
    let pid = s.daemon.pid().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for(&s, "policy_reloaded");
    assert!(
        s.daemon.is_running(),
        "SIGHUP stopped the daemon: {}",
        s.daemon.output()
    );
    let client = connect(&s).await;
    let e = client
        .query("select name from customers limit 1", &[])
        .await
        .unwrap_err();
    assert!(db_error(&e).1.contains("early-edit"), "{e}");
}
