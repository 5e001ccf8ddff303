//! The `approval` table of an `approve` rule: how the statements it matches
//! are held and what an approver may grant.
//!
//! ```toml
//! [[rule]]
//! id = "prod-deletes"
//! identities = ["ci"]
//! commands = ["DELETE"]
//! action = "approve"
//! approval = { mode = "hold", expires_after = "15m", scopes = ["once", "session"], approvers = 2, groups = ["dba"] }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the client waits for a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The statement waits, the connection stays open; it runs once
    /// approved, or fails with the decision.
    #[default]
    Hold,
    /// The statement is refused at once with the request id; once approved
    /// the exact same statement may be run again (jobs that cannot wait).
    Retry,
}

/// What an approval covers, chosen by the approver within what the rule allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeKind {
    /// This statement, once (default).
    #[default]
    Once,
    /// The same statement (same SQL and parameters) for the rest of the session.
    Session,
    /// Every statement this rule matches, for the requester's identity, for N minutes.
    Identity,
}

impl ScopeKind {
    /// The name used in the policy, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Session => "session",
            Self::Identity => "identity",
        }
    }
}

/// A rule's approval settings (`approval = { ... }` on an `approve` rule).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSpec {
    /// `hold` (default) or `retry`.
    pub mode: Mode,
    /// How long a request waits for a decision before it expires
    /// (humantime: `"90s"`, `"15m"`); unset = `[approvals] default_expiry`.
    pub expires_after: Option<String>,
    /// In `retry` mode: how long an approval may be used to re-run the
    /// statement (default 1h).
    pub valid_for: Option<String>,
    /// Scopes an approver may grant (default `["once"]`).
    pub scopes: Vec<ScopeKind>,
    /// Longest `identity` scope an approver may grant, in minutes.
    pub max_identity_minutes: u64,
    /// Distinct approvers needed (default 1).
    pub approvers: u32,
    /// Approver groups allowed to decide (empty = any configured approver).
    pub groups: Vec<String>,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        Self {
            mode: Mode::Hold,
            expires_after: None,
            valid_for: None,
            scopes: vec![ScopeKind::Once],
            max_identity_minutes: 60,
            approvers: 1,
            groups: Vec::new(),
        }
    }
}

impl ApprovalSpec {
    /// Checks the values; `Err((what, fix))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, v) in [
            ("expires_after", &self.expires_after),
            ("valid_for", &self.valid_for),
        ] {
            if let Some(v) = v {
                match humantime::parse_duration(v) {
                    Ok(d) if d >= Duration::from_secs(1) => {}
                    Ok(_) => {
                        return Err((
                            format!("approval.{name} = \"{v}\" is below one second"),
                            "use e.g. \"15m\"".into(),
                        ));
                    }
                    Err(e) => {
                        return Err((
                            format!("approval.{name} = \"{v}\": {e}"),
                            "use a duration such as \"90s\", \"15m\" or \"2h\"".into(),
                        ));
                    }
                }
            }
        }
        if self.approvers == 0 {
            return Err((
                "approval.approvers = 0 would approve without anyone deciding".into(),
                "use 1 or more".into(),
            ));
        }
        if self.scopes.is_empty() {
            return Err((
                "approval.scopes is empty".into(),
                "list at least \"once\"".into(),
            ));
        }
        if self.scopes.contains(&ScopeKind::Identity) && self.max_identity_minutes == 0 {
            return Err((
                "approval.max_identity_minutes = 0 with the identity scope".into(),
                "set a positive number of minutes".into(),
            ));
        }
        Ok(())
    }

    /// Request lifetime, given the daemon's default.
    pub fn expiry(&self, default: Duration) -> Duration {
        self.expires_after
            .as_deref()
            .and_then(|v| humantime::parse_duration(v).ok())
            .unwrap_or(default)
    }

    /// Retry-mode grant lifetime.
    pub fn validity(&self) -> Duration {
        self.valid_for
            .as_deref()
            .and_then(|v| humantime::parse_duration(v).ok())
            .unwrap_or(Duration::from_hours(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let s: ApprovalSpec = toml::from_str("").unwrap();
        assert_eq!(s.mode, Mode::Hold);
        assert_eq!(s.scopes, vec![ScopeKind::Once]);
        assert_eq!(s.approvers, 1);
        assert!(s.validate().is_ok());
        let s: ApprovalSpec = toml::from_str(
            "mode = \"retry\"\nexpires_after = \"2m\"\nscopes = [\"once\", \"identity\"]",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Retry);
        assert_eq!(s.expiry(Duration::from_secs(1)), Duration::from_mins(2));
        assert!(toml::from_str::<ApprovalSpec>("mode = \"later\"").is_err());
        assert!(toml::from_str::<ApprovalSpec>("approverz = 2").is_err());
        let bad: ApprovalSpec = toml::from_str("expires_after = \"soon\"").unwrap();
        assert!(bad.validate().unwrap_err().0.contains("expires_after"));
        let zero: ApprovalSpec = toml::from_str("approvers = 0").unwrap();
        assert!(zero.validate().is_err());
    }
}
