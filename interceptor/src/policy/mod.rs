//! Policy: who a connection is ([`PolicySet::identify`]) and what happens to
//! each statement ([`PolicySet::decide`]).
//!
//! - `model`: the TOML file format.
//! - `store`: loading a directory of policy files as one set, with errors
//!   that name file, line and fix; the live set behind an `ArcSwap`.
//! - `engine`: identity matching and rule evaluation.
//! - `builtin`: guards that hold whatever the rules say.
//! - `cases`: policy test cases kept beside the policies.
//! - `session`: enforcement on a live session (the proxy's hooks); `startup`:
//!   startup settings decided like `SET`.

pub mod builtin;
pub mod cases;
pub mod engine;
pub mod masking;
pub mod model;
pub mod session;
pub mod startup;
pub mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use engine::{Context, PolicySet};
pub use model::Action;
pub use store::{PolicyError, PolicyStore, load_dir};

use crate::identity::Attestation;

/// What identity selectors look at: the attested facts (and, later, token
/// claims). Every field is optional so a partial subject can be written by
/// hand for `policy explain` and policy tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Subject {
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub exe: Option<String>,
    pub exe_sha256: Option<String>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    /// Parent executables, nearest first.
    pub parent_exes: Vec<String>,
    /// The verified workload token, if the connection presented one.
    pub token: Option<TokenFacts>,
}

/// What identity selectors see of a verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenFacts {
    /// The configured issuer name (`host` for host-issued tokens).
    pub issuer: String,
    /// `iss`.
    pub iss: String,
    /// Claims with a text value (strings; numbers and booleans printed).
    pub claims: std::collections::BTreeMap<String, String>,
    /// For a host-issued token: the identity it is bound to.
    pub bound_identity: Option<String>,
}

impl From<&crate::token::VerifiedToken> for TokenFacts {
    fn from(t: &crate::token::VerifiedToken) -> Self {
        Self {
            issuer: t.issuer_name.clone(),
            iss: t.issuer.clone(),
            claims: t
                .claims
                .keys()
                .filter_map(|k| Some((k.clone(), t.claim_str(k)?)))
                .collect(),
            bound_identity: t.bound_identity().map(str::to_owned),
        }
    }
}

impl From<&Attestation> for Subject {
    fn from(a: &Attestation) -> Self {
        Self {
            uid: Some(a.uid),
            user: a.user.clone(),
            exe: Some(a.exe.display().to_string()),
            exe_sha256: Some(a.exe_sha256.clone()),
            cgroup: Some(a.cgroup.clone()),
            container_id: a.container_id.clone(),
            parent_exes: a
                .parents
                .iter()
                .map(|p| {
                    p.exe
                        .as_ref()
                        .map_or_else(String::new, |e| e.display().to_string())
                })
                .collect(),
            token: None,
        }
    }
}

/// What the policy decided, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// allow, deny or approve.
    pub action: Action,
    /// The rule that decided (`builtin.*` for the built-in guards,
    /// `default-deny` when no rule matched).
    pub rule: String,
    /// Why, for people.
    pub reason: String,
    /// Rows the statement may return before it is cut off.
    pub max_rows: Option<u64>,
}

/// Where the policy set lives by default.
pub fn default_dir() -> PathBuf {
    PathBuf::from("/etc/interceptor/policies")
}
