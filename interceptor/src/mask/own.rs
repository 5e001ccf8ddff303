//! The session's own relations: what it created itself, which the catalog
//! connection cannot see (temporary tables and views, tables created in the
//! open transaction), and its `search_path`.
//!
//! The proxy sees every statement of the session, so it knows what the
//! session created, with which columns, and what was written into them
//! (every write into such a relation is traced like any other, and a masked
//! identity's write of masked data is refused before it runs). A relation
//! the session made from traced data therefore carries nothing beyond what
//! its [`RelInfo::carries`] say, and is resolved from here instead of being
//! opaque.
//!
//! Each statement's [`Effect`]s are computed when it is planned and applied
//! when it completes (its `CommandComplete`), following transactions as the
//! server does: an error outside a transaction block undoes the implicit
//! transaction, `ROLLBACK` undoes the block, `ROLLBACK TO SAVEPOINT` undoes
//! back to the savepoint, `ReadyForQuery` with status `I` makes it all
//! permanent. `SET LOCAL search_path` ends with its transaction.
//!
//! Where the session's state cannot be known (code the proxy cannot see
//! ran: a DO block, a procedure, a user-defined function; a `search_path`
//! set in a way not modelled) the relations become opaque, never clean.

use sqlparser::ast::{
    Expr, ObjectName, ObjectType, RenameTableNameKind, SetExpr, Statement, Value,
};

use super::lineage::{Catalog, Lin, OWN_OID_BASE, OutCol, RelInfo, Snapshot};
use crate::sql::{Relation, names};

/// Relations remembered per session.
const MAX_OWN: usize = 4096;

/// The session's `search_path`, as far as the proxy knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SearchPath {
    /// Never set: the role's and database's default.
    #[default]
    Default,
    /// Set to this value.
    Set(String),
    /// Changed in a way the proxy did not follow: unqualified names cannot
    /// be resolved (they are opaque).
    Unknown,
}

/// One relation the session created.
#[derive(Debug, Clone)]
struct OwnRel {
    /// `pg_temp`, the schema it was created in, or `None` (the first schema
    /// of the search path, as the server chose).
    schema: Option<String>,
    temp: bool,
    info: RelInfo,
}

/// The session's state as of one point in its history.
#[derive(Debug, Clone, Default)]
pub struct OwnState {
    rels: Vec<OwnRel>,
    /// The session's `search_path`.
    pub search_path: SearchPath,
    next_oid: u32,
    /// Statements sent earlier may have changed these relations in ways not
    /// yet confirmed (a DROP, a ROLLBACK still in flight): the session's
    /// own relations are then opaque, never trusted.
    uncertain: bool,
}

impl OwnState {
    fn temp(&self, name: &str) -> Option<usize> {
        self.rels
            .iter()
            .rposition(|r| r.temp && r.info.name == name)
    }

    /// A non-temporary relation the session created under this spelling.
    fn permanent(&self, rel: &Relation) -> Option<usize> {
        let exact = self
            .rels
            .iter()
            .rposition(|r| !r.temp && r.info.name == rel.name && r.schema == rel.schema);
        // Created unqualified, named qualified (or the other way round):
        // the only candidate the session has.
        exact.or_else(|| {
            self.rels.iter().rposition(|r| {
                !r.temp && r.info.name == rel.name && (r.schema.is_none() || rel.schema.is_none())
            })
        })
    }

    /// The relation `rel` names among the session's own, the way the server
    /// resolves it (`pg_temp` first for unqualified names).
    fn find(&self, rel: &Relation) -> Option<usize> {
        match rel.schema.as_deref() {
            None => self.temp(&rel.name).or_else(|| self.permanent(rel)),
            Some("pg_temp") => self.temp(&rel.name),
            Some(_) => self.permanent(rel),
        }
    }

    /// Names the definitions of the session's own views read (so the
    /// catalog is asked about them too).
    pub fn view_reads(&self, rels: &[Relation]) -> Vec<Relation> {
        let mut out = Vec::new();
        let mut want: Vec<Relation> = rels.to_vec();
        for _ in 0..16 {
            let mut next = Vec::new();
            for r in &want {
                if let Some(i) = self.find(r)
                    && let Some(def) = &self.rels[i].info.view_def
                    && let Ok(a) = crate::sql::analyze(def, &crate::sql::Limits::default())
                {
                    for f in a.statements {
                        for read in f.reads {
                            if !out.contains(&read) {
                                out.push(read.clone());
                                next.push(read);
                            }
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            want = next;
        }
        out
    }

    /// Whether the session created any relation (planning needs the state).
    pub fn is_empty(&self) -> bool {
        self.rels.is_empty() && self.search_path == SearchPath::Default
    }

    /// This state, for planning while earlier statements that change it
    /// have not completed.
    #[must_use]
    pub fn uncertain(&self) -> Self {
        Self {
            uncertain: true,
            ..self.clone()
        }
    }

    /// Applies `effects` as if their statement succeeded (planning the next
    /// statement of the same message: it only runs if this one did).
    /// Transaction control makes the state uncertain.
    pub fn assume(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Begin | Effect::Savepoint(_) | Effect::Release(_) => {}
                Effect::Commit | Effect::Rollback | Effect::RollbackTo(_) => self.uncertain = true,
                other => self.apply(other),
            }
        }
    }

    /// Applies one effect that is not transaction control.
    fn apply(&mut self, e: &Effect) {
        match e {
            Effect::Create(c) => self.create(c),
            Effect::Drop(rels) => self.drop_rels(rels),
            Effect::Alter(rel, change) => self.alter(rel, change),
            Effect::Write(rels, lin) => self.write(rels, lin),
            Effect::Taint => self.taint(),
            Effect::DropTemp => self.rels.retain(|r| !r.temp),
            Effect::SearchPath { value, .. } => self.search_path = value.clone(),
            Effect::Begin
            | Effect::Commit
            | Effect::Rollback
            | Effect::Savepoint(_)
            | Effect::RollbackTo(_)
            | Effect::Release(_) => {}
        }
    }

    fn create(&mut self, c: &Create) {
        if let Some(i) = self.find(&c.rel).filter(|i| self.rels[*i].temp == c.temp) {
            if c.if_not_exists {
                // The existing one stays (the server only notices).
                return;
            }
            self.rels.remove(i);
        }
        if self.rels.len() >= MAX_OWN {
            // Forgetting one makes it unknown (missing), never clean: what
            // it returns is then masked whole.
            self.rels.remove(0);
        }
        self.next_oid = self.next_oid.wrapping_add(1);
        let schema = if c.temp {
            Some("pg_temp".to_owned())
        } else {
            c.rel.schema.clone()
        };
        let (columns, carries): (Vec<String>, Vec<Lin>) = c
            .columns
            .iter()
            .map(|o| (o.name.clone(), o.lin.clone()))
            .unzip();
        let info = RelInfo {
            oid: OWN_OID_BASE | (self.next_oid & 0x0FFF_FFFF),
            schema: schema.clone().unwrap_or_else(|| "public".into()),
            name: c.rel.name.clone(),
            kind: if c.view_def.is_some() { 'v' } else { 'r' },
            attnums: (1..=columns.len() as i16).collect(),
            columns,
            view_def: c.view_def.clone(),
            carries,
        };
        self.rels.push(OwnRel {
            schema,
            temp: c.temp,
            info,
        });
    }

    fn drop_rels(&mut self, rels: &[Relation]) {
        for r in rels {
            if let Some(i) = self.find(r) {
                self.rels.remove(i);
            }
        }
    }

    fn write(&mut self, rels: &[Relation], lin: &Lin) {
        for r in rels {
            if let Some(i) = self.find(r) {
                let rel = &mut self.rels[i].info;
                let n = rel.columns.len();
                rel.carries.resize(n, Lin::default());
                for c in &mut rel.carries {
                    c.add(lin);
                }
            }
        }
    }

    fn taint(&mut self) {
        for r in &mut self.rels {
            let n = r.info.columns.len();
            r.info.carries.resize(n, Lin::default());
            for c in &mut r.info.carries {
                c.opaque = true;
            }
        }
    }

    fn alter(&mut self, rel: &Relation, change: &Alter) {
        let Some(i) = self.find(rel) else { return };
        let r = &mut self.rels[i];
        let n = r.info.columns.len();
        r.info.carries.resize(n, Lin::default());
        match change {
            Alter::AddColumn(name, lin) => {
                r.info.columns.push(name.clone());
                r.info.carries.push(lin.clone());
                r.info
                    .attnums
                    .push(r.info.attnums.last().copied().unwrap_or(0) + 1);
            }
            Alter::DropColumn(name) => {
                if let Some(at) = r.info.columns.iter().position(|c| c == name) {
                    r.info.columns.remove(at);
                    r.info.carries.remove(at);
                    r.info.attnums.remove(at);
                }
            }
            Alter::RenameColumn(old, new) => {
                if let Some(c) = r.info.columns.iter_mut().find(|c| *c == old) {
                    c.clone_from(new);
                }
            }
            Alter::Rename(new) => r.info.name.clone_from(new),
            Alter::Opaque => {
                for c in &mut r.info.carries {
                    c.opaque = true;
                }
            }
        }
    }
}

/// A relation a statement creates.
#[derive(Debug, Clone)]
pub struct Create {
    rel: Relation,
    temp: bool,
    if_not_exists: bool,
    /// Columns in order, with what each was filled from.
    columns: Vec<OutCol>,
    /// A view's defining query.
    view_def: Option<String>,
}

/// A change of a relation's columns.
#[derive(Debug, Clone)]
pub enum Alter {
    AddColumn(String, Lin),
    DropColumn(String),
    RenameColumn(String, String),
    Rename(String),
    /// Something not modelled: its columns become opaque.
    Opaque,
}

/// What one statement does to the session's state once it has run.
#[derive(Debug, Clone)]
pub enum Effect {
    Create(Create),
    Drop(Vec<Relation>),
    Alter(Relation, Alter),
    /// Data derived from `Lin` written into these relations.
    Write(Vec<Relation>, Lin),
    /// Code the proxy cannot see ran: anything may have been written into
    /// the session's relations.
    Taint,
    /// `DISCARD TEMP` / `DISCARD ALL`: every temporary relation is gone.
    DropTemp,
    SearchPath {
        value: SearchPath,
        local: bool,
    },
    Begin,
    /// COMMIT (the server's tag says whether it committed or rolled back).
    Commit,
    Rollback,
    Savepoint(String),
    RollbackTo(String),
    Release(String),
}

/// The session's own relations through its transactions.
#[derive(Debug, Default)]
pub struct OwnRelations {
    current: OwnState,
    committed: OwnState,
    savepoints: Vec<(String, OwnState)>,
    in_block: bool,
    /// The search path before `SET LOCAL` in the open transaction.
    local_base: Option<SearchPath>,
}

impl OwnRelations {
    /// A session whose startup packet set `search_path` (or not).
    pub fn new(search_path: SearchPath) -> Self {
        let state = OwnState {
            search_path,
            ..OwnState::default()
        };
        Self {
            current: state.clone(),
            committed: state,
            ..Self::default()
        }
    }

    /// The state statements are planned against now.
    pub fn state(&self) -> &OwnState {
        &self.current
    }

    /// A statement completed with command `tag`.
    pub fn completed(&mut self, effects: &[Effect], tag: &str) {
        for e in effects {
            match e {
                Effect::Create(_)
                | Effect::Drop(_)
                | Effect::Alter(..)
                | Effect::Write(..)
                | Effect::Taint
                | Effect::DropTemp => {
                    self.current.apply(e);
                }
                Effect::SearchPath { value, local } => {
                    if *local {
                        if self.in_block {
                            self.local_base
                                .get_or_insert_with(|| self.current.search_path.clone());
                            self.current.search_path = value.clone();
                        }
                        // Outside a block SET LOCAL does nothing (a warning).
                    } else {
                        self.current.search_path = value.clone();
                        self.local_base = None;
                    }
                }
                Effect::Begin => self.in_block = true,
                Effect::Commit if tag == "COMMIT" => self.commit(),
                Effect::Commit | Effect::Rollback => self.rollback(),
                Effect::Savepoint(name) => {
                    self.savepoints.push((name.clone(), self.current.clone()))
                }
                Effect::RollbackTo(name) => {
                    if let Some(at) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                        self.savepoints.truncate(at + 1);
                        self.current = self.savepoints[at].1.clone();
                    }
                }
                Effect::Release(name) => {
                    if let Some(at) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                        self.savepoints.truncate(at);
                    }
                }
            }
        }
    }

    fn commit(&mut self) {
        if let Some(base) = self.local_base.take() {
            self.current.search_path = base;
        }
        self.committed = self.current.clone();
        self.savepoints.clear();
        self.in_block = false;
    }

    fn rollback(&mut self) {
        self.current = self.committed.clone();
        self.savepoints.clear();
        self.in_block = false;
        self.local_base = None;
    }

    /// An ErrorResponse: outside a block the implicit transaction is undone.
    pub fn error(&mut self) {
        if !self.in_block {
            self.rollback();
        }
    }

    /// ReadyForQuery with transaction `status` (`I`, `T`, `E`).
    pub fn ready(&mut self, status: u8) {
        match status {
            b'I' => {
                if self.in_block {
                    // A block ended without our seeing how (a COMMIT
                    // inside a function, say): what the server has now is
                    // unknown; keep what we know, committed.
                    self.in_block = false;
                }
                self.commit();
            }
            _ => self.in_block = true,
        }
    }
}

/// The catalog a statement is traced against: the session's own relations
/// first (as the server resolves names: `pg_temp` first), then the catalog
/// connection's snapshot, then relations created in the open transaction.
pub struct Resolver<'a> {
    pub snap: &'a Snapshot,
    pub own: &'a OwnState,
}

impl Catalog for Resolver<'_> {
    fn relation(&self, rel: &Relation) -> Option<Option<&RelInfo>> {
        if self.own.uncertain && self.own.find(rel).is_some() {
            return None;
        }
        if rel.schema.as_deref().is_none_or(|s| s == "pg_temp")
            && let Some(i) = self.own.temp(&rel.name)
        {
            return Some(Some(&self.own.rels[i].info));
        }
        if rel.schema.as_deref() == Some("pg_temp") {
            return Some(None);
        }
        if rel.schema.is_none() && self.own.search_path == SearchPath::Unknown {
            // Which schema the server would pick is not known.
            return self
                .own
                .permanent(rel)
                .map(|i| Some(&self.own.rels[i].info));
        }
        match self.snap.relation(rel) {
            Some(Some(info)) => Some(Some(info)),
            other => match self.own.permanent(rel) {
                Some(i) => Some(Some(&self.own.rels[i].info)),
                None => other,
            },
        }
    }

    fn user_function(&self, name: &str) -> bool {
        self.snap.user_function(name)
    }
}

/// What `stmt` does to the session's state. `outputs` are its traced
/// output columns where it creates a relation from a query (CREATE TABLE
/// AS, SELECT INTO, views); `written` what it writes; `writes` the
/// relations it writes (from the analysis).
pub fn effects(
    stmt: &Statement,
    outputs: Option<&[OutCol]>,
    written: &Lin,
    writes: &[Relation],
    opaque_code: bool,
) -> Vec<Effect> {
    let mut out = Vec::new();
    if opaque_code {
        out.push(Effect::Taint);
    }
    match stmt {
        Statement::CreateTable(ct) => {
            if let Some(rel) = names::relation(&ct.name) {
                let temp = ct.temporary || rel.schema.as_deref() == Some("pg_temp");
                let mut columns: Vec<OutCol> = if ct.query.is_some() {
                    let outs = outputs.map(<[OutCol]>::to_vec).unwrap_or_default();
                    let mut outs = outs;
                    for (o, c) in outs.iter_mut().zip(ct.columns.iter()) {
                        o.name = names::fold_ident(&c.name);
                    }
                    outs
                } else {
                    ct.columns
                        .iter()
                        .map(|c| OutCol {
                            name: names::fold_ident(&c.name),
                            lin: Lin::default(),
                        })
                        .collect()
                };
                // Inherited or copied columns, partitions: not modelled.
                let unknown_shape = ct.like.is_some()
                    || ct.inherits.as_ref().is_some_and(|i| !i.is_empty())
                    || ct.partition_of.is_some()
                    || ct.clone.is_some();
                if unknown_shape {
                    columns.push(OutCol {
                        name: "?".into(),
                        lin: Lin::opaque(),
                    });
                    for c in &mut columns {
                        c.lin.opaque = true;
                    }
                }
                out.push(Effect::Create(Create {
                    rel,
                    temp,
                    if_not_exists: ct.if_not_exists,
                    columns,
                    view_def: None,
                }));
            }
        }
        Statement::CreateView(v) => {
            if let Some(rel) = names::relation(&v.name) {
                let temp = v.temporary || rel.schema.as_deref() == Some("pg_temp");
                let mut columns = outputs.map(<[OutCol]>::to_vec).unwrap_or_default();
                for (o, c) in columns.iter_mut().zip(v.columns.iter()) {
                    o.name = names::fold_ident(&c.name);
                }
                // A view is traced through its definition each time; a
                // materialized view holds what its query gave.
                let view_def = (!v.materialized).then(|| v.query.to_string());
                if view_def.is_some() {
                    for c in &mut columns {
                        c.lin = Lin::default();
                    }
                }
                out.push(Effect::Create(Create {
                    rel,
                    temp,
                    if_not_exists: v.if_not_exists,
                    columns,
                    view_def,
                }));
            }
        }
        Statement::Query(q) => {
            if let SetExpr::Select(s) = q.body.as_ref()
                && let Some(into) = &s.into
                && let Some(rel) = into.targets.first().and_then(target_relation)
            {
                let temp = into.temporary || rel.schema.as_deref() == Some("pg_temp");
                let columns = outputs.map(<[OutCol]>::to_vec).unwrap_or_default();
                out.push(Effect::Create(Create {
                    rel,
                    temp,
                    if_not_exists: false,
                    columns,
                    view_def: None,
                }));
            }
        }
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::View | ObjectType::MaterializedView,
            names: n,
            ..
        } => {
            out.push(Effect::Drop(n.iter().filter_map(names::relation).collect()));
        }
        Statement::AlterTable(at) => {
            if let Some(rel) = names::relation(&at.name) {
                for op in &at.operations {
                    use sqlparser::ast::AlterTableOperation as Op;
                    let change = match op {
                        Op::AddColumn { column_def, .. } => {
                            Alter::AddColumn(names::fold_ident(&column_def.name), Lin::default())
                        }
                        Op::DropColumn { column_names, .. } => {
                            for c in column_names {
                                out.push(Effect::Alter(
                                    rel.clone(),
                                    Alter::DropColumn(names::fold_ident(c)),
                                ));
                            }
                            continue;
                        }
                        Op::RenameColumn {
                            old_column_name,
                            new_column_name,
                        } => Alter::RenameColumn(
                            names::fold_ident(old_column_name),
                            names::fold_ident(new_column_name),
                        ),
                        Op::RenameTable {
                            table_name: RenameTableNameKind::As(n) | RenameTableNameKind::To(n),
                        } => match names::relation(n) {
                            Some(r) => Alter::Rename(r.name),
                            None => Alter::Opaque,
                        },
                        Op::AddConstraint { .. }
                        | Op::DropConstraint { .. }
                        | Op::AlterColumn { .. } => continue,
                        _ => Alter::Opaque,
                    };
                    out.push(Effect::Alter(rel.clone(), change));
                }
            }
        }
        Statement::Discard { object_type } => match object_type {
            sqlparser::ast::DiscardObject::TEMP => out.push(Effect::DropTemp),
            sqlparser::ast::DiscardObject::ALL => {
                out.push(Effect::DropTemp);
                out.push(Effect::SearchPath {
                    value: SearchPath::Default,
                    local: false,
                });
            }
            _ => {}
        },
        Statement::StartTransaction { .. } => out.push(Effect::Begin),
        Statement::Commit { .. } => out.push(Effect::Commit),
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => out.push(Effect::RollbackTo(names::fold_ident(name))),
        Statement::Rollback { .. } => out.push(Effect::Rollback),
        Statement::Savepoint { name } => out.push(Effect::Savepoint(names::fold_ident(name))),
        Statement::ReleaseSavepoint { name } => out.push(Effect::Release(names::fold_ident(name))),
        _ => {}
    }
    // What is written into the session's own relations (a relation just
    // created from a query already carries its columns' lineage).
    if !writes.is_empty() && !out.iter().any(|e| matches!(e, Effect::Create(_))) {
        out.push(Effect::Write(writes.to_vec(), written.clone()));
    }
    out
}

/// What a `SET`, `RESET` or `set_config` does to `search_path`, from the
/// statement's analysed settings (`value` as the analysis gives it).
pub fn search_path_effect(stmt: &Statement, value: &str) -> Effect {
    use sqlparser::ast::{ContextModifier, Set};
    match stmt {
        Statement::Set(Set::SingleAssignment { scope, .. }) => {
            let local = matches!(scope, Some(ContextModifier::Local));
            let v = if value.eq_ignore_ascii_case("default") {
                SearchPath::Default
            } else {
                SearchPath::Set(value.to_owned())
            };
            Effect::SearchPath { value: v, local }
        }
        Statement::Set(_) => Effect::SearchPath {
            value: SearchPath::Unknown,
            local: false,
        },
        _ if value.eq_ignore_ascii_case("default") && set_config_local(stmt).is_none() => {
            // RESET search_path, RESET ALL.
            Effect::SearchPath {
                value: SearchPath::Default,
                local: false,
            }
        }
        _ => match set_config_local(stmt) {
            Some(local) => Effect::SearchPath {
                value: SearchPath::Set(value.to_owned()),
                local,
            },
            None => Effect::SearchPath {
                value: SearchPath::Unknown,
                local: false,
            },
        },
    }
}

/// `SELECT set_config('search_path', '...', <bool literal>)`: whether local.
fn set_config_local(stmt: &Statement) -> Option<bool> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.projection.len() != 1 || !s.from.is_empty() || s.selection.is_some() {
        return None;
    }
    let (sqlparser::ast::SelectItem::UnnamedExpr(Expr::Function(f))
    | sqlparser::ast::SelectItem::ExprWithAlias {
        expr: Expr::Function(f),
        ..
    }) = &s.projection[0]
    else {
        return None;
    };
    if names::function(&f.name)
        .strip_prefix("pg_catalog.")
        .unwrap_or(&names::function(&f.name))
        != "set_config"
    {
        return None;
    }
    let sqlparser::ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.get(2) {
        Some(sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(
            Expr::Value(v),
        ))) => match &v.value {
            Value::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

fn target_relation(e: &Expr) -> Option<Relation> {
    let parts = match e {
        Expr::Identifier(i) => vec![i.clone()],
        Expr::CompoundIdentifier(p) => p.clone(),
        _ => return None,
    };
    names::relation(&ObjectName::from(parts))
}

#[cfg(test)]
mod tests;
