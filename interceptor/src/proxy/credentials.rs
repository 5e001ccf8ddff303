//! The database credentials only the daemon holds.
//!
//! `[credentials] file` is a root-only TOML file:
//!
//! ```toml
//! [[credential]]
//! target = "main-db"        # a [[target]] name
//! user = "ci_reader"        # the database role the proxy logs in as
//! password = "..."          # or: password_env = "VAR"; or neither, see below
//! default = true            # used when no credential has the client's user
//! ```
//!
//! The client's startup `user` picks the credential with that `user` for the
//! target, else the target's `default = true` credential. A credential with
//! neither `password` nor `password_env` takes its password from
//! `INTERCEPTOR_PASSWORD_<TARGET>` (target name upper-cased, every other
//! character than A-Z and 0-9 replaced by `_`), or has none (trust upstream).
//!
//! The file is refused unless it is owned by root (or by the daemon's own
//! uid, for unprivileged development runs) and has no group or other
//! permission bits. Passwords are never logged: [`Secret`]'s `Debug` redacts.

use std::{
    collections::HashSet,
    fmt,
    fs::File,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::config::{Config, line_of};

/// A password. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The password itself, to hand to the authentication exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// One credential, resolved (environment variables read).
#[derive(Debug, Clone)]
pub struct Credential {
    /// Target name.
    pub target: String,
    /// Database role the proxy logs in as.
    pub user: String,
    /// Password, if any (a trust upstream needs none).
    pub password: Option<Secret>,
    /// Used for clients whose user has no credential of its own.
    pub default: bool,
}

/// All credentials the daemon holds.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// In file order.
    entries: Vec<Credential>,
}

/// Why the credentials cannot be loaded, or none fits a session.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file cannot be opened or read.
    #[error("cannot read credentials file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others have permissions on the file.
    #[error(
        "credentials file {} has mode {mode:04o}: it must not be accessible to group or others (fix: chmod 600 {})",
        path.display(), path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is owned by someone else than root.
    #[error("credentials file {} is owned by uid {uid}, not root (fix: chown root:root {} && chmod 600 {})",
        path.display(), path.display(), path.display())]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// The file is not valid, at a line when it can be placed.
    #[error("{}{}: {message} (fix: {fix})", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// No credential fits the session.
    #[error("no credential held for user {user} on target {target}")]
    NoCredential {
        /// The client's startup user.
        user: String,
        /// The target.
        target: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    credential: Vec<EntrySchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySchema {
    target: String,
    user: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    default: bool,
}

impl Credentials {
    /// No credentials: every session is refused with [`CredentialsError::NoCredential`].
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads the file named by `config.credentials.file` (none: empty).
    pub fn load(config: &Config) -> Result<Self, CredentialsError> {
        match &config.credentials.file {
            Some(path) => Self::load_file(path, config),
            None => Ok(Self::empty()),
        }
    }

    /// Checks owner and mode of `path`, then reads and validates it.
    pub fn load_file(path: &Path, config: &Config) -> Result<Self, CredentialsError> {
        let read_err = |source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        };
        // Check the opened file itself (fstat), not the path, so the file
        // read is the file checked.
        let mut file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        check_permissions(
            path,
            meta.mode(),
            meta.uid(),
            nix::unistd::geteuid().as_raw(),
        )?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_err)?;
        Self::parse(path, &text, config, |var| std::env::var(var).ok())
    }

    /// Parses and validates `text` (read from `path`); `env` reads environment
    /// variables.
    pub fn parse(
        path: &Path,
        text: &str,
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialsError> {
        let invalid = |line: Option<usize>, message: String, fix: &str| CredentialsError::Invalid {
            path: path.to_owned(),
            line,
            message,
            fix: fix.to_owned(),
        };
        let schema: FileSchema = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map(|s| line_of(text, s.start)),
                e.message().trim().to_owned(),
                "each [[credential]] has target, user, and optionally password or password_env, and default",
            )
        })?;
        let line_of_entry = |n: usize| {
            text.match_indices("[[credential]]")
                .nth(n)
                .map(|(pos, _)| line_of(text, pos))
        };
        let mut seen = HashSet::new();
        let mut defaults = HashSet::new();
        let mut entries = Vec::with_capacity(schema.credential.len());
        for (n, e) in schema.credential.into_iter().enumerate() {
            let line = line_of_entry(n);
            if config.target(&e.target).is_none() {
                return Err(invalid(
                    line,
                    format!("credential for unknown target `{}`", e.target),
                    "use the name of a [[target]] in the daemon configuration",
                ));
            }
            if e.user.is_empty() {
                return Err(invalid(
                    line,
                    "credential with an empty user".into(),
                    "set user to a database role",
                ));
            }
            if !seen.insert((e.target.clone(), e.user.clone())) {
                return Err(invalid(
                    line,
                    format!(
                        "second credential for user `{}` on target `{}`",
                        e.user, e.target
                    ),
                    "keep one [[credential]] per target and user",
                ));
            }
            if e.default && !defaults.insert(e.target.clone()) {
                return Err(invalid(
                    line,
                    format!("second default credential for target `{}`", e.target),
                    "mark at most one credential per target with default = true",
                ));
            }
            let password = match (e.password, e.password_env) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        line,
                        "both password and password_env are set".into(),
                        "keep one of them",
                    ));
                }
                (Some(p), None) => Some(p),
                (None, Some(var)) => Some(Secret(env(&var).ok_or_else(|| {
                    invalid(
                        line,
                        format!("environment variable {var} (password_env of user `{}`) is not set", e.user),
                        "set it in the daemon's environment (e.g. the systemd unit's EnvironmentFile)",
                    )
                })?)),
                (None, None) => env(&target_password_env(&e.target)).map(Secret),
            };
            entries.push(Credential {
                target: e.target,
                user: e.user,
                password,
                default: e.default,
            });
        }
        Ok(Self { entries })
    }

    /// The credential for a session of client user `user` on `target`.
    pub fn for_session(&self, target: &str, user: &str) -> Result<&Credential, CredentialsError> {
        let of_target = || self.entries.iter().filter(|c| c.target == target);
        of_target()
            .find(|c| c.user == user)
            .or_else(|| of_target().find(|c| c.default))
            .ok_or_else(|| CredentialsError::NoCredential {
                user: user.to_owned(),
                target: target.to_owned(),
            })
    }

    /// Number of credentials held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `INTERCEPTOR_PASSWORD_<TARGET>`: the target name upper-cased, every
/// character other than A-Z, 0-9 replaced by `_`.
pub fn target_password_env(target: &str) -> String {
    let name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("INTERCEPTOR_PASSWORD_{name}")
}

/// Refuses a file that group or others may access, or that is owned by
/// another user than root or the daemon itself.
fn check_permissions(path: &Path, mode: u32, uid: u32, euid: u32) -> Result<(), CredentialsError> {
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Permissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    if uid != 0 && uid != euid {
        return Err(CredentialsError::Owner {
            path: path.to_owned(),
            uid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{io::Write, os::unix::fs::PermissionsExt};

    use super::*;

    fn config() -> Config {
        Config::parse(
            Path::new("c.toml"),
            "[[target]]\nname = \"main-db\"\n[[target]]\nname = \"other\"\n",
        )
        .unwrap()
    }

    fn parse(text: &str) -> Result<Credentials, CredentialsError> {
        let env = |v: &str| match v {
            "PW_VAR" => Some("from-var".to_owned()),
            "INTERCEPTOR_PASSWORD_MAIN_DB" => Some("from-target-env".to_owned()),
            _ => None,
        };
        Credentials::parse(Path::new("creds.toml"), text, &config(), env)
    }

    #[test]
    fn selection_by_user_then_default() {
        let c = parse(
            "[[credential]]\ntarget = \"main-db\"\nuser = \"reader\"\npassword = \"p1\"\ndefault = true\n\
             [[credential]]\ntarget = \"main-db\"\nuser = \"writer\"\npassword_env = \"PW_VAR\"\n\
             [[credential]]\ntarget = \"main-db\"\nuser = \"trusty\"\n\
             [[credential]]\ntarget = \"other\"\nuser = \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            c.for_session("main-db", "writer")
                .unwrap()
                .password
                .as_ref()
                .unwrap()
                .expose(),
            "from-var"
        );
        assert_eq!(c.for_session("main-db", "someone").unwrap().user, "reader");
        assert_eq!(
            c.for_session("main-db", "trusty")
                .unwrap()
                .password
                .as_ref()
                .unwrap()
                .expose(),
            "from-target-env"
        );
        assert!(c.for_session("other", "x").unwrap().password.is_none());
        let e = c.for_session("other", "alice").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no credential held for user alice on target other"
        );
    }

    #[test]
    fn debug_redacts_passwords() {
        let c =
            parse("[[credential]]\ntarget = \"main-db\"\nuser = \"r\"\npassword = \"hunter2\"\n")
                .unwrap();
        let dbg = format!("{c:?} {:?}", c.for_session("main-db", "r").unwrap());
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn invalid_files_name_line_and_fix() {
        let e = parse("[[credential]]\ntarget = \"main-db\"\nuser = \"r\"\npasword = \"x\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("creds.toml:4"), "{e}");
        let e = parse("[[credential]]\ntarget = \"main-db\"\nuser = \"r\"\n[[credential]]\ntarget = \"nope\"\nuser = \"r\"\n")
            .unwrap_err();
        assert!(
            e.to_string().contains(":4") && e.to_string().contains("unknown target `nope`"),
            "{e}"
        );
        let e = parse(
            "[[credential]]\ntarget = \"main-db\"\nuser = \"r\"\npassword_env = \"UNSET_VAR\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("UNSET_VAR"), "{e}");
        let e = parse(
            "[[credential]]\ntarget = \"main-db\"\nuser = \"a\"\ndefault = true\n\
             [[credential]]\ntarget = \"main-db\"\nuser = \"b\"\ndefault = true\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("second default"), "{e}");
        let e = parse("[[credential]]\ntarget = \"main-db\"\nuser = \"a\"\npassword = \"x\"\npassword_env = \"PW_VAR\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
    }

    #[test]
    fn env_name_of_target() {
        assert_eq!(
            target_password_env("main-db.eu"),
            "INTERCEPTOR_PASSWORD_MAIN_DB_EU"
        );
    }

    #[test]
    fn permission_check() {
        let p = Path::new("/etc/creds.toml");
        assert!(check_permissions(p, 0o100_600, 0, 0).is_ok());
        assert!(check_permissions(p, 0o100_400, 0, 0).is_ok());
        let e = check_permissions(p, 0o100_640, 0, 0).unwrap_err();
        assert!(
            e.to_string().contains("chmod 600 /etc/creds.toml") && e.to_string().contains("0640"),
            "{e}"
        );
        assert!(check_permissions(p, 0o100_604, 0, 0).is_err());
        let e = check_permissions(p, 0o100_600, 1000, 0).unwrap_err();
        assert!(e.to_string().contains("not root"), "{e}");
        // An unprivileged daemon may read its own file.
        assert!(check_permissions(p, 0o100_600, 1000, 1000).is_ok());
    }

    #[test]
    fn load_file_checks_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        let mut f = File::create(&path).unwrap();
        writeln!(
            f,
            "[[credential]]\ntarget = \"main-db\"\nuser = \"r\"\npassword = \"pw\""
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Credentials::load_file(&path, &config()).unwrap_err();
        assert!(
            matches!(e, CredentialsError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::load_file(&path, &config()).unwrap();
        assert_eq!(c.len(), 1);
    }
}
