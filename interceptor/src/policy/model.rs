//! The policy file format: typed TOML, `deny_unknown_fields`.
//!
//! ```toml
//! [defaults]
//! identity = "deny"          # a connection matching no identity: deny | allow-nothing
//! unparseable = "deny"       # SQL the analyser cannot parse: deny | allow
//!
//! [[identity]]
//! name = "ci-psql"
//! exe = ["/usr/lib/postgresql/*/bin/psql"]
//! user = ["runner"]
//!
//! [[rule]]
//! id = "ci-read"
//! identities = ["ci-psql"]
//! classes = ["read", "transaction", "session"]
//! tables = ["public.*"]
//! action = "allow"
//! max_rows = 10000
//! ```

use serde::Deserialize;
use toml::Spanned;

use crate::sql::StatementClass;

/// One policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Defaults; at most one file of a set may carry them.
    pub defaults: Option<Spanned<Defaults>>,
    /// Named identities, matched in file order (files in name order).
    #[serde(default, rename = "identity")]
    pub identities: Vec<Spanned<IdentitySpec>>,
    /// Rules, evaluated in file order (files in name order).
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleSpec>>,
    /// Sensitive column tags (masking).
    #[serde(default)]
    pub sensitive: Vec<Spanned<crate::mask::policy::SensitiveSpec>>,
    /// Masking profiles per identity.
    #[serde(default)]
    pub masking: Vec<Spanned<crate::mask::policy::MaskingSpec>>,
    /// Content detectors added or switched off.
    #[serde(default, rename = "detector")]
    pub detectors: Vec<Spanned<crate::mask::policy::DetectorSpec>>,
}

/// Set-wide defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Identity given to connections that match no `[[identity]]`; `None`
    /// refuses them at connect time.
    pub identity: Option<String>,
    /// What happens to SQL that cannot be analysed, unless the identity says.
    pub unparseable: Unparseable,
    /// Rows a read may return when the deciding rule sets no `max_rows`.
    pub max_rows: Option<u64>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            identity: None,
            unparseable: Unparseable::Deny,
            max_rows: None,
        }
    }
}

/// See [`Defaults::unparseable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unparseable {
    /// Refuse it (default).
    Deny,
    /// Let it through to the server; recorded as unanalysed.
    Allow,
}

/// A named identity: every selector given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// Name used by rules and in every decision.
    pub name: String,
    /// Real uid is one of these.
    #[serde(default)]
    pub uid: Vec<u32>,
    /// Real user name is one of these (globs).
    #[serde(default)]
    pub user: Vec<String>,
    /// Executable path matches one of these globs.
    #[serde(default)]
    pub exe: Vec<String>,
    /// Executable SHA-256 is one of these (hex).
    #[serde(default)]
    pub exe_sha256: Vec<String>,
    /// cgroup v2 path matches one of these globs.
    #[serde(default)]
    pub cgroup: Vec<String>,
    /// Container id is one of these (globs; `"*"` = any container).
    #[serde(default)]
    pub container_id: Vec<String>,
    /// The immediate parent's executable matches one of these globs.
    #[serde(default)]
    pub parent_exe: Vec<String>,
    /// Some ancestor's executable matches one of these globs.
    #[serde(default)]
    pub ancestor_exe: Vec<String>,
    /// Unparseable SQL for this identity (overrides the default).
    #[serde(default)]
    pub unparseable: Option<Unparseable>,
    /// Whether the caller must present a workload token as its password.
    /// Unset: no token is asked for, unless `claims` or `issuer` are set
    /// (which imply `required`).
    #[serde(default)]
    pub token: Option<TokenMode>,
    /// Token claim selectors: claim name -> glob or list of globs; every
    /// claim listed must be present and match.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, ClaimSelector>,
    /// Token issuers accepted: configured issuer names (`"github"`, `"host"`
    /// for host-issued tokens) or `iss` URLs (globs).
    #[serde(default)]
    pub issuer: Vec<String>,
}

impl IdentitySpec {
    /// The token requirement in force (`claims`/`issuer` imply `required`).
    pub fn token_mode(&self) -> Option<TokenMode> {
        self.token
            .or((!self.claims.is_empty() || !self.issuer.is_empty()).then_some(TokenMode::Required))
    }
}

/// See [`IdentitySpec::token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenMode {
    /// The identity matches only with a valid token whose claims hold.
    Required,
    /// A password is asked for; an empty one is accepted as "no token", a
    /// token given must be valid.
    Optional,
}

/// One claim's selector: `"org/app"`, `"refs/heads/*"` or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ClaimSelector {
    /// One glob (an exact value is a glob without wildcards).
    One(String),
    /// Any of these globs.
    Any(Vec<String>),
}

impl ClaimSelector {
    /// The globs.
    pub fn patterns(&self) -> Vec<String> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Any(v) => v.clone(),
        }
    }
}

/// What a rule does with the statements it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Forward the statement.
    Allow,
    /// Refuse it.
    Deny,
    /// Hold it for a person's approval.
    Approve,
}

impl Action {
    /// The name policies and records use (`allow`, `deny`, `approve`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Approve => "approve",
        }
    }
}

/// A rule. `allow` rules must *cover* a statement (every class, relation and
/// function of it is within the rule's lists); `deny` and `approve` rules
/// match when a statement *touches* any of their lists. Unset lists are no
/// constraint. The first matching rule decides; none matching means deny.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable id, named in every decision and error.
    pub id: String,
    /// Identity names the rule applies to (`"*"` = all).
    pub identities: Vec<String>,
    /// Target names (from the daemon config); unset = all.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Database names (globs); unset = all.
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// Statement classes.
    #[serde(default)]
    pub classes: Option<Vec<StatementClass>>,
    /// Commands, e.g. `"DELETE"`, `"DROP TABLE"` (case-insensitive).
    #[serde(default)]
    pub commands: Option<Vec<String>>,
    /// Relations as `schema.table` globs; a relation named without a schema
    /// is matched as `public.<name>` (the usual search_path).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Functions (globs, lower case), e.g. `"dblink*"`.
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    /// Dangerous built-in functions this rule lets through (an allow rule
    /// only); by default they are refused whatever the rules say.
    #[serde(default)]
    pub allow_functions: Vec<String>,
    /// Settings beyond the harmless ones this allow rule lets a statement
    /// change (e.g. `"search_path"`, which changes what unqualified names
    /// mean). Settings that change how SQL is lexed are never allowed.
    #[serde(default)]
    pub allow_settings: Vec<String>,
    /// The decision.
    pub action: Action,
    /// Rows a read may return before it is cut off with an error.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Refuse up front a read whose outer query has no LIMIT (or a LIMIT
    /// above `max_rows`).
    #[serde(default)]
    pub require_limit: bool,
    /// Human explanation, shown in refusals.
    #[serde(default)]
    pub reason: Option<String>,
    /// How an `approve` rule's statements wait for a person (mode, expiry,
    /// scopes, approvers); unset = hold, once, one approver.
    #[serde(default)]
    pub approval: Option<crate::approval::ApprovalSpec>,
}
