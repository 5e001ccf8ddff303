//! PostgreSQL's own view of the text, through `pg_query` (libpg_query: the
//! server's scanner and grammar compiled as a library).
//!
//! PostgreSQL decides where statements begin and end ([`split`]); for each
//! statement its summary gives the parse-node kind, the kinds of statements
//! nested in it, the relations it names and the functions it calls. The
//! analyser takes statement boundaries from here and checks sqlparser's
//! facts against the rest.
//!
//! libpg_query guards its own recursion: it sizes PostgreSQL's
//! `max_stack_depth` to the calling thread's remaining stack (at most 2 MB)
//! and fails with "stack depth limit exceeded" instead of overflowing, so the
//! caller needs a thread with some headroom (a tokio worker's 2 MiB is enough).

use std::collections::BTreeSet;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pg_query::protobuf::summary_result::Context;

use super::names;
use super::{CopyEndpoint, CopyFacts, Relation, SqlError, StatementClass};

/// How a statement uses a relation, as PostgreSQL's summary sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Named in a FROM list, a COPY, or anything not a target.
    Read,
    /// A DML target or a DDL object.
    Write,
}

/// One statement as PostgreSQL parses it.
#[derive(Debug)]
pub(crate) struct PgStatement {
    /// Byte range of the statement in the analysed text (no `;`).
    pub range: Range<usize>,
    /// Parse-node kind of the statement, e.g. `SelectStmt`.
    pub kind: String,
    /// Kinds of the statements nested in it (CTEs, EXPLAIN, PREPARE ...),
    /// in walk order, without duplicates and without `kind` itself.
    pub nested: Vec<String>,
    /// Relations named, with how they are used (CTE references excluded).
    pub tables: Vec<(Relation, Use)>,
    /// Functions called, named as in [`names::function_from_parts`].
    pub functions: BTreeSet<String>,
}

/// Where PostgreSQL's grammar puts statement boundaries.
pub(crate) fn split(sql: &str, max_depth: usize) -> Result<Vec<Range<usize>>, SqlError> {
    let pieces = guarded(|| pg_query::split_with_parser(sql), max_depth)?;
    let base = sql.as_ptr() as usize;
    Ok(pieces
        .into_iter()
        .map(|piece| {
            let start = piece.as_ptr() as usize - base;
            start..start + piece.len()
        })
        .collect())
}

/// PostgreSQL's summary of one statement (the text PostgreSQL split off).
pub(crate) fn summarize(
    sql: &str,
    range: Range<usize>,
    max_depth: usize,
) -> Result<PgStatement, SqlError> {
    let text = &sql[range.clone()];
    let summary = guarded(|| pg_query::summary(text, 0, -1), max_depth)?.protobuf;
    let mut kinds = summary.statement_types.into_iter();
    let kind = kinds
        .next()
        .ok_or_else(|| SqlError::PgParse("no statement in a split piece".into()))?;
    let nested = kinds.filter(|k| *k != kind).collect();
    let tables = summary
        .tables
        .into_iter()
        .map(|t| {
            let used = match Context::try_from(t.context) {
                Ok(Context::Dml | Context::Ddl) => Use::Write,
                _ => Use::Read,
            };
            let schema = (!t.schema_name.is_empty()).then_some(t.schema_name);
            (
                Relation {
                    schema,
                    name: t.table_name,
                },
                used,
            )
        })
        .collect();
    let functions = summary
        .functions
        .into_iter()
        .filter(|f| Context::try_from(f.context) == Ok(Context::Call))
        .map(|f| {
            let mut parts = Vec::with_capacity(2);
            if !f.schema_name.is_empty() {
                parts.push(f.schema_name);
            }
            parts.push(f.function_name);
            names::function_from_parts(&parts)
        })
        .collect();
    Ok(PgStatement {
        range,
        kind,
        nested,
        tables,
        functions,
    })
}

/// What PostgreSQL's full parse tree of one statement names: every relation
/// (`RangeVar`), every function call (`FuncCall`), and the COPY details. Used
/// for statements only PostgreSQL's grammar parses (sqlparser gave no tree).
#[derive(Debug, Default)]
pub(crate) struct TreeFacts {
    pub relations: BTreeSet<Relation>,
    pub functions: BTreeSet<String>,
    pub copy: Option<CopyFacts>,
    /// COPY's own table (not those of a COPY (query)).
    pub copy_relation: Option<Relation>,
    /// SET / RESET: command, class, and the (name, value) setting.
    pub setting: Option<(&'static str, StatementClass, (String, String))>,
}

/// Parses one statement into PostgreSQL's full tree and collects
/// [`TreeFacts`]. The tree is decoded with prost's nesting limit (100
/// messages), so a deeper tree is [`SqlError::TooDeep`]; the JSON walk below
/// is iterative.
pub(crate) fn tree_facts(text: &str, max_depth: usize) -> Result<TreeFacts, SqlError> {
    let parsed = guarded(|| pg_query::parse(text, 0), max_depth)?;
    let mut out = TreeFacts::default();
    for raw in &parsed.protobuf.stmts {
        if let Some(pg_query::NodeEnum::CopyStmt(c)) =
            raw.stmt.as_ref().and_then(|n| n.node.as_ref())
        {
            let endpoint = if c.filename.is_empty() {
                CopyEndpoint::Client
            } else if c.is_program {
                CopyEndpoint::Program(c.filename.clone())
            } else {
                CopyEndpoint::File(c.filename.clone())
            };
            out.copy = Some(CopyFacts {
                from: c.is_from,
                endpoint,
            });
            out.copy_relation = c.relation.as_ref().map(range_var);
        }
        if let Some(pg_query::NodeEnum::VariableSetStmt(v)) =
            raw.stmt.as_ref().and_then(|n| n.node.as_ref())
        {
            out.setting = Some(variable_set(v));
        }
    }
    let json = serde_json::to_value(&parsed.protobuf)
        .map_err(|e| SqlError::PgParse(format!("cannot walk PostgreSQL's tree: {e}")))?;
    let mut stack = vec![&json];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                // RangeVar and FuncCall appear both wrapped in a Node
                // ({"RangeVar": {...}}) and as typed fields; know them by shape.
                let field = |k: &str| {
                    map.get(k)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                if map.contains_key("relname") && map.contains_key("relpersistence") {
                    let schema = field("schemaname");
                    out.relations.insert(Relation {
                        schema: (!schema.is_empty()).then_some(schema),
                        name: field("relname"),
                    });
                }
                if let (Some(serde_json::Value::Array(parts)), true) =
                    (map.get("funcname"), map.contains_key("funcformat"))
                {
                    let parts: Vec<String> = parts
                        .iter()
                        .filter_map(|p| {
                            p.pointer("/node/String/sval")
                                .and_then(serde_json::Value::as_str)
                        })
                        .map(str::to_owned)
                        .collect();
                    let name = names::function_from_parts(&parts);
                    // `set_config('name', ...)` with a literal name is the
                    // `SET` of that setting (the visitor records it so); only
                    // a computed name keeps the function on the dangerous list.
                    let literal_setting = map
                        .get("args")
                        .and_then(|a| a.pointer("/0/node/AConst/val/Sval/sval"))
                        .is_some_and(serde_json::Value::is_string);
                    if !(name == "set_config" && literal_setting) {
                        out.functions.insert(name);
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    Ok(out)
}

/// Whether PostgreSQL would run the statement an EXPLAIN explains: its
/// ANALYZE option, unless given an explicit false value (`defGetBoolean`).
pub(crate) fn explain_analyzes(text: &str, max_depth: usize) -> Result<bool, SqlError> {
    use pg_query::protobuf::a_const::Val;
    let parsed = guarded(|| pg_query::parse(text, 0), max_depth)?;
    let Some(pg_query::NodeEnum::ExplainStmt(e)) = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|r| r.stmt.as_ref())
        .and_then(|n| n.node.as_ref())
    else {
        return Ok(false);
    };
    Ok(e.options.iter().any(|o| {
        let Some(pg_query::NodeEnum::DefElem(d)) = &o.node else {
            return false;
        };
        if d.defname != "analyze" {
            return false;
        }
        // Anything but an explicit false value means ANALYZE.
        let off = match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
            Some(pg_query::NodeEnum::Integer(i)) => i.ival == 0,
            Some(pg_query::NodeEnum::Boolean(b)) => !b.boolval,
            Some(pg_query::NodeEnum::String(s)) => {
                matches!(
                    s.sval.to_ascii_lowercase().as_str(),
                    "false" | "off" | "no" | "0"
                )
            }
            Some(pg_query::NodeEnum::AConst(c)) => match &c.val {
                Some(Val::Ival(i)) => i.ival == 0,
                Some(Val::Boolval(b)) => !b.boolval,
                Some(Val::Sval(s)) => matches!(
                    s.sval.to_ascii_lowercase().as_str(),
                    "false" | "off" | "no" | "0"
                ),
                _ => false,
            },
            None | Some(_) => false,
        };
        !off
    }))
}

/// SET / RESET as PostgreSQL parsed it (`VariableSetStmt`).
fn variable_set(
    v: &pg_query::protobuf::VariableSetStmt,
) -> (&'static str, StatementClass, (String, String)) {
    use pg_query::protobuf::VariableSetKind;
    use pg_query::protobuf::a_const::Val;
    let kind = VariableSetKind::try_from(v.kind).unwrap_or(VariableSetKind::Undefined);
    let name = v.name.to_ascii_lowercase();
    let value = match kind {
        VariableSetKind::VarSetDefault
        | VariableSetKind::VarReset
        | VariableSetKind::VarResetAll => "default".to_owned(),
        VariableSetKind::VarSetCurrent => "current".to_owned(),
        _ => v
            .args
            .iter()
            .map(|a| match &a.node {
                Some(pg_query::NodeEnum::AConst(c)) => match &c.val {
                    Some(Val::Sval(s)) => s.sval.clone(),
                    Some(Val::Ival(i)) => i.ival.to_string(),
                    Some(Val::Fval(f)) => f.fval.clone(),
                    Some(Val::Boolval(b)) => b.boolval.to_string(),
                    Some(Val::Bsval(b)) => b.bsval.clone(),
                    None => "null".to_owned(),
                },
                _ => "?".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let reset = matches!(
        kind,
        VariableSetKind::VarReset | VariableSetKind::VarResetAll
    );
    let name = if kind == VariableSetKind::VarResetAll {
        "all".to_owned()
    } else {
        name
    };
    let (command, class) = match name.as_str() {
        "role" | "session_authorization" if reset => ("RESET", StatementClass::Privilege),
        "role" => ("SET ROLE", StatementClass::Privilege),
        "session_authorization" => ("SET SESSION AUTHORIZATION", StatementClass::Privilege),
        "transaction" | "transaction snapshot" => ("SET TRANSACTION", StatementClass::Transaction),
        _ if reset => ("RESET", StatementClass::Session),
        _ => ("SET", StatementClass::Session),
    };
    (command, class, (name, value))
}

fn range_var(rv: &pg_query::protobuf::RangeVar) -> Relation {
    let schema = (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone());
    Relation {
        schema,
        name: rv.relname.clone(),
    }
}

/// Runs a pg_query call, turning its errors (and, defensively, a panic in its
/// Rust wrapper) into [`SqlError`].
fn guarded<T>(f: impl FnOnce() -> pg_query::Result<T>, max_depth: usize) -> Result<T, SqlError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(pg_error(&e, max_depth)),
        Err(_) => Err(SqlError::PgParse("internal error in pg_query".into())),
    }
}

fn pg_error(e: &pg_query::Error, max_depth: usize) -> SqlError {
    let msg = match e {
        pg_query::Error::Parse(m) | pg_query::Error::Split(m) | pg_query::Error::Scan(m) => {
            m.clone()
        }
        pg_query::Error::Conversion(_) => "the text contains a NUL byte".to_owned(),
        other => other.to_string(),
    };
    // "stack depth limit exceeded": PostgreSQL's check_stack_depth();
    // "memory exhausted": bison's parser stack (YYMAXDEPTH) on deep nesting.
    if msg.contains("stack depth limit exceeded") || msg.starts_with("memory exhausted") {
        SqlError::TooDeep(max_depth)
    } else {
        SqlError::PgParse(msg)
    }
}

/// The classes a statement of this parse-node kind has when its kind alone
/// decides them; `None` for kinds whose classes depend on the statement's
/// content (queries, DML, COPY, EXPLAIN, PREPARE, SET ...), which need
/// sqlparser's tree.
pub(crate) fn kind_classes(kind: &str) -> Option<&'static [StatementClass]> {
    use StatementClass::{Admin, Code, Ddl, Privilege, Session, Transaction};
    Some(match kind {
        "DoStmt" | "CallStmt" => &[Code],
        "CreateFunctionStmt"
        | "AlterFunctionStmt"
        | "CreateTrigStmt"
        | "CreateEventTrigStmt"
        | "AlterEventTrigStmt"
        | "RuleStmt"
        | "CreatePLangStmt"
        | "CreateTransformStmt"
        | "CreateExtensionStmt"
        | "AlterExtensionStmt"
        | "AlterExtensionContentsStmt" => &[Code, Ddl],
        "GrantStmt"
        | "GrantRoleStmt"
        | "CreateRoleStmt"
        | "AlterRoleStmt"
        | "AlterRoleSetStmt"
        | "DropRoleStmt"
        | "AlterDefaultPrivilegesStmt"
        | "ReassignOwnedStmt" => &[Privilege],
        "DropOwnedStmt"
        | "CreateUserMappingStmt"
        | "AlterUserMappingStmt"
        | "DropUserMappingStmt"
        | "CreatePolicyStmt"
        | "AlterPolicyStmt" => &[Privilege, Ddl],
        "VacuumStmt"
        | "ClusterStmt"
        | "ReindexStmt"
        | "CheckPointStmt"
        | "LoadStmt"
        | "LockStmt"
        | "DiscardStmt"
        | "CreatedbStmt"
        | "DropdbStmt"
        | "AlterDatabaseStmt"
        | "AlterDatabaseSetStmt"
        | "AlterDatabaseRefreshCollStmt"
        | "AlterSystemStmt"
        | "CreateTableSpaceStmt"
        | "DropTableSpaceStmt"
        | "AlterTableSpaceOptionsStmt"
        | "AlterTableMoveAllStmt"
        | "CreateSubscriptionStmt"
        | "AlterSubscriptionStmt"
        | "DropSubscriptionStmt"
        | "WaitStmt" => &[Admin],
        "ListenStmt" | "UnlistenStmt" | "NotifyStmt" => &[StatementClass::Notify],
        "TransactionStmt" | "ConstraintsSetStmt" => &[Transaction],
        "DeallocateStmt" | "ClosePortalStmt" => &[Session],
        "FetchStmt" => &[StatementClass::Read],
        "RefreshMatViewStmt" => &[Ddl, StatementClass::Write],
        "CreateStmt"
        | "AlterTableStmt"
        | "DropStmt"
        | "TruncateStmt"
        | "IndexStmt"
        | "CreateSeqStmt"
        | "AlterSeqStmt"
        | "CreateSchemaStmt"
        | "CommentStmt"
        | "SecLabelStmt"
        | "RenameStmt"
        | "AlterObjectSchemaStmt"
        | "AlterObjectDependsStmt"
        | "AlterOwnerStmt"
        | "AlterOperatorStmt"
        | "AlterTypeStmt"
        | "CompositeTypeStmt"
        | "CreateEnumStmt"
        | "CreateRangeStmt"
        | "AlterEnumStmt"
        | "CreateDomainStmt"
        | "AlterDomainStmt"
        | "DefineStmt"
        | "CreateCastStmt"
        | "CreateConversionStmt"
        | "CreateOpClassStmt"
        | "CreateOpFamilyStmt"
        | "AlterOpFamilyStmt"
        | "CreateFdwStmt"
        | "AlterFdwStmt"
        | "CreateForeignServerStmt"
        | "AlterForeignServerStmt"
        | "CreateForeignTableStmt"
        | "ImportForeignSchemaStmt"
        | "CreateStatsStmt"
        | "AlterStatsStmt"
        | "CreatePublicationStmt"
        | "AlterPublicationStmt"
        | "CreateAmStmt"
        | "AlterCollationStmt"
        | "AlterTSDictionaryStmt"
        | "AlterTSConfigurationStmt"
        | "DropTableSpace" => &[Ddl],
        _ => return None,
    })
}

/// Classes sqlparser's facts must share at least one of, for a statement
/// PostgreSQL parses as `kind`; `None` when the kind says nothing checkable
/// (EXPLAIN and PREPARE are checked against their inner statement instead).
pub(crate) fn acceptable_classes(kind: &str) -> Option<BTreeSet<StatementClass>> {
    use StatementClass::{Admin, Code, Ddl, Privilege, Read, Session, Transaction, Write};
    let set: &[StatementClass] = match kind {
        "SelectStmt" => &[Read, Write, Ddl],
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => &[Write],
        "CopyStmt" | "ExecuteStmt" => &[Read, Write],
        "LockStmt" => &[Read, Write],
        "CreateTableAsStmt" | "ViewStmt" => &[Ddl],
        "DeclareCursorStmt" | "VariableShowStmt" => &[Read],
        "VariableSetStmt" => &[Session, Privilege, Transaction],
        "PrepareStmt" | "ExplainStmt" => return None,
        // ALTER ROLE ... RENAME / OWNER TO: sqlparser calls them privilege statements.
        "RenameStmt" | "AlterOwnerStmt" => &[Ddl, Privilege],
        other => return kind_classes(other).map(|c| c.iter().copied().collect()),
    };
    // Anything sqlparser could not place is marked Admin/Code: accept those
    // too, they are never more permissive than the real class.
    let mut out: BTreeSet<_> = set.iter().copied().collect();
    out.insert(Admin);
    out.insert(Code);
    Some(out)
}

/// A command name for a statement only PostgreSQL's grammar parses.
pub(crate) fn command_for_kind(kind: &str, text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(str::to_ascii_uppercase)
        .collect();
    let first = words.first().cloned().unwrap_or_default();
    let fixed = match kind {
        "DoStmt" => "DO",
        "CheckPointStmt" => "CHECKPOINT",
        "ClusterStmt" => "CLUSTER",
        "ReindexStmt" => "REINDEX",
        "AlterSystemStmt" => "ALTER SYSTEM",
        "RefreshMatViewStmt" => "REFRESH MATERIALIZED VIEW",
        "ConstraintsSetStmt" => "SET CONSTRAINTS",
        "GrantRoleStmt" => return first,
        "AlterDefaultPrivilegesStmt" => "ALTER DEFAULT PRIVILEGES",
        "ReassignOwnedStmt" => "REASSIGN OWNED",
        "DropOwnedStmt" => "DROP OWNED",
        "SecLabelStmt" => "SECURITY LABEL",
        "RuleStmt" => "CREATE RULE",
        "CreateEventTrigStmt" => "CREATE EVENT TRIGGER",
        "CreatePLangStmt" => "CREATE LANGUAGE",
        "ImportForeignSchemaStmt" => "IMPORT FOREIGN SCHEMA",
        "CreateUserMappingStmt" => "CREATE USER MAPPING",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    // CREATE/ALTER/DROP [OR REPLACE] <object>, PREPARE TRANSACTION, ...
    let skip = [
        "OR",
        "REPLACE",
        "TEMP",
        "TEMPORARY",
        "UNLOGGED",
        "UNIQUE",
        "TRUSTED",
        "PROCEDURAL",
    ];
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" | "COMMIT" | "ROLLBACK" | "PREPARE" => {
            match words.iter().skip(1).find(|w| !skip.contains(&w.as_str())) {
                Some(object) => format!("{first} {object}"),
                None => first,
            }
        }
        _ => first,
    }
}

/// A `COPY ... TO STDOUT` as PostgreSQL's grammar reads it: the statement
/// with its options taken out (deparsed by PostgreSQL's own deparser, so
/// sqlparser can trace what it sends whatever option syntax was used) and
/// the options as the server will see them (`DefElem` name and value; the
/// old `WITH CSV HEADER DELIMITER AS ...` syntax arrives in the same form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyToClient {
    /// The statement without options: `COPY t (a, b) TO STDOUT`.
    pub bare: String,
    /// (option name, value): `None` for a bare option (`HEADER`), `*` for
    /// `FORCE_QUOTE *`, a list as its items joined by `,`.
    pub options: Vec<(String, Option<String>)>,
}

/// [`CopyToClient`] of `text` when it is one `COPY ... TO STDOUT`.
pub fn copy_to_client(text: &str, max_depth: usize) -> Result<Option<CopyToClient>, SqlError> {
    use pg_query::NodeEnum;
    let mut parsed = guarded(|| pg_query::parse(text, 0), max_depth)?;
    let [raw] = parsed.protobuf.stmts.as_mut_slice() else {
        return Ok(None);
    };
    let Some(NodeEnum::CopyStmt(c)) = raw.stmt.as_mut().and_then(|n| n.node.as_mut()) else {
        return Ok(None);
    };
    if c.is_from || !c.filename.is_empty() {
        return Ok(None);
    }
    let value = |n: &pg_query::protobuf::Node| -> Option<String> {
        match n.node.as_ref()? {
            NodeEnum::String(s) => Some(s.sval.clone()),
            NodeEnum::Boolean(b) => Some(b.boolval.to_string()),
            NodeEnum::Integer(i) => Some(i.ival.to_string()),
            NodeEnum::Float(f) => Some(f.fval.clone()),
            NodeEnum::AStar(_) => Some("*".into()),
            NodeEnum::List(l) => Some(
                l.items
                    .iter()
                    .filter_map(|i| match i.node.as_ref() {
                        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => Some(String::new()),
        }
    };
    let options = c
        .options
        .iter()
        .filter_map(|o| match o.node.as_ref() {
            Some(NodeEnum::DefElem(d)) => Some((
                d.defname.to_ascii_lowercase(),
                d.arg.as_deref().and_then(value),
            )),
            _ => None,
        })
        .collect();
    c.options.clear();
    let bare = guarded(
        || pg_query::deparse(&parsed.protobuf, Default::default()),
        max_depth,
    )?;
    Ok(Some(CopyToClient { bare, options }))
}

/// Parse-node kinds that name databases other than the one connected to.
const DATABASE_KINDS: &[&str] = &[
    "CreatedbStmt",
    "DropdbStmt",
    "AlterDatabaseStmt",
    "AlterDatabaseSetStmt",
    "AlterDatabaseRefreshCollStmt",
    "RenameStmt",
    "AlterOwnerStmt",
];

/// The databases a statement creates, drops, alters, renames (old and new
/// name) or copies (`CREATE DATABASE ... TEMPLATE`), as PostgreSQL reads
/// the names. Empty for statements of other kinds.
pub(crate) fn named_databases(
    text: &str,
    kind: &str,
    max_depth: usize,
) -> Result<BTreeSet<String>, SqlError> {
    use pg_query::{NodeEnum, protobuf::ObjectType};
    let mut out = BTreeSet::new();
    if !DATABASE_KINDS.contains(&kind) {
        return Ok(out);
    }
    let parsed = guarded(|| pg_query::parse(text, 0), max_depth)?;
    let string = |n: &pg_query::protobuf::Node| match n.node.as_ref() {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    };
    for raw in &parsed.protobuf.stmts {
        match raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
            Some(NodeEnum::CreatedbStmt(c)) => {
                out.insert(c.dbname.clone());
                for o in &c.options {
                    if let Some(NodeEnum::DefElem(d)) = o.node.as_ref()
                        && d.defname == "template"
                        && let Some(t) = d.arg.as_deref().and_then(string)
                    {
                        out.insert(t);
                    }
                }
            }
            Some(NodeEnum::DropdbStmt(d)) => {
                out.insert(d.dbname.clone());
            }
            Some(NodeEnum::AlterDatabaseStmt(a)) => {
                out.insert(a.dbname.clone());
            }
            Some(NodeEnum::AlterDatabaseSetStmt(a)) => {
                out.insert(a.dbname.clone());
            }
            Some(NodeEnum::AlterDatabaseRefreshCollStmt(a)) => {
                out.insert(a.dbname.clone());
            }
            Some(NodeEnum::RenameStmt(r)) if r.rename_type == ObjectType::ObjectDatabase as i32 => {
                out.insert(r.subname.clone());
                out.insert(r.newname.clone());
            }
            Some(NodeEnum::AlterOwnerStmt(a))
                if a.object_type == ObjectType::ObjectDatabase as i32 =>
            {
                if let Some(n) = a.object.as_deref().and_then(string) {
                    out.insert(n);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// pg_dump's way of setting a setting only where the server has it:
/// `SELECT set_config(name, 'value', false) FROM pg_settings WHERE name =
/// 'setting'`. The name argument is the one row's `name`, which the WHERE
/// pins to a literal, so the call is the `SET setting TO 'value'`. Returns
/// that (setting, value) when the statement is exactly this shape (one
/// relation `pg_settings`, a single equality on `name`, every output column
/// such a call with a literal value); anything else is `None` and
/// `set_config` stays a function of computed name.
pub(crate) fn pg_settings_set_config(
    text: &str,
    max_depth: usize,
) -> Result<Option<(String, String)>, SqlError> {
    use pg_query::{NodeEnum, protobuf::a_const::Val};
    let parsed = guarded(|| pg_query::parse(text, 0), max_depth)?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return Ok(None);
    };
    let Some(NodeEnum::SelectStmt(s)) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
        return Ok(None);
    };
    let plain = s.distinct_clause.is_empty()
        && s.into_clause.is_none()
        && s.group_clause.is_empty()
        && s.having_clause.is_none()
        && s.window_clause.is_empty()
        && s.values_lists.is_empty()
        && s.with_clause.is_none()
        && s.larg.is_none()
        && s.rarg.is_none()
        && s.locking_clause.is_empty()
        && s.limit_count.is_none()
        && s.limit_offset.is_none();
    if !plain {
        return Ok(None);
    }
    let [from] = s.from_clause.as_slice() else {
        return Ok(None);
    };
    let Some(NodeEnum::RangeVar(rv)) = from.node.as_ref() else {
        return Ok(None);
    };
    if rv.relname != "pg_settings"
        || !(rv.schemaname.is_empty() || rv.schemaname == "pg_catalog")
        || rv.alias.is_some()
    {
        return Ok(None);
    }
    let is_name_column = |n: &pg_query::protobuf::Node| {
        let Some(NodeEnum::ColumnRef(c)) = n.node.as_ref() else {
            return false;
        };
        let parts: Vec<&str> = c
            .fields
            .iter()
            .filter_map(|f| match f.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect();
        parts.len() == c.fields.len()
            && matches!(parts.as_slice(), ["name"] | ["pg_settings", "name"])
    };
    let string_const = |n: &pg_query::protobuf::Node| match n.node.as_ref() {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(Val::Sval(s)) => Some(s.sval.clone()),
            _ => None,
        },
        _ => None,
    };
    // WHERE name = 'setting' (either side).
    let Some(NodeEnum::AExpr(w)) = s.where_clause.as_ref().and_then(|w| w.node.as_ref()) else {
        return Ok(None);
    };
    let op: Vec<&str> = w
        .name
        .iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    if w.kind != pg_query::protobuf::AExprKind::AexprOp as i32 || op != ["="] {
        return Ok(None);
    }
    let (Some(l), Some(r)) = (w.lexpr.as_deref(), w.rexpr.as_deref()) else {
        return Ok(None);
    };
    let setting = if is_name_column(l) {
        string_const(r)
    } else if is_name_column(r) {
        string_const(l)
    } else {
        None
    };
    let Some(setting) = setting else {
        return Ok(None);
    };
    let mut value = None;
    for t in &s.target_list {
        let Some(NodeEnum::ResTarget(rt)) = t.node.as_ref() else {
            return Ok(None);
        };
        let Some(NodeEnum::FuncCall(f)) = rt.val.as_ref().and_then(|v| v.node.as_ref()) else {
            return Ok(None);
        };
        let fname: Vec<String> = f
            .funcname
            .iter()
            .filter_map(|p| match p.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect();
        let [name, val, _local] = f.args.as_slice() else {
            return Ok(None);
        };
        let plain_call =
            f.agg_filter.is_none() && f.over.is_none() && !f.agg_star && !f.func_variadic;
        if names::function_from_parts(&fname) != "set_config"
            || !plain_call
            || !is_name_column(name)
        {
            return Ok(None);
        }
        let Some(v) = string_const(val) else {
            return Ok(None);
        };
        if value.as_ref().is_some_and(|seen| seen != &v) {
            return Ok(None);
        }
        value = Some(v);
    }
    Ok(value.map(|v| (setting.to_ascii_lowercase(), v)))
}
