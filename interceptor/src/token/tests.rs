//! Tokens made in the test (RS256 from a fixture key, ES256 and `EdDSA` keys
//! generated here), checked against JWKS files and a loopback JWKS server.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::{
    rand::SystemRandom,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
    },
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

const ISS: &str = "https://ci.example.test";
const AUD: &str = "interceptor-test";

/// A signing key and its public JWK.
struct Key {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> Key {
    let pem = include_str!("testdata_rsa.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let pair = RsaKeyPair::from_der(&der).unwrap();
    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    Key {
        alg: Algorithm::RS256,
        kid: kid.into(),
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty":"RSA","use":"sig","alg":"RS256","kid":kid,"n":URL_SAFE_NO_PAD.encode(&c.n),"e":URL_SAFE_NO_PAD.encode(&c.e)}),
    }
}

fn es_key(kid: &str) -> Key {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    Key {
        alg: Algorithm::ES256,
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(doc.as_ref()),
        jwk: json!({"kty":"EC","crv":"P-256","kid":kid,"x":URL_SAFE_NO_PAD.encode(&point[1..33]),"y":URL_SAFE_NO_PAD.encode(&point[33..65])}),
    }
}

fn ed_key(kid: &str) -> Key {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    Key {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        encoding: EncodingKey::from_ed_der(doc.as_ref()),
        jwk: json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a GitHub Actions ID token, valid for 5 minutes.
fn claims() -> Value {
    let t = now();
    json!({
        "iss": ISS, "aud": AUD, "sub": "repo:org/app:ref:refs/heads/main",
        "repository": "org/app", "ref": "refs/heads/main", "workflow": "migrate",
        "run_id": "12345", "environment": "prod", "jti": format!("jti-{t}-{}", rand::random::<u32>()),
        "iat": t, "nbf": t, "exp": t + 300,
    })
}

fn sign(key: &Key, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
}

fn jwks(keys: &[&Key]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

fn issuer(jwks_file: Option<&Path>, jwks_url: Option<String>) -> IssuerConfig {
    IssuerConfig {
        name: "ci".into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        jwks_file: jwks_file.map(Path::to_owned),
        jwks_url,
        refresh: Duration::from_hours(1),
        refetch_min: Duration::ZERO,
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        leeway: Duration::from_secs(30),
    }
}

/// A validator over a JWKS file holding `keys`.
fn file_validator(dir: &Path, keys: &[&Key]) -> Validator {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    Validator::new(vec![issuer(Some(&path), None)]).unwrap()
}

/// A loopback HTTP server answering every request with the current body
/// (or 500 when it is `None`), counting requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(body: String) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(Some(body)));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (Arc::clone(&body), Arc::clone(&hits));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (b, h) = (Arc::clone(&b), Arc::clone(&h));
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let current = b.lock().unwrap().clone();
                let resp = match current {
                    Some(body) => format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()),
                    None => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    JwksServer { url, body, hits }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_and_carry_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, es, ed) = (rsa_key("rsa-1"), es_key("ec-1"), ed_key("ed-1"));
    let v = file_validator(dir.path(), &[&rsa, &es, &ed]);
    for key in [&rsa, &es, &ed] {
        let t = v
            .validate(&sign(key, &claims()))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(t.issuer_name, "ci");
        assert_eq!(t.issuer, ISS);
        assert_eq!(t.claim_str("repository").as_deref(), Some("org/app"));
        assert_eq!(t.claim_str("ref").as_deref(), Some("refs/heads/main"));
        assert_eq!(
            t.subject.as_deref(),
            Some("repo:org/app:ref:refs/heads/main")
        );
        assert!(!t.host_issued);
        assert_eq!(t.bound_identity(), None);
    }
}

#[tokio::test]
async fn times_are_checked_with_the_leeway() {
    let dir = tempfile::tempdir().unwrap();
    let key = es_key("k");
    let v = file_validator(dir.path(), &[&key]);
    let t = now();
    let mut c = claims();
    c["exp"] = json!(t - 120);
    assert_eq!(
        v.validate(&sign(&key, &c)).await.unwrap_err(),
        TokenError::Expired
    );
    c["exp"] = json!(t - 10); // within the 30 s leeway
    v.validate(&sign(&key, &c)).await.unwrap();
    let mut c = claims();
    c["nbf"] = json!(t + 600);
    assert_eq!(
        v.validate(&sign(&key, &c)).await.unwrap_err(),
        TokenError::NotYetValid
    );
    let mut c = claims();
    c["iat"] = json!(t + 600);
    assert_eq!(
        v.validate(&sign(&key, &c)).await.unwrap_err(),
        TokenError::NotYetValid
    );
    // validate_at: the same token is fine now and expired later.
    let token = sign(&key, &claims());
    v.validate_at(&token, SystemTime::now()).await.unwrap();
    let later = SystemTime::now() + Duration::from_hours(1);
    assert_eq!(
        v.validate_at(&token, later).await.unwrap_err(),
        TokenError::Expired
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.validate(&sign(&key, &c)).await.unwrap_err(),
        TokenError::MissingClaim("exp")
    );
}

#[tokio::test]
async fn wrong_issuer_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key("k");
    let v = file_validator(dir.path(), &[&key]);
    let mut c = claims();
    c["iss"] = json!("https://evil.example.test");
    assert_eq!(
        v.validate(&sign(&key, &c)).await.unwrap_err(),
        TokenError::UnknownIssuer
    );
    let mut c = claims();
    c["aud"] = json!("some-other-service");
    assert_eq!(
        v.validate(&sign(&key, &c)).await.unwrap_err(),
        TokenError::WrongAudience
    );
    // aud as a list containing ours is fine.
    let mut c = claims();
    c["aud"] = json!(["other", AUD]);
    v.validate(&sign(&key, &c)).await.unwrap();
}

fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key("k");
    let v = file_validator(dir.path(), &[&key]);
    for alg in ["none", "None", "NONE"] {
        let t = unsigned(&json!({"alg": alg, "kid": "k"}), &claims(), "");
        assert_eq!(
            v.validate(&t).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed,
            "{alg}"
        );
        let t = unsigned(&json!({"alg": alg, "kid": "k"}), &claims(), "AAAA");
        assert_eq!(
            v.validate(&t).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed,
            "{alg}"
        );
    }
    // The classic confusion: HS256 keyed with the RSA public key (as PEM
    // text, and as the JWK's modulus bytes).
    let pair = RsaKeyPair::from_der(
        &base64::engine::general_purpose::STANDARD
            .decode(
                include_str!("testdata_rsa.pem")
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap(),
    )
    .unwrap();
    let public_der = pair.public().as_ref().to_vec();
    let n = URL_SAFE_NO_PAD
        .decode(key.jwk["n"].as_str().unwrap())
        .unwrap();
    for secret in [public_der, n, key.jwk.to_string().into_bytes()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k".into());
        let t = jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(
            v.validate(&t).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
    }
    // Symmetric keys in a JWKS are never used, even for an allowed-looking token.
    let path = dir.path().join("oct.json");
    std::fs::write(
        &path,
        json!({"keys":[{"kty":"oct","kid":"s","k":URL_SAFE_NO_PAD.encode(b"secret")}]}).to_string(),
    )
    .unwrap();
    let v = Validator::new(vec![issuer(Some(&path), None)]).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("s".into());
    let t = jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(b"secret")).unwrap();
    assert_eq!(
        v.validate(&t).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn algorithm_allow_list_and_key_type_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, es) = (rsa_key("rsa"), es_key("ec"));
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&rsa, &es])).unwrap();
    let mut cfg = issuer(Some(&path), None);
    cfg.algorithms = vec![Algorithm::RS256];
    let v = Validator::new(vec![cfg]).unwrap();
    v.validate(&sign(&rsa, &claims())).await.unwrap();
    assert_eq!(
        v.validate(&sign(&es, &claims())).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    // An EC token that names the RSA key's kid.
    let v = file_validator(dir.path(), &[&rsa, &es]);
    let mut wrong = es_key("rsa");
    wrong.kid = "rsa".into();
    assert_eq!(
        v.validate(&sign(&wrong, &claims())).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn unknown_kid_and_bad_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed_key("published");
    let v = file_validator(dir.path(), &[&key]);
    assert_eq!(
        v.validate(&sign(&ed_key("other"), &claims()))
            .await
            .unwrap_err(),
        TokenError::UnknownKey
    );
    // Another key claiming the published kid.
    let forger = ed_key("published");
    assert_eq!(
        v.validate(&sign(&forger, &claims())).await.unwrap_err(),
        TokenError::BadSignature
    );
    // A genuine token whose claims were edited afterwards.
    let token = sign(&key, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["repository"] = json!("org/other");
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(
        v.validate(&edited).await.unwrap_err(),
        TokenError::BadSignature
    );
    // A forged token that is also expired is reported as forged.
    let mut c = claims();
    c["exp"] = json!(1);
    assert_eq!(
        v.validate(&sign(&forger, &c)).await.unwrap_err(),
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn malformed_and_oversized_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let key = es_key("k");
    let v = file_validator(dir.path(), &[&key]).with_max_token_bytes(4096);
    let good = sign(&key, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "not-a-jwt".to_owned(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("{}!!.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}%%.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}*", parts[0], parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("[1,2]"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("not json"),
            parts[2]
        ),
    ] {
        assert_eq!(
            v.validate(&bad).await.unwrap_err(),
            TokenError::Malformed,
            "{bad}"
        );
    }
    assert_eq!(v.validate("").await.unwrap_err(), TokenError::Missing);
    let mut c = claims();
    c["padding"] = json!("x".repeat(5000));
    let big = sign(&key, &c);
    let e = v.validate(&big).await.unwrap_err();
    assert_eq!(e, TokenError::TooLarge);
    // No message repeats any of the token.
    for part in big.split('.') {
        assert!(!e.message().contains(part));
    }
}

#[tokio::test]
async fn jwks_url_rotation_refetches_at_most_once_per_interval() {
    let (old, new) = (rsa_key("2024"), ed_key("2025"));
    let server = jwks_server(jwks(&[&old])).await;
    let mut cfg = issuer(None, Some(server.url.clone()));
    cfg.refetch_min = Duration::from_hours(1);
    let v = Validator::new(vec![cfg]).unwrap();
    v.validate(&sign(&old, &claims())).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // Cached: no fetch for the next token.
    v.validate(&sign(&old, &claims())).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // The issuer rotates; within refetch_min of the last fetch an unknown kid does not refetch.
    *server.body.lock().unwrap() = Some(jwks(&[&new]));
    assert_eq!(
        v.validate(&sign(&new, &claims())).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // With refetch_min 0 an unknown kid refetches once and finds the new key.
    let mut cfg = issuer(None, Some(server.url.clone()));
    cfg.refetch_min = Duration::ZERO;
    *server.body.lock().unwrap() = Some(jwks(&[&old]));
    let v = Validator::new(vec![cfg]).unwrap();
    v.validate(&sign(&old, &claims())).await.unwrap();
    let before = server.hits.load(Ordering::SeqCst);
    *server.body.lock().unwrap() = Some(jwks(&[&new]));
    v.validate(&sign(&new, &claims())).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), before + 1);
    assert_eq!(v.key_loads("ci").await, Some(2));
    // The old key is gone from the new set.
    assert_eq!(
        v.validate(&sign(&old, &claims())).await.unwrap_err(),
        TokenError::UnknownKey
    );
}

#[tokio::test]
async fn last_good_keys_are_kept_when_a_refresh_fails() {
    let key = es_key("k");
    let server = jwks_server(jwks(&[&key])).await;
    let mut cfg = issuer(None, Some(server.url.clone()));
    cfg.refresh = Duration::ZERO; // every token triggers a refresh
    let v = Validator::new(vec![cfg]).unwrap();
    v.validate(&sign(&key, &claims())).await.unwrap();
    *server.body.lock().unwrap() = None; // the issuer now answers 500
    v.validate(&sign(&key, &claims())).await.unwrap();
    assert!(
        server.hits.load(Ordering::SeqCst) >= 2,
        "the refresh was attempted"
    );
    // Garbage instead of a key set: the last good copy stays too.
    *server.body.lock().unwrap() = Some("<html>".into());
    v.validate(&sign(&key, &claims())).await.unwrap();
}

#[tokio::test]
async fn unreachable_keys_without_a_last_good_copy() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let v = Validator::new(vec![issuer(
        None,
        Some(format!("http://127.0.0.1:{port}/jwks")),
    )])
    .unwrap();
    assert_eq!(
        v.validate(&sign(&es_key("k"), &claims()))
            .await
            .unwrap_err(),
        TokenError::KeysUnavailable
    );
    let missing = Validator::new(vec![issuer(
        Some(Path::new("/nonexistent/jwks.json")),
        None,
    )])
    .unwrap();
    assert_eq!(
        missing
            .validate(&sign(&es_key("k"), &claims()))
            .await
            .unwrap_err(),
        TokenError::KeysUnavailable
    );
    let report = missing.prefetch().await;
    assert!(
        report[0]
            .1
            .as_ref()
            .unwrap_err()
            .contains("/nonexistent/jwks.json")
    );
}

#[tokio::test]
async fn revoked_jti_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = es_key("k");
    let revocations = Arc::new(Revocations::default());
    let v = file_validator(dir.path(), &[&key]).with_revocations(Arc::clone(&revocations));
    let c = claims();
    let token = sign(&key, &c);
    v.validate(&token).await.unwrap();
    revocations.insert(c["jti"].as_str().unwrap());
    assert_eq!(v.validate(&token).await.unwrap_err(), TokenError::Revoked);
}

fn host_config(dir: &Path) -> HostIssuerConfig {
    HostIssuerConfig {
        issuer: "interceptor://test-host".into(),
        audience: "interceptor".into(),
        key: dir.join("tokens/host.key"),
        store: dir.join("tokens"),
        max_ttl: Duration::from_hours(1),
    }
}

#[tokio::test]
async fn host_tokens_issue_validate_revoke_and_survive_a_restart() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let host = HostIssuer::open(&host_config(dir.path())).unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("tokens/host.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let v = Validator::new(vec![])
        .unwrap()
        .with_host(host.trust())
        .with_revocations(host.revocations());
    let mut extra = serde_json::Map::new();
    extra.insert("run".into(), json!("build-77"));
    let issued = host
        .issue("migrations", Duration::from_mins(15), extra, "uid=0")
        .unwrap();
    let t = v.validate(&issued.token).await.unwrap();
    assert!(t.host_issued);
    assert_eq!(t.issuer_name, HOST_ISSUER_NAME);
    assert_eq!(t.bound_identity(), Some("migrations"));
    assert_eq!(t.claim_str("run").as_deref(), Some("build-77"));
    assert_eq!(t.jti.as_deref(), Some(issued.record.id.as_str()));
    assert_eq!(t.exp, issued.record.expires_at);
    // Expires with its TTL.
    let later = SystemTime::now() + Duration::from_mins(16);
    assert_eq!(
        v.validate_at(&issued.token, later).await.unwrap_err(),
        TokenError::Expired
    );
    // Too long, reserved claims, unknown id.
    let e = host
        .issue(
            "migrations",
            Duration::from_hours(2),
            serde_json::Map::new(),
            "",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than the configured maximum 1h"), "{e}");
    let mut reserved = serde_json::Map::new();
    reserved.insert("identity".into(), json!("admin"));
    assert!(
        host.issue("migrations", Duration::from_mins(1), reserved, "")
            .unwrap_err()
            .to_string()
            .contains("reserved")
    );
    assert!(
        host.revoke("tok_nope", false, "")
            .unwrap_err()
            .to_string()
            .contains("no unexpired token")
    );
    assert_eq!(host.list().len(), 1);

    let r = host.revoke(&issued.record.id, false, "uid=0").unwrap();
    assert!(r.newly_revoked);
    assert_eq!(r.identity.as_deref(), Some("migrations"));
    assert_eq!(
        v.validate(&issued.token).await.unwrap_err(),
        TokenError::Revoked
    );
    assert!(
        !host
            .revoke(&issued.record.id, false, "")
            .unwrap()
            .newly_revoked
    );
    assert!(host.list()[0].1, "listed as revoked");
    drop((host, v));

    // After a restart: same key (old tokens still verify), revocation kept.
    let host = HostIssuer::open(&host_config(dir.path())).unwrap();
    let v = Validator::new(vec![])
        .unwrap()
        .with_host(host.trust())
        .with_revocations(host.revocations());
    assert_eq!(
        v.validate(&issued.token).await.unwrap_err(),
        TokenError::Revoked
    );
    let second = host
        .issue(
            "migrations",
            Duration::from_mins(5),
            serde_json::Map::new(),
            "",
        )
        .unwrap();
    v.validate(&second.token).await.unwrap();
    // The token itself is stored nowhere.
    for f in ["issued.jsonl", "revoked.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join("tokens").join(f)).unwrap();
        assert!(!text.contains(&second.token) && !text.contains(&issued.token));
    }
    // A host token is not accepted by a validator that does not trust this host.
    let other = Validator::new(vec![]).unwrap();
    assert_eq!(
        other.validate(&second.token).await.unwrap_err(),
        TokenError::UnknownIssuer
    );
}

#[tokio::test]
async fn a_token_signed_by_another_hosts_key_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let host_a = HostIssuer::open(&host_config(a.path())).unwrap();
    let host_b = HostIssuer::open(&host_config(b.path())).unwrap();
    let v = Validator::new(vec![]).unwrap().with_host(host_a.trust());
    let t = host_b
        .issue("x", Duration::from_mins(1), serde_json::Map::new(), "")
        .unwrap();
    // Same issuer name, other key: its kid is unknown here.
    assert_eq!(
        v.validate(&t.token).await.unwrap_err(),
        TokenError::UnknownKey
    );
}
