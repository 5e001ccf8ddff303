//! Masking in the policy language.
//!
//! ```toml
//! [[sensitive]]                       # column tags
//! columns = ["public.customers.ssn", "*.*.tax_id"]   # schema.table.column globs
//! category = "ssn"
//!
//! [[masking]]                         # how identities see each category
//! identities = ["agent"]
//! strategies = { ssn = "partial", email = "hash", card = "partial:4" }
//! default = "redact"                  # categories not listed
//! unknown_lineage = "refuse"          # refuse | mask
//! filters = "refuse"                  # refuse | allow: WHERE/JOIN/ORDER BY on masked columns
//! detectors = true                    # content detectors on every text value
//!
//! [[detector]]                        # more detectors, or a built-in one off
//! name = "employee-id"
//! category = "employee_id"
//! regex = "EMP-[0-9]{6}"
//! ```
//!
//! An identity no `[[masking]]` names sees every tagged category redacted,
//! with detectors on, unknown lineage refused and filters on masked columns
//! refused. Seeing raw values is explicit (`default = "raw"`).

use std::{collections::BTreeMap, sync::Arc};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use super::{
    detect::{Detector, Detectors, builtin},
    strategy::Strategy,
};

/// `[[sensitive]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitiveSpec {
    /// `schema.table.column` globs (case-sensitive, as `PostgreSQL` stores
    /// names: unquoted names are lower case).
    pub columns: Vec<String>,
    /// Category, e.g. `ssn`, `card`, `email`, `phone`, `secret`, or any name.
    pub category: String,
}

/// What to do with a result column whose lineage cannot be established
/// while sensitive data is in reach of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownLineage {
    /// Refuse the statement (default).
    Refuse,
    /// Mask the column with the strictest strategy in reach.
    Mask,
}

/// Masked columns in filters (WHERE, JOIN ... ON, GROUP BY, HAVING, ORDER
/// BY, DISTINCT ON): probing a value one predicate at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filters {
    /// Refuse the statement (default).
    Refuse,
    /// Let it run (the output is still masked).
    Allow,
}

/// `[[masking]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingSpec {
    /// Identities this profile is for.
    pub identities: Vec<String>,
    /// Strategy per category.
    #[serde(default)]
    pub strategies: BTreeMap<String, String>,
    /// Strategy for categories not in `strategies` (default `redact`).
    #[serde(default)]
    pub default: Option<String>,
    /// See [`UnknownLineage`].
    #[serde(default)]
    pub unknown_lineage: Option<UnknownLineage>,
    /// See [`Filters`].
    #[serde(default)]
    pub filters: Option<Filters>,
    /// Content detectors on every text value (default true).
    #[serde(default)]
    pub detectors: Option<bool>,
    /// Strict mode (default false): a masked column may appear only as it
    /// is in the select list; anywhere it could steer control flow, errors,
    /// row counts or timing (filters, joins, CASE, function arguments,
    /// ORDER BY/GROUP BY, EXPLAIN) the statement is refused.
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `[[detector]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    /// Name; a built-in name with `enabled = false` switches it off.
    pub name: String,
    /// Category of its hits (required for new detectors).
    #[serde(default)]
    pub category: Option<String>,
    /// Regular expression (Rust `regex` syntax).
    #[serde(default)]
    pub regex: Option<String>,
    /// Hits must pass the Luhn check.
    #[serde(default)]
    pub luhn: bool,
    /// `false` switches the detector off.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// How one identity sees sensitive values.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Per category.
    pub strategies: BTreeMap<String, Strategy>,
    /// Categories not listed.
    pub default: Strategy,
    /// See [`UnknownLineage`].
    pub unknown: UnknownLineage,
    /// See [`Filters`].
    pub filters: Filters,
    /// Run content detectors.
    pub detectors: bool,
    /// See [`MaskingSpec::strict`].
    pub strict: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            strategies: BTreeMap::new(),
            default: Strategy::Redact,
            unknown: UnknownLineage::Refuse,
            filters: Filters::Refuse,
            detectors: true,
            strict: false,
        }
    }
}

impl Profile {
    /// The strategy for `category`.
    pub fn strategy(&self, category: &str) -> Strategy {
        self.strategies
            .get(category)
            .copied()
            .unwrap_or(self.default)
    }

    /// Whether this identity sees everything raw (nothing to do).
    pub fn sees_all_raw(&self) -> bool {
        !self.detectors
            && self.default == Strategy::Raw
            && self.strategies.values().all(|s| *s == Strategy::Raw)
    }
}

/// One compiled tag.
#[derive(Debug, Clone)]
struct Tag {
    glob: GlobMatcher,
    category: String,
}

/// The masking part of a policy set.
#[derive(Debug, Clone)]
pub struct MaskPolicy {
    tags: Vec<Tag>,
    profiles: Vec<(Vec<String>, Arc<Profile>)>,
    default_profile: Arc<Profile>,
    detectors: Arc<Detectors>,
}

impl Default for MaskPolicy {
    fn default() -> Self {
        Self {
            tags: Vec::new(),
            profiles: Vec::new(),
            default_profile: Arc::new(Profile::default()),
            detectors: Arc::new(Detectors::new(builtin())),
        }
    }
}

impl MaskPolicy {
    /// Adds a `[[sensitive]]` entry.
    pub fn add_sensitive(&mut self, spec: SensitiveSpec) -> Result<(), String> {
        if spec.category.trim().is_empty() {
            return Err("[[sensitive]] without a category".into());
        }
        if spec.columns.is_empty() {
            return Err(format!(
                "[[sensitive]] `{}` lists no columns",
                spec.category
            ));
        }
        for c in &spec.columns {
            if c.split('.').count() != 3 {
                return Err(format!(
                    "sensitive column `{c}` must be schema.table.column (globs allowed)"
                ));
            }
            let glob = GlobBuilder::new(c)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("sensitive column `{c}`: {e}"))?
                .compile_matcher();
            self.tags.push(Tag {
                glob,
                category: spec.category.clone(),
            });
        }
        Ok(())
    }

    /// Adds a `[[masking]]` profile.
    pub fn add_profile(&mut self, spec: MaskingSpec) -> Result<(), String> {
        if spec.identities.is_empty() {
            return Err("[[masking]] names no identities".into());
        }
        let mut strategies = BTreeMap::new();
        for (cat, s) in &spec.strategies {
            strategies.insert(
                cat.clone(),
                Strategy::parse(s).map_err(|e| format!("category `{cat}`: {e}"))?,
            );
        }
        let default = match &spec.default {
            Some(s) => Strategy::parse(s)?,
            None => Strategy::Redact,
        };
        let p = Profile {
            strategies,
            default,
            unknown: spec.unknown_lineage.unwrap_or(UnknownLineage::Refuse),
            filters: spec.filters.unwrap_or(Filters::Refuse),
            detectors: spec.detectors.unwrap_or(true),
            strict: spec.strict.unwrap_or(false),
        };
        for i in &spec.identities {
            if self.profiles.iter().any(|(ids, _)| ids.contains(i)) {
                return Err(format!("identity `{i}` already has a [[masking]] profile"));
            }
        }
        self.profiles.push((spec.identities, Arc::new(p)));
        Ok(())
    }

    /// Adds or switches off a detector.
    pub fn add_detector(&mut self, spec: DetectorSpec) -> Result<(), String> {
        let mut list = self.detectors.list().to_vec();
        list.retain(|d| d.name != spec.name);
        if spec.enabled {
            let (Some(category), Some(regex)) = (&spec.category, &spec.regex) else {
                return Err(format!(
                    "detector `{}` needs a category and a regex",
                    spec.name
                ));
            };
            list.push(Detector::new(&spec.name, category, regex, spec.luhn)?);
        }
        self.detectors = Arc::new(Detectors::new(list));
        Ok(())
    }

    /// Identity names the profiles refer to (checked against the set).
    pub fn profile_identities(&self) -> impl Iterator<Item = &str> {
        self.profiles
            .iter()
            .flat_map(|(ids, _)| ids.iter().map(String::as_str))
    }

    /// The category of a base column, if it is tagged.
    pub fn category(&self, schema: &str, table: &str, column: &str) -> Option<&str> {
        if self.tags.is_empty() {
            return None;
        }
        let full = format!("{schema}.{table}.{column}");
        self.tags
            .iter()
            .find(|t| t.glob.is_match(&full))
            .map(|t| t.category.as_str())
    }

    /// Whether `profile` sees some tagged category masked (then statements
    /// are traced).
    pub fn masks_tags_for(&self, profile: &Profile) -> bool {
        self.tags
            .iter()
            .any(|t| profile.strategy(&t.category) != Strategy::Raw)
    }

    /// Whether any column is tagged.
    pub fn has_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The profile of `identity`.
    pub fn profile(&self, identity: &str) -> Arc<Profile> {
        self.profiles
            .iter()
            .find(|(ids, _)| ids.iter().any(|i| i == identity))
            .map_or_else(|| Arc::clone(&self.default_profile), |(_, p)| Arc::clone(p))
    }

    /// The content detectors.
    pub fn detectors(&self) -> &Arc<Detectors> {
        &self.detectors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_profiles_detectors() {
        let mut m = MaskPolicy::default();
        m.add_sensitive(SensitiveSpec {
            columns: vec!["public.customers.ssn".into(), "*.*.card_*".into()],
            category: "x".into(),
        })
        .unwrap();
        assert_eq!(m.category("public", "customers", "ssn"), Some("x"));
        assert_eq!(m.category("sales", "orders", "card_number"), Some("x"));
        assert_eq!(m.category("public", "customers", "name"), None);
        assert!(
            m.add_sensitive(SensitiveSpec {
                columns: vec!["customers.ssn".into()],
                category: "x".into()
            })
            .is_err()
        );

        let spec: MaskingSpec =
            toml::from_str("identities = [\"dba\"]\ndefault = \"raw\"\ndetectors = false").unwrap();
        m.add_profile(spec).unwrap();
        assert!(m.profile("dba").sees_all_raw());
        assert!(!m.profile("agent").sees_all_raw());
        assert_eq!(m.profile("agent").strategy("ssn"), Strategy::Redact);

        m.add_detector(DetectorSpec {
            name: "email".into(),
            category: None,
            regex: None,
            luhn: false,
            enabled: false,
        })
        .unwrap();
        assert!(m.detectors().list().iter().all(|d| d.name != "email"));
        assert!(
            m.add_detector(DetectorSpec {
                name: "bad".into(),
                category: Some("c".into()),
                regex: Some("(".into()),
                luhn: false,
                enabled: true
            })
            .unwrap_err()
            .contains("invalid regex")
        );
    }
}
