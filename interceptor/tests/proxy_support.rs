//! Helpers for the proxy's integration tests (`proxy_passthrough`,
//! `proxy_bench`): a throwaway PostgreSQL 15 cluster, the proxy on port 0,
//! and captured tracing output. Included with `mod proxy_support;`; built on
//! its own as an empty test crate too.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut, BytesMut};
use interceptor::{
    config::Config,
    proxy::{self, Listeners, NoRedirect},
};
use tokio::{net::TcpListener, sync::oneshot};

/// PostgreSQL 15 server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL 15 cluster in a temporary directory, run by the `postgres`
/// user on 127.0.0.1 and a private unix socket directory; stopped (by
/// `pg_ctl stop`, which signals only this cluster's postmaster) and removed
/// on drop.
pub struct Postgres {
    /// Owns the data, socket and log directories.
    pub dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl Postgres {
    /// initdb (superuser `postgres` with `super_password`), `hba` as
    /// `pg_hba.conf`, extra server options, start.
    pub fn start(super_password: &str, hba: &str, server_options: &str) -> Self {
        Self::start_with_tls(super_password, hba, server_options, None)
    }

    /// [`Postgres::start`], with `ssl = on` and this (certificate, key) PEM pair.
    pub fn start_with_tls(
        super_password: &str,
        hba: &str,
        server_options: &str,
        tls: Option<(&str, &str)>,
    ) -> Self {
        let pg = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres user");
        let dir = tempfile::Builder::new()
            .prefix("interceptor-pg-")
            .tempdir()
            .unwrap();
        let chown = |p: &Path| nix::unistd::chown(p, Some(pg.uid), Some(pg.gid)).unwrap();
        chown(dir.path());
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).unwrap();
        chown(&sock);
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, super_password).unwrap();
        chown(&pwfile);
        run_as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            &format!("--pwfile={}", pwfile.display()),
        ]);
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let mut server_options = server_options.to_owned();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                chown(&path);
            }
            server_options.push_str(" -c ssl=on");
        }
        let port = free_port();
        let pg = Postgres { dir, port };
        run_as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-l",
            pg.dir.path().join("log").to_str().unwrap(),
            "-w",
            "-o",
            &format!(
                "-k {} -h 127.0.0.1 -p {port} {server_options}",
                sock.display()
            ),
            "start",
        ]);
        pg
    }

    /// The unix socket directory.
    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Runs SQL as the superuser over the unix socket (needs `local ... trust`).
    pub fn psql_super(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                db,
                "-h",
            ])
            .arg(self.sock())
            .args(["-p", &self.port.to_string(), "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .status();
    }
}

/// Runs a command as the `postgres` user.
pub fn run_as_postgres(args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything the proxy logs, as JSON lines (echoed to stderr when
/// `PROXY_TEST_LOGS` is set).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("PROXY_TEST_LOGS").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs a JSON subscriber at `level` writing here; once per process.
    pub fn install(level: tracing::Level) -> Self {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    /// All output so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The events with `event = name`.
    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["event"] == name)
            .collect()
    }
}

/// A running proxy on 127.0.0.1, port 0.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), proxy::ProxyError>>,
}

impl Proxy {
    /// Starts `proxy::run` with this configuration (TOML).
    pub async fn start(config: &str) -> Self {
        Self::start_with_unix(config, None).await
    }

    /// Starts `proxy::run_with_hooks` with this configuration and hooks.
    #[allow(dead_code)] // used by the bench only
    pub async fn start_with_hooks(config: &str, hooks: Arc<dyn proxy::HooksFactory>) -> Self {
        let config = Config::parse(Path::new("test.toml"), config).unwrap();
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = v4.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::run_with_hooks(
            Arc::new(config),
            Listeners {
                v4,
                v6: None,
                unix: None,
            },
            Arc::new(NoRedirect),
            hooks,
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !task.is_finished(),
            "proxy stopped at start: {:?}",
            task.await.unwrap()
        );
        Proxy {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Starts `proxy::run`, with a unix socket listener at `unix` too.
    pub async fn start_with_unix(config: &str, unix: Option<&Path>) -> Self {
        let config = Config::parse(Path::new("test.toml"), config).unwrap();
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = v4.local_addr().unwrap();
        let unix = unix.map(|p| tokio::net::UnixListener::bind(p).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::run(
            Arc::new(config),
            Listeners { v4, v6: None, unix },
            Arc::new(NoRedirect),
            async move {
                let _ = stopped.await;
            },
        ));
        // Set-up errors (credentials, TLS) end `run` at once.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !task.is_finished(),
            "proxy stopped at start: {:?}",
            task.await.unwrap()
        );
        Proxy {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// libpq connection string for `user` on database `db`.
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db} connect_timeout=10",
            self.addr.port()
        )
    }

    /// Graceful shutdown; `run` must return `Ok`.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A protocol 3.0 `StartupMessage`.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u32(3 << 16);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut p = BytesMut::new();
    p.put_u32(body.len() as u32 + 4);
    p.put_slice(&body);
    p.to_vec()
}

/// A CA and a server certificate for `localhost` signed by it, as PEM:
/// (CA certificate, server certificate, server key).
pub fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Writes `creds` (TOML) to `path` with mode 0600.
pub fn write_credentials(path: &Path, creds: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, creds).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
