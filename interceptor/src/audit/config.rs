//! [`AuditConfig`]: the `[audit]` table of the daemon configuration.
//!
//! ```toml
//! [audit]
//! dir = "/var/lib/interceptor/audit"
//! segment_max_bytes = 67108864          # rotate at 64 MiB ...
//! segment_max_age_secs = 86400          # ... or after a day
//! checkpoint_every_records = 1000       # sign the chain head this often ...
//! checkpoint_every_ms = 1000            # ... or at least this often
//! host = ""                             # "" = the system host name
//! queue_capacity = 65536                # appends waiting beyond this wait
//! durability = "sync"                   # or "written" (see Durability)
//! sync_interval_ms = 50                 # "written": fdatasync at least this often
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::AuditError;

/// Where and how the audit log is written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Root-only directory of the segments and the host key.
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once it is this large
    /// (checked before each batch, so a segment may exceed it by one batch).
    pub segment_max_bytes: u64,
    /// ... or once its first record is this old.
    pub segment_max_age_secs: u64,
    /// A signed checkpoint at least every this many records ...
    pub checkpoint_every_records: u64,
    /// ... and at least this often while there are unsigned records: the
    /// window in which records are protected by the hash chain alone.
    pub checkpoint_every_ms: u64,
    /// Host name recorded in `daemon_start`, `session_start` and every
    /// checkpoint; empty = the system host name.
    pub host: String,
    /// Appends queued at most; beyond it `append` waits (backpressure).
    pub queue_capacity: usize,
    /// When an append is acknowledged.
    pub durability: Durability,
    /// With [`Durability::Written`]: written records are `fdatasync`ed at
    /// least this often (and with every checkpoint).
    pub sync_interval_ms: u64,
    /// Record statement text as sent, secrets included. Default false: each
    /// password, connection-string password and constant a content
    /// detector finds is replaced by a keyed mark (see `audit::secrets`).
    pub record_secrets: bool,
    /// A file outside the audit directory (another filesystem, a synced
    /// share) rewritten with the latest signed checkpoint after each one is
    /// durable. `audit verify --witness FILE` then detects a log cut back
    /// to an earlier checkpoint, its newest segment deleted, or an older
    /// copy restored.
    pub witness: Option<PathBuf>,
}

/// When [`super::AuditLog::append`] resolves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After the batch is `fdatasync`ed: the record survives a power loss.
    /// Each append waits for one disk flush (shared by everything queued
    /// with it).
    Sync,
    /// After the batch is written to the file (`pwrite` returned): the
    /// record survives a crash or `kill -9` of the daemon, not a power loss
    /// or kernel crash within `sync_interval_ms`. Appends no longer wait for
    /// the disk; write errors (disk full, directory removed) are still
    /// reported to the append that hit them, a failed `fdatasync` to the next
    /// one. The default: a statement then waits for a write, not for the
    /// disk, and batches are still `fdatasync`ed every `sync_interval_ms`.
    #[default]
    Written,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/interceptor/audit"),
            segment_max_bytes: 64 << 20,
            segment_max_age_secs: 24 * 3600,
            checkpoint_every_records: 1000,
            checkpoint_every_ms: 1000,
            host: String::new(),
            queue_capacity: 65536,
            durability: Durability::Written,
            sync_interval_ms: 50,
            record_secrets: false,
            witness: None,
        }
    }
}

impl AuditConfig {
    /// The defaults, writing to `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// The host name to record: `host`, or the system's.
    pub fn resolved_host(&self) -> Result<String, AuditError> {
        let host = if self.host.is_empty() {
            // The UTS name, as gethostname(2) returns it.
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_err(|e| {
                    AuditError::Config(format!("cannot read the host name: {e} (set audit.host)"))
                })?
                .trim()
                .to_owned()
        } else {
            self.host.clone()
        };
        // The host is a line of the signed checkpoint message.
        if host.is_empty() || host.chars().any(char::is_control) {
            return Err(AuditError::Config(format!(
                "host {host:?} must be non-empty without control characters (set audit.host)"
            )));
        }
        Ok(host)
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), AuditError> {
        if self.segment_max_bytes < 4096 {
            return Err(AuditError::Config(
                "segment_max_bytes must be at least 4096".into(),
            ));
        }
        if self.segment_max_age_secs == 0 {
            return Err(AuditError::Config(
                "segment_max_age_secs must be at least 1".into(),
            ));
        }
        if self.checkpoint_every_records == 0 || self.checkpoint_every_ms == 0 {
            return Err(AuditError::Config(
                "checkpoint_every_records and checkpoint_every_ms must be at least 1".into(),
            ));
        }
        if self.sync_interval_ms == 0 {
            return Err(AuditError::Config(
                "sync_interval_ms must be at least 1".into(),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(AuditError::Config(
                "queue_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: AuditConfig = toml::from_str("dir = \"/tmp/a\"").unwrap();
        assert_eq!(c.dir, PathBuf::from("/tmp/a"));
        assert_eq!(c.segment_max_bytes, 64 << 20);
        assert!(toml::from_str::<AuditConfig>("segment_bytes = 1").is_err());
        c.validate().unwrap();
    }

    #[test]
    fn control_characters_in_host_are_refused() {
        let c = AuditConfig {
            host: "a\nb".into(),
            ..AuditConfig::default()
        };
        assert!(c.resolved_host().is_err());
    }
}
