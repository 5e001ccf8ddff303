//! End-to-end: masking follows the data, not the label.
//!
//! A real PostgreSQL with a seeded `customers` table (names, e-mails, SSNs,
//! card numbers, secrets). An agent identity (unchanged psql, and a Rust
//! client in the extended protocol with binary results, inside the watched
//! cgroup) tries the evasions an agent would: expressions, casts,
//! aggregates, JSON functions, CTEs, views, unions, cursors, COPY in every
//! format, prepared statements, error messages, notifications, filters and
//! copies into other tables. None returns a raw sensitive value in any form.
//! The same queries by an identity allowed raw access return the real
//! values, and the audit log says which columns were masked and why.

use std::{fs, process::Command, time::Duration};

use interceptor_tests::{
    Stack, paths,
    stack::{DB, TARGET},
};
use serde_json::Value;

const POLICY: &str = r#"
[defaults]
identity = "dba"

[[identity]]
name = "agent"
cgroup = ["/interceptor-test-*"]

[[identity]]
name = "dba"

[[rule]]
id = "work"
identities = ["*"]
classes = ["read", "write", "transaction", "session", "ddl", "admin", "notify"]
action = "allow"

[[sensitive]]
columns = ["public.customers.ssn"]
category = "ssn"

[[sensitive]]
columns = ["public.customers.card"]
category = "card"

[[sensitive]]
columns = ["public.customers.secret"]
category = "secret"

[[sensitive]]
columns = ["public.customers.email"]
category = "email"

[[masking]]
identities = ["agent"]
strategies = { ssn = "partial", card = "partial", email = "hash", secret = "redact" }

[[masking]]
identities = ["dba"]
default = "raw"
detectors = false
"#;

const SEED: &str = "
alter table customers add column ssn text unique, add column card text, add column secret text;
update customers set ssn = '123-45-6789', card = '4111111111111111', secret = 'hunter2-ada' where id = 1;
update customers set ssn = '987-65-4321', card = '5500000000000004', secret = 'sw0rdfish-grace' where id = 2;
update customers set ssn = '555-12-3456', card = '340000000000009', secret = 'letmein-edsger' where id = 3;
create view cust_view as select id, lower(secret) as s, ssn from customers;
grant select on cust_view to app;
create table notes (id int, body text);
grant all on notes to app;
insert into notes values (1, 'call back on 321-54-9876 re card 4012888888881881');
";

/// Every raw sensitive value, and the forms an evasion might give them.
fn forbidden() -> Vec<String> {
    let raw = [
        "123-45-6789",
        "987-65-4321",
        "555-12-3456",
        "4111111111111111",
        "5500000000000004",
        "340000000000009",
        "hunter2-ada",
        "sw0rdfish-grace",
        "letmein-edsger",
        "ada@example.com",
        "grace@example.com",
        "edsger@example.com",
        // In the notes table, found by the content detectors only.
        "321-54-9876",
        "4012888888881881",
    ];
    let mut out = Vec::new();
    for r in raw {
        out.push(r.to_owned());
        out.push(r.to_uppercase());
        out.push(r.replace('-', ""));
        out.push(r.chars().rev().collect());
        if r.len() > 9 {
            // A middle slice: substr() evasions.
            out.push(r[2..r.len() - 2].to_owned());
        }
    }
    out.retain(|s| s.len() >= 7);
    out
}

/// Evasions that run and must come back masked.
const MASKED: &[&str] = &[
    "select ssn from customers",
    "select upper(ssn) from customers",
    "select ssn || '' from customers",
    "select ssn::varchar(20) from customers",
    "select replace(ssn, '-', '') from customers",
    "select reverse(secret) from customers",
    "select substr(card, 1, 8), substr(card, 9) from customers",
    "select md5(secret), length(secret) from customers",
    "select row_to_json(c) from customers c",
    "select to_jsonb(c.*) from customers c",
    "select json_agg(c) from customers c",
    "select string_agg(secret, ',') from customers",
    "select array_agg(ssn) from customers",
    "with t as (select ssn as s from customers) select * from t",
    "select * from (select card as x from customers) sub",
    "select name from customers union all select secret from customers",
    "select (select secret from customers where id = 1)",
    "select case when id > 0 then ssn end from customers",
    "select coalesce(null, card) from customers",
    "select format('%s', secret) from customers",
    "select c from customers c",
    "select * from customers",
    "select * from cust_view",
    "select s.x from customers c, lateral (select c.secret as x) s",
    "begin; declare cur cursor for select ssn, secret from customers; fetch all from cur; commit",
    "prepare p1 as select card, email from customers; execute p1",
    "copy customers to stdout",
    "copy customers to stdout with (format csv, header)",
    "copy (select upper(secret) from customers) to stdout",
    "copy customers to stdout with (format binary)",
    // COPY options, both syntaxes (psycopg2's copy_to sends the old one).
    "copy customers to stdout with (format csv, delimiter ';')",
    r"copy customers to stdout with delimiter as E'\t' null as '\N'",
    "copy customers to stdout with (delimiter '|', null 'NIL')",
    r"copy customers to stdout with (format csv, quote '''', escape '\', force_quote *, header)",
    "copy customers to stdout csv header delimiter '-' quote as '~'",
    "copy (select ssn || '|' || secret as both, secret from customers) to stdout with (delimiter '|')",
    "update customers set name = name where id = 1 returning secret, ssn",
    "select secret::int from customers",
    "insert into customers (id, name, email, ssn) values (99, 'x', 'x@example.org', '123-45-6789')",
    "select * from notes",
    "select concat_ws('/', name, secret) from customers",
    "select ssn from customers where id = 1 union select secret from customers where id = 2",
    // NotificationResponse and ParameterStatus go through the detectors.
    "listen ch; notify ch, 'call 321-54-9876'",
    "set application_name = 'card 4012888888881881'; show application_name",
];

/// Evasions refused outright, with the reason's words.
const REFUSED: &[(&str, &str)] = &[
    (
        "select name from customers where secret like 'hunter%'",
        "filters",
    ),
    ("select name from customers order by ssn", "filters"),
    ("select count(*) from customers group by card", "filters"),
    (
        "create table leak as select secret from customers",
        "copy masked data",
    ),
    (
        "insert into notes select id, secret from customers",
        "copy masked data",
    ),
    ("update customers set name = secret", "copy masked data"),
    ("select ssn into leak2 from customers", "copy masked data"),
    (
        "select pg_notify('ch', secret) from customers",
        "outside the result",
    ),
    // Refused by the built-in dangerous-function list before masking looks.
    (
        "select query_to_xml('select secret from customers', true, false, '')",
        "query_to_xml",
    ),
    (
        "select table_to_xml('customers', true, false, '')",
        "table_to_xml",
    ),
    (
        "select * from pg_stats where tablename = 'customers'",
        "holds column values",
    ),
    (
        "copy customers to stdout with (format csv, encoding 'SJIS')",
        "ENCODING 'SJIS'",
    ),
];

fn stack() -> (Stack, tempfile::TempDir) {
    let policy = tempfile::tempdir().unwrap();
    fs::write(policy.path().join("policy.toml"), POLICY).unwrap();
    let dir = policy.path().to_owned();
    let s = Stack::start_with(|c, pg| {
        c.policy_dir = Some(dir);
        c.explicit_target = Some(TARGET.to_owned());
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    s.pg.sql(DB, SEED).unwrap();
    (s, policy)
}

fn leaks(text: &str) -> Vec<String> {
    forbidden()
        .into_iter()
        .filter(|f| text.contains(f.as_str()))
        .collect()
}

/// psql as the agent (inside the watched cgroup), one statement per run.
fn agent_psql(s: &Stack, sql: &str) -> (bool, String) {
    let mut cmd = s.psql(&s.conninfo(), &[sql]);
    let out = s.run_inside(&mut cmd).unwrap();
    (out.success(), format!("{}\n{}", out.stdout, out.stderr))
}

/// psql as the dba: outside the cgroup, straight to the proxy's port.
fn dba_psql(s: &Stack, sql: &str) -> (bool, String) {
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname={DB} user=app",
        s.daemon.listen().port()
    );
    let mut cmd = s.psql(&conninfo, &[sql]);
    let out = interceptor_tests::process::run(&mut cmd, Duration::from_secs(30)).unwrap();
    (out.success(), format!("{}\n{}", out.stdout, out.stderr))
}

#[test]
fn agent_sees_no_raw_value_through_any_evasion_and_dba_sees_them_all() {
    let (s, _policy) = stack();
    let mut failures = Vec::new();
    for q in MASKED {
        let (ok, out) = agent_psql(&s, q);
        // Two are errors whose messages echo a value; the rest must run.
        let errs = q.contains("secret::int") || q.starts_with("insert into customers");
        if ok == errs {
            failures.push(format!(
                "{q}\n  expected {}, got:\n{out}",
                if errs { "an error" } else { "success" }
            ));
        }
        // Values of non-text types (arrays, rows) are masked as NULL.
        let nulls = q.contains("array_agg") || q == &"select c from customers c";
        if nulls && out.lines().any(|l| !l.trim().is_empty()) {
            failures.push(format!("{q}\n  expected NULLs, got:\n{out}"));
        }
        if !nulls && !["[REDACTED", "***", "tok_"].iter().any(|m| out.contains(m)) {
            failures.push(format!("{q}\n  shows no masked value:\n{out}"));
        }
        let l = leaks(&out);
        if !l.is_empty() {
            failures.push(format!("{q}\n  leaked {l:?} in:\n{out}"));
        }
        if out.contains("refused by rule builtin.masking") {
            failures.push(format!(
                "{q}\n  was refused, expected masked output:\n{out}"
            ));
        }
    }
    for (q, why) in REFUSED {
        let (ok, out) = agent_psql(&s, q);
        if ok || !out.contains("refused by rule builtin.") || !out.contains(why) {
            failures.push(format!(
                "{q}\n  expected a built-in refusal about `{why}`, got:\n{out}"
            ));
        }
        if !leaks(&out).is_empty() {
            failures.push(format!("{q}\n  leaked {:?}", leaks(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} evasions failed:\n{}\n\ndaemon:\n{}",
        failures.len(),
        MASKED.len() + REFUSED.len(),
        failures.join("\n"),
        s.daemon.output()
    );

    // What the agent does see: partial SSNs and cards, tokens for e-mails,
    // redactions for secrets; the same token for the same value.
    let (ok, out) = agent_psql(
        &s,
        "select ssn, card, email, secret, name from customers order by id",
    );
    assert!(ok, "{out}");
    let first = out.lines().next().unwrap();
    // A CSV header keeps the column names.
    let (ok, csv) = agent_psql(
        &s,
        "copy customers (id, ssn) to stdout with (format csv, header)",
    );
    assert!(
        ok && csv.starts_with("id,ssn\n") && csv.contains("\"***-**-6789\""),
        "{csv}"
    );
    // With options of one's own, each masked value in its own field.
    let (ok, csv) = agent_psql(
        &s,
        "copy (select id, ssn, name from customers where id = 1) to stdout with (format csv, delimiter ';', quote '~', header)",
    );
    assert!(
        ok && csv.trim_end() == "id;ssn;name\n1;~***-**-6789~;Ada Lovelace",
        "{csv:?}"
    );
    let (ok, txt) = agent_psql(
        &s,
        "copy (select id, ssn, null::text from customers where id = 1) to stdout with (delimiter '|', null 'NIL')",
    );
    assert!(ok && txt.trim_end() == "1|***-**-6789|NIL", "{txt:?}");
    assert!(
        first.starts_with("***-**-6789|************1111|tok_email_"),
        "{out}"
    );
    assert!(first.ends_with("|[REDACTED:secret]|Ada Lovelace"), "{out}");
    let (_, again) = agent_psql(&s, "select email from customers where id = 1");
    assert!(
        first.contains(again.trim()),
        "tokens differ between runs: {again} vs {first}"
    );
    // Nothing changed in the database.
    let left = s.pg.sql(DB, "select count(*) from customers where name = secret; select count(*) from pg_tables where tablename like 'leak%'").unwrap();
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "{left}"
    );

    // The dba sees every real value through the same queries.
    for (q, expect) in [
        ("select ssn from customers where id = 1", "123-45-6789"),
        (
            "select upper(secret) from customers where id = 1",
            "HUNTER2-ADA",
        ),
        (
            "select row_to_json(c) from customers c where id = 2",
            "sw0rdfish-grace",
        ),
        (
            "copy (select card from customers where id = 3) to stdout",
            "340000000000009",
        ),
        ("select * from cust_view where id = 1", "hunter2-ada"),
        (
            "select name from customers where secret like 'hunter%'",
            "Ada Lovelace",
        ),
        ("select * from notes", "321-54-9876"),
    ] {
        let (ok, out) = dba_psql(&s, q);
        assert!(
            ok && out.contains(expect),
            "dba: {q} should show {expect}:\n{out}"
        );
    }
}

#[test]
fn extended_protocol_binary_results_and_cached_descriptions_are_masked() {
    let (s, _policy) = stack();
    let queries = [
        "select ssn, secret, email, id from customers order by id",
        "select array_agg(ssn) from customers",
        "select row_to_json(c)::jsonb from customers c",
        "select secret::bytea from customers",
        "select upper(card) from customers",
        "select secret::int from customers",
        "select body from notes",
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgclient"));
    cmd.arg("rows").arg(s.conninfo()).args(queries);
    let out = s.run_inside(&mut cmd).unwrap();
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(out.success(), "{text}\n{}", s.daemon.output());
    assert!(
        leaks(&text).is_empty(),
        "leaked {:?}:\n{text}",
        leaks(&text)
    );
    // Both executions of the prepared statement (the second without a new
    // Describe) are masked the same way.
    for run in 0..2 {
        assert!(
            text.contains(&format!(
                "row[{run}] {} => ***-**-6789 | [REDACTED:secret] | tok_email_",
                queries[0]
            )),
            "run {run}:\n{text}"
        );
    }
    assert!(
        text.contains("error select secret::int from customers => 22P02"),
        "{text}"
    );
    // Binary text values are masked in place (types from the statement's
    // description, even when the client sends the next statement before the
    // last ReadyForQuery has gone by).
    // upper(card) is derived from the card: masked whole, not partially.
    assert!(
        text.contains("row[1] select upper(card) from customers => [REDACTED:card]"),
        "{text}"
    );
    assert!(
        text.contains("row[0] select body from notes => call back on ***-**-9876"),
        "{text}"
    );
}

#[test]
fn the_audit_log_says_which_columns_were_masked_and_why() {
    let (s, _policy) = stack();
    let (ok, out) = agent_psql(&s, "select name, upper(ssn) as shout from customers");
    assert!(ok, "{out}");
    let (ok, out) = agent_psql(&s, "select name from customers where ssn = '123-45-6789'");
    assert!(!ok, "{out}");
    // Bind parameters are recorded with each execution's result (binary
    // ones as hex), detectors applied.
    let mut client = Command::new(env!("CARGO_BIN_EXE_pgclient"));
    client.arg("query").arg(s.conninfo());
    let out = s.run_inside(&mut client).unwrap();
    assert!(out.success(), "{out}");
    let audit = s.daemon.layout().audit_dir.display().to_string();
    let mut found = (None, None);
    for _ in 0..100 {
        let out = Command::new(paths::interceptor_bin())
            .args(["audit", "export", &audit])
            .output()
            .unwrap();
        let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        found.0 = recs
            .iter()
            .find(|r| {
                r["kind"] == "result"
                    && r["event"]["masked_columns"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
            })
            .cloned();
        let with_params = recs.iter().any(|r| {
            r["kind"] == "result" && r["event"]["params"] == serde_json::json!(["\\x00000029"])
        });
        found.1 = recs
            .iter()
            .find(|r| {
                r["kind"] == "statement" && r["event"]["decision"]["rule"] == "builtin.masking"
            })
            .cloned();
        if found.0.is_some() && found.1.is_some() && with_params {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = found.0.expect("a result record with masked columns");
    let masked = result["event"]["masked_columns"].to_string();
    // upper(ssn) is derived: redacted, not shown partially.
    assert!(
        masked.contains("shout")
            && masked.contains("public.customers.ssn")
            && masked.contains("redact")
            && masked.contains("derived"),
        "{masked}"
    );
    assert!(
        !masked.contains("6789"),
        "the audit record holds a value: {masked}"
    );
    let refused = found.1.expect("the refused probe is recorded");
    assert!(
        refused["event"]["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("filters"),
        "{refused}"
    );
}
