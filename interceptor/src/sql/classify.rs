//! Statement-level facts from a sqlparser tree: the command, its classes, the
//! objects a DDL/utility statement names, COPY endpoints, SET values, and the
//! outer query's LIMIT. What is nested inside (relations in queries,
//! functions, data-modifying CTEs) is collected by `visit.rs`.

use std::collections::BTreeSet;

use sqlparser::ast::{
    AlterTableOperation, CommentObject, CopySource, CopyTarget, Expr, FetchDirection, GrantObjects,
    LimitClause, ObjectName, ObjectType, Query, RenameTableNameKind, Reset, SelectItem, Set,
    SetExpr, SetSessionAuthorizationParamKind, Statement, Value,
};

use super::names;
use super::visit::literal_text;
use super::{CopyEndpoint, CopyFacts, Relation, StatementClass};

use StatementClass::{Admin, Code, Ddl, Notify, Privilege, Read, Session, Transaction, Write};

/// Facts of one statement that its top-level shape decides.
#[derive(Debug, Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts, not states"
)]
pub(crate) struct Classified {
    pub command: String,
    pub classes: BTreeSet<StatementClass>,
    /// PostgreSQL parse-node kinds this statement may be; empty when sqlparser
    /// has no PostgreSQL counterpart for it (only the class check applies).
    pub pg_kinds: &'static [&'static str],
    /// The statement type was not recognised: classes come from PostgreSQL's
    /// kind plus `Admin`, never `Read` alone.
    pub unknown: bool,
    pub reads: Vec<Relation>,
    pub writes: Vec<Relation>,
    pub functions: Vec<String>,
    pub copy: Option<CopyFacts>,
    pub settings: Vec<(String, String)>,
    /// The statement sends rows to the client (a query, FETCH, COPY TO).
    pub returns_rows: bool,
    pub unbounded: bool,
    pub limit: Option<u64>,
    /// EXPLAIN without ANALYZE: nested writes are only planned.
    pub plan_only: bool,
    /// Prepared-statement name for PREPARE / EXECUTE / DEALLOCATE.
    pub prepared: Option<String>,
    /// EXPLAIN ANALYZE / PREPARE: the inner statement's PostgreSQL kinds,
    /// checked against the kind PostgreSQL nests.
    pub inner_pg_kinds: &'static [&'static str],
}

fn set(classes: &[StatementClass]) -> BTreeSet<StatementClass> {
    classes.iter().copied().collect()
}

fn rels<'a>(names: impl IntoIterator<Item = &'a ObjectName>) -> Vec<Relation> {
    names.into_iter().filter_map(names::relation).collect()
}

fn base(
    command: &str,
    classes: &[StatementClass],
    pg_kinds: &'static [&'static str],
) -> Classified {
    Classified {
        command: command.to_owned(),
        classes: set(classes),
        pg_kinds,
        ..Classified::default()
    }
}

/// Classifies one statement.
#[allow(clippy::match_same_arms)]
pub(crate) fn classify(stmt: &Statement) -> Classified {
    match stmt {
        // WITH ... INSERT/UPDATE/DELETE/MERGE: sqlparser wraps the statement in a query.
        Statement::Query(q)
            if matches!(
                &*q.body,
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
            ) =>
        {
            let (SetExpr::Insert(inner)
            | SetExpr::Update(inner)
            | SetExpr::Delete(inner)
            | SetExpr::Merge(inner)) = &*q.body
            else {
                unreachable!("matched above")
            };
            classify(inner)
        }
        Statement::Query(q) => {
            let mut c = base("SELECT", &[Read], &["SelectStmt"]);
            c.returns_rows = true;
            (c.unbounded, c.limit) = bounds(q);
            c
        }
        Statement::Insert(_) => base("INSERT", &[Write], &["InsertStmt"]),
        Statement::Update(_) => base("UPDATE", &[Write], &["UpdateStmt"]),
        Statement::Delete(_) => base("DELETE", &[Write], &["DeleteStmt"]),
        Statement::Merge(_) => base("MERGE", &[Write], &["MergeStmt"]),
        Statement::Copy {
            source, to, target, ..
        } => copy(source, *to, target),
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => {
            let analyze = *analyze
                || options.iter().flatten().any(|o| {
                    (o.name.value.eq_ignore_ascii_case("analyze")
                        || o.name.value.eq_ignore_ascii_case("analyse"))
                        && o.arg.as_ref().is_none_or(|a| {
                            let text = literal_text(a).unwrap_or_else(|| a.to_string());
                            !matches!(
                                text.to_ascii_lowercase().as_str(),
                                "false" | "off" | "0" | "no"
                            )
                        })
                });
            let inner = classify(statement);
            let mut c = base("EXPLAIN", &[Read], &["ExplainStmt"]);
            c.returns_rows = true;
            if analyze {
                c.classes = inner.classes;
                c.inner_pg_kinds = inner.pg_kinds;
            } else {
                c.plan_only = true;
            }
            c
        }
        Statement::Prepare {
            name, statement, ..
        } => {
            let inner = classify(statement);
            Classified {
                command: "PREPARE".into(),
                pg_kinds: &["PrepareStmt"],
                inner_pg_kinds: inner.pg_kinds,
                prepared: Some(names::fold_ident(name)),
                ..inner
            }
        }
        // PREPARE only takes SELECT, VALUES, INSERT, UPDATE, DELETE and MERGE,
        // so {Read, Write} covers whatever the prepared statement does.
        Statement::Execute { name, .. } => {
            let mut c = base("EXECUTE", &[Read, Write], &["ExecuteStmt"]);
            c.prepared = name.as_ref().map(names::function);
            c.returns_rows = true;
            c.unbounded = true;
            c
        }
        Statement::Deallocate { name, .. } => {
            let mut c = base("DEALLOCATE", &[Session], &["DeallocateStmt"]);
            let n = names::fold_ident(name);
            c.prepared = (name.quote_style.is_some() || n != "all").then_some(n);
            c
        }
        Statement::Set(s) => set_stmt(s),
        Statement::Reset(r) => {
            let (name, class) = match &r.reset {
                Reset::ALL => ("all".to_owned(), Session),
                Reset::SessionAuthorization => ("session_authorization".to_owned(), Privilege),
                Reset::ConfigurationParameter(n) => {
                    let name = setting_name(n);
                    let class = if is_role_setting(&name) {
                        Privilege
                    } else {
                        Session
                    };
                    (name, class)
                }
            };
            let mut c = base("RESET", &[class], &["VariableSetStmt"]);
            c.settings.push((name, "default".into()));
            c
        }
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowViews { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowObjects(_)
        | Statement::ShowProcessList { .. } => base("SHOW", &[Read], &["VariableShowStmt"]),
        Statement::StartTransaction { statements, .. } if statements.is_empty() => {
            base("BEGIN", &[Transaction], &["TransactionStmt"])
        }
        Statement::Commit { .. } => base("COMMIT", &[Transaction], &["TransactionStmt"]),
        Statement::Rollback { .. } => base("ROLLBACK", &[Transaction], &["TransactionStmt"]),
        Statement::Savepoint { .. } => base("SAVEPOINT", &[Transaction], &["TransactionStmt"]),
        Statement::ReleaseSavepoint { .. } => base("RELEASE", &[Transaction], &["TransactionStmt"]),
        Statement::Declare { stmts } if stmts.iter().all(|d| d.for_query.is_some()) => {
            base("DECLARE CURSOR", &[Read], &["DeclareCursorStmt"])
        }
        Statement::Fetch { direction, .. } => {
            let mut c = base("FETCH", &[Read], &["FetchStmt"]);
            c.returns_rows = true;
            match direction {
                FetchDirection::All | FetchDirection::ForwardAll | FetchDirection::BackwardAll => {
                    c.unbounded = true;
                }
                FetchDirection::Count { limit }
                | FetchDirection::Forward { limit: Some(limit) }
                | FetchDirection::Backward { limit: Some(limit) } => c.limit = number(&limit.value),
                _ => c.limit = Some(1),
            }
            c
        }
        Statement::Close { .. } => base("CLOSE", &[Session], &["ClosePortalStmt"]),
        Statement::Truncate(t) => {
            let mut c = base("TRUNCATE TABLE", &[Ddl], &["TruncateStmt"]);
            c.writes = rels(t.table_names.iter().map(|t| &t.name));
            c
        }
        Statement::Drop {
            object_type,
            names,
            table,
            ..
        } => drop_stmt(*object_type, names, table.as_ref()),
        Statement::DropFunction(_) => base("DROP FUNCTION", &[Ddl], &["DropStmt"]),
        Statement::DropProcedure { .. } => base("DROP PROCEDURE", &[Ddl], &["DropStmt"]),
        Statement::DropTrigger(_) => base("DROP TRIGGER", &[Ddl], &["DropStmt"]),
        Statement::DropPolicy(_) => base("DROP POLICY", &[Privilege, Ddl], &["DropStmt"]),
        Statement::DropExtension(_) => base("DROP EXTENSION", &[Ddl], &["DropStmt"]),
        Statement::DropDomain(_) => base("DROP DOMAIN", &[Ddl], &["DropStmt"]),
        Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_) => base("DROP OPERATOR", &[Ddl], &["DropStmt"]),
        Statement::CreateTable(ct) => {
            let mut c = if ct.query.is_some() {
                base("CREATE TABLE AS", &[Ddl, Write], &["CreateTableAsStmt"])
            } else {
                base("CREATE TABLE", &[Ddl], &["CreateStmt"])
            };
            c.writes = rels(
                std::iter::once(&ct.name)
                    .chain(&ct.partition_of)
                    .chain(ct.inherits.iter().flatten()),
            );
            c
        }
        Statement::CreateView(cv) => {
            let mut c = if cv.materialized {
                base(
                    "CREATE MATERIALIZED VIEW",
                    &[Ddl, Write],
                    &["CreateTableAsStmt"],
                )
            } else {
                base("CREATE VIEW", &[Ddl], &["ViewStmt"])
            };
            c.writes = rels([&cv.name]);
            c
        }
        Statement::CreateIndex(ci) => {
            let mut c = base("CREATE INDEX", &[Ddl], &["IndexStmt"]);
            c.writes = rels([&ci.table_name]);
            c
        }
        Statement::CreateSequence { name, .. } => {
            let mut c = base("CREATE SEQUENCE", &[Ddl], &["CreateSeqStmt"]);
            c.writes = rels([name]);
            c
        }
        Statement::AlterTable(at) => {
            let mut c = base("ALTER TABLE", &[Ddl], ALTER_KINDS);
            c.writes = rels([&at.name]);
            for op in &at.operations {
                if let AlterTableOperation::RenameTable {
                    table_name: RenameTableNameKind::As(new) | RenameTableNameKind::To(new),
                } = op
                {
                    // RENAME TO takes an unqualified name: same schema.
                    if let (Some(old), Some(new)) =
                        (names::relation(&at.name), names::relation(new))
                    {
                        c.writes.push(Relation {
                            schema: old.schema,
                            name: new.name,
                        });
                    }
                }
            }
            c
        }
        Statement::AlterIndex { name, .. } => {
            let mut c = base("ALTER INDEX", &[Ddl], ALTER_KINDS);
            c.writes = rels([name]);
            c
        }
        Statement::AlterView { name, .. } => {
            let mut c = base("ALTER VIEW", &[Ddl], ALTER_KINDS);
            c.writes = rels([name]);
            c
        }
        Statement::AlterFunction(_) => base("ALTER FUNCTION", &[Code, Ddl], &[]),
        Statement::AlterPolicy(_) => base("ALTER POLICY", &[Privilege, Ddl], &[]),
        Statement::AlterSchema(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_) => base(&leading_words(stmt, 2), &[Ddl], &[]),
        Statement::AlterRole { .. } | Statement::AlterUser(_) => base(
            "ALTER ROLE",
            &[Privilege],
            &["AlterRoleStmt", "AlterRoleSetStmt", "RenameStmt"],
        ),
        Statement::CreateRole(_) => base("CREATE ROLE", &[Privilege], &["CreateRoleStmt"]),
        Statement::CreateUser(_) => base("CREATE ROLE", &[Privilege], &["CreateRoleStmt"]),
        Statement::Grant(g) => {
            let mut c = base("GRANT", &[Privilege], &["GrantStmt", "GrantRoleStmt"]);
            c.writes = grant_objects(g.objects.as_ref());
            c
        }
        Statement::Revoke(r) => {
            let mut c = base("REVOKE", &[Privilege], &["GrantStmt", "GrantRoleStmt"]);
            c.writes = grant_objects(r.objects.as_ref());
            c
        }
        Statement::CreateDatabase { .. } => base("CREATE DATABASE", &[Admin], &["CreatedbStmt"]),
        Statement::CreateSchema { .. } => base("CREATE SCHEMA", &[Ddl], &["CreateSchemaStmt"]),
        Statement::CreateExtension(_) => {
            base("CREATE EXTENSION", &[Code, Ddl], &["CreateExtensionStmt"])
        }
        Statement::CreateFunction(_) => {
            base("CREATE FUNCTION", &[Code, Ddl], &["CreateFunctionStmt"])
        }
        Statement::CreateProcedure { .. } => {
            base("CREATE PROCEDURE", &[Code, Ddl], &["CreateFunctionStmt"])
        }
        Statement::CreateTrigger(t) => {
            let mut c = base("CREATE TRIGGER", &[Code, Ddl], &["CreateTrigStmt"]);
            c.writes = rels([&t.table_name]);
            if let Some(body) = &t.exec_body {
                c.functions.push(names::function(&body.func_desc.name));
            }
            c
        }
        Statement::CreatePolicy(_) => {
            base("CREATE POLICY", &[Privilege, Ddl], &["CreatePolicyStmt"])
        }
        Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateCollation(_)
        | Statement::CreateServer(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateTextSearch(_) => base(&leading_words(stmt, 2), &[Ddl], &[]),
        Statement::Call(_) => base("CALL", &[Code], &["CallStmt"]),
        Statement::Comment {
            object_type,
            object_name,
            ..
        } => {
            let mut c = base("COMMENT", &[Ddl], &["CommentStmt"]);
            if matches!(
                object_type,
                CommentObject::Table | CommentObject::View | CommentObject::MaterializedView
            ) {
                c.writes = rels([object_name]);
            }
            c
        }
        Statement::Analyze(a) => {
            let mut c = base("ANALYZE", &[Admin], &["VacuumStmt"]);
            c.writes = rels(&a.table_name);
            c
        }
        Statement::Vacuum(v) => {
            let mut c = base("VACUUM", &[Admin], &["VacuumStmt"]);
            c.writes = rels(&v.table_name);
            c
        }
        Statement::Lock(l) => {
            // By the lock it takes: ACCESS SHARE is what a SELECT takes
            // (pg_dump locks every table it dumps so), a read of the
            // tables; ROW SHARE / ROW EXCLUSIVE are what SELECT FOR UPDATE
            // and DML take, a write; the stronger modes (the default is
            // ACCESS EXCLUSIVE) block other sessions' writes or reads
            // until the transaction ends: admin.
            use sqlparser::ast::LockTableMode as M;
            let tables = rels(l.tables.iter().map(|t| &t.name));
            match l.lock_mode {
                Some(M::AccessShare) => {
                    let mut c = base("LOCK TABLE", &[Read], &["LockStmt"]);
                    c.reads = tables;
                    c
                }
                Some(M::RowShare | M::RowExclusive) => {
                    let mut c = base("LOCK TABLE", &[Write], &["LockStmt"]);
                    c.writes = tables;
                    c
                }
                _ => {
                    let mut c = base("LOCK TABLE", &[Admin], &["LockStmt"]);
                    c.writes = tables;
                    c
                }
            }
        }
        Statement::LISTEN { .. } => base("LISTEN", &[Notify], &["ListenStmt"]),
        Statement::UNLISTEN { .. } => base("UNLISTEN", &[Notify], &["UnlistenStmt"]),
        Statement::NOTIFY { .. } => base("NOTIFY", &[Notify], &["NotifyStmt"]),
        Statement::Discard { .. } => base("DISCARD", &[Admin], &["DiscardStmt"]),
        // LOAD runs a shared library's initialisation code.
        Statement::Load { .. } => base("LOAD", &[Admin, Code], &["LoadStmt"]),
        _ => Classified {
            command: leading_words(stmt, 1),
            classes: set(&[Admin]),
            unknown: true,
            ..Classified::default()
        },
    }
}

const ALTER_KINDS: &[&str] = &[
    "AlterTableStmt",
    "RenameStmt",
    "AlterObjectSchemaStmt",
    "AlterOwnerStmt",
    "AlterObjectDependsStmt",
];

fn copy(source: &CopySource, to: bool, target: &CopyTarget) -> Classified {
    let endpoint = match target {
        CopyTarget::Stdin | CopyTarget::Stdout => CopyEndpoint::Client,
        CopyTarget::File { filename } => CopyEndpoint::File(filename.clone()),
        CopyTarget::Program { command } => CopyEndpoint::Program(command.clone()),
    };
    let mut c = base("COPY", &[], &["CopyStmt"]);
    c.copy = Some(CopyFacts {
        from: !to,
        endpoint: endpoint.clone(),
    });
    if to {
        c.classes.insert(Read);
        // Rows go to the client only for TO STDOUT; a file or program gets them otherwise.
        c.returns_rows = endpoint == CopyEndpoint::Client;
        c.unbounded = true;
        if let CopySource::Table { table_name, .. } = source {
            c.reads = rels([table_name]);
        }
    } else {
        c.classes.insert(Write);
        if let CopySource::Table { table_name, .. } = source {
            c.writes = rels([table_name]);
        }
    }
    c
}

fn drop_stmt(
    object_type: ObjectType,
    names: &[ObjectName],
    table: Option<&ObjectName>,
) -> Classified {
    let mut c = match object_type {
        ObjectType::Database => base("DROP DATABASE", &[Admin], &["DropdbStmt"]),
        ObjectType::Role | ObjectType::User => base("DROP ROLE", &[Privilege], &["DropRoleStmt"]),
        other => base(&format!("DROP {other}"), &[Ddl], &["DropStmt"]),
    };
    if matches!(
        object_type,
        ObjectType::Table
            | ObjectType::View
            | ObjectType::MaterializedView
            | ObjectType::Index
            | ObjectType::Sequence
    ) {
        c.writes = rels(names);
    }
    // DROP TRIGGER/POLICY ... ON table
    c.writes.extend(rels(table));
    c
}

fn grant_objects(objects: Option<&GrantObjects>) -> Vec<Relation> {
    match objects {
        Some(
            GrantObjects::Tables(names)
            | GrantObjects::Sequences(names)
            | GrantObjects::Views(names),
        ) => rels(names),
        _ => Vec::new(),
    }
}

/// A settings name (`a.b` for custom settings), folded.
fn setting_name(name: &ObjectName) -> String {
    names::folded_parts(name).map_or_else(|| name.to_string().to_ascii_lowercase(), |p| p.join("."))
}

fn is_role_setting(name: &str) -> bool {
    name == "role" || name == "session_authorization"
}

/// A SET value as PostgreSQL receives it: strings unquoted, unquoted words
/// folded, lists joined with ", ".
fn setting_value(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Identifier(i) => names::fold_ident(i),
            other => literal_text(other).unwrap_or_else(|| other.to_string()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn set_stmt(s: &Set) -> Classified {
    match s {
        Set::SetRole { role_name, .. } => {
            let mut c = base("SET ROLE", &[Privilege], &["VariableSetStmt"]);
            let role = role_name
                .as_ref()
                .map_or_else(|| "none".to_owned(), names::fold_ident);
            c.settings.push(("role".into(), role));
            c
        }
        Set::SetSessionAuthorization(p) => {
            let mut c = base(
                "SET SESSION AUTHORIZATION",
                &[Privilege],
                &["VariableSetStmt"],
            );
            let user = match &p.kind {
                SetSessionAuthorizationParamKind::Default => "default".to_owned(),
                SetSessionAuthorizationParamKind::User(u) => names::fold_ident(u),
            };
            c.settings.push(("session_authorization".into(), user));
            c
        }
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = setting_name(variable);
            let value = setting_value(values);
            let mut c = if is_role_setting(&name) {
                base("SET ROLE", &[Privilege], &["VariableSetStmt"])
            } else {
                base("SET", &[Session], &["VariableSetStmt"])
            };
            c.settings.push((name, value));
            c
        }
        Set::MultipleAssignments { assignments } => {
            let mut c = base("SET", &[Session], &["VariableSetStmt"]);
            for a in assignments {
                let name = setting_name(&a.name);
                if is_role_setting(&name) {
                    c.classes.insert(Privilege);
                }
                c.settings
                    .push((name, setting_value(std::slice::from_ref(&a.value))));
            }
            c
        }
        Set::SetTimeZone { value, .. } => {
            let mut c = base("SET", &[Session], &["VariableSetStmt"]);
            c.settings.push((
                "timezone".into(),
                setting_value(std::slice::from_ref(value)),
            ));
            c
        }
        Set::SetNames { charset_name, .. } => {
            let mut c = base("SET", &[Session], &["VariableSetStmt"]);
            c.settings
                .push(("client_encoding".into(), charset_name.value.clone()));
            c
        }
        Set::SetNamesDefault {} => {
            let mut c = base("SET", &[Session], &["VariableSetStmt"]);
            c.settings
                .push(("client_encoding".into(), "default".into()));
            c
        }
        Set::SetTransaction { modes, session, .. } => {
            let text = modes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if *session {
                let mut c = base("SET", &[Session], &["VariableSetStmt"]);
                c.settings.push(("session_characteristics".into(), text));
                c
            } else {
                let mut c = base("SET TRANSACTION", &[Transaction], &["VariableSetStmt"]);
                c.settings.push(("transaction".into(), text));
                c
            }
        }
        _ => Classified {
            command: "SET".into(),
            classes: set(&[Admin]),
            unknown: true,
            ..Classified::default()
        },
    }
}

/// The first `n` words of the statement's SQL, as a command name for
/// statements without a fixed one.
fn leading_words(stmt: &Statement, n: usize) -> String {
    stmt.to_string()
        .split_whitespace()
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n, _) => n.parse().ok(),
        _ => None,
    }
}

/// Whether the outer query can return an unbounded number of rows, and its
/// literal LIMIT. A LIMIT or FETCH FIRST bounds it (a parameter too, though
/// its value is unknown); so does a query that returns one row by its shape:
/// no FROM and no function calls, or only aggregates without GROUP BY.
fn bounds(q: &Query) -> (bool, Option<u64>) {
    let mut limit = None;
    let mut limited = false;
    if let Some(
        LimitClause::LimitOffset { limit: Some(l), .. }
        | LimitClause::OffsetCommaLimit { limit: l, .. },
    ) = &q.limit_clause
    {
        // LIMIT ALL / LIMIT NULL mean no limit.
        let all = matches!(l, Expr::Value(v) if matches!(v.value, Value::Null))
            || matches!(l, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("all"));
        if !all {
            limited = true;
            if let Expr::Value(v) = l {
                limit = number(&v.value);
            }
        }
    }
    if let Some(fetch) = &q.fetch {
        limited = true;
        let n = match &fetch.quantity {
            None => Some(1),
            Some(Expr::Value(v)) if !fetch.percent => number(&v.value),
            Some(_) => None,
        };
        limit = match (limit, n) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if limited {
        return (false, limit);
    }
    (!one_row(&q.body), None)
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "xmlagg",
];

fn one_row(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => {
            let items = s.projection.iter().map(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
                _ => None,
            });
            let grouped = !matches!(&s.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
            if s.from.is_empty() {
                // SELECT 1, SELECT now(): one row, unless a set-returning function is called.
                items.into_iter().all(|e| {
                    e.is_some_and(|e| literal_text(e).is_some() || matches!(e, Expr::Value(_)))
                })
            } else {
                !grouped
                    && items.into_iter().all(|e| {
                        e.is_some_and(|e| match e {
                            Expr::Function(f) => {
                                AGGREGATES.contains(&names::function(&f.name).as_str())
                            }
                            other => literal_text(other).is_some(),
                        })
                    })
            }
        }
        SetExpr::Query(q) => matches!(bounds(q), (false, _)),
        SetExpr::SetOperation { left, right, .. } => one_row(left) && one_row(right),
        SetExpr::Values(_) => true,
        _ => false,
    }
}

impl super::StatementFacts {
    /// The prepared statement a PREPARE, EXECUTE or DEALLOCATE names
    /// (folded like an identifier; `None` for DEALLOCATE ALL and for other
    /// commands). PREPARE's facts are those of the statement it prepares, so
    /// a session can keep them by this name for its EXECUTEs; EXECUTE itself
    /// is `{Read, Write}` and unbounded, the most a prepared statement can be.
    pub fn prepared_name(&self) -> Option<String> {
        if !matches!(self.command.as_str(), "PREPARE" | "EXECUTE" | "DEALLOCATE") {
            return None;
        }
        let stmt = super::analyze::parse_one(&self.text, &super::Limits::default()).ok()?;
        classify(&stmt).prepared
    }
}
