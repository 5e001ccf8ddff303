//! Deciding: which identity a connection is, and what happens to each
//! statement it sends.

use globset::GlobMatcher;
use std::sync::Arc;

use super::{
    Decision, Subject, TokenFacts, builtin,
    model::{Action, Defaults, IdentitySpec, RuleSpec, TokenMode, Unparseable},
};
use crate::sql::{Analysis, Relation, SqlError, StatementFacts};

/// The rule of SQL PostgreSQL's own grammar rejects: refused with the
/// server's SQLSTATE 42601 (syntax_error) rather than 42501.
pub const SYNTAX_ERROR_RULE: &str = "builtin.syntax-error";

/// Where a statement is going: the session's identity and destination.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Identity name (from [`PolicySet::identify`]).
    pub identity: &'a str,
    /// Target name from the daemon config.
    pub target: &'a str,
    /// Database name from the startup packet.
    pub database: &'a str,
}

/// A glob list; empty means "no constraint".
#[derive(Debug, Clone, Default)]
pub struct Globs(Vec<GlobMatcher>);

impl Globs {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        patterns
            .iter()
            .map(|p| {
                globset::GlobBuilder::new(p)
                    .literal_separator(false)
                    .build()
                    .map(|g| g.compile_matcher())
                    .map_err(|e| format!("bad glob `{p}`: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(Globs)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn any(&self, text: &str) -> bool {
        self.0.iter().any(|g| g.is_match(text))
    }
}

/// An identity with its globs compiled.
#[derive(Debug, Clone)]
pub struct CompiledIdentity {
    pub spec: IdentitySpec,
    user: Globs,
    exe: Globs,
    cgroup: Globs,
    container: Globs,
    parent: Globs,
    ancestor: Globs,
    /// Claim name -> accepted values.
    claims: Vec<(String, Globs)>,
    issuer: Globs,
    token: Option<TokenMode>,
}

impl CompiledIdentity {
    pub fn new(spec: IdentitySpec) -> Result<Self, String> {
        Ok(Self {
            user: Globs::new(&spec.user)?,
            exe: Globs::new(&spec.exe)?,
            cgroup: Globs::new(&spec.cgroup)?,
            container: Globs::new(&spec.container_id)?,
            parent: Globs::new(&spec.parent_exe)?,
            ancestor: Globs::new(&spec.ancestor_exe)?,
            claims: spec
                .claims
                .iter()
                .map(|(k, v)| Ok((k.clone(), Globs::new(&v.patterns())?)))
                .collect::<Result<_, String>>()?,
            issuer: Globs::new(&spec.issuer)?,
            token: spec.token_mode(),
            spec,
        })
    }

    /// Whether the identity involves a token (a password is asked for).
    pub fn uses_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a token from issuer `name` (`iss`) can select this identity
    /// at all (claims aside): it uses tokens and its `issuer` selector, if
    /// any, admits the issuer.
    pub fn accepts_issuer(&self, name: &str, iss: &str) -> bool {
        self.uses_token()
            && (self.issuer.is_empty() || self.issuer.any(name) || self.issuer.any(iss))
    }

    /// Whether every selector given holds for `s`: the attestation
    /// selectors and the token's. A selector over a fact the subject lacks
    /// (no user name, no container, no token) does not hold. A host-issued
    /// token selects only the identity it is bound to.
    pub fn matches(&self, s: &Subject) -> bool {
        self.matches_attestation(s) && self.matches_token(s.token.as_ref())
    }

    fn matches_token(&self, token: Option<&TokenFacts>) -> bool {
        let bound_here = |t: &TokenFacts| {
            t.bound_identity
                .as_deref()
                .is_none_or(|b| b == self.spec.name)
        };
        match (self.token, token) {
            (None, _) | (Some(TokenMode::Optional), None) => true,
            (Some(TokenMode::Optional), Some(t)) => bound_here(t),
            (Some(TokenMode::Required), None) => false,
            (Some(TokenMode::Required), Some(t)) => {
                bound_here(t)
                    && (self.issuer.is_empty()
                        || self.issuer.any(&t.issuer)
                        || self.issuer.any(&t.iss))
                    && self
                        .claims
                        .iter()
                        .all(|(k, g)| t.claims.get(k).is_some_and(|v| g.any(v)))
            }
        }
    }

    /// The attestation selectors only.
    pub fn matches_attestation(&self, s: &Subject) -> bool {
        let opt = |g: &Globs, v: Option<&str>| g.is_empty() || v.is_some_and(|v| g.any(v));
        (self.spec.uid.is_empty() || s.uid.is_some_and(|u| self.spec.uid.contains(&u)))
            && opt(&self.user, s.user.as_deref())
            && opt(&self.exe, s.exe.as_deref())
            && (self.spec.exe_sha256.is_empty()
                || s.exe_sha256.as_deref().is_some_and(|h| {
                    self.spec
                        .exe_sha256
                        .iter()
                        .any(|w| w.eq_ignore_ascii_case(h))
                }))
            && opt(&self.cgroup, s.cgroup.as_deref())
            && opt(&self.container, s.container_id.as_deref())
            && opt(&self.parent, s.parent_exes.first().map(String::as_str))
            && (self.ancestor.is_empty() || s.parent_exes.iter().any(|p| self.ancestor.any(p)))
    }
}

/// A rule with its globs compiled.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub spec: RuleSpec,
    databases: Globs,
    tables: Globs,
    functions: Globs,
}

impl CompiledRule {
    pub fn new(spec: RuleSpec) -> Result<Self, String> {
        let lower = |v: &Option<Vec<String>>| -> Vec<String> {
            v.iter().flatten().map(|s| s.to_ascii_lowercase()).collect()
        };
        Ok(Self {
            databases: Globs::new(spec.databases.as_deref().unwrap_or_default())?,
            tables: Globs::new(&lower(&spec.tables))?,
            functions: Globs::new(&lower(&spec.functions))?,
            spec,
        })
    }

    fn applies_to(&self, ctx: &Context<'_>) -> bool {
        let s = &self.spec;
        s.identities.iter().any(|i| i == "*" || i == ctx.identity)
            && s.targets
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == ctx.target))
    }

    /// A rule's `databases` and the statement: an `allow` rule must cover
    /// the database connected to and every database the statement names
    /// (`DROP DATABASE x` from `postgres`); a `deny`/`approve` rule matches
    /// when either is listed.
    fn covers_databases(&self, ctx: &Context<'_>, f: &StatementFacts) -> bool {
        if self.spec.databases.is_none() {
            return true;
        }
        let connected = self.databases.any(ctx.database);
        if self.spec.action == Action::Allow {
            connected && f.databases.iter().all(|d| self.databases.any(d))
        } else {
            connected || f.databases.iter().any(|d| self.databases.any(d))
        }
    }

    /// `allow` rules must cover every fact; `deny`/`approve` rules match when
    /// any fact touches one of their lists (a rule with no lists matches all).
    fn matches(&self, f: &StatementFacts) -> bool {
        let s = &self.spec;
        let relations = || f.reads.iter().chain(&f.writes).map(qualified);
        let listed = |list: &Vec<String>, cmd: &str| list.iter().any(|c| command_matches(c, cmd));
        // Touches: the statement or any statement nested in it is listed.
        let command_in = |list: &Vec<String>| {
            listed(list, &f.command) || f.nested.iter().any(|n| listed(list, n))
        };
        // Covered: the statement and every nested one are listed.
        let command_covered = |list: &Vec<String>| {
            listed(list, &f.command) && f.nested.iter().all(|n| listed(list, n))
        };
        if s.action == Action::Allow {
            s.classes
                .as_ref()
                .is_none_or(|c| f.classes.iter().all(|k| c.contains(k)))
                && s.commands.as_ref().is_none_or(command_covered)
                && (s.tables.is_none() || relations().all(|r| self.tables.any(&r)))
                && (s.functions.is_none() || f.functions.iter().all(|x| self.functions.any(x)))
        } else {
            let lists = [
                s.classes.is_some(),
                s.commands.is_some(),
                s.tables.is_some(),
                s.functions.is_some(),
            ];
            if !lists.contains(&true) {
                return true;
            }
            s.classes
                .as_ref()
                .is_some_and(|c| f.classes.iter().any(|k| c.contains(k)))
                || s.commands.as_ref().is_some_and(command_in)
                || (s.tables.is_some() && relations().any(|r| self.tables.any(&r)))
                || (s.functions.is_some() && f.functions.iter().any(|x| self.functions.any(x)))
        }
    }
}

/// A rule's command matches a statement's command when equal or a prefix of
/// whole words: `"DROP"` matches `DROP TABLE`, `"TRUNCATE"` matches
/// `TRUNCATE TABLE` (case-insensitive).
fn command_matches(rule: &str, command: &str) -> bool {
    let (r, c) = (
        rule.trim().to_ascii_uppercase(),
        command.to_ascii_uppercase(),
    );
    c == r || c.strip_prefix(&r).is_some_and(|rest| rest.starts_with(' '))
}

/// `schema.name` as rules see it: unqualified names resolve as PostgreSQL's
/// default search_path would (`pg_catalog` first for `pg_*`, else `public`).
pub fn qualified(r: &Relation) -> String {
    match &r.schema {
        Some(s) => format!("{s}.{}", r.name),
        None if r.name.starts_with("pg_") => format!("pg_catalog.{}", r.name),
        None => format!("public.{}", r.name),
    }
}

/// A loaded, validated, compiled policy set. Immutable: a reload builds a
/// new one and swaps it in whole.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub defaults: Defaults,
    pub identities: Vec<CompiledIdentity>,
    pub rules: Vec<CompiledRule>,
    /// Sensitive columns, masking profiles and detectors.
    pub masking: Arc<crate::mask::MaskPolicy>,
}

impl PolicySet {
    /// Whether a connection from this (attested) subject must be asked for
    /// a token: the first identity whose attestation selectors hold uses
    /// one. (An earlier token-less identity would win anyway.)
    pub fn wants_token(&self, s: &Subject) -> bool {
        self.identities
            .iter()
            .find(|i| i.matches_attestation(s))
            .is_some_and(CompiledIdentity::uses_token)
    }

    /// The identity a subject is: the first whose selectors all hold, else
    /// the default identity, else `None` (refuse the connection).
    pub fn identify(&self, s: &Subject) -> Option<&str> {
        self.identities
            .iter()
            .find(|i| i.matches(s))
            .map(|i| i.spec.name.as_str())
            .or(self.defaults.identity.as_deref())
    }

    fn unparseable(&self, identity: &str) -> Unparseable {
        self.identities
            .iter()
            .find(|i| i.spec.name == identity)
            .and_then(|i| i.spec.unparseable)
            .unwrap_or(self.defaults.unparseable)
    }

    /// Decides one statement.
    pub fn decide_statement(&self, ctx: &Context<'_>, f: &StatementFacts) -> Decision {
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.applies_to(ctx) && r.covers_databases(ctx, f) && r.matches(f))
        else {
            // Guards first: their reason is more precise than "no rule".
            if let Some(d) = builtin::check(f, None) {
                return d;
            }
            return Decision {
                action: Action::Deny,
                rule: "default-deny".into(),
                reason: format!(
                    "no rule allows {} for identity {} on {}/{}",
                    f.command, ctx.identity, ctx.target, ctx.database
                ),
                max_rows: None,
            };
        };
        let s = &rule.spec;
        let reason = s.reason.clone().unwrap_or_else(|| match s.action {
            Action::Allow => format!("{} allowed", f.command),
            Action::Deny => format!("{} is denied for identity {}", f.command, ctx.identity),
            Action::Approve => format!("{} needs a person's approval", f.command),
        });
        if s.action == Action::Allow {
            if let Some(d) = builtin::check(f, Some(rule)) {
                return d;
            }
            let max_rows = s.max_rows.or(self.defaults.max_rows);
            let is_read = f.classes.contains(&crate::sql::StatementClass::Read);
            if s.require_limit && is_read {
                let over = match (f.limit, max_rows) {
                    (Some(l), Some(m)) => l > m,
                    _ => f.unbounded,
                };
                if over {
                    return Decision {
                        action: Action::Deny,
                        rule: s.id.clone(),
                        reason: format!(
                            "a read without a LIMIT{} is refused by rule {}",
                            max_rows
                                .map(|m| format!(" of at most {m}"))
                                .unwrap_or_default(),
                            s.id
                        ),
                        max_rows: None,
                    };
                }
            }
            return Decision {
                action: Action::Allow,
                rule: s.id.clone(),
                reason,
                max_rows,
            };
        }
        Decision {
            action: s.action,
            rule: s.id.clone(),
            reason,
            max_rows: None,
        }
    }

    /// Decides one client message (possibly several statements): refused
    /// whole if any statement is, naming that statement.
    pub fn decide(&self, ctx: &Context<'_>, analysis: &Result<Analysis, SqlError>) -> Decision {
        let analysis = match analysis {
            Ok(a) => a,
            Err(e) => {
                let passable = matches!(e, SqlError::Parse(_));
                if passable && self.unparseable(ctx.identity) == Unparseable::Allow {
                    return Decision {
                        action: Action::Allow,
                        rule: "builtin.unparseable".into(),
                        reason: format!(
                            "unanalysed SQL let through by policy for identity {}: {e}",
                            ctx.identity
                        ),
                        max_rows: self.defaults.max_rows,
                    };
                }
                // The server would reject it too: refused with PostgreSQL's
                // own syntax_error (42601), as a client that branches on it
                // expects; never forwarded.
                let rule = if matches!(e, SqlError::PgParse(_)) {
                    SYNTAX_ERROR_RULE
                } else {
                    "builtin.unparseable"
                };
                return Decision {
                    action: Action::Deny,
                    rule: rule.into(),
                    reason: format!("{e}; statements that cannot be analysed are refused"),
                    max_rows: None,
                };
            }
        };
        let many = analysis.statements.len() > 1;
        let mut max_rows: Option<u64> = None;
        let mut last = None;
        for (i, f) in analysis.statements.iter().enumerate() {
            let mut d = self.decide_statement(ctx, f);
            if d.action != Action::Allow {
                if many {
                    d.reason = format!(
                        "statement {} of {} ({}): {}",
                        i + 1,
                        analysis.statements.len(),
                        f.command,
                        d.reason
                    );
                }
                return d;
            }
            max_rows = match (max_rows, d.max_rows) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last = Some(d);
        }
        match last {
            Some(mut d) => {
                d.max_rows = max_rows;
                d
            }
            None => Decision {
                action: Action::Allow,
                rule: "builtin.empty".into(),
                reason: "empty query".into(),
                max_rows: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::PathBuf};

    use super::*;
    use crate::sql::{CopyEndpoint, CopyFacts, StatementClass as C};

    fn set(text: &str) -> PolicySet {
        super::super::store::load_sources(&[(PathBuf::from("t.toml"), text.to_owned())]).unwrap()
    }

    fn facts(
        command: &str,
        classes: &[C],
        reads: &[&str],
        writes: &[&str],
        functions: &[&str],
    ) -> StatementFacts {
        let rel = |s: &&str| match s.split_once('.') {
            Some((a, b)) => Relation {
                schema: Some(a.into()),
                name: b.into(),
            },
            None => Relation {
                schema: None,
                name: (*s).into(),
            },
        };
        StatementFacts {
            text: command.into(),
            command: command.into(),
            nested: BTreeSet::new(),
            classes: classes.iter().copied().collect(),
            reads: reads.iter().map(rel).collect(),
            writes: writes.iter().map(rel).collect(),
            functions: functions.iter().map(|s| (*s).to_owned()).collect(),
            databases: BTreeSet::new(),
            copy: None,
            settings: vec![],
            unbounded: true,
            limit: None,
        }
    }

    const POLICY: &str = r#"
[[identity]]
name = "ci"
exe = ["/usr/lib/postgresql/*/bin/psql"]
uid = [1000]

[[identity]]
name = "agent"
cgroup = ["/agents/**"]

[[rule]]
id = "no-secrets"
identities = ["*"]
tables = ["secret.*"]
action = "deny"
reason = "the secret schema is off limits"

[[rule]]
id = "ci-read"
identities = ["ci"]
classes = ["read", "transaction"]
tables = ["public.*", "pg_catalog.*"]
action = "allow"
max_rows = 100

[[rule]]
id = "ci-delete"
identities = ["ci"]
commands = ["DELETE"]
action = "approve"

[[rule]]
id = "agent-read"
identities = ["agent"]
classes = ["read"]
action = "allow"
require_limit = true
max_rows = 50
"#;

    fn ctx(identity: &str) -> Context<'_> {
        Context {
            identity,
            target: "db",
            database: "app",
        }
    }

    #[test]
    fn databases_a_statement_names_must_be_covered_by_an_allow_rule() {
        let s = set(r#"
[[identity]]
name = "ci"
uid = [1000]

[[rule]]
id = "no-prod"
identities = ["*"]
databases = ["prod"]
action = "deny"

[[rule]]
id = "test-dbs"
identities = ["ci"]
commands = ["CREATE DATABASE", "DROP DATABASE"]
databases = ["postgres", "test_*"]
action = "allow"
"#);
        let decide = |db: &str, sql: &str| {
            let ctx = Context {
                identity: "ci",
                target: "db",
                database: db,
            };
            s.decide(
                &ctx,
                &crate::sql::analyze(sql, &crate::sql::Limits::default()),
            )
            .rule
        };
        assert_eq!(decide("postgres", "CREATE DATABASE test_app"), "test-dbs");
        assert_eq!(
            decide("postgres", "DROP DATABASE IF EXISTS \"test_app\""),
            "test-dbs"
        );
        // Another database, or a copy of one, is not a test database.
        assert_eq!(decide("postgres", "DROP DATABASE app"), "default-deny");
        assert_eq!(
            decide("postgres", "CREATE DATABASE test_app TEMPLATE app"),
            "default-deny"
        );
        assert_eq!(
            decide("postgres", "ALTER DATABASE test_app RENAME TO app"),
            "default-deny"
        );
        // A deny rule matches when it names the database the statement touches.
        assert_eq!(decide("postgres", "DROP DATABASE prod"), "no-prod");
        assert_eq!(
            decide("postgres", "CREATE DATABASE test_x TEMPLATE prod"),
            "no-prod"
        );
        assert_eq!(decide("app", "CREATE DATABASE test_app"), "default-deny");
    }

    #[test]
    fn identity_selectors_all_hold() {
        let s = set(POLICY);
        let mut subj = Subject {
            uid: Some(1000),
            exe: Some("/usr/lib/postgresql/15/bin/psql".into()),
            cgroup: Some("/ci/job1".into()),
            ..Subject::default()
        };
        assert_eq!(s.identify(&subj), Some("ci"));
        subj.uid = Some(0);
        assert_eq!(s.identify(&subj), None, "uid selector must hold too");
        subj.cgroup = Some("/agents/devin/1".into());
        assert_eq!(s.identify(&subj), Some("agent"));
    }

    const TOKEN_POLICY: &str = r#"
[[identity]]
name = "migrations"
exe = ["/usr/lib/postgresql/*/bin/psql"]
issuer = ["github"]
claims = { repository = "org/app", ref = ["refs/heads/main", "refs/heads/release/*"] }

[[identity]]
name = "run-token"
exe = ["/usr/lib/postgresql/*/bin/psql"]
token = "required"
issuer = ["host"]

[[identity]]
name = "gitlab"
claims = { project_path = "group/*", pipeline_id = "*" }

[[rule]]
id = "all"
identities = ["*"]
action = "allow"
"#;

    fn token(issuer: &str, claims: &[(&str, &str)], bound: Option<&str>) -> TokenFacts {
        TokenFacts {
            issuer: issuer.into(),
            iss: format!("https://{issuer}.example"),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            bound_identity: bound.map(str::to_owned),
        }
    }

    #[test]
    fn token_claims_select_identities_beside_the_attestation() {
        let s = set(TOKEN_POLICY);
        let psql = Subject {
            exe: Some("/usr/lib/postgresql/15/bin/psql".into()),
            ..Subject::default()
        };
        let other = Subject {
            exe: Some("/usr/bin/python3".into()),
            ..Subject::default()
        };
        assert!(s.wants_token(&psql));
        assert!(
            s.wants_token(&other),
            "the gitlab identity has no attestation selectors"
        );
        // No token: nothing matches.
        assert_eq!(s.identify(&psql), None);
        let gh = |repo: &str, r: &str| Subject {
            token: Some(token("github", &[("repository", repo), ("ref", r)], None)),
            ..psql.clone()
        };
        assert_eq!(
            s.identify(&gh("org/app", "refs/heads/main")),
            Some("migrations")
        );
        assert_eq!(
            s.identify(&gh("org/app", "refs/heads/release/2.1")),
            Some("migrations")
        );
        assert_eq!(s.identify(&gh("org/app", "refs/heads/feature")), None);
        assert_eq!(
            s.identify(&gh("org/other", "refs/heads/main")),
            None,
            "another repository"
        );
        // The right token from the wrong process.
        let mut wrong_exe = gh("org/app", "refs/heads/main");
        wrong_exe.exe = Some("/usr/bin/python3".into());
        assert_eq!(s.identify(&wrong_exe), None);
        // Same claims from another issuer.
        let mut forged = gh("org/app", "refs/heads/main");
        forged.token.as_mut().unwrap().issuer = "gitlab".into();
        forged.token.as_mut().unwrap().iss = "https://gitlab.example".into();
        assert_eq!(s.identify(&forged), None);
        // A host token selects only the identity it is bound to.
        let host = |bound: &str| Subject {
            token: Some(token("host", &[], Some(bound))),
            ..psql.clone()
        };
        assert_eq!(s.identify(&host("run-token")), Some("run-token"));
        assert_eq!(
            s.identify(&host("migrations")),
            None,
            "host tokens fail the github issuer selector"
        );
        let host_with_claims = Subject {
            token: Some(token(
                "host",
                &[("project_path", "group/x"), ("pipeline_id", "7")],
                Some("run-token"),
            )),
            ..other.clone()
        };
        assert_eq!(
            s.identify(&host_with_claims),
            None,
            "bound to run-token, whose exe selector fails"
        );
        let gl = Subject {
            token: Some(token(
                "gitlab",
                &[("project_path", "group/x"), ("pipeline_id", "7")],
                None,
            )),
            ..other
        };
        assert_eq!(s.identify(&gl), Some("gitlab"));
        // Which identities a host token could ever select.
        let by_name = |n: &str| s.identities.iter().find(|i| i.spec.name == n).unwrap();
        assert!(by_name("run-token").accepts_issuer("host", "interceptor://h"));
        assert!(!by_name("migrations").accepts_issuer("host", "interceptor://h"));
        assert!(
            by_name("gitlab").accepts_issuer("host", "interceptor://h"),
            "no issuer selector"
        );
    }

    #[test]
    fn tokenless_identities_are_not_asked_for_a_password() {
        let s = set(POLICY);
        let psql = Subject {
            exe: Some("/usr/lib/postgresql/15/bin/psql".into()),
            uid: Some(1000),
            ..Subject::default()
        };
        assert!(!s.wants_token(&psql));
        let s = set(&format!(
            "[[identity]]\nname = \"first\"\nexe = [\"*/psql\"]\n{TOKEN_POLICY}"
        ));
        assert!(
            !s.wants_token(&psql),
            "an earlier token-less identity wins anyway"
        );
    }

    #[test]
    fn allow_must_cover_every_fact() {
        let s = set(POLICY);
        let read = facts("SELECT", &[C::Read], &["orders"], &[], &[]);
        let d = s.decide_statement(&ctx("ci"), &read);
        assert_eq!(
            (d.action, d.rule.as_str(), d.max_rows),
            (Action::Allow, "ci-read", Some(100))
        );
        // A CTE that also deletes is not covered by a read rule.
        let cte = facts(
            "SELECT",
            &[C::Read, C::Write],
            &["orders"],
            &["orders"],
            &[],
        );
        let d = s.decide_statement(&ctx("ci"), &cte);
        assert_eq!(d.action, Action::Deny, "{d:?}");
        // A table outside the allowed schemas.
        let other = facts("SELECT", &[C::Read], &["audit.log"], &[], &[]);
        assert_eq!(s.decide_statement(&ctx("ci"), &other).rule, "default-deny");
    }

    #[test]
    fn deny_rules_match_on_touch_and_come_first() {
        let s = set(POLICY);
        let f = facts("SELECT", &[C::Read], &["orders", "secret.keys"], &[], &[]);
        let d = s.decide_statement(&ctx("ci"), &f);
        assert_eq!((d.action, d.rule.as_str()), (Action::Deny, "no-secrets"));
        assert!(d.reason.contains("off limits"));
    }

    #[test]
    fn approve_rule() {
        let s = set(POLICY);
        let f = facts("DELETE", &[C::Write], &[], &["orders"], &[]);
        let d = s.decide_statement(&ctx("ci"), &f);
        assert_eq!((d.action, d.rule.as_str()), (Action::Approve, "ci-delete"));
    }

    #[test]
    fn dangerous_functions_refused_even_when_allowed() {
        let s = set(POLICY);
        let f = facts("SELECT", &[C::Read], &[], &[], &["pg_read_file"]);
        let d = s.decide_statement(&ctx("ci"), &f);
        assert_eq!(
            (d.action, d.rule.as_str()),
            (Action::Deny, "builtin.dangerous-function")
        );
        let f = facts("SELECT", &[C::Read], &[], &[], &["dblink_exec"]);
        assert_eq!(
            s.decide_statement(&ctx("agent"), &f).rule,
            "builtin.dangerous-function"
        );
    }

    #[test]
    fn copy_program_and_file_refused() {
        let s = set(POLICY);
        let mut f = facts("COPY", &[C::Read], &["orders"], &[], &[]);
        f.copy = Some(CopyFacts {
            from: false,
            endpoint: CopyEndpoint::Program("sh".into()),
        });
        assert_eq!(
            s.decide_statement(&ctx("ci"), &f).rule,
            "builtin.copy-program"
        );
        f.copy = Some(CopyFacts {
            from: false,
            endpoint: CopyEndpoint::File("/etc/passwd".into()),
        });
        assert_eq!(s.decide_statement(&ctx("ci"), &f).rule, "builtin.copy-file");
    }

    #[test]
    fn require_limit() {
        let s = set(POLICY);
        let mut f = facts("SELECT", &[C::Read], &["orders"], &[], &[]);
        let d = s.decide_statement(&ctx("agent"), &f);
        assert_eq!((d.action, d.rule.as_str()), (Action::Deny, "agent-read"));
        f.unbounded = false;
        f.limit = Some(10);
        assert_eq!(s.decide_statement(&ctx("agent"), &f).action, Action::Allow);
        f.limit = Some(500);
        assert_eq!(s.decide_statement(&ctx("agent"), &f).action, Action::Deny);
    }

    #[test]
    fn multi_statement_refused_whole() {
        let s = set(POLICY);
        let a = Analysis {
            statements: vec![
                facts("SELECT", &[C::Read], &["orders"], &[], &[]),
                facts("DROP TABLE", &[C::Ddl], &[], &["orders"], &[]),
            ],
        };
        let d = s.decide(&ctx("ci"), &Ok(a));
        assert_eq!(d.action, Action::Deny);
        assert!(
            d.reason.starts_with("statement 2 of 2 (DROP TABLE)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn unparseable_refused_by_default() {
        let s = set(POLICY);
        let d = s.decide(&ctx("ci"), &Err(SqlError::Parse("x".into())));
        assert_eq!(
            (d.action, d.rule.as_str()),
            (Action::Deny, "builtin.unparseable")
        );
        let s = set(&format!("{POLICY}\n[defaults]\nunparseable = \"allow\"\n"));
        assert_eq!(
            s.decide(&ctx("ci"), &Err(SqlError::Parse("x".into())))
                .action,
            Action::Allow
        );
        // Ambiguity between the two parsers is never let through.
        assert_eq!(
            s.decide(&ctx("ci"), &Err(SqlError::Disagreement("x".into())))
                .action,
            Action::Deny
        );
        // What PostgreSQL's grammar rejects is a syntax error, even when
        // unparseable SQL may pass.
        let d = s.decide(
            &ctx("ci"),
            &Err(SqlError::PgParse(
                "syntax error at or near \"SELEC\"".into(),
            )),
        );
        assert_eq!(
            (d.action, d.rule.as_str()),
            (Action::Deny, SYNTAX_ERROR_RULE)
        );
    }

    #[test]
    fn unqualified_names_resolve_like_default_search_path() {
        assert_eq!(
            qualified(&Relation {
                schema: None,
                name: "pg_class".into()
            }),
            "pg_catalog.pg_class"
        );
        assert_eq!(
            qualified(&Relation {
                schema: None,
                name: "orders".into()
            }),
            "public.orders"
        );
    }
}
