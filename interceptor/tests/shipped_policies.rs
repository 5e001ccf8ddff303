//! The shipped policy set is valid and passes its own test cases, through
//! the same CLI an operator runs (`interceptor policy check|test policies/`).

use std::{path::PathBuf, process::Command};

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn interceptor(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_interceptor"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn shipped_policies_check_and_pass_their_cases() {
    let dir = policies().display().to_string();
    let (ok, out) = interceptor(&["policy", "check", &dir]);
    assert!(ok, "{out}");
    let (ok, out) = interceptor(&["policy", "test", &dir]);
    assert!(ok, "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" 0 failed") && !last.starts_with("0 passed"),
        "{out}"
    );
}

/// Every profile in policies/profiles is a valid set passing its own cases.
#[test]
fn profiles_check_and_pass_their_cases() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(policies().join("profiles")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let d = dir.display().to_string();
        let (ok, out) = interceptor(&["policy", "check", &d]);
        assert!(ok, "{out}");
        let (ok, out) = interceptor(&["policy", "test", &d]);
        assert!(ok, "{out}");
        let last = out.lines().last().unwrap_or_default();
        assert!(
            last.ends_with(" 0 failed") && !last.starts_with("0 passed"),
            "{out}"
        );
        seen.push(dir.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["job-queue", "migrations", "pg-dump", "read-only-agent"]
    );
}

#[test]
fn a_broken_policy_names_file_and_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[[rule]]\nid = \"r\"\nidentities = [\"*\"]\naction = \"alow\"\n",
    )
    .unwrap();
    let (ok, out) = interceptor(&["policy", "check", &dir.path().display().to_string()]);
    assert!(!ok);
    assert!(out.contains("a.toml:4"), "{out}");
}

#[test]
fn explain_prints_the_decision_as_json() {
    let dir = policies().display().to_string();
    let (ok, out) = interceptor(&[
        "policy",
        "explain",
        "--dir",
        &dir,
        "--identity",
        r#"{"exe":"/usr/lib/postgresql/15/bin/psql","cgroup":"/ci/job-7"}"#,
        "--sql",
        "SELECT 1; DROP TABLE customers",
    ]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["identity"], "ci-tools");
    assert_eq!(v["action"], "deny");
    assert_eq!(v["rule"], "no-destruction");
    assert_eq!(v["statements"][1]["command"], "DROP TABLE");
}
