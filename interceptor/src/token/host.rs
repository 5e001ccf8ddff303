//! The host's own issuer: `interceptor token issue` mints short-lived
//! `EdDSA` tokens bound to one policy identity, `interceptor token revoke`
//! revokes them. The key (`host.key`, PKCS#8 PEM, 0600) is generated on
//! first start; issued and revoked token ids are appended to
//! `issued.jsonl` and `revoked.jsonl` in the store directory (fsync'ed, so
//! a revocation survives a restart). Tokens themselves are never stored.

use std::{
    collections::HashMap,
    fs::{self, OpenOptions},
    io::{ErrorKind, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{HostTrust, Revocations};

/// Claims `--claim` may not set: the validator and the binding rely on them.
pub const RESERVED_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat", "jti", "sub", "identity"];

/// What can go wrong issuing, revoking or loading.
#[derive(Debug, thiserror::Error)]
pub enum HostTokenError {
    /// A file of the key or the store.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// A request the operator can correct.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> HostTokenError {
    HostTokenError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// One issued token, as recorded (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Token id (`jti`).
    pub id: String,
    /// The identity it is bound to.
    pub identity: String,
    /// `iat`, seconds since the epoch.
    pub issued_at: u64,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Extra claims given with `--claim`.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Who asked (e.g. `uid=0 pid=1234`).
    #[serde(default)]
    pub requested_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RevokedRecord {
    id: String,
    revoked_at: u64,
    /// Kept for compaction: past this the token is dead anyway (0 = unknown).
    expires_at: u64,
    #[serde(default)]
    requested_by: String,
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT, to hand to the pipeline run (shown once, stored nowhere).
    pub token: String,
    /// What was recorded.
    pub record: IssuedRecord,
}

/// The outcome of a revocation.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// Token id.
    pub id: String,
    /// The identity the token was bound to, when this host issued it.
    pub identity: Option<String>,
    /// False when it was already revoked.
    pub newly_revoked: bool,
    /// `exp` of the token, when known.
    pub expires_at: Option<u64>,
}

/// Issues and revokes host tokens.
pub struct HostIssuer {
    issuer: String,
    audience: String,
    kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
    max_ttl: Duration,
    store: PathBuf,
    issued: Mutex<HashMap<String, IssuedRecord>>,
    revocations: Arc<Revocations>,
}

impl std::fmt::Debug for HostIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Where the host issuer keeps things and what it may do.
#[derive(Debug, Clone)]
pub struct HostIssuerConfig {
    /// `iss` of its tokens.
    pub issuer: String,
    /// `aud` of its tokens.
    pub audience: String,
    /// Key file (created 0600 if missing).
    pub key: PathBuf,
    /// Store directory (created 0700 if missing).
    pub store: PathBuf,
    /// Longest TTL.
    pub max_ttl: Duration,
}

impl HostIssuer {
    /// Loads (or generates) the key and reads the store.
    pub fn open(config: &HostIssuerConfig) -> Result<Self, HostTokenError> {
        let signing = load_or_generate(&config.key)?;
        let public = signing.verifying_key().to_bytes();
        let der = signing.to_pkcs8_der().map_err(|e| io_err(&config.key, e))?;
        let kid = {
            let digest = Sha256::digest(public);
            URL_SAFE_NO_PAD.encode(&digest[..12])
        };
        private_dir(&config.store)?;
        let now = unix_now();
        let mut issued = HashMap::new();
        for r in read_jsonl::<IssuedRecord>(&config.store.join("issued.jsonl"))? {
            if r.expires_at > now {
                issued.insert(r.id.clone(), r);
            }
        }
        let revocations = Arc::new(Revocations::default());
        let revoked: Vec<RevokedRecord> = read_jsonl(&config.store.join("revoked.jsonl"))?;
        for r in &revoked {
            revocations.insert(&r.id);
        }
        let this = Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public,
            max_ttl: config.max_ttl,
            store: config.store.clone(),
            issued: Mutex::new(issued),
            revocations,
        };
        // Records of tokens long expired are dropped (they cannot be used anyway).
        this.compact(now)?;
        Ok(this)
    }

    /// What the validator needs to trust this issuer.
    pub fn trust(&self) -> HostTrust {
        HostTrust {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            kid: self.kid.clone(),
            public_key: self.public,
        }
    }

    /// The revocation list (shared with the validator).
    pub fn revocations(&self) -> Arc<Revocations> {
        Arc::clone(&self.revocations)
    }

    /// `iss` of host tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Longest TTL accepted.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Mints a token for `identity`, valid for `ttl`, with extra `claims`.
    pub fn issue(
        &self,
        identity: &str,
        ttl: Duration,
        claims: Map<String, Value>,
        requested_by: &str,
    ) -> Result<Issued, HostTokenError> {
        if identity.is_empty() {
            return Err(HostTokenError::Invalid("--identity is empty".into()));
        }
        if ttl.is_zero() {
            return Err(HostTokenError::Invalid("--ttl must be above 0".into()));
        }
        if ttl > self.max_ttl {
            return Err(HostTokenError::Invalid(format!(
                "--ttl {} is longer than the configured maximum {} ([token] max_ttl)",
                humantime::format_duration(ttl),
                humantime::format_duration(self.max_ttl)
            )));
        }
        if let Some(k) = claims
            .keys()
            .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
        {
            return Err(HostTokenError::Invalid(format!(
                "--claim {k}=... is reserved (the interceptor sets {})",
                RESERVED_CLAIMS.join(", ")
            )));
        }
        let now = unix_now();
        let id = new_id()?;
        let mut body = claims.clone();
        body.insert("iss".into(), self.issuer.clone().into());
        body.insert("aud".into(), self.audience.clone().into());
        body.insert("sub".into(), format!("identity:{identity}").into());
        body.insert("identity".into(), identity.into());
        body.insert("jti".into(), id.clone().into());
        body.insert("iat".into(), now.into());
        body.insert("nbf".into(), now.into());
        body.insert("exp".into(), (now + ttl.as_secs().max(1)).into());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &body, &self.encoding)
            .map_err(|e| HostTokenError::Invalid(format!("cannot sign the token: {e}")))?;
        let record = IssuedRecord {
            id: id.clone(),
            identity: identity.to_owned(),
            issued_at: now,
            expires_at: now + ttl.as_secs().max(1),
            claims,
            requested_by: requested_by.to_owned(),
        };
        let mut issued = self
            .issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        append_jsonl(&self.store.join("issued.jsonl"), &record)?;
        issued.insert(id, record.clone());
        Ok(Issued { token, record })
    }

    /// Revokes `id`. An id this host did not issue (or whose record expired)
    /// is refused unless `any_issuer` (e.g. the `jti` of a CI provider's token).
    pub fn revoke(
        &self,
        id: &str,
        any_issuer: bool,
        requested_by: &str,
    ) -> Result<Revoked, HostTokenError> {
        if id.is_empty() || id.len() > 256 {
            return Err(HostTokenError::Invalid(
                "the token id is empty or too long".into(),
            ));
        }
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = issued.get(id).cloned();
        if record.is_none() && !any_issuer && !self.revocations.contains(id) {
            return Err(HostTokenError::Invalid(format!(
                "no unexpired token with id `{id}` was issued by this host (see `interceptor token list`; \
                 pass --any-issuer to revoke the jti of another issuer's token)"
            )));
        }
        if self.revocations.contains(id) {
            return Ok(Revoked {
                id: id.to_owned(),
                identity: record.as_ref().map(|r| r.identity.clone()),
                newly_revoked: false,
                expires_at: record.map(|r| r.expires_at),
            });
        }
        let expires_at = record.as_ref().map_or(0, |r| r.expires_at);
        append_jsonl(
            &self.store.join("revoked.jsonl"),
            &RevokedRecord {
                id: id.to_owned(),
                revoked_at: unix_now(),
                expires_at,
                requested_by: requested_by.to_owned(),
            },
        )?;
        self.revocations.insert(id);
        drop(issued);
        Ok(Revoked {
            id: id.to_owned(),
            identity: record.as_ref().map(|r| r.identity.clone()),
            newly_revoked: true,
            expires_at: record.map(|r| r.expires_at),
        })
    }

    /// Unexpired issued tokens, oldest first, with whether each is revoked.
    pub fn list(&self) -> Vec<(IssuedRecord, bool)> {
        let now = unix_now();
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<_> = issued
            .values()
            .filter(|r| r.expires_at > now)
            .map(|r| (r.clone(), self.revocations.contains(&r.id)))
            .collect();
        v.sort_by(|a, b| (a.0.issued_at, &a.0.id).cmp(&(b.0.issued_at, &b.0.id)));
        v
    }

    /// Rewrites the store files without records of tokens expired over a day ago.
    fn compact(&self, now: u64) -> Result<(), HostTokenError> {
        let keep_after = now.saturating_sub(86_400);
        let issued_path = self.store.join("issued.jsonl");
        let issued: Vec<IssuedRecord> = read_jsonl(&issued_path)?;
        if issued.iter().any(|r| r.expires_at <= keep_after) {
            rewrite_jsonl(
                &issued_path,
                issued.iter().filter(|r| r.expires_at > keep_after),
            )?;
        }
        let revoked_path = self.store.join("revoked.jsonl");
        let revoked: Vec<RevokedRecord> = read_jsonl(&revoked_path)?;
        // Unknown expiry (another issuer's jti): kept.
        if revoked
            .iter()
            .any(|r| r.expires_at != 0 && r.expires_at <= keep_after)
        {
            rewrite_jsonl(
                &revoked_path,
                revoked
                    .iter()
                    .filter(|r| r.expires_at == 0 || r.expires_at > keep_after),
            )?;
        }
        Ok(())
    }
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `tok_` and 16 random bytes, hex.
fn new_id() -> Result<String, HostTokenError> {
    use rand::TryRngCore as _;
    let mut b = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| HostTokenError::Invalid(format!("no randomness from the OS: {e}")))?;
    Ok(format!("tok_{}", hex::encode(b)))
}

fn private_dir(dir: &Path) -> Result<(), HostTokenError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))
}

fn load_or_generate(path: &Path) -> Result<SigningKey, HostTokenError> {
    match fs::read_to_string(path) {
        Ok(pem) => {
            let key = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| io_err(path, format!("not an Ed25519 PKCS#8 key: {e}")))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err(path, e))?;
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            use rand::TryRngCore as _;
            if let Some(dir) = path.parent() {
                private_dir(dir)?;
            }
            let mut seed = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| io_err(path, format!("no randomness from the OS: {e}")))?;
            let key = SigningKey::from_bytes(&seed);
            seed.fill(0);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| io_err(path, e))?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io_err(path, e))?;
            f.write_all(pem.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(path, e))?;
            tracing::info!(event = "token_key_generated", path = %path.display(), "generated the host's token signing key");
            Ok(key)
        }
        Err(e) => Err(io_err(path, e)),
    }
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, HostTokenError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            // A torn last line (crash mid-append) is skipped; anything else is corruption.
            Err(_) if n + 1 == text.lines().count() && !text.ends_with('\n') => {}
            Err(e) => return Err(io_err(path, format!("line {}: {e}", n + 1))),
        }
    }
    Ok(out)
}

fn append_jsonl<T: Serialize>(path: &Path, record: &T) -> Result<(), HostTokenError> {
    let mut line = serde_json::to_string(record).map_err(|e| io_err(path, e))?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| io_err(path, e))
}

fn rewrite_jsonl<'a, T: Serialize + 'a>(
    path: &Path,
    records: impl Iterator<Item = &'a T>,
) -> Result<(), HostTokenError> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).map_err(|e| io_err(path, e))?);
        text.push('\n');
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}
