use super::*;
use crate::sql::StatementClass::{Ddl, Read};

// ---- statement boundaries -------------------------------------------------

#[test]
fn empty_comments_and_semicolons_are_no_statements() {
    for sql in [
        "",
        "   \n\t",
        "-- only a comment",
        "/* block */",
        "/* a /* nested */ one */",
        ";",
        ";;;",
        "/* c */ ; -- x\n;",
    ] {
        assert!(all(sql).is_empty(), "{sql:?}");
    }
}

#[test]
fn every_statement_of_a_multi_statement_string_is_analysed() {
    let v = all("select 1; drop table t");
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].text, "select 1");
    assert_eq!(
        (v[1].command.as_str(), &v[1].classes),
        ("DROP TABLE", &classes(&[Ddl]))
    );
    assert_eq!(v[1].writes, rels(&["t"]));
    assert_eq!(
        commands("SELECT 1; SELECT 2;; SELECT 3;"),
        ["SELECT", "SELECT", "SELECT"]
    );
    assert_eq!(
        commands("SELECT 1 --\n; DROP TABLE t"),
        ["SELECT", "DROP TABLE"]
    );
}

/// PostgreSQL's block comments nest: what a non-nesting lexer would take for
/// a statement after `*/` is still comment, and the other way round. Either
/// way the statements analysed are the ones PostgreSQL runs.
#[test]
fn nested_block_comments_cannot_hide_a_statement() {
    let v = all("/* /* */ DROP TABLE x; */ SELECT 1");
    assert_eq!(commands("/* /* */ DROP TABLE x; */ SELECT 1"), ["SELECT"]);
    assert_eq!(v[0].text, "SELECT 1");
    assert_eq!(commands("SELECT 1 /* /* */ ; DROP TABLE x; */"), ["SELECT"]);
    assert_eq!(
        commands("SELECT 1 /* a /* b */ c */ ; SELECT 2"),
        ["SELECT", "SELECT"]
    );
    // A nested comment closed once, then a statement PostgreSQL does run.
    assert_eq!(commands("/* /* */ */ DROP TABLE x"), ["DROP TABLE"]);
    // Unterminated (the inner */ closes only the inner comment): the server refuses it too.
    assert!(matches!(
        run("/* unterminated /* */ DROP TABLE x;"),
        Err(SqlError::PgParse(_))
    ));
    // Line comments end at the newline, not at `;`.
    assert_eq!(commands("SELECT 1 -- trailing ; DROP TABLE t"), ["SELECT"]);
}

#[test]
fn dollar_quotes_hide_semicolons_and_keywords() {
    let s = one("SELECT $tag$ it's $$ ; DROP TABLE t; $tag$");
    assert_eq!(
        (s.command.as_str(), &s.classes),
        ("SELECT", &classes(&[Read]))
    );
    assert!(s.writes.is_empty());
    assert_eq!(
        commands("SELECT $a$x$a$; DROP TABLE t"),
        ["SELECT", "DROP TABLE"]
    );
    // `$1` is a parameter, `t$1` an identifier: neither opens a quote.
    assert_eq!(
        one("SELECT a$b FROM t$1 WHERE x = $1").reads,
        rels(&["t$1"])
    );
    assert!(matches!(
        run("SELECT 1 $$ unterminated"),
        Err(SqlError::PgParse(_))
    ));
    assert!(matches!(
        run("SELECT $a$ $b$ $a$ ; DROP TABLE t; $b$"),
        Err(SqlError::PgParse(_))
    ));
}

/// With standard_conforming_strings on (pinned by policy) a backslash in a
/// plain string is a character, and in an E'' string an escape.
#[test]
fn backslashes_in_strings_are_lexed_as_postgresql_does() {
    assert_eq!(
        commands(r"SELECT '\'; DROP TABLE t; --'"),
        ["SELECT", "DROP TABLE"]
    );
    assert_eq!(commands(r"SELECT E'\''; SELECT 2"), ["SELECT", "SELECT"]);
    assert_eq!(commands(r"SELECT E'\'; DROP TABLE t; --'"), ["SELECT"]);
    assert_eq!(
        commands(r"SELECT E'\\'; DROP TABLE t; --'"),
        ["SELECT", "DROP TABLE"]
    );
    assert_eq!(commands(r"SELECT E'\\\'; DROP TABLE t; --'"), ["SELECT"]);
    assert_eq!(
        commands(r"SELECT B'0101', X'1F', N'nat', e'x\ny'"),
        ["SELECT"]
    );
}

#[test]
fn string_continuation_across_newlines() {
    assert_eq!(commands("SELECT 'a'\n'b'"), ["SELECT"]);
    assert_eq!(
        commands("SELECT 'a' -- c\n  'b'; SELECT 2"),
        ["SELECT", "SELECT"]
    );
    // Without a newline it is a syntax error, for the server too.
    assert!(matches!(run("SELECT 'a' 'b'"), Err(SqlError::PgParse(_))));
}

#[test]
fn unicode_escapes() {
    assert_eq!(commands(r"SELECT U&'d\0061t\+000061'"), ["SELECT"]);
    // sqlparser has no U&"..." identifiers nor UESCAPE: refused, not guessed.
    assert!(matches!(
        run(r#"SELECT * FROM U&"d\0061t""#),
        Err(SqlError::Parse(_))
    ));
    assert!(matches!(
        run(r"SELECT U&'!0041' UESCAPE '!'"),
        Err(SqlError::Parse(_))
    ));
}

// ---- names ----------------------------------------------------------------

#[test]
fn identifiers_fold_and_truncate_as_postgresql_does() {
    let s = one(
        r#"SELECT "Mixed""Case", x FROM "Mixed""Case", MyTable, "Sales"."Orders", Sales.Orders, ÄÖÜ"#,
    );
    assert_eq!(
        s.reads,
        rels(&[
            "Mixed\"Case",
            "mytable",
            "Sales.Orders",
            "sales.orders",
            "ÄÖÜ"
        ])
    );
    let long = "a".repeat(80);
    assert_eq!(
        one(&format!("SELECT * FROM {long}")).reads,
        rels(&[&"a".repeat(63)])
    );
    let quoted = "B".repeat(80);
    assert_eq!(
        one(&format!("SELECT * FROM \"{quoted}\"")).reads,
        rels(&[&"B".repeat(63)])
    );
}

#[test]
fn schema_qualified_and_search_path_relative_names() {
    let s = one("SELECT * FROM public.accounts a JOIN orders o ON o.a = a.id, db.s.t");
    assert_eq!(s.reads, rels(&["public.accounts", "orders", "s.t"]));
    let f = one(
        r#"SELECT myschema.f(), "MySchema"."F"(), pg_catalog.now(), PG_CATALOG.NOW(), lower('x')"#,
    );
    assert_eq!(
        f.functions,
        funcs(&["myschema.f", "MySchema.F", "now", "lower"])
    );
}
