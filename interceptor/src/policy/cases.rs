//! Policy test cases, kept beside the policies in `tests/*.toml`:
//!
//! ```toml
//! [[case]]
//! identity = "ci-psql"          # or: subject = { exe = "/usr/bin/psql", uid = 1000 }
//! target = "demo"
//! database = "demo"
//! sql = "DROP TABLE customers"
//! expect = "deny"
//! rule = "no-ddl"               # optional: the rule that must decide
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Action, Context, Decision, PolicySet, Subject};
use crate::{config::line_of, sql};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(rename = "case")]
    cases: Vec<Spanned<Case>>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Optional label.
    #[serde(default)]
    pub name: Option<String>,
    /// Identity name, used as is.
    #[serde(default)]
    pub identity: Option<String>,
    /// A (partial) attestation, matched against the identities.
    #[serde(default)]
    pub subject: Option<Subject>,
    /// Target name.
    #[serde(default = "any")]
    pub target: String,
    /// Database name.
    #[serde(default = "any")]
    pub database: String,
    /// The SQL sent.
    pub sql: String,
    /// The expected action.
    pub expect: Action,
    /// The rule expected to decide.
    #[serde(default)]
    pub rule: Option<String>,
}

fn any() -> String {
    "default".into()
}

/// Result of one case.
#[derive(Debug)]
pub struct Outcome {
    /// `file:line`.
    pub at: String,
    /// The case.
    pub case: Case,
    /// What was decided (`None`: the subject matched no identity).
    pub decision: Option<Decision>,
    /// Whether it is what the case expects.
    pub passed: bool,
}

/// Resolves the identity a case (or `policy explain`) speaks for.
pub fn resolve_identity(
    set: &PolicySet,
    identity: Option<&str>,
    subject: Option<&Subject>,
) -> Option<String> {
    match (identity, subject) {
        (Some(i), _) => Some(i.to_owned()),
        (None, Some(s)) => set.identify(s).map(str::to_owned),
        (None, None) => set.defaults.identity.clone(),
    }
}

/// Decides `sql` as the proxy would.
pub fn decide_sql(
    set: &PolicySet,
    identity: &str,
    target: &str,
    database: &str,
    sql_text: &str,
) -> Decision {
    let analysis = sql::analyze(sql_text, &sql::Limits::default());
    set.decide(
        &Context {
            identity,
            target,
            database,
        },
        &analysis,
    )
}

/// Runs every case file in `dir/tests`. Errors are unreadable or malformed
/// case files (file:line: message).
pub fn run_dir(set: &PolicySet, dir: &Path) -> Result<Vec<Outcome>, String> {
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tests)
        .map_err(|e| {
            format!(
                "{}: {e} (fix: put policy test cases in {}/*.toml)",
                tests.display(),
                tests.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let file: CaseFile = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", line_of(&text, s.start)))
                .unwrap_or_default();
            format!("{}{line}: {}", f.display(), e.message().trim())
        })?;
        for spanned in file.cases {
            let at = format!("{}:{}", f.display(), line_of(&text, spanned.span().start));
            let case = spanned.into_inner();
            let identity = resolve_identity(set, case.identity.as_deref(), case.subject.as_ref());
            let decision = identity
                .as_deref()
                .map(|i| decide_sql(set, i, &case.target, &case.database, &case.sql));
            let action = decision.as_ref().map_or(Action::Deny, |d| d.action);
            let passed = action == case.expect
                && case
                    .rule
                    .as_ref()
                    .is_none_or(|r| decision.as_ref().is_some_and(|d| &d.rule == r));
            out.push(Outcome {
                at,
                case,
                decision,
                passed,
            });
        }
    }
    Ok(out)
}
