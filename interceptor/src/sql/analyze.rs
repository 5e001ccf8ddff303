//! `analyze`: from the text a client sent to one [`StatementFacts`] per
//! statement.
//!
//! 1. The size limit.
//! 2. PostgreSQL's grammar (`pg_query`) splits the text: the statements and
//!    their boundaries are PostgreSQL's, so whatever the lexers disagree on
//!    (nested block comments, dollar quotes, E'' strings ...) the analysed
//!    text of each statement is exactly the text the server will run as that
//!    statement. The text between statements must be nothing but
//!    whitespace, comments and semicolons to sqlparser too.
//! 3. Each statement is tokenized by sqlparser, its nesting bounded, and
//!    parsed (PostgreSQL dialect, recursion limit); it must be exactly one
//!    statement.
//! 4. Facts from sqlparser's tree (`classify.rs`, `visit.rs`), checked against
//!    PostgreSQL's summary of the same text (`pgcheck.rs`): the same kind of
//!    statement, compatible classes, a write wherever PostgreSQL sees a
//!    nested INSERT/UPDATE/DELETE/MERGE, and every relation PostgreSQL sees.
//!    Functions PostgreSQL sees are added to sqlparser's.
//! 5. Utility statements sqlparser cannot parse (DO, CHECKPOINT, CREATE
//!    PROCEDURE, VACUUM (options) ...) whose kind alone decides their
//!    classes get their facts from PostgreSQL's summary; anything else
//!    sqlparser cannot parse is [`SqlError::Parse`].
//!
//! Stack: sqlparser's parser and visitor grow their stack on demand, the
//! depth of the tree is bounded before parsing, and libpg_query checks its
//! own stack depth; a caller only needs a thread with ~1 MiB of headroom
//! (tokio's 2 MiB worker stacks do).

use std::collections::BTreeSet;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::classify::classify;
use super::pgcheck::{self, PgStatement, Use};
use super::visit;
use super::{Analysis, CopyEndpoint, Limits, SqlError, StatementClass, StatementFacts};

/// Analyses every statement in `sql`; see the module documentation.
pub fn analyze(sql: &str, limits: &Limits) -> Result<Analysis, SqlError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(SqlError::TooLong {
            len: sql.len(),
            max: limits.max_sql_bytes,
        });
    }
    let ranges = pgcheck::split(sql, limits.max_depth)?;
    let mut prev = 0;
    for range in &ranges {
        check_gap(&sql[prev..range.start])?;
        prev = range.end;
    }
    check_gap(&sql[prev..])?;
    let statements = ranges
        .into_iter()
        .map(|range| {
            let pg = pgcheck::summarize(sql, range, limits.max_depth)?;
            statement(sql, &pg, limits)
        })
        .collect::<Result<_, _>>()?;
    Ok(Analysis { statements })
}

/// One statement's sqlparser tree, parsed within the same bounds as
/// [`analyze`] (used by masking to trace result columns). `text` must hold
/// exactly one statement, e.g. a [`super::StatementFacts::text`].
pub fn parse_one(text: &str, limits: &Limits) -> Result<sqlparser::ast::Statement, SqlError> {
    let dialect = PostgreSqlDialect {};
    let tokens = tokens(text, limits)?;
    let mut stmts = match Parser::new(&dialect)
        .with_recursion_limit(limits.max_depth)
        .with_tokens_with_locations(tokens)
        .parse_statements()
    {
        Ok(s) => s,
        Err(ParserError::RecursionLimitExceeded) => {
            return Err(SqlError::TooDeep(limits.max_depth));
        }
        Err(e) => return Err(SqlError::Parse(parse_message(&e))),
    };
    if stmts.len() != 1 {
        return Err(SqlError::Parse(format!(
            "expected one statement, found {}",
            stmts.len()
        )));
    }
    Ok(stmts.remove(0))
}

/// sqlparser's tokens for one statement, nesting bounded, with the one
/// spelling it cannot parse rewritten to what it means: `x
/// OPERATOR(pg_catalog.=) ANY (...)` (psql's and pg_dump's catalog queries)
/// becomes `x = ANY (...)`. `pg_catalog`'s operator is the built-in one the
/// bare spelling names (pg_catalog is searched first unless a search_path
/// lists it later, and then the qualified one is still the built-in one the
/// analysis assumes), and with ANY/ALL/SOME the right side is parenthesised,
/// so the grouping is the same.
fn tokens(text: &str, limits: &Limits) -> Result<Vec<TokenWithSpan>, SqlError> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    check_depth(&tokens, limits)?;
    Ok(catalog_operator_any(tokens))
}

fn catalog_operator_any(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none());
    let significant = |from: usize, toks: &[TokenWithSpan]| {
        (from..toks.len()).find(|&i| !matches!(toks[i].token, Token::Whitespace(_)))
    };
    if !tokens.iter().any(|t| is_word(&t.token, Keyword::OPERATOR)) {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        // OPERATOR ( pg_catalog . <op tokens> ) followed by ANY/ALL/SOME.
        let matched = (|| {
            if !is_word(&tokens[i].token, Keyword::OPERATOR) {
                return None;
            }
            let lp = significant(i + 1, &tokens)?;
            matches!(tokens[lp].token, Token::LParen).then_some(())?;
            let schema = significant(lp + 1, &tokens)?;
            matches!(&tokens[schema].token, Token::Word(w) if w.value.eq_ignore_ascii_case("pg_catalog")
                && (w.quote_style.is_none() || w.value == "pg_catalog"))
            .then_some(())?;
            let dot = significant(schema + 1, &tokens)?;
            matches!(tokens[dot].token, Token::Period).then_some(())?;
            let op_start = significant(dot + 1, &tokens)?;
            let rp =
                (op_start..tokens.len()).find(|&j| matches!(tokens[j].token, Token::RParen))?;
            let op: Vec<&TokenWithSpan> = tokens[op_start..rp]
                .iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .collect();
            let operator_like = !op.is_empty()
                && op.iter().all(|t| {
                    !matches!(
                        t.token,
                        Token::Word(_) | Token::LParen | Token::Comma | Token::SemiColon
                    )
                });
            operator_like.then_some(())?;
            let next = significant(rp + 1, &tokens)?;
            [Keyword::ANY, Keyword::ALL, Keyword::SOME]
                .iter()
                .any(|k| is_word(&tokens[next].token, *k))
                .then_some(())?;
            Some((op.into_iter().cloned().collect::<Vec<_>>(), rp))
        })();
        match matched {
            Some((op, rp)) => {
                out.extend(op);
                i = rp + 1;
            }
            None => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// Text PostgreSQL found no statement in must hold none for sqlparser either.
fn check_gap(gap: &str) -> Result<(), SqlError> {
    if gap.bytes().all(|b| b.is_ascii_whitespace() || b == b';') {
        return Ok(());
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, gap)
        .tokenize()
        .map_err(|e| {
            SqlError::Disagreement(format!(
                "sqlparser cannot tokenize text between statements: {e}"
            ))
        })?;
    match tokens
        .iter()
        .find(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
    {
        None => Ok(()),
        Some(t) => Err(SqlError::Disagreement(format!(
            "sqlparser sees `{t}` where PostgreSQL sees only comments or whitespace"
        ))),
    }
}

fn statement(sql: &str, pg: &PgStatement, limits: &Limits) -> Result<StatementFacts, SqlError> {
    let text = &sql[pg.range.clone()];
    let dialect = PostgreSqlDialect {};
    let tokens = tokens(text, limits)?;
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(limits.max_depth)
        .with_tokens_with_locations(tokens)
        .parse_statements();
    let mut stmts = match parsed {
        Ok(stmts) => stmts,
        Err(ParserError::RecursionLimitExceeded) => {
            return Err(SqlError::TooDeep(limits.max_depth));
        }
        Err(e) => {
            return pg_only(text, pg, limits).ok_or_else(|| SqlError::Parse(parse_message(&e)))?;
        }
    };
    if stmts.len() != 1 {
        return Err(SqlError::Disagreement(format!(
            "PostgreSQL sees one statement where sqlparser sees {}",
            stmts.len()
        )));
    }
    let stmt = stmts.remove(0);
    let c = classify(&stmt);
    let found = visit::collect(&stmt, c.plan_only);

    let mut classes = c.classes;
    classes.extend(found.classes);
    if c.unknown {
        classes.extend(pgcheck::kind_classes(&pg.kind).into_iter().flatten());
    }
    let (mut unbounded, mut limit) = (c.returns_rows && c.unbounded, c.limit);
    if found.select_into {
        classes.remove(&StatementClass::Read);
        (unbounded, limit) = (false, None);
    }
    let mut reads: BTreeSet<_> = c.reads.into_iter().collect();
    reads.extend(found.reads);
    let mut writes: BTreeSet<_> = c.writes.into_iter().collect();
    writes.extend(found.writes);

    // Cross-check with PostgreSQL.
    let disagree = |what: String| Err(SqlError::Disagreement(what));
    if !c.pg_kinds.is_empty() && !c.pg_kinds.contains(&pg.kind.as_str()) {
        return disagree(format!(
            "sqlparser reads a {} statement, PostgreSQL a {}",
            c.command, pg.kind
        ));
    }
    if !c.inner_pg_kinds.is_empty() {
        let inner = pg.nested.first().map_or("nothing", String::as_str);
        if !c.inner_pg_kinds.contains(&inner) {
            return disagree(format!(
                "{} of different statements: PostgreSQL sees {inner}",
                c.command
            ));
        }
    }
    if let Some(acceptable) = pgcheck::acceptable_classes(&pg.kind)
        && acceptable.is_disjoint(&classes)
    {
        return disagree(format!(
            "sqlparser's classes {classes:?} do not fit PostgreSQL's {}",
            pg.kind
        ));
    }
    let code_or_plan = c.plan_only
        || matches!(
            pg.kind.as_str(),
            "ExplainStmt" | "CreateFunctionStmt" | "RuleStmt" | "CreateTrigStmt"
        );
    let nested_dml = pg.nested.iter().any(|k| {
        matches!(
            k.as_str(),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
        )
    });
    if nested_dml && !code_or_plan && !classes.contains(&StatementClass::Write) {
        return disagree("PostgreSQL sees a data-modifying statement sqlparser does not".into());
    }
    // EXPLAIN of a write that sqlparser takes for a plan only: PostgreSQL's
    // own reading of the options decides whether the write runs.
    if c.plan_only && nested_dml && pgcheck::explain_analyzes(text, limits.max_depth)? {
        return disagree(
            "PostgreSQL runs the explained statement (ANALYZE) where sqlparser only plans it"
                .into(),
        );
    }
    for (rel, used) in &pg.tables {
        let seen = match used {
            // PostgreSQL's summary counts LOCK's tables as targets; an
            // ACCESS SHARE lock is SELECT's, read by the classifier.
            Use::Write if !c.plan_only && pg.kind != "LockStmt" => writes.contains(rel),
            _ => writes.contains(rel) || reads.contains(rel),
        };
        if !seen {
            let name = rel
                .schema
                .as_ref()
                .map_or_else(|| rel.name.clone(), |s| format!("{s}.{}", rel.name));
            return disagree(format!(
                "PostgreSQL sees relation {name} that sqlparser does not"
            ));
        }
    }

    let mut functions: BTreeSet<String> = c.functions.into_iter().collect();
    functions.extend(found.functions);
    let found_dynamic_set_config = functions.contains("set_config");
    functions.extend(pg.functions.iter().cloned());
    // `set_config` with a literal name is the SET of that setting (the
    // visitor recorded it in `settings`); PostgreSQL's summary lists every
    // call, so its full tree says whether any call computes the name.
    if functions.contains("set_config")
        && !found_dynamic_set_config
        && !pgcheck::tree_facts(text, limits.max_depth)?
            .functions
            .contains("set_config")
    {
        functions.remove("set_config");
    }
    let mut settings = c.settings;
    settings.extend(found.settings);
    if functions.contains("set_config")
        && let Some(setting) = pgcheck::pg_settings_set_config(text, limits.max_depth)?
    {
        functions.remove("set_config");
        settings.push(setting);
        classes.insert(StatementClass::Session);
    }
    Ok(StatementFacts {
        text: text.trim().to_owned(),
        command: c.command,
        nested: nested_commands(&pg.nested),
        classes,
        reads,
        writes,
        functions,
        databases: pgcheck::named_databases(text, &pg.kind, limits.max_depth)?,
        copy: c.copy,
        settings,
        unbounded,
        limit,
    })
}

/// Facts of a statement only PostgreSQL's grammar parses: a COPY, or a
/// statement whose kind alone decides its classes. Relations and functions
/// come from PostgreSQL's full tree: every relation the statement names is a
/// write (a read for FETCH/MOVE), every function call counts.
fn pg_only(
    text: &str,
    pg: &PgStatement,
    limits: &Limits,
) -> Option<Result<StatementFacts, SqlError>> {
    let is_copy = pg.kind == "CopyStmt";
    let is_set = pg.kind == "VariableSetStmt";
    let kind_classes = pgcheck::kind_classes(&pg.kind);
    if !is_copy && !is_set && kind_classes.is_none() {
        return None;
    }
    let databases = match pgcheck::named_databases(text, &pg.kind, limits.max_depth) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    Some(pgcheck::tree_facts(text, limits.max_depth).map(|tree| {
        let mut classes: BTreeSet<StatementClass> =
            kind_classes.into_iter().flatten().copied().collect();
        let mut reads = BTreeSet::new();
        let mut writes = BTreeSet::new();
        let (mut unbounded, mut copy) = (false, None);
        let mut command = pgcheck::command_for_kind(&pg.kind, text);
        let mut settings = Vec::new();
        if let Some((cmd, class, setting)) = tree.setting.filter(|_| is_set) {
            cmd.clone_into(&mut command);
            classes.insert(class);
            settings.push(setting);
        }
        if let Some(facts) = tree.copy.filter(|_| is_copy) {
            // COPY t FROM / COPY t TO / COPY (query) TO
            let own = tree.copy_relation;
            for rel in tree.relations {
                if facts.from && own.as_ref() == Some(&rel) {
                    writes.insert(rel);
                } else {
                    reads.insert(rel);
                }
            }
            if facts.from {
                classes.insert(StatementClass::Write);
            } else {
                classes.insert(StatementClass::Read);
                unbounded = facts.endpoint == CopyEndpoint::Client;
            }
            if pg.nested.iter().any(|k| {
                matches!(
                    k.as_str(),
                    "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
                )
            }) {
                classes.insert(StatementClass::Write);
            }
            copy = Some(facts);
        } else if classes.iter().all(|c| *c == StatementClass::Read) {
            reads = tree.relations;
        } else {
            writes = tree.relations;
        }
        let mut functions = tree.functions;
        functions.extend(pg.functions.iter().cloned());
        StatementFacts {
            text: text.trim().to_owned(),
            command,
            nested: nested_commands(&pg.nested),
            classes,
            reads,
            writes,
            functions,
            databases,
            copy,
            settings,
            unbounded,
            limit: None,
        }
    }))
}

/// Command names of the nested statement kinds PostgreSQL reports.
fn nested_commands(kinds: &[String]) -> BTreeSet<String> {
    kinds
        .iter()
        .filter_map(|k| match k.as_str() {
            "InsertStmt" => Some("INSERT"),
            "UpdateStmt" => Some("UPDATE"),
            "DeleteStmt" => Some("DELETE"),
            "MergeStmt" => Some("MERGE"),
            "SelectStmt" => Some("SELECT"),
            _ => None,
        })
        .map(str::to_owned)
        .collect()
}

fn parse_message(e: &ParserError) -> String {
    match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "recursion limit exceeded".into(),
    }
}

/// Bounds the depth of the tree sqlparser would build, from its tokens:
/// brackets nested deeper than `max_depth`, or a run of operators at one
/// nesting level longer than `64 * max_depth` (`1+1+1...` parses without
/// recursion but builds a tree as deep as the run, and dropping that tree
/// recurses).
fn check_depth(tokens: &[TokenWithSpan], limits: &Limits) -> Result<(), SqlError> {
    let max_run = limits.max_depth.saturating_mul(64);
    let too_deep = Err(SqlError::TooDeep(limits.max_depth));
    let mut runs: Vec<usize> = vec![0];
    for t in tokens {
        match &t.token {
            Token::LParen | Token::LBracket => {
                if runs.len() > limits.max_depth {
                    return too_deep;
                }
                runs.push(0);
            }
            Token::RParen | Token::RBracket => {
                if runs.len() > 1 {
                    runs.pop();
                }
            }
            Token::Comma | Token::SemiColon => {
                if let Some(run) = runs.last_mut() {
                    *run = 0;
                }
            }
            Token::Word(w)
                if !matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::IN
                ) => {}
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::Placeholder(_)
            | Token::Period
            | Token::EOF => {}
            _ => {
                if let Some(run) = runs.last_mut() {
                    *run += 1;
                    if *run > max_run {
                        return too_deep;
                    }
                }
            }
        }
    }
    Ok(())
}
