//! Analyser tests over a corpus of real PostgreSQL SQL.

use super::*;

fn run(sql: &str) -> Result<Analysis, SqlError> {
    analyze(sql, &Limits::default())
}

#[test]
fn dump() {
    let Ok(path) = std::env::var("SQL_DUMP") else { return };
    let text = std::fs::read_to_string(path).unwrap();
    for q in text.split("\n----\n") {
        let q = q.trim();
        if q.is_empty() { continue; }
        println!("=== {q}");
        match run(q) {
            Ok(a) => for s in a.statements {
                println!("  {} {:?} r={:?} w={:?} f={:?} copy={:?} set={:?} unb={} lim={:?} prep={:?}",
                    s.command, s.classes, s.reads.iter().map(|r| format!("{}{}", r.schema.as_ref().map(|s| format!("{s}.")).unwrap_or_default(), r.name)).collect::<Vec<_>>(),
                    s.writes.iter().map(|r| format!("{}{}", r.schema.as_ref().map(|s| format!("{s}.")).unwrap_or_default(), r.name)).collect::<Vec<_>>(),
                    s.functions, s.copy, s.settings, s.unbounded, s.limit, s.prepared);
            },
            Err(e) => println!("  ERR {e:?}"),
        }
    }
}
#[test]
fn dbg_ast() {
    let Ok(q) = std::env::var("SQL_AST") else { return };
    let d = sqlparser::dialect::PostgreSqlDialect {};
    println!("{:#?}", sqlparser::parser::Parser::parse_sql(&d, &q));
}
