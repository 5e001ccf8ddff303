//! The catalog, read through the proxy's own upstream connection.
//!
//! One connection per (target, upstream address, login, database), opened
//! on first need with the same credential as the sessions it serves (so it
//! sees the same relations and the same `search_path`), kept open, reopened
//! after an error. Answers are cached for [`TTL`] and dropped whenever a
//! session of that database runs DDL.
//!
//! Names coming from client SQL reach the catalog only as string literals
//! (`standard_conforming_strings` is forced on, quotes doubled) and are
//! resolved by `to_regclass`, never spliced in as identifiers.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::lineage::{RelInfo, Snapshot};
use crate::{
    proxy::{hooks::SessionInfo, stream::UpstreamStream, upstream::Upstream},
    sql::{self, Relation},
    wire::{
        Frame,
        error_response::{error_message, parse_error_fields},
        read_frame,
        tag::backend as be,
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

/// Opens an authenticated upstream connection like a session's.
pub trait Connector: Send + Sync {
    /// A connection for `info`'s target, login and database.
    fn connect<'a>(&'a self, info: &'a SessionInfo) -> Pin<Box<dyn Future<Output = Result<Upstream, String>> + Send + 'a>>;
}

/// Catalogs of every database sessions use.
pub struct CatalogPool {
    connector: Arc<dyn Connector>,
    dbs: Mutex<HashMap<String, Arc<DbCatalog>>>,
}

impl CatalogPool {
    /// A pool opening connections with `connector`.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self { connector, dbs: Mutex::default() }
    }

    /// The catalog of `info`'s database.
    pub fn for_session(&self, info: &Arc<SessionInfo>) -> Arc<DbCatalog> {
        let key = format!("{}\0{}\0{}\0{}", info.target, info.upstream, info.upstream_user, info.database);
        let mut dbs = self.dbs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(dbs.entry(key).or_insert_with(|| {
            Arc::new(DbCatalog {
                connector: Arc::clone(&self.connector),
                info: Arc::clone(info),
                conn: tokio::sync::Mutex::new(None),
                cache: Mutex::default(),
            })
        }))
    }
}

#[derive(Default)]
struct Cache {
    relations: HashMap<Relation, (Option<RelInfo>, Instant)>,
    functions: HashMap<String, (bool, Instant)>,
}

struct Conn {
    stream: UpstreamStream,
    buf: BytesMut,
}

/// One database's catalog.
pub struct DbCatalog {
    connector: Arc<dyn Connector>,
    info: Arc<SessionInfo>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    cache: Mutex<Cache>,
}

impl DbCatalog {
    /// Forgets every answer (after DDL).
    pub fn invalidate(&self) {
        let mut c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.relations.clear();
        c.functions.clear();
    }

    /// Whether every name is cached (no round trip needed).
    pub fn has_fresh(&self, rels: &[Relation], functions: &[String]) -> bool {
        let c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rels.iter().all(|r| c.relations.get(r).is_some_and(|(_, at)| at.elapsed() < TTL))
            && functions.iter().all(|f| c.functions.get(f).is_some_and(|(_, at)| at.elapsed() < TTL))
    }

    /// What the tracer needs for a statement naming `rels` and calling
    /// `functions`: those relations, the relations their view definitions
    /// name (recursively), and which functions are user-defined.
    pub async fn snapshot(&self, rels: &[Relation], functions: &[String]) -> Result<Snapshot, String> {
        let mut snap = Snapshot::default();
        let mut want: Vec<Relation> = rels.to_vec();
        for _ in 0..MAX_VIEW_DEPTH {
            want.retain(|r| !snap.relations.contains_key(r));
            want.sort();
            want.dedup();
            if want.is_empty() {
                break;
            }
            let found = self.relations(&want).await?;
            let mut next = Vec::new();
            for (rel, info) in found {
                if let Some(def) = info.as_ref().and_then(|i| i.view_def.as_deref())
                    && let Ok(a) = sql::analyze(def.trim(), &sql::Limits::default())
                {
                    next.extend(a.statements.into_iter().flat_map(|f| f.reads));
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

    async fn relations(&self, rels: &[Relation]) -> Result<Vec<(Relation, Option<RelInfo>)>, String> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in rels {
                match c.relations.get(r) {
                    Some((info, at)) if at.elapsed() < TTL => out.push((r.clone(), info.clone())),
                    _ => missing.push(r.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let values: Vec<String> = missing
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let spelled = match &r.schema {
                    Some(s) => format!("quote_ident({})||'.'||quote_ident({})", literal(s), literal(&r.name)),
                    None => format!("quote_ident({})", literal(&r.name)),
                };
                format!("({i}, {spelled})")
            })
            .collect();
        let query = format!(
            "SELECT q.i, c.oid, n.nspname, c.relname, c.relkind, \
             (SELECT json_agg(json_build_array(a.attname, a.attnum) ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
             CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END \
             FROM (VALUES {}) AS q(i, name) \
             LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(q.name) \
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
            values.join(", ")
        );
        let rows = self.query(&query).await?;
        let now = Instant::now();
        let mut c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.relations.len() > MAX_CACHED {
            // Names come from client SQL: bounded, refilled with what is used.
            c.relations.clear();
        }
        for row in rows {
            let Some(i) = row.first().and_then(|v| v.as_deref()).and_then(|v| v.parse::<usize>().ok()) else { continue };
            let Some(rel) = missing.get(i) else { continue };
            let info = match (&row[1], &row[2], &row[3], &row[4]) {
                (Some(oid), Some(schema), Some(name), Some(kind)) => {
                    let cols: Vec<(String, i16)> =
                        row[5].as_deref().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
                    Some(RelInfo {
                        oid: oid.parse().unwrap_or(0),
                        schema: schema.clone(),
                        name: name.clone(),
                        kind: kind.chars().next().unwrap_or('r'),
                        attnums: cols.iter().map(|(_, n)| *n).collect(),
                        columns: cols.into_iter().map(|(c, _)| c).collect(),
                        view_def: row[6].clone(),
                    })
                }
                _ => None,
            };
            c.relations.insert(rel.clone(), (info.clone(), now));
            out.push((rel.clone(), info));
        }
        Ok(out)
    }

    async fn user_functions(&self, functions: &[String]) -> Result<HashSet<String>, String> {
        let mut out = HashSet::new();
        let mut missing = Vec::new();
        {
            let c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let query = format!(
            "SELECT w.f FROM unnest(ARRAY[{}]::text[]) AS w(f) WHERE EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND ( \
               (strpos(w.f, '.') = 0 AND p.proname = w.f) OR \
               (strpos(w.f, '.') > 0 AND n.nspname || '.' || p.proname = w.f)))",
            list.join(", ")
        );
        let rows = self.query(&query).await?;
        let user: HashSet<String> = rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
        let now = Instant::now();
        let mut c = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// Runs one simple query, returning its rows as text.
    async fn query(&self, sql_text: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut guard = self.conn.lock().await;
        let result = tokio::time::timeout(TIMEOUT, async {
            if guard.is_none() {
                let up = self.connector.connect(&self.info).await?;
                let mut conn = Conn { stream: up.stream, buf: up.buf };
                run(&mut conn, "SET standard_conforming_strings = on; SET statement_timeout = '5s'").await?;
                *guard = Some(conn);
            }
            run(guard.as_mut().expect("connected"), sql_text).await
        })
        .await
        .unwrap_or_else(|_| Err("the catalog lookup timed out".into()));
        if result.is_err() {
            // Start afresh next time.
            *guard = None;
        }
        result
    }
}

async fn run(conn: &mut Conn, sql_text: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut body = sql_text.as_bytes().to_vec();
    body.push(0);
    let frame = Frame::new(b'Q', &body);
    conn.stream.write_all(frame.as_bytes()).await.map_err(|e| format!("catalog connection: {e}"))?;
    conn.stream.flush().await.map_err(|e| format!("catalog connection: {e}"))?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = read_frame(&mut conn.stream, &mut conn.buf, MAX_MESSAGE)
            .await
            .map_err(|e| format!("catalog connection: {e}"))?
            .ok_or("catalog connection closed")?;
        match frame.tag() {
            be::DATA_ROW => rows.push(data_row(frame.body()).ok_or("malformed DataRow from the catalog")?),
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
        Some(e) => Err(format!("catalog query failed: {e}")),
        None => Ok(rows),
    }
}

/// The text values of a `DataRow`.
pub fn data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let vals = crate::wire::values::data_row(body)?;
    Some(vals.into_iter().map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())).collect())
}

/// A string literal (`standard_conforming_strings` on).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\0', "").replace('\'', "''"))
}
