//! The catalog, read through the proxy's own upstream connection.
//!
//! One connection per (target, upstream address, login, database), opened
//! on first need with the same credential as the sessions it serves (so it
//! sees the same committed relations), closed after [`CatalogConfig::idle_secs`]
//! without use and before a session's `DROP DATABASE` / `ALTER DATABASE` /
//! `CREATE DATABASE ... TEMPLATE` is forwarded (the connection would hold the
//! database open), reopened and retried once when it was lost (a server
//! restart, `idle_session_timeout`, a failover) before any statement is
//! refused.
//!
//! The proxy's own queries must be immune to what the database's users
//! create: the connection runs with `search_path = pg_catalog` (functions
//! and operators are then found in `pg_catalog` only; `pg_temp` is never
//! searched for them), every function is qualified as well, and every
//! answer's shape is checked (a row of the wrong width or a value that does
//! not parse is an error, never a default). Unqualified names from client
//! SQL are resolved against the *session's* search path, expanded by the
//! server (`current_schemas`) and matched schema by schema, not through the
//! connection's own path.
//!
//! Names coming from client SQL reach the catalog only as string literals
//! (`standard_conforming_strings` is forced on, quotes doubled), never
//! spliced in as identifiers.
//!
//! Answers that a relation exists are cached for [`TTL`] and dropped whenever
//! a session of that database runs DDL (and again when its transaction
//! ends); "no such relation" is never cached (it may be created any moment).

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::lineage::{RelInfo, Snapshot};
use crate::{
    proxy::{hooks::SessionInfo, stream::UpstreamStream, upstream::Upstream},
    sql::{self, Relation},
    wire::{
        Frame,
        error_response::{error_message, parse_error_fields},
        read_frame,
        tag::{backend as be, frontend as fe},
    },
};

/// How long a catalog answer is trusted (DDL in any intercepted session of
/// the database drops it at once).
pub const TTL: Duration = Duration::from_secs(30);
/// Longest a catalog round trip may take before the statement is refused.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Views within views followed.
const MAX_VIEW_DEPTH: usize = 16;
const MAX_MESSAGE: usize = 64 << 20;
/// Names cached per database before the cache starts afresh.
const MAX_CACHED: usize = 10_000;
/// Distinct session search paths remembered per database.
const MAX_PATHS: usize = 256;
/// Columns of a relation lookup's answer row.
const RELATION_COLUMNS: usize = 7;

/// `[catalog]`: the connection masking reads the catalog through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Seconds a catalog connection may stay idle before it is closed (it
    /// is reopened on the next lookup). 0 closes it after every lookup.
    pub idle_secs: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        // Long enough for a burst of statements, short enough that
        // `dropdb` from outside the proxy rarely meets it.
        Self { idle_secs: 5 }
    }
}

/// Opens an authenticated upstream connection like a session's.
pub trait Connector: Send + Sync {
    /// A connection for `info`'s target, login and database.
    fn connect<'a>(
        &'a self,
        info: &'a SessionInfo,
    ) -> Pin<Box<dyn Future<Output = Result<Upstream, String>> + Send + 'a>>;
}

/// Catalogs of every database sessions use.
pub struct CatalogPool {
    connector: Arc<dyn Connector>,
    idle: Duration,
    dbs: Mutex<HashMap<String, Arc<DbCatalog>>>,
}

impl CatalogPool {
    /// A pool opening connections with `connector`.
    pub fn new(connector: Arc<dyn Connector>, config: &CatalogConfig) -> Self {
        Self {
            connector,
            idle: Duration::from_secs(config.idle_secs),
            dbs: Mutex::default(),
        }
    }

    /// The catalog of `info`'s database.
    pub fn for_session(&self, info: &Arc<SessionInfo>) -> Arc<DbCatalog> {
        let key = format!(
            "{}\0{}\0{}\0{}",
            info.target, info.upstream, info.upstream_user, info.database
        );
        let mut dbs = lock(&self.dbs);
        Arc::clone(dbs.entry(key).or_insert_with(|| {
            Arc::new_cyclic(|me| DbCatalog {
                me: me.clone(),
                connector: Arc::clone(&self.connector),
                info: Arc::clone(info),
                idle: self.idle,
                conn: tokio::sync::Mutex::new(None),
                cache: Mutex::default(),
                generation: std::sync::atomic::AtomicU64::new(0),
            })
        }))
    }

    /// Closes every catalog connection of `target` (waiting for lookups in
    /// flight), so that a `DROP DATABASE`, `ALTER DATABASE ... RENAME` or
    /// `CREATE DATABASE ... TEMPLATE` about to be forwarded does not find
    /// the proxy's own connection in its way. They reopen on demand.
    pub async fn close_target(&self, target: &str) {
        let cats: Vec<Arc<DbCatalog>> = lock(&self.dbs)
            .values()
            .filter(|c| c.info.target == target)
            .cloned()
            .collect();
        for c in cats {
            c.close().await;
        }
    }

    /// Open catalog connections (for status and tests).
    pub fn open_connections(&self) -> usize {
        lock(&self.dbs)
            .values()
            .filter(|c| c.conn.try_lock().map_or(true, |g| g.is_some()))
            .count()
    }
}

#[derive(Default)]
struct Cache {
    /// (search path key, relation as spelled) -> what it resolved to.
    relations: HashMap<(String, Relation), (RelInfo, Instant)>,
    functions: HashMap<String, (bool, Instant)>,
    /// Search path setting -> the schemas it expands to, in order.
    paths: HashMap<String, (Arc<Vec<String>>, Instant)>,
}

struct Conn {
    stream: UpstreamStream,
    buf: BytesMut,
    last_used: Instant,
    generation: u64,
}

/// A failed round trip: the connection broke (retried on a new one) or the
/// server or its answer said no (refused).
enum Failure {
    Connection(String),
    Answer(String),
}

impl Failure {
    fn text(self) -> String {
        match self {
            Self::Connection(s) | Self::Answer(s) => s,
        }
    }
}

/// One database's catalog.
pub struct DbCatalog {
    me: Weak<DbCatalog>,
    connector: Arc<dyn Connector>,
    info: Arc<SessionInfo>,
    idle: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
    cache: Mutex<Cache>,
    generation: std::sync::atomic::AtomicU64,
}

impl DbCatalog {
    /// Forgets every answer (after DDL).
    pub fn invalidate(&self) {
        let mut c = lock(&self.cache);
        c.relations.clear();
        c.functions.clear();
    }

    /// Closes the connection (it reopens on the next lookup).
    pub async fn close(&self) {
        let mut guard = self.conn.lock().await;
        if let Some(mut conn) = guard.take() {
            terminate(&mut conn).await;
        }
    }

    /// What the tracer needs for a statement naming `rels` and calling
    /// `functions`, with unqualified names resolved on `search_path` (the
    /// session's setting; `None`: the role's default): those relations, the
    /// relations their view definitions name (recursively), and which
    /// functions are user-defined.
    pub async fn snapshot(
        &self,
        rels: &[Relation],
        functions: &[String],
        search_path: Option<&str>,
    ) -> Result<Snapshot, String> {
        let mut snap = Snapshot::default();
        if rels.is_empty() && functions.is_empty() {
            return Ok(snap);
        }
        let path = if rels.iter().any(|r| r.schema.is_none()) {
            Some(self.schemas(search_path).await?)
        } else {
            None
        };
        let mut want: Vec<Relation> = rels.to_vec();
        for _ in 0..MAX_VIEW_DEPTH {
            want.retain(|r| !snap.relations.contains_key(r));
            want.sort();
            want.dedup();
            if want.is_empty() {
                break;
            }
            let found = self
                .relations(&want, path.as_deref().map(Vec::as_slice))
                .await?;
            let mut next = Vec::new();
            for (rel, info) in found {
                if let Some(def) = info.as_ref().and_then(|i| i.view_def.as_deref()) {
                    // Printed under `search_path = pg_catalog`: every name
                    // outside pg_catalog comes back qualified.
                    match sql::analyze(def.trim(), &sql::Limits::default()) {
                        Ok(a) => {
                            next.extend(a.statements.into_iter().flat_map(|f| f.reads).map(|r| {
                                Relation {
                                    schema: Some(r.schema.unwrap_or_else(|| "pg_catalog".into())),
                                    name: r.name,
                                }
                            }))
                        }
                        Err(_) => {} // the tracer finds it unparseable too and treats the view as opaque
                    }
                }
                snap.relations.insert(rel, info);
            }
            want = next;
        }
        if !functions.is_empty() {
            snap.user_functions = self.user_functions(functions).await?;
        }
        Ok(snap)
    }

    /// The schemas `search_path` expands to for this login, in order (the
    /// server expands `$user` and drops schemas that do not exist).
    async fn schemas(&self, search_path: Option<&str>) -> Result<Arc<Vec<String>>, String> {
        let key = search_path.map_or_else(|| "\0default".to_owned(), str::to_owned);
        if let Some((s, at)) = lock(&self.cache).paths.get(&key)
            && at.elapsed() < TTL
        {
            return Ok(Arc::clone(s));
        }
        let setting = match search_path {
            Some(p) => literal(p),
            None => "NULL::pg_catalog.text".into(),
        };
        // set_config(..., true) lasts until the end of this message's
        // implicit transaction; the connection's own path is back after it.
        let sets = self.query(&schemas_sql(&setting)).await?;
        let json = sets
            .get(1)
            .and_then(|rows| rows.first())
            .and_then(|r| (r.len() == 1).then(|| r[0].clone()).flatten())
            .ok_or("unexpected answer from the catalog (search path)")?;
        let schemas: Vec<String> = serde_json::from_str::<Vec<String>>(&json)
            .map_err(|_| "unexpected answer from the catalog (search path)".to_owned())?
            .into_iter()
            // The catalog connection's own temporary schema is not the
            // session's: the session's temporary objects are known from the
            // session itself.
            .filter(|s| !s.starts_with("pg_temp_"))
            .collect();
        let schemas = Arc::new(schemas);
        let mut c = lock(&self.cache);
        if c.paths.len() > MAX_PATHS {
            c.paths.clear();
        }
        c.paths.insert(key, (Arc::clone(&schemas), Instant::now()));
        Ok(schemas)
    }

    async fn relations(
        &self,
        rels: &[Relation],
        path: Option<&[String]>,
    ) -> Result<Vec<(Relation, Option<RelInfo>)>, String> {
        let path_key = path.map(|p| p.join("\0")).unwrap_or_default();
        let key = |r: &Relation| {
            (
                if r.schema.is_some() {
                    String::new()
                } else {
                    path_key.clone()
                },
                r.clone(),
            )
        };
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let c = lock(&self.cache);
            for r in rels {
                match c.relations.get(&key(r)) {
                    Some((info, at)) if at.elapsed() < TTL => {
                        out.push((r.clone(), Some(info.clone())))
                    }
                    _ => missing.push(r.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let path_array = format!(
            "ARRAY[{}]::pg_catalog.text[]",
            path.unwrap_or_default()
                .iter()
                .map(|s| literal(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let values: Vec<String> = missing
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let schema = r
                    .schema
                    .as_deref()
                    .map_or_else(|| "NULL::pg_catalog.text".to_owned(), literal);
                format!("({i}, {schema}, {}::pg_catalog.text)", literal(&r.name))
            })
            .collect();
        // A qualified name is looked up in its schema; an unqualified one in
        // the session's schemas, the first that has it winning (as the
        // server resolves it). pg_catalog.array_position gives the order.
        let query = relations_sql(&values.join(", "), &path_array);
        let rows = self.query(&query).await?.pop().unwrap_or_default();
        if rows.len() != missing.len() {
            return Err(format!(
                "unexpected answer from the catalog ({} rows for {} names)",
                rows.len(),
                missing.len()
            ));
        }
        let now = Instant::now();
        let mut found = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            found.push((missing[i].clone(), relation_row(i, &row)?));
        }
        let mut c = lock(&self.cache);
        if c.relations.len() > MAX_CACHED {
            // Names come from client SQL: bounded, refilled with what is used.
            c.relations.clear();
        }
        for (rel, info) in found {
            if let Some(info) = &info {
                c.relations.insert(key(&rel), (info.clone(), now));
            }
            out.push((rel, info));
        }
        Ok(out)
    }

    async fn user_functions(&self, functions: &[String]) -> Result<HashSet<String>, String> {
        let mut out = HashSet::new();
        let mut missing = Vec::new();
        {
            let c = lock(&self.cache);
            for f in functions {
                match c.functions.get(f) {
                    Some((user, at)) if at.elapsed() < TTL => {
                        if *user {
                            out.insert(f.clone());
                        }
                    }
                    _ => missing.push(f.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        // A name as policy spells it: `f` (pg_catalog or search_path) or
        // `schema.f`. User-defined: any function of that name outside
        // pg_catalog and information_schema that the name could reach.
        let list: Vec<String> = missing.iter().map(|f| literal(f)).collect();
        let query = user_functions_sql(&list.join(", "));
        let rows = self.query(&query).await?.pop().unwrap_or_default();
        let mut user = HashSet::new();
        for r in rows {
            match <[Option<String>; 1]>::try_from(r) {
                Ok([Some(f)]) if missing.contains(&f) => {
                    user.insert(f);
                }
                _ => return Err("unexpected answer from the catalog (functions)".into()),
            }
        }
        let now = Instant::now();
        let mut c = lock(&self.cache);
        if c.functions.len() > MAX_CACHED {
            c.functions.clear();
        }
        for f in missing {
            let is_user = user.contains(&f);
            c.functions.insert(f.clone(), (is_user, now));
            if is_user {
                out.insert(f);
            }
        }
        Ok(out)
    }

    /// Runs one simple query message, returning each statement's rows as
    /// text. A broken connection is replaced and the query retried once.
    async fn query(&self, sql_text: &str) -> Result<Vec<Vec<Vec<Option<String>>>>, String> {
        let mut guard = self.conn.lock().await;
        let mut last = String::new();
        for _attempt in 0..2 {
            let result = tokio::time::timeout(TIMEOUT, async {
                if guard.is_none() {
                    *guard = Some(self.open().await.map_err(Failure::Connection)?);
                }
                let conn = guard.as_mut().expect("connected");
                let r = run(conn, sql_text).await;
                conn.last_used = Instant::now();
                r
            })
            .await
            .unwrap_or_else(|_| Err(Failure::Answer("the catalog lookup timed out".into())));
            match result {
                Ok(rows) => {
                    if self.idle.is_zero()
                        && let Some(mut conn) = guard.take()
                    {
                        terminate(&mut conn).await;
                    }
                    return Ok(rows);
                }
                Err(Failure::Connection(e)) => {
                    // Lost (server restart, idle_session_timeout, failover,
                    // the database re-created): once more on a new one.
                    *guard = None;
                    last = e;
                }
                Err(Failure::Answer(e)) => {
                    // Start afresh next time: the connection's state is
                    // unknown after a timeout or an error.
                    *guard = None;
                    return Err(e);
                }
            }
        }
        Err(last)
    }

    /// A new connection, set up for the proxy's own queries, with a task
    /// that closes it once idle.
    async fn open(&self) -> Result<Conn, String> {
        let up = self.connector.connect(&self.info).await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut conn = Conn {
            stream: up.stream,
            buf: up.buf,
            last_used: Instant::now(),
            generation,
        };
        let setup = run(&mut conn, SETUP_SQL).await.map_err(Failure::text)?;
        let default_path = setup
            .first()
            .and_then(|rows| rows.first())
            .and_then(|r| (r.len() == 1).then(|| r[0].clone()).flatten())
            .ok_or("unexpected answer from the catalog (search path)")?;
        // The role's and database's own `search_path` (what a session that
        // never sets one resolves names with), kept on the connection for
        // `schemas` (a custom setting: its name needs a dot).
        run(&mut conn, &default_path_sql(&literal(&default_path)))
            .await
            .map_err(Failure::text)?;
        if !self.idle.is_zero()
            && let Some(me) = self.me.upgrade()
        {
            tokio::spawn(close_when_idle(Arc::downgrade(&me), generation, self.idle));
        }
        Ok(conn)
    }
}

/// Closes connection `generation` of `cat` once it has been idle for `idle`.
async fn close_when_idle(cat: Weak<DbCatalog>, generation: u64, idle: Duration) {
    let mut wait = idle;
    loop {
        tokio::time::sleep(wait).await;
        let Some(cat) = cat.upgrade() else { return };
        let mut guard = cat.conn.lock().await;
        match guard.as_mut() {
            Some(conn) if conn.generation == generation => {
                let since = conn.last_used.elapsed();
                if since >= idle {
                    if let Some(mut conn) = guard.take() {
                        terminate(&mut conn).await;
                    }
                    return;
                }
                wait = idle - since;
            }
            // Closed or replaced: that connection's own task watches it.
            _ => return,
        }
    }
}

async fn terminate(conn: &mut Conn) {
    let _ = conn
        .stream
        .write_all(Frame::new(fe::TERMINATE, b"").as_bytes())
        .await;
    let _ = conn.stream.flush().await;
    let _ = conn.stream.shutdown().await;
}

/// One relation lookup row: `None` when the name resolves to nothing; an
/// error when the row does not have the shape the query asked for.
fn relation_row(i: usize, row: &[Option<String>]) -> Result<Option<RelInfo>, String> {
    let bad = |what: &str| format!("unexpected answer from the catalog ({what})");
    if row.len() != RELATION_COLUMNS {
        return Err(bad("row width"));
    }
    if row[0].as_deref().and_then(|v| v.parse::<usize>().ok()) != Some(i) {
        return Err(bad("row order"));
    }
    match (&row[1], &row[2], &row[3], &row[4]) {
        (None, None, None, None) => Ok(None),
        (Some(oid), Some(schema), Some(name), Some(kind)) => {
            let cols: Vec<(String, i16)> = match row[5].as_deref() {
                Some(j) => serde_json::from_str(j).map_err(|_| bad("columns"))?,
                None => Vec::new(),
            };
            let kind = match kind.as_bytes() {
                [k] if b"rpvmfSitcI".contains(k) => char::from(*k),
                _ => return Err(bad("relkind")),
            };
            Ok(Some(RelInfo {
                oid: oid.parse().map_err(|_| bad("oid"))?,
                schema: schema.clone(),
                name: name.clone(),
                kind,
                attnums: cols.iter().map(|(_, n)| *n).collect(),
                columns: cols.into_iter().map(|(c, _)| c).collect(),
                view_def: row[6].clone(),
                carries: Vec::new(),
            }))
        }
        _ => Err(bad("partial row")),
    }
}

/// Runs one simple query message; the rows of each statement that returned
/// rows, in order.
async fn run(conn: &mut Conn, sql_text: &str) -> Result<Vec<Vec<Vec<Option<String>>>>, Failure> {
    let lost = |e: &dyn std::fmt::Display| Failure::Connection(format!("catalog connection: {e}"));
    let mut body = sql_text.as_bytes().to_vec();
    body.push(0);
    let frame = Frame::new(fe::QUERY, &body);
    conn.stream
        .write_all(frame.as_bytes())
        .await
        .map_err(|e| lost(&e))?;
    conn.stream.flush().await.map_err(|e| lost(&e))?;
    let mut sets = Vec::new();
    let mut rows: Option<Vec<Vec<Option<String>>>> = None;
    let mut error = None;
    loop {
        let frame = read_frame(&mut conn.stream, &mut conn.buf, MAX_MESSAGE)
            .await
            .map_err(|e| lost(&e))?
            .ok_or_else(|| Failure::Connection("catalog connection closed".into()))?;
        match frame.tag() {
            be::ROW_DESCRIPTION => rows = Some(Vec::new()),
            be::DATA_ROW => {
                rows.as_mut()
                    .ok_or_else(|| {
                        Failure::Answer("DataRow without RowDescription from the catalog".into())
                    })?
                    .push(data_row(frame.body()).ok_or_else(|| {
                        Failure::Answer("malformed DataRow from the catalog".into())
                    })?)
            }
            be::COMMAND_COMPLETE => {
                if let Some(r) = rows.take() {
                    sets.push(r);
                }
            }
            be::ERROR_RESPONSE => {
                error = Some(
                    parse_error_fields(&frame)
                        .ok()
                        .and_then(|e| error_message(&e).map(str::to_owned))
                        .unwrap_or_else(|| "unknown error".into()),
                );
            }
            be::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(Failure::Answer(format!("catalog query failed: {e}"))),
        None => Ok(sets),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The text values of a `DataRow`.
pub fn data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let vals = crate::wire::values::data_row(body)?;
    Some(
        vals.into_iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect(),
    )
}

// The queries the catalog connection sends. Every function and type is
// qualified with `pg_catalog.` and the connection runs with `search_path =
// pg_catalog` (operators resolve there): nothing a session creates can
// stand in for them (tested below over each query).

/// The connection's setup: the role's own search_path, then the pins.
const SETUP_SQL: &str = "SELECT pg_catalog.current_setting('search_path'); \
     SET search_path = pg_catalog; SET standard_conforming_strings = on; SET statement_timeout = '5s'; \
     SET idle_session_timeout = 0";

/// Keeps the role's default search_path (`literal`) on the connection.
fn default_path_sql(literal: &str) -> String {
    format!("SELECT pg_catalog.set_config('interceptor.default_path', {literal}, false)")
}

/// The schemas `setting` (a literal or `NULL::pg_catalog.text`) expands to.
fn schemas_sql(setting: &str) -> String {
    format!(
        "SELECT pg_catalog.set_config('search_path', COALESCE({setting}, pg_catalog.current_setting('interceptor.default_path', true), ''), true); \
         SELECT pg_catalog.array_to_json(pg_catalog.current_schemas(true))"
    )
}

/// Relations by `(i, schema, name)` `values`, unqualified ones on `path_array`.
fn relations_sql(values: &str, path_array: &str) -> String {
    format!(
        "SELECT q.i, c.oid, n.nspname, c.relname, c.relkind, \
             (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attname, a.attnum) ORDER BY a.attnum) \
              FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
             CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END \
             FROM (VALUES {values}) AS q(i, s, r) \
             LEFT JOIN LATERAL ( \
               SELECT k.oid FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace kn ON kn.oid = k.relnamespace \
               WHERE k.relname = q.r::pg_catalog.name \
                 AND CASE WHEN q.s IS NULL THEN kn.nspname::pg_catalog.text = ANY ({path_array}) ELSE kn.nspname::pg_catalog.text = q.s END \
               ORDER BY pg_catalog.array_position({path_array}, kn.nspname::pg_catalog.text) NULLS LAST LIMIT 1 \
             ) AS m ON true \
             LEFT JOIN pg_catalog.pg_class c ON c.oid = m.oid \
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             ORDER BY q.i"
    )
}

/// Which of `list` (text literals) name user-defined functions.
fn user_functions_sql(list: &str) -> String {
    format!(
        "SELECT w.f FROM pg_catalog.unnest(ARRAY[{list}]::pg_catalog.text[]) AS w(f) WHERE EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND ( \
               (pg_catalog.strpos(w.f, '.') = 0 AND p.proname::pg_catalog.text = w.f) OR \
               (pg_catalog.strpos(w.f, '.') > 0 AND n.nspname::pg_catalog.text || '.' || p.proname::pg_catalog.text = w.f)))"
    )
}

/// A string literal (`standard_conforming_strings` on).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\0', "").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every query the catalog connection sends names functions, types and
    /// relations in pg_catalog only: a function, type or table a session
    /// creates in another schema (`public.json_build_array(...)`) can never
    /// be what the proxy calls, whatever the search_path.
    #[test]
    fn every_catalog_query_is_qualified() {
        let queries = [
            SETUP_SQL.to_owned(),
            default_path_sql("'\"$user\", public'"),
            schemas_sql("'app, public'"),
            schemas_sql("NULL::pg_catalog.text"),
            relations_sql(
                "(0, NULL::pg_catalog.text, 'people'::pg_catalog.text), (1, 'public', 'orders'::pg_catalog.text)",
                "ARRAY['public']::pg_catalog.text[]",
            ),
            user_functions_sql("'leak', 'public.f'"),
        ];
        let mut seen = 0;
        for q in &queries {
            let parsed = pg_query::parse(q, 0).unwrap_or_else(|e| panic!("{q}: {e}"));
            let json = serde_json::to_value(&parsed.protobuf).unwrap();
            let mut stack = vec![&json];
            while let Some(v) = stack.pop() {
                match v {
                    serde_json::Value::Object(map) => {
                        let names = |key: &str| -> Vec<String> {
                            map.get(key)
                                .and_then(serde_json::Value::as_array)
                                .into_iter()
                                .flatten()
                                .filter_map(|p| {
                                    p.pointer("/node/String/sval")
                                        .and_then(serde_json::Value::as_str)
                                })
                                .map(str::to_owned)
                                .collect()
                        };
                        if map.contains_key("funcname") && map.contains_key("funcformat") {
                            let n = names("funcname");
                            assert!(
                                n.len() == 2 && n[0] == "pg_catalog",
                                "unqualified function {n:?} in {q}"
                            );
                            seen += 1;
                        }
                        if map.contains_key("names") && map.contains_key("typemod") {
                            let n = names("names");
                            assert!(
                                n.len() == 2 && n[0] == "pg_catalog",
                                "unqualified type {n:?} in {q}"
                            );
                        }
                        if map.contains_key("relname") && map.contains_key("relpersistence") {
                            let schema = map
                                .get("schemaname")
                                .and_then(serde_json::Value::as_str)
                                .unwrap_or_default();
                            assert_eq!(
                                schema,
                                "pg_catalog",
                                "relation {:?} outside pg_catalog in {q}",
                                map.get("relname")
                            );
                        }
                        stack.extend(map.values());
                    }
                    serde_json::Value::Array(items) => stack.extend(items),
                    _ => {}
                }
            }
        }
        assert!(seen >= 10, "the walk found the function calls ({seen})");
    }
}
