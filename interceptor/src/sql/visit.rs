//! Walks a sqlparser tree (its `Visitor`) and collects what the statement
//! touches: relations read and written, functions called, `set_config`
//! settings, and the classes nested statements add (a DELETE inside a CTE,
//! `SELECT ... INTO`).
//!
//! The walk itself is sqlparser's; it grows the stack on demand
//! (`recursive-protection`), and the analyser bounds the tree's depth before
//! parsing, so nothing here recurses on its own.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query, Select,
    Statement, TableFactor, TableObject, Value, Visit, Visitor,
};

use super::names;
use super::{Relation, StatementClass};

/// What the walk found.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub reads: BTreeSet<Relation>,
    pub writes: BTreeSet<Relation>,
    pub functions: BTreeSet<String>,
    pub settings: Vec<(String, String)>,
    /// Classes added by nested statements (`Write` for DML anywhere,
    /// `Write` + `Ddl` for `SELECT ... INTO`).
    pub classes: BTreeSet<StatementClass>,
    /// A `SELECT ... INTO` was seen: the statement returns no rows.
    pub select_into: bool,
}

/// Walks `stmt`. With `plan_only` (EXPLAIN without ANALYZE) the targets of
/// data-modifying statements are reported as reads and add no class: the
/// statement is planned, not run.
pub(crate) fn collect(stmt: &Statement, plan_only: bool) -> Collected {
    let mut walker = Walker {
        out: Collected::default(),
        plan_only,
        targets: HashSet::new(),
        scopes: Vec::new(),
    };
    let _ = stmt.visit(&mut walker);
    walker.out
}

/// The CTE names one query introduces and how many of them are visible at
/// the point of the walk (a non-recursive CTE sees only the ones before it).
struct Scope {
    names: Vec<String>,
    queries: Vec<*const Query>,
    recursive: bool,
    visible: usize,
}

struct Walker {
    out: Collected,
    plan_only: bool,
    /// DML targets: not reads, even though sqlparser shows them as table
    /// factors (UPDATE's and DELETE's tables, MERGE's target).
    targets: HashSet<*const ObjectName>,
    scopes: Vec<Scope>,
}

impl Walker {
    fn is_cte(&self, name: &ObjectName) -> bool {
        let Some(name) = names::single(name) else {
            return false;
        };
        self.scopes
            .iter()
            .any(|s| s.names[..s.visible].contains(&name))
    }

    fn target(&mut self, name: &ObjectName) {
        self.targets.insert(std::ptr::from_ref(name));
        if let Some(rel) = names::relation(name) {
            if self.plan_only {
                self.out.reads.insert(rel);
            } else {
                self.out.writes.insert(rel);
            }
        }
    }

    fn target_factor(&mut self, factor: &TableFactor) {
        if let TableFactor::Table { name, .. } = factor {
            self.target(name);
        }
    }

    fn dml(&mut self) {
        if !self.plan_only {
            self.out.classes.insert(StatementClass::Write);
        }
    }

    fn function_call(&mut self, name: &ObjectName, args: &FunctionArguments) {
        let fname = names::function(name);
        if fname == "set_config"
            && let FunctionArguments::List(list) = args
        {
            let lit = |i: usize| match list.args.get(i) {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(literal_text(e)),
                _ => None,
            };
            // A literal setting name makes the call what `SET` is: decided as
            // that setting (allow_settings, the pinned lexing settings) in
            // the session class. A computed name could be any setting: the
            // function stays on the dangerous list.
            if let Some(Some(setting)) = lit(0) {
                let value = match lit(1) {
                    Some(Some(v)) => v,
                    _ => list
                        .args
                        .get(1)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                };
                self.out
                    .settings
                    .push((setting.to_ascii_lowercase(), value));
                self.out.classes.insert(StatementClass::Session);
                return;
            }
        }
        self.out.functions.insert(fname);
    }
}

/// The text of a string or number literal; `None` for anything else.
pub(crate) fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s)
            | Value::Number(s, _) => Some(s.clone()),
            Value::DollarQuotedString(d) => Some(d.value.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::Nested(inner) => literal_text(inner),
        Expr::Cast { expr, .. } => literal_text(expr),
        _ => None,
    }
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let ptr = std::ptr::from_ref(query);
        if let Some(top) = self.scopes.last_mut()
            && let Some(i) = top.queries.iter().position(|q| *q == ptr)
        {
            top.visible = if top.recursive { top.names.len() } else { i };
        }
        let scope = match &query.with {
            Some(with) => Scope {
                names: with
                    .cte_tables
                    .iter()
                    .map(|c| names::fold_ident(&c.alias.name))
                    .collect(),
                queries: with
                    .cte_tables
                    .iter()
                    .map(|c| std::ptr::from_ref(&*c.query))
                    .collect(),
                recursive: with.recursive,
                visible: with.cte_tables.len(),
            },
            None => Scope {
                names: Vec::new(),
                queries: Vec::new(),
                recursive: false,
                visible: 0,
            },
        };
        self.scopes.push(scope);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        let ptr = std::ptr::from_ref(query);
        if let Some(top) = self.scopes.last_mut()
            && top.queries.contains(&ptr)
        {
            top.visible = top.names.len();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.out.select_into = true;
            for target in &into.targets {
                let name = match target {
                    Expr::Identifier(i) => Some(ObjectName::from(vec![i.clone()])),
                    Expr::CompoundIdentifier(parts) => Some(ObjectName::from(parts.clone())),
                    _ => None,
                };
                if let Some(rel) = name.as_ref().and_then(names::relation) {
                    if self.plan_only {
                        self.out.reads.insert(rel);
                    } else {
                        self.out.writes.insert(rel);
                    }
                }
            }
            if !self.plan_only {
                self.out.classes.insert(StatementClass::Write);
                self.out.classes.insert(StatementClass::Ddl);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                self.out.functions.insert(names::function(name));
            }
            TableFactor::Table {
                name, args: None, ..
            } if !self.targets.contains(&std::ptr::from_ref(name)) && !self.is_cte(name) => {
                if let Some(rel) = names::relation(name) {
                    self.out.reads.insert(rel);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            self.function_call(&f.name, &f.args);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        match stmt {
            Statement::Insert(insert) => {
                if let TableObject::TableName(name) = &insert.table {
                    self.target(name);
                }
                self.dml();
            }
            Statement::Update(update) => {
                self.target_factor(&update.table.relation);
                self.dml();
            }
            Statement::Delete(delete) => {
                for name in &delete.tables {
                    self.target(name);
                }
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                for t in from {
                    self.target_factor(&t.relation);
                }
                self.dml();
            }
            Statement::Merge(merge) => {
                self.target_factor(&merge.table);
                self.dml();
            }
            Statement::Call(f) => self.function_call(&f.name, &f.args),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
