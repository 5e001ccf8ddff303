//! The proxy in front of a real PostgreSQL 15, with real clients
//! (tokio-postgres for the extended protocol, `psql` for the simple one and
//! for TLS): queries, COPY both ways, SCRAM / md5 / cleartext upstream
//! authentication with credentials only the proxy holds, cancel routing,
//! refusals, limits, and that no password reaches the proxy's output.
//!
//! Needs root (PostgreSQL is started as the `postgres` user with `runuser`)
//! and the PostgreSQL 15 binaries in /usr/lib/postgresql/15/bin; everything
//! listens on 127.0.0.1 only.

mod proxy_support;

use std::{
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use proxy_support::{
    Captured, Postgres, Proxy, free_port, startup_packet, test_pki, write_credentials,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_postgres::{NoTls, error::SqlState};

const SCRAM_PW: &str = "scram-pw-Xy1q";
const MD5_PW: &str = "md5-pw-Zq2w";
const CLEAR_PW: &str = "clear-pw-Kk3e";
const WRONG_PW: &str = "wrong-pw-Vv9r";
const SUPER_PW: &str = "super-pw-Jj7t";

/// md5 in `pg_hba.conf` uses SCRAM for roles stored with SCRAM and md5 for roles
/// stored with md5; `clear_user` gets the cleartext exchange.
const HBA: &str = "local all all trust\nhost all clear_user 127.0.0.1/32 password\nhost all all 127.0.0.1/32 md5\n";

fn start_postgres(cert: &str, key: &str) -> Postgres {
    let pg = Postgres::start_with_tls(SUPER_PW, HBA, "", Some((cert, key)));
    pg.psql_super(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PW}';
             CREATE ROLE wrong_user LOGIN PASSWORD 'the-right-one';
             CREATE ROLE clear_user LOGIN PASSWORD '{CLEAR_PW}';
             SET password_encryption = 'md5';
             CREATE ROLE md5_user LOGIN PASSWORD '{MD5_PW}';"
        ),
    );
    pg.psql_super("postgres", "CREATE DATABASE app OWNER scram_user");
    pg.psql_super("postgres", "GRANT ALL ON DATABASE app TO PUBLIC");
    pg
}

fn psql(conninfo: &str, sql: &str, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            conninfo,
            "-c",
            sql,
        ])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// psql, off the async runtime (it blocks until the proxy answers).
async fn psql_async(
    conninfo: String,
    sql: &'static str,
    stdin: Option<&'static str>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || psql(&conninfo, sql, stdin))
        .await
        .unwrap()
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[test]
fn passthrough() {
    // Before any thread starts: the proxy reads these when it loads the
    // credentials file.
    // SAFETY: single-threaded at this point (the only test in this binary,
    // runtime not yet built).
    unsafe {
        std::env::set_var("TEST_MD5_PASSWORD", MD5_PW);
        std::env::set_var("INTERCEPTOR_PASSWORD_MAIN", CLEAR_PW);
    }
    let captured = Captured::install(tracing::Level::TRACE);
    let (ca, cert, key) = test_pki();
    let pg = start_postgres(&cert, &key);
    let work = tempfile::Builder::new()
        .prefix("interceptor-proxy-")
        .tempdir()
        .unwrap();
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let sock_dir = work.path().join("sock");
    std::fs::create_dir(&sock_dir).unwrap();
    let creds = work.path().join("credentials.toml");
    write_credentials(
        &creds,
        &format!(
            "[[credential]]\ntarget = \"main\"\nuser = \"scram_user\"\npassword = \"{SCRAM_PW}\"\ndefault = true\n\n\
             [[credential]]\ntarget = \"main\"\nuser = \"md5_user\"\npassword_env = \"TEST_MD5_PASSWORD\"\n\n\
             [[credential]]\ntarget = \"main\"\nuser = \"clear_user\"\n\n\
             [[credential]]\ntarget = \"main\"\nuser = \"wrong_user\"\npassword = \"{WRONG_PW}\"\n\n\
             [[credential]]\ntarget = \"down\"\nuser = \"scram_user\"\npassword = \"{SCRAM_PW}\"\ndefault = true\n\n\
             [[credential]]\ntarget = \"tls-require\"\nuser = \"scram_user\"\npassword = \"{SCRAM_PW}\"\ndefault = true\n\n\
             [[credential]]\ntarget = \"tls-verify\"\nuser = \"md5_user\"\npassword = \"{MD5_PW}\"\ndefault = true\n\n\
             [[credential]]\ntarget = \"tls-badname\"\nuser = \"scram_user\"\npassword = \"{SCRAM_PW}\"\ndefault = true\n"
        ),
    );
    let down_port = free_port();
    let config = |explicit: &str| {
        format!(
            "state_dir = \"{state}\"\n\
             [proxy]\nexplicit_target = \"{explicit}\"\nmax_message_bytes = 1048576\nconnect_timeout_ms = 3000\n\
             [[target]]\nname = \"main\"\nport = {port}\nupstream = \"127.0.0.1:{port}\"\n\
             [[target]]\nname = \"down\"\nport = {down_port}\nupstream = \"127.0.0.1:{down_port}\"\n\
             [[target]]\nname = \"tls-require\"\nport = 1\nupstream = \"127.0.0.1:{port}\"\ntls = \"require\"\n\
             [[target]]\nname = \"tls-verify\"\nport = 2\nupstream = \"127.0.0.1:{port}\"\ntls = \"verify-full\"\n\
             tls_ca_file = \"{ca}\"\ntls_server_name = \"localhost\"\n\
             [[target]]\nname = \"tls-badname\"\nport = 3\nupstream = \"127.0.0.1:{port}\"\ntls = \"verify-full\"\n\
             tls_ca_file = \"{ca}\"\ntls_server_name = \"wrong.example\"\n\
             [credentials]\nfile = \"{creds}\"\n",
            state = work.path().join("state").display(),
            port = pg.port,
            creds = creds.display(),
            ca = ca_file.display(),
        )
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let main = Proxy::start_with_unix(
            &config("main"),
            Some(&sock_dir.join(format!(".s.PGSQL.{}", pg.port))),
        )
        .await;
        let down = Proxy::start(&config("down")).await;
        let tls_require = Proxy::start(&config("tls-require")).await;
        let tls_verify = Proxy::start(&config("tls-verify")).await;
        let tls_badname = Proxy::start(&config("tls-badname")).await;

        extended_protocol(&main).await;
        copy_both_ways(&main).await;
        simple_protocol_and_tls_with_psql(&main).await;
        upstream_auth_methods(&main).await;
        wrong_credential_is_a_clear_error(&main).await;
        upstream_down_is_08001(&down, down_port).await;
        // The daemon kept serving.
        extended_protocol(&main).await;
        cancel_reaches_the_right_backend(&main).await;
        oversized_message_is_refused(&main).await;
        startup_negotiation_raw(&main).await;
        unix_socket(&sock_dir, pg.port).await;
        upstream_tls(&tls_require, &tls_verify, &tls_badname).await;
        extended_protocol(&main).await;

        for proxy in [main, down, tls_require, tls_verify, tls_badname] {
            proxy.stop().await;
        }
        let no_explicit = config("main").replace("explicit_target = \"main\"\n", "");
        not_redirected_without_explicit_target_is_refused(&no_explicit).await;
        shutdown_says_goodbye(&config("main")).await;
    });
    drop(rt);

    let logs = captured.text();
    for pw in [SCRAM_PW, MD5_PW, CLEAR_PW, WRONG_PW, SUPER_PW] {
        assert!(
            !logs.contains(pw),
            "a password appears in the proxy's output"
        );
    }
    let starts = captured.events("session_start");
    assert!(starts.len() >= 10, "session_start events: {}", starts.len());
    let s = &starts[0]["fields"];
    assert_eq!(s["target"], "main");
    assert_eq!(s["database"], "app");
    assert_eq!(s["route"], "explicit");
    let attestation: serde_json::Value =
        serde_json::from_str(s["attestation"].as_str().unwrap()).unwrap();
    assert!(attestation["pid"].as_u64().unwrap() > 0, "{attestation}");
    let ends = captured.events("session_end");
    assert!(
        ends.iter()
            .any(|e| e["fields"]["reason"] == "client_terminate")
    );
    assert!(ends.iter().all(|e| e["fields"]["frontend_bytes"].is_u64()));
    assert!(
        captured
            .events("session_refused")
            .iter()
            .any(|e| e["fields"]["reason"] == "upstream_unavailable")
    );
    assert!(starts.iter().any(|e| e["fields"]["route"] == "unix"));
    assert!(ends.iter().any(|e| e["fields"]["reason"] == "shutdown"));
    assert!(starts.iter().any(|e| e["fields"]["upstream_tls"] == true));
}

/// A connection straight to the proxy port with no `explicit_target` (and
/// no kernel record) is refused, saying why.
async fn not_redirected_without_explicit_target_is_refused(config: &str) {
    let proxy = Proxy::start(config).await;
    let err = connect(&proxy.conninfo("scram_user", "app"))
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        db.code(),
        &SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION
    );
    assert!(
        db.message().contains("no explicit_target"),
        "{}",
        db.message()
    );
    proxy.stop().await;
}

/// Stopping the proxy ends established sessions with 57P01.
async fn shutdown_says_goodbye(config: &str) {
    let proxy = Proxy::start(config).await;
    let (client, conn) = tokio_postgres::connect(&proxy.conninfo("scram_user", "app"), NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();
    proxy.stop().await;
    let err = conn.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
}

/// psql through the proxy's unix socket `.s.PGSQL.<port>`: the caller is
/// the socket peer (`SO_PEERCRED`), the target the one with that port.
async fn unix_socket(dir: &std::path::Path, port: u16) {
    let conninfo = format!(
        "host={} port={port} user=md5_user dbname=app",
        dir.display()
    );
    let (ok, out, err) = psql_async(conninfo, "SELECT current_user", None).await;
    assert!(ok, "{err}");
    assert_eq!(out, "md5_user");
}

/// `tls = "require"` and `"verify-full"` towards a server with TLS on; a
/// name the certificate does not carry fails with 08001.
async fn upstream_tls(require: &Proxy, verify: &Proxy, badname: &Proxy) {
    let ssl_in_use = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for (proxy, role) in [(require, "scram_user"), (verify, "md5_user")] {
        let client = connect(&proxy.conninfo("anyone", "app")).await.unwrap();
        let ssl: String = client.query_one(ssl_in_use, &[]).await.unwrap().get(0);
        assert_eq!(ssl, "true");
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, role);
        let token = client.cancel_token();
        let sleeper = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
        let err = sleeper.await.unwrap().unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::QUERY_CANCELED),
            "cancel over TLS: {err}"
        );
    }
    let err = connect(&badname.conninfo("anyone", "app"))
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        db.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    assert!(
        db.message()
            .contains("TLS handshake with target `tls-badname`"),
        "{}",
        db.message()
    );
}

/// tokio-postgres: prepared statements, parameters, many rows, a
/// transaction, NOTICE and NOTIFY.
async fn extended_protocol(proxy: &Proxy) {
    let client = connect(&proxy.conninfo("scram_user", "app")).await.unwrap();
    let row = client
        .query_one("SELECT $1::int + 1, current_user::text", &[&41_i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "scram_user");
    let stmt = client
        .prepare("SELECT g, md5(g::text) FROM generate_series(1, $1) g")
        .await
        .unwrap();
    let rows = client.query(&stmt, &[&20_000_i32]).await.unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows[19_999].get::<_, i32>(0), 20_000);
    let big: String = client
        .query_one("SELECT repeat('x', 300000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 300_000);
    client
        .batch_execute("BEGIN; CREATE TEMP TABLE t (a int); INSERT INTO t VALUES (1), (2); COMMIT;")
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let err = client.query_one("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    // The session survives an error.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    client
        .batch_execute("LISTEN ch; NOTIFY ch, 'hello'; DO $$ BEGIN RAISE NOTICE 'note'; END $$;")
        .await
        .unwrap();
}

/// COPY FROM STDIN and COPY TO STDOUT through tokio-postgres.
async fn copy_both_ways(proxy: &Proxy) {
    let client = connect(&proxy.conninfo("scram_user", "app")).await.unwrap();
    client
        .batch_execute("DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t (id int, name text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY copy_t FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        writeln!(data, "{i}\tname-{i}").unwrap();
    }
    sink.send(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let stream = client.copy_out("COPY copy_t TO STDOUT").await.unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(out).unwrap(), data);
}

/// psql: simple protocol, COPY through psql, and `sslmode=require` (TLS
/// with the proxy's self-signed certificate).
async fn simple_protocol_and_tls_with_psql(proxy: &Proxy) {
    let plain = format!("{} sslmode=disable", proxy.conninfo("scram_user", "app"));
    let (ok, out, err) = psql_async(plain.clone(), "SELECT 40 + 2", None).await;
    assert!(ok, "{err}");
    assert_eq!(out, "42");
    let (ok, out, err) = psql_async(
        plain.clone(),
        "CREATE TABLE IF NOT EXISTS psql_t (a int, b text); TRUNCATE psql_t; SELECT count(*) FROM psql_t",
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.ends_with("\n0"), "{out}");
    let (ok, _, err) = psql_async(
        plain.clone(),
        "COPY psql_t FROM STDIN",
        Some("1\tone\n2\ttwo\n"),
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = psql_async(plain, "COPY psql_t TO STDOUT", None).await;
    assert!(ok, "{err}");
    assert_eq!(out, "1\tone\n2\ttwo");

    let tls = format!("{} sslmode=require", proxy.conninfo("scram_user", "app"));
    let (ok, out, err) = psql_async(tls.clone(), "\\conninfo", None).await;
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection"), "{out}");
    let (ok, out, err) =
        psql_async(tls, "SELECT sum(g) FROM generate_series(1, 1000) g", None).await;
    assert!(ok, "{err}");
    assert_eq!(out, "500500");
}

/// SCRAM (`scram_user`), md5 (`md5_user`), cleartext (`clear_user`, password
/// from `INTERCEPTOR_PASSWORD_MAIN`), and the default credential for a user the
/// proxy holds none for.
async fn upstream_auth_methods(proxy: &Proxy) {
    for (client_user, role) in [
        ("scram_user", "scram_user"),
        ("md5_user", "md5_user"),
        ("clear_user", "clear_user"),
        ("anyone", "scram_user"),
    ] {
        let client = connect(&proxy.conninfo(client_user, "app"))
            .await
            .unwrap_or_else(|e| panic!("{client_user}: {e}"));
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, role, "client user {client_user}");
    }
    // The client's own password is never asked for nor used.
    let (ok, out, err) = psql_async(
        format!(
            "{} password=client-side-secret",
            proxy.conninfo("md5_user", "app")
        ),
        "SELECT current_user",
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "md5_user");
}

async fn wrong_credential_is_a_clear_error(proxy: &Proxy) {
    let err = connect(&proxy.conninfo("wrong_user", "app"))
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD);
    assert!(
        db.message()
            .contains("target `main` refused the session for role `wrong_user`"),
        "{}",
        db.message()
    );
    assert!(
        db.message().contains("password authentication failed"),
        "{}",
        db.message()
    );
    let (ok, _, err) = psql_async(proxy.conninfo("wrong_user", "app"), "SELECT 1", None).await;
    assert!(!ok);
    assert!(err.contains("refused the session"), "{err}");
}

async fn upstream_down_is_08001(proxy: &Proxy, down_port: u16) {
    let err = connect(&proxy.conninfo("scram_user", "app"))
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        db.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    assert!(db.message().contains("target `down`"), "{}", db.message());
    assert!(
        db.message().contains(&format!("127.0.0.1:{down_port}")),
        "{}",
        db.message()
    );
}

/// Two sessions sleep; the cancel key of one cancels that one only.
async fn cancel_reaches_the_right_backend(proxy: &Proxy) {
    let victim = connect(&proxy.conninfo("scram_user", "app")).await.unwrap();
    let bystander = connect(&proxy.conninfo("scram_user", "app")).await.unwrap();
    let token = victim.cancel_token();
    let started = Instant::now();
    let victim_query =
        tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(30)").await });
    let bystander_query =
        tokio::spawn(async move { bystander.simple_query("SELECT pg_sleep(2)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.unwrap();
    let err = victim_query.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    bystander_query
        .await
        .unwrap()
        .expect("the other session's query is not cancelled");
}

/// A message over `max_message_bytes` gets 54000 and its session is closed;
/// others go on.
async fn oversized_message_is_refused(proxy: &Proxy) {
    // A raw client that announces a 2 MiB Query.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&startup_packet(&[
        ("user", "scram_user"),
        ("database", "app"),
    ]))
    .await
    .unwrap();
    read_until_ready(&mut s).await;
    let mut q = BytesMut::new();
    q.put_u8(b'Q');
    q.put_i32(2 << 20);
    q.put_slice(&[b'x'; 4096]);
    s.write_all(&q).await.unwrap();
    let (tag, fields) = read_message(&mut s).await.unwrap();
    assert_eq!(tag, b'E');
    assert!(fields.contains("C54000"), "{fields}");
    assert!(fields.contains("max_message_bytes"), "{fields}");
    assert!(read_message(&mut s).await.is_none(), "connection closed");

    // A real client sending a too-large query reads the error too.
    let client = connect(&proxy.conninfo("scram_user", "app")).await.unwrap();
    let huge = format!("SELECT '{}'", "y".repeat(2 << 20));
    let err = client.simple_query(&huge).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");

    // So does a result row over the limit, coming from the server.
    let client = connect(&proxy.conninfo("scram_user", "app")).await.unwrap();
    let err = client
        .simple_query("SELECT repeat('z', 2000000)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("target `main` sent a message"),
        "{err}"
    );
}

/// `GSSENCRequest` is declined with N, then the startup goes on; a malformed
/// startup packet gets a clear 08P01.
async fn startup_negotiation_raw(proxy: &Proxy) {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N');
    s.write_all(&startup_packet(&[
        ("user", "scram_user"),
        ("database", "app"),
    ]))
    .await
    .unwrap();
    read_until_ready(&mut s).await;
    let mut q = BytesMut::new();
    q.put_u8(b'Q');
    q.put_i32(4 + 9);
    q.put_slice(b"SELECT 7\0");
    s.write_all(&q).await.unwrap();
    let mut saw_row = false;
    loop {
        let (tag, body) = read_message(&mut s).await.unwrap();
        saw_row |= tag == b'D' && body.ends_with('7');
        if tag == b'Z' {
            break;
        }
    }
    assert!(saw_row);

    // A protocol 3.2 client with a protocol option is negotiated down to 3.0.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut p = startup_packet(&[
        ("user", "scram_user"),
        ("database", "app"),
        ("_pq_.future", "1"),
    ]);
    p[7] = 2;
    s.write_all(&p).await.unwrap();
    let (tag, body) = read_message(&mut s).await.unwrap();
    assert_eq!(tag, b'v');
    assert!(
        body.starts_with("\0\u{3}\0\0\0\0\0\u{1}_pq_.future"),
        "{body:?}"
    );
    read_until_ready(&mut s).await;

    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut bad = BytesMut::new();
    bad.put_u32(8 + 11);
    bad.put_u32(3 << 16);
    bad.put_slice(b"user\0alice\0"); // no final terminator
    s.write_all(&bad).await.unwrap();
    let (tag, fields) = read_message(&mut s).await.unwrap();
    assert_eq!(tag, b'E');
    assert!(
        fields.contains("C08P01") && fields.contains("invalid startup packet"),
        "{fields}"
    );
}

/// One backend message: tag and body (as lossy text); `None` at EOF.
async fn read_message(s: &mut TcpStream) -> Option<(u8, String)> {
    let mut head = [0_u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = (&head[1..]).get_i32() as usize - 4;
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], String::from_utf8_lossy(&body).into_owned()))
}

async fn read_until_ready(s: &mut TcpStream) {
    loop {
        let (tag, body) = read_message(s).await.expect("greeting");
        assert_ne!(tag, b'E', "{body}");
        if tag == b'R' {
            assert_eq!(body, "\0\0\0\0", "the proxy sends AuthenticationOk only");
        }
        if tag == b'Z' {
            return;
        }
    }
}
