//! The startup packet: which parameters a client may send, and every
//! setting it makes (a parameter such as `search_path`, or `-c name=value`
//! inside `options` as `PGOPTIONS` and pgjdbc's `currentSchema` send them)
//! decided exactly as the equivalent `SET name TO 'value'` would be for that
//! identity: the same rules, the same `allow_settings`, the same built-in
//! guards (lexing settings stay pinned).

use super::{Action, Decision, PolicySet, builtin, engine::Context, session::REFUSED};
use crate::{proxy::hooks::SessionInfo, sql, wire::PgError};

/// Startup parameters that are not settings: the connection itself.
const CONNECTION_PARAMETERS: &[&str] = &[
    "user",
    "database",
    "options",
    "application_name",
    "fallback_application_name",
];

/// Settings drivers send at every connect (libpq, pgjdbc, asyncpg, Npgsql)
/// that change nothing policy looks at: accepted without a rule, still
/// checked by the built-in guards (a lexing setting keeps its pinned value).
pub const DRIVER_SETTINGS: &[&str] = &[
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "geqo",
    "bytea_output",
    "standard_conforming_strings",
];

/// Startup parameters: no replication; every setting decided like `SET`.
pub fn check_startup(info: &SessionInfo, set: &PolicySet, identity: &str) -> Result<(), PgError> {
    let ctx = Context {
        identity,
        target: &info.target,
        database: &info.database,
    };
    for (name, value) in &info.parameters {
        let lower = name.to_ascii_lowercase();
        if lower == "replication" {
            return Err(PgError::fatal(
                REFUSED,
                "interceptor: replication connections are refused",
            )
            .with_detail("streaming and logical replication bypass statement policy"));
        }
        if lower.starts_with("_pq_.") {
            continue; // protocol extensions: answered by NegotiateProtocolVersion
        }
        if lower == "options" {
            for (k, v) in parse_options(value) {
                decide_setting(set, &ctx, &k, &v, "options")?;
            }
        } else if !CONNECTION_PARAMETERS.contains(&lower.as_str()) {
            decide_setting(set, &ctx, &lower, value, "startup parameter")?;
        }
    }
    Ok(())
}

/// The statement a startup setting amounts to.
pub fn as_set_statement(name: &str, value: &str) -> String {
    format!(
        "SET \"{}\" TO '{}'",
        name.replace('"', "\"\""),
        value.replace('\'', "''")
    )
}

fn decide_setting(
    set: &PolicySet,
    ctx: &Context<'_>,
    name: &str,
    value: &str,
    how: &str,
) -> Result<(), PgError> {
    if DRIVER_SETTINGS.contains(&name) {
        return match builtin::check_setting(name, value, None) {
            None => Ok(()),
            Some(d) => Err(PgError::fatal(
                REFUSED,
                format!(
                    "interceptor: connection refused by rule {}: {how} setting {name}={value}: {}",
                    d.rule, d.reason
                ),
            )),
        };
    }
    let text = as_set_statement(name, value);
    let analysis = sql::analyze(&text, &sql::Limits::default());
    if analysis.is_err() {
        return Err(PgError::fatal(
            REFUSED,
            format!("interceptor: {how} setting {name} cannot be analysed"),
        )
        .with_hint("set it with SET after connecting, where policy can see it"));
    }
    let d: Decision = set.decide(ctx, &analysis);
    if d.action == Action::Allow {
        return Ok(());
    }
    Err(PgError::fatal(
        REFUSED,
        format!(
            "interceptor: connection refused by rule {}: {how} setting {name}={value}: {}",
            d.rule, d.reason
        ),
    )
    .with_detail(format!("decided as `{text}` for identity {}", ctx.identity)))
}

/// `-c name=value` / `-cname=value` / `--name=value` pairs of the startup
/// `options` parameter (backslash escapes a space, as libpq's PGOPTIONS).
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let kv = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_owned())
        } else {
            w.strip_prefix("--").map(str::to_owned)
        };
        if let Some((k, v)) = kv.as_deref().and_then(|kv| kv.split_once('=')) {
            out.push((k.replace('-', "_").to_ascii_lowercase(), v.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_startup_setting_is_the_set_statement_it_amounts_to() {
        assert_eq!(
            as_set_statement("search_path", "public"),
            "SET \"search_path\" TO 'public'"
        );
        assert_eq!(
            as_set_statement("a\"b", "it's"),
            "SET \"a\"\"b\" TO 'it''s'"
        );
        let a = crate::sql::analyze(
            &as_set_statement("search_path", "x, 'y"),
            &crate::sql::Limits::default(),
        )
        .unwrap();
        assert_eq!(
            a.statements[0].settings,
            [("search_path".to_owned(), "x, 'y".to_owned())]
        );
    }

    #[test]
    fn options_parsing() {
        assert_eq!(
            parse_options(
                "-c search_path=x --standard-conforming-strings=off -cgeqo=on -c a=b\\ c"
            ),
            vec![
                ("search_path".into(), "x".into()),
                ("standard_conforming_strings".into(), "off".into()),
                ("geqo".into(), "on".into()),
                ("a".into(), "b c".into()),
            ]
        );
    }
}
