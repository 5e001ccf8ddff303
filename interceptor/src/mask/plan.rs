//! A statement's masking plan: refuse it, or how each result column is
//! masked, for one identity's profile.

use std::sync::{Arc, LazyLock};

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

/// A result whose width differs from the traced one: the lineage of its
/// columns is not known.
static SHAPE_DIFFERS: LazyLock<ColMask> = LazyLock::new(|| ColMask {
    strategy: Strategy::Redact,
    category: "unknown".into(),
    why: "the result does not have the shape traced".into(),
});

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
                    Some(
                        cols.iter()
                            .flatten()
                            .max_by_key(|m| m.strategy)
                            .unwrap_or(&SHAPE_DIFFERS),
                    )
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
fn sensitive<'a>(
    lin: &'a Lin,
    profile: &'a Profile,
) -> impl Iterator<Item = (&'a str, &'a str, Strategy)> + 'a {
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
    Some(ColMask {
        strategy,
        category: category.to_owned(),
        why: cols.join(", "),
    })
}

/// Plans one traced statement for `profile`; `Err` is the reason to refuse
/// it. Only called when the policy tags columns the profile does not see raw.
pub fn plan(t: &Traced, profile: &Profile) -> Result<StmtPlan, String> {
    let reach = strictest(&t.reach, profile);
    // Opaque reach (a relation not looked up, a user-defined function)
    // counts as sensitive data in reach.
    let in_reach = reach.is_some() || t.reach.opaque;
    // SQL run from text and statistics holding values are out of sight
    // whatever the statement itself names.
    if let Some(r) = t.refusals.first() {
        return Err(r.clone());
    }
    if profile.strict
        && let Some(m) = strictest(&t.explained, profile)
    {
        return Err(format!(
            "strict mode: EXPLAIN of a statement that reaches masked data ({}) answers questions about it through the planner's estimates",
            m.why
        ));
    }
    if !in_reach && !t.reach.missing && !t.own {
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
    if t.written.opaque && in_reach {
        return Err(
            "it writes data whose origin cannot be traced while masked data is in reach".into(),
        );
    }
    if t.written.missing && in_reach {
        return Err(
            "it writes data read from a relation that does not exist while masked data is in reach"
                .into(),
        );
    }
    if (profile.filters == Filters::Refuse || profile.strict)
        && let Some(m) = strictest(&t.filters, profile)
    {
        let mode = if profile.strict { "strict mode: " } else { "" };
        return Err(format!(
            "{mode}it filters, joins, groups or sorts on masked data ({}), which reveals it one question at a time",
            m.why
        ));
    }
    let fallback = || {
        reach.clone().unwrap_or(ColMask {
            strategy: Strategy::Redact,
            category: "unknown".into(),
            why: "unknown lineage".into(),
        })
    };
    let unknown = |what: &str| -> Result<ColMask, String> {
        match profile.unknown {
            UnknownLineage::Refuse => Err(format!(
                "the lineage of {what} cannot be established while masked data is in reach"
            )),
            UnknownLineage::Mask => Ok(ColMask {
                why: "unknown lineage".into(),
                ..fallback()
            }),
        }
    };
    let Some(outputs) = &t.outputs else {
        if t.returns_unknown {
            // No rows are expected; any that come are masked whole.
            return Ok(StmtPlan::All(ColMask {
                why: "unknown lineage".into(),
                ..fallback()
            }));
        }
        return Ok(StmtPlan::Clean);
    };
    let mut cols = Vec::with_capacity(outputs.len());
    for c in outputs {
        let m = match strictest(&c.lin, profile) {
            Some(_) if profile.strict && c.lin.derived => {
                return Err(format!(
                    "strict mode: result column `{}` computes a value from masked data ({}); a masked column may only be selected as it is",
                    c.name,
                    strictest(&c.lin, profile)
                        .map(|m| m.why)
                        .unwrap_or_default()
                ));
            }
            Some(mut m) => {
                // A value computed from the column is not the column: a
                // partial view of it would show other parts (reverse(),
                // md5(), substr()...).
                if c.lin.derived && matches!(m.strategy, Strategy::Partial(_)) {
                    m.strategy = Strategy::Redact;
                    m.why.push_str(" (derived)");
                }
                Some(m)
            }
            None if c.lin.opaque => Some(unknown(&format!("result column `{}`", c.name))?),
            None if c.lin.missing => Some(ColMask {
                strategy: Strategy::Redact,
                category: "unknown".into(),
                why: "a relation that did not exist when the statement was planned".into(),
            }),
            None => None,
        };
        cols.push(m);
    }
    if cols.iter().all(Option::is_none) && !in_reach && !t.own {
        return Ok(StmtPlan::Clean);
    }
    // With masked data in reach the plan keeps the traced width: a result
    // of another width is masked whole.
    Ok(StmtPlan::Columns(Arc::new(cols)))
}
