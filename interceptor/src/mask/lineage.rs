//! Column lineage: for each output column of a statement, the sensitive base
//! columns it derives from.
//!
//! The walk is over sqlparser's tree with the catalog at hand (relations'
//! columns in order, view definitions). It is conservative by design:
//!
//! - an expression derives from every column it mentions, through any
//!   function, operator, cast, CASE, COALESCE, aggregate or window;
//! - a subquery used as a value derives from everything it mentions,
//!   including its own WHERE clause (an EXISTS over a predicate on `ssn`
//!   answers a question about `ssn`);
//! - a table alias used as a value (`row_to_json(c)`, `c`, `c.*` in a
//!   function) derives from every column of the relation;
//! - views are traced through their definitions; a relation the catalog does
//!   not know (a temporary view, say) is *opaque*;
//! - set operations union their branches column by column; CTEs, derived
//!   tables, `SELECT *` and `t.*` (with USING/NATURAL joins' column order)
//!   are expanded from the catalog;
//! - anything not modelled is opaque, never "clean".
//!
//! Columns mentioned in filters (WHERE, JOIN ... ON, GROUP BY, HAVING,
//! ORDER BY, DISTINCT ON, window clauses) are collected separately: masked
//! output does not stop `WHERE ssn LIKE '1%'` from answering questions.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeSet, HashMap, HashSet},
    ops::ControlFlow,
    rc::Rc,
};

use sqlparser::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, Distinct, Expr, FromTable, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator,
    ObjectName, OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement, TableAlias, TableFactor, TableObject, TableWithJoins, UpdateTableFromKind, Visit,
    Visitor,
};

use super::policy::MaskPolicy;
use crate::sql::{self, Relation, names};

/// What one value derives from: sensitive base columns, and whether part of
/// it could not be traced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lin {
    /// (category, `schema.table.column`).
    pub sources: BTreeSet<(String, String)>,
    /// Part of it could not be traced.
    pub opaque: bool,
    /// Part of it comes from a relation that did not exist when the
    /// statement was planned (the server will most likely answer 42P01; if
    /// it was created in between, whatever it returns is masked whole).
    pub missing: bool,
    /// It is computed from the columns (a function, operator, cast, CASE,
    /// aggregate, a whole row), not a column as stored: a partial view of
    /// the column would not be a partial view of this value.
    pub derived: bool,
}

impl Lin {
    /// Nothing known about it.
    pub fn opaque() -> Self {
        Self {
            opaque: true,
            ..Self::default()
        }
    }

    fn missing() -> Self {
        Self {
            missing: true,
            ..Self::default()
        }
    }

    /// Adds what `other` derives from.
    pub fn add(&mut self, other: &Lin) {
        self.sources.extend(other.sources.iter().cloned());
        self.opaque |= other.opaque;
        self.missing |= other.missing;
        self.derived |= other.derived;
    }

    /// Whether nothing sensitive, nothing unknown and nothing missing.
    pub fn is_clean(&self) -> bool {
        self.sources.is_empty() && !self.opaque && !self.missing
    }

    fn union<'a>(it: impl IntoIterator<Item = &'a Lin>) -> Lin {
        let mut out = Lin::default();
        for l in it {
            out.add(l);
        }
        out
    }
}

/// A relation as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelInfo {
    /// `pg_class` oid.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// relkind: `r` table, `p` partitioned, `v` view, `m` materialized view,
    /// `f` foreign table.
    pub kind: char,
    /// Column names in attnum order (dropped ones left out).
    pub columns: Vec<String>,
    /// Their attribute numbers (what `RowDescription` reports).
    pub attnums: Vec<i16>,
    /// `pg_get_viewdef` of a view or materialized view (for a view the
    /// session made itself: its defining query as the session sent it).
    pub view_def: Option<String>,
    /// What was written into each column beyond what its tags say (the
    /// session's own relations: data the session copied in); empty: nothing.
    pub carries: Vec<Lin>,
}

/// What the catalog says about a name.
pub trait Catalog {
    /// `Some(Some(info))`: resolved; `Some(None)`: the catalog has no such
    /// relation (a temporary one, or none); `None`: not looked up.
    fn relation(&self, rel: &Relation) -> Option<Option<&RelInfo>>;
    /// Whether a function name (as policy spells it) is defined outside
    /// `pg_catalog`: its body is out of sight.
    fn user_function(&self, name: &str) -> bool;
}

/// An output column.
#[derive(Debug, Clone)]
pub struct OutCol {
    /// Its name as `PostgreSQL` would most likely report it.
    pub name: String,
    /// Lineage.
    pub lin: Lin,
}

/// COPY data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated text with backslash escapes.
    Text,
    /// CSV.
    Csv,
    /// PGCOPY binary.
    Binary,
}

/// How COPY ... TO STDOUT lays out its rows, from the statement's options
/// (both the `WITH (...)` and the old syntax), with PostgreSQL's defaults
/// for what is not given: the row rewriter splits and rebuilds fields with
/// these, so a masked value lands in its own field whatever the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyLayout {
    /// Data format.
    pub format: CopyFormat,
    /// Field separator (one byte: PostgreSQL refuses anything else).
    pub delimiter: u8,
    /// The text of a NULL (`\N` in text, empty in CSV).
    pub null: Vec<u8>,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character (the quote unless given).
    pub escape: u8,
    /// A header line comes first (`HEADER`).
    pub header: bool,
}

impl CopyLayout {
    /// PostgreSQL's defaults for `format`.
    pub fn new(format: CopyFormat) -> Self {
        let (delimiter, null): (u8, &[u8]) = match format {
            CopyFormat::Csv => (b',', b""),
            _ => (b'\t', b"\\N"),
        };
        Self {
            format,
            delimiter,
            null: null.to_vec(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    /// The layout of a COPY's options as PostgreSQL's grammar gave them
    /// ([`crate::sql::CopyToClient`]), or why masking cannot rebuild its
    /// fields (a delimiter or quote of more than one byte, an encoding other
    /// than UTF-8, an option it does not know).
    pub fn from_options(options: &[(String, Option<String>)]) -> Result<Self, String> {
        let get = |name: &str| {
            options
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone().unwrap_or_default())
        };
        let format = match get("format").map(|f| f.to_ascii_lowercase()).as_deref() {
            None | Some("text") => CopyFormat::Text,
            Some("csv") => CopyFormat::Csv,
            Some("binary") => CopyFormat::Binary,
            Some(other) => return Err(format!("COPY format {other:?} is not one PostgreSQL has")),
        };
        let mut l = Self::new(format);
        let byte = |what: &str, v: &str| -> Result<u8, String> {
            match v.as_bytes() {
                [b] if b.is_ascii() => Ok(*b),
                _ => Err(format!(
                    "COPY TO STDOUT with {what} {v:?} cannot be masked field by field (one ASCII character only)"
                )),
            }
        };
        let mut escape = None;
        for (name, value) in options {
            let v = value.as_deref().unwrap_or_default();
            match name.as_str() {
                "format" | "freeze" | "force_quote" | "force_not_null" | "force_null" => {}
                "delimiter" => l.delimiter = byte("DELIMITER", v)?,
                "null" => l.null = v.as_bytes().to_vec(),
                "quote" => l.quote = byte("QUOTE", v)?,
                "escape" => escape = Some(byte("ESCAPE", v)?),
                "encoding" => check_copy_encoding(v)?,
                // PostgreSQL's defGetBoolean: a bare HEADER is true.
                "header" => {
                    l.header = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        None | Some("true" | "on" | "1" | "yes") => true,
                        Some("false" | "off" | "0" | "no") => false,
                        Some(other) => {
                            return Err(format!(
                                "COPY TO STDOUT with HEADER {other:?} cannot be masked"
                            ));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "COPY TO STDOUT with option {other} cannot be masked field by field"
                    ));
                }
            }
        }
        l.escape = escape.unwrap_or(l.quote);
        Ok(l)
    }
}

/// Masked fields are rebuilt as UTF-8: another client-side encoding of the
/// COPY stream (where a delimiter byte may also be part of a character)
/// cannot be rebuilt safely.
fn check_copy_encoding(e: &str) -> Result<(), String> {
    let norm: String = e
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    if matches!(norm.as_str(), "utf8" | "unicode" | "sqlascii") {
        Ok(())
    } else {
        Err(format!(
            "COPY TO STDOUT with ENCODING '{e}' cannot be masked field by field (UTF8 only)"
        ))
    }
}

/// The result of tracing one statement.
#[derive(Debug, Clone, Default)]
pub struct Traced {
    /// Output columns, when the statement returns rows of a known shape.
    /// `None` with `returns_unknown` set: rows of a shape not modelled.
    pub outputs: Option<Vec<OutCol>>,
    /// Returns rows that could not be modelled.
    pub returns_unknown: bool,
    /// What filters mention.
    pub filters: Lin,
    /// What data written to tables derives from (INSERT ... SELECT, UPDATE
    /// SET, CREATE TABLE AS, SELECT INTO, materialized views).
    pub written: Lin,
    /// Everything sensitive the statement can reach.
    pub reach: Lin,
    /// Reasons to refuse regardless of lineage (SQL run from strings,
    /// statistics views that hold column values).
    pub refusals: Vec<String>,
    /// COPY ... TO STDOUT: how its rows are laid out.
    pub copy: Option<CopyLayout>,
    /// DECLARE: the cursor's name (its outputs are in `outputs`).
    pub declares: Option<String>,
    /// FETCH/MOVE: the cursor's name (its outputs come from the DECLARE).
    pub fetches: Option<String>,
    /// PREPARE: the statement's name (its outputs are in `outputs`).
    pub prepares: Option<String>,
    /// EXECUTE: the prepared statement's name.
    pub executes: Option<String>,
    /// What leaves through side channels (`pg_notify` payloads,
    /// `set_config` values reported back, logical messages).
    pub side: Lin,
    /// EXPLAIN: everything the explained statement reaches (its plan's row
    /// estimates answer questions about the columns it filters on).
    pub explained: Lin,
    /// The output columns of the query that fills a relation the statement
    /// creates (CREATE TABLE AS, SELECT INTO, CREATE [MATERIALIZED] VIEW).
    pub created: Option<Vec<OutCol>>,
    /// It reads relations the session itself created (known from the
    /// session's history, not the catalog): results keep their traced width.
    pub own: bool,
}

/// Oids from here up are the session's own relations (see `mask::own`).
pub const OWN_OID_BASE: u32 = 0xF000_0000;

/// Functions that run SQL given as text, out of the tracer's sight.
const SQL_FROM_TEXT: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "ts_stat",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    "dblink_get_result",
];

/// Functions whose arguments reach the client (or others) outside the
/// result rows.
const SIDE_CHANNELS: &[&str] = &["pg_notify", "set_config", "pg_logical_emit_message"];

/// Catalog relations that hold column values (most common values,
/// histograms).
const VALUE_STATS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
];

/// Value-like keywords sqlparser reads as identifiers.
const KEYWORD_VALUES: &[&str] = &[
    "current_user",
    "session_user",
    "current_role",
    "user",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_catalog",
    "current_schema",
    "true",
    "false",
    "null",
    "default",
];

/// A relation (or derived table) in a FROM list.
#[derive(Debug, Clone)]
struct Source {
    /// Name it is referred to by (alias, or relation name), folded.
    alias: String,
    /// Schema, for `schema.table.column` references.
    schema: Option<String>,
    /// Columns in order, when known.
    cols: Option<Vec<OutCol>>,
    /// Union of every column.
    all: Lin,
}

#[derive(Default)]
struct Frame {
    sources: Vec<Source>,
    ctes: Vec<(String, Rc<Vec<OutCol>>)>,
    /// `SELECT *` expansion (None: unknown).
    star: Option<Vec<OutCol>>,
}

/// Traces statements against one catalog snapshot.
pub struct Tracer<'a> {
    cat: &'a dyn Catalog,
    policy: &'a MaskPolicy,
    limits: sql::Limits,
    views: RefCell<HashMap<u32, Option<Rc<Vec<Lin>>>>>,
    view_depth: Cell<usize>,
    /// Tracing the definition of a view from the catalog: printed by
    /// `pg_get_viewdef` under `search_path = pg_catalog`, so its unqualified
    /// names are pg_catalog's.
    in_catalog_view: Cell<bool>,
    filters: RefCell<Vec<Lin>>,
    reach: RefCell<Lin>,
    refusals: RefCell<Vec<String>>,
    stack: RefCell<Vec<Frame>>,
    written: RefCell<Lin>,
    side: RefCell<Lin>,
    own: Cell<bool>,
}

impl<'a> Tracer<'a> {
    /// A tracer over `cat`, with `policy`'s tags.
    pub fn new(cat: &'a dyn Catalog, policy: &'a MaskPolicy) -> Self {
        Self {
            cat,
            policy,
            limits: sql::Limits::default(),
            views: RefCell::default(),
            view_depth: Cell::new(0),
            in_catalog_view: Cell::new(false),
            filters: RefCell::new(vec![Lin::default()]),
            reach: RefCell::default(),
            refusals: RefCell::default(),
            stack: RefCell::default(),
            written: RefCell::default(),
            side: RefCell::default(),
            own: Cell::new(false),
        }
    }

    /// Traces one statement.
    pub fn trace(&self, stmt: &Statement) -> Traced {
        let mut t = Traced::default();
        match stmt {
            Statement::Query(q) => {
                let outs = self.query(q);
                if select_into(q) {
                    self.written
                        .borrow_mut()
                        .add(&Lin::union(outs.iter().map(|c| &c.lin)));
                    t.created = Some(outs);
                } else {
                    t.outputs = Some(outs);
                }
            }
            Statement::Insert(ins) => {
                self.push(Frame::default());
                if let Some(src) = &ins.source {
                    let outs = self.query(src);
                    self.written
                        .borrow_mut()
                        .add(&Lin::union(outs.iter().map(|c| &c.lin)));
                }
                for a in &ins.assignments {
                    let l = self.expr_lin(&a.value);
                    self.written.borrow_mut().add(&l);
                }
                if let Some(on) = &ins.on {
                    let l = self.all_refs(on);
                    self.written.borrow_mut().add(&l);
                }
                self.pop();
                if let Some(ret) = &ins.returning {
                    let TableObject::TableName(name) = &ins.table else {
                        t.returns_unknown = true;
                        return self.finish(t);
                    };
                    let mut f = Frame::default();
                    let alias = ins
                        .table_alias
                        .as_ref()
                        .map(|a| names::fold_ident(&a.alias));
                    self.add_relation(&mut f, name, alias.as_deref(), None);
                    f.star = self.star_of(&f);
                    self.push(f);
                    t.outputs = Some(self.projection(ret));
                    self.pop();
                }
            }
            Statement::Update(u) => {
                let mut f = Frame::default();
                self.add_from(&mut f, std::slice::from_ref(&u.table));
                if let Some(
                    UpdateTableFromKind::AfterSet(from) | UpdateTableFromKind::BeforeSet(from),
                ) = &u.from
                {
                    self.add_from(&mut f, from);
                }
                f.star = self.star_of(&f);
                self.push(f);
                for a in &u.assignments {
                    let l = self.expr_lin(&a.value);
                    self.written.borrow_mut().add(&l);
                }
                if let Some(w) = &u.selection {
                    self.filter(w);
                }
                if let Some(ret) = &u.returning {
                    t.outputs = Some(self.projection(ret));
                }
                self.pop();
            }
            Statement::Delete(d) => {
                let mut f = Frame::default();
                match &d.from {
                    FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => {
                        self.add_from(&mut f, from)
                    }
                }
                if let Some(using) = &d.using {
                    self.add_from(&mut f, using);
                }
                f.star = self.star_of(&f);
                self.push(f);
                if let Some(w) = &d.selection {
                    self.filter(w);
                }
                if let Some(ret) = &d.returning {
                    t.outputs = Some(self.projection(ret));
                }
                self.pop();
            }
            Statement::CreateTable(ct) => {
                if let Some(q) = &ct.query {
                    let outs = self.query(q);
                    self.written
                        .borrow_mut()
                        .add(&Lin::union(outs.iter().map(|c| &c.lin)));
                    t.created = Some(outs);
                }
                // Defaults, checks, generated columns: a user-defined
                // function there runs on every insert.
                let l = self.all_refs(&ct.columns);
                self.written.borrow_mut().add(&Lin {
                    sources: l.sources,
                    opaque: l.opaque,
                    ..Lin::default()
                });
            }
            Statement::CreateView(v) => {
                let outs = self.query(&v.query);
                if v.materialized {
                    self.written
                        .borrow_mut()
                        .add(&Lin::union(outs.iter().map(|c| &c.lin)));
                }
                t.created = Some(outs);
                // A plain view stores no data: reading it is traced through
                // its definition. What it filters on is the view's business.
                *self
                    .filters
                    .borrow_mut()
                    .last_mut()
                    .expect("base accumulator") = Lin::default();
            }
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                if *to {
                    let outs = match source {
                        CopySource::Query(q) => self.query(q),
                        CopySource::Table {
                            table_name,
                            columns,
                        } => {
                            let mut f = Frame::default();
                            self.add_relation(&mut f, table_name, None, None);
                            let src = f.sources.pop();
                            match (src.and_then(|s| s.cols), columns.is_empty()) {
                                (Some(cols), true) => cols,
                                (Some(cols), false) => columns
                                    .iter()
                                    .map(|c| {
                                        let n = names::fold_ident(c);
                                        cols.iter().find(|o| o.name == n).cloned().unwrap_or(
                                            OutCol {
                                                name: n,
                                                lin: Lin::opaque(),
                                            },
                                        )
                                    })
                                    .collect(),
                                (None, _) => {
                                    t.returns_unknown = true;
                                    Vec::new()
                                }
                            }
                        }
                    };
                    if matches!(target, CopyTarget::Stdout) {
                        // The format only: the options' details come from
                        // PostgreSQL's grammar (see `policy::masking`).
                        t.copy = Some(CopyLayout::new(copy_format(options, legacy_options)));
                        if !t.returns_unknown {
                            t.outputs = Some(outs);
                        }
                    } else {
                        // COPY TO a file or program: refused by the built-in
                        // guards; still nothing sensitive may go there.
                        self.written
                            .borrow_mut()
                            .add(&Lin::union(outs.iter().map(|c| &c.lin)));
                    }
                }
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    if let (Some(q), Some(name)) = (&d.for_query, d.names.first()) {
                        t.outputs = Some(self.query(q));
                        t.declares = Some(names::fold_ident(name));
                    }
                }
            }
            Statement::Fetch { name, .. } => t.fetches = Some(names::fold_ident(name)),
            Statement::Prepare {
                name, statement, ..
            } => {
                let inner = self.trace(statement);
                t.outputs = inner.outputs;
                t.returns_unknown = inner.returns_unknown;
                t.copy = inner.copy;
                t.prepares = Some(names::fold_ident(name));
            }
            Statement::Execute {
                name: Some(name), ..
            } => {
                t.executes = names::folded_parts(name).and_then(|mut p| p.pop());
                if t.executes.is_none() {
                    t.returns_unknown = true;
                }
            }
            Statement::Explain { statement, .. } => {
                let inner = Tracer::new(self.cat, self.policy).trace(statement);
                let mut l = inner.reach;
                l.add(&inner.filters);
                t.explained = l;
                // The plan text: rows of a known shape holding no values.
                t.outputs = Some(vec![OutCol {
                    name: "QUERY PLAN".into(),
                    lin: Lin::default(),
                }]);
            }
            Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. }
            | Statement::Set(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Close { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. } => {}
            other => {
                // Whatever else mentions: no rows are expected; if some come
                // back, their shape is unknown.
                let l = self.all_refs(other);
                self.written.borrow_mut().add(&l);
                t.returns_unknown = true;
            }
        }
        self.finish(t)
    }

    fn finish(&self, mut t: Traced) -> Traced {
        t.filters = self.filters.borrow().first().cloned().unwrap_or_default();
        t.written = self.written.borrow().clone();
        t.reach = self.reach.borrow().clone();
        t.refusals = self.refusals.borrow().clone();
        t.side = self.side.borrow().clone();
        t.own |= self.own.get();
        t
    }

    fn push(&self, f: Frame) {
        self.stack.borrow_mut().push(f);
    }

    fn pop(&self) {
        self.stack.borrow_mut().pop();
    }

    /// A query's output columns.
    fn query(&self, q: &Query) -> Vec<OutCol> {
        let mut frame = Frame::default();
        if let Some(with) = &q.with {
            self.push(Frame::default());
            for cte in &with.cte_tables {
                let name = names::fold_ident(&cte.alias.name);
                let mut outs = if with.recursive {
                    // The recursive part sees the CTE itself: iterate from
                    // an opaque start until the lineage is stable... bounded.
                    let seed: Vec<OutCol> = Vec::new();
                    self.stack
                        .borrow_mut()
                        .last_mut()
                        .expect("pushed")
                        .ctes
                        .push((name.clone(), Rc::new(seed)));
                    let mut outs = self.query(&cte.query);
                    for _ in 0..3 {
                        if let Some(last) = self.stack.borrow_mut().last_mut() {
                            last.ctes.retain(|(n, _)| n != &name);
                            last.ctes.push((name.clone(), Rc::new(outs.clone())));
                        }
                        let again = self.query(&cte.query);
                        let merged: Vec<OutCol> = again
                            .iter()
                            .zip(outs.iter())
                            .map(|(a, b)| OutCol {
                                name: a.name.clone(),
                                lin: Lin::union([&a.lin, &b.lin]),
                            })
                            .collect();
                        let stable = merged.iter().zip(outs.iter()).all(|(a, b)| a.lin == b.lin);
                        outs = merged;
                        if stable {
                            break;
                        }
                    }
                    outs
                } else {
                    self.query(&cte.query)
                };
                rename(&mut outs, &cte.alias);
                if let Some(last) = self.stack.borrow_mut().last_mut() {
                    last.ctes.retain(|(n, _)| n != &name);
                    last.ctes.push((name, Rc::new(outs)));
                }
            }
            frame = self.stack.borrow_mut().pop().expect("pushed");
        }
        let has_ctes = !frame.ctes.is_empty();
        if has_ctes {
            self.push(frame);
        }
        let order: Vec<&Expr> = match q.order_by.as_ref().map(|o| &o.kind) {
            Some(OrderByKind::Expressions(list)) => list.iter().map(|o| &o.expr).collect(),
            _ => Vec::new(),
        };
        let outs = self.set_expr(&q.body, &order);
        if has_ctes {
            self.pop();
        }
        outs
    }

    fn set_expr(&self, body: &SetExpr, order: &[&Expr]) -> Vec<OutCol> {
        match body {
            SetExpr::Select(s) => self.select(s, order),
            SetExpr::Query(q) => {
                let outs = self.query(q);
                self.order_by_outputs(order, &outs);
                outs
            }
            SetExpr::SetOperation { left, right, .. } => {
                let l = self.set_expr(left, &[]);
                let r = self.set_expr(right, &[]);
                let outs: Vec<OutCol> = if l.len() == r.len() {
                    l.iter()
                        .zip(r.iter())
                        .map(|(a, b)| OutCol {
                            name: a.name.clone(),
                            lin: Lin::union([&a.lin, &b.lin]),
                        })
                        .collect()
                } else {
                    let all = Lin::union(l.iter().chain(r.iter()).map(|c| &c.lin));
                    l.iter()
                        .map(|c| OutCol {
                            name: c.name.clone(),
                            lin: Lin {
                                opaque: true,
                                ..all.clone()
                            },
                        })
                        .collect()
                };
                self.order_by_outputs(order, &outs);
                outs
            }
            SetExpr::Values(v) => {
                let width = v.rows.first().map_or(0, |r| r.len());
                let mut outs: Vec<OutCol> = (1..=width)
                    .map(|i| OutCol {
                        name: format!("column{i}"),
                        lin: Lin::default(),
                    })
                    .collect();
                for row in &v.rows {
                    for (i, e) in row.iter().enumerate() {
                        let l = self.expr_lin(e);
                        match outs.get_mut(i) {
                            Some(c) => c.lin.add(&l),
                            None => outs.iter_mut().for_each(|c| c.lin.opaque = true),
                        }
                    }
                }
                outs
            }
            SetExpr::Table(t) => {
                let Some(name) = &t.table_name else {
                    return vec![OutCol {
                        name: "?".into(),
                        lin: Lin::opaque(),
                    }];
                };
                let rel = Relation {
                    schema: t.schema_name.clone(),
                    name: name.clone(),
                };
                let mut f = Frame::default();
                self.add_resolved(&mut f, &rel, None, None);
                f.sources.pop().and_then(|s| s.cols).unwrap_or_else(|| {
                    vec![OutCol {
                        name: name.clone(),
                        lin: Lin::opaque(),
                    }]
                })
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                // A data-modifying CTE: its RETURNING rows, and what it writes.
                let inner = Tracer::new(self.cat, self.policy);
                *inner.stack.borrow_mut() = std::mem::take(&mut *self.stack.borrow_mut());
                let t = inner.trace(s);
                *self.stack.borrow_mut() = std::mem::take(&mut *inner.stack.borrow_mut());
                self.written.borrow_mut().add(&t.written);
                self.reach.borrow_mut().add(&t.reach);
                self.filters
                    .borrow_mut()
                    .last_mut()
                    .expect("accumulator")
                    .add(&t.filters);
                self.refusals.borrow_mut().extend(t.refusals);
                if t.own {
                    self.own.set(true);
                }
                t.outputs.unwrap_or_else(|| {
                    if t.returns_unknown {
                        vec![OutCol {
                            name: "?".into(),
                            lin: Lin::opaque(),
                        }]
                    } else {
                        Vec::new()
                    }
                })
            }
        }
    }

    /// ORDER BY of a set operation or parenthesised query: by output name
    /// or position, else everything the outputs derive from.
    fn order_by_outputs(&self, order: &[&Expr], outs: &[OutCol]) {
        for e in order {
            let l = match e {
                Expr::Identifier(i) => {
                    let n = names::fold_ident(i);
                    outs.iter().find(|c| c.name == n).map(|c| c.lin.clone())
                }
                Expr::Value(v) => v
                    .value
                    .to_string()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| outs.get(i.wrapping_sub(1)))
                    .map(|c| c.lin.clone()),
                _ => None,
            };
            let l = l.unwrap_or_else(|| Lin::union(outs.iter().map(|c| &c.lin)));
            self.filters
                .borrow_mut()
                .last_mut()
                .expect("accumulator")
                .add(&l);
        }
    }

    fn select(&self, s: &Select, order: &[&Expr]) -> Vec<OutCol> {
        let mut f = Frame::default();
        self.add_from(&mut f, &s.from);
        f.star = self.star_of(&f);
        self.push(f);
        let outs = self.projection(&s.projection);
        if let Some(w) = &s.selection {
            self.filter(w);
        }
        if let Some(h) = &s.having {
            self.filter(h);
        }
        if let Some(q) = &s.qualify {
            self.filter(q);
        }
        if let GroupByExpr::Expressions(list, _) = &s.group_by {
            for e in list {
                self.filter_or_output(e, &outs);
            }
        }
        if let Some(Distinct::On(list)) = &s.distinct {
            for e in list {
                self.filter_or_output(e, &outs);
            }
        }
        for w in &s.named_window {
            let l = self.all_refs(w);
            self.filters
                .borrow_mut()
                .last_mut()
                .expect("accumulator")
                .add(&l);
        }
        for e in order {
            self.filter_or_output(e, &outs);
        }
        self.pop();
        outs
    }

    /// ORDER BY / GROUP BY items may name an output column or its position.
    fn filter_or_output(&self, e: &Expr, outs: &[OutCol]) {
        let by_output = match e {
            Expr::Identifier(i) => {
                let n = names::fold_ident(i);
                let is_input = self.resolve_unqualified(&n).is_some();
                (!is_input)
                    .then(|| outs.iter().find(|c| c.name == n).map(|c| c.lin.clone()))
                    .flatten()
            }
            Expr::Value(v) => v
                .value
                .to_string()
                .parse::<usize>()
                .ok()
                .and_then(|i| outs.get(i.wrapping_sub(1)))
                .map(|c| c.lin.clone()),
            _ => None,
        };
        match by_output {
            Some(l) => self
                .filters
                .borrow_mut()
                .last_mut()
                .expect("accumulator")
                .add(&l),
            None => self.filter(e),
        }
    }

    fn filter(&self, e: &Expr) {
        let l = self.expr_lin(e);
        self.filters
            .borrow_mut()
            .last_mut()
            .expect("accumulator")
            .add(&l);
    }

    fn projection(&self, items: &[SelectItem]) -> Vec<OutCol> {
        let mut outs = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => outs.push(OutCol {
                    name: figure_name(e),
                    lin: self.expr_lin(e),
                }),
                SelectItem::ExprWithAlias { expr, alias } => {
                    outs.push(OutCol {
                        name: names::fold_ident(alias),
                        lin: self.expr_lin(expr),
                    });
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let l = self.expr_lin(expr);
                    outs.extend(aliases.iter().map(|a| OutCol {
                        name: names::fold_ident(a),
                        lin: l.clone(),
                    }));
                }
                SelectItem::Wildcard(_) => {
                    let stack = self.stack.borrow();
                    if let Some(cols) = stack.last().and_then(|f| f.star.clone()) {
                        outs.extend(cols)
                    } else {
                        let sources = stack
                            .last()
                            .map(|f| f.sources.as_slice())
                            .unwrap_or_default();
                        let all = Lin::union(sources.iter().map(|s| &s.all));
                        // Unknown width: opaque, unless what is unknown is
                        // only relations that do not exist.
                        let opaque = all.opaque
                            || sources.iter().any(|s| s.cols.is_none() && !s.all.missing);
                        outs.push(OutCol {
                            name: "*".into(),
                            lin: Lin { opaque, ..all },
                        });
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        match self.find_source(name) {
                            Some(src) => match src.cols {
                                Some(cols) => outs.extend(cols),
                                None => outs.push(OutCol {
                                    name: "*".into(),
                                    lin: Lin {
                                        opaque: !src.all.missing || src.all.opaque,
                                        ..src.all
                                    },
                                }),
                            },
                            None => outs.push(OutCol {
                                name: "*".into(),
                                lin: Lin::opaque(),
                            }),
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        outs.push(OutCol {
                            name: "*".into(),
                            lin: Lin {
                                opaque: true,
                                ..self.expr_lin(e)
                            },
                        });
                    }
                },
            }
        }
        outs
    }

    fn add_from(&self, f: &mut Frame, from: &[TableWithJoins]) {
        for twj in from {
            let before = f.sources.len();
            self.add_factor(f, &twj.relation);
            let mut left: Option<Vec<OutCol>> = cols_of(&f.sources[before..]);
            for j in &twj.joins {
                let at = f.sources.len();
                self.add_factor(f, &j.relation);
                let right = cols_of(&f.sources[at..]);
                let constraint = match &j.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c)
                    | JoinOperator::CrossJoin(c)
                    | JoinOperator::Semi(c)
                    | JoinOperator::LeftSemi(c)
                    | JoinOperator::RightSemi(c)
                    | JoinOperator::Anti(c)
                    | JoinOperator::LeftAnti(c)
                    | JoinOperator::RightAnti(c)
                    | JoinOperator::StraightJoin(c) => Some(c),
                    _ => None,
                };
                // ON sees both sides.
                if let Some(JoinConstraint::On(e)) = constraint {
                    self.push(Frame {
                        sources: f.sources.clone(),
                        ..Frame::default()
                    });
                    self.filter(e);
                    self.pop();
                }
                let using: Option<Vec<String>> = match constraint {
                    Some(JoinConstraint::Using(cols)) => Some(
                        cols.iter()
                            .filter_map(|n| names::folded_parts(n).and_then(|mut p| p.pop()))
                            .collect(),
                    ),
                    Some(JoinConstraint::Natural) => match (&left, &right) {
                        (Some(l), Some(r)) => Some(
                            l.iter()
                                .filter(|c| r.iter().any(|d| d.name == c.name))
                                .map(|c| c.name.clone())
                                .collect(),
                        ),
                        _ => None,
                    },
                    _ => None,
                };
                left = match (left, right, using) {
                    (Some(l), Some(r), Some(using)) => {
                        // Joined columns are matched too: a filter.
                        let mut merged = Vec::new();
                        for u in &using {
                            let lin = Lin::union(
                                l.iter()
                                    .chain(r.iter())
                                    .filter(|c| &c.name == u)
                                    .map(|c| &c.lin),
                            );
                            self.filters
                                .borrow_mut()
                                .last_mut()
                                .expect("accumulator")
                                .add(&lin);
                            merged.push(OutCol {
                                name: u.clone(),
                                lin,
                            });
                        }
                        merged.extend(l.into_iter().filter(|c| !using.contains(&c.name)));
                        merged.extend(r.into_iter().filter(|c| !using.contains(&c.name)));
                        Some(merged)
                    }
                    (Some(mut l), Some(r), None) => {
                        if matches!(constraint, Some(JoinConstraint::Natural)) {
                            None
                        } else {
                            l.extend(r);
                            Some(l)
                        }
                    }
                    _ => None,
                };
            }
            f.star = match (f.star.take(), left, before) {
                (_, Some(l), 0) => Some(l),
                (Some(mut s), Some(l), _) => {
                    s.extend(l);
                    Some(s)
                }
                _ => None,
            };
        }
    }

    fn star_of(&self, f: &Frame) -> Option<Vec<OutCol>> {
        if f.sources.is_empty() {
            return Some(Vec::new());
        }
        f.star.clone()
    }

    fn add_factor(&self, f: &mut Frame, factor: &TableFactor) {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(args) = args {
                    // A set-returning function spelled as a table.
                    let l = self.all_refs(args);
                    self.table_function(f, &names::function(name), alias.as_ref(), l);
                    return;
                }
                let alias_name = alias.as_ref().map(|a| names::fold_ident(&a.name));
                self.add_relation(f, name, alias_name.as_deref(), alias.as_ref());
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
                ..
            } => {
                // A LATERAL subquery sees the FROM items before it.
                if *lateral {
                    self.push(Frame {
                        sources: f.sources.clone(),
                        ..Frame::default()
                    });
                }
                let mut outs = self.query(subquery);
                if *lateral {
                    self.pop();
                }
                let name = alias
                    .as_ref()
                    .map(|a| names::fold_ident(&a.name))
                    .unwrap_or_default();
                if let Some(a) = alias {
                    rename(&mut outs, a);
                }
                let all = Lin::union(outs.iter().map(|c| &c.lin));
                f.sources.push(Source {
                    alias: name,
                    schema: None,
                    cols: Some(outs),
                    all,
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut inner = Frame::default();
                self.add_from(&mut inner, std::slice::from_ref(table_with_joins));
                let star = self.star_of(&inner);
                if let Some(a) = alias {
                    let mut cols = star;
                    if let Some(c) = cols.as_mut() {
                        rename(c, a);
                    }
                    let all = Lin::union(inner.sources.iter().map(|s| &s.all));
                    f.sources.push(Source {
                        alias: names::fold_ident(&a.name),
                        schema: None,
                        cols,
                        all,
                    });
                } else {
                    // Star expansion of the nested join is its own.
                    let n = inner.sources.len();
                    f.sources.extend(inner.sources);
                    if n > 0 {
                        let last = f.sources.len() - 1;
                        f.sources[last].cols = f.sources[last].cols.take().filter(|_| n == 1);
                        if n > 1 {
                            // Keep name resolution per source; stars of
                            // a multi-source nested join are unknown.
                            f.star = None;
                        }
                    }
                }
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let mut l = Lin::default();
                for a in args {
                    l.add(&self.all_refs(a));
                }
                self.table_function(f, &names::function(name), alias.as_ref(), l);
            }
            TableFactor::UNNEST {
                array_exprs, alias, ..
            } => {
                let l = Lin::union(
                    array_exprs
                        .iter()
                        .map(|e| self.expr_lin(e))
                        .collect::<Vec<_>>()
                        .iter(),
                );
                self.table_function(f, "unnest", alias.as_ref(), l);
            }
            other => {
                let l = self.all_refs(other);
                f.sources.push(Source {
                    alias: String::new(),
                    schema: None,
                    cols: None,
                    all: Lin { opaque: true, ..l },
                });
            }
        }
    }

    /// A function in FROM: its columns derive from its arguments (when the
    /// function is built in).
    fn table_function(&self, f: &mut Frame, name: &str, alias: Option<&TableAlias>, mut l: Lin) {
        self.check_function(name, &mut l);
        let alias_name = alias.map_or_else(
            || name.rsplit('.').next().unwrap_or(name).to_owned(),
            |a| names::fold_ident(&a.name),
        );
        let cols = alias.filter(|a| !a.columns.is_empty()).map(|a| {
            a.columns
                .iter()
                .map(|c| OutCol {
                    name: names::fold_ident(&c.name),
                    lin: l.clone(),
                })
                .collect::<Vec<_>>()
        });
        // Without column aliases a scalar function's one column is named
        // after the alias.
        let cols = cols.or_else(|| {
            Some(vec![OutCol {
                name: alias_name.clone(),
                lin: l.clone(),
            }])
        });
        f.sources.push(Source {
            alias: alias_name,
            schema: None,
            cols: if l.opaque { None } else { cols },
            all: l,
        });
    }

    fn add_relation(
        &self,
        f: &mut Frame,
        name: &ObjectName,
        alias: Option<&str>,
        table_alias: Option<&TableAlias>,
    ) {
        // A single-part name may be a CTE.
        if let Some(single) = names::single(name) {
            let cte = self.stack.borrow().iter().rev().find_map(|fr| {
                fr.ctes
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == single)
                    .map(|(_, c)| Rc::clone(c))
            });
            if let Some(cols) = cte {
                let mut cols = cols.as_ref().clone();
                if let Some(a) = table_alias {
                    rename(&mut cols, a);
                }
                let all = Lin::union(cols.iter().map(|c| &c.lin));
                f.sources.push(Source {
                    alias: alias.unwrap_or(&single).to_owned(),
                    schema: None,
                    cols: Some(cols),
                    all,
                });
                return;
            }
        }
        let Some(rel) = names::relation(name) else {
            f.sources.push(Source {
                alias: alias.unwrap_or_default().to_owned(),
                schema: None,
                cols: None,
                all: Lin::opaque(),
            });
            return;
        };
        self.add_resolved(f, &rel, alias, table_alias);
    }

    fn add_resolved(
        &self,
        f: &mut Frame,
        rel: &Relation,
        alias: Option<&str>,
        table_alias: Option<&TableAlias>,
    ) {
        if VALUE_STATS.contains(&rel.name.as_str())
            && rel.schema.as_deref().is_none_or(|s| s == "pg_catalog")
        {
            self.refusals.borrow_mut().push(format!(
                "{} holds column values (most common values, histograms)",
                rel.name
            ));
        }
        let alias = alias.unwrap_or(&rel.name).to_owned();
        let qualified;
        let rel = if self.in_catalog_view.get() && rel.schema.is_none() {
            qualified = Relation {
                schema: Some("pg_catalog".into()),
                name: rel.name.clone(),
            };
            &qualified
        } else {
            rel
        };
        let info = match self.cat.relation(rel) {
            Some(Some(info)) => info,
            Some(None) => {
                // Neither the catalog nor the session knows it: the server
                // will say 42P01. Should it exist by the time the statement
                // runs, what it returns is masked whole.
                self.reach.borrow_mut().missing = true;
                f.sources.push(Source {
                    alias,
                    schema: rel.schema.clone(),
                    cols: None,
                    all: Lin::missing(),
                });
                return;
            }
            None => {
                // Not looked up: nothing known.
                self.reach.borrow_mut().opaque = true;
                f.sources.push(Source {
                    alias,
                    schema: rel.schema.clone(),
                    cols: None,
                    all: Lin::opaque(),
                });
                return;
            }
        };
        let derived = if info.view_def.is_some() {
            self.view_columns(info)
        } else {
            None
        };
        let mut cols: Vec<OutCol> = info
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut lin = Lin::default();
                if let Some(cat) = self.policy.category(&info.schema, &info.name, c) {
                    lin.sources
                        .insert((cat.to_owned(), format!("{}.{}.{c}", info.schema, info.name)));
                }
                if info.view_def.is_some() {
                    match derived.as_ref().and_then(|d| d.get(i)) {
                        Some(l) => lin.add(l),
                        None => lin.opaque = true,
                    }
                }
                if let Some(l) = info.carries.get(i) {
                    lin.add(l);
                }
                OutCol {
                    name: c.clone(),
                    lin,
                }
            })
            .collect();
        if let Some(a) = table_alias {
            rename(&mut cols, a);
        }
        let mut all = Lin::union(cols.iter().map(|c| &c.lin));
        self.reach.borrow_mut().add(&all);
        if info.oid >= OWN_OID_BASE {
            // Its columns are what the session's history says: a name that
            // is not among them (or the whole row) is not known.
            self.own.set(true);
            all.opaque = true;
        }
        f.sources.push(Source {
            alias,
            schema: Some(info.schema.clone()),
            cols: Some(cols),
            all,
        });
    }

    /// A view's columns' lineage, from its definition (memoised).
    fn view_columns(&self, info: &RelInfo) -> Option<Rc<Vec<Lin>>> {
        if let Some(hit) = self.views.borrow().get(&info.oid) {
            return hit.clone();
        }
        if self.view_depth.get() >= 16 {
            return None;
        }
        let def = info.view_def.as_deref()?;
        let stmt = sql::parse_one(def.trim().trim_end_matches(';'), &self.limits).ok()?;
        let Statement::Query(q) = stmt else {
            return None;
        };
        self.view_depth.set(self.view_depth.get() + 1);
        // A view's own filters are its owner's, not the caller's probing;
        // its scope starts afresh.
        let saved = std::mem::take(&mut *self.stack.borrow_mut());
        let saved_catalog = self.in_catalog_view.replace(info.oid < OWN_OID_BASE);
        self.filters.borrow_mut().push(Lin::default());
        let outs = self.query(&q);
        self.filters.borrow_mut().pop();
        self.in_catalog_view.set(saved_catalog);
        *self.stack.borrow_mut() = saved;
        self.view_depth.set(self.view_depth.get() - 1);
        let lins = Rc::new(outs.into_iter().map(|c| c.lin).collect::<Vec<_>>());
        self.views
            .borrow_mut()
            .insert(info.oid, Some(Rc::clone(&lins)));
        Some(lins)
    }

    fn find_source(&self, name: &ObjectName) -> Option<Source> {
        let parts = names::folded_parts(name)?;
        let (schema, alias) = match parts.as_slice() {
            [a] => (None, a.clone()),
            [s, a] => (Some(s.clone()), a.clone()),
            [_, s, a] => (Some(s.clone()), a.clone()),
            _ => return None,
        };
        let stack = self.stack.borrow();
        stack.iter().rev().find_map(|f| {
            f.sources
                .iter()
                .find(|s| s.alias == alias && (schema.is_none() || s.schema == schema))
                .cloned()
        })
    }

    /// An unqualified name as a column (innermost scope first); `None`
    /// when no source could have it.
    fn resolve_unqualified(&self, name: &str) -> Option<Lin> {
        let stack = self.stack.borrow();
        for f in stack.iter().rev() {
            let mut found = false;
            let mut l = Lin::default();
            for s in &f.sources {
                if let Some(cols) = &s.cols {
                    for c in cols.iter().filter(|c| c.name == name) {
                        l.add(&c.lin);
                        found = true;
                    }
                } else {
                    l.add(&s.all);
                    found = true;
                }
            }
            if found {
                return Some(l);
            }
        }
        None
    }

    fn resolve_ident(&self, i: &Ident) -> Lin {
        let n = names::fold_ident(i);
        if let Some(l) = self.resolve_unqualified(&n) {
            return l;
        }
        // A table alias as a value: the whole row.
        if let Some(src) = self.find_source(&ObjectName::from(vec![i.clone()])) {
            return Lin {
                derived: true,
                ..src.all
            };
        }
        if i.quote_style.is_none() && KEYWORD_VALUES.contains(&n.as_str()) {
            return Lin::default();
        }
        // Unknown: could be anything in scope.
        let stack = self.stack.borrow();
        stack
            .last()
            .map(|f| Lin::union(f.sources.iter().map(|s| &s.all)))
            .unwrap_or_default()
    }

    fn resolve_compound(&self, parts: &[Ident]) -> Lin {
        // [schema.]table.column, or table.column.field...
        for split in (1..parts.len()).rev() {
            let (rel, rest) = parts.split_at(split);
            if let Some(src) = self.find_source(&ObjectName::from(rel.to_vec())) {
                let col = names::fold_ident(&rest[0]);
                return match &src.cols {
                    Some(cols) => match cols.iter().find(|c| c.name == col) {
                        Some(c) => c.lin.clone(),
                        None => src.all.clone(),
                    },
                    None => src.all.clone(),
                };
            }
        }
        // column.field (composite access) or unknown.
        let first = self.resolve_ident(&parts[0]);
        if first.is_clean()
            && self
                .resolve_unqualified(&names::fold_ident(&parts[0]))
                .is_none()
        {
            let stack = self.stack.borrow();
            return stack
                .last()
                .map(|f| Lin::union(f.sources.iter().map(|s| &s.all)))
                .unwrap_or_default();
        }
        first
    }

    fn check_function(&self, name: &str, l: &mut Lin) {
        let bare = name.strip_prefix("pg_catalog.").unwrap_or(name);
        if SQL_FROM_TEXT.contains(&bare) {
            self.refusals.borrow_mut().push(format!(
                "{bare}() runs SQL given as text, out of the masking's sight"
            ));
        }
        if self.cat.user_function(name) {
            // Its body may read anything.
            l.opaque = true;
            self.reach.borrow_mut().opaque = true;
        }
    }

    /// What an expression derives from.
    pub fn expr_lin(&self, e: &Expr) -> Lin {
        self.all_refs(e)
    }

    /// Everything any node mentions, subqueries included (with their own
    /// scopes).
    fn all_refs<V: Visit + ?Sized>(&self, node: &V) -> Lin {
        let mut v = RefWalker {
            t: self,
            depth: 0,
            out: Lin::default(),
            derived: false,
        };
        let _ = node.visit(&mut v);
        if v.derived {
            v.out.derived = true;
        }
        v.out
    }

    /// A subquery used as a value: its outputs and its filters.
    fn subquery_lin(&self, q: &Query) -> Lin {
        self.filters.borrow_mut().push(Lin::default());
        let outs = self.query(q);
        let inner = self.filters.borrow_mut().pop().unwrap_or_default();
        self.filters
            .borrow_mut()
            .last_mut()
            .expect("accumulator")
            .add(&inner);
        let mut l = Lin::union(outs.iter().map(|c| &c.lin));
        l.add(&inner);
        l
    }
}

struct RefWalker<'t, 'a> {
    t: &'t Tracer<'a>,
    depth: usize,
    out: Lin,
    /// An expression other than a column reference was met.
    derived: bool,
}

impl Visitor for RefWalker<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            let l = self.t.subquery_lin(q);
            self.out.add(&l);
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        // Anything but a column reference computes a new value from it.
        if !matches!(
            e,
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Nested(_)
        ) {
            self.derived = true;
        }
        match e {
            Expr::Identifier(i) => {
                let l = self.t.resolve_ident(i);
                self.out.add(&l);
            }
            Expr::CompoundIdentifier(parts) => {
                let l = self.t.resolve_compound(parts);
                self.out.add(&l);
            }
            Expr::QualifiedWildcard(name, _) => match self.t.find_source(name) {
                Some(s) => self.out.add(&s.all),
                None => self.out.opaque = true,
            },
            Expr::Function(f) => {
                let name = names::function(&f.name);
                self.t.check_function(&name, &mut self.out);
                if SIDE_CHANNELS.contains(&name.strip_prefix("pg_catalog.").unwrap_or(&name)) {
                    let l = self.t.all_refs(&f.args);
                    self.t.side.borrow_mut().add(&l);
                }
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        let arg = match a {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        if let FunctionArgExpr::QualifiedWildcard(n) = arg {
                            match self.t.find_source(n) {
                                Some(s) => self.out.add(&s.all),
                                None => self.out.opaque = true,
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn cols_of(sources: &[Source]) -> Option<Vec<OutCol>> {
    let mut out = Vec::new();
    for s in sources {
        out.extend(s.cols.clone()?);
    }
    Some(out)
}

/// `AS alias(a, b, ...)` renames columns positionally.
fn rename(cols: &mut [OutCol], alias: &TableAlias) {
    for (c, a) in cols.iter_mut().zip(alias.columns.iter()) {
        c.name = names::fold_ident(&a.name);
    }
}

fn select_into(q: &Query) -> bool {
    matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some())
}

/// `PostgreSQL`'s `FigureColname`, roughly: a column reference or a function
/// names the column; anything else is `?column?`.
fn figure_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => names::fold_ident(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(names::fold_ident).unwrap_or_default(),
        Expr::Function(f) => names::function(&f.name)
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => figure_name(expr),
        _ => "?column?".into(),
    }
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> CopyFormat {
    for o in options {
        if let CopyOption::Format(f) = o {
            return match f.value.to_ascii_lowercase().as_str() {
                "csv" => CopyFormat::Csv,
                "binary" => CopyFormat::Binary,
                _ => CopyFormat::Text,
            };
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => return CopyFormat::Binary,
            CopyLegacyOption::Csv(_) => return CopyFormat::Csv,
            _ => {}
        }
    }
    CopyFormat::Text
}

/// A catalog held in memory (what the planner fetched for one statement).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Relations by the name the statement used.
    pub relations: HashMap<Relation, Option<RelInfo>>,
    /// Functions defined outside `pg_catalog`, as policy spells them.
    pub user_functions: HashSet<String>,
}

impl Catalog for Snapshot {
    fn relation(&self, rel: &Relation) -> Option<Option<&RelInfo>> {
        self.relations.get(rel).map(Option::as_ref)
    }

    fn user_function(&self, name: &str) -> bool {
        self.user_functions.contains(name)
    }
}

#[cfg(test)]
mod tests;
