//! End-to-end compatibility: real drivers and tools, unchanged, inside a
//! watched cgroup, connecting to the database's real address (the redirect
//! catches them), with masking active (`public.people.ssn` tagged) and a
//! permissive policy (read, write, ddl, transaction, session). Each
//! scenario's transcript (results, command tags, SQLSTATEs) must equal the
//! one of the same scenario run directly against a copy of the database
//! (`demo_direct`, made from `demo` before any client ran).
//!
//! The drivers come from `cargo xtask setup` (see
//! `interceptor_tests::compat`): a venv with psycopg2, psycopg 3, asyncpg,
//! SQLAlchemy, Alembic and Django; node-postgres; Debian's pgjdbc. The
//! scenario scripts are in `tests/compat/`.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use interceptor_tests::{
    Daemon, DaemonConfig, PgCluster, Stack, TestCgroup, compat,
    pg::random_hex,
    process::{self, Outcome},
    stack::{DB, TARGET, USER},
};

/// The copy of `demo` the direct runs use.
const DIRECT_DB: &str = "demo_direct";

/// A CI job's identity with a permissive rule, one tagged column.
const POLICY: &str = r#"
[[identity]]
name = "ci-job"
cgroup = ["/interceptor-test-*"]

# Django's test runner creates and drops test_<name> while connected to
# `postgres`; only those databases.
[[rule]]
id = "django-test-databases"
identities = ["ci-job"]
commands = ["CREATE DATABASE", "DROP DATABASE"]
databases = ["postgres", "test_*"]
action = "allow"

[[rule]]
id = "pipeline"
identities = ["ci-job"]
classes = ["read", "write", "ddl", "transaction", "session"]
# pg_dump's set_config('search_path', '', false), pgjdbc's currentSchema=.
allow_settings = ["search_path"]
action = "allow"

[[sensitive]]
columns = ["public.people.ssn"]
category = "ssn"

[[masking]]
identities = ["ci-job"]
strategies = { ssn = "partial" }
"#;

/// The tagged table (in both databases).
const SEED: &str = "
create table people (id int primary key, name text not null, ssn text);
insert into people values (1, 'Ada', '123-45-6789'), (2, 'Grace', '987-65-4321'), (3, 'Edsger', '555-12-3456');
";

/// The raw tagged values.
const SSNS: [&str; 3] = ["123-45-6789", "987-65-4321", "555-12-3456"];

/// How long one scenario may take (Django's test runner twice is the longest).
const SCENARIO_TIMEOUT: Duration = Duration::from_mins(4);

/// A stack whose cluster also holds `demo_direct`, and a work directory
/// with two copies of `tests/compat/` (one per run) owned by `nobody`.
struct Compat {
    s: Stack,
    work: tempfile::TempDir,
    /// The policy directory the daemon watches.
    _policy: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Inside the watched cgroup, to the real address: through the proxy.
    Proxy,
    /// Outside, straight to PostgreSQL, on `demo_direct`.
    Direct,
}

fn copy_tree(from: &Path, to: &Path, uid: u32, gid: u32) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() == "node_modules" || e.file_name() == "__pycache__" {
                continue;
            }
            copy_tree(&e.path(), &dest, uid, gid);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
        std::os::unix::fs::chown(&dest, Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::chown(to, Some(uid), Some(gid)).unwrap();
}

impl Compat {
    fn start() -> Self {
        assert!(
            compat::python().unwrap().exists() && Path::new(compat::JDBC_JAR).exists(),
            "the compat drivers are missing: run `cargo xtask setup`"
        );
        let cg = TestCgroup::new().unwrap();
        let pg = PgCluster::start().unwrap();
        let password = format!("pw-{}", random_hex(12).unwrap());
        pg.create_sample_db(USER, &password, DB).unwrap();
        pg.sql(DB, &format!("set role {USER};\n{SEED}")).unwrap();
        // Django's test runner creates test_<db>.
        pg.sql("postgres", &format!("alter role {USER} createdb"))
            .unwrap();
        pg.sql(
            "postgres",
            &format!("create database {DIRECT_DB} template {DB} owner {USER}"),
        )
        .unwrap();
        let policy = tempfile::tempdir().unwrap();
        fs::write(policy.path().join("policy.toml"), POLICY).unwrap();
        let mut config = DaemonConfig::for_cluster(cg.path(), &pg, TARGET, USER, &password);
        config.policy_dir = Some(policy.path().to_owned());
        let daemon = Daemon::start(config).unwrap();

        let work = tempfile::Builder::new()
            .prefix("interceptor-compat-")
            .tempdir()
            .unwrap();
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let (uid, gid) = process::user_ids("nobody").unwrap();
        for run in ["proxy", "direct"] {
            copy_tree(&compat::scripts_dir(), &work.path().join(run), uid, gid);
        }
        Self {
            s: Stack {
                daemon,
                pg,
                cg,
                password,
            },
            work,
            _policy: policy,
        }
    }

    fn dir(&self, via: Via) -> PathBuf {
        self.work.path().join(match via {
            Via::Proxy => "proxy",
            Via::Direct => "direct",
        })
    }

    fn db(via: Via) -> &'static str {
        match via {
            Via::Proxy => DB,
            Via::Direct => DIRECT_DB,
        }
    }

    /// `program args` as `nobody` with libpq's environment for `via`.
    fn command(&self, via: Via, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.s.pg.port().to_string())
            .env("PGUSER", USER)
            .env("PGDATABASE", Self::db(via))
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env(
                "NODE_PATH",
                compat::node_dir().unwrap().join("node_modules"),
            )
            .current_dir(self.dir(via));
        if via == Via::Direct {
            cmd.env("PGPASSWORD", &self.s.password);
        }
        process::as_user(&mut cmd, "nobody").unwrap();
        cmd
    }

    fn run(&self, via: Via, program: &Path, args: &[&str]) -> Outcome {
        let mut cmd = self.command(via, program, args);
        match via {
            Via::Proxy => {
                let before = self.s.daemon.events_named("session_start").len();
                let out = self.s.cg.run(&mut cmd, SCENARIO_TIMEOUT).unwrap();
                // The redirect caught it: the daemon saw its sessions (the
                // scenario's processes may be children of `out.pid`).
                assert!(
                    self.s.daemon.events_named("session_start").len() > before,
                    "no session_start for {} (not redirected?):\n{out}\n{}",
                    out.command,
                    self.s.daemon.output()
                );
                out
            }
            Via::Direct => process::run(&mut cmd, SCENARIO_TIMEOUT).unwrap(),
        }
    }

    /// Runs the scenario both ways and asserts equal transcripts.
    fn same_both_ways(&self, program: &Path, args: &[&str]) {
        let direct = self.run(Via::Direct, program, args);
        assert!(direct.success(), "the direct run itself failed: {direct}");
        let proxied = self.run(Via::Proxy, program, args);
        let output = self.s.daemon.output();
        let mut refusals: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("refused") || l.contains("\"deny\"") || l.contains("ERROR"))
            .map(|l| &l[..l.floor_char_boundary(600)])
            .collect();
        refusals.reverse();
        refusals.truncate(20);
        let refusals = refusals.join("\n");
        assert!(
            proxied.success() && proxied.stdout == direct.stdout,
            "through the interceptor, `{}` differs from the direct run\n\
             --- direct stdout\n{}\n--- proxied stdout (exit {:?})\n{}\n--- proxied stderr\n{}\n--- daemon (last refusals)\n{refusals}",
            proxied.command,
            direct.stdout,
            proxied.status.code(),
            proxied.stdout,
            &proxied.stderr[proxied.stderr.len().saturating_sub(6000)..],
        );
        assert_no_raw_ssn(&proxied.stdout);
    }

    fn python(&self, script: &str) {
        let py = compat::python().unwrap();
        self.same_both_ways(&py, &[script]);
    }
}

fn assert_no_raw_ssn(text: &str) {
    for v in SSNS {
        assert!(
            !text.contains(v),
            "a tagged value came back in clear ({v}):\n{text}"
        );
    }
}

#[test]
fn alembic_upgrade_downgrade_three_migrations() {
    Compat::start().python("python/alembic_migrate.py");
}

#[test]
fn django_migrate_and_test_runner_twice() {
    Compat::start().python("python/django_run.py");
}

#[test]
fn psycopg2_copy_to_and_copy_from() {
    Compat::start().python("python/psycopg2_copy.py");
}

#[test]
fn psycopg3_basic_prepared_and_copy() {
    Compat::start().python("python/psycopg3_basic.py");
}

#[test]
fn asyncpg_enum_in_a_temp_table() {
    Compat::start().python("python/asyncpg_enum.py");
}

#[test]
fn sqlalchemy_core_and_orm_round_trip() {
    Compat::start().python("python/sqlalchemy_orm.py");
}

#[test]
fn missing_table_probe_gets_42p01() {
    Compat::start().python("python/missing_table.py");
}

#[test]
fn node_postgres_query_and_prepared() {
    Compat::start().same_both_ways(Path::new("/usr/bin/node"), &["node/pg_scenario.js"]);
}

#[test]
fn jdbc_with_current_schema() {
    let c = Compat::start();
    let port = c.s.pg.port().to_string();
    // The database differs between the runs: a tiny wrapper picks it from
    // PGDATABASE so both runs have the same argument list.
    let sh = PathBuf::from("/bin/sh");
    let script = format!(
        "exec java -Djava.io.tmpdir=/tmp -Xshare:auto -cp {} java/JdbcScenario.java {port} \"$PGDATABASE\"",
        compat::JDBC_JAR
    );
    c.same_both_ways(&sh, &["-c", &script]);
}

#[test]
fn pg_dump_through_the_proxy() {
    let c = Compat::start();
    // Schema and the untagged tables' data compare equal; the full dump
    // (with people's data) must work and show no SSN in clear.
    let bash = PathBuf::from("/bin/bash");
    // pg_dump's `\restrict <random key>` lines differ from run to run;
    // people's SSNs are tagged and customers' e-mail addresses are found by
    // the content detectors (on by default): their data differs.
    let filtered = "set -o pipefail; pg_dump --no-owner --exclude-table-data=people --exclude-table-data=customers \
                    | grep -v -e '^.restrict' -e '^.unrestrict'";
    c.same_both_ways(&bash, &["-c", filtered]);
    let full = c.run(Via::Proxy, Path::new("/usr/bin/pg_dump"), &["--no-owner"]);
    assert!(full.success(), "full pg_dump through the proxy: {full}");
    assert!(
        full.stdout.contains("COPY public.people"),
        "{}",
        full.stdout
    );
    assert_no_raw_ssn(&full.stdout);
    assert!(
        full.stdout.contains("1\tAda Lovelace\t[REDACTED:email]\n")
            && !full.stdout.contains("ada@example.com"),
        "customers' e-mail addresses are redacted in the dump: {}",
        full.stdout
    );
}

/// Laundering through relations the session makes never returns a tagged
/// value in clear (each statement may be refused or masked; none may leak).
#[test]
fn laundering_through_session_tables_never_shows_a_tagged_value() {
    let c = Compat::start();
    let script = "
SELECT id, ssn FROM people ORDER BY id;
CREATE TEMP TABLE t AS SELECT ssn FROM people;
INSERT INTO t SELECT ssn FROM people;
SELECT * FROM t;
SELECT ssn INTO TEMP t2 FROM people;
SELECT * FROM t2;
CREATE TEMP TABLE t3 (x text);
INSERT INTO t3 SELECT ssn FROM people;
INSERT INTO t3 SELECT upper(ssn) FROM people;
INSERT INTO t3 (x) VALUES ((SELECT ssn FROM people WHERE id = 1));
UPDATE t3 SET x = (SELECT ssn FROM people WHERE id = 2);
WITH s AS (SELECT ssn FROM people) INSERT INTO t3 SELECT ssn FROM s;
SELECT * FROM t3;
COPY (SELECT * FROM t3) TO STDOUT;
BEGIN;
CREATE TABLE laundry AS SELECT id, ssn AS s FROM people;
SELECT * FROM laundry;
COMMIT;
SELECT * FROM laundry;
CREATE TABLE laundry2 (id int, s text);
INSERT INTO laundry2 SELECT id, ssn FROM people;
SELECT * FROM laundry2;
";
    let dir = c.dir(Via::Proxy);
    fs::write(dir.join("launder.sql"), script).unwrap();
    let (uid, gid) = process::user_ids("nobody").unwrap();
    std::os::unix::fs::chown(dir.join("launder.sql"), Some(uid), Some(gid)).unwrap();
    let out = c.run(
        Via::Proxy,
        Path::new("/usr/bin/psql"),
        &["-X", "-A", "-t", "-e", "-f", "launder.sql"],
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    // Masking is on: the tagged column itself reads masked.
    assert!(
        text.contains("***-**-6789"),
        "masking is not active?\n{text}"
    );
    assert_no_raw_ssn(&text);
    // A later session reading what this one made sees no clear value either.
    let again = c.run(
        Via::Proxy,
        Path::new("/usr/bin/psql"),
        &[
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT * FROM laundry",
            "-c",
            "SELECT * FROM laundry2",
        ],
    );
    assert_no_raw_ssn(&format!("{}\n{}", again.stdout, again.stderr));
    println!("{text}");
}
