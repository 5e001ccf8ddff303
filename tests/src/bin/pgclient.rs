//! A small tokio-postgres client (extended query protocol), started inside a
//! watched cgroup by the end-to-end tests and by `cargo xtask bench`.
//!
//! ```text
//! pgclient query  CONNINFO      prepared statements; prints `key=value` lines
//! pgclient cancel CONNINFO      cancels its own `pg_sleep(30)`; prints the SQLSTATE
//! pgclient idle   CONNINFO N    opens N sessions, prints `open N`, holds them until stdin closes
//! pgclient hold   CONNINFO N SQL  opens N sessions, sends SQL on each (held for approval by the
//!                               interceptor), prints `sent N`, waits until stdin closes
//! pgclient rows   CONNINFO SQL.. each SQL prepared once and run twice (binary results);
//!                               prints every value, or the error with its detail
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::doc_markdown)]

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::AsyncReadExt as _;
use tokio_postgres::{Client, NoTls};

async fn connect(conninfo: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .with_context(|| format!("connecting with `{conninfo}`"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {e}");
        }
    });
    Ok(client)
}

/// Parse/Bind/Execute with parameters, several rows, and a reused statement.
async fn query(conninfo: &str) -> anyhow::Result<()> {
    let client = connect(conninfo).await?;
    let stmt = client
        .prepare(
            "select $1::int4 + 1 as n, current_user::text as usr, current_database()::text as db",
        )
        .await?;
    let row = client.query_one(&stmt, &[&41i32]).await?;
    println!("n={}", row.get::<_, i32>("n"));
    println!("user={}", row.get::<_, String>("usr"));
    println!("db={}", row.get::<_, String>("db"));
    let row = client.query_one(&stmt, &[&1i32]).await?;
    println!("again={}", row.get::<_, i32>("n"));
    let rows = client
        .query(
            "select g, repeat('x', g) from generate_series(1, $1::int4) g",
            &[&500i32],
        )
        .await?;
    let total: usize = rows.iter().map(|r| r.get::<_, String>(1).len()).sum();
    println!("rows={} chars={total}", rows.len());
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    println!("backend_pid={pid}");
    Ok(())
}

/// A CancelRequest goes to the address the client connected to; through the
/// proxy it must reach the right backend.
async fn cancel(conninfo: &str) -> anyhow::Result<()> {
    let client = connect(conninfo).await?;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let started = std::time::Instant::now();
    let res = client.simple_query("select pg_sleep(30)").await;
    canceller.await?.context("sending CancelRequest")?;
    match res {
        Ok(_) => bail!("pg_sleep(30) was not cancelled"),
        Err(e) => {
            let code = e.code().map_or("none", |c| c.code());
            println!("sqlstate={code}");
            println!("elapsed_ms={}", started.elapsed().as_millis());
        }
    }
    // The session is still usable after the cancel.
    let row = client.query_one("select 7::int4", &[]).await?;
    println!("after={}", row.get::<_, i32>(0));
    Ok(())
}

/// Opens `n` sessions (16 at a time), reports, holds them until stdin closes.
async fn idle(conninfo: &str, n: usize) -> anyhow::Result<()> {
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let batch = (n - clients.len()).min(16);
        let opened = futures_join(conninfo, batch).await?;
        clients.extend(opened);
    }
    for c in &clients {
        c.simple_query("").await?;
    }
    println!("open {}", clients.len());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(clients);
    Ok(())
}

/// Opens `n` sessions and sends `sql` on each without waiting for the
/// answers (statements the interceptor holds for approval); keeps them
/// until stdin closes.
async fn hold(conninfo: &str, n: usize, sql: &str) -> anyhow::Result<()> {
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let batch = (n - clients.len()).min(16);
        clients.extend(futures_join(conninfo, batch).await?);
    }
    let mut waits = tokio::task::JoinSet::new();
    for c in clients {
        let sql = sql.to_owned();
        waits.spawn(async move {
            let r = c.simple_query(&sql).await;
            (c, r)
        });
    }
    println!("sent {n}");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    waits.abort_all();
    Ok(())
}

async fn futures_join(conninfo: &str, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let conninfo = conninfo.to_owned();
        set.spawn(async move { connect(&conninfo).await });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

/// One value of a row (binary format), as text, whatever its type.
fn value(row: &tokio_postgres::Row, i: usize) -> String {
    use tokio_postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    let shown = match ty {
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| v.to_string())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map(|v| v.map(|v| v.to_string())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|v| v.to_string())),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => row
            .try_get::<_, Option<Vec<Option<String>>>>(i)
            .map(|v| v.map(|v| format!("{v:?}"))),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned())),
        _ => row.try_get::<_, Option<String>>(i),
    };
    match shown {
        Ok(Some(v)) => v,
        Ok(None) => "NULL".into(),
        Err(e) => format!("<{ty}: {e}>"),
    }
}

/// Each statement prepared (Parse + Describe) once and executed twice
/// (Bind + Execute only, as drivers do).
async fn rows(conninfo: &str, sqls: &[&str]) -> anyhow::Result<()> {
    let client = connect(conninfo).await?;
    for sql in sqls {
        let stmt = match client.prepare(sql).await {
            Ok(s) => s,
            Err(e) => {
                print_error(sql, &e);
                continue;
            }
        };
        for run in 0..2 {
            match client.query(&stmt, &[]).await {
                Ok(rows) => {
                    for r in rows {
                        let vals: Vec<String> = (0..r.len()).map(|i| value(&r, i)).collect();
                        println!("row[{run}] {sql} => {}", vals.join(" | "));
                    }
                }
                Err(e) => print_error(sql, &e),
            }
        }
    }
    Ok(())
}

fn print_error(sql: &str, e: &tokio_postgres::Error) {
    match e.as_db_error() {
        Some(db) => println!(
            "error {sql} => {} {} detail={}",
            db.code().code(),
            db.message(),
            db.detail().unwrap_or_default()
        ),
        None => println!("error {sql} => {e}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["query", conninfo] => query(conninfo).await,
        ["cancel", conninfo] => cancel(conninfo).await,
        ["idle", conninfo, n] => idle(conninfo, n.parse().context("N")?).await,
        ["rows", conninfo, sqls @ ..] => rows(conninfo, sqls).await,
        ["hold", conninfo, n, sql] => hold(conninfo, n.parse().context("N")?, sql).await,
        _ => bail!(
            "usage: pgclient query|cancel CONNINFO | pgclient idle CONNINFO N | pgclient hold CONNINFO N SQL | pgclient rows CONNINFO SQL.."
        ),
    }
}
