//! `interceptor policy check|explain|test`.

use std::process::ExitCode;

use super::super::PolicyCommand;

pub(crate) fn policy_command(command: PolicyCommand) -> ExitCode {
    use interceptor::policy::{self, Subject, cases};
    let load = |dir: &std::path::Path| match policy::load_dir(dir) {
        Ok(set) => Some(set),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "policy set {} rejected: {} error(s)",
                dir.display(),
                errors.0.len()
            );
            None
        }
    };
    match command {
        PolicyCommand::Check { dir } => match load(&dir) {
            Some(set) => {
                println!(
                    "{}: ok ({} identities, {} rules)",
                    dir.display(),
                    set.identities.len(),
                    set.rules.len()
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        PolicyCommand::Explain {
            dir,
            identity,
            target,
            database,
            sql,
        } => {
            let Some(set) = load(&dir) else {
                return ExitCode::from(2);
            };
            let resolved = if identity.trim_start().starts_with('{') {
                match serde_json::from_str::<Subject>(&identity) {
                    Ok(subject) => cases::resolve_identity(&set, None, Some(&subject)),
                    Err(e) => {
                        eprintln!("interceptor: --identity is not a valid attestation: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                Some(identity.clone())
            };
            let analysis = interceptor::sql::analyze(&sql, &interceptor::sql::Limits::default());
            let decision = resolved.as_deref().map(|i| {
                set.decide(
                    &policy::Context {
                        identity: i,
                        target: &target,
                        database: &database,
                    },
                    &analysis,
                )
            });
            let out = serde_json::json!({
                "identity": resolved,
                "action": decision.as_ref().map_or("deny", |d| match d.action {
                    policy::Action::Allow => "allow",
                    policy::Action::Deny => "deny",
                    policy::Action::Approve => "approve",
                }),
                "rule": decision.as_ref().map_or("no-identity", |d| d.rule.as_str()),
                "reason": decision.as_ref().map_or_else(
                    || "the attestation matches no identity and the policy has no default identity".to_owned(),
                    |d| d.reason.clone()),
                "max_rows": decision.as_ref().and_then(|d| d.max_rows),
                "statements": analysis.as_ref().ok().map(|a| &a.statements),
                "analysis_error": analysis.as_ref().err().map(ToString::to_string),
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
        PolicyCommand::Test { dir } => {
            let Some(set) = load(&dir) else {
                return ExitCode::from(2);
            };
            let outcomes = match cases::run_dir(&set, &dir) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("interceptor: {e}");
                    return ExitCode::from(2);
                }
            };
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            for o in &outcomes {
                let got = o.decision.as_ref().map_or_else(
                    || "deny (no identity)".to_owned(),
                    |d| format!("{:?} by {}", d.action, d.rule).to_lowercase(),
                );
                let label = o
                    .case
                    .name
                    .clone()
                    .unwrap_or_else(|| o.case.sql.chars().take(60).collect());
                if o.passed {
                    println!("ok    {}  {label}  -> {got}", o.at);
                } else {
                    println!(
                        "FAIL  {}  {label}  -> {got}; expected {:?}{}",
                        o.at,
                        o.case.expect,
                        o.case
                            .rule
                            .as_ref()
                            .map(|r| format!(" by {r}"))
                            .unwrap_or_default()
                    );
                    if let Some(d) = &o.decision {
                        println!("      reason: {}", d.reason);
                    }
                }
            }
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if failed == 0 && !outcomes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
