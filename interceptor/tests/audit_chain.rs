//! The audit log's chain: append + verify, and every kind of tampering
//! detected with the right reason; the CLI functions on a real log.

mod audit_support;

use std::{
    fs,
    path::{Path, PathBuf},
};

use audit_support::*;
use interceptor::audit::{
    AuditLog, ExportFormat, Problem, SessionFilter, cli, list_sessions, session_records, verify,
};

fn run(f: impl FnOnce(&mut Vec<u8>) -> u8) -> (u8, String) {
    let mut out = Vec::new();
    let code = f(&mut out);
    (code, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn append_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ids = build_log(dir.path(), 12).await;
    assert_eq!(
        ids[0].split('-').next(),
        Some("1"),
        "first run's daemon_start is seq 1: {ids:?}"
    );

    let report = verify(dir.path(), None).unwrap();
    assert!(report.segments >= 3, "{report:?}");
    assert_eq!(report.records, records(dir.path()).len() as u64);
    assert_eq!(report.unsigned, 0, "close writes a final checkpoint");
    assert_eq!(report.hosts, vec!["test-host".to_owned()]);
    // Every non-last segment ends with its seal.
    let segs = segments(dir.path());
    for seg in &segs[..segs.len() - 1] {
        assert!(
            lines(seg).last().unwrap().contains(r#""reason":"seal""#),
            "{}",
            seg.display()
        );
    }

    let (code, out) = run(|o| cli::audit_verify(dir.path(), None, None, o));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(": intact") && out.contains("--pubkey"),
        "{out}"
    );

    // The printed public key verifies the log; no warning then.
    let (code, pem) = run(|o| cli::audit_pubkey(dir.path(), o));
    assert_eq!(code, 0);
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----") && pem.contains("fingerprint: SHA256:"),
        "{pem}"
    );
    let kept = dir.path().join("kept.pub");
    fs::write(&kept, &pem).unwrap();
    let (code, out) = run(|o| cli::audit_verify(dir.path(), Some(&kept), None, o));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("note:"), "{out}");
}

#[tokio::test]
async fn reopen_continues_the_chain_and_session_ids_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let first = build_log(dir.path(), 2).await;
    let second = build_log(dir.path(), 2).await;
    assert_ne!(first[0], second[0]);
    assert!(first.iter().all(|id| !second.contains(id)));
    verify(dir.path(), None).unwrap();
    let starts: Vec<_> = records(dir.path())
        .into_iter()
        .filter(|r| r.kind == "daemon_start")
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(
        starts[1].event["resumed_after"].as_u64(),
        Some(starts[1].seq - 1)
    );
}

#[tokio::test]
async fn unsigned_tail_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&cfg(dir.path())).unwrap();
    for n in 1..=3 {
        log.append(statement("x-1", n, "SELECT 1", "allow"))
            .await
            .unwrap();
    }
    // Not closed: the 3 records wait for a checkpoint.
    let report = verify(dir.path(), None).unwrap();
    assert_eq!(report.unsigned, 3, "{report:?}");
    let (code, out) = run(|o| cli::audit_verify(dir.path(), None, None, o));
    assert_eq!(code, 0);
    assert!(
        out.contains("3 record(s) after the last checkpoint"),
        "{out}"
    );
    // Callers cannot write the log's own kinds.
    let fake = interceptor::audit::AuditEvent::DaemonStop(interceptor::audit::DaemonStop {
        reason: "x".into(),
    });
    assert!(matches!(
        log.append(fake).await,
        Err(interceptor::audit::AuditError::Usage(_))
    ));
    drop(log);
}

/// Builds a multi-segment log, applies `tamper`, returns the finding.
async fn tampered(
    tamper: impl FnOnce(&Path, &[PathBuf]),
) -> (Problem, interceptor::audit::Finding) {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 12).await;
    verify(dir.path(), None).unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 4, "need several segments, got {}", segs.len());
    tamper(dir.path(), &segs);
    let f = finding(dir.path(), None);
    let (code, out) = run(|o| cli::audit_verify(dir.path(), None, None, o));
    assert_eq!(code, f.problem.exit_code(), "{out}");
    assert!(
        out.contains(&format!("FAIL {}", f.problem.as_str())),
        "{out}"
    );
    (f.problem, f)
}

fn seq_of(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn flipped_byte_is_modified() {
    let mut want = (0, PathBuf::new());
    let (p, f) = tampered(|_, segs| {
        let mut ls = lines(&segs[1]);
        want = (seq_of(&ls[4]), segs[1].clone());
        ls[4] = ls[4]
            .replacen("SELECT", "SELECt", 1)
            .replacen("allow", "allov", 1);
        write_lines(&segs[1], &ls);
    })
    .await;
    assert_eq!(p, Problem::Modified, "{f}");
    assert_eq!(
        (f.seq, f.line, &f.segment),
        (Some(want.0), Some(5), &want.1),
        "{f}"
    );
}

#[tokio::test]
async fn raw_byte_flip_anywhere_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 6).await;
    let seg = &segments(dir.path())[1];
    let mut bytes = fs::read(seg).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    fs::write(seg, bytes).unwrap();
    let f = finding(dir.path(), None);
    assert!(
        matches!(f.problem, Problem::Modified | Problem::Truncated),
        "{f}"
    );
}

#[tokio::test]
async fn deleted_record_is_removed() {
    let mut want = 0;
    let (p, f) = tampered(|_, segs| {
        let mut ls = lines(&segs[2]);
        want = seq_of(&ls[3]);
        ls.remove(3);
        write_lines(&segs[2], &ls);
    })
    .await;
    assert_eq!(p, Problem::Removed, "{f}");
    assert_eq!(f.seq, Some(want), "{f}");
    assert!(
        f.detail
            .contains(&format!("records {want}..{want} are missing")),
        "{f}"
    );
}

#[tokio::test]
async fn swapped_records_are_reordered() {
    let (p, f) = tampered(|_, segs| {
        let mut ls = lines(&segs[1]);
        ls.swap(2, 3);
        write_lines(&segs[1], &ls);
    })
    .await;
    assert_eq!(p, Problem::Reordered, "{f}");
    assert_eq!(f.line, Some(3), "{f}");
}

#[tokio::test]
async fn record_cut_midway_is_truncated() {
    // In the last segment ...
    let (p, f) = tampered(|_, segs| {
        let last = segs.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 40)
            .unwrap();
    })
    .await;
    assert_eq!(p, Problem::Truncated, "{f}");
    assert!(f.detail.contains("cut mid-way"), "{f}");
    // ... and in an earlier one.
    let mut cut = PathBuf::new();
    let (p, f) = tampered(|_, segs| {
        cut = segs[1].clone();
        let len = fs::metadata(&segs[1]).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&segs[1])
            .unwrap()
            .set_len(len - 100)
            .unwrap();
    })
    .await;
    assert_eq!(p, Problem::Truncated, "{f}");
    assert_eq!(f.segment, cut, "{f}");
    assert!(f.detail.contains("cut mid-way"), "{f}");
}

#[tokio::test]
async fn missing_seal_is_truncated() {
    let (p, f) = tampered(|_, segs| {
        let mut ls = lines(&segs[0]);
        ls.pop();
        write_lines(&segs[0], &ls);
    })
    .await;
    assert_eq!(p, Problem::Truncated, "{f}");
    assert!(f.detail.contains("seal"), "{f}");
}

#[tokio::test]
async fn missing_segment_is_truncated() {
    let mut first = 0;
    let (p, f) = tampered(|_, segs| {
        first = seq_of(&lines(&segs[2])[0]);
        fs::remove_file(&segs[2]).unwrap();
    })
    .await;
    assert_eq!(p, Problem::Truncated, "{f}");
    assert_eq!(f.seq, Some(first), "{f}");
    assert!(f.detail.contains("is missing"), "{f}");

    // The first segment too.
    let (p, f) = tampered(|_, segs| fs::remove_file(&segs[0]).unwrap()).await;
    assert_eq!((p, f.seq), (Problem::Truncated, Some(1)), "{f}");
}

#[tokio::test]
async fn rehashed_forgery_has_a_bad_signature() {
    let mut forged_seq = 0;
    let (p, f) = tampered(|dir, segs| {
        let mut ls = lines(&segs[1]);
        let i = ls
            .iter()
            .position(|l| l.contains(r#""action":"deny""#))
            .unwrap();
        forged_seq = seq_of(&ls[i]);
        ls[i] = ls[i].replace(r#""action":"deny""#, r#""action":"allow""#);
        write_lines(&segs[1], &ls);
        rehash_from(dir, 1, i);
        // The chain itself is consistent again: only signatures can tell.
    })
    .await;
    assert_eq!(p, Problem::BadSignature, "{f}");
    assert!(f.seq.unwrap() > forged_seq, "{f}");
}

#[tokio::test]
async fn replaced_key_fools_only_a_check_without_pubkey() {
    use base64::Engine;
    use ed25519_dalek::{
        Signer, SigningKey,
        pkcs8::{EncodePublicKey, spki::der::pem::LineEnding},
    };
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 6).await;
    let (_, kept) = run(|o| cli::audit_pubkey(dir.path(), o));
    let elsewhere = tempfile::tempdir().unwrap();
    let kept_path = elsewhere.path().join("host.pub");
    fs::write(&kept_path, kept).unwrap();

    // A forger with root: rewrites a record, re-hashes, re-signs every
    // checkpoint with a key of their own and replaces keys/host.pub.
    let forger = SigningKey::from_bytes(&[9; 32]);
    let segs = segments(dir.path());
    let mut ls = lines(&segs[0]);
    let i = ls
        .iter()
        .position(|l| l.contains("\"kind\":\"statement\""))
        .unwrap();
    ls[i] = ls[i].replace("SELECT", "DELETE");
    write_lines(&segs[0], &ls);
    let mut prev = Some("0".repeat(64));
    for seg in &segs {
        let mut ls = lines(seg);
        for l in &mut ls {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["kind"] == "checkpoint" {
                let e = &mut v["event"];
                let p = prev.clone().unwrap();
                e["head_hash"] = p.clone().into();
                let msg = format!(
                    "interceptor-audit-checkpoint-v1\n{}\n{}\n{}\n{}\n",
                    e["host"].as_str().unwrap(),
                    e["head_seq"],
                    p,
                    e["reason"].as_str().unwrap()
                );
                let sig = base64::engine::general_purpose::STANDARD
                    .encode(forger.sign(msg.as_bytes()).to_bytes());
                let old_sig = l
                    .split("\"sig\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_owned();
                *l = l.replace(&old_sig, &sig);
            }
            let (new, hash) = rehash_line(l, prev.as_deref().unwrap());
            *l = new;
            prev = Some(hash);
        }
        write_lines(seg, &ls);
    }
    let pem = forger
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    fs::write(dir.path().join("keys/host.pub"), pem).unwrap();

    // Without --pubkey the forgery passes (and the output says why not to trust that) ...
    let (code, out) = run(|o| cli::audit_verify(dir.path(), None, None, o));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: the key was read from the log directory itself"),
        "{out}"
    );
    // ... with the key kept elsewhere it does not.
    let (code, out) = run(|o| cli::audit_verify(dir.path(), Some(&kept_path), None, o));
    assert_eq!(code, Problem::BadSignature.exit_code(), "{out}");
}

#[tokio::test]
async fn export_sessions_show_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let ids = build_log(dir.path(), 3).await;
    let log = AuditLog::open(&cfg(dir.path())).unwrap();
    let other = log.session_id(1);
    log.append(session_start(&other, "/usr/bin/pg_dump", "ci-backup"))
        .await
        .unwrap();
    log.append(statement(&other, 1, "COPY secrets TO STDOUT", "approve"))
        .await
        .unwrap();
    log.append(statement(&other, 2, "SELECT '\u{1b}[2J' AS evil", "allow"))
        .await
        .unwrap();
    log.close("test").await.unwrap();

    // Export: one object per record, stable fields.
    let (code, out) = run(|o| cli::audit_export(dir.path(), ExportFormat::Jsonl, None, o));
    assert_eq!(code, 0);
    let all: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), records(dir.path()).len());
    for (i, v) in all.iter().enumerate() {
        assert_eq!(v["seq"].as_u64(), Some(i as u64 + 1));
        assert_eq!(v["host"], "test-host");
        for k in ["ts", "kind", "session", "event", "prev", "hash"] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
    }
    let st = all.iter().find(|v| v["kind"] == "statement").unwrap();
    assert_eq!(st["session"], ids[0].as_str());
    assert_eq!(st["event"]["decision"]["action"], "allow");
    let (_, tail) = run(|o| {
        cli::audit_export(
            dir.path(),
            ExportFormat::Jsonl,
            Some(all.len() as u64 - 2),
            o,
        )
    });
    assert_eq!(tail.lines().count(), 2);
    assert!("xml".parse::<ExportFormat>().is_err());

    // sessions list and its filters.
    let all_sessions = list_sessions(dir.path(), &SessionFilter::default()).unwrap();
    assert_eq!(all_sessions.len(), 4);
    assert_eq!(
        (all_sessions[0].statements, all_sessions[0].refused),
        (5, 1)
    );
    assert_eq!(all_sessions[3].end_reason, None);
    assert_eq!(all_sessions[3].statements, 2);
    let by = |f: SessionFilter| {
        list_sessions(dir.path(), &f)
            .unwrap()
            .into_iter()
            .map(|s| s.session)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(SessionFilter {
            identity: Some("ci-backup".into()),
            ..Default::default()
        }),
        vec![other.clone()]
    );
    assert_eq!(
        by(SessionFilter {
            identity: Some("pg_dump".into()),
            ..Default::default()
        }),
        vec![other.clone()]
    );
    assert_eq!(
        by(SessionFilter {
            decision: Some("approve".into()),
            ..Default::default()
        }),
        vec![other.clone()]
    );
    assert_eq!(
        by(SessionFilter {
            decision: Some("deny".into()),
            ..Default::default()
        }),
        ids
    );
    assert!(
        by(SessionFilter {
            host: Some("elsewhere".into()),
            ..Default::default()
        })
        .is_empty()
    );
    let future = interceptor::audit::parse_since("2999-01-01T00:00:00Z").unwrap();
    assert!(
        by(SessionFilter {
            since: Some(future),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        by(SessionFilter {
            since: Some(interceptor::audit::parse_since("1h").unwrap()),
            ..Default::default()
        })
        .len(),
        4
    );

    let (code, table) = run(|o| cli::sessions_list(dir.path(), &SessionFilter::default(), o));
    assert_eq!(code, 0);
    assert!(table.starts_with("SESSION"), "{table}");
    assert!(
        table.contains("/usr/bin/pg_dump")
            && table.contains("main-db/app")
            && table.contains("(open)"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 5, "{table}");

    // show: everything of one session, in order, attestation included.
    let (code, shown) = run(|o| cli::sessions_show(dir.path(), &ids[1], o));
    assert_eq!(code, 0);
    assert_eq!(
        session_records(dir.path(), &ids[1]).unwrap().len(),
        1 + 5 + 4 + 1
    );
    assert!(
        shown.contains("started on test-host") && shown.contains("\"cmdline\""),
        "{shown}"
    );
    assert!(
        shown.contains("decision: deny (rule rule-deny)") && shown.contains("masked: email"),
        "{shown}"
    );
    assert!(shown.contains("session ended: client_terminate"), "{shown}");
    let (code, _) = run(|o| cli::sessions_show(dir.path(), "no-such", o));
    assert_eq!(code, cli::EXIT_ERROR);

    // replay, without waiting; terminal escapes from the workload are neutralised.
    let (code, played) = run(|o| cli::replay(dir.path(), &other, 0.0, o));
    assert_eq!(code, 0);
    assert!(played.starts_with("[+    0.000s] session"), "{played}");
    assert!(
        played.contains("COPY secrets TO STDOUT") && played.contains("decision: approve"),
        "{played}"
    );
    assert!(
        played.contains("\\u{1b}[2J") && !played.contains('\u{1b}'),
        "{played}"
    );
    let (code, _) = run(|o| cli::replay(dir.path(), &other, -1.0, o));
    assert_eq!(code, cli::EXIT_ERROR);
}

/// A log cut back to an earlier checkpoint, its newest segment deleted, or
/// an older copy restored verifies as intact on its own; against the
/// witness file (`[audit] witness`, kept outside the audit directory) or
/// `--expect-at-least`, it does not.
#[tokio::test]
async fn a_log_cut_back_or_restored_fails_against_its_witness() {
    use interceptor::audit::verify::{Expect, verify_expecting};
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let witness = elsewhere.path().join("audit.witness");
    let config = || interceptor::audit::AuditConfig {
        witness: Some(witness.clone()),
        ..cfg(dir.path())
    };

    // A first run; a copy of the log as it was then.
    let log = AuditLog::open(&config()).unwrap();
    for n in 1..=30 {
        log.append(statement("1-1", n, "select 1", "allow"))
            .await
            .unwrap();
    }
    log.close("test").await.unwrap();
    let old_copy = tempfile::tempdir().unwrap();
    for f in fs::read_dir(dir.path()).unwrap().flatten() {
        if f.path().is_file() {
            fs::copy(f.path(), old_copy.path().join(f.file_name())).unwrap();
        }
    }
    let keys = dir.path().join("keys");
    // A second run moves the witness on.
    let log = AuditLog::open(&config()).unwrap();
    for n in 1..=30 {
        log.append(statement("2-1", n, "select 2", "allow"))
            .await
            .unwrap();
    }
    log.close("test").await.unwrap();
    let expect = Expect::from_witness(&witness).unwrap();
    let report = verify_expecting(dir.path(), None, Some(&expect)).unwrap();
    assert!(report.last_seq >= expect.seq, "{report:?} {expect:?}");

    // The newest segment deleted: intact alone, truncated against the witness.
    let segs = segments(dir.path());
    fs::remove_file(segs.last().unwrap()).unwrap();
    verify(dir.path(), None).expect("a log without its newest segment verifies alone");
    let e = verify_expecting(dir.path(), None, Some(&expect)).unwrap_err();
    assert!(e.to_string().contains("must reach seq"), "{e}");

    // The older copy restored in its place: the same.
    for f in fs::read_dir(dir.path()).unwrap().flatten() {
        if f.path().is_file() {
            fs::remove_file(f.path()).unwrap();
        }
    }
    for f in fs::read_dir(old_copy.path()).unwrap().flatten() {
        fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    assert!(keys.exists());
    verify(dir.path(), None).expect("the older copy verifies alone");
    assert!(verify_expecting(dir.path(), None, Some(&expect)).is_err());

    // --expect-at-least SEQ:HASH with another hash at that seq: rewritten.
    let report = verify(dir.path(), None).unwrap();
    let bogus = Expect::parse(&format!("{}:{}", report.last_seq, "ab".repeat(32))).unwrap();
    let e = verify_expecting(dir.path(), None, Some(&bogus)).unwrap_err();
    assert!(e.to_string().contains("is not the one"), "{e}");
    let (code, out) = run(|o| cli::audit_verify(dir.path(), None, Some(&expect), o));
    assert_ne!(code, 0, "{out}");
}
