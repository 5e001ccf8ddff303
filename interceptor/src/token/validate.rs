//! Checking a token: shape and size, header `alg` against the issuer's
//! allow-list, the issuer by its exact `iss`, the key by `kid`, then the
//! signature, `exp`/`nbf`/`iat` with the issuer's leeway, `aud`, and the
//! revocation list. The signature is checked before any time or audience
//! claim, so a forged token is always "bad signature", never "expired".

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    Engine as _,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    IssuerConfig, TokenError,
    config::{HOST_ISSUER_NAME, is_symmetric},
    jwks::KeyCache,
};

/// base64url, with or without padding (some issuers pad).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Default largest token, bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token whose signature and claims were checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedToken {
    /// The configured issuer name (`host` for host-issued tokens).
    pub issuer_name: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`, if any.
    pub subject: Option<String>,
    /// `jti`, if any (host tokens always have one).
    pub jti: Option<String>,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
    /// `iat`, if any.
    pub iat: Option<u64>,
    /// Every claim of the token (the registered ones included).
    pub claims: Map<String, Value>,
    /// Issued by this host (`interceptor token issue`).
    pub host_issued: bool,
}

impl VerifiedToken {
    /// A claim as text, for policy selectors: strings as they are, numbers
    /// and booleans printed; arrays, objects and null are not text.
    pub fn claim_str(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The host identity a host-issued token is bound to (`identity` claim).
    pub fn bound_identity(&self) -> Option<&str> {
        if self.host_issued {
            self.claims.get("identity").and_then(Value::as_str)
        } else {
            None
        }
    }
}

/// The host's own issuer, trusted without configuration.
#[derive(Clone)]
pub struct HostTrust {
    /// `iss` of host tokens.
    pub issuer: String,
    /// `aud` of host tokens.
    pub audience: String,
    /// `kid` of the host key.
    pub kid: String,
    /// The Ed25519 public key (32 bytes).
    pub public_key: [u8; 32],
}

impl std::fmt::Debug for HostTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTrust")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Revoked token ids (`jti`), shared by the validator and the host issuer.
#[derive(Debug, Default)]
pub struct Revocations(RwLock<HashSet<String>>);

impl Revocations {
    /// Whether `jti` is revoked.
    pub fn contains(&self, jti: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(jti)
    }

    /// Adds `jti`; false if it was already there.
    pub fn insert(&self, jti: &str) -> bool {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(jti.to_owned())
    }
}

struct Issuer {
    config: IssuerConfig,
    keys: KeyCache,
}

/// Validates tokens from the configured issuers and from the host itself.
pub struct Validator {
    issuers: Vec<Issuer>,
    host: Option<HostTrust>,
    revocations: Arc<Revocations>,
    max_token_bytes: usize,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| i.config.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The leeway of host tokens (both ends are this host's clock).
const HOST_LEEWAY: Duration = Duration::from_secs(5);

impl Validator {
    /// A validator for `issuers` (already validated config).
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self, String> {
        let issuers = issuers
            .into_iter()
            .map(|config| {
                Ok(Issuer {
                    keys: KeyCache::new(&config)?,
                    config,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            issuers,
            host: None,
            revocations: Arc::default(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// Also trusts the host's own issuer.
    #[must_use]
    pub fn with_host(mut self, host: HostTrust) -> Self {
        self.host = Some(host);
        self
    }

    /// Checks `jti`s against `revocations`.
    #[must_use]
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = revocations;
        self
    }

    /// Refuses tokens longer than `bytes`.
    #[must_use]
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// The longest token accepted, bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// The revocation list in use.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Whether any issuer (configured or the host's) is trusted.
    pub fn has_issuers(&self) -> bool {
        !self.issuers.is_empty() || self.host.is_some()
    }

    /// Loads every issuer's keys now (at daemon start), so a wrong URL or
    /// file shows in the log before the first token arrives. Returns
    /// `(issuer name, keys or error)`.
    pub async fn prefetch(&self) -> Vec<(String, Result<usize, String>)> {
        let mut out = Vec::new();
        for i in &self.issuers {
            out.push((i.config.name.clone(), i.keys.prefetch().await));
        }
        out
    }

    /// How many times the key set of issuer `name` was loaded.
    pub async fn key_loads(&self, name: &str) -> Option<u64> {
        match self.issuers.iter().find(|i| i.config.name == name) {
            Some(i) => Some(i.keys.loads().await),
            None => None,
        }
    }

    /// Validates `token` now.
    pub async fn validate(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.validate_at(token, SystemTime::now()).await
    }

    /// Validates `token` as of `now` (tests).
    pub async fn validate_at(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let (header, claims) = peek(token)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed)?;
        // `none`, HMAC and anything unknown: refused before any key is looked at.
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| TokenError::AlgorithmNotAllowed)?;
        if is_symmetric(alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(TokenError::Malformed),
        };
        let iss = match claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            None => return Err(TokenError::MissingClaim("iss")),
            Some(_) => return Err(TokenError::Malformed),
        };

        let (name, key, audiences, leeway, host_issued) =
            if let Some(host) = self.host.as_ref().filter(|h| h.issuer == iss) {
                if alg != Algorithm::EdDSA {
                    return Err(TokenError::AlgorithmNotAllowed);
                }
                if kid.is_some_and(|k| k != host.kid) {
                    return Err(TokenError::UnknownKey);
                }
                let key = DecodingKey::from_ed_der(&host.public_key);
                (
                    HOST_ISSUER_NAME.to_owned(),
                    key,
                    vec![host.audience.clone()],
                    HOST_LEEWAY,
                    true,
                )
            } else {
                let issuer = self
                    .issuers
                    .iter()
                    .find(|i| i.config.issuer == iss)
                    .ok_or(TokenError::UnknownIssuer)?;
                if !issuer.config.algorithms.contains(&alg) {
                    return Err(TokenError::AlgorithmNotAllowed);
                }
                let key = issuer.keys.key_for(kid, alg).await?;
                (
                    issuer.config.name.clone(),
                    key,
                    issuer.config.audiences.clone(),
                    issuer.config.leeway,
                    false,
                )
            };

        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = leeway.as_secs();
        validation.validate_exp = false; // checked below against `now`
        validation.validate_nbf = false;
        validation.validate_aud = true;
        validation.set_audience(&audiences);
        validation.set_issuer(&[iss]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::Crypto(_) => TokenError::BadSignature,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    ErrorKind::InvalidIssuer => TokenError::UnknownIssuer,
                    ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidAlgorithmName
                    | ErrorKind::MissingAlgorithm => TokenError::AlgorithmNotAllowed,
                    ErrorKind::MissingRequiredClaim(c) => {
                        TokenError::MissingClaim(match c.as_str() {
                            "exp" => "exp",
                            "aud" => "aud",
                            _ => "iss",
                        })
                    }
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;

        // Times, with the leeway, against `now`.
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let leeway = leeway.as_secs();
        let time = |name: &'static str| -> Result<Option<u64>, TokenError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or(TokenError::Malformed),
                Some(_) => Err(TokenError::Malformed),
            }
        };
        let exp = time("exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        if exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
        let iat = time("iat")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
        let jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
        if host_issued && jti.is_none() {
            return Err(TokenError::MissingClaim("jti"));
        }
        if jti.as_deref().is_some_and(|j| self.revocations.contains(j)) {
            return Err(TokenError::Revoked);
        }
        Ok(VerifiedToken {
            issuer_name: name,
            issuer: iss.to_owned(),
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            jti,
            exp,
            iat,
            claims: claims.clone(),
            host_issued,
        })
    }
}

/// A JSON object: a token's header or claims.
type JsonObject = Map<String, Value>;

/// Header and claims, decoded but not verified.
fn peek(token: &str) -> Result<(JsonObject, JsonObject), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let part = |p: &str| -> Result<Map<String, Value>, TokenError> {
        let bytes = B64URL.decode(p).map_err(|_| TokenError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(TokenError::Malformed),
        }
    };
    let header = part(h)?;
    let claims = part(c)?;
    // An empty signature is `alg: none` in disguise.
    if s.is_empty() {
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(if alg.eq_ignore_ascii_case("none") {
            TokenError::AlgorithmNotAllowed
        } else {
            TokenError::Malformed
        });
    }
    if B64URL.decode(s).is_err() {
        return Err(TokenError::Malformed);
    }
    Ok((header, claims))
}
