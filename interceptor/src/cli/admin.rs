//! The commands that talk to the running daemon over the admin socket:
//! `token`, `approvals`, `status`.

use std::{path::PathBuf, process::ExitCode};

use interceptor::{admin, config::Config};

use super::super::{ApprovalsCommand, TokenCommand};

/// The admin socket: `--socket`, else the config's (`--config`, else the
/// default config file when it exists), else the default path.
pub(crate) fn admin_socket(
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(s) = socket {
        return Ok(s);
    }
    let path = config.unwrap_or_else(|| PathBuf::from("/etc/interceptor/interceptor.toml"));
    match Config::load(&path) {
        Ok(c) => Ok(c.admin.socket),
        Err(_) if !path.exists() => Ok(PathBuf::from(admin::DEFAULT_SOCKET)),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn token_command(
    command: TokenCommand,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
) -> ExitCode {
    let socket = match admin_socket(socket, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::from(2);
        }
    };
    let (op, params) = match &command {
        TokenCommand::Issue {
            identity,
            ttl,
            claims,
            ..
        } => {
            let mut map = serde_json::Map::new();
            for c in claims {
                let Some((k, v)) = c.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                    eprintln!("interceptor: --claim `{c}` is not name=value");
                    return ExitCode::from(2);
                };
                map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            (
                "token.issue",
                serde_json::json!({ "identity": identity, "ttl": ttl, "claims": map }),
            )
        }
        TokenCommand::Revoke { id, any_issuer } => (
            "token.revoke",
            serde_json::json!({ "id": id, "any_issuer": any_issuer }),
        ),
        TokenCommand::List { .. } => ("token.list", serde_json::json!({})),
    };
    let result = match admin::client::call(&socket, op, params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let when = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .map(|s| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                )
                .to_string()
            })
            .unwrap_or_default()
    };
    match command {
        TokenCommand::Issue { json: true, .. } | TokenCommand::List { json: true } => {
            println!("{result}")
        }
        TokenCommand::Issue { .. } => {
            println!("{}", text(&result, "token"));
            eprintln!(
                "issued token {} for identity {} (expires {}); revoke with: interceptor token revoke {}",
                text(&result, "id"),
                text(&result, "identity"),
                when(&result, "expires_at"),
                text(&result, "id")
            );
        }
        TokenCommand::Revoke { id, .. } => {
            let again = result
                .get("newly_revoked")
                .and_then(serde_json::Value::as_bool)
                == Some(false);
            println!(
                "{}token {id}",
                if again {
                    "already revoked: "
                } else {
                    "revoked "
                }
            );
        }
        TokenCommand::List { .. } => {
            let tokens = result
                .get("tokens")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for t in &tokens {
                println!(
                    "{}  {}  expires {}{}",
                    text(t, "id"),
                    text(t, "identity"),
                    when(t, "expires_at"),
                    if t.get("revoked").and_then(serde_json::Value::as_bool) == Some(true) {
                        "  revoked"
                    } else {
                        ""
                    }
                );
            }
            if tokens.is_empty() {
                println!("no unexpired host-issued tokens");
            }
        }
    }
    ExitCode::SUCCESS
}

pub(crate) fn approvals_command(
    command: ApprovalsCommand,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let socket = match admin_socket(socket, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::from(2);
        }
    };
    let (op, params) = match &command {
        ApprovalsCommand::List { all } => ("approvals.list", serde_json::json!({ "all": all })),
        ApprovalsCommand::Show { id } => ("approvals.show", serde_json::json!({ "id": id })),
        ApprovalsCommand::Approve { id, scope, reason } => (
            "approvals.approve",
            serde_json::json!({ "id": id, "scope": scope, "reason": reason }),
        ),
        ApprovalsCommand::Deny { id, reason } => (
            "approvals.deny",
            serde_json::json!({ "id": id, "reason": reason }),
        ),
    };
    let result = match admin::client::call(&socket, op, params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{result}");
        return ExitCode::SUCCESS;
    }
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let state = |v: &serde_json::Value| {
        v.get("status")
            .map(|s| text(s, "state"))
            .unwrap_or_default()
    };
    let line = |r: &serde_json::Value| {
        let have = r
            .get("approvals")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        let need = r
            .get("approvers_required")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        format!(
            "{}  {:<9}  {have}/{need}  {}  {}@{}/{}  rule {}  expires {}  {}",
            text(r, "id"),
            state(r),
            text(r, "mode"),
            text(r, "identity"),
            text(r, "target"),
            text(r, "database"),
            text(r, "rule"),
            text(r, "expires_at"),
            one_line(&text(r, "sql"), 80)
        )
    };
    match command {
        ApprovalsCommand::List { .. } => {
            let list = result
                .get("requests")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for r in &list {
                println!("{}", line(r));
            }
            if list.is_empty() {
                println!("no pending approval requests");
            }
        }
        ApprovalsCommand::Show { .. } => match serde_json::to_string_pretty(&result) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("interceptor: {e}"),
        },
        ApprovalsCommand::Approve { id, .. } => {
            let approvals = result
                .get("approvals")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            let needed = result
                .get("approvers_required")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            if state(&result) == "approved" {
                println!("approved {id}");
            } else {
                println!(
                    "approval recorded for {id}: {approvals} of {needed} approvers; still {}",
                    state(&result)
                );
            }
        }
        ApprovalsCommand::Deny { id, .. } => println!("denied {id}"),
    }
    ExitCode::SUCCESS
}

/// `text` on one line (control characters shown as spaces), cut at `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// `interceptor status`.
pub(crate) fn status_command(config: &std::path::Path, json_out: bool) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::from(2);
        }
    };
    match admin::client::call(&config.admin.socket, "status.get", serde_json::json!({})) {
        Ok(report) => {
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", interceptor::status::render(&report));
            }
            if report["health"] == "healthy" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let pins = interceptor::status::pins(&config.ebpf.pin_dir);
            let links = pins.iter().filter(|p| p.starts_with("link-")).count();
            let (state, code) = if links > 0 {
                (
                    format!(
                        "down, failing closed: {links} program link(s) pinned in {}, so watched connects to targets are refused",
                        config.ebpf.pin_dir.display()
                    ),
                    3,
                )
            } else {
                (
                    format!(
                        "down, and nothing pinned in {}: watched processes reach databases directly",
                        config.ebpf.pin_dir.display()
                    ),
                    4,
                )
            };
            if json_out {
                println!(
                    "{}",
                    serde_json::json!({ "health": "down", "failing_closed": links > 0, "pins": pins, "error": e.to_string(), "state": state })
                );
            } else {
                println!("interceptor: {state} ({e})");
            }
            ExitCode::from(code)
        }
    }
}
