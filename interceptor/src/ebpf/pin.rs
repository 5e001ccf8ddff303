//! bpffs: mounting it, the pin directory, pinned links and their refresh.
//!
//! Links are pinned as `link-<cgroup id>-<hook>` so that they outlive the
//! daemon: with the daemon gone, a watched connect to a target still goes to
//! the (closed) proxy port and fails, it never goes direct. On restart an
//! existing pin is updated in place (`BPF_LINK_UPDATE`: the hook never runs
//! without a program, and never runs two of ours); only a missing or dead
//! link is created anew. Pins of hooks no longer configured are removed,
//! which detaches them.

use std::{
    collections::HashSet,
    fs::File,
    io,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use nix::{
    fcntl::{Flock, FlockArg},
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use super::{
    EbpfError,
    sys::{self, AttachType},
};

/// Where bpffs is mounted when it is not.
const BPFFS: &str = "/sys/fs/bpf";
/// Prefix of pinned links.
const LINK_PREFIX: &str = "link-";
/// Prefix of pinned maps.
pub(crate) const MAP_PREFIX: &str = "map-";

fn on_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` exists on a bpf filesystem, mounting bpffs at
/// `/sys/fs/bpf` first when `pin_dir` is below it and nothing is mounted there.
pub(crate) fn ensure_pin_dir(pin_dir: &Path) -> Result<(), EbpfError> {
    if pin_dir.starts_with(BPFFS) && !on_bpffs(Path::new(BPFFS)) {
        mount_bpffs()?;
    }
    if on_bpffs(pin_dir) && pin_dir.parent().is_none_or(|p| !on_bpffs(p)) {
        return Err(EbpfError::PinDirIsRoot(pin_dir.to_owned()));
    }
    // The nearest existing ancestor decides which file system we create on.
    let existing = pin_dir.ancestors().skip(1).find(|p| p.exists());
    if existing.is_none_or(|p| !on_bpffs(p)) {
        return Err(EbpfError::NotBpffs {
            path: pin_dir.to_owned(),
        });
    }
    std::fs::create_dir_all(pin_dir)
        .map_err(|e| EbpfError::io(format!("creating {}", pin_dir.display()), e))
}

/// Mounts bpffs at `/sys/fs/bpf`. A lock on the mount point directory keeps
/// two starting daemons (or parallel tests) from stacking two mounts, which
/// would hide the first one's pins.
fn mount_bpffs() -> Result<(), EbpfError> {
    let dir = File::open(BPFFS).map_err(|e| EbpfError::io(format!("opening {BPFFS}"), e))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| EbpfError::io(format!("locking {BPFFS}"), e.into()))?;
    if on_bpffs(Path::new(BPFFS)) {
        return Ok(());
    }
    mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| EbpfError::io(format!("mounting bpffs at {BPFFS}"), e.into()))
}

/// Pin path of the link of `hook` on the cgroup with id `cgroup_id`.
pub(crate) fn link_path(pin_dir: &Path, cgroup_id: u64, hook: &str) -> PathBuf {
    pin_dir.join(format!("{LINK_PREFIX}{cgroup_id}-{hook}"))
}

/// Pin path of map `name`.
pub(crate) fn map_path(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("{MAP_PREFIX}{name}"))
}

/// Makes the pinned link at `path` run `prog` on `cgroup`: updates it in
/// place if it exists and is alive, else creates and pins a new one.
pub(crate) fn refresh_link(
    path: &Path,
    prog: BorrowedFd<'_>,
    cgroup: &File,
    cgroup_path: &Path,
    attach: AttachType,
    hook: &'static str,
) -> Result<(), EbpfError> {
    if let Ok(link) = sys::obj_get(path) {
        match sys::link_update(link.as_fd(), prog) {
            Ok(()) => return Ok(()),
            // ENOLINK: the cgroup went away; anything else: not a link we can
            // reuse. Replace it.
            Err(e) => {
                tracing::warn!(pin = %path.display(), error = %e, "pinned link not reusable, replacing it");
                remove_link(path)?;
            }
        }
    }
    let link =
        sys::link_create(prog, cgroup.as_fd(), attach).map_err(|source| EbpfError::Attach {
            hook,
            cgroup: cgroup_path.to_owned(),
            source,
        })?;
    sys::obj_pin(link.as_fd(), path)
        .map_err(|e| EbpfError::io(format!("pinning {}", path.display()), e))
    // `link` is closed here; the pin keeps it attached.
}

/// Removes pinned links in `pin_dir` that are not in `keep` (detaching them).
pub(crate) fn remove_stale_links(pin_dir: &Path, keep: &HashSet<PathBuf>) -> Result<(), EbpfError> {
    for path in entries(pin_dir)? {
        let is_link = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(LINK_PREFIX));
        if is_link && !keep.contains(&path) {
            tracing::info!(pin = %path.display(), "detaching link no longer configured");
            remove_link(&path)?;
        }
    }
    Ok(())
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, EbpfError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| EbpfError::io(format!("listing {}", dir.display()), e))?;
    read.map(|e| {
        e.map(|e| e.path())
            .map_err(|e| EbpfError::io(format!("listing {}", dir.display()), e))
    })
    .collect()
}

/// Detaches the pinned link at `path` (synchronously) and removes the pin.
fn remove_link(path: &Path) -> Result<(), EbpfError> {
    if let Ok(link) = sys::obj_get(path) {
        // A link whose cgroup is gone is already detached: ignore ENOLINK & co.
        let _ = sys::link_detach(link.as_fd());
    }
    remove_file(path)
}

fn remove_file(path: &Path) -> Result<(), EbpfError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EbpfError::io(format!("removing {}", path.display()), e)),
    }
}

/// Detaches everything interceptor pinned in `pin_dir` and removes the pins
/// and the directory. Only our own pins (`link-*`, `map-*`) are touched; a
/// directory with anything else in it is left in place. A missing `pin_dir`
/// is not an error.
pub fn uninstall(pin_dir: &Path) -> Result<(), EbpfError> {
    if !pin_dir.exists() {
        return Ok(());
    }
    for path in entries(pin_dir)? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(LINK_PREFIX) {
            remove_link(&path)?;
        } else if name.starts_with(MAP_PREFIX) {
            remove_file(&path)?;
        }
    }
    match std::fs::remove_dir(pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EbpfError::io(format!("removing {}", pin_dir.display()), e)),
    }
}
