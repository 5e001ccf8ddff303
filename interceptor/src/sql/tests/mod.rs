//! Analyser tests over a corpus of real PostgreSQL SQL: what psql, pg_dump
//! and pgbench send, and what an agent might try to slip past the proxy.
//! One file per topic; the helpers are here.

use std::collections::BTreeSet;

use super::*;

mod classes;
mod clients;
mod lexing;
mod refusals;

pub(super) fn run(sql: &str) -> Result<Analysis, SqlError> {
    analyze(sql, &Limits::default())
}

pub(super) fn all(sql: &str) -> Vec<StatementFacts> {
    match run(sql) {
        Ok(a) => a.statements,
        Err(e) => panic!("{sql:?}: {e:?}"),
    }
}

pub(super) fn one(sql: &str) -> StatementFacts {
    let mut v = all(sql);
    assert_eq!(v.len(), 1, "{sql:?}: {v:#?}");
    v.remove(0)
}

pub(super) fn rel(s: &str) -> Relation {
    match s.split_once('.') {
        Some((schema, name)) => Relation {
            schema: Some(schema.into()),
            name: name.into(),
        },
        None => Relation {
            schema: None,
            name: s.into(),
        },
    }
}

pub(super) fn rels(names: &[&str]) -> BTreeSet<Relation> {
    names.iter().map(|s| rel(s)).collect()
}

pub(super) fn classes(c: &[StatementClass]) -> BTreeSet<StatementClass> {
    c.iter().copied().collect()
}

pub(super) fn funcs(f: &[&str]) -> BTreeSet<String> {
    f.iter().map(|s| (*s).to_owned()).collect()
}

pub(super) fn commands(sql: &str) -> Vec<String> {
    all(sql).into_iter().map(|s| s.command).collect()
}

/// Runs `f` on a thread with a tokio worker's default stack (2 MiB).
pub(super) fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}
