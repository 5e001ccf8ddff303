//! A statement's masking plan: refuse it, or how each result column is
//! masked, for one identity's profile.

use std::sync::Arc;

use super::{
    lineage::{Lin, Traced},
    policy::{Filters, Profile, UnknownLineage},
    strategy::Strategy,
};

/// How one result column is masked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColMask {
    /// Strategy.
    pub strategy: Strategy,
    /// Category the strategy is for (the strictest among the sources).
    pub category: String,
    /// Why: the sensitive base columns it derives from, or
    /// `unknown lineage`.
    pub why: String,
}

/// What to do with a statement's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StmtPlan {
    /// Nothing traced to a sensitive column (content detectors still run).
    Clean,
    /// Per output column, in order.
    Columns(Arc<Vec<Option<ColMask>>>),
    /// Rows of a shape the tracer does not model: every column masked.
    All(ColMask),
}

impl StmtPlan {
    /// The mask of column `i` (of `n` in the row).
    pub fn column(&self, i: usize, n: usize) -> Option<&ColMask> {
        match self {
            Self::Clean => None,
            Self::All(m) => Some(m),
            Self::Columns(cols) => {
                if cols.len() == n {
                    cols.get(i).and_then(Option::as_ref)
                } else {
                    // The result does not have the shape traced: every
                    // column is suspect.
                    cols.iter().flatten().max_by_key(|m| m.strategy)
                }
            }
        }
    }

    /// Whether column masks apply at all.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean)
    }
}

/// The sensitive part of a lineage for `profile`: (category, column,
/// strategy), raw ones left out.
fn sensitive<'a>(lin: &'a Lin, profile: &'a Profile) -> impl Iterator<Item = (&'a str, &'a str, Strategy)> + 'a {
    lin.sources
        .iter()
        .map(|(cat, col)| (cat.as_str(), col.as_str(), profile.strategy(cat)))
        .filter(|(_, _, s)| *s != Strategy::Raw)
}

fn strictest(lin: &Lin, profile: &Profile) -> Option<ColMask> {
    let mut best: Option<(Strategy, &str)> = None;
    let mut cols: Vec<&str> = Vec::new();
    for (cat, col, s) in sensitive(lin, profile) {
        cols.push(col);
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, cat));
        }
    }
    let (strategy, category) = best?;
    cols.dedup();
    Some(ColMask { strategy, category: category.to_owned(), why: cols.join(", ") })
}

/// Plans one traced statement for `profile`; `Err` is the reason to refuse
/// it. Only called when the policy tags columns the profile does not see raw.
pub fn plan(t: &Traced, profile: &Profile) -> Result<StmtPlan, String> {
    let reach = strictest(&t.reach, profile);
    // Opaque reach (a relation the catalog cannot see, a user-defined
    // function) counts as sensitive data in reach.
    let in_reach = reach.is_some() || t.reach.opaque;
    // SQL run from text and statistics holding values are out of sight
    // whatever the statement itself names.
    if let Some(r) = t.refusals.first() {
        return Err(r.clone());
    }
    if !in_reach {
        return Ok(StmtPlan::Clean);
    }
    if let Some(m) = strictest(&t.written, profile) {
        return Err(format!(
            "it would copy masked data ({}) into the database, where it would no longer be masked",
            m.why
        ));
    }
    if let Some(m) = strictest(&t.side, profile) {
        return Err(format!(
            "it passes masked data ({}) to a function that sends it outside the result (a notification or a setting)",
            m.why
        ));
    }
    if t.written.opaque {
        return Err("it writes data whose origin cannot be traced while masked data is in reach".into());
    }
    if profile.filters == Filters::Refuse
        && let Some(m) = strictest(&t.filters, profile)
    {
        return Err(format!(
            "it filters, joins, groups or sorts on masked data ({}), which reveals it one question at a time",
            m.why
        ));
    }
    let fallback = || {
        reach.clone().unwrap_or(ColMask { strategy: Strategy::Redact, category: "unknown".into(), why: "unknown lineage".into() })
    };
    let unknown = |what: &str| -> Result<ColMask, String> {
        match profile.unknown {
            UnknownLineage::Refuse => Err(format!(
                "the lineage of {what} cannot be established while masked data is in reach"
            )),
            UnknownLineage::Mask => Ok(ColMask { why: "unknown lineage".into(), ..fallback() }),
        }
    };
    let Some(outputs) = &t.outputs else {
        if t.returns_unknown {
            // No rows are expected; any that come are masked whole.
            return Ok(StmtPlan::All(ColMask { why: "unknown lineage".into(), ..fallback() }));
        }
        return Ok(StmtPlan::Clean);
    };
    let mut cols = Vec::with_capacity(outputs.len());
    for c in outputs {
        let m = match strictest(&c.lin, profile) {
            Some(m) => Some(m),
            None if c.lin.opaque => Some(unknown(&format!("result column `{}`", c.name))?),
            None => None,
        };
        cols.push(m);
    }
    if cols.iter().all(Option::is_none) {
        return Ok(StmtPlan::Clean);
    }
    Ok(StmtPlan::Columns(Arc::new(cols)))
}
