//! End-to-end: workload tokens. Unchanged psql in a watched cgroup presents
//! a CI ID token (made here, its keys served from loopback and from a file)
//! or a host-issued token as `PGPASSWORD`; the claims select the identity
//! and its rules; a missing, foreign, expired, forged or revoked token is
//! refused with its own message, recorded in the audit log, never echoed.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use interceptor_tests::{Stack, paths::interceptor_bin, process::Outcome};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};
use serde_json::{Value, json};

/// `iss` of the issuer whose keys are served over loopback HTTP (never contacted itself).
const URL_ISS: &str = "https://ci.interceptor-test.invalid";
/// `iss` of the issuer whose keys are in a file.
const FILE_ISS: &str = "https://file-ci.interceptor-test.invalid";
const AUD: &str = "interceptor-e2e";

const POLICY: &str = r#"
[[identity]]
name = "migrations"
cgroup = ["/interceptor-test-*"]
exe = ["/usr/lib/postgresql/*/bin/psql"]
issuer = ["ci", "ci-file"]
claims = { repository = "org/app", ref = ["refs/heads/main", "refs/heads/release/*"] }

[[identity]]
name = "run-token"
cgroup = ["/interceptor-test-*"]
exe = ["/usr/lib/postgresql/*/bin/psql"]
token = "required"
issuer = ["host"]

[[rule]]
id = "migrations-write"
identities = ["migrations"]
classes = ["read", "write", "transaction", "session"]
tables = ["public.*", "pg_catalog.*"]
action = "allow"

[[rule]]
id = "run-read-only"
identities = ["run-token"]
classes = ["read", "transaction", "session"]
tables = ["public.*", "pg_catalog.*"]
action = "allow"
"#;

struct Key {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn es_key(kid: &str) -> Key {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    Key {
        alg: Algorithm::ES256,
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(doc.as_ref()),
        jwk: json!({"kty":"EC","crv":"P-256","use":"sig","kid":kid,"x":URL_SAFE_NO_PAD.encode(&p[1..33]),"y":URL_SAFE_NO_PAD.encode(&p[33..65])}),
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

fn jwks(keys: &[&Key]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A GitHub Actions-shaped ID token.
fn gh_claims(iss: &str, repository: &str, git_ref: &str) -> Value {
    let t = now();
    json!({
        "iss": iss, "aud": AUD, "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository, "ref": git_ref, "workflow": "migrate",
        "job_workflow_ref": format!("{repository}/.github/workflows/migrate.yml@{git_ref}"),
        "run_id": "4242", "environment": "production",
        "jti": format!("gh-{t}-{}", URL_SAFE_NO_PAD.encode(rand_bytes())),
        "iat": t, "nbf": t, "exp": t + 300,
    })
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut b).unwrap();
    b
}

fn sign(key: &Key, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
}

/// Serves the current body at any path on 127.0.0.1 (the test's own issuer).
fn serve_jwks(body: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/.well-known/jwks", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = body.lock().unwrap().clone();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

struct Fixture {
    s: Stack,
    url_key: Key,
    file_key: Key,
    jwks_body: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    fixture_with(POLICY)
}

fn fixture_with(policy: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("tokens.toml"), policy).unwrap();
    let (url_key, file_key) = (es_key("url-2025"), ed_key("file-1"));
    let jwks_body = Arc::new(Mutex::new(jwks(&[&url_key])));
    let url = serve_jwks(Arc::clone(&jwks_body));
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&file_key])).unwrap();
    let extra = format!(
        r#"[token]
max_ttl = "1h"

[[token.issuer]]
name = "ci"
issuer = "{URL_ISS}"
audiences = ["{AUD}"]
jwks_url = "{url}"
refetch_min = "0s"

[[token.issuer]]
name = "ci-file"
issuer = "{FILE_ISS}"
audiences = ["{AUD}"]
jwks_file = "{}"
"#,
        jwks_file.display()
    );
    let s = Stack::start_with(|c, _| {
        c.policy_dir = Some(policy_dir);
        c.extra_toml = extra;
    })
    .unwrap();
    Fixture {
        s,
        url_key,
        file_key,
        jwks_body,
        _dir: dir,
    }
}

/// psql in the watched cgroup with `token` (if any) as PGPASSWORD.
fn psql(s: &Stack, token: Option<&str>, sql: &[&str]) -> Outcome {
    let mut cmd = s.psql(&s.conninfo(), sql);
    if let Some(t) = token {
        cmd.env("PGPASSWORD", t);
    }
    s.run_inside(&mut cmd).unwrap()
}

fn audit_records(s: &Stack) -> Vec<Value> {
    let out = Command::new(interceptor_bin())
        .args(["audit", "export"])
        .arg(&s.daemon.layout().audit_dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `session_start` audit event of process `pid`.
fn session_record(s: &Stack, pid: u32) -> Value {
    for _ in 0..50 {
        if let Some(r) = audit_records(s)
            .into_iter()
            .find(|r| r["kind"] == "session_start" && r["event"]["attestation"]["pid"] == pid)
        {
            return r["event"].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no session_start record for pid {pid}:\n{}",
        s.daemon.output()
    );
}

/// No token, whole or in part, in the audit log or the daemon's output.
fn assert_not_leaked(s: &Stack, tokens: &[&str]) {
    let audit = std::fs::read_dir(&s.daemon.layout().audit_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    let log = s.daemon.output();
    for part in tokens
        .iter()
        .flat_map(|t| t.split('.'))
        .filter(|p| p.len() > 8)
    {
        assert!(!audit.contains(part), "a token is in the audit log: {part}");
        assert!(
            !log.contains(part),
            "a token is in the daemon's output: {part}"
        );
    }
}

fn cli(s: &Stack, args: &[&str]) -> std::process::Output {
    Command::new(interceptor_bin())
        .arg("token")
        .args(args)
        .arg("--config")
        .arg(&s.daemon.layout().config)
        .output()
        .unwrap()
}

#[test]
fn a_ci_token_selects_the_identity_its_claims_name_and_its_rules() {
    let f = fixture();
    let s = &f.s;
    // From the URL issuer (ES256) and from the file issuer (EdDSA).
    let url_token = sign(
        &f.url_key,
        &gh_claims(URL_ISS, "org/app", "refs/heads/main"),
    );
    let file_token = sign(
        &f.file_key,
        &gh_claims(FILE_ISS, "org/app", "refs/heads/release/2.0"),
    );
    for token in [&url_token, &file_token] {
        let out = psql(
            s,
            Some(token),
            &[
                "update customers set name = name where id = 1",
                "select name from customers where id = 2",
            ],
        );
        assert!(out.success(), "{out}\n{}", s.daemon.output());
        assert_eq!(out.stdout.trim(), "UPDATE 1\nGrace Hopper", "{out}");
        let rec = session_record(s, out.pid);
        assert_eq!(rec["identity"], "migrations", "{rec}");
        assert_eq!(rec["token"]["status"], "verified");
        assert_eq!(rec["token"]["claims"]["repository"], "org/app");
        assert_eq!(rec["token"]["claims"]["run_id"], "4242");
        assert!(rec.get("refused").is_none(), "{rec}");
        assert!(!out.stderr.contains(token.as_str()));
    }
    let rec_names: Vec<String> = audit_records(s)
        .iter()
        .filter(|r| r["kind"] == "session_start")
        .map(|r| {
            r["event"]["token"]["issuer_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        rec_names.contains(&"ci".to_owned()) && rec_names.contains(&"ci-file".to_owned()),
        "{rec_names:?}"
    );

    // The issuer rotates its keys: a token under the new kid is fetched for and works.
    let rotated = ed_key("url-2026");
    *f.jwks_body.lock().unwrap() = jwks(&[&rotated]);
    let out = psql(
        s,
        Some(&sign(
            &rotated,
            &gh_claims(URL_ISS, "org/app", "refs/heads/main"),
        )),
        &["select 1"],
    );
    assert!(
        out.success(),
        "after rotation: {out}\n{}",
        s.daemon.output()
    );
    assert_not_leaked(s, &[&url_token, &file_token]);
}

#[test]
fn no_token_a_foreign_token_or_a_bad_one_is_refused_with_its_own_message() {
    let f = fixture();
    let s = &f.s;
    // No token: libpq has no password to answer with.
    let out = psql(s, None, &["select 1"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("no password supplied"), "{out}");
    assert_eq!(session_record(s, out.pid)["refused"], "token_missing");

    // A valid token of another repository.
    let other = sign(
        &f.url_key,
        &gh_claims(URL_ISS, "org/other", "refs/heads/main"),
    );
    let out = psql(s, Some(&other), &["select 1"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("no policy identity accepts this process with this token"),
        "{out}"
    );
    let rec = session_record(s, out.pid);
    assert_eq!(rec["refused"], "token_claims_mismatch");
    assert_eq!(rec["token"]["claims"]["repository"], "org/other");

    // Each bad token: its message, its audit reason, the token never echoed.
    let t = now();
    let mut expired = gh_claims(URL_ISS, "org/app", "refs/heads/main");
    expired["exp"] = json!(t - 3600);
    expired["iat"] = json!(t - 7200);
    expired["nbf"] = json!(t - 7200);
    let mut wrong_aud = gh_claims(URL_ISS, "org/app", "refs/heads/main");
    wrong_aud["aud"] = json!("another-service");
    let mut unknown_iss = gh_claims(
        "https://evil.interceptor-test.invalid",
        "org/app",
        "refs/heads/main",
    );
    unknown_iss["iss"] = json!("https://evil.interceptor-test.invalid");
    let forged = {
        let mut k = es_key("url-2025"); // same kid, other key
        k.kid = "url-2025".into();
        sign(&k, &gh_claims(URL_ISS, "org/app", "refs/heads/main"))
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg":"none"}).to_string()),
        URL_SAFE_NO_PAD.encode(gh_claims(URL_ISS, "org/app", "refs/heads/main").to_string())
    );
    let cases = [
        (
            sign(&f.url_key, &expired),
            "interceptor: token refused: the token has expired",
            "token_expired",
        ),
        (
            sign(&f.url_key, &wrong_aud),
            "interceptor: token refused: the token is for another audience",
            "token_wrong_audience",
        ),
        (
            sign(&f.url_key, &unknown_iss),
            "interceptor: token refused: the token's issuer is not trusted",
            "token_unknown_issuer",
        ),
        (
            forged,
            "interceptor: token refused: the token's signature is invalid",
            "token_bad_signature",
        ),
        (
            none,
            "interceptor: token refused: the token's signing algorithm is not allowed",
            "token_algorithm_not_allowed",
        ),
        (
            "not.a-token".to_owned(),
            "interceptor: token refused: the password is not a well-formed JWT",
            "token_malformed",
        ),
    ];
    for (token, message, reason) in &cases {
        let out = psql(s, Some(token), &["select 1"]);
        assert!(!out.success(), "{reason}: {out}");
        assert!(out.stderr.contains(message), "{reason}: {out}");
        assert!(
            out.stderr.contains(&format!("reason: {reason}")),
            "{reason}: {out}"
        );
        let rec = session_record(s, out.pid);
        assert_eq!(rec["refused"], *reason, "{rec}");
        assert_eq!(rec["token"]["status"], "rejected");
        assert!(rec["identity"].is_null());
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !out.stderr.contains(part),
                "{reason}: the token is echoed: {out}"
            );
        }
    }
    let tokens: Vec<&str> = cases
        .iter()
        .map(|c| c.0.as_str())
        .chain([other.as_str()])
        .collect();
    assert_not_leaked(s, &tokens);

    // The right token from another program (a leaked token) gets nothing.
    let good = sign(
        &f.url_key,
        &gh_claims(URL_ISS, "org/app", "refs/heads/main"),
    );
    let conninfo = format!("{} password={good}", s.conninfo());
    let out = s
        .run_inside(Command::new(env!("CARGO_BIN_EXE_pgclient")).args(["query", &conninfo]))
        .unwrap();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("no policy identity"), "{out}");
}

#[test]
fn host_issued_tokens_work_until_their_ttl_and_stop_when_revoked() {
    let mut f = fixture();
    // Longer than [token] max_ttl: refused.
    let out = cli(&f.s, &["issue", "--identity", "run-token", "--ttl", "2h"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("longer than the configured maximum 1h"),
        "{out:?}"
    );
    // An identity the policy does not have: refused.
    let out = cli(&f.s, &["issue", "--identity", "nobody", "--ttl", "5m"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no identity `nobody`"),
        "{out:?}"
    );
    // An identity that only takes CI tokens: a host token would be useless.
    let out = cli(&f.s, &["issue", "--identity", "migrations", "--ttl", "5m"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not accept host-issued tokens"),
        "{out:?}"
    );

    let out = cli(
        &f.s,
        &[
            "issue",
            "--identity",
            "run-token",
            "--ttl",
            "15m",
            "--claim",
            "pipeline=build-7",
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}\n{}", f.s.daemon.output());
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (token, id) = (
        issued["token"].as_str().unwrap().to_owned(),
        issued["id"].as_str().unwrap().to_owned(),
    );

    // The identity it is bound to, and that identity's rules: reads yes, writes no.
    let out = psql(
        &f.s,
        Some(&token),
        &["select name from customers where id = 2"],
    );
    assert!(out.success(), "{out}\n{}", f.s.daemon.output());
    assert_eq!(out.stdout.trim(), "Grace Hopper");
    let rec = session_record(&f.s, out.pid);
    assert_eq!(rec["identity"], "run-token");
    assert_eq!(rec["token"]["host_issued"], true);
    assert_eq!(rec["token"]["jti"], id.as_str());
    assert_eq!(rec["token"]["claims"]["pipeline"], "build-7");
    let out = psql(&f.s, Some(&token), &["delete from orders where id = 101"]);
    assert!(
        !out.success() && out.stderr.contains("default-deny"),
        "{out}"
    );

    let listed = cli(&f.s, &["list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&id),
        "{listed:?}"
    );

    // Revoked: refused from the next connection on, also after a restart.
    let out = cli(&f.s, &["revoke", &id]);
    assert!(out.status.success(), "{out:?}");
    let out = psql(&f.s, Some(&token), &["select 1"]);
    assert!(
        out.stderr
            .contains("interceptor: token refused: the token has been revoked"),
        "{out}"
    );
    assert_eq!(session_record(&f.s, out.pid)["refused"], "token_revoked");
    f.s.daemon.restart().unwrap();
    let out = psql(&f.s, Some(&token), &["select 1"]);
    assert!(
        out.stderr.contains("the token has been revoked"),
        "after a restart: {out}"
    );

    // A short-lived one works, then expires.
    let out = cli(&f.s, &["issue", "--identity", "run-token", "--ttl", "2s"]);
    assert!(out.status.success(), "{out:?}");
    let short = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("issued token tok_"),
        "{out:?}"
    );
    let out = psql(&f.s, Some(&short), &["select 1"]);
    assert!(out.success(), "{out}");
    // Past its expiry and the host's 5 s clock leeway.
    std::thread::sleep(Duration::from_secs(8));
    let out = psql(&f.s, Some(&short), &["select 1"]);
    assert!(out.stderr.contains("the token has expired"), "{out}");

    // Issue and revocation are in the audit log by id, the tokens nowhere.
    let records = audit_records(&f.s);
    let token_events: Vec<&Value> = records.iter().filter(|r| r["kind"] == "token").collect();
    assert!(token_events.iter().any(|r| r["event"]["action"] == "issued"
        && r["event"]["token"] == id.as_str()
        && r["event"]["subject"] == "run-token"));
    assert!(
        token_events
            .iter()
            .any(|r| r["event"]["action"] == "revoked" && r["event"]["token"] == id.as_str())
    );
    assert_not_leaked(&f.s, &[&token, &short]);
    // The audit log still verifies.
    let out = Command::new(interceptor_bin())
        .args(["audit", "verify"])
        .arg(&f.s.daemon.layout().audit_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A tool that must bring a token, and psql for which a token is optional.
const OPTIONAL_POLICY: &str = r#"
[[identity]]
name = "tool-required"
cgroup = ["/interceptor-test-*"]
exe = ["*/pgclient"]
issuer = ["ci"]
claims = { repository = "org/app" }

[[identity]]
name = "psql-optional"
cgroup = ["/interceptor-test-*"]
exe = ["/usr/lib/postgresql/*/bin/psql"]
token = "optional"

[[rule]]
id = "read"
identities = ["*"]
classes = ["read", "transaction", "session"]
action = "allow"
"#;

fn pgclient(s: &Stack, password: &str) -> Outcome {
    let conninfo = format!("{} password='{password}'", s.conninfo());
    s.run_inside(Command::new(env!("CARGO_BIN_EXE_pgclient")).args(["query", &conninfo]))
        .unwrap()
}

#[test]
fn an_empty_password_is_no_token_and_optional_identities_still_check_a_token_given() {
    let f = fixture_with(OPTIONAL_POLICY);
    let s = &f.s;
    // tokio-postgres answers the password request with the empty password it has.
    let out = pgclient(s, "");
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("interceptor: a token is required for this connection")
            && out.stderr.contains("reason: token_missing"),
        "{out}"
    );
    assert_eq!(session_record(s, out.pid)["refused"], "token_missing");
    let good = sign(
        &f.url_key,
        &gh_claims(URL_ISS, "org/app", "refs/heads/main"),
    );
    let out = pgclient(s, &good);
    assert!(out.success(), "{out}\n{}", s.daemon.output());
    assert!(out.stdout.contains("n=42"), "{out}");
    assert_eq!(session_record(s, out.pid)["identity"], "tool-required");

    // Optional: a valid token is taken and recorded ...
    let out = psql(s, Some(&good), &["select 1"]);
    assert!(out.success(), "{out}");
    let rec = session_record(s, out.pid);
    assert_eq!(rec["identity"], "psql-optional");
    assert_eq!(rec["token"]["claims"]["repository"], "org/app");
    // ... a bad one is refused, never read as "no token" ...
    let mut expired = gh_claims(URL_ISS, "org/app", "refs/heads/main");
    expired["exp"] = json!(now() - 3600);
    let out = psql(s, Some(&sign(&f.url_key, &expired)), &["select 1"]);
    assert!(out.stderr.contains("the token has expired"), "{out}");
    // ... and libpq without a password cannot answer the request at all.
    let out = psql(s, None, &["select 1"]);
    assert!(
        !out.success() && out.stderr.contains("no password supplied"),
        "{out}"
    );
}

#[test]
fn the_cli_says_when_the_daemon_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(interceptor_bin())
        .args(["token", "revoke", "tok_x", "--socket"])
        .arg(dir.path().join("admin.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("daemon is not running"),
        "{out:?}"
    );
}
