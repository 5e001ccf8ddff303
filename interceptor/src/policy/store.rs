//! Loading a policy set: every `*.toml` directly in a directory (not
//! `tests/`), in file-name order, as one set. A mistake anywhere rejects the
//! whole set with errors naming file, line and fix; the live set is swapped
//! whole ([`PolicyStore::reload`]), so a broken edit never half-applies.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;

use super::{
    PolicySet,
    engine::{CompiledIdentity, CompiledRule},
    model::{Action, PolicyFile},
};
use crate::config::line_of;

/// One mistake in a policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {} (fix: {})", self.message, self.fix)
    }
}

/// Errors of a rejected set, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Loads and validates the policy files of `dir`.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    let err = |file: &Path, message: String, fix: &str| PolicyError {
        file: file.to_owned(),
        line: None,
        message,
        fix: fix.into(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PolicyErrors(vec![err(
            dir,
            format!("cannot read the policy directory: {e}"),
            "point at a directory of *.toml policy files",
        )])
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PolicyErrors(vec![err(
            dir,
            "no *.toml policy files".into(),
            "add at least one policy file",
        )]));
    }
    let mut sources = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(t) => sources.push((f, t)),
            Err(e) => {
                return Err(PolicyErrors(vec![err(
                    &f,
                    format!("cannot read: {e}"),
                    "check permissions",
                )]));
            }
        }
    }
    load_sources(&sources)
}

/// Validates a set given as (file name, text) pairs.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<PolicySet, PolicyErrors> {
    let mut errors = Vec::new();
    let mut set = PolicySet::default();
    let mut defaults_seen: Option<PathBuf> = None;
    let mut identity_at: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut rule_at: HashMap<String, (PathBuf, usize)> = HashMap::new();
    // Rules are checked against identities after every file is read: a rule
    // may name an identity defined in a later file.
    let mut rule_refs: Vec<(PathBuf, usize, String, String)> = Vec::new();
    for (path, text) in sources {
        let at = |pos: usize| Some(line_of(text, pos));
        let mut push = |line: Option<usize>, message: String, fix: &str| {
            errors.push(PolicyError {
                file: path.clone(),
                line,
                message,
                fix: fix.into(),
            });
        };
        let file: PolicyFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                push(
                    e.span().map(|s| line_of(text, s.start)),
                    e.message().trim().to_owned(),
                    "see the Policy language section of the README",
                );
                continue;
            }
        };
        if let Some(d) = file.defaults {
            if let Some(first) = &defaults_seen {
                push(
                    at(d.span().start),
                    format!("[defaults] is already set in {}", first.display()),
                    "keep one [defaults] per policy set",
                );
            }
            defaults_seen = Some(path.clone());
            set.defaults = d.into_inner();
        }
        for spanned in file.identities {
            let line = line_of(text, spanned.span().start);
            let spec = spanned.into_inner();
            if spec.name.is_empty() {
                push(
                    Some(line),
                    "identity without a name".into(),
                    "add name = \"...\"",
                );
                continue;
            }
            if let Some((f, l)) = identity_at.get(&spec.name) {
                push(
                    Some(line),
                    format!(
                        "identity `{}` is already defined at {}:{l}",
                        spec.name,
                        f.display()
                    ),
                    "rename one of them",
                );
                continue;
            }
            if spec
                .exe_sha256
                .iter()
                .any(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                push(
                    Some(line),
                    format!(
                        "identity `{}`: exe_sha256 entries must be 64 hex digits",
                        spec.name
                    ),
                    "use `sha256sum <exe>` output",
                );
            }
            if spec.token == Some(super::model::TokenMode::Optional)
                && (!spec.claims.is_empty() || !spec.issuer.is_empty())
            {
                push(
                    Some(line),
                    format!(
                        "identity `{}`: token = \"optional\" cannot have claims or issuer selectors (they need a token)",
                        spec.name
                    ),
                    "use token = \"required\" (or leave token out), or drop the claims",
                );
            }
            if spec
                .claims
                .iter()
                .any(|(k, v)| k.is_empty() || v.patterns().is_empty())
            {
                push(
                    Some(line),
                    format!(
                        "identity `{}`: a claims selector has an empty name or no values",
                        spec.name
                    ),
                    "write claims = { repository = \"org/repo\" }",
                );
            }
            identity_at.insert(spec.name.clone(), (path.clone(), line));
            match CompiledIdentity::new(spec) {
                Ok(i) => set.identities.push(i),
                Err(e) => push(Some(line), e, "fix the glob pattern"),
            }
        }
        for spanned in file.rules {
            let line = line_of(text, spanned.span().start);
            let spec = spanned.into_inner();
            if spec.id.is_empty() {
                push(Some(line), "rule without an id".into(), "add id = \"...\"");
                continue;
            }
            if let Some((f, l)) = rule_at.get(&spec.id) {
                push(
                    Some(line),
                    format!(
                        "rule id `{}` is already used at {}:{l}",
                        spec.id,
                        f.display()
                    ),
                    "give each rule a distinct id",
                );
                continue;
            }
            if spec.id.starts_with("builtin.") || spec.id == "default-deny" {
                push(
                    Some(line),
                    format!("rule id `{}` is reserved", spec.id),
                    "pick another id",
                );
            }
            if spec.identities.is_empty() {
                push(
                    Some(line),
                    format!("rule `{}` names no identities", spec.id),
                    "add identities = [\"name\"] or [\"*\"]",
                );
            }
            if spec.action != Action::Allow
                && (!spec.allow_functions.is_empty()
                    || !spec.allow_settings.is_empty()
                    || spec.max_rows.is_some()
                    || spec.require_limit)
            {
                push(
                    Some(line),
                    format!(
                        "rule `{}`: allow_functions, allow_settings, max_rows and require_limit only make sense on allow rules",
                        spec.id
                    ),
                    "move them to the allow rule they should loosen or bound",
                );
            }
            if let Some(a) = &spec.approval {
                if spec.action != Action::Approve {
                    push(
                        Some(line),
                        format!(
                            "rule `{}`: an approval table only goes with action = \"approve\"",
                            spec.id
                        ),
                        "remove it or make the rule an approve rule",
                    );
                } else if let Err((what, fix)) = a.validate() {
                    push(Some(line), format!("rule `{}`: {what}", spec.id), &fix);
                }
            }
            if spec.max_rows == Some(0) {
                push(
                    Some(line),
                    format!("rule `{}`: max_rows = 0 would refuse every row", spec.id),
                    "use deny, or a positive limit",
                );
            }
            for i in &spec.identities {
                if i != "*" {
                    rule_refs.push((path.clone(), line, spec.id.clone(), i.clone()));
                }
            }
            rule_at.insert(spec.id.clone(), (path.clone(), line));
            match CompiledRule::new(spec) {
                Ok(r) => set.rules.push(r),
                Err(e) => push(Some(line), e, "fix the glob pattern"),
            }
        }
        let mut masking = (*set.masking).clone();
        for spanned in file.sensitive {
            let line = line_of(text, spanned.span().start);
            if let Err(e) = masking.add_sensitive(spanned.into_inner()) {
                push(
                    Some(line),
                    e,
                    "see Masking in the README: columns = [\"schema.table.column\"], category = \"ssn\"",
                );
            }
        }
        for spanned in file.masking {
            let line = line_of(text, spanned.span().start);
            let spec = spanned.into_inner();
            for i in &spec.identities {
                rule_refs.push((path.clone(), line, "[[masking]]".into(), i.clone()));
            }
            if let Err(e) = masking.add_profile(spec) {
                push(
                    Some(line),
                    e,
                    "strategies are raw, redact, null, hash, partial or partial:N",
                );
            }
        }
        for spanned in file.detectors {
            let line = line_of(text, spanned.span().start);
            if let Err(e) = masking.add_detector(spanned.into_inner()) {
                push(
                    Some(line),
                    e,
                    "give a category and a valid regex, or enabled = false for a built-in one",
                );
            }
        }
        set.masking = Arc::new(masking);
    }
    for (file, line, rule, identity) in rule_refs {
        if !identity_at.contains_key(&identity) {
            errors.push(PolicyError {
                file,
                line: Some(line),
                message: if rule.starts_with("[[") {
                    format!("{rule} names identity `{identity}`, which no policy file defines")
                } else {
                    format!(
                        "rule `{rule}` names identity `{identity}`, which no policy file defines"
                    )
                },
                fix: "define the [[identity]] or correct the name".into(),
            });
        }
    }
    if let Some(d) = &set.defaults.identity
        && !identity_at.contains_key(d)
        && let Some(f) = &defaults_seen
    {
        errors.push(PolicyError {
            file: f.clone(),
            line: None,
            message: format!("[defaults] identity `{d}` is not defined"),
            fix: "define that [[identity]] or remove the default".into(),
        });
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// The live policy set. Sessions take a snapshot per statement, so a reload
/// applies from each session's next statement on.
pub struct PolicyStore {
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
}

impl PolicyStore {
    /// Loads `dir`; fails when the set is broken.
    pub fn open(dir: &Path) -> Result<Self, PolicyErrors> {
        let set = load_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: ArcSwap::from_pointee(set),
        })
    }

    /// A store holding `set` (tests, explain).
    pub fn from_set(dir: PathBuf, set: PolicySet) -> Self {
        Self {
            dir,
            current: ArcSwap::from_pointee(set),
        }
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The directory the set is read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory; on success swaps the set in whole, on failure
    /// keeps the old set and returns the errors.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        let set = load_dir(&self.dir)?;
        self.current.store(Arc::new(set));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Result<PolicySet, PolicyErrors> {
        let sources: Vec<_> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), (*t).to_owned()))
            .collect();
        load_sources(&sources)
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = load(&[(
            "a.toml",
            "[[identity]]\nname = \"ci\"\n\n[[rule]]\nid = \"r\"\nidentities = [\"nobody\"]\naction = \"allow\"\n",
        )])
        .unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].line, Some(4));
        assert!(e.0[0].message.contains("nobody"), "{e}");

        let e = load(&[(
            "b.toml",
            "[[rule]]\nid = \"r\"\nidentities = [\"*\"]\naction = \"alow\"\n",
        )])
        .unwrap_err();
        assert_eq!(e.0[0].line, Some(4), "{e}");
        assert_eq!(e.0[0].file, PathBuf::from("b.toml"));

        let e =
            load(&[("c.toml", "[[identity]]\nname = \"x\"\nexe = \"notalist\"\n")]).unwrap_err();
        assert_eq!(e.0[0].line, Some(3), "{e}");
    }

    #[test]
    fn approval_tables_are_checked() {
        let ok = load(&[(
            "a.toml",
            "[[rule]]\nid = \"d\"\nidentities = [\"*\"]\ncommands = [\"DELETE\"]\naction = \"approve\"\napproval = { mode = \"retry\", approvers = 2, scopes = [\"once\", \"session\"] }\n",
        )])
        .unwrap();
        let spec = ok.rules[0].spec.approval.clone().unwrap();
        assert_eq!(
            (spec.mode, spec.approvers),
            (crate::approval::Mode::Retry, 2)
        );
        let e = load(&[(
            "b.toml",
            "\n[[rule]]\nid = \"d\"\nidentities = [\"*\"]\naction = \"deny\"\napproval = {}\n",
        )])
        .unwrap_err();
        assert_eq!(e.0[0].line, Some(2), "{e}");
        assert!(
            e.0[0]
                .message
                .contains("only goes with action = \"approve\""),
            "{e}"
        );
        let e = load(&[("c.toml", "[[rule]]\nid = \"d\"\nidentities = [\"*\"]\naction = \"approve\"\napproval = { expires_after = \"later\" }\n")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.toml:1: rule `d`: approval.expires_after"),
            "{e}"
        );
        let e = load(&[("d.toml", "[[rule]]\nid = \"d\"\nidentities = [\"*\"]\naction = \"approve\"\napproval = { mode = \"wait\" }\n")]).unwrap_err();
        assert_eq!(e.0[0].line, Some(5), "{e}");
    }

    #[test]
    fn token_selector_mistakes_name_their_line() {
        let e = load(&[("t.toml", "\n[[identity]]\nname = \"x\"\ntoken = \"optional\"\nclaims = { repository = \"o/r\" }\n")]).unwrap_err();
        assert_eq!(e.0[0].line, Some(2), "{e}");
        assert!(e.0[0].message.contains("optional"), "{e}");
        let e = load(&[(
            "t.toml",
            "[[identity]]\nname = \"x\"\nclaims = { repository = [] }\n",
        )])
        .unwrap_err();
        assert!(e.0[0].message.contains("no values"), "{e}");
        let e = load(&[(
            "t.toml",
            "[[identity]]\nname = \"x\"\ntoken = \"sometimes\"\n",
        )])
        .unwrap_err();
        assert_eq!(e.0[0].line, Some(3), "{e}");
        let e = load(&[(
            "t.toml",
            "[[identity]]\nname = \"x\"\nclaims = { ref = 5 }\n",
        )])
        .unwrap_err();
        assert_eq!(e.0[0].line, Some(3), "{e}");
        let ok = load(&[("t.toml", "[[identity]]\nname = \"x\"\nissuer = [\"github\"]\nclaims = { ref = [\"refs/heads/*\"], repository = \"o/r\" }\n")]).unwrap();
        assert!(ok.identities[0].uses_token());
    }

    #[test]
    fn duplicates_across_files() {
        let e = load(&[
            ("a.toml", "[[identity]]\nname = \"ci\"\n"),
            ("b.toml", "\n[[identity]]\nname = \"ci\"\n"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("b.toml:2"), "{e}");
        assert!(e.to_string().contains("a.toml:1"), "{e}");
    }

    #[test]
    fn rule_may_name_identity_of_later_file() {
        load(&[
            (
                "a.toml",
                "[[rule]]\nid = \"r\"\nidentities = [\"ci\"]\naction = \"deny\"\n",
            ),
            ("b.toml", "[[identity]]\nname = \"ci\"\n"),
        ])
        .unwrap();
    }
}
