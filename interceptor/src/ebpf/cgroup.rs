//! Finding the cgroup v2 hierarchy and resolving configured cgroups in it.

use std::{
    os::unix::{ffi::OsStringExt, fs::MetadataExt},
    path::{Component, Path, PathBuf},
};

use super::EbpfError;

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`
/// (`/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_mount() -> Result<PathBuf, EbpfError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| EbpfError::io("reading /proc/self/mountinfo", e))?;
    parse_mountinfo(&text).ok_or(EbpfError::NoCgroup2)
}

/// The first cgroup2 mount point in a mountinfo text.
fn parse_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| unescape(left.split_whitespace().nth(4)?))?
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Option<PathBuf> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 4]).ok()?, 8).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// A cgroup v2 directory and its id (the kernfs inode number, what
/// `bpf_get_current_cgroup_id` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cgroup {
    pub(crate) path: PathBuf,
    pub(crate) id: u64,
}

/// Resolves a configured cgroup: relative paths are taken from `mount`,
/// absolute ones must lie inside it.
pub(crate) fn resolve(
    mount: &Path,
    configured: &Path,
    field: &'static str,
) -> Result<Cgroup, EbpfError> {
    let joined = if configured.is_absolute() {
        configured.to_owned()
    } else {
        mount.join(configured)
    };
    // Lexical check first, so `..` cannot walk out of the hierarchy.
    if configured.components().any(|c| c == Component::ParentDir) || !joined.starts_with(mount) {
        return Err(EbpfError::CgroupOutside {
            path: configured.to_owned(),
            mount: mount.to_owned(),
        });
    }
    if !joined.join("cgroup.procs").is_file() {
        return Err(EbpfError::CgroupMissing {
            path: joined,
            field,
        });
    }
    let id = std::fs::metadata(&joined)
        .map_err(|e| EbpfError::io(format!("stat {}", joined.display()), e))?
        .ino();
    Ok(Cgroup { path: joined, id })
}

/// The cgroup v2 directory of this process.
pub(crate) fn own_cgroup(mount: &Path) -> Result<PathBuf, EbpfError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| EbpfError::io("reading /proc/self/cgroup", e))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| {
            EbpfError::io(
                "/proc/self/cgroup",
                std::io::Error::other("no cgroup v2 entry"),
            )
        })?;
    Ok(mount.join(rel.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_mountinfo() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            parse_mountinfo(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_mountinfo("31 23 0:28 / /x rw - tmpfs tmpfs rw\n"),
            None
        );
        assert_eq!(
            parse_mountinfo("41 31 0:38 / /mnt/c\\040g rw - cgroup2 none rw\n"),
            Some(PathBuf::from("/mnt/c g"))
        );
    }

    #[test]
    fn resolve_rejects_paths_outside_the_mount() {
        let mount = Path::new("/sys/fs/cgroup/unified");
        assert!(matches!(
            resolve(mount, Path::new("/etc"), "cgroups"),
            Err(EbpfError::CgroupOutside { .. })
        ));
        assert!(matches!(
            resolve(mount, Path::new("../../etc"), "cgroups"),
            Err(EbpfError::CgroupOutside { .. })
        ));
        let e = resolve(mount, Path::new("no-such-cgroup-for-tests"), "cgroups").unwrap_err();
        assert!(
            e.to_string()
                .contains("/sys/fs/cgroup/unified/no-such-cgroup-for-tests"),
            "{e}"
        );
        assert!(e.to_string().contains("mkdir"), "{e}");
    }
}
