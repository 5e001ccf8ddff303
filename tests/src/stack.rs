//! The usual end-to-end arrangement: a watched cgroup, a cluster with the
//! sample database, and the daemon intercepting that cluster's own address.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Context as _;
use serde_json::Value;

use crate::{
    Daemon, DaemonConfig, PgCluster, TestCgroup, daemon::field, pg::random_hex, process::Outcome,
};

/// Database, role and target names of the sample setup.
pub const DB: &str = "demo";
/// The application role the daemon logs in as.
pub const USER: &str = "app";
/// The target's name in the daemon's config.
pub const TARGET: &str = "demo";

/// How long a client command may take before the test calls it hung.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Cgroup + cluster + daemon. Fields drop in order: the daemon (and its
/// pins) first, then the cluster, then the cgroup.
pub struct Stack {
    /// The interceptor.
    pub daemon: Daemon,
    /// The database it intercepts.
    pub pg: PgCluster,
    /// The watched cgroup.
    pub cg: TestCgroup,
    /// The application role's password (database and credentials file only).
    pub password: String,
}

impl Stack {
    /// The default arrangement.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(|_, _| {})
    }

    /// The default arrangement, with the daemon's config adjusted by `adjust`.
    pub fn start_with(adjust: impl FnOnce(&mut DaemonConfig, &PgCluster)) -> anyhow::Result<Self> {
        let cg = TestCgroup::new()?;
        let pg = PgCluster::start()?;
        let password = format!("pw-{}", random_hex(12)?);
        pg.create_sample_db(USER, &password, DB)?;
        let mut config = DaemonConfig::for_cluster(cg.path(), &pg, TARGET, USER, &password);
        adjust(&mut config, &pg);
        let daemon = Daemon::start(config)?;
        Ok(Self {
            daemon,
            pg,
            cg,
            password,
        })
    }

    /// libpq connection string for the database's own address, no password.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DB} user={USER}",
            self.pg.port()
        )
    }

    /// Unchanged `psql` as a user would run it (`/usr/bin/psql`, Debian's
    /// wrapper, which execs the real binary in the same process), with a
    /// clean environment: no password, no service file, no pgpass.
    pub fn psql(&self, conninfo: &str, sql: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/psql");
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", conninfo]);
        for s in sql {
            cmd.args(["-c", s]);
        }
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("LANG", "C")
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir("/");
        cmd
    }

    /// Runs `cmd` inside the watched cgroup.
    pub fn run_inside(&self, cmd: &mut Command) -> anyhow::Result<Outcome> {
        self.cg.run(cmd, CLIENT_TIMEOUT)
    }

    /// The `session_start` event for the process `pid`, waiting a little.
    pub fn session_of(&self, pid: u32) -> Option<Value> {
        self.daemon.session_start_of(pid, Duration::from_secs(5))
    }

    /// The `session_start` event for `pid`, or a panic message with the log.
    pub fn expect_session(&self, pid: u32) -> Value {
        self.session_of(pid)
            .with_context(|| format!("no session_start for pid {pid}:\n{}", self.daemon.output()))
            .unwrap()
    }

    /// Panics if the password appears anywhere in `texts` or the daemon's output.
    pub fn assert_password_not_in(&self, texts: &[&str]) {
        for t in texts {
            assert!(!t.contains(&self.password), "the password leaked into: {t}");
        }
        let log = self.daemon.output();
        assert!(
            !log.contains(&self.password),
            "the password is in the daemon's output:\n{log}"
        );
    }
}

/// A string field of an event.
pub fn str_field(e: &Value, dotted: &str) -> Option<String> {
    field(e, dotted).and_then(|v| v.as_str().map(str::to_owned))
}

/// The session number of a session event (`session_id`, or `session`).
pub fn session_id(e: &Value) -> Option<u64> {
    u64_field(e, "session_id").or_else(|| u64_field(e, "session"))
}

/// An unsigned integer field of an event.
pub fn u64_field(e: &Value, dotted: &str) -> Option<u64> {
    field(e, dotted).and_then(|v| v.as_u64())
}

/// The canonical path of the real `psql` binary (what the kernel runs after
/// Debian's wrapper execs it).
pub fn real_psql() -> anyhow::Result<PathBuf> {
    let wrapper_target = crate::pg::pg_bindir()?.join("psql");
    Ok(std::fs::canonicalize(wrapper_target)?)
}
