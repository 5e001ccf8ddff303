//! A throw-away PostgreSQL cluster: `initdb` as the unprivileged `postgres`
//! user (postgres refuses to run as root) into a temporary directory, started
//! with `pg_ctl` on 127.0.0.1 and a private unix socket directory, SCRAM for
//! every connection. `Drop` stops it and removes the directory.

use std::{
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{paths, process};

/// Sample data for the demo and the tests: two small related tables.
pub const SAMPLE_SQL: &str = "
create table customers (id int primary key, name text not null, email text not null);
create table orders (id int primary key, customer_id int not null references customers(id),
                     amount numeric(10,2) not null, placed_at date not null);
insert into customers values
  (1, 'Ada Lovelace', 'ada@example.com'),
  (2, 'Grace Hopper', 'grace@example.com'),
  (3, 'Edsger Dijkstra', 'edsger@example.com');
insert into orders values
  (101, 1, 120.50, '2024-01-03'), (102, 1, 80.00, '2024-02-11'),
  (103, 2, 42.00, '2024-02-12'), (104, 3, 310.25, '2024-03-01');
";

/// Knobs of a cluster.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `max_connections` (the bench opens 1,000 idle sessions).
    pub max_connections: u32,
    /// Port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 100,
            port: None,
        }
    }
}

/// A running PostgreSQL cluster owned by this process.
pub struct PgCluster {
    /// `<tmp>/interceptor-pg-*`: `data/`, `sock/`, `log`. Removed on drop.
    dir: tempfile::TempDir,
    /// Server binaries (`initdb`, `pg_ctl`, `psql`, `pgbench`).
    bindir: PathBuf,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// Password of the `postgres` superuser (SCRAM everywhere, even locally).
    superuser_password: String,
}

/// The PostgreSQL server binaries: the newest `/usr/lib/postgresql/*/bin`
/// with `initdb` (Debian's layout; 15 on these hosts).
pub fn pg_bindir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql): run `cargo xtask setup`")?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, d)| d)
        .context("no /usr/lib/postgresql/*/bin/initdb: run `cargo xtask setup`")
}

/// A random hex string of `bytes` bytes from the kernel.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut buf)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
        s
    }))
}

impl PgCluster {
    /// Starts a cluster with default options.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&PgOptions::default())
    }

    /// Creates and starts a cluster.
    pub fn start_with(opts: &PgOptions) -> anyhow::Result<Self> {
        let bindir = pg_bindir()?;
        let (uid, gid) = process::user_ids("postgres")?;
        let dir = tempfile::Builder::new()
            .prefix("interceptor-pg-")
            .tempdir()?;
        // 0755 so that clients running as another user (the tests run psql as
        // `nobody`) reach the socket directory; data/ is 0700 by initdb.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        let sock = dir.path().join("sock");
        fs::create_dir(&sock)?;
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(&sock, Some(uid), Some(gid))?;

        let superuser_password = random_hex(16)?;
        let pwfile = dir.path().join("pwfile");
        fs::write(&pwfile, format!("{superuser_password}\n"))?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;

        let data = dir.path().join("data");
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path());
        process::as_user(&mut initdb, "postgres")?;
        process::run(&mut initdb, Duration::from_mins(2))?
            .ok()
            .context("initdb")?;
        fs::remove_file(&pwfile)?;

        let port = match opts.port {
            Some(p) => p,
            None => paths::free_port()?,
        };
        let conf = format!(
            "\n# added by interceptor-tests\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             max_connections = {max}\n\
             password_encryption = 'scram-sha-256'\n\
             ssl = off\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             log_connections = on\n\
             log_line_prefix = '%m [%p] %r %u@%d '\n",
            sock = sock.display(),
            max = opts.max_connections,
        );
        fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?
            .write_all(conf.as_bytes())?;

        let cluster = Self {
            dir,
            bindir,
            port,
            superuser_password,
        };
        let mut start = cluster.pg_ctl();
        start
            .arg("-l")
            .arg(cluster.log_path())
            .args(["-w", "-t", "60", "start"]);
        // pg_ctl leaves the postmaster running in its own session.
        let out = process::run(&mut start, Duration::from_secs(90))?;
        if !out.success() {
            bail!(
                "pg_ctl start failed: {out}\n--- server log\n{}",
                cluster.log()
            );
        }
        Ok(cluster)
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = Command::new(self.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .current_dir(self.dir.path());
        process::as_user(&mut cmd, "postgres").expect("user postgres exists: checked at start");
        cmd
    }

    /// Server binaries (`psql`, `pgbench` ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database's own address: what clients connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The unix socket directory (`psql -h <this>`).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// Runs `sql` as the superuser in database `db` (over the private unix
    /// socket, outside any watched cgroup) and returns psql's unaligned,
    /// tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.superuser_password)
            .env("PGCONNECT_TIMEOUT", "10");
        let out = process::run(&mut cmd, Duration::from_mins(2))?
            .ok()
            .with_context(|| format!("psql as superuser in {db}"))?;
        Ok(out.stdout)
    }

    /// Creates login role `user` with `password` and database `db` owned by it.
    pub fn create_user_db(&self, user: &str, password: &str, db: &str) -> anyhow::Result<()> {
        self.sql(
            "postgres",
            &format!("create role \"{user}\" login password '{password}'"),
        )?;
        self.sql(
            "postgres",
            &format!("create database \"{db}\" owner \"{user}\""),
        )?;
        Ok(())
    }

    /// Creates `user`/`db` (see [`Self::create_user_db`]) and loads
    /// [`SAMPLE_SQL`] into `db`, owned by `user`.
    pub fn create_sample_db(&self, user: &str, password: &str, db: &str) -> anyhow::Result<()> {
        self.create_user_db(user, password, db)?;
        self.sql(db, &format!("set role \"{user}\";\n{SAMPLE_SQL}"))?;
        Ok(())
    }

    /// Backends currently connected as `user` (from `pg_stat_activity`).
    pub fn backends_of(&self, user: &str) -> anyhow::Result<usize> {
        let out = self.sql(
            "postgres",
            &format!("select count(*) from pg_stat_activity where usename = '{user}'"),
        )?;
        Ok(out.trim().parse()?)
    }

    /// pid of the postmaster (first line of `postmaster.pid`).
    fn postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = self.pg_ctl();
        stop.args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        let stopped = process::run(&mut stop, Duration::from_secs(45)).is_ok_and(|o| o.success());
        if !stopped && let Some(pid) = self.postmaster_pid() {
            // The postmaster we started; its backends exit when it does.
            process::kill(pid);
        }
    }
}
