//! The host's Ed25519 key: `keys/host.key` (PKCS#8 PEM, 0600) and
//! `keys/host.pub` (SPKI PEM) in the log directory, generated on first
//! start; fingerprints; the checkpoint signature.

use std::{
    fs::{self, OpenOptions},
    io::{ErrorKind, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use base64::{
    Engine as _, engine::general_purpose::STANDARD, engine::general_purpose::STANDARD_NO_PAD,
};
use ed25519_dalek::{
    Signature, Signer as _, SigningKey, VerifyingKey,
    pkcs8::{
        DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
        spki::der::pem::LineEnding,
    },
};
use sha2::{Digest as _, Sha256};

use super::{AuditError, Checkpoint};

/// The host's signing key, loaded.
pub(crate) struct HostKey {
    signing: SigningKey,
    /// `SHA256:<base64>` of the public key.
    pub fingerprint: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// `<dir>/keys`.
pub(crate) fn key_dir(dir: &Path) -> PathBuf {
    dir.join("keys")
}

/// `<dir>/keys/host.key`.
pub(crate) fn private_path(dir: &Path) -> PathBuf {
    key_dir(dir).join("host.key")
}

/// `<dir>/keys/host.pub`.
pub(crate) fn public_path(dir: &Path) -> PathBuf {
    key_dir(dir).join("host.pub")
}

impl HostKey {
    /// Loads the key of the log in `dir`, or generates one; makes sure both
    /// files exist with the right modes.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuditError> {
        let path = private_path(dir);
        let signing = match fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| AuditError::Key {
                path: path.clone(),
                reason: format!("not an Ed25519 PKCS#8 key: {e}"),
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => generate(&path)?,
            Err(e) => return Err(AuditError::io(&path, e)),
        };
        let key = Self {
            fingerprint: fingerprint(&signing.verifying_key()),
            signing,
        };
        key.write_files(dir)?;
        Ok(key)
    }

    /// (Re)writes whichever key file is missing or different, and tightens
    /// the private key's mode to 0600.
    pub fn write_files(&self, dir: &Path) -> Result<(), AuditError> {
        let kdir = key_dir(dir);
        create_private_dir(&kdir)?;
        let private = private_path(dir);
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuditError::Key {
                path: private.clone(),
                reason: e.to_string(),
            })?;
        if fs::read_to_string(&private).ok().as_deref() != Some(pem.as_str()) {
            write_atomic(&private, pem.as_bytes(), 0o600)?;
        }
        fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
            .map_err(|e| AuditError::io(&private, e))?;
        let public = public_path(dir);
        let pub_pem = public_pem(&self.signing.verifying_key());
        if fs::read_to_string(&public).ok().as_deref() != Some(pub_pem.as_str()) {
            write_atomic(&public, pub_pem.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// Signs a checkpoint over (`host`, `head_seq`, `head_hash`, `reason`);
    /// returns the base64 signature.
    pub fn sign(&self, host: &str, head_seq: u64, head_hash: &str, reason: &str) -> String {
        let sig = self
            .signing
            .sign(&checkpoint_message(host, head_seq, head_hash, reason));
        STANDARD.encode(sig.to_bytes())
    }

    /// A key from a fixed seed (the bench's per-record signing estimate).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        Self {
            fingerprint: fingerprint(&signing.verifying_key()),
            signing,
        }
    }
}

fn generate(path: &Path) -> Result<SigningKey, AuditError> {
    use rand::TryRngCore as _;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| AuditError::Key {
            path: path.to_owned(),
            reason: format!("no randomness from the OS: {e}"),
        })?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    std::hint::black_box(&seed);
    tracing::info!(path = %path.display(), "generated the audit log's Ed25519 host key");
    Ok(key)
}

/// The byte string a checkpoint signs (see the module doc).
pub(crate) fn checkpoint_message(
    host: &str,
    head_seq: u64,
    head_hash: &str,
    reason: &str,
) -> Vec<u8> {
    format!("interceptor-audit-checkpoint-v1\n{host}\n{head_seq}\n{head_hash}\n{reason}\n")
        .into_bytes()
}

/// Whether `cp`'s signature verifies with `key` (strict Ed25519).
pub(crate) fn verify_checkpoint(key: &VerifyingKey, cp: &Checkpoint) -> bool {
    let Ok(bytes) = STANDARD.decode(&cp.sig) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    let msg = checkpoint_message(&cp.host, cp.head_seq, &cp.head_hash, cp.reason.as_str());
    key.verify_strict(&msg, &sig).is_ok()
}

/// `SHA256:<base64 of the SHA-256 of the 32 raw public key bytes>` (the
/// OpenSSH style of fingerprint).
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key.as_bytes()))
    )
}

/// The SPKI PEM of a public key (what `host.pub` holds, what `openssl pkey
/// -pubout` prints).
pub(crate) fn public_pem(key: &VerifyingKey) -> String {
    // Encoding 32 bytes into a fixed DER structure cannot fail.
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Reads a public key given to `verify --pubkey`: an SPKI PEM block
/// (anywhere in the file, as `audit pubkey` prints it), or the 32 raw bytes
/// in base64 or hex on a line of their own.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let text = fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
    let bad = |reason: String| AuditError::Key {
        path: path.to_owned(),
        reason,
    };
    if let Some(start) = text.find(BEGIN) {
        let end = text[start..]
            .find(END)
            .ok_or_else(|| bad("PEM block without its END line".into()))?;
        let block = &text[start..start + end + END.len()];
        return VerifyingKey::from_public_key_pem(block)
            .map_err(|e| bad(format!("not an Ed25519 public key: {e}")));
    }
    let word = text.split_whitespace().next().unwrap_or_default();
    let bytes = hex::decode(word)
        .ok()
        .or_else(|| STANDARD.decode(word).ok())
        .ok_or_else(|| bad("neither a PEM public key nor 32 bytes in hex or base64".into()))?;
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("an Ed25519 public key is 32 bytes".into()))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| bad(format!("not an Ed25519 public key: {e}")))
}

/// The public key of the log in `dir`, without creating anything: from
/// `keys/host.key` when readable (it is what signs), else `keys/host.pub`.
pub(crate) fn existing_public_key(dir: &Path) -> Result<VerifyingKey, AuditError> {
    let private = private_path(dir);
    match fs::read_to_string(&private) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem)
            .map(|k| k.verifying_key())
            .map_err(|e| AuditError::Key {
                path: private,
                reason: format!("not an Ed25519 PKCS#8 key: {e}"),
            }),
        Err(_) => load_public_key(&public_path(dir)),
    }
}

/// Creates `dir` (and parents) if missing and makes it 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), AuditError> {
    fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| AuditError::io(dir, e))
}

/// Writes `path` through a temporary file, `fsync`ed, renamed into place.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuditError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AuditError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| AuditError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| AuditError::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// `fsync`s a directory so that a new or renamed entry in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::CheckpointReason;

    #[test]
    fn key_files_and_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let k = HostKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(private_path(dir.path()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // Same key on reload; public file loads back.
        let again = HostKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.fingerprint, k.fingerprint);
        let public = load_public_key(&public_path(dir.path())).unwrap();
        assert_eq!(fingerprint(&public), k.fingerprint);

        let mut cp = Checkpoint {
            head_seq: 9,
            head_hash: "ab".repeat(32),
            host: "h".into(),
            reason: CheckpointReason::Periodic,
            key: k.fingerprint.clone(),
            sig: k.sign("h", 9, &"ab".repeat(32), "periodic"),
        };
        assert!(verify_checkpoint(&public, &cp));
        cp.head_seq = 10;
        assert!(!verify_checkpoint(&public, &cp));
        cp.head_seq = 9;
        cp.reason = CheckpointReason::Seal;
        assert!(!verify_checkpoint(&public, &cp));

        // Raw base64 and hex forms.
        let raw = dir.path().join("raw");
        fs::write(&raw, format!("{}\n", STANDARD.encode(public.as_bytes()))).unwrap();
        assert_eq!(load_public_key(&raw).unwrap(), public);
        fs::write(&raw, hex::encode(public.as_bytes())).unwrap();
        assert_eq!(load_public_key(&raw).unwrap(), public);
        fs::write(&raw, "nonsense").unwrap();
        assert!(load_public_key(&raw).is_err());
    }
}
