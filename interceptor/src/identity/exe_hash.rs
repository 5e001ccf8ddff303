//! SHA-256 of a running executable, cached by file identity.
//!
//! CI jobs connect many times with the same few binaries (psql, pgbench -C):
//! hashing a 10 MiB binary per connection would cost more than the proxying.
//! The cache key is what changes when the file does (device, inode, size,
//! mtime and ctime of the file behind `/proc/<pid>/exe`), so a rebuilt or
//! replaced binary is hashed again.

use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    os::unix::fs::MetadataExt,
    sync::{Mutex, OnceLock},
};

use sha2::{Digest, Sha256};

use super::IdentityError;

/// Cached entries before the cache is cleared (it only refills with what runs).
const MAX_ENTRIES: usize = 4096;

#[derive(Hash, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

fn cache() -> &'static Mutex<HashMap<FileKey, String>> {
    static CACHE: OnceLock<Mutex<HashMap<FileKey, String>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Hashes the executable process `pid` runs, through `/proc/<pid>/exe`
/// (which opens the very file that was executed, even if its path now names
/// another one).
pub fn sha256_of_exe(pid: u32) -> Result<String, IdentityError> {
    let path = format!("/proc/{pid}/exe");
    let mut file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IdentityError::Gone(pid),
        _ => IdentityError::Proc {
            path: path.clone().into(),
            reason: e.to_string(),
        },
    })?;
    let meta = file.metadata().map_err(|e| IdentityError::Proc {
        path: path.clone().into(),
        reason: e.to_string(),
    })?;
    let key = FileKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    };
    if let Some(hit) = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return Ok(hit.clone());
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| IdentityError::Proc {
            path: path.clone().into(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hex::encode(hasher.finalize());
    let mut cache = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    cache.insert(key, digest.clone());
    Ok(digest)
}
