//! Every input in the fuzz corpora (`fuzz/corpus/<target>/`) and every
//! input a fuzz run found a crash with (`fuzz/regressions/<target>/`) is
//! replayed through the same function the fuzz target calls: a crash once
//! found stays fixed, without needing nightly or cargo-fuzz.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        // A panic names the input.
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{} panics the {target} target", f.display());
    }
}

#[test]
fn sql_policy_corpus() {
    replay("sql_policy", interceptor::fuzzing::sql_policy);
}

#[test]
fn frontend_corpus() {
    replay("frontend", interceptor::fuzzing::frontend);
}

#[test]
fn backend_corpus() {
    replay("backend", interceptor::fuzzing::backend);
}

#[test]
fn audit_line_corpus() {
    replay("audit_line", interceptor::fuzzing::audit_line);
}
