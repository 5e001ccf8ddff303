//! Masking on a live session: planning each statement before it is sent
//! (lineage through the catalog), and the per-session bookkeeping the
//! result paths need (statement and portal descriptions, result formats
//! from Bind, cursors and SQL-level prepared statements).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use crate::{
    mask::{
        MaskPolicy, Profile,
        catalog::{CatalogPool, DbCatalog},
        lineage::{Catalog as _, CopyLayout, Snapshot, Tracer},
        own::{self, Effect, OwnRelations, OwnState, Resolver, SearchPath},
        plan::{ColMask, StmtPlan, plan},
        policy::UnknownLineage,
        rows::{Masker, Shape},
        strategy::Strategy,
    },
    sql::{self, StatementClass},
    wire::values::Bind,
};

/// How one statement's results are masked.
#[derive(Clone, Debug)]
pub struct StmtMask {
    /// Column masks.
    pub plan: StmtPlan,
    /// COPY TO STDOUT: how its rows are laid out.
    pub copy: Option<CopyLayout>,
    /// Sensitive data was in reach: values echoed in errors are redacted.
    pub sensitive: bool,
    /// The identity's masker when the statement was planned.
    pub masker: Masker,
    /// Tagged base columns of the relations in reach, by (table oid,
    /// attnum): a result column `RowDescription` traces to one is masked
    /// whatever the lineage said (defence in depth).
    pub origins: Arc<HashMap<(u32, i16), ColMask>>,
    /// What the statement does to the session's own relations, applied
    /// when it completes.
    pub effects: Arc<[Effect]>,
}

impl StmtMask {
    /// The shape of a result described by `d`, sent in `formats`.
    pub fn shape(&self, d: Desc, formats: Vec<i16>) -> Shape {
        let mut plan = self.plan.clone();
        let n = d.types.len();
        let hits: Vec<(usize, &ColMask)> = d
            .origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| self.origins.get(o).map(|m| (i, m)))
            .collect();
        if !hits.is_empty() {
            let mut cols: Vec<Option<ColMask>> =
                (0..n).map(|i| plan.column(i, n).cloned()).collect();
            for (i, m) in hits {
                if cols[i].as_ref().is_none_or(|c| c.strategy < m.strategy) {
                    cols[i] = Some(m.clone());
                }
            }
            plan = StmtPlan::Columns(Arc::new(cols));
        }
        Shape {
            plan,
            formats,
            types: d.types,
            names: d.names,
        }
    }
}

/// Masks of the statements of one message, in order (a simple Query may
/// hold several; a Parse holds one, used by every Execute of it).
pub type Slot = Arc<Mutex<VecDeque<StmtMask>>>;

/// Cursors and SQL-level prepared statements: their plans by name.
#[derive(Default)]
pub struct Named {
    cursors: HashMap<String, StmtMask>,
    prepared: HashMap<String, StmtMask>,
}

impl Named {
    fn bound<V>(map: &mut HashMap<String, V>, k: String, v: V) {
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(k, v);
    }
}

/// A row description: types, names and formats per column.
#[derive(Debug, Clone, Default)]
pub struct Desc {
    pub types: Vec<u32>,
    pub names: Vec<String>,
    pub formats: Vec<i16>,
    /// (table oid, attnum) per column; (0, 0) for expressions.
    pub origins: Vec<(u32, i16)>,
}

/// Parses a `RowDescription` body.
pub fn row_description(body: &[u8]) -> Option<Desc> {
    let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?) as usize;
    let mut at = 2;
    let mut d = Desc::default();
    for _ in 0..n {
        let nul = body.get(at..)?.iter().position(|b| *b == 0)?;
        d.names
            .push(String::from_utf8_lossy(&body[at..at + nul]).into_owned());
        at += nul + 1;
        let f = body.get(at..at + 18)?;
        d.origins.push((
            u32::from_be_bytes(f[0..4].try_into().ok()?),
            i16::from_be_bytes(f[4..6].try_into().ok()?),
        ));
        d.types.push(u32::from_be_bytes(f[6..10].try_into().ok()?));
        d.formats
            .push(i16::from_be_bytes(f[16..18].try_into().ok()?));
        at += 18;
    }
    Some(d)
}

/// (portal, statement, result format codes) of a Bind.
pub fn bind_formats(bind: &Bind<'_>) -> (Vec<u8>, Vec<u8>, Vec<i16>) {
    (
        bind.portal.to_vec(),
        bind.statement.to_vec(),
        bind.result_formats.clone(),
    )
}

/// Longest parameter text kept in a record.
const MAX_PARAM: usize = 1024;

/// The parameters of a Bind as text (binary ones as `\\x` hex), each cut
/// at 1 KiB.
pub fn bind_params(bind: &Bind<'_>) -> Vec<Option<String>> {
    bind.params
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(|v| {
                let shown = &v[..v.len().min(MAX_PARAM)];
                let mut text = if bind.param_format(i) == 1 {
                    format!("\\x{}", hex::encode(shown))
                } else {
                    String::from_utf8_lossy(shown).into_owned()
                };
                if v.len() > MAX_PARAM {
                    text.push_str(&format!("... ({} bytes)", v.len()));
                }
                text
            })
        })
        .collect()
}

/// Per-session masking state.
pub struct SessionMask {
    pub catalog: Option<Arc<DbCatalog>>,
    pub key: Arc<[u8; 32]>,
    pub named: Arc<Mutex<Named>>,
    /// Extended protocol: masks by statement name.
    pub statements: HashMap<Vec<u8>, Slot>,
    /// Portal -> (statement, result formats).
    pub portals: HashMap<Vec<u8>, (Vec<u8>, Vec<i16>)>,
    /// Portal -> its Bind parameters, for the result record.
    pub params: HashMap<Vec<u8>, Vec<Option<String>>>,
    pub statement_desc: HashMap<Vec<u8>, Desc>,
    pub portal_desc: HashMap<Vec<u8>, Desc>,
    /// Describes sent, answered in order: (batch, b'S' | b'P', name). A
    /// batch ends at a Query or Sync; the client may send the next batch
    /// before the last one's ReadyForQuery has gone by.
    pub describes: VecDeque<(u64, u8, Vec<u8>)>,
    /// Batches sent (Query, Sync) and finished (ReadyForQuery).
    pub batches_sent: u64,
    pub batches_done: u64,
    /// The masker of the latest statement (for asynchronous messages).
    pub masker: Option<Masker>,
    /// DDL ran (in the open transaction): the catalog's answers are stale,
    /// now and again when the transaction ends.
    pub ddl: bool,
    /// All catalogs (to close the connections in the way of a DROP
    /// DATABASE).
    pub catalogs: Option<Arc<CatalogPool>>,
    /// What the session itself created, through its transactions.
    pub own: OwnRelations,
    /// A statement that may change `own` was sent and its batch is not
    /// answered yet: plan against an uncertain state.
    pub own_inflight: bool,
}

impl SessionMask {
    pub fn new(catalog: Option<Arc<DbCatalog>>, key: Arc<[u8; 32]>) -> Self {
        Self::with_search_path(catalog, key, SearchPath::Default)
    }

    /// A session whose startup packet set `search_path` as given.
    pub fn with_search_path(
        catalog: Option<Arc<DbCatalog>>,
        key: Arc<[u8; 32]>,
        search_path: SearchPath,
    ) -> Self {
        Self {
            catalog,
            key,
            named: Arc::default(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            params: HashMap::new(),
            statement_desc: HashMap::new(),
            portal_desc: HashMap::new(),
            describes: VecDeque::new(),
            batches_sent: 0,
            batches_done: 0,
            masker: None,
            ddl: false,
            catalogs: None,
            own: OwnRelations::new(search_path),
            own_inflight: false,
        }
    }

    /// The state the next statement is planned against.
    pub fn own_for_planning(&self) -> Arc<OwnState> {
        let state = self.own.state();
        Arc::new(if self.own_inflight {
            state.uncertain()
        } else {
            state.clone()
        })
    }

    /// The masker for `profile`, or `None` when it sees everything raw.
    pub fn masker(&mut self, policy: &MaskPolicy, profile: &Arc<Profile>) -> Option<Masker> {
        if profile.sees_all_raw() {
            self.masker = None;
            return None;
        }
        let m = Masker::new(
            Arc::clone(profile),
            Arc::clone(policy.detectors()),
            Arc::clone(&self.key),
        );
        self.masker = Some(m.clone());
        Some(m)
    }

    /// A Describe of the batch being sent.
    pub fn describe_sent(&mut self, kind: u8, name: &[u8]) {
        self.describes
            .push_back((self.batches_sent, kind, name.to_vec()));
    }

    /// The Describe a RowDescription or NoData of the current batch answers.
    pub fn describe_answered(&mut self) -> Option<(u8, Vec<u8>)> {
        match self.describes.front() {
            Some((batch, _, _)) if *batch == self.batches_done => {
                self.describes.pop_front().map(|(_, k, n)| (k, n))
            }
            _ => None,
        }
    }

    /// A ReadyForQuery: Describes of finished batches were answered or
    /// skipped after an error.
    pub fn batch_done(&mut self) {
        self.batches_done += 1;
        let done = self.batches_done;
        self.describes.retain(|(b, _, _)| *b >= done);
    }

    /// The shape of an Execute's rows: its statement's mask, the portal's
    /// formats and the types from the latest description.
    pub fn execute_shape(&self, portal: &[u8], mask: &StmtMask) -> Shape {
        let (stmt, formats) = self.portals.get(portal).cloned().unwrap_or_default();
        let desc = self
            .portal_desc
            .get(portal)
            .or_else(|| self.statement_desc.get(&stmt))
            .cloned()
            .unwrap_or_default();
        mask.shape(desc, formats)
    }
}

/// Everything [`plan_message`] needs, owned (it runs in a deferred verdict).
pub struct PlanInput {
    pub catalog: Option<Arc<DbCatalog>>,
    pub policy: Arc<MaskPolicy>,
    pub profile: Arc<Profile>,
    pub masker: Masker,
    pub analysis: Arc<Result<sql::Analysis, sql::SqlError>>,
    pub named: Arc<Mutex<Named>>,
    /// The session's own relations and search path.
    pub own: Arc<OwnState>,
}

/// Relations that show other sessions' statements (with their literals):
/// all proxied sessions share one database role, so a masked identity would
/// read every other job's SQL there.
const OTHER_SESSIONS_SQL: &[&str] = &[
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_stat_statements_info",
];
/// Functions behind them.
const OTHER_SESSIONS_SQL_FUNCTIONS: &[&str] = &["pg_stat_get_activity", "pg_stat_statements"];

/// Why a masked identity may not run `f`, if it reads other sessions' SQL.
fn reads_other_sessions(f: &sql::StatementFacts) -> Option<String> {
    let rel = f.reads.iter().find(|r| {
        OTHER_SESSIONS_SQL.contains(&r.name.as_str())
            && r.schema
                .as_deref()
                .is_none_or(|s| s == "pg_catalog" || s == "public")
    });
    if let Some(r) = rel {
        return Some(format!(
            "{} shows other sessions' statements, with their values",
            r.name
        ));
    }
    f.functions
        .iter()
        .find(|n| OTHER_SESSIONS_SQL_FUNCTIONS.contains(&n.as_str()))
        .map(|n| format!("{n}() shows other sessions' statements, with their values"))
}

/// The masks of every statement of one message, or why it is refused.
pub async fn plan_message(input: PlanInput) -> Result<Vec<StmtMask>, String> {
    let PlanInput {
        catalog,
        policy,
        profile,
        masker,
        analysis,
        named,
        own,
    } = input;
    let trace = policy.masks_tags_for(&profile);
    if !profile.sees_all_raw()
        && let Ok(a) = analysis.as_ref()
        && let Some(why) = a.statements.iter().find_map(reads_other_sessions)
    {
        return Err(why);
    }
    let unknown_all = |why: &str| -> Result<StmtMask, String> {
        match profile.unknown {
            UnknownLineage::Refuse => Err(format!("{why}, and masked data may be in reach")),
            UnknownLineage::Mask => Ok(StmtMask {
                plan: StmtPlan::All(ColMask {
                    strategy: Strategy::Redact,
                    category: "unknown".into(),
                    why: "unknown lineage".into(),
                }),
                copy: None,
                sensitive: true,
                masker: masker.clone(),
                origins: Arc::default(),
                // Code ran that the proxy cannot see.
                effects: Arc::from([
                    Effect::Taint,
                    Effect::SearchPath {
                        value: SearchPath::Unknown,
                        local: false,
                    },
                ]),
            }),
        }
    };
    let a = match analysis.as_ref() {
        Ok(a) => a,
        Err(_) if trace => return Ok(vec![unknown_all("the SQL cannot be analysed")?]),
        Err(_) => return Ok(vec![clean(&masker, None)]),
    };
    let snapshot = if trace {
        let mut rels: Vec<_> = a
            .statements
            .iter()
            .flat_map(|f| f.reads.iter().chain(f.writes.iter()).cloned())
            .collect();
        let view_reads = own.view_reads(&rels);
        rels.extend(view_reads);
        let funcs: Vec<_> = a
            .statements
            .iter()
            .flat_map(|f| f.functions.iter().cloned())
            .collect();
        let path = match &own.search_path {
            SearchPath::Set(p) => Some(p.as_str()),
            SearchPath::Default | SearchPath::Unknown => None,
        };
        match &catalog {
            Some(c) => Some(c.snapshot(&rels, &funcs, path).await.map_err(|e| {
                format!("masking needs the catalog and it could not be read ({e})")
            })?),
            None => {
                return Err(
                    "masking needs the catalog and no catalog connection is configured".into(),
                );
            }
        }
    } else {
        None
    };
    let origins = Arc::new(
        snapshot
            .as_ref()
            .map(|s| origins(s, &policy, &profile))
            .unwrap_or_default(),
    );
    let clean = |masker: &Masker, copy| StmtMask {
        origins: Arc::clone(&origins),
        ..clean(masker, copy)
    };
    let limits = sql::Limits::default();
    let mut out = Vec::with_capacity(a.statements.len());
    // Later statements of the message run only if the earlier ones did:
    // they are planned with those effects assumed.
    let mut own_local = (*own).clone();
    for f in &a.statements {
        // A COPY to the client is traced as PostgreSQL's grammar reads it:
        // the statement without its options (which sqlparser may not
        // parse), laid out by the options as the server will apply them.
        let copy_out = if f.command == "COPY" {
            sql::copy_to_client(&f.text, limits.max_depth)
                .ok()
                .flatten()
        } else {
            None
        };
        let layout = copy_out
            .as_ref()
            .map(|c| CopyLayout::from_options(&c.options))
            .transpose()?;
        let text = copy_out
            .as_ref()
            .map_or(f.text.as_str(), |c| c.bare.as_str());
        let stmt = if trace || f.command == "COPY" {
            sql::parse_one(text, &limits).ok()
        } else {
            None
        };
        let Some(snap) = &snapshot else {
            // Detectors only; COPY needs its layout.
            let t = stmt
                .as_ref()
                .map(|s| Tracer::new(&Snapshot::default(), &policy).trace(s));
            out.push(clean(&masker, layout.or_else(|| t.and_then(|t| t.copy))));
            continue;
        };
        let Some(stmt) = stmt else {
            // Not traceable. Code runs what the masking cannot see; a read
            // (a COPY or FETCH only PostgreSQL's grammar parses) may send
            // rows of anything, with no RowDescription for a COPY: both are
            // unknown lineage. Anything else returns no rows.
            let why = if f.classes.contains(&StatementClass::Code) {
                Some("runs code the masking cannot trace")
            } else if f.classes.contains(&StatementClass::Read) || copy_out.is_some() {
                Some("returns rows the masking cannot trace")
            } else {
                None
            };
            match why {
                Some(why) => {
                    let m = unknown_all(&format!("{} {why}", f.command))?;
                    own_local.assume(&m.effects);
                    out.push(m);
                }
                None => out.push(clean(&masker, None)),
            }
            continue;
        };
        let resolver = Resolver {
            snap,
            own: &own_local,
        };
        let mut t = Tracer::new(&resolver, &policy).trace(&stmt);
        if layout.is_some() {
            t.copy = layout;
        }
        let writes: Vec<_> = f.writes.iter().cloned().collect();
        let code = f.classes.contains(&StatementClass::Code)
            || f.functions.iter().any(|x| resolver.user_function(x));
        let mut effects = own::effects(&stmt, t.created.as_deref(), &t.written, &writes, code);
        for (name, value) in &f.settings {
            if name == "search_path" {
                effects.push(own::search_path_effect(&stmt, value));
            }
        }
        if code {
            // A function or procedure may SET search_path.
            effects.push(Effect::SearchPath {
                value: SearchPath::Unknown,
                local: false,
            });
        }
        own_local.assume(&effects);
        let effects: Arc<[Effect]> = Arc::from(effects);
        let lookup =
            |name: &Option<String>, what: &str, cursor: bool| -> Option<Result<StmtMask, String>> {
                let name = name.as_ref()?;
                let n = named
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let map = if cursor { &n.cursors } else { &n.prepared };
                Some(match map.get(name) {
                    Some(m) => Ok(StmtMask {
                        masker: masker.clone(),
                        ..m.clone()
                    }),
                    None => unknown_all(&format!(
                        "{what} `{name}` was not declared through the interceptor"
                    )),
                })
            };
        if let Some(m) = lookup(&t.fetches, "cursor", true) {
            out.push(m?);
            continue;
        }
        if let Some(m) = lookup(&t.executes, "prepared statement", false) {
            // Its effects are the prepared statement's.
            let m = m?;
            own_local.assume(&m.effects);
            out.push(m);
            continue;
        }
        let p = plan(&t, &profile)?;
        let sensitive = !p.is_clean() || !t.reach.is_clean();
        let m = StmtMask {
            plan: p,
            copy: t.copy.clone(),
            sensitive,
            masker: masker.clone(),
            origins: Arc::clone(&origins),
            effects,
        };
        let mut n = named
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = &t.declares {
            Named::bound(&mut n.cursors, c.clone(), m.clone());
            out.push(clean(&masker, None));
            continue;
        }
        if let Some(p) = &t.prepares {
            Named::bound(&mut n.prepared, p.clone(), m.clone());
            out.push(clean(&masker, None));
            continue;
        }
        out.push(m);
    }
    Ok(out)
}

fn clean(masker: &Masker, copy: Option<CopyLayout>) -> StmtMask {
    StmtMask {
        plan: StmtPlan::Clean,
        copy,
        sensitive: false,
        masker: masker.clone(),
        origins: Arc::default(),
        effects: Arc::from([]),
    }
}

/// Tagged columns of the relations in `snap` that `profile` sees masked.
fn origins(
    snap: &Snapshot,
    policy: &MaskPolicy,
    profile: &Profile,
) -> HashMap<(u32, i16), ColMask> {
    let mut out = HashMap::new();
    for info in snap.relations.values().flatten() {
        for (c, n) in info.columns.iter().zip(info.attnums.iter()) {
            if let Some(cat) = policy.category(&info.schema, &info.name, c) {
                let strategy = profile.strategy(cat);
                if strategy != Strategy::Raw {
                    let why = format!("{}.{}.{c}", info.schema, info.name);
                    out.insert(
                        (info.oid, *n),
                        ColMask {
                            strategy,
                            category: cat.to_owned(),
                            why,
                        },
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{detect::Detectors, detect::builtin};

    #[test]
    fn origins_from_row_description_override_a_clean_plan() {
        let masker = Masker::new(
            Arc::new(Profile::default()),
            Arc::new(Detectors::new(builtin())),
            Arc::new([0; 32]),
        );
        let ssn = ColMask {
            strategy: Strategy::Partial(4),
            category: "ssn".into(),
            why: "public.customers.ssn".into(),
        };
        let m = StmtMask {
            plan: StmtPlan::Clean,
            copy: None,
            sensitive: false,
            masker,
            origins: Arc::new(HashMap::from([((16384, 4), ssn.clone())])),
            effects: Arc::from([]),
        };
        let d = Desc {
            types: vec![25, 25],
            names: vec!["name".into(), "x".into()],
            formats: vec![0, 0],
            origins: vec![(16384, 2), (16384, 4)],
        };
        let shape = m.shape(d, vec![0, 0]);
        assert_eq!(shape.plan.column(0, 2), None);
        assert_eq!(shape.plan.column(1, 2), Some(&ssn));
    }

    #[test]
    fn bind_and_row_description_parsing() {
        // Bind: portal "p", statement "s", 1 param format (binary), 1 param,
        // 2 result formats (text, binary).
        let mut b = b"p\0s\0".to_vec();
        b.extend(1i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(4i32.to_be_bytes());
        b.extend([0, 0, 0, 41]);
        b.extend(2i16.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        let bind = Bind::parse(&b).unwrap();
        assert_eq!(
            bind_formats(&bind),
            (b"p".to_vec(), b"s".to_vec(), vec![0, 1])
        );
        assert_eq!(bind_params(&bind), vec![Some("\\x00000029".to_owned())]);
        let mut t = 1i16.to_be_bytes().to_vec();
        t.extend(b"ssn\0");
        t.extend(16384u32.to_be_bytes());
        t.extend(4i16.to_be_bytes());
        t.extend(25u32.to_be_bytes());
        t.extend((-1i16).to_be_bytes());
        t.extend((-1i32).to_be_bytes());
        t.extend(1i16.to_be_bytes());
        let d = row_description(&t).unwrap();
        assert_eq!(
            (d.names, d.types, d.formats, d.origins),
            (vec!["ssn".to_owned()], vec![25], vec![1], vec![(16384, 4)])
        );
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_describe_sent_before_the_last_ready_for_query_is_kept() {
        let mut m = SessionMask::new(None, Arc::new([0; 32]));
        // Batch 0: Parse s3 / Describe s3 / Sync, answered.
        m.describe_sent(b'S', b"s3");
        m.batches_sent += 1;
        assert_eq!(m.describe_answered(), Some((b'S', b"s3".to_vec())));
        // Batch 1 (Bind/Execute/Sync of s3) is still running when the
        // client already sends batch 2: Parse s4 / Describe s4 / Sync.
        m.batches_sent += 1;
        m.describe_sent(b'S', b"s4");
        m.batches_sent += 1;
        // A RowDescription of batch 1 (none expected) does not take it.
        assert_eq!(m.describe_answered(), None);
        m.batch_done(); // batch 0
        m.batch_done(); // batch 1: s4's Describe survives
        assert_eq!(m.describe_answered(), Some((b'S', b"s4".to_vec())));
        // A Describe skipped after an error is dropped at its batch's end.
        m.describe_sent(b'P', b"");
        m.batches_sent += 1;
        m.batch_done();
        m.batch_done();
        assert!(m.describes.is_empty());
    }
}
