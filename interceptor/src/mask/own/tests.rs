//! The session's own relations, traced and planned as a session would meet
//! them: each statement planned against the state the earlier ones left,
//! and applied when it "completes".

use super::*;
use crate::mask::{
    lineage::Tracer,
    plan::{StmtPlan, plan},
    policy::{MaskPolicy, Profile, SensitiveSpec},
    strategy::Strategy,
};

fn people() -> RelInfo {
    RelInfo {
        oid: 16384,
        schema: "public".into(),
        name: "people".into(),
        kind: 'r',
        columns: ["id", "name", "ssn"].map(str::to_owned).to_vec(),
        attnums: vec![1, 2, 3],
        view_def: None,
        carries: Vec::new(),
    }
}

fn catalog() -> Snapshot {
    let mut s = Snapshot::default();
    for n in [None, Some("public")] {
        s.relations.insert(
            Relation {
                schema: n.map(str::to_owned),
                name: "people".into(),
            },
            Some(people()),
        );
    }
    // What the catalog connection answers for names it cannot see.
    for n in [
        "t",
        "t2",
        "t3",
        "tv",
        "v",
        "accounts",
        "alembic_version",
        "nope",
        "u",
    ] {
        s.relations.insert(
            Relation {
                schema: None,
                name: n.into(),
            },
            None,
        );
        s.relations.insert(
            Relation {
                schema: Some("public".into()),
                name: n.into(),
            },
            None,
        );
    }
    s
}

fn policy() -> MaskPolicy {
    let mut m = MaskPolicy::default();
    m.add_sensitive(SensitiveSpec {
        columns: vec!["public.people.ssn".into()],
        category: "ssn".into(),
    })
    .unwrap();
    m
}

fn profile(strict: bool) -> Profile {
    let mut p = Profile {
        strict,
        ..Profile::default()
    };
    p.strategies.insert("ssn".into(), Strategy::Partial(4));
    p
}

/// A session: statements planned in turn, each completing with `tag`.
struct Session {
    own: OwnRelations,
    snap: Snapshot,
    pol: MaskPolicy,
    profile: Profile,
}

impl Session {
    fn new(strict: bool) -> Self {
        Self {
            own: OwnRelations::default(),
            snap: catalog(),
            pol: policy(),
            profile: profile(strict),
        }
    }

    /// Plans `sql` against the current state; on success it "runs" and
    /// completes with `tag` (its effects applied), then ReadyForQuery with
    /// `status`.
    fn run(&mut self, sql: &str, tag: &str, status: u8) -> Result<StmtPlan, String> {
        let stmt = crate::sql::parse_one(sql, &crate::sql::Limits::default()).expect("parses");
        let facts = crate::sql::analyze(sql, &crate::sql::Limits::default()).expect("analyses");
        let f = &facts.statements[0];
        let state = self.own.state().clone();
        let resolver = Resolver {
            snap: &self.snap,
            own: &state,
        };
        let t = Tracer::new(&resolver, &self.pol).trace(&stmt);
        let writes: Vec<Relation> = f.writes.iter().cloned().collect();
        let mut effects = effects(&stmt, t.created.as_deref(), &t.written, &writes, false);
        for (n, v) in &f.settings {
            if n == "search_path" {
                effects.push(search_path_effect(&stmt, v));
            }
        }
        let p = plan(&t, &self.profile);
        if p.is_ok() {
            self.own.completed(&effects, tag);
        } else {
            // Refused: the server sees a failing statement.
            self.own.error();
        }
        self.own.ready(status);
        p
    }

    fn ok(&mut self, sql: &str, tag: &str) -> StmtPlan {
        self.run(sql, tag, b'I')
            .unwrap_or_else(|e| panic!("{sql}: refused: {e}"))
    }

    fn in_block(&mut self, sql: &str, tag: &str) -> Result<StmtPlan, String> {
        self.run(sql, tag, b'T')
    }
}

fn masked_cols(p: &StmtPlan, n: usize) -> Vec<Option<Strategy>> {
    (0..n).map(|i| p.column(i, n).map(|m| m.strategy)).collect()
}

#[test]
fn a_migration_in_one_transaction_runs() {
    // Alembic's first migration: everything in one transaction, the catalog
    // connection seeing none of it until COMMIT.
    let mut s = Session::new(false);
    s.in_block("BEGIN", "BEGIN").unwrap();
    s.in_block(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
        "CREATE TABLE",
    )
    .unwrap();
    s.in_block(
        "CREATE TABLE accounts (id serial PRIMARY KEY, balance int DEFAULT 0)",
        "CREATE TABLE",
    )
    .unwrap();
    let p = s
        .in_block("INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num", "INSERT 0 1")
        .unwrap();
    assert_eq!(masked_cols(&p, 1), [None]);
    s.in_block(
        "INSERT INTO accounts (balance) VALUES (1), (2)",
        "INSERT 0 2",
    )
    .unwrap();
    s.in_block("UPDATE accounts SET balance = id * 10", "UPDATE 2")
        .unwrap();
    let p = s.in_block("SELECT * FROM accounts", "SELECT 2").unwrap();
    assert_eq!(masked_cols(&p, 2), [None, None]);
    s.run("COMMIT", "COMMIT", b'I').unwrap();
}

#[test]
fn temp_tables_from_clean_data_read_clean_and_laundering_stays_refused() {
    let mut s = Session::new(false);
    s.ok(
        "CREATE TEMP TABLE t AS SELECT id, name FROM people",
        "SELECT 3",
    );
    let p = s.ok("SELECT * FROM t", "SELECT 3");
    assert_eq!(masked_cols(&p, 2), [None, None]);
    // The shape is kept: a result of another width is masked whole.
    assert_eq!(p.column(0, 3).map(|m| m.strategy), Some(Strategy::Redact));
    // Laundering, every way round: refused before it runs.
    for sql in [
        "CREATE TEMP TABLE t2 AS SELECT ssn FROM people",
        "INSERT INTO t (name) SELECT ssn FROM people",
        "UPDATE t SET name = (SELECT ssn FROM people LIMIT 1)",
        "SELECT ssn INTO TEMP t3 FROM people",
        "CREATE TEMP VIEW tv AS SELECT upper(ssn) AS s FROM people",
    ] {
        if sql.starts_with("CREATE TEMP VIEW") {
            // A view stores nothing: it is traced through its definition.
            s.ok(sql, "CREATE VIEW");
            let p = s.ok("SELECT s FROM tv", "SELECT 3");
            assert_eq!(
                masked_cols(&p, 1),
                [Some(Strategy::Redact)],
                "derived from ssn: fully masked"
            );
        } else {
            let e = s.run(sql, "", b'I').expect_err(sql);
            assert!(e.contains("copy masked data"), "{sql}: {e}");
        }
    }
    // Still clean afterwards; t2/t3 never came to exist.
    let p = s.ok("SELECT name FROM t", "SELECT 3");
    assert_eq!(masked_cols(&p, 1), [None]);
    let p = s.ok("SELECT * FROM t2", "");
    assert!(
        p.column(0, 1).is_some(),
        "an unknown relation's rows are masked whole"
    );
}

#[test]
fn missing_relations_reach_the_server_and_unknown_columns_of_own_relations_are_opaque() {
    let mut s = Session::new(false);
    // The server answers 42P01; were it to exist, its rows are masked.
    let p = s.ok("SELECT * FROM nope", "");
    assert_eq!(p.column(0, 4).map(|m| m.strategy), Some(Strategy::Redact));
    s.ok("CREATE TEMP TABLE t (a int)", "CREATE TABLE");
    // A column the session's history does not know: not clean.
    assert!(s.run("SELECT b FROM t", "", b'I').is_err());
}

#[test]
fn rollback_forgets_and_a_temp_table_shadows_by_name() {
    let mut s = Session::new(false);
    s.in_block("BEGIN", "BEGIN").unwrap();
    s.in_block("CREATE TEMP TABLE people (id int)", "CREATE TABLE")
        .unwrap();
    let p = s.in_block("SELECT * FROM people", "SELECT 0").unwrap();
    assert_eq!(masked_cols(&p, 1), [None]);
    s.run("ROLLBACK", "ROLLBACK", b'I').unwrap();
    // public.people again: ssn masked.
    let p = s.ok("SELECT * FROM people", "SELECT 3");
    assert_eq!(masked_cols(&p, 3), [None, None, Some(Strategy::Partial(4))]);

    // Savepoints.
    s.in_block("BEGIN", "BEGIN").unwrap();
    s.in_block("CREATE TEMP TABLE t (a int)", "CREATE TABLE")
        .unwrap();
    s.in_block("SAVEPOINT s1", "SAVEPOINT").unwrap();
    s.in_block("DROP TABLE t", "DROP TABLE").unwrap();
    s.in_block("ROLLBACK TO SAVEPOINT s1", "ROLLBACK").unwrap();
    let p = s.in_block("SELECT a FROM t", "SELECT 0").unwrap();
    assert_eq!(masked_cols(&p, 1), [None]);
    // COMMIT of a failed block is a rollback: the server says ROLLBACK.
    s.run("COMMIT", "ROLLBACK", b'I').unwrap();
    let p = s.ok("SELECT * FROM t", "");
    assert!(p.column(0, 1).is_some());
}

#[test]
fn an_error_outside_a_block_undoes_the_implicit_transaction() {
    let mut own = OwnRelations::default();
    let stmt = crate::sql::parse_one(
        "CREATE TEMP TABLE t (a int)",
        &crate::sql::Limits::default(),
    )
    .unwrap();
    let e = effects(&stmt, None, &Lin::default(), &[], false);
    own.completed(&e, "CREATE TABLE");
    own.error();
    own.ready(b'I');
    assert!(
        own.state()
            .find(&Relation {
                schema: None,
                name: "t".into()
            })
            .is_none()
    );
}

#[test]
fn uncertain_state_and_code_make_own_relations_opaque() {
    let mut s = Session::new(false);
    s.ok("CREATE TEMP TABLE t AS SELECT id FROM people", "SELECT 3");
    let uncertain = s.own.state().uncertain();
    let r = Resolver {
        snap: &s.snap,
        own: &uncertain,
    };
    assert!(
        r.relation(&Relation {
            schema: None,
            name: "t".into()
        })
        .is_none(),
        "not trusted while changes are in flight"
    );
    // Code that the proxy cannot see ran: what it wrote is unknown.
    let stmt = crate::sql::parse_one("SELECT 1", &crate::sql::Limits::default()).unwrap();
    s.own.completed(
        &effects(&stmt, None, &Lin::default(), &[], true),
        "SELECT 1",
    );
    assert!(
        s.run("SELECT * FROM t", "", b'I').is_err(),
        "tainted relation refused under unknown_lineage = refuse"
    );
}

#[test]
fn search_path_follows_set_set_local_and_set_config() {
    let mut s = Session::new(false);
    s.ok("SET search_path = app, public", "SET");
    assert_eq!(
        s.own.state().search_path,
        SearchPath::Set("app, public".into())
    );
    s.in_block("BEGIN", "BEGIN").unwrap();
    s.in_block("SET LOCAL search_path = other", "SET").unwrap();
    assert_eq!(s.own.state().search_path, SearchPath::Set("other".into()));
    s.run("COMMIT", "COMMIT", b'I').unwrap();
    assert_eq!(
        s.own.state().search_path,
        SearchPath::Set("app, public".into())
    );
    s.ok(
        "SELECT pg_catalog.set_config('search_path', '', false)",
        "SELECT 1",
    );
    assert_eq!(s.own.state().search_path, SearchPath::Set(String::new()));
    s.ok("RESET search_path", "RESET");
    assert_eq!(s.own.state().search_path, SearchPath::Default);
}

#[test]
fn derived_values_of_a_partial_column_are_masked_fully() {
    let mut s = Session::new(false);
    let p = s.ok(
        "SELECT ssn, reverse(ssn), md5(ssn), substr(ssn, 1, 3), ssn::varchar(3) FROM people",
        "SELECT 3",
    );
    assert_eq!(
        masked_cols(&p, 5),
        [
            Some(Strategy::Partial(4)),
            Some(Strategy::Redact),
            Some(Strategy::Redact),
            Some(Strategy::Redact),
            Some(Strategy::Redact)
        ]
    );
    let p = s.ok(
        "SELECT x FROM (SELECT reverse(ssn) AS x FROM people) q",
        "SELECT 3",
    );
    assert_eq!(masked_cols(&p, 1), [Some(Strategy::Redact)]);
    let p = s.ok("SELECT (ssn) FROM people", "SELECT 3");
    assert_eq!(masked_cols(&p, 1), [Some(Strategy::Partial(4))]);
}

#[test]
fn strict_mode_refuses_every_use_but_selecting_the_column() {
    let mut s = Session::new(true);
    let p = s.ok("SELECT id, ssn FROM people WHERE id = 1", "SELECT 1");
    assert_eq!(masked_cols(&p, 2), [None, Some(Strategy::Partial(4))]);
    for sql in [
        "SELECT 1/(CASE WHEN ascii(substr(ssn,1,1)) <= 50 THEN 0 ELSE 1 END) FROM people WHERE id = 1",
        "SELECT pg_sleep(CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END) FROM people",
        "SELECT ssn::int FROM people",
        "SELECT length(ssn) FROM people",
        "SELECT count(ssn) FROM people",
        "SELECT id FROM people WHERE ssn < '5'",
        "SELECT id FROM people ORDER BY ssn",
        "SELECT p.id FROM people p JOIN people q ON p.ssn = q.ssn",
        "EXPLAIN SELECT id FROM people WHERE ssn < '5'",
        "EXPLAIN SELECT ssn FROM people",
    ] {
        let e = s.run(sql, "", b'I').expect_err(sql);
        assert!(e.contains("strict mode"), "{sql}: {e}");
    }
    // Non-strict: EXPLAIN of a plain read runs.
    let mut lax = Session::new(false);
    lax.ok("EXPLAIN SELECT ssn FROM people", "EXPLAIN");
}
