use super::*;
use crate::sql::StatementClass::{Ddl, Read, Session, Write};

// ---- real client traffic ----------------------------------------------------

#[test]
fn pgbench() {
    let v = all(
        "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 5678;
SELECT abalance FROM pgbench_accounts WHERE aid = 5678;
UPDATE pgbench_tellers SET tbalance = tbalance + -1234 WHERE tid = 3;
UPDATE pgbench_branches SET bbalance = bbalance + -1234 WHERE bid = 1;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 5678, -1234, CURRENT_TIMESTAMP);
END;",
    );
    let cmds: Vec<_> = v.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(
        cmds,
        ["UPDATE", "SELECT", "UPDATE", "UPDATE", "INSERT", "COMMIT"]
    );
    assert_eq!(
        (&v[1].classes, &v[1].reads),
        (&classes(&[Read]), &rels(&["pgbench_accounts"]))
    );
    assert_eq!(v[4].writes, rels(&["pgbench_history"]));
    let s = one("SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    assert_eq!(
        (&s.reads, s.unbounded),
        (&rels(&["pgbench_accounts"]), true)
    );
    // pgbench -i
    for sql in [
        "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
        "create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))",
        "create table pgbench_accounts(aid    int not null,bid int,abalance int,filler char(84)) with (fillfactor=100)",
        "alter table pgbench_branches add primary key (bid)",
        "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
    ] {
        assert!(one(sql).classes.contains(&Ddl), "{sql}");
    }
    let s = one("copy pgbench_accounts from stdin with (freeze on)");
    assert_eq!(
        (&s.classes, &s.writes),
        (&classes(&[Write]), &rels(&["pgbench_accounts"]))
    );
    assert_eq!(
        s.copy,
        Some(CopyFacts {
            from: true,
            endpoint: CopyEndpoint::Client
        })
    );
    let s = one(
        "insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, 1) as bid",
    );
    assert_eq!(
        (&s.writes, &s.functions),
        (&rels(&["pgbench_branches"]), &funcs(&["generate_series"]))
    );
    assert_eq!(
        one("select count(*) from pgbench_branches").reads,
        rels(&["pgbench_branches"])
    );
}

#[test]
fn psql_describe_queries() {
    // \dt
    let s = one(r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"#);
    assert_eq!(s.classes, classes(&[Read]));
    assert_eq!(
        s.reads,
        rels(&[
            "pg_catalog.pg_class",
            "pg_catalog.pg_namespace",
            "pg_catalog.pg_am"
        ])
    );
    assert_eq!(
        s.functions,
        funcs(&["pg_get_userbyid", "pg_table_is_visible"])
    );
    // \d t
    let s = one(r"SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;");
    assert_eq!(
        s.reads,
        rels(&["pg_catalog.pg_class", "pg_catalog.pg_namespace"])
    );
    let s = one(
        r"SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')
, c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '16384';",
    );
    assert_eq!(s.reads, rels(&["pg_catalog.pg_class", "pg_catalog.pg_am"]));
    assert!(s.functions.contains("array_to_string") && s.functions.contains("unnest"));
    let s = one(r"SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;");
    assert_eq!(
        s.reads,
        rels(&[
            "pg_catalog.pg_attribute",
            "pg_catalog.pg_attrdef",
            "pg_catalog.pg_collation",
            "pg_catalog.pg_type"
        ])
    );
    assert_eq!(s.functions, funcs(&["format_type", "pg_get_expr"]));
    // \l
    let s = one(r#"SELECT
  d.datname as "Name",
  pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
  pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
  CASE d.datlocprovider WHEN 'b' THEN 'builtin' WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
  pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;"#);
    assert_eq!(s.reads, rels(&["pg_catalog.pg_database"]));
    // \d t: policies
    let s = one(r"SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid)
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '16384' ORDER BY 1;");
    assert_eq!(
        s.reads,
        rels(&["pg_catalog.pg_policy", "pg_catalog.pg_roles"])
    );
}

#[test]
fn pg_dump_statements() {
    let v = all("SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;");
    assert_eq!(v.len(), 10);
    assert_eq!(
        v[4].settings,
        [("standard_conforming_strings".to_owned(), "on".to_owned())]
    );
    assert_eq!(v[5].settings, [("search_path".to_owned(), String::new())]);
    assert!(
        v.iter()
            .enumerate()
            .all(|(i, s)| i == 5 || s.classes == classes(&[Session]))
    );
    let s = one(
        "SELECT tableoid, oid, nspname, nspowner, nspacl, acldefault('n', nspowner) AS acldefault FROM pg_namespace",
    );
    assert_eq!(
        (&s.reads, &s.functions),
        (&rels(&["pg_namespace"]), &funcs(&["acldefault"]))
    );
    // pg_dump -t: `OPERATOR(pg_catalog.=) ANY (array[...])`.
    let s = one("SELECT c.oid
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n
     ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relkind OPERATOR(pg_catalog.=) ANY
    (array['r', 'S', 'v', 'm', 'f', 'p'])
  AND c.relname OPERATOR(pg_catalog.~) '^(people)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)");
    assert_eq!(
        (&s.classes, &s.reads, &s.functions),
        (
            &classes(&[Read]),
            &rels(&["pg_catalog.pg_class", "pg_catalog.pg_namespace"]),
            &funcs(&["pg_table_is_visible"])
        )
    );
    for sql in [
        "SELECT 1 WHERE 'r' OPERATOR ( pg_catalog . <> ) ALL (array['S'])",
        "SELECT 1 WHERE 2 OPERATOR(pg_catalog.>=) SOME (SELECT oid FROM pg_class)",
    ] {
        assert_eq!(one(sql).classes, classes(&[Read]), "{sql}");
    }
    // Only pg_catalog's operators are the built-in ones; a string that
    // spells the construct stays a string.
    let s = one("SELECT 'OPERATOR(pg_catalog.=) ANY' AS x");
    assert_eq!(s.functions, funcs(&[]));
    assert!(
        crate::sql::analyze(
            "SELECT 1 WHERE 1 OPERATOR(myschema.=) ANY (array[1])",
            &Limits::default()
        )
        .is_err()
    );
    // pg_dump's lock is SELECT's: a read; stronger modes are not.
    let s = one("LOCK TABLE public.pgbench_accounts IN ACCESS SHARE MODE");
    assert_eq!(
        (&s.classes, &s.reads, &s.writes),
        (
            &classes(&[Read]),
            &rels(&["public.pgbench_accounts"]),
            &rels(&[])
        )
    );
    for (sql, class) in [
        ("LOCK TABLE t IN ROW EXCLUSIVE MODE", Write),
        ("LOCK TABLE t IN ROW SHARE MODE NOWAIT", Write),
        (
            "LOCK TABLE t IN SHARE MODE",
            crate::sql::StatementClass::Admin,
        ),
        ("LOCK TABLE t", crate::sql::StatementClass::Admin),
    ] {
        let s = one(sql);
        assert_eq!(
            (&s.classes, &s.writes),
            (&classes(&[class]), &rels(&["t"])),
            "{sql}"
        );
    }
    assert_eq!(one("LOCK ONLY t IN ACCESS SHARE MODE").reads, rels(&["t"]));
    let s = one("COPY public.pgbench_accounts (aid, bid, abalance, filler) TO stdout;");
    assert_eq!(
        (&s.classes, &s.reads),
        (&classes(&[Read]), &rels(&["public.pgbench_accounts"]))
    );
    assert_eq!(
        s.copy,
        Some(CopyFacts {
            from: false,
            endpoint: CopyEndpoint::Client
        })
    );
    assert_eq!(
        one("SELECT pg_catalog.pg_is_in_recovery()").functions,
        funcs(&["pg_is_in_recovery"])
    );
    assert_eq!(
        one("SELECT last_value, is_called FROM public.t_id_seq").reads,
        rels(&["public.t_id_seq"])
    );
    // and what a restore runs
    for sql in [
        "CREATE TABLE public.pgbench_accounts (\n    aid integer NOT NULL,\n    filler character(84)\n)\nWITH (fillfactor='100');",
        "ALTER TABLE public.pgbench_accounts OWNER TO postgres;",
        "ALTER TABLE ONLY public.pgbench_accounts ADD CONSTRAINT pgbench_accounts_pkey PRIMARY KEY (aid);",
        "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('public.t_id_seq'::regclass);",
        "COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';",
        "ALTER SEQUENCE public.t_id_seq OWNED BY public.t.id;",
    ] {
        assert_eq!(one(sql).classes, classes(&[Ddl]), "{sql}");
    }
    assert_eq!(
        one("SELECT pg_catalog.setval('public.t_id_seq', 1, false);").functions,
        funcs(&["setval"])
    );
}
