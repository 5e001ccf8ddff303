//! End-to-end: `interceptor status` against a running daemon, one whose
//! program was detached by hand, and a stopped one.

use std::process::Command;

use interceptor_tests::{Stack, paths};
use serde_json::Value;

fn status(config: &std::path::Path) -> (i32, Value, String) {
    let out = Command::new(paths::interceptor_bin())
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn status_reports_healthy_degraded_and_down() {
    let mut s = Stack::start().unwrap();
    let config = s.daemon.layout().config.clone();
    let (code, r, out) = status(&config);
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["health"], "healthy", "{out}");
    let cg = &r["cgroups"][0];
    assert_eq!(cg["ok"], true, "{out}");
    assert_eq!(cg["programs"]["connect4"], 1, "{out}");
    assert!(
        r["audit"]["writing"] == true && r["policy"]["rules"].as_u64().is_some(),
        "{out}"
    );
    assert!(
        r["targets"][0]["redirects"]
            .as_str()
            .is_some_and(|t| t.contains("this host")),
        "{out}"
    );

    // The human form.
    let human = Command::new(paths::interceptor_bin())
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.status.success() && text.contains(": healthy") && text.contains("[attached]"),
        "{text}"
    );
    eprintln!("--- interceptor status\n{text}");

    // A broken policy edit: the old set stays in force, status says so.
    let policy_dir = std::path::PathBuf::from(r["policy"]["dir"].as_str().unwrap());
    let policy_file = std::fs::read_dir(&policy_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "toml"))
        .expect("a policy file");
    let good = std::fs::read_to_string(&policy_file).unwrap();
    std::fs::write(&policy_file, "[[rule]]\nid = \"broken\"\n").unwrap();
    let pid = s.daemon.pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(
        s.daemon
            .wait_event(std::time::Duration::from_secs(20), |e| e["event"]
                == "policy_rejected")
            .is_some()
    );
    let (code, r, out) = status(&config);
    assert_eq!((code, r["health"].as_str()), (1, Some("degraded")), "{out}");
    assert_eq!(r["policy"]["last_reload"]["applied"], false, "{out}");
    std::fs::write(&policy_file, good).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(
        s.daemon
            .wait_event(std::time::Duration::from_secs(20), |e| e["event"]
                == "policy_reloaded")
            .is_some()
    );
    let (code, _, out) = status(&config);
    assert_eq!(code, 0, "{out}");

    // One program detached by hand (its pinned link removed): degraded.
    let pin_dir = s.daemon.layout().pin_dir.clone();
    let link = std::fs::read_dir(&pin_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("link-") && n.ends_with("-connect4"))
        })
        .expect("a pinned connect4 link");
    std::fs::remove_file(&link).unwrap();
    let (code, r, out) = status(&config);
    assert_eq!(code, 1, "{out}");
    assert_eq!(r["health"], "degraded", "{out}");
    assert!(r["problems"].to_string().contains("connect4"), "{out}");

    // Stopped (killed, pins left): down, failing closed.
    s.daemon.kill();
    let (code, r, out) = status(&config);
    assert_eq!(code, 3, "{out}");
    assert_eq!(r["health"], "down", "{out}");
    assert_eq!(r["failing_closed"], true, "{out}");
}
