//! Guards that hold whatever the rules say: the dangerous-function list,
//! server-side COPY endpoints, settings that change how SQL is lexed, and
//! settings that change what names mean.
//!
//! An `allow` rule may let named dangerous functions (`allow_functions`) and
//! settings (`allow_settings`) through; lexing settings never pass, because
//! the proxy and the server must read the same SQL the same way.

use super::{Decision, engine::CompiledRule, model::Action};
use crate::sql::{CopyEndpoint, StatementFacts};

/// Functions refused by default: they read or write server files, reach
/// other servers, run SQL given as text, end other sessions or change
/// settings behind the statement's back.
pub const DANGEROUS_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_ls_*dir",
    "pg_stat_file",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_logdir_ls",
    "lo_import",
    "lo_export",
    "dblink*",
    "postgres_fdw*",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "set_config",
    "query_to_xml*",
    "cursor_to_xml*",
    "table_to_xml*",
    "schema_to_xml*",
    "database_to_xml*",
    "pg_advisory_lock*",
];

/// Settings that change how the server lexes SQL: never changed through the
/// proxy (the analyser reads SQL with PostgreSQL's defaults).
pub const LEXING_SETTINGS: &[&str] = &[
    "standard_conforming_strings",
    "backslash_quote",
    "client_encoding",
];

/// Settings that change what a statement means without being visible in it.
pub const GUARDED_SETTINGS: &[&str] = &[
    "search_path",
    "role",
    "session_authorization",
    "session_replication_role",
    "default_transaction_read_only",
    "transaction_read_only",
    "row_security",
    "allow_system_table_mods",
];

/// Whether changing guarded setting `name` to `value` can only narrow what
/// later statements do: `row_security = off` makes a query that row-level
/// security would filter fail instead (for a role without BYPASSRLS), so it
/// never shows more rows; pg_dump sends it at every start.
fn narrowing_value(name: &str, value: &str) -> bool {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    match name {
        "row_security" => matches!(
            v.as_str(),
            "off" | "false" | "0" | "no" | "on" | "true" | "1" | "yes" | "default"
        ),
        "default_transaction_read_only" | "transaction_read_only" => {
            matches!(v.as_str(), "on" | "true" | "1" | "yes")
        }
        _ => false,
    }
}

/// Whether `value` for lexing setting `name` keeps the defaults the analyser
/// assumes (`standard_conforming_strings = on`, UTF-8, `backslash_quote =
/// safe_encoding`).
fn lexing_value_ok(name: &str, value: &str) -> bool {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    match name {
        "standard_conforming_strings" => {
            matches!(v.as_str(), "on" | "true" | "1" | "yes" | "default")
        }
        "client_encoding" => matches!(v.as_str(), "utf8" | "utf-8" | "unicode" | "default"),
        "backslash_quote" => matches!(v.as_str(), "safe_encoding" | "default"),
        _ => true,
    }
}

/// Glob match for the function lists (only `*` is special).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    true
}

fn deny(rule: &str, reason: String) -> Decision {
    Decision {
        action: Action::Deny,
        rule: rule.to_owned(),
        reason,
        max_rows: None,
    }
}

/// Settings a statement changes, whether by SET or by the startup packet.
pub fn check_setting(name: &str, value: &str, rule: Option<&CompiledRule>) -> Option<Decision> {
    let name = name.to_ascii_lowercase();
    if LEXING_SETTINGS.contains(&name.as_str()) && !lexing_value_ok(&name, value) {
        return Some(deny(
            "builtin.lexing-setting",
            format!(
                "changing {name} to {value} would make the server read SQL differently from the \
                 interceptor; it is pinned"
            ),
        ));
    }
    let allowed = rule.is_some_and(|r| {
        r.spec
            .allow_settings
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&name))
    });
    if GUARDED_SETTINGS.contains(&name.as_str()) && !allowed && !narrowing_value(&name, value) {
        return Some(deny(
            "builtin.guarded-setting",
            format!(
                "changing {name} changes what later statements mean; no rule allows it (allow_settings)"
            ),
        ));
    }
    None
}

/// The guards for a statement an allow rule (`rule`) let through, or any
/// statement when `rule` is `None`. `None` = nothing to object to.
pub fn check(facts: &StatementFacts, rule: Option<&CompiledRule>) -> Option<Decision> {
    if let Some(copy) = &facts.copy {
        match &copy.endpoint {
            CopyEndpoint::Program(p) => {
                return Some(deny(
                    "builtin.copy-program",
                    format!("COPY ... PROGRAM runs `{p}` on the database server"),
                ));
            }
            CopyEndpoint::File(f) => {
                return Some(deny(
                    "builtin.copy-file",
                    format!(
                        "COPY ... {} '{f}' touches a file on the database server",
                        if copy.from { "FROM" } else { "TO" }
                    ),
                ));
            }
            CopyEndpoint::Client => {}
        }
    }
    for f in &facts.functions {
        let bare = f.rsplit('.').next().unwrap_or(f);
        let dangerous = DANGEROUS_FUNCTIONS.iter().any(|p| glob_match(p, bare));
        let allowed =
            rule.is_some_and(|r| r.spec.allow_functions.iter().any(|p| glob_match(p, bare)));
        if dangerous && !allowed {
            return Some(deny(
                "builtin.dangerous-function",
                format!(
                    "function {f} is on the dangerous-function list (server files, other servers, other sessions or settings)"
                ),
            ));
        }
    }
    for (name, value) in &facts.settings {
        if let Some(d) = check_setting(name, value, rule) {
            return Some(d);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("dblink*", "dblink_exec"));
        assert!(glob_match("dblink*", "dblink"));
        assert!(glob_match("pg_ls_*dir", "pg_ls_waldir"));
        assert!(!glob_match("pg_ls_*dir", "pg_ls_dirx"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("lo_import", "lo_import2"));
    }

    #[test]
    fn lexing_settings_are_pinned() {
        assert!(check_setting("standard_conforming_strings", "off", None).is_some());
        assert!(check_setting("standard_conforming_strings", "on", None).is_none());
        assert!(check_setting("client_encoding", "'LATIN1'", None).is_some());
        assert!(check_setting("client_encoding", "UTF8", None).is_none());
        assert!(check_setting("search_path", "secret", None).is_some());
        assert!(check_setting("application_name", "x", None).is_none());
    }

    #[test]
    fn settings_that_only_narrow_need_no_rule() {
        for v in ["off", "'off'", "false", "on"] {
            assert!(
                check_setting("row_security", v, None).is_none(),
                "row_security = {v}"
            );
        }
        assert!(check_setting("default_transaction_read_only", "on", None).is_none());
        let off = check_setting("default_transaction_read_only", "off", None).expect("off widens");
        assert_eq!(off.rule, "builtin.guarded-setting");
        assert!(check_setting("transaction_read_only", "false", None).is_some());
        assert!(check_setting("session_replication_role", "replica", None).is_some());
    }
}
