//! The `[approvals]` table of the daemon configuration. Without it, `approve`
//! statements are refused ("no approval workflow is enabled on this host").
//!
//! ```toml
//! [approvals]
//! http = "127.0.0.1:8181"               # approvers' HTTP API (unset: CLI only)
//! default_expiry = "15m"                # requests expire unless the rule says
//! reveal_params = false                 # show bind parameters to approvers (default: masked)
//! # state_file = "/var/lib/interceptor/approvals.json"   (default: <state_dir>/approvals.json)
//!
//! [[approvals.approver]]
//! name = "alice"
//! groups = ["dba"]
//! token_sha256 = "<sha256 hex of alice's bearer token>"
//!
//! [approvals.oidc]                     # approvers may also sign in with an OIDC ID token
//! claim = "email"                       # the claim naming the approver (default "email")
//! [[approvals.oidc.issuer]]             # same fields as [[token.issuer]]
//! name = "corp-sso"
//! issuer = "https://sso.example.com"
//! audiences = ["interceptor-approvals"]
//! jwks_url = "https://sso.example.com/jwks.json"
//!
//! [[approvals.webhook]]
//! url = "https://hooks.slack.com/services/..."
//! format = "slack"                      # or "json" (default)
//! ```

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// `[approvals]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Where the approvers' HTTP API listens (unset: no HTTP API).
    pub http: Option<SocketAddr>,
    /// Lifetime of a request whose rule sets no `expires_after`.
    pub default_expiry: String,
    /// Pending requests, so a restart can deny them on the record
    /// (default: `<state_dir>/approvals.json`).
    pub state_file: Option<PathBuf>,
    /// Show bind parameters to approvers and webhooks as sent (default:
    /// masked, with their length and a hash to compare by).
    pub reveal_params: bool,
    /// Who may decide.
    #[serde(rename = "approver")]
    pub approvers: Vec<ApproverConfig>,
    /// Where new requests and decisions are announced.
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// Name recorded for decisions made with the CLI (default
    /// `root@<host>`).
    pub cli_approver: Option<String>,
    /// Groups of the CLI approver (for rules that restrict `groups`).
    pub cli_groups: Vec<String>,
    /// Approvers signing in with OIDC ID tokens (validated against the
    /// issuers' JWKS; only configured approvers are let in).
    pub oidc: Option<ApproverOidc>,
}

/// `[approvals.oidc]`: which ID tokens name an approver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverOidc {
    /// The claim whose value is matched against each approver's
    /// `oidc_subject` (default `"email"`).
    #[serde(default = "default_claim")]
    pub claim: String,
    /// Trusted issuers of approvers' ID tokens (not the workload issuers:
    /// a pipeline's token never makes it an approver).
    #[serde(rename = "issuer")]
    pub issuers: Vec<crate::token::IssuerConfig>,
}

impl PartialEq for ApproverOidc {
    fn eq(&self, other: &Self) -> bool {
        self.claim == other.claim && self.issuers.len() == other.issuers.len()
    }
}

impl Eq for ApproverOidc {}

fn default_claim() -> String {
    "email".into()
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            http: None,
            default_expiry: "15m".into(),
            state_file: None,
            reveal_params: false,
            approvers: Vec::new(),
            webhooks: Vec::new(),
            cli_approver: None,
            cli_groups: Vec::new(),
            oidc: None,
        }
    }
}

/// One `[[approvals.approver]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApproverConfig {
    /// The approver's name, recorded with each decision.
    pub name: String,
    /// Groups, for rules that restrict who decides.
    #[serde(default)]
    pub groups: Vec<String>,
    /// SHA-256 (hex) of the approver's bearer token; the token itself is
    /// never stored in the configuration.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The value of `[approvals.oidc] claim` in this approver's ID tokens
    /// (e.g. their e-mail address); unset: OIDC sign-in is not accepted
    /// for them.
    #[serde(default)]
    pub oidc_subject: Option<String>,
}

/// Body shape of a webhook.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFormat {
    /// The request or decision as JSON.
    #[default]
    Json,
    /// `{"text": ...}`, what Slack incoming webhooks take.
    Slack,
}

/// One `[[approvals.webhook]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the notification is sent to (`POST`).
    pub url: String,
    /// Body shape.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Attempts before giving up (default 5; backoff doubles from 500 ms).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Per-attempt timeout in milliseconds (default 5000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_attempts() -> u32 {
    5
}

fn default_timeout_ms() -> u64 {
    5000
}

impl ApprovalsConfig {
    /// Default request lifetime (validated by [`Self::validate`]).
    pub fn default_expiry(&self) -> Duration {
        humantime::parse_duration(&self.default_expiry).unwrap_or(Duration::from_mins(15))
    }

    /// Checks values; `Err((needle, what, fix))` where `needle` locates the
    /// mistake in the file.
    pub fn validate(&self) -> Result<(), (String, String, String)> {
        if let Err(e) = humantime::parse_duration(&self.default_expiry) {
            return Err((
                "default_expiry".into(),
                format!(
                    "approvals.default_expiry = \"{}\": {e}",
                    self.default_expiry
                ),
                "use a duration such as \"15m\"".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.approvers {
            if a.name.trim().is_empty() || !names.insert(a.name.as_str()) {
                return Err((
                    format!("name = \"{}\"", a.name),
                    format!("approver name `{}` is empty or used twice", a.name),
                    "give each [[approvals.approver]] a distinct name".into(),
                ));
            }
            if let Some(h) = &a.token_sha256
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err((
                    "token_sha256".into(),
                    format!("approver `{}`: token_sha256 must be 64 hex digits", a.name),
                    "use the output of `printf %s \"$TOKEN\" | sha256sum`".into(),
                ));
            }
        }
        if let Some(o) = &self.oidc {
            if o.issuers.is_empty() {
                return Err((
                    "[approvals.oidc]".into(),
                    "[approvals.oidc] lists no issuer".into(),
                    "add an [[approvals.oidc.issuer]] or remove [approvals.oidc]".into(),
                ));
            }
            for i in &o.issuers {
                i.validate().map_err(|e| (e.needle, e.message, e.fix))?;
            }
        }
        for w in &self.webhooks {
            let ok = reqwest::Url::parse(&w.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err((
                    w.url.clone(),
                    format!("webhook url `{}` is not an http(s) URL", w.url),
                    "use e.g. url = \"https://hooks.example.com/approvals\"".into(),
                ));
            }
            if w.attempts == 0 {
                return Err((
                    "attempts".into(),
                    "webhook attempts = 0".into(),
                    "use 1 or more".into(),
                ));
            }
        }
        Ok(())
    }
}
