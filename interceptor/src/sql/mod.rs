//! SQL analysis: from the text a client sent to the facts policy decides on.
//!
//! - [`analyze`] (`analyze.rs`): PostgreSQL's own grammar (`pg_query`)
//!   splits the text into statements; each is parsed by sqlparser
//!   (PostgreSQL dialect) and its facts are cross-checked with PostgreSQL's
//!   summary of it; any disagreement or parse failure is reported, never
//!   guessed around.
//! - `classify.rs`: command, classes and statement-level objects from
//!   sqlparser's tree; `visit.rs`: relations, functions and nested writes
//!   anywhere in it; `names.rs`: identifier folding and truncation;
//!   `pgcheck.rs`: everything that asks `pg_query`.
//! - [`Analysis`] / [`StatementFacts`]: what each statement does: its
//!   classes, the relations it reads and writes, the functions it calls, COPY
//!   endpoints, session settings and role changes.
//!
//! CONTRACT (used by `policy/`; keep these types and
//! `pub fn analyze(sql: &str, limits: &Limits) -> Result<Analysis, SqlError>`).

#![allow(
    clippy::doc_markdown,
    reason = "PostgreSQL and libpg_query are names here, not code"
)]

mod analyze;
mod cache;
mod classify;
pub(crate) mod names;
mod pgcheck;
#[cfg(test)]
mod tests;
mod visit;

use std::collections::BTreeSet;

use serde::Serialize;

pub use analyze::{analyze, parse_one};
pub use cache::analyze_cached;
pub use names::MAX_IDENTIFIER_BYTES;
pub use pgcheck::{CopyToClient, copy_to_client};

/// What kind of thing a statement does. A statement may be several (a CTE
/// that deletes is `Read` and `Write`; `EXPLAIN ANALYZE DELETE` is `Write`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StatementClass {
    /// SELECT, TABLE, VALUES, SHOW, FETCH, EXPLAIN without ANALYZE, COPY ... TO.
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, COPY ... FROM, SELECT INTO (also `Ddl`).
    Write,
    /// CREATE/ALTER/DROP/TRUNCATE/COMMENT of schema objects.
    Ddl,
    /// GRANT, REVOKE, CREATE/ALTER/DROP ROLE or USER, SET ROLE,
    /// SET SESSION AUTHORIZATION, RESET ROLE, ALTER DEFAULT PRIVILEGES.
    Privilege,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOAD, CREATE/DROP
    /// DATABASE, ALTER SYSTEM, DISCARD, LOCK in the stronger modes and the
    /// like.
    Admin,
    /// LISTEN, UNLISTEN, NOTIFY: the channels job queues and change feeds
    /// use; they touch no relation.
    Notify,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION ...
    Transaction,
    /// SET, RESET, SET LOCAL (not roles): session settings.
    Session,
    /// Runs code the statement text does not show: DO blocks, CREATE FUNCTION
    /// or PROCEDURE, CALL, CREATE TRIGGER/RULE/EVENT TRIGGER, CREATE LANGUAGE.
    Code,
}

/// A relation a statement names, as PostgreSQL would resolve its spelling:
/// unquoted identifiers folded to lower case, quoted ones kept, truncated to
/// NAMEDATALEN-1 (63) bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Relation {
    /// Schema, when the statement names one; `None` means search_path-relative.
    pub schema: Option<String>,
    /// Relation name.
    pub name: String,
}

/// Where a COPY reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum CopyEndpoint {
    /// STDIN/STDOUT: the client.
    Client,
    /// A file on the database server.
    File(String),
    /// A program run on the database server.
    Program(String),
}

/// COPY facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyFacts {
    /// `true` for COPY ... FROM (into the table).
    pub from: bool,
    /// The other end.
    pub endpoint: CopyEndpoint,
}

/// Facts about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementFacts {
    /// The statement's text as the client sent it (trimmed).
    pub text: String,
    /// Command tag-like name, e.g. `SELECT`, `DROP TABLE`, `SET ROLE`.
    pub command: String,
    /// Commands of the statements nested in this one (a DELETE in a CTE,
    /// the statement an EXPLAIN or PREPARE wraps), e.g. `DELETE`.
    pub nested: BTreeSet<String>,
    /// What the statement does (never empty).
    pub classes: BTreeSet<StatementClass>,
    /// Relations read (FROM, JOIN, subqueries, CTE sources; not CTE names).
    pub reads: BTreeSet<Relation>,
    /// Relations written or whose definition changes (INSERT/UPDATE/DELETE/
    /// MERGE/TRUNCATE targets, DDL objects, SELECT INTO / CTAS targets).
    pub writes: BTreeSet<Relation>,
    /// Functions called anywhere in the statement, lower-cased, schema
    /// dropped for `pg_catalog`, kept otherwise (`myschema.f`).
    pub functions: BTreeSet<String>,
    /// Databases the statement creates, drops, alters, renames or copies
    /// (`CREATE DATABASE ... TEMPLATE`), besides the one connected to.
    pub databases: BTreeSet<String>,
    /// COPY endpoints, when the statement is a COPY.
    pub copy: Option<CopyFacts>,
    /// Session settings changed: (name lower-cased, value text). Includes
    /// `set_config(...)` calls with literal names.
    pub settings: Vec<(String, String)>,
    /// The statement is a read with no LIMIT (or FETCH FIRST) on its outer
    /// query: a candidate for the row limit.
    pub unbounded: bool,
    /// LIMIT of the outer query when it is a literal.
    pub limit: Option<u64>,
}

/// The facts of every statement in one client message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// In order, one per statement; empty for an empty query string.
    pub statements: Vec<StatementFacts>,
}

/// Bounds on what the analyser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest SQL text analysed, in bytes.
    pub max_sql_bytes: usize,
    /// Deepest expression/query nesting accepted (sqlparser recursion limit,
    /// bracket nesting); a run of operators at one level (`1+1+...`) may be
    /// 64 times as long.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sql_bytes: 1 << 20,
            max_depth: 64,
        }
    }
}

/// Why SQL could not be analysed. Every variant means: refuse, unless the
/// identity's policy says unparseable SQL may pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// sqlparser could not parse it.
    #[error("cannot parse the SQL: {0}")]
    Parse(String),
    /// PostgreSQL's grammar could not parse it (the server would refuse it too).
    #[error("PostgreSQL's grammar rejects the SQL: {0}")]
    PgParse(String),
    /// The two parsers disagree on how many statements there are or what they are.
    #[error("the SQL is ambiguous: {0}")]
    Disagreement(String),
    /// Longer than `Limits::max_sql_bytes`.
    #[error("statement of {len} bytes is over the {max}-byte limit")]
    TooLong {
        /// Length of the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nested deeper than `Limits::max_depth`.
    #[error("statement nests deeper than {0} levels")]
    TooDeep(usize),
}
