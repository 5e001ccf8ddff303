//! An issuer's public keys (JWKS), from a file or a URL: loaded on first
//! use, reloaded every `refresh`, the last good copy kept when a reload
//! fails, and reloaded early (at most once per `refetch_min`) when a token
//! names a key id the copy does not have (the issuer rotated its keys).

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use tokio::sync::Mutex;

use super::{IssuerConfig, TokenError};

/// Largest JWKS document accepted (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time allowed for one fetch of a JWKS URL.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the keys come from.
#[derive(Debug)]
enum Source {
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
    },
}

/// The keys of one issuer.
#[derive(Debug)]
pub(crate) struct KeyCache {
    /// Issuer name, for logs.
    name: String,
    source: Source,
    refresh: Duration,
    refetch_min: Duration,
    /// Serialises loads: concurrent sessions wait for one fetch.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Last good key set.
    keys: Option<Arc<Vec<Jwk>>>,
    /// When `keys` was loaded.
    loaded: Option<Instant>,
    /// Last load attempt, successful or not (rate limit).
    attempted: Option<Instant>,
    /// Loads done, for tests and logs.
    loads: u64,
}

/// What looking a key up found.
enum Lookup {
    Found(DecodingKey),
    /// A key with that id exists but is for another algorithm or curve.
    WrongAlgorithm,
    NotFound,
}

impl KeyCache {
    pub(crate) fn new(config: &IssuerConfig) -> Result<Self, String> {
        let source = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => Source::File(path.clone()),
            (None, Some(url)) => {
                let client = reqwest::Client::builder()
                    .use_rustls_tls()
                    .timeout(FETCH_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .user_agent(concat!("interceptor/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client for {url}: {e}"))?;
                Source::Url {
                    url: url.clone(),
                    client,
                }
            }
            (None, None) => {
                return Err(format!(
                    "issuer `{}` has neither jwks_file nor jwks_url",
                    config.name
                ));
            }
        };
        Ok(Self {
            name: config.name.clone(),
            source,
            refresh: config.refresh,
            refetch_min: config.refetch_min,
            state: Mutex::new(State::default()),
        })
    }

    /// How many times the key set was loaded (tests: rate limit).
    pub(crate) async fn loads(&self) -> u64 {
        self.state.lock().await.loads
    }

    /// Loads the key set now if it never was; errors are logged.
    pub(crate) async fn prefetch(&self) -> Result<usize, String> {
        let mut st = self.state.lock().await;
        self.load(&mut st).await?;
        Ok(st.keys.as_ref().map_or(0, |k| k.len()))
    }

    /// The key for a token signed with `alg` under `kid`.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, TokenError> {
        let mut st = self.state.lock().await;
        let stale = st.loaded.is_none_or(|t| t.elapsed() >= self.refresh);
        if stale && self.may_load(&st) {
            // A failure keeps the last good copy (logged in `load`).
            let _ = self.load(&mut st).await;
        }
        let Some(keys) = st.keys.clone() else {
            return Err(TokenError::KeysUnavailable);
        };
        match select(&keys, kid, alg) {
            Lookup::Found(k) => return Ok(k),
            Lookup::WrongAlgorithm => return Err(TokenError::AlgorithmNotAllowed),
            Lookup::NotFound => {}
        }
        if !self.may_load(&st) || self.load(&mut st).await.is_err() {
            return Err(TokenError::UnknownKey);
        }
        let keys = st.keys.clone().unwrap_or_default();
        match select(&keys, kid, alg) {
            Lookup::Found(k) => Ok(k),
            Lookup::WrongAlgorithm => Err(TokenError::AlgorithmNotAllowed),
            Lookup::NotFound => Err(TokenError::UnknownKey),
        }
    }

    fn may_load(&self, st: &State) -> bool {
        st.attempted.is_none_or(|t| t.elapsed() >= self.refetch_min)
    }

    async fn load(&self, st: &mut State) -> Result<(), String> {
        st.attempted = Some(Instant::now());
        st.loads += 1;
        let result = match &self.source {
            Source::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Source::Url { url, client } => fetch(client, url).await,
        }
        .and_then(|bytes| parse_jwks(&bytes));
        match result {
            Ok(keys) => {
                tracing::info!(event = "jwks_loaded", issuer = %self.name, keys = keys.len(), "issuer keys loaded");
                st.keys = Some(Arc::new(keys));
                st.loaded = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    event = "jwks_load_failed",
                    issuer = %self.name,
                    error = %e,
                    last_good = st.keys.is_some(),
                    "cannot load the issuer's keys; the last good copy stays in use"
                );
                Err(e)
            }
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "GET {url}: the key set is larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `{"keys":[...]}`; keys this validator cannot use (symmetric, encryption
/// keys, unknown types) are skipped rather than failing the set.
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .collect())
}

/// Whether `jwk` can verify `alg` (key type, curve, and the key's own `alg`).
pub(crate) fn compatible(jwk: &Jwk, alg: Algorithm) -> bool {
    if let Some(key_alg) = &jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return false;
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(p) => matches!(
            (alg, &p.curve),
            (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
        ),
        AlgorithmParameters::OctetKeyPair(p) => {
            alg == Algorithm::EdDSA && p.curve == EllipticCurve::Ed25519
        }
        AlgorithmParameters::OctetKey(_) => false,
    }
}

fn select(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Lookup {
    let candidate = if let Some(kid) = kid {
        keys.iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
    } else {
        // No kid: only unambiguous when the set has one key for the algorithm.
        let mut usable = keys.iter().filter(|k| compatible(k, alg));
        if let (Some(k), None) = (usable.next(), usable.next()) {
            Some(k)
        } else {
            None
        }
    };
    let Some(jwk) = candidate else {
        return Lookup::NotFound;
    };
    if !compatible(jwk, alg) {
        return Lookup::WrongAlgorithm;
    }
    DecodingKey::from_jwk(jwk).map_or(Lookup::WrongAlgorithm, Lookup::Found)
}
