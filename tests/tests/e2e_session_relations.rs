//! End-to-end: masking that knows the session's own relations, a catalog
//! connection that never gets in the way and cannot be hijacked, and the
//! inference channels strict mode closes.
//!
//! A real PostgreSQL with a seeded `customers` table whose `ssn` is tagged
//! (partial) and `secret` tagged (redact); unchanged psql inside the watched
//! cgroup as the masked `agent` identity, one psql session per test step
//! (each `-c` a separate statement of the same session).

use std::{fs, time::Duration};

use interceptor_tests::{
    Stack, process,
    stack::{DB, TARGET},
};

const POLICY: &str = r#"
[defaults]
identity = "dba"

[[identity]]
name = "agent"
cgroup = ["/interceptor-test-*"]
user = ["nobody"]

[[identity]]
name = "prober"
cgroup = ["/interceptor-test-*"]

[[identity]]
name = "dba"

[[rule]]
id = "work"
identities = ["agent", "dba"]
classes = ["read", "write", "transaction", "session", "ddl", "admin"]
allow_settings = ["search_path"]
action = "allow"

[[rule]]
id = "probe"
identities = ["prober"]
classes = ["read", "write", "transaction", "session", "ddl", "admin"]
action = "allow"

[[sensitive]]
columns = ["public.customers.ssn"]
category = "ssn"

[[sensitive]]
columns = ["public.customers.secret"]
category = "secret"

[[masking]]
identities = ["agent"]
strategies = { ssn = "partial", secret = "redact" }

[[masking]]
identities = ["prober"]
strategies = { ssn = "partial", secret = "redact" }
strict = true

[[masking]]
identities = ["dba"]
default = "raw"
detectors = false
"#;

const SEED: &str = "
alter table customers add column ssn text, add column secret text;
update customers set ssn = '123-45-6789', secret = 'hunter2-ada' where id = 1;
update customers set ssn = '987-65-4321', secret = 'sw0rdfish-grace' where id = 2;
update customers set ssn = '555-12-3456', secret = 'letmein-edsger' where id = 3;
grant create on schema public to app;
alter role app createdb;
";

const RAW: &[&str] = &[
    "123-45-6789",
    "987-65-4321",
    "555-12-3456",
    "hunter2-ada",
    "sw0rdfish-grace",
    "letmein-edsger",
    "123456789",
];

fn stack() -> (Stack, tempfile::TempDir) {
    let policy = tempfile::tempdir().unwrap();
    fs::write(policy.path().join("policy.toml"), POLICY).unwrap();
    let dir = policy.path().to_owned();
    let s = Stack::start_with(|c, pg| {
        c.policy_dir = Some(dir);
        c.explicit_target = Some(TARGET.to_owned());
        c.targets[0].upstream = Some(pg.addr());
        c.extra_toml = "[catalog]\nidle_secs = 1\n".into();
    })
    .unwrap();
    s.pg.sql(DB, SEED).unwrap();
    (s, policy)
}

/// One psql session inside the watched cgroup (as the test's own user: the
/// `prober` identity) running `sql` statement by statement.
fn psql(s: &Stack, sql: &[&str]) -> (bool, String) {
    let mut cmd = s.psql(&s.conninfo(), sql);
    let out = s.run_inside(&mut cmd).unwrap();
    (out.success(), format!("{}\n{}", out.stdout, out.stderr))
}

/// The same as `nobody`: the (non-strict) `agent` identity.
fn agent(s: &Stack, sql: &[&str]) -> (bool, String) {
    let mut cmd = s.psql(&s.conninfo(), sql);
    process::as_user(&mut cmd, "nobody").unwrap();
    let out = s.run_inside(&mut cmd).unwrap();
    (out.success(), format!("{}\n{}", out.stdout, out.stderr))
}

fn assert_no_leak(what: &str, out: &str) {
    for r in RAW {
        assert!(!out.contains(r), "{what}: leaked {r}:\n{out}");
    }
}

#[test]
fn a_transactional_migration_runs_and_missing_tables_get_42p01() {
    let (s, _p) = stack();
    // Alembic's first migration, as psql sends it: one transaction, every
    // table new (the catalog connection sees none of them until COMMIT).
    let (ok, out) = agent(
        &s,
        &[
            "BEGIN",
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
            "INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num",
            "CREATE TABLE accounts (id serial PRIMARY KEY, customer_id int, balance int DEFAULT 0)",
            "INSERT INTO accounts (customer_id) SELECT id FROM customers",
            "UPDATE accounts SET balance = id * 10",
            "ALTER TABLE accounts ADD COLUMN note text",
            "UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001'",
            "SELECT id, balance, note FROM accounts ORDER BY id",
            "COMMIT",
            "SELECT version_num FROM alembic_version",
        ],
    );
    assert!(ok, "{out}\n{}", s.daemon.output());
    assert!(
        out.contains("0001\n"),
        "RETURNING came back unmasked: {out}"
    );
    assert!(out.contains("1|10|\n2|20|\n3|30|"), "{out}");
    assert!(out.contains("0002\n"), "{out}");

    // A table that does not exist: PostgreSQL's own error, not a refusal.
    let (ok, out) = agent(&s, &["SELECT * FROM nope"]);
    assert!(
        !ok && out.contains("relation \"nope\" does not exist"),
        "{out}"
    );
    assert!(!out.contains("refused"), "{out}");
    // Probed, then created, then read: no stale "missing" answer.
    let (ok, out) = agent(&s, &["SELECT 1 FROM fresh"]);
    assert!(!ok, "{out}");
    let (ok, out) = agent(
        &s,
        &[
            "CREATE TABLE fresh AS SELECT 41 + 1 AS answer",
            "SELECT answer FROM fresh",
        ],
    );
    assert!(ok && out.contains("42"), "{out}");
    assert!(!out.contains("REDACTED"), "{out}");
}

#[test]
fn relations_the_session_makes_carry_only_what_was_written_into_them() {
    let (s, _p) = stack();
    let (ok, out) = agent(
        &s,
        &[
            "CREATE TEMP TABLE t (id int, label text)",
            "INSERT INTO t SELECT id, name FROM customers",
            "CREATE TEMP TABLE e AS SELECT id, upper(name) AS n FROM customers",
            "CREATE TEMP VIEW tv AS SELECT c.id, c.ssn FROM customers c",
            "SELECT label FROM t ORDER BY id",
            "SELECT n FROM e ORDER BY id",
            "SELECT ssn FROM tv ORDER BY id",
            "UPDATE t SET label = label || '!' WHERE id = 1",
            "SELECT label FROM t WHERE id = 1",
        ],
    );
    assert!(ok, "{out}\n{}", s.daemon.output());
    assert!(
        out.contains("Ada Lovelace\n")
            && out.contains("ADA LOVELACE\n")
            && out.contains("Ada Lovelace!\n"),
        "{out}"
    );
    assert!(
        out.contains("***-**-6789"),
        "the view over a tagged column is masked: {out}"
    );
    assert_no_leak("own relations", &out);

    // Laundering through a relation the session creates: refused, every form.
    for steps in [
        &[
            "CREATE TEMP TABLE t AS SELECT ssn FROM customers",
            "SELECT * FROM t",
        ][..],
        &[
            "CREATE TEMP TABLE t (x text)",
            "INSERT INTO t SELECT ssn FROM customers",
            "SELECT * FROM t",
        ][..],
        &[
            "CREATE TEMP TABLE t (x text)",
            "INSERT INTO t VALUES ('a')",
            "UPDATE t SET x = (SELECT secret FROM customers LIMIT 1)",
            "SELECT * FROM t",
        ][..],
        &["SELECT ssn INTO TEMP t FROM customers", "SELECT * FROM t"][..],
        &[
            "BEGIN",
            "CREATE TABLE t2 (x text)",
            "INSERT INTO t2 SELECT secret FROM customers",
            "COMMIT",
        ][..],
        &[
            "CREATE TEMP TABLE t (x text)",
            "COPY (SELECT ssn FROM customers) TO STDOUT",
            "SELECT * FROM t",
        ][..],
    ] {
        let (_, out) = agent(&s, steps);
        assert_no_leak(&steps.join("; "), &out);
        if steps
            .iter()
            .any(|q| q.contains("INTO") || q.contains("AS SELECT ssn") || q.contains("SET x"))
        {
            assert!(
                out.contains("refused by rule builtin.masking"),
                "{steps:?}: {out}"
            );
        }
    }
    // A temporary table shadowing the tagged one, then dropped or rolled
    // back: the tagged table is masked again.
    let (ok, out) = agent(
        &s,
        &[
            "BEGIN",
            "CREATE TEMP TABLE customers (id int)",
            "SELECT count(*) FROM customers",
            "ROLLBACK",
            "SELECT ssn FROM customers ORDER BY id",
            "CREATE TEMP TABLE customers (id int)",
            "DISCARD TEMP",
            "SELECT * FROM customers ORDER BY id",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("***-**-6789"), "{out}");
    assert_no_leak("shadowing", &out);
    // Nothing leaked into the database.
    let left =
        s.pg.sql(DB, "select count(*) from pg_tables where tablename = 't2'")
            .unwrap();
    assert_eq!(left.trim(), "0", "{left}");
}

#[test]
fn the_catalog_connection_is_reopened_closed_for_drop_database_and_immune_to_shadowing() {
    let (s, _p) = stack();
    let (ok, out) = agent(&s, &["SELECT ssn FROM customers WHERE id = 1"]);
    assert!(ok && out.contains("***-**-6789"), "{out}");
    // Lost (a server restart, a failover, idle_session_timeout): the next
    // statement still works.
    s.pg.sql(DB, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'interceptor-catalog'").unwrap();
    let (ok, out) = agent(&s, &["SELECT ssn FROM customers WHERE id = 2"]);
    assert!(
        ok && out.contains("***-**-4321"),
        "after the catalog connection was lost: {out}\n{}",
        s.daemon.output()
    );

    // Django's test runner: a database created, used, dropped, twice.
    for round in 0..2 {
        let conninfo_other = s
            .conninfo()
            .replace(&format!("dbname={DB}"), "dbname=test_app");
        let (ok, out) = agent(&s, &["CREATE DATABASE test_app"]);
        assert!(ok, "round {round}: {out}");
        s.pg.sql("test_app", "create table customers (id int, ssn text); insert into customers values (1, '123-45-6789'); grant select on customers to app").unwrap();
        let mut cmd = s.psql(&conninfo_other, &["SELECT ssn FROM customers"]);
        process::as_user(&mut cmd, "nobody").unwrap();
        let o = s.run_inside(&mut cmd).unwrap();
        assert!(
            o.success() && o.stdout.contains("***-**-6789"),
            "round {round}: {o:?}"
        );
        // Dropped right away, from another database: the catalog
        // connection to test_app is closed first.
        let (ok, out) = agent(&s, &["DROP DATABASE test_app"]);
        assert!(ok, "round {round}: {out}\n{}", s.daemon.output());
    }
    // dropdb from outside the proxy, once the connection has been idle.
    s.pg.sql(DB, "create database test_out").unwrap();
    let conninfo_out = s
        .conninfo()
        .replace(&format!("dbname={DB}"), "dbname=test_out");
    s.pg.sql(
        "test_out",
        "create table customers (id int, ssn text); grant select on customers to app",
    )
    .unwrap();
    let mut cmd = s.psql(&conninfo_out, &["SELECT ssn FROM customers"]);
    let o = s.run_inside(&mut cmd).unwrap();
    assert!(o.success(), "{o:?}");
    std::thread::sleep(Duration::from_secs(3));
    let idle = s.pg.sql(DB, "select count(*) from pg_stat_activity where application_name = 'interceptor-catalog' and datname = 'test_out'").unwrap();
    assert_eq!(idle.trim(), "0", "the idle catalog connection is closed");
    s.pg.sql(DB, "drop database test_out").unwrap();

    // Functions and operators in public with the names and argument types
    // the proxy's own catalog queries use: they change nothing.
    s.pg.sql(
        DB,
        r#"
        create function public.json_build_array(name, smallint) returns json language sql as $$ select '["id", 1]'::json $$;
        create function public.json_build_array(text, integer) returns json language sql as $$ select '["id", 1]'::json $$;
        create function public.quote_ident(text) returns text language sql as $$ select 'orders'::text $$;
        create function public.to_regclass(text) returns regclass language sql as $$ select 'pg_class'::regclass $$;
        create function public.array_position(text[], text) returns int language sql as $$ select 1 $$;
        create function public.strpos(text, text) returns int language sql as $$ select 0 $$;
        create function public.current_schemas(boolean) returns name[] language sql as $$ select array['nothing']::name[] $$;
        create function public.fake_eq(name, name) returns boolean language sql as $$ select false $$;
        create operator public.= (leftarg = name, rightarg = name, function = public.fake_eq);
        alter role app set search_path = public, pg_catalog;
        "#,
    )
    .unwrap();
    s.pg.sql(DB, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'interceptor-catalog'").unwrap();
    let (ok, out) = agent(
        &s,
        &[
            "SELECT ssn, secret FROM customers ORDER BY id",
            "SELECT * FROM customers ORDER BY id",
        ],
    );
    assert!(ok, "{out}\n{}", s.daemon.output());
    assert!(
        out.contains("***-**-6789") && out.contains("[REDACTED:secret]"),
        "{out}"
    );
    assert_no_leak("shadowing functions", &out);
    s.pg.sql(DB, "alter role app reset search_path").unwrap();
}

#[test]
fn derived_values_strict_mode_and_other_sessions_sql() {
    let (s, _p) = stack();
    // A partially masked column's derived values are masked fully.
    let (ok, out) = agent(
        &s,
        &["SELECT reverse(ssn), md5(ssn), substr(ssn, 1, 3), ssn FROM customers WHERE id = 1"],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().next().unwrap(),
        "[REDACTED:ssn]|[REDACTED:ssn]|[REDACTED:ssn]|***-**-6789",
        "{out}"
    );
    // pg_stat_activity shows other jobs' SQL with its literals.
    let (ok, out) = agent(&s, &["SELECT query FROM pg_stat_activity"]);
    assert!(!ok && out.contains("other sessions"), "{out}");

    // Strict mode (the prober identity): a tagged column only as it is.
    let (ok, out) = psql(&s, &["SELECT id, ssn FROM customers WHERE id = 1"]);
    assert!(ok && out.contains("1|***-**-6789"), "{out}");
    for probe in [
        "SELECT 1/(CASE WHEN ascii(substr(ssn,1,1)) <= 50 THEN 0 ELSE 1 END) FROM customers WHERE id=1",
        "SELECT pg_sleep(CASE WHEN ssn LIKE '1%' THEN 0.01 ELSE 0 END) FROM customers",
        "SELECT ssn::int FROM customers",
        "SELECT id FROM customers WHERE ssn < '5'",
        "SELECT id FROM customers ORDER BY ssn",
        "SELECT a.id FROM customers a JOIN customers b ON a.ssn = b.ssn",
        "EXPLAIN SELECT id FROM customers WHERE ssn < '5'",
        "SELECT count(*) FROM customers GROUP BY secret",
    ] {
        let (ok, out) = psql(&s, &[probe]);
        assert!(!ok && out.contains("strict mode"), "{probe}: {out}");
        assert_no_leak(probe, &out);
        assert!(
            !out.contains("division by zero"),
            "{probe} reached the server: {out}"
        );
    }
}

#[test]
fn startup_settings_are_decided_like_set() {
    let (s, _p) = stack();
    // PGOPTIONS / pgjdbc's currentSchema: allowed where SET would be.
    let mut cmd = s.psql(
        &s.conninfo(),
        &[
            "SHOW search_path",
            "SELECT ssn FROM customers WHERE id = 1",
            "SET search_path = public, pg_catalog",
            "SELECT ssn FROM customers WHERE id = 2",
        ],
    );
    cmd.env("PGOPTIONS", "-c search_path=public");
    process::as_user(&mut cmd, "nobody").unwrap();
    let o = s.run_inside(&mut cmd).unwrap();
    assert!(o.success(), "{o:?}\n{}", s.daemon.output());
    assert!(
        o.stdout.starts_with("public\n")
            && o.stdout.contains("***-**-6789")
            && o.stdout.contains("***-**-4321"),
        "{o:?}"
    );
    // Refused where SET would be (no allow_settings for the prober), naming
    // the rule, before the session starts.
    let mut cmd = s.psql(&s.conninfo(), &["SELECT 1"]);
    cmd.env("PGOPTIONS", "-c search_path=public");
    let o = s.run_inside(&mut cmd).unwrap();
    assert!(
        !o.success()
            && o.stderr.contains("builtin.guarded-setting")
            && o.stderr.contains("search_path"),
        "{o:?}"
    );
    let (ok, out) = psql(&s, &["SET search_path = public"]);
    assert!(!ok && out.contains("builtin.guarded-setting"), "{out}");
    // Lexing settings stay pinned, for everyone.
    let mut cmd = s.psql(&s.conninfo(), &["SELECT 1"]);
    cmd.env("PGOPTIONS", "-c standard_conforming_strings=off");
    process::as_user(&mut cmd, "nobody").unwrap();
    let o = s.run_inside(&mut cmd).unwrap();
    assert!(
        !o.success() && o.stderr.contains("builtin.lexing-setting"),
        "{o:?}"
    );
}
