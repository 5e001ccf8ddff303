use super::*;

// ---- refusals -------------------------------------------------------------

#[test]
fn what_postgresql_rejects_is_pg_parse() {
    for sql in [
        "SELEC 1",
        "SELECT 'unterminated",
        "SELECT (1",
        "SELECT 1 FROM",
        "SELECT 1\0; DROP TABLE t",
    ] {
        assert!(
            matches!(run(sql), Err(SqlError::PgParse(_))),
            "{sql}: {:?}",
            run(sql)
        );
    }
}

#[test]
fn what_only_postgresql_parses_is_parse() {
    for sql in [
        "TABLE t",
        "SELECT * FROM ROWS FROM (generate_series(1,2), generate_series(1,3))",
        "SELECT xmlelement(name foo)",
    ] {
        assert!(
            matches!(run(sql), Err(SqlError::Parse(_))),
            "{sql}: {:?}",
            run(sql)
        );
    }
    // One bad statement refuses the whole string.
    assert!(matches!(run("SELECT 1; TABLE t"), Err(SqlError::Parse(_))));
}

#[test]
fn too_long() {
    let limits = Limits {
        max_sql_bytes: 16,
        max_depth: 64,
    };
    assert_eq!(
        analyze("SELECT 1234567890123", &limits),
        Err(SqlError::TooLong { len: 20, max: 16 })
    );
    assert!(analyze("SELECT 1", &limits).is_ok());
}

#[test]
fn deep_nesting_is_refused_without_a_crash() {
    on_small_stack(|| {
        let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(run(&parens), Err(SqlError::TooDeep(64)));
        let chain = format!("SELECT 1{}", "+1".repeat(100_000));
        assert_eq!(run(&chain), Err(SqlError::TooDeep(64)));
        // Runs PostgreSQL accepts but sqlparser would build too deep a tree from.
        let chain = format!("SELECT 1{}", "+1".repeat(5_000));
        assert_eq!(run(&chain), Err(SqlError::TooDeep(64)));
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(200), ")".repeat(200));
        assert_eq!(run(&subqueries), Err(SqlError::TooDeep(64)));
        let not = format!("SELECT {}true", "NOT ".repeat(10_000));
        assert_eq!(run(&not), Err(SqlError::TooDeep(64)));
        let casts = format!("SELECT 1{}", "::int".repeat(10_000));
        assert_eq!(run(&casts), Err(SqlError::TooDeep(64)));
        let arrays = format!("SELECT {}1{}", "ARRAY[".repeat(5_000), "]".repeat(5_000));
        assert_eq!(run(&arrays), Err(SqlError::TooDeep(64)));
    });
    // Moderate nesting is fine.
    assert!(run(&format!("SELECT {}1{}", "(".repeat(20), ")".repeat(20))).is_ok());
    assert!(run(&format!("SELECT 1{}", "+1".repeat(500))).is_ok());
    assert!(
        run(&format!(
            "SELECT 1 WHERE {}",
            vec!["a = 1"; 300].join(" OR ")
        ))
        .is_ok()
    );
}

#[test]
fn a_smuggled_statement_is_counted_or_refused() {
    // Whatever the trick, the DROP either shows up as a statement of its own
    // or the string is refused: it never passes hidden inside another one.
    let tricks = [
        "SELECT 1; DROP TABLE t",
        "SELECT 1;DROP TABLE t",
        "SELECT 1 /* */; DROP TABLE t",
        "SELECT 1 /* /* */ */; DROP TABLE t",
        "SELECT '\\'; DROP TABLE t; --'",
        "SELECT $$a$$; DROP TABLE t",
        "SELECT $a$ $$ $a$; DROP TABLE t",
        "SELECT 1 --\n; DROP TABLE t",
        "SELECT E'\\\\'; DROP TABLE t",
        "SELECT U&'\\0027'; DROP TABLE t",
        "SELECT \"a;\"\"\"; DROP TABLE t",
        "SELECT 1 -- \r; DROP TABLE t",
        "select 1\u{a0}; DROP TABLE t",
        "SELECT 'a'\n'b'; DROP TABLE t",
    ];
    for sql in tricks {
        if let Ok(a) = run(sql) {
            assert!(
                a.statements.iter().any(|s| s.command == "DROP TABLE"),
                "{sql}: {a:#?}"
            );
        }
    }
}

#[test]
fn facts_serialize_for_explain() {
    let json = serde_json::to_value(one("COPY t TO PROGRAM 'id'")).unwrap();
    assert_eq!(json["classes"], serde_json::json!(["read"]));
    assert_eq!(
        json["copy"]["endpoint"],
        serde_json::json!({"kind": "program", "value": "id"})
    );
}
