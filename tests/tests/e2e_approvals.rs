//! End-to-end: just-in-time approval. Unchanged psql in a watched cgroup
//! (running as `nobody`, so the host's root is a different person) runs a
//! DELETE under an `approve` rule; the statement is held on its open
//! connection until an approver decides over the HTTP API, and its result
//! (or the decision's error) comes back to the same psql session. Webhooks
//! on loopback get every request and decision; the audit log holds the
//! whole story.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use interceptor_tests::{
    Stack,
    http::{WebhookReceiver, call},
    paths,
    process::{self, Outcome},
    stack::{DB, TARGET},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
/// An approver token whose name is the requester's identity.
const CI: &str = "ci-token-0123456789";

fn policy(approval: &str) -> String {
    format!(
        r#"
[defaults]
identity = "tester"

[[identity]]
name = "ci"
cgroup = ["/interceptor-test-*"]

[[identity]]
name = "tester"

[[rule]]
id = "deletes-need-approval"
identities = ["*"]
commands = ["DELETE"]
action = "approve"
reason = "deleting rows needs a person's approval"
approval = {{ {approval} }}

[[rule]]
id = "read-write"
identities = ["*"]
classes = ["read", "write", "transaction", "session"]
tables = ["public.*", "pg_catalog.*"]
action = "allow"
"#
    )
}

fn sha(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

struct Env {
    s: Stack,
    http: SocketAddr,
    hook: WebhookReceiver,
    slack: WebhookReceiver,
    _policy: tempfile::TempDir,
}

/// The RSA key of the token tests, as an OIDC provider's signing key.
fn sso_key_pem() -> String {
    std::fs::read_to_string(paths::workspace_root().join("interceptor/src/token/testdata_rsa.pem"))
        .unwrap()
}

/// The provider's JWKS (modulus read with openssl).
fn sso_jwks() -> String {
    use base64::Engine as _;
    let out = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(paths::workspace_root().join("interceptor/src/token/testdata_rsa.pem"))
        .output()
        .unwrap();
    let modulus = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("Modulus=")
        .to_owned();
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(modulus).unwrap());
    json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "sso-1", "n": n, "e": "AQAB"}]}).to_string()
}

/// An ID token from the test provider with `email`.
fn id_token(email: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("sso-1".into());
    let claims = json!({"iss": "https://sso.example.test", "aud": "interceptor-approvals", "sub": email, "email": email, "iat": now, "exp": now + 300});
    jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(sso_key_pem().as_bytes()).unwrap(),
    )
    .unwrap()
}

fn start(approval: &str) -> Env {
    start_policy(&policy(approval))
}

fn start_policy(policy_text: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("sso-jwks.json");
    std::fs::write(&jwks, sso_jwks()).unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text).unwrap();
    let hook = WebhookReceiver::start().unwrap();
    let slack = WebhookReceiver::start().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", paths::free_port().unwrap())
        .parse()
        .unwrap();
    // A port nothing listens on: a failing webhook must not hold anything up.
    let dead = paths::free_port().unwrap();
    let extra = format!(
        r#"
[approvals]
http = "{http}"
default_expiry = "60s"

[[approvals.approver]]
name = "alice"
groups = ["dba"]
token_sha256 = "{}"

[[approvals.approver]]
name = "bob"
groups = ["dba"]
token_sha256 = "{}"

[[approvals.approver]]
name = "ci"
token_sha256 = "{}"

[[approvals.approver]]
name = "carol"
groups = ["dba"]
oidc_subject = "carol@example.test"

[approvals.oidc]
claim = "email"
[[approvals.oidc.issuer]]
name = "sso"
issuer = "https://sso.example.test"
audiences = ["interceptor-approvals"]
jwks_file = "{}"

[[approvals.webhook]]
url = "{}"

[[approvals.webhook]]
url = "{}"
format = "slack"

[[approvals.webhook]]
url = "http://127.0.0.1:{dead}/gone"
attempts = 2
"#,
        sha(ALICE),
        sha(BOB),
        sha(CI),
        jwks.display(),
        hook.url(),
        slack.url()
    );
    let policy_dir = dir.path().to_owned();
    let s = Stack::start_with(|c, pg| {
        c.policy_dir = Some(policy_dir);
        c.extra_toml = extra;
        c.explicit_target = Some(TARGET.to_owned());
        c.targets[0].upstream = Some(pg.addr());
    })
    .unwrap();
    Env {
        s,
        http,
        hook,
        slack,
        _policy: dir,
    }
}

impl Env {
    /// psql as `nobody` inside the watched cgroup, running `sql` in one session.
    fn psql(&self, sql: &[&str]) -> Child {
        self.psql_with(sql, true, Some("nobody"))
    }

    /// As [`Self::psql`]; `stop_on_error = false` runs every command;
    /// `user = None` runs it as root.
    fn psql_with(&self, sql: &[&str], stop_on_error: bool, user: Option<&str>) -> Child {
        let mut cmd = self.s.psql(&self.s.conninfo(), sql);
        if !stop_on_error {
            cmd.args(["-v", "ON_ERROR_STOP=0"]);
        }
        if let Some(u) = user {
            process::as_user(&mut cmd, u).unwrap();
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.s.cg.spawn(&mut cmd).unwrap()
    }

    fn finish(&self, child: Child) -> Outcome {
        let _ = self;
        process::wait(child, "psql".into(), Duration::from_mins(1)).unwrap()
    }

    fn api(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
        call(self.http, method, path, Some(token), body).unwrap()
    }

    /// Waits for the one pending request and returns it.
    fn pending(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, list) = self.api("GET", "/v1/approvals", ALICE, None);
            assert_eq!(status, 200, "{list}");
            if let Some(r) = list.as_array().and_then(|a| a.first()) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no approval request appeared:\n{}",
                self.s.daemon.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `interceptor approvals ARGS` over the daemon's admin socket.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(paths::interceptor_bin())
            .arg("approvals")
            .args(args)
            .arg("--socket")
            .arg(&self.s.daemon.layout().admin_socket)
            .output()
            .unwrap()
    }

    fn status_of(&self, id: &str) -> Value {
        self.api("GET", &format!("/v1/approvals/{id}"), ALICE, None)
            .1
    }

    fn order_exists(&self, id: u32) -> bool {
        self.s
            .pg
            .sql(DB, &format!("select count(*) from orders where id = {id}"))
            .unwrap()
            .trim()
            == "1"
    }

    /// Every approval record of the audit log, as `(decision, event)`.
    fn approval_records(&self) -> Vec<(String, Value)> {
        let out = Command::new(paths::interceptor_bin())
            .args(["audit", "export"])
            .arg(&self.s.daemon.layout().audit_dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "approval")
            .map(|r| {
                (
                    r["event"]["decision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    r["event"].clone(),
                )
            })
            .collect()
    }

    fn wait_record(&self, id: &str, decision: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((_, e)) = self
                .approval_records()
                .into_iter()
                .find(|(d, e)| d == decision && e["request"] == id)
            {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no `{decision}` record for {id}: {:?}",
                self.approval_records()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const DELETE: &str = "DELETE FROM orders WHERE id = 104 RETURNING id, amount";

#[test]
fn held_delete_runs_in_the_same_psql_session_once_approved_over_http() {
    let env = start(r#"expires_after = "60s""#);
    let psql = env.psql(&[
        "select 'before'",
        DELETE,
        "select 'after', count(*) from orders",
    ]);
    let req = env.pending();
    let id = req["id"].as_str().unwrap().to_owned();
    assert_eq!(req["sql"], DELETE);
    assert_eq!(req["identity"], "ci");
    assert_eq!(req["rule"], "deletes-need-approval");
    assert_eq!(req["reason"], "deleting rows needs a person's approval");
    assert_eq!(req["target"], TARGET);
    assert_eq!(req["user"], "nobody");
    assert_eq!(req["mode"], "hold");
    assert!(
        req["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{req}"
    );
    assert!(
        req["attestation"]["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("psql")),
        "{req}"
    );
    assert!(
        env.order_exists(104),
        "a held statement must not reach the database"
    );

    // The webhook receivers hear about it (JSON and Slack shapes).
    let note = env
        .hook
        .wait_for(Duration::from_secs(10), |b| {
            b["event"] == "approval.requested"
        })
        .expect("no webhook for the request");
    assert_eq!(note["request"]["id"], id.as_str());
    let slack = env
        .slack
        .wait_for(Duration::from_secs(10), |b| {
            b["text"].as_str().is_some_and(|t| t.contains(&id))
        })
        .expect("no slack webhook");
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("DELETE FROM orders"),
        "{slack}"
    );

    // A bad token is refused; the requester's own identity cannot approve.
    let (status, _) = call(env.http, "GET", "/v1/approvals", Some("wrong"), None).unwrap();
    assert_eq!(status, 401);
    let (status, body) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        CI,
        Some(&json!({})),
    );
    assert_eq!(status, 403, "self-approval must be refused: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("never approves its own request"),
        "{body}"
    );
    // A scope the rule does not allow is refused.
    let (status, _) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        ALICE,
        Some(&json!({"scope": "session"})),
    );
    assert_eq!(status, 400);
    assert!(env.order_exists(104));

    let (status, body) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        ALICE,
        Some(&json!({"reason": "cleanup ticket 42"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["state"], "approved");
    let out = env.finish(psql);
    assert!(out.success(), "{out}\n{}", env.s.daemon.output());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["before", "104|310.25", "DELETE 1", "after|3"],
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("held for approval: request {id}")),
        "psql shows the hold notice: {}",
        out.stderr
    );
    assert!(!env.order_exists(104));

    // Deciding again is a conflict.
    let (status, _) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        BOB,
        Some(&json!({"reason": "late"})),
    );
    assert_eq!(status, 409);

    // The audit log holds the story, in order.
    env.wait_record(&id, "executed");
    let story: Vec<String> = env
        .approval_records()
        .into_iter()
        .filter(|(_, e)| e["request"] == id.as_str())
        .map(|(d, _)| d)
        .collect();
    let pos = |d: &str| {
        story
            .iter()
            .position(|x| x == d)
            .unwrap_or_else(|| panic!("no `{d}` in {story:?}"))
    };
    assert!(
        pos("requested") < pos("approved") && pos("approved") < pos("executed"),
        "{story:?}"
    );
    let approved = env.wait_record(&id, "approved");
    assert_eq!(approved["approver"], "alice");
    assert_eq!(approved["reason"], "cleanup ticket 42");
    // Webhook outcomes are recorded: delivered ones and the dead one.
    let notified = env.wait_record(&id, "notified");
    assert!(notified["detail"]["status"] == 200, "{notified}");
    let failed = env.wait_record(&id, "notify_failed");
    assert!(
        failed["detail"]["url"].as_str().unwrap().ends_with("/gone"),
        "{failed}"
    );
    env.hook
        .wait_for(Duration::from_secs(10), |b| {
            b["event"] == "approval.approved"
        })
        .expect("no webhook for the decision");
    // `sessions show` tells the story of the session, approvals included.
    let session = req["session"].as_str().unwrap();
    let out = Command::new(paths::interceptor_bin())
        .args(["sessions", "show", session, "--dir"])
        .arg(&env.s.daemon.layout().audit_dir)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!(
            "approval {id} for #2: requested (hold mode, rule deletes-need-approval"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "approval {id} for #2: approved by alice (scope once): cleanup ticket 42"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("approval {id} for #2: executed")),
        "{shown}"
    );
}

#[test]
fn denial_and_expiry_leave_the_row_and_give_psql_the_error() {
    let env = start(r#"expires_after = "3s""#);
    let psql = env.psql(&[DELETE]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    let (status, body) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        BOB,
        Some(&json!({})),
    );
    assert_eq!(status, 400, "a denial needs a reason: {body}");
    let (status, body) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        BOB,
        Some(&json!({"reason": "not during the freeze"})),
    );
    assert_eq!(status, 200, "{body}");
    let out = env.finish(psql);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&id)
            && out.stderr.contains("denied by bob")
            && out.stderr.contains("not during the freeze"),
        "{}",
        out.stderr
    );
    assert!(env.order_exists(104));
    let denied = env.wait_record(&id, "denied");
    assert_eq!(denied["approver"], "bob");

    // Nobody decides: it expires.
    let psql = env.psql_with(
        &["select 'first'", DELETE, "select 'still usable'"],
        false,
        Some("nobody"),
    );
    let out = env.finish(psql);
    assert!(
        out.stderr.contains("expired without a decision"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("still usable"),
        "the session goes on after the error: {out}"
    );
    assert!(env.order_exists(104));
    let expired: Vec<_> = env
        .approval_records()
        .into_iter()
        .filter(|(d, _)| d == "expired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    // Each session's record counts its statement that was not run as refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ends = loop {
        let out = Command::new(paths::interceptor_bin())
            .args(["audit", "export"])
            .arg(&env.s.daemon.layout().audit_dir)
            .output()
            .unwrap();
        let ends: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "session_end")
            .collect();
        if ends.len() >= 2 || Instant::now() > deadline {
            break ends;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(ends.iter().all(|e| e["event"]["refused"] == 1), "{ends:?}");
}

#[test]
fn a_cancel_or_a_disconnect_withdraws_the_held_statement() {
    let env = start("");
    let psql = env.psql(&[DELETE]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    // Ctrl-C: psql sends a CancelRequest on a new (redirected) connection.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(psql.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = env.finish(psql);
    assert!(
        out.stderr
            .contains(&format!("approval request {id} withdrawn")),
        "{}\n{}",
        out.stderr,
        env.s.daemon.output()
    );
    assert_eq!(env.status_of(&id)["status"]["state"], "withdrawn");
    assert!(env.order_exists(104));
    let (status, _) = env.api("POST", &format!("/v1/approvals/{id}/approve"), ALICE, None);
    assert_eq!(status, 409, "a withdrawn request cannot be approved");

    // The client is killed outright: the request is withdrawn too.
    let mut psql = env.psql(&[DELETE]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let id2 = loop {
        let (_, list) = env.api("GET", "/v1/approvals", ALICE, None);
        if let Some(r) = list
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] != id.as_str()))
        {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    };
    process::kill(psql.id());
    let _ = psql.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.status_of(&id2)["status"]["state"] != "withdrawn" {
        assert!(Instant::now() < deadline, "{}", env.status_of(&id2));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(env.order_exists(104));
}

#[test]
fn retry_mode_refuses_at_once_then_allows_the_same_statement_once() {
    let env = start(r#"mode = "retry""#);
    let run = |sql: &str| {
        let child = env.psql(&[sql]);
        let mut out = env.finish(child);
        out.stderr = out.stderr.trim().to_owned();
        out
    };
    let first = run(DELETE);
    assert!(!first.success());
    let id = first
        .stderr
        .split_whitespace()
        .find(|w| w.starts_with("apr-"))
        .unwrap_or_else(|| panic!("no request id in: {}", first.stderr))
        .to_owned();
    assert!(
        first
            .stderr
            .contains("run the same statement again once it is approved"),
        "{}",
        first.stderr
    );
    assert!(env.order_exists(104));
    // A re-run before the decision points at the same request.
    let again = run(DELETE);
    assert!(
        again.stderr.contains(&id) && again.stderr.contains("still pending"),
        "{}",
        again.stderr
    );

    let (status, body) = env.api("POST", &format!("/v1/approvals/{id}/approve"), ALICE, None);
    assert_eq!(status, 200, "{body}");
    // Different SQL bytes are a new request, and do not use the approval.
    let other = run("DELETE FROM orders WHERE id = 104  RETURNING id, amount");
    assert!(
        !other.success() && !other.stderr.contains(&id),
        "{}",
        other.stderr
    );
    assert!(env.order_exists(104));
    // The exact statement runs, once.
    let ok = run(DELETE);
    assert!(ok.success(), "{ok}");
    assert_eq!(ok.stdout.trim(), "104|310.25\nDELETE 1");
    assert!(!env.order_exists(104));
    let once_more = run(DELETE);
    assert!(
        !once_more.success() && once_more.stderr.contains("was created"),
        "{}",
        once_more.stderr
    );
    env.wait_record(&id, "grant_used");
}

#[test]
fn two_distinct_approvers_are_needed_when_the_rule_says_so() {
    let env = start(r#"approvers = 2, groups = ["dba"], scopes = ["once", "session"]"#);
    let psql = env.psql(&[DELETE, "select count(*) from orders"]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    let (status, body) = env.api("POST", &format!("/v1/approvals/{id}/approve"), ALICE, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["status"]["state"], "pending",
        "one approval of two: {body}"
    );
    let (status, _) = env.api("POST", &format!("/v1/approvals/{id}/approve"), ALICE, None);
    assert_eq!(status, 409, "the same approver twice does not count twice");
    assert!(env.order_exists(104));
    let (status, body) = env.api("POST", &format!("/v1/approvals/{id}/approve"), BOB, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["state"], "approved");
    assert_eq!(body["status"]["by"], json!(["alice", "bob"]));
    let out = env.finish(psql);
    assert!(out.success(), "{out}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["104|310.25", "DELETE 1", "3"]
    );
}

#[test]
fn extended_protocol_holds_the_execute_with_its_parameters() {
    let env = start(r#"scopes = ["once", "session"]"#);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = env.s.daemon.listen().port();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} dbname={DB} user=app"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let stmt = client
            .prepare("DELETE FROM orders WHERE id = $1")
            .await
            .unwrap();
        let http = env.http;
        let approver = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let req = loop {
                let (_, list) = call(http, "GET", "/v1/approvals", Some(ALICE), None).unwrap();
                if let Some(r) = list.as_array().and_then(|a| a.first()) {
                    break r.clone();
                }
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(100));
            };
            let id = req["id"].as_str().unwrap().to_owned();
            let (status, body) = call(
                http,
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                Some(ALICE),
                Some(&json!({"scope": "session"})),
            )
            .unwrap();
            assert_eq!(status, 200, "{body}");
            req
        });
        let n = client.execute(&stmt, &[&103_i32]).await.unwrap();
        assert_eq!(n, 1);
        let req = approver.await.unwrap();
        assert_eq!(req["protocol"], "extended");
        assert_eq!(req["sql"], "DELETE FROM orders WHERE id = $1");
        // Parameters are masked for approvers by default.
        assert!(
            req["params"][0]
                .as_str()
                .unwrap()
                .starts_with("<masked: 4 bytes"),
            "{req}"
        );
        // Session scope: the same statement with the same parameter runs again
        // without a new request; another parameter is a new request.
        assert_eq!(client.execute(&stmt, &[&103_i32]).await.unwrap(), 0);
        let other = tokio::time::timeout(
            Duration::from_millis(1500),
            client.execute(&stmt, &[&101_i32]),
        )
        .await;
        assert!(
            other.is_err(),
            "a different parameter must be held, not run"
        );
    });
    assert!(!env.order_exists(103));
    assert!(env.order_exists(101));
}

#[test]
fn a_restart_denies_pending_requests_on_the_record() {
    let mut env = start("");
    let psql = env.psql(&[DELETE]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    // A clean stop: the held client is told, then disconnected.
    env.s.daemon.restart_clean().unwrap();
    let out = env.finish(psql);
    assert!(!out.success());
    assert!(
        out.stderr.contains(&id) && out.stderr.contains("interceptor stopped"),
        "{}",
        out.stderr
    );
    assert!(env.order_exists(104));
    env.wait_record(&id, "denied_by_restart");

    // kill -9 while held: the next start denies it on the record.
    let psql = env.psql(&[DELETE]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let id2 = loop {
        let (_, list) = env.api("GET", "/v1/approvals", ALICE, None);
        if let Some(r) = list.as_array().and_then(|a| a.first()) {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the state file catch up with the new request.
    std::thread::sleep(Duration::from_millis(500));
    env.s.daemon.restart().unwrap();
    let out = env.finish(psql);
    assert!(!out.success(), "{out}");
    assert!(env.order_exists(104));
    let rec = env.wait_record(&id2, "denied_by_restart");
    assert!(
        rec["reason"].as_str().unwrap().contains("restarted"),
        "{rec}"
    );
    let (_, list) = env.api("GET", "/v1/approvals", ALICE, None);
    assert_eq!(
        list,
        json!([]),
        "nothing is pending (or approved) after the restart"
    );
}

#[test]
fn the_cli_approves_and_denies_over_the_admin_socket_but_not_for_its_own_uid() {
    let env = start("");
    let psql = env.psql(&[DELETE]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    let list = env.cli(&["list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success()
            && listed.contains(&id)
            && listed.contains("pending")
            && listed.contains("DELETE FROM orders"),
        "{listed}"
    );
    let show = env.cli(&["show", &id]);
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["sql"], DELETE);
    let out = env.cli(&["approve", &id, "--reason", "ticket 7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("approved {id}")));
    let psql_out = env.finish(psql);
    assert!(psql_out.success(), "{psql_out}");
    assert!(psql_out.stdout.starts_with("104|310.25"), "{psql_out}");
    assert!(!env.order_exists(104));
    let rec = env.wait_record(&id, "approved");
    assert!(
        rec["approver"].as_str().unwrap().starts_with("root@"),
        "{rec}"
    );

    // A statement made by root: root at the CLI is the same person.
    let psql = env.psql_with(&["DELETE FROM orders WHERE id = 103"], true, None);
    let id2 = loop {
        let (_, list) = env.api("GET", "/v1/approvals", ALICE, None);
        if let Some(r) = list.as_array().and_then(|a| a.first()) {
            break r["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = env.cli(&["approve", &id2]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never approves its own request"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.order_exists(103));
    let out = env.cli(&["deny", &id2, "--reason", "use the migration pipeline"]);
    assert!(
        !out.status.success(),
        "root cannot deny its own request either"
    );
    let (status, _) = env.api(
        "POST",
        &format!("/v1/approvals/{id2}/deny"),
        ALICE,
        Some(&json!({"reason": "use the migration pipeline"})),
    );
    assert_eq!(status, 200);
    let psql_out = env.finish(psql);
    assert!(
        psql_out.stderr.contains("denied by alice")
            && psql_out.stderr.contains("use the migration pipeline"),
        "{psql_out}"
    );
    assert!(env.order_exists(103));
}

#[test]
fn an_approver_signs_in_with_an_oidc_id_token() {
    let env = start("");
    let psql = env.psql(&[DELETE]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    // A valid ID token for someone who is not a configured approver.
    let (status, body) = call(
        env.http,
        "GET",
        "/v1/approvals",
        Some(&id_token("mallory@example.test")),
        None,
    )
    .unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(
        env.http,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(&id_token("carol@example.test")),
        Some(&json!({"reason": "checked"})),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let out = env.finish(psql);
    assert!(out.success(), "{out}");
    assert!(!env.order_exists(104));
    let rec = env.wait_record(&id, "approved");
    assert_eq!(rec["approver"], "carol");
}

#[test]
fn a_denial_inside_a_transaction_block_fails_the_block_as_postgresql_would() {
    let env = start("");
    let psql = env.psql_with(
        &[
            "BEGIN",
            "UPDATE orders SET amount = 1 WHERE id = 101",
            DELETE,
            "select 'in block'",
            "COMMIT",
        ],
        false,
        Some("nobody"),
    );
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    let (status, _) = env.api(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        BOB,
        Some(&json!({"reason": "no"})),
    );
    assert_eq!(status, 200);
    let out = env.finish(psql);
    assert!(out.stderr.contains("denied by bob"), "{out}");
    assert!(
        out.stderr.contains("current transaction is aborted"),
        "{out}"
    );
    assert_eq!(out.stdout.lines().last(), Some("ROLLBACK"), "{out}");
    assert!(env.order_exists(104));
    let amount = env
        .s
        .pg
        .sql(DB, "select amount from orders where id = 101")
        .unwrap();
    assert_eq!(
        amount.trim(),
        "120.50",
        "the block's earlier update was rolled back"
    );
}

#[test]
fn without_an_approvals_table_approve_is_refused_and_the_cli_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy("")).unwrap();
    let policy_dir = dir.path().to_owned();
    let s = Stack::start_with(|c, _| c.policy_dir = Some(policy_dir)).unwrap();
    let mut cmd = s.psql(&s.conninfo(), &[DELETE]);
    process::as_user(&mut cmd, "nobody").unwrap();
    let out = s.run_inside(&mut cmd).unwrap();
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("no approval workflow is enabled on this host"),
        "{out}"
    );
    let cli = Command::new(paths::interceptor_bin())
        .args(["approvals", "list", "--socket"])
        .arg(&s.daemon.layout().admin_socket)
        .output()
        .unwrap();
    assert!(!cli.status.success());
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("approvals are not enabled on this daemon"),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
}

#[test]
fn an_approved_read_is_still_masked() {
    let env = start_policy(
        r#"
[defaults]
identity = "tester"

[[identity]]
name = "ci"
cgroup = ["/interceptor-test-*"]

[[identity]]
name = "tester"

[[rule]]
id = "customer-reads-need-approval"
identities = ["ci"]
tables = ["public.customers"]
action = "approve"

[[rule]]
id = "read-write"
identities = ["*"]
classes = ["read", "write", "transaction", "session"]
action = "allow"

[[sensitive]]
columns = ["public.customers.email"]
category = "email"

[[masking]]
identities = ["ci"]
strategies = { email = "redact" }
"#,
    );
    let psql = env.psql(&["select name, email from customers where id = 1"]);
    let id = env.pending()["id"].as_str().unwrap().to_owned();
    let (status, body) = env.api("POST", &format!("/v1/approvals/{id}/approve"), ALICE, None);
    assert_eq!(status, 200, "{body}");
    let out = env.finish(psql);
    assert!(out.success(), "{out}\n{}", env.s.daemon.output());
    assert!(out.stdout.starts_with("Ada Lovelace|"), "{out}");
    assert!(
        !out.stdout.contains("ada@example.com"),
        "an approved read returned a masked column raw: {out}"
    );
}
