//! The broker's state machine, scopes and grants, separation of duties,
//! expiry, restart, and OIDC approver sign-in.

use std::{path::Path, sync::Arc, time::Duration};

use serde_json::Value;

use super::{
    ApprovalError, ApprovalsConfig, ApproverConfig, Broker, ScopeKind,
    http::Authenticator,
    request::{ApprovalRequest, Approver, Scope, State, new_id, statement_key},
    spec::Mode,
};
use crate::audit::{AuditConfig, AuditLog, ExportFormat, cli::audit_export};

fn request(mode: Mode, scopes: &[ScopeKind], approvers: u32, groups: &[&str]) -> ApprovalRequest {
    let (created_at, expires_at, expires_unix) = Broker::times(Duration::from_mins(1));
    ApprovalRequest {
        id: new_id(),
        created_at,
        expires_at,
        expires_unix,
        host: "h".into(),
        session: "1-1".into(),
        statement: 3,
        proxy_session: 7,
        identity: "ci".into(),
        uid: 1001,
        user: Some("runner".into()),
        attestation: Value::Null,
        target: "db".into(),
        database: "app".into(),
        db_user: "app".into(),
        sql: "DELETE FROM orders WHERE id = 1".into(),
        params: vec![],
        protocol: "simple".into(),
        rule: "deletes".into(),
        reason: "needs a person".into(),
        mode,
        scopes: scopes.to_vec(),
        max_identity_minutes: 30,
        approvers_required: approvers,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        valid_for_secs: 3600,
    }
}

fn approver(name: &str, groups: &[&str]) -> Approver {
    Approver {
        name: name.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        uid: None,
        via: "token",
    }
}

async fn broker(dir: &Path) -> (Arc<Broker>, AuditLog) {
    let audit = AuditLog::open(&AuditConfig {
        host: "h".into(),
        ..AuditConfig::in_dir(dir.join("audit"))
    })
    .unwrap();
    let b = Broker::open(
        &ApprovalsConfig::default(),
        dir.join("approvals.json"),
        audit.clone(),
    )
    .await
    .unwrap();
    (b, audit)
}

/// `(decision, request)` of every approval record.
fn approval_records(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    audit_export(&dir.join("audit"), ExportFormat::Jsonl, None, &mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "approval")
        .map(|r| {
            (
                r["event"]["decision"].as_str().unwrap().to_owned(),
                r["event"]["request"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const KEY: [u8; 32] = [7; 32];

#[tokio::test]
async fn approval_wakes_the_held_statement_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (b, audit) = broker(dir.path()).await;
    let r = request(Mode::Hold, &[ScopeKind::Once], 1, &[]);
    let id = r.id.clone();
    let mut made = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    made.receipt.await.unwrap();
    assert_eq!(b.pending(), 1);
    let view = b
        .approve(&id, &approver("alice", &[]), Scope::ONCE, Some("ok".into()))
        .unwrap();
    assert_eq!(view.status.name(), "approved");
    let state = made
        .state
        .wait_for(|s| !s.is_pending())
        .await
        .unwrap()
        .clone();
    assert!(matches!(state, State::Approved { ref by, .. } if by == &["alice".to_owned()]));
    // Hold + once grants nothing beyond the held statement.
    assert!(b.covered("ci", "1-1", "deletes", &KEY).is_none());
    assert!(matches!(
        b.deny(&id, &approver("bob", &[]), "late".into()),
        Err(ApprovalError::NotPending(..))
    ));
    audit.close("test").await.unwrap();
    let recs = approval_records(dir.path());
    assert_eq!(
        recs.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        ["requested", "approved"],
        "{recs:?}"
    );
}

#[tokio::test]
async fn requesters_never_decide_their_own_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _audit) = broker(dir.path()).await;
    let r = request(Mode::Hold, &[ScopeKind::Once], 1, &[]);
    let id = r.id.clone();
    let _made = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    for who in [
        approver("ci", &[]),
        approver("RUNNER", &[]),
        Approver {
            name: "root@h".into(),
            groups: vec![],
            uid: Some(1001),
            via: "cli",
        },
    ] {
        assert!(
            matches!(
                b.approve(&id, &who, Scope::ONCE, None),
                Err(ApprovalError::SelfApproval(_))
            ),
            "{who:?}"
        );
        assert!(
            matches!(
                b.deny(&id, &who, "no".into()),
                Err(ApprovalError::SelfApproval(_))
            ),
            "{who:?}"
        );
    }
    assert_eq!(b.show(&id).unwrap().status, State::Pending);
}

#[tokio::test]
async fn n_distinct_approvers_from_the_rules_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _audit) = broker(dir.path()).await;
    let r = request(Mode::Hold, &[ScopeKind::Once], 2, &["dba"]);
    let id = r.id.clone();
    let made = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    assert!(matches!(
        b.approve(&id, &approver("eve", &["dev"]), Scope::ONCE, None),
        Err(ApprovalError::Forbidden(_))
    ));
    let v = b
        .approve(&id, &approver("alice", &["dba"]), Scope::ONCE, None)
        .unwrap();
    assert_eq!((v.status.name(), v.approvals.len()), ("pending", 1));
    assert!(matches!(
        b.approve(&id, &approver("alice", &["dba"]), Scope::ONCE, None),
        Err(ApprovalError::AlreadyApproved(_))
    ));
    assert!(made.state.borrow().is_pending());
    let v = b
        .approve(&id, &approver("bob", &["dba", "ops"]), Scope::ONCE, None)
        .unwrap();
    assert_eq!(v.status.name(), "approved");
}

#[tokio::test]
async fn scopes_are_bounded_by_the_rule_and_grants_cover_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _audit) = broker(dir.path()).await;
    // Retry + once: the same statement, once.
    let r = request(Mode::Retry, &[ScopeKind::Once], 1, &[]);
    let id = r.id.clone();
    let _m = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    assert_eq!(b.pending_same("ci", &KEY).unwrap().id, id);
    assert!(matches!(
        b.approve(
            &id,
            &approver("alice", &[]),
            Scope::parse("session", None).unwrap(),
            None
        ),
        Err(ApprovalError::Scope(_))
    ));
    b.approve(&id, &approver("alice", &[]), Scope::ONCE, None)
        .unwrap();
    assert!(b.pending_same("ci", &KEY).is_none());
    assert!(
        b.covered("ci", "9-9", "deletes", &[8; 32]).is_none(),
        "other SQL or parameters"
    );
    assert!(
        b.covered("ci2", "1-1", "deletes", &KEY).is_none(),
        "another identity"
    );
    assert_eq!(b.covered("ci", "2-5", "deletes", &KEY).unwrap().0, id);
    assert!(
        b.covered("ci", "2-5", "deletes", &KEY).is_none(),
        "used once"
    );

    // Session scope: same statement, same session, any number of times.
    let r = request(
        Mode::Hold,
        &[ScopeKind::Once, ScopeKind::Session, ScopeKind::Identity],
        1,
        &[],
    );
    let id = r.id.clone();
    let _m = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    b.approve(
        &id,
        &approver("alice", &[]),
        Scope::parse("session", None).unwrap(),
        None,
    )
    .unwrap();
    assert!(b.covered("ci", "1-1", "deletes", &KEY).is_some());
    assert!(b.covered("ci", "1-1", "deletes", &KEY).is_some());
    assert!(
        b.covered("ci", "1-2", "deletes", &KEY).is_none(),
        "another session"
    );
    b.session_ended("1-1");
    assert!(
        b.covered("ci", "1-1", "deletes", &KEY).is_none(),
        "ends with the session"
    );

    // Identity scope: any statement of the rule, for the identity, N minutes (at most the rule's).
    let r = request(Mode::Hold, &[ScopeKind::Identity], 1, &[]);
    let id = r.id.clone();
    let _m = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    assert!(matches!(
        b.approve(
            &id,
            &approver("alice", &[]),
            Scope::parse("identity:31", None).unwrap(),
            None
        ),
        Err(ApprovalError::Scope(_))
    ));
    b.approve(
        &id,
        &approver("alice", &[]),
        Scope::parse("identity:10", None).unwrap(),
        None,
    )
    .unwrap();
    let (from, scope) = b.covered("ci", "5-5", "deletes", &[1; 32]).unwrap();
    assert_eq!((from, scope.kind), (id, ScopeKind::Identity));
    assert!(b.covered("ci", "5-5", "other-rule", &[1; 32]).is_none());
}

#[tokio::test]
async fn expiry_withdrawal_and_cancel_by_session() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _audit) = broker(dir.path()).await;
    let r = request(Mode::Hold, &[ScopeKind::Once], 1, &[]);
    let id = r.id.clone();
    let mut made = b.request(r, KEY, Duration::from_millis(50)).unwrap();
    let s = made
        .state
        .wait_for(|s| !s.is_pending())
        .await
        .unwrap()
        .clone();
    assert_eq!(s, State::Expired);
    assert!(matches!(
        b.approve(&id, &approver("alice", &[]), Scope::ONCE, None),
        Err(ApprovalError::NotPending(..))
    ));

    let r = request(Mode::Hold, &[ScopeKind::Once], 1, &[]);
    let mut made = b.request(r, KEY, Duration::from_mins(1)).unwrap();
    assert_eq!(
        b.withdraw_session(8, "cancel"),
        0,
        "another session's cancel"
    );
    assert_eq!(b.withdraw_session(7, "cancel"), 1);
    assert!(matches!(
        made.state
            .wait_for(|s| !s.is_pending())
            .await
            .unwrap()
            .clone(),
        State::Withdrawn { .. }
    ));
}

#[tokio::test]
async fn pending_requests_are_denied_by_a_restart_never_approved() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (b, audit) = broker(dir.path()).await;
        let r = request(Mode::Hold, &[ScopeKind::Once], 1, &[]);
        let id = r.id.clone();
        let _m = b.request(r, KEY, Duration::from_mins(1)).unwrap();
        // The persister writes the pending request.
        for _ in 0..100 {
            if std::fs::read_to_string(dir.path().join("approvals.json"))
                .unwrap_or_default()
                .contains(&id)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        audit.close("crash").await.unwrap();
        id
    };
    let (b, audit) = broker(dir.path()).await;
    assert_eq!(b.pending(), 0);
    assert!(b.show(&id).is_none());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("approvals.json"))
            .unwrap()
            .trim(),
        "[]"
    );
    audit.close("test").await.unwrap();
    let recs = approval_records(dir.path());
    assert!(
        recs.contains(&("denied_by_restart".to_owned(), id.clone())),
        "{recs:?}"
    );
    assert!(!recs.iter().any(|(d, r)| r == &id && d == "approved"));
}

#[test]
fn keys_of_the_same_statement_match() {
    assert_eq!(
        statement_key(b"x", &[Some(b"1")]),
        statement_key(b"x", &[Some(b"1")])
    );
}

#[tokio::test]
async fn oidc_id_tokens_name_configured_approvers_only() {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use ring::signature::RsaKeyPair;

    let pem = include_str!("../token/testdata_rsa.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let pair = RsaKeyPair::from_der(&der).unwrap();
    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = serde_json::json!({"kty":"RSA","use":"sig","alg":"RS256","kid":"k1","n":URL_SAFE_NO_PAD.encode(&c.n),"e":URL_SAFE_NO_PAD.encode(&c.e)});
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({"keys": [jwk]}).to_string()).unwrap();
    let oidc: super::config::ApproverOidc = toml::from_str(&format!(
        "claim = \"email\"\n[[issuer]]\nname = \"sso\"\nissuer = \"https://sso.example.test\"\naudiences = [\"approvals\"]\njwks_file = \"{}\"\n",
        jwks.display()
    ))
    .unwrap();
    let approvers = vec![ApproverConfig {
        name: "alice".into(),
        groups: vec!["dba".into()],
        token_sha256: None,
        oidc_subject: Some("alice@example.test".into()),
    }];
    let auth = Authenticator::new(&approvers, Some(&oidc)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |email: &str, aud: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("k1".into());
        let claims = serde_json::json!({"iss": "https://sso.example.test", "aud": aud, "sub": "u1", "email": email, "iat": now, "exp": now + 300});
        jsonwebtoken::encode(
            &h,
            &claims,
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let a = auth
        .authenticate(&sign("alice@example.test", "approvals"))
        .await
        .unwrap();
    assert_eq!(
        (a.name.as_str(), a.via, a.groups.as_slice()),
        ("alice", "oidc", &["dba".to_owned()][..])
    );
    let e = auth
        .authenticate(&sign("mallory@example.test", "approvals"))
        .await
        .unwrap_err();
    assert!(e.contains("not a configured approver"), "{e}");
    assert!(
        auth.authenticate(&sign("alice@example.test", "other-audience"))
            .await
            .is_err()
    );
    assert!(auth.authenticate("not-a-token").await.is_err());
}
