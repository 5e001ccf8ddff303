//! Leftovers of an earlier run that was killed before its guards ran (a
//! SIGKILLed test binary, a machine reboot mid-run): our own cgroups and pin
//! directories whose creating process is gone. Only names this harness makes
//! (`interceptor-{test,demo,bench}-<pid>-<n>`) are touched, only when `<pid>`
//! no longer exists, and no process is ever killed here.

use std::{fs, path::Path};

use crate::{cgroup::cgroup2_mount, daemon::uninstall};

/// Name prefixes this harness creates.
pub const PREFIXES: [&str; 3] = [
    "interceptor-test-",
    "interceptor-demo-",
    "interceptor-bench-",
];

/// The creating pid encoded in one of our names, if the name is ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = PREFIXES.iter().find_map(|p| name.strip_prefix(p))?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes stale pin directories (through `interceptor uninstall`) and empty
/// stale cgroups; returns what it removed, for the caller to report.
pub fn remove_stale(interceptor_bin: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in fs::read_dir("/sys/fs/bpf").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name) && uninstall(interceptor_bin, &entry.path()).is_ok() {
            removed.push(entry.path().display().to_string());
        }
    }
    if let Ok(mount) = cgroup2_mount() {
        for entry in fs::read_dir(&mount).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // rmdir fails on a cgroup that still holds processes: those are
            // left alone (and reported by the caller's own checks).
            if is_stale(&name) && fs::remove_dir(entry.path()).is_ok() {
                removed.push(entry.path().display().to_string());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_only_for_our_names() {
        assert_eq!(owner_pid("interceptor-test-123-4"), Some(123));
        assert_eq!(owner_pid("interceptor-demo-9-0"), Some(9));
        assert_eq!(owner_pid("interceptor"), None);
        assert_eq!(owner_pid("interceptor-test-abc-1"), None);
        assert_eq!(owner_pid("ci-runners"), None);
    }
}
