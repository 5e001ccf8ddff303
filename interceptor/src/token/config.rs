//! `[token]` and `[[token.issuer]]`: which issuers are trusted, where their
//! keys come from, and the host's own issuer (key, store, longest TTL).
//!
//! ```toml
//! [token]
//! max_ttl = "1h"                  # host-issued tokens live at most this long
//! # host_key = "/var/lib/interceptor/tokens/host.key"   (default: <state_dir>/tokens/host.key)
//! # store = "/var/lib/interceptor/tokens"               (issued.jsonl, revoked.jsonl)
//!
//! [[token.issuer]]
//! name = "github"
//! issuer = "https://token.actions.githubusercontent.com"
//! audiences = ["https://github.com/my-org"]
//! jwks_url = "https://token.actions.githubusercontent.com/.well-known/jwks"
//! ```

use std::{path::PathBuf, time::Duration};

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};

/// The name host-issued tokens carry as their issuer name in policy and audit.
pub const HOST_ISSUER_NAME: &str = "host";

/// `[token]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Trusted OIDC issuers (`[[token.issuer]]`).
    #[serde(rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// The host's Ed25519 signing key (PKCS#8 PEM, 0600), generated on first
    /// start; default `<state_dir>/tokens/host.key`.
    pub host_key: Option<PathBuf>,
    /// Directory of the issued and revoked token records (root-only);
    /// default `<state_dir>/tokens`.
    pub store: Option<PathBuf>,
    /// Longest lifetime `interceptor token issue` accepts.
    #[serde(deserialize_with = "duration")]
    pub max_ttl: Duration,
    /// `iss` of host-issued tokens; default `interceptor://<host name>`.
    pub host_issuer: Option<String>,
    /// `aud` of host-issued tokens.
    pub host_audience: String,
    /// Longest token accepted as a password, in bytes (a JWT of a CI
    /// provider is 1-2 KiB).
    pub max_token_bytes: usize,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            host_key: None,
            store: None,
            max_ttl: Duration::from_hours(1),
            host_issuer: None,
            host_audience: "interceptor".to_owned(),
            max_token_bytes: 16 * 1024,
        }
    }
}

/// One trusted issuer (`[[token.issuer]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name used in policy (`issuer = ["github"]`), logs and audit.
    pub name: String,
    /// The exact `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values (at least one must be in the token's `aud`).
    pub audiences: Vec<String>,
    /// A local JWKS file (re-read every `refresh`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS URL (https, or http on loopback only).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How often the key set is reloaded; the last good copy is kept when a
    /// reload fails.
    #[serde(default = "default_refresh", deserialize_with = "duration")]
    pub refresh: Duration,
    /// Least time between two reloads caused by an unknown `kid` (key
    /// rotation) or by a failed reload.
    #[serde(default = "default_refetch_min", deserialize_with = "duration")]
    pub refetch_min: Duration,
    /// Accepted signing algorithms: asymmetric only (`none` and `HS*` are refused).
    #[serde(default = "default_algorithms", deserialize_with = "algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_hours(1)
}

fn default_refetch_min() -> Duration {
    Duration::from_secs(30)
}

fn default_leeway() -> Duration {
    Duration::from_mins(1)
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
}

/// A humantime duration: `"15m"`, `"1h 30m"`, `"0s"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration like \"15m\": {e}")))
}

fn algorithms<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            let alg: Algorithm = n.parse().map_err(|_| {
                serde::de::Error::custom(format!("`{n}` is not a JWT algorithm (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)"))
            })?;
            if is_symmetric(alg) {
                return Err(serde::de::Error::custom(format!(
                    "`{n}` is a shared-secret algorithm: tokens are checked against the issuer's public keys only"
                )));
            }
            Ok(alg)
        })
        .collect()
}

/// HMAC algorithms: never accepted (a public key used as an HMAC secret
/// would let anyone sign).
pub(crate) fn is_symmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// A mistake in `[token]`: the text to find its line by, what, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfigError {
    /// Text of the offending line (for `file:line`).
    pub needle: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

impl std::fmt::Display for TokenConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fix: {})", self.message, self.fix)
    }
}

impl TokenConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), TokenConfigError> {
        if self.max_ttl.is_zero() {
            return Err(TokenConfigError {
                needle: "max_ttl".into(),
                message: "[token] max_ttl is 0: no host token could be issued".into(),
                fix: "set e.g. max_ttl = \"1h\"".into(),
            });
        }
        if self.max_token_bytes < 1024 {
            return Err(TokenConfigError {
                needle: "max_token_bytes".into(),
                message: "[token] max_token_bytes is below 1024: CI ID tokens are 1-2 KiB".into(),
                fix: "use e.g. max_token_bytes = 16384".into(),
            });
        }
        if self.host_audience.is_empty() {
            return Err(TokenConfigError {
                needle: "host_audience".into(),
                message: "[token] host_audience is empty".into(),
                fix: "leave it out (default \"interceptor\") or set a name".into(),
            });
        }
        let mut names = std::collections::HashSet::new();
        let mut issuers = std::collections::HashSet::new();
        for i in &self.issuers {
            i.validate()?;
            if i.name == HOST_ISSUER_NAME || !names.insert(i.name.as_str()) {
                return Err(TokenConfigError {
                    needle: format!("name = \"{}\"", i.name),
                    message: format!(
                        "[[token.issuer]] name `{}` is used twice or is the reserved name `host`",
                        i.name
                    ),
                    fix: "give each issuer a distinct name".into(),
                });
            }
            if !issuers.insert(i.issuer.as_str())
                || self.host_issuer.as_deref() == Some(i.issuer.as_str())
            {
                return Err(TokenConfigError {
                    needle: format!("issuer = \"{}\"", i.issuer),
                    message: format!("issuer `{}` is configured twice", i.issuer),
                    fix: "list each issuer once, with all its audiences".into(),
                });
            }
        }
        Ok(())
    }
}

impl IssuerConfig {
    /// Checks one issuer.
    pub fn validate(&self) -> Result<(), TokenConfigError> {
        let at = |needle: String, message: String, fix: &str| TokenConfigError {
            needle,
            message,
            fix: fix.to_owned(),
        };
        let here = format!("issuer = \"{}\"", self.issuer);
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(at(
                format!("name = \"{}\"", self.name),
                format!(
                    "[[token.issuer]] name `{}` is empty or has characters other than letters, digits, -, _ and .",
                    self.name
                ),
                "use a short name such as \"github\"",
            ));
        }
        if self.issuer.is_empty() {
            return Err(at(
                "issuer".into(),
                format!("issuer `{}` has an empty `issuer`", self.name),
                "set the exact `iss` of its tokens",
            ));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(at(
                here,
                format!("issuer `{}` lists no audiences", self.name),
                "set audiences = [\"...\"]: the `aud` its tokens are requested for (a token for another service must not work here)",
            ));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(at(
                    here,
                    format!(
                        "issuer `{}` needs exactly one of jwks_file and jwks_url",
                        self.name
                    ),
                    "set jwks_url to the issuer's JWKS address, or jwks_file to a local copy",
                ));
            }
            (None, Some(url)) => check_url(url).map_err(|m| {
                at(
                    format!("jwks_url = \"{url}\""),
                    m,
                    "use an https:// URL (http:// only on 127.0.0.1, ::1 or localhost)",
                )
            })?,
            (Some(_), None) => {}
        }
        if self.algorithms.is_empty() {
            return Err(at(
                here,
                format!("issuer `{}` allows no algorithms", self.name),
                "leave algorithms out or list e.g. [\"RS256\"]",
            ));
        }
        if self.refresh < Duration::from_secs(1) {
            return Err(at(
                "refresh".into(),
                format!("issuer `{}` has refresh below 1s", self.name),
                "use e.g. refresh = \"1h\"",
            ));
        }
        if self.leeway > Duration::from_mins(5) {
            return Err(at(
                "leeway".into(),
                format!("issuer `{}` has a leeway over 5 minutes", self.name),
                "keep the clock skew allowance small, e.g. \"60s\"",
            ));
        }
        Ok(())
    }
}

/// `https://...`, or `http://` to a loopback host.
fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("jwks_url `{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "jwks_url `{url}` is plain http to a non-loopback host"
                ))
            }
        }
        other => Err(format!("jwks_url `{url}` has scheme `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TokenConfig, String> {
        let c: TokenConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    const GH: &str = "[[issuer]]\nname = \"github\"\nissuer = \"https://token.actions.githubusercontent.com\"\naudiences = [\"x\"]\n";

    #[test]
    fn defaults_and_a_github_issuer() {
        let c = parse(&format!(
            "{GH}jwks_url = \"https://token.actions.githubusercontent.com/.well-known/jwks\"\n"
        ))
        .unwrap();
        assert_eq!(c.max_ttl, Duration::from_hours(1));
        assert_eq!(
            c.issuers[0].algorithms,
            vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(c.issuers[0].leeway, Duration::from_mins(1));
    }

    #[test]
    fn hmac_and_none_are_refused() {
        let e = parse(&format!(
            "{GH}jwks_file = \"/k\"\nalgorithms = [\"HS256\"]\n"
        ))
        .unwrap_err();
        assert!(e.contains("shared-secret"), "{e}");
        let e = parse(&format!(
            "{GH}jwks_file = \"/k\"\nalgorithms = [\"none\"]\n"
        ))
        .unwrap_err();
        assert!(e.contains("not a JWT algorithm"), "{e}");
    }

    #[test]
    fn key_source_must_be_one_and_http_only_on_loopback() {
        assert!(parse(GH).unwrap_err().contains("exactly one"));
        let e = parse(&format!("{GH}jwks_url = \"http://example.com/jwks\"\n")).unwrap_err();
        assert!(e.contains("non-loopback"), "{e}");
        parse(&format!("{GH}jwks_url = \"http://127.0.0.1:8080/jwks\"\n")).unwrap();
    }

    #[test]
    fn audiences_are_required() {
        let e = parse("[[issuer]]\nname = \"g\"\nissuer = \"https://i\"\naudiences = []\njwks_file = \"/k\"\n").unwrap_err();
        assert!(e.contains("no audiences"), "{e}");
    }

    #[test]
    fn bad_duration_is_named() {
        let e = parse("max_ttl = \"soon\"\n").unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
    }
}
