//! The startup packet: which parameters a client may send, and no setting
//! that changes how SQL is lexed or what names mean, whether sent as a
//! parameter or inside `options` (`-c name=value`, as `PGOPTIONS` sends it).

use super::{Decision, builtin, session::REFUSED};
use crate::{proxy::hooks::SessionInfo, wire::PgError};

/// Startup parameters a client may send; anything else (they are settings)
/// is refused at connect time.
pub const STARTUP_ALLOW: &[&str] = &[
    "user",
    "database",
    "application_name",
    "fallback_application_name",
    "client_encoding",
    "options",
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

/// Startup parameters: an allow-list, and no setting that changes lexing or
/// meaning (they could also come in `options` as `-c name=value`).
pub fn check_startup(info: &SessionInfo) -> Result<(), PgError> {
    let refuse = |d: Decision| {
        PgError::fatal(REFUSED, format!("interceptor: connection refused by rule {}: {}", d.rule, d.reason))
    };
    for (name, value) in &info.parameters {
        let lower = name.to_ascii_lowercase();
        if lower == "replication" {
            return Err(PgError::fatal(REFUSED, "interceptor: replication connections are refused")
                .with_detail("streaming and logical replication bypass statement policy"));
        }
        if lower.starts_with("_pq_.") {
            continue; // protocol extensions: answered by NegotiateProtocolVersion
        }
        if !STARTUP_ALLOW.contains(&lower.as_str()) {
            return Err(PgError::fatal(
                REFUSED,
                format!("interceptor: startup parameter \"{name}\" is not on the allow-list"),
            )
            .with_hint("set it with SET after connecting, where policy can see it"));
        }
        if let Some(d) = builtin::check_setting(&lower, value, None) {
            return Err(refuse(d));
        }
        if lower == "options" {
            for (k, v) in parse_options(value) {
                if let Some(d) = builtin::check_setting(&k, &v, None) {
                    return Err(refuse(d));
                }
            }
        }
    }
    Ok(())
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
    fn options_parsing() {
        assert_eq!(
            parse_options("-c search_path=x --standard-conforming-strings=off -cgeqo=on -c a=b\\ c"),
            vec![
                ("search_path".into(), "x".into()),
                ("standard_conforming_strings".into(), "off".into()),
                ("geqo".into(), "on".into()),
                ("a".into(), "b c".into()),
            ]
        );
    }

}
