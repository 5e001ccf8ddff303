//! `interceptor status`: what a running daemon reports over the admin
//! socket (`status.get`), and what the CLI says when it is down.
//!
//! Health is `healthy`, or `degraded` with the problems named: a watched
//! cgroup missing one of the programs, the audit log failing to write,
//! little disk left under the audit directory.

use std::{path::PathBuf, sync::Arc, time::Instant};

use serde_json::{Value, json};

use crate::{
    admin::{AdminHandler, HandlerFuture, Peer},
    approval::Broker,
    audit::AuditLog,
    config::Config,
    policy::PolicyStore,
};

/// Free space under the audit directory below which status is degraded.
const LOW_DISK_BYTES: u64 = 256 << 20;

/// The last policy reload: when, and the errors if the set was rejected.
static LAST_RELOAD: std::sync::Mutex<
    Option<(std::time::SystemTime, &'static str, Option<String>)>,
> = std::sync::Mutex::new(None);

/// Records a policy reload (`trigger`: `sighup`, `file-change`); `error`:
/// the new set was rejected and the previous one stays in force.
pub fn record_reload(trigger: &'static str, error: Option<String>) {
    *LAST_RELOAD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((std::time::SystemTime::now(), trigger, error));
}

/// `status.*` on the admin socket.
pub struct StatusAdmin {
    started: Instant,
    config_path: PathBuf,
    config: Arc<Config>,
    store: Arc<PolicyStore>,
    audit: AuditLog,
    broker: Option<Arc<Broker>>,
}

impl StatusAdmin {
    /// The handler of a daemon started now from `config_path`.
    pub fn new(
        config_path: PathBuf,
        config: Arc<Config>,
        store: Arc<PolicyStore>,
        audit: AuditLog,
        broker: Option<Arc<Broker>>,
    ) -> Self {
        Self {
            started: Instant::now(),
            config_path,
            config,
            store,
            audit,
            broker,
        }
    }

    /// The report (see the module documentation).
    pub fn report(&self) -> Value {
        let mut problems = Vec::new();
        let mount = crate::ebpf::cgroup2_mount().ok();
        let cgroups: Vec<Value> = self
            .config
            .ebpf
            .cgroups
            .iter()
            .map(|c| {
                let path = match (&mount, c.is_absolute()) {
                    (_, true) => c.clone(),
                    (Some(m), false) => m.join(c),
                    (None, false) => c.clone(),
                };
                // In task mode the programs sit on attach_to, not on each cgroup.
                let attached_at = match self.config.ebpf.mode {
                    crate::config::AttachMode::Cgroup => path.clone(),
                    crate::config::AttachMode::Task => {
                        let to = self.config.ebpf.attach_to.clone().unwrap_or_default();
                        match (&mount, to.is_absolute()) {
                            (Some(m), false) => m.join(to),
                            _ => to,
                        }
                    }
                };
                match crate::ebpf::attached_counts(&attached_at) {
                    Ok(counts) => {
                        let missing: Vec<&str> = counts.iter().filter(|(_, n)| *n == 0).map(|(h, _)| *h).collect();
                        if !missing.is_empty() {
                            problems.push(format!("{}: not attached: {}", attached_at.display(), missing.join(", ")));
                        }
                        json!({
                            "path": path,
                            "attached_at": attached_at,
                            "programs": counts.iter().map(|(h, n)| (h.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                            "ok": missing.is_empty(),
                        })
                    }
                    Err(e) => {
                        problems.push(format!("{}: {e}", attached_at.display()));
                        json!({ "path": path, "attached_at": attached_at, "error": e.to_string(), "ok": false })
                    }
                }
            })
            .collect();
        let pins = pins(&self.config.ebpf.pin_dir);
        let set = self.store.current();
        let last_reload = LAST_RELOAD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((_, _, Some(e))) = &last_reload {
            problems.push(format!(
                "the last policy reload was rejected (the previous set stays in force): {e}"
            ));
        }
        let stats = self.audit.stats();
        let healthy = self.audit.healthy();
        if !healthy {
            problems.push("the audit log cannot write: statements are refused".into());
        }
        let free = free_bytes(self.audit.dir());
        if free.is_some_and(|f| f < LOW_DISK_BYTES) {
            problems.push(format!(
                "less than {} MiB free under the audit directory",
                LOW_DISK_BYTES >> 20
            ));
        }
        json!({
            "health": if problems.is_empty() { "healthy" } else { "degraded" },
            "problems": problems,
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "config": self.config_path,
            "mode": format!("{:?}", self.config.ebpf.mode).to_lowercase(),
            "cgroups": cgroups,
            "pin_dir": self.config.ebpf.pin_dir,
            "pins": pins,
            "targets": self.config.targets.iter().map(|t| json!({
                "name": t.name,
                "redirects": crate::config::describe_target(t),
            })).collect::<Vec<_>>(),
            "policy": {
                "dir": self.store.dir(),
                "identities": set.identities.len(),
                "rules": set.rules.len(),
                "last_reload": last_reload.map(|(at, trigger, error)| json!({
                    "at": humantime::format_rfc3339_seconds(at).to_string(),
                    "trigger": trigger,
                    "applied": error.is_none(),
                    "error": error,
                })),
            },
            "audit": {
                "dir": self.audit.dir(),
                "writing": healthy,
                "records": stats.records,
                "checkpoints": stats.checkpoints,
                "failed_batches": stats.failed_batches,
                "queued": stats.queued,
                "free_bytes": free,
            },
            "approvals_pending": self.broker.as_ref().map(|b| b.pending()),
        })
    }
}

impl AdminHandler for StatusAdmin {
    fn handle<'a>(&'a self, op: &'a str, _request: Value, _peer: Peer) -> HandlerFuture<'a> {
        Box::pin(async move {
            match op {
                "status.get" => Ok(self.report()),
                _ => Err(format!("unknown operation `{op}`")),
            }
        })
    }
}

/// The pinned links and maps in `dir` (names only).
pub fn pins(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// The human form of a report.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    out.push_str(&format!(
        "interceptor {} (pid {}, up {} s): {}\n",
        s(&r["version"]),
        r["pid"],
        r["uptime_secs"],
        s(&r["health"])
    ));
    for p in r["problems"].as_array().into_iter().flatten() {
        out.push_str(&format!("  problem: {}\n", s(p)));
    }
    out.push_str(&format!("config:    {}\n", s(&r["config"])));
    out.push_str(&format!("mode:      {}\n", s(&r["mode"])));
    for c in r["cgroups"].as_array().into_iter().flatten() {
        let programs: Vec<String> = c["programs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "cgroup:    {} [{}] {}\n",
            s(&c["path"]),
            if c["ok"] == true {
                "attached"
            } else {
                "NOT ATTACHED"
            },
            programs.join(" ")
        ));
    }
    out.push_str(&format!(
        "pins:      {} ({} entries)\n",
        s(&r["pin_dir"]),
        r["pins"].as_array().map_or(0, Vec::len)
    ));
    for t in r["targets"].as_array().into_iter().flatten() {
        out.push_str(&format!("{}\n", s(&t["redirects"])));
    }
    out.push_str(&format!(
        "policy:    {} ({} identities, {} rules)\n",
        s(&r["policy"]["dir"]),
        r["policy"]["identities"],
        r["policy"]["rules"]
    ));
    let a = &r["audit"];
    out.push_str(&format!(
        "audit:     {} writing={} records={} checkpoints={} failed_batches={} queued={} free={} MiB\n",
        s(&a["dir"]),
        a["writing"],
        a["records"],
        a["checkpoints"],
        a["failed_batches"],
        a["queued"],
        a["free_bytes"].as_u64().map_or_else(|| "?".to_owned(), |b| (b >> 20).to_string())
    ));
    if !r["approvals_pending"].is_null() {
        out.push_str(&format!("approvals: {} pending\n", r["approvals_pending"]));
    }
    out
}
