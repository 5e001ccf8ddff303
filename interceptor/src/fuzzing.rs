//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and for the
//! tests that replay their corpora (`interceptor/tests/fuzz_corpus.rs`).
//! Each takes any bytes and must neither panic nor hang; what they run is
//! the code that reads bytes a client, a server or the audit directory
//! hands the daemon. Not an API.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;

use crate::{
    mask::{
        detect::{Detectors, builtin},
        lineage::{CopyFormat, CopyLayout, Snapshot, Tracer},
        plan::{ColMask, StmtPlan},
        policy::Profile,
        rows::{CopyOut, Masker, Shape, Stats},
        strategy::Strategy,
    },
    policy::{Context, PolicySet, store::load_sources},
    sql::{self, Limits},
    wire::{
        frame::{Frame, split_frame},
        startup::StartupPacket,
        values::Bind,
    },
};

/// The largest message the fuzzed readers accept (the proxy's default is
/// 64 MiB; a smaller bound keeps inputs fast).
const MAX_MESSAGE: usize = 1 << 20;

/// A policy with tagged columns, so that deciding and tracing have work.
fn policy() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        let text = r#"
[[identity]]
name = "agent"
cgroup = ["/agents/**"]

[[rule]]
id = "no-drop"
identities = ["*"]
commands = ["DROP TABLE", "TRUNCATE"]
action = "deny"

[[rule]]
id = "approve-deletes"
identities = ["agent"]
commands = ["DELETE"]
action = "approve"

[[rule]]
id = "agent-read"
identities = ["agent"]
classes = ["read", "write", "transaction", "session"]
tables = ["public.*", "pg_catalog.*"]
allow_settings = ["search_path"]
action = "allow"
max_rows = 100

[[sensitive]]
columns = ["public.people.ssn", "public.people.email"]
category = "ssn"

[[masking]]
identities = ["agent"]
strategies = { ssn = "partial" }
"#;
        load_sources(&[("fuzz.toml".into(), text.to_owned())]).expect("the fuzz policy is valid")
    })
}

/// SQL text: the analyser (both parsers, the cross-check), the policy
/// decision, and the lineage tracer over an empty catalog.
pub fn sql_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    let analysis = sql::analyze(text, &limits);
    let set = policy();
    let ctx = Context {
        identity: "agent",
        target: "db",
        database: "app",
    };
    let _ = set.decide(&ctx, &analysis);
    if let Ok(a) = &analysis {
        let snapshot = Snapshot::default();
        for f in &a.statements {
            let _ = f.prepared_name();
            if let Ok(stmt) = sql::parse_one(&f.text, &limits) {
                let _ = Tracer::new(&snapshot, &set.masking).trace(&stmt);
            }
        }
    }
    let _ = sql::copy_to_client(text, limits.max_depth);
}

/// Client bytes: the first startup packet, then the messages after it as
/// the proxy splits and reads them (Query text, Parse, Bind parameters).
pub fn frontend(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let len = u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize;
    let (startup, rest) = if (8..=data.len().min(10_000)).contains(&len) {
        data.split_at(len)
    } else {
        (data, &[][..])
    };
    let _ = StartupPacket::parse(startup);
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(frame)) = split_frame(&mut buf, MAX_MESSAGE) {
        let body = frame.body();
        match frame.tag() {
            b'Q' | b'P' => {
                if let Some(nul) = body.iter().position(|b| *b == 0) {
                    sql_policy(&body[..nul]);
                }
            }
            b'B' => {
                if let Some(bind) = Bind::parse(body) {
                    let _ = crate::policy::masking::bind_params(&bind);
                    let _ = crate::policy::masking::bind_formats(&bind);
                }
            }
            _ => {}
        }
    }
}

fn masker() -> &'static Masker {
    static M: OnceLock<Masker> = OnceLock::new();
    M.get_or_init(|| {
        Masker::new(
            Arc::new(Profile::default()),
            Arc::new(Detectors::new(builtin())),
            Arc::new([3; 32]),
        )
    })
}

/// Server bytes: messages as the masking rewrites them (RowDescription,
/// DataRow under a plan masking every other column, COPY data in text and
/// CSV layouts with options, ErrorResponse, NotificationResponse).
pub fn backend(data: &[u8]) {
    let m = masker();
    let mask = |s| ColMask {
        strategy: s,
        category: "ssn".into(),
        why: "fuzz".into(),
    };
    let columns = Arc::new(vec![
        None,
        Some(mask(Strategy::Partial(4))),
        Some(mask(Strategy::Hash)),
        None,
    ]);
    let mut shape = Shape {
        plan: StmtPlan::Columns(columns.clone()),
        formats: vec![0, 0, 1, 0],
        types: vec![25, 25, 25, 23],
        names: Vec::new(),
    };
    let mut copies = [
        CopyOut::new(
            CopyLayout::new(CopyFormat::Text),
            StmtPlan::Columns(columns.clone()),
        ),
        CopyOut::new(
            CopyLayout::new(CopyFormat::Csv),
            StmtPlan::Columns(columns.clone()),
        ),
        CopyOut::new(
            CopyLayout::from_options(&[
                ("format".into(), Some("csv".into())),
                ("delimiter".into(), Some(";".into())),
                ("quote".into(), Some("'".into())),
                ("header".into(), Some("true".into())),
            ])
            .expect("valid options"),
            StmtPlan::Columns(columns),
        ),
    ];
    let mut stats = Stats::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = split_frame(&mut buf, MAX_MESSAGE) {
        match frame.tag() {
            b'T' => {
                if let Some(d) = crate::policy::masking::row_description(frame.body()) {
                    shape.types = d.types;
                    shape.formats = d.formats;
                }
            }
            b'D' => {
                let _ = m.data_row(&shape, frame, &mut stats);
            }
            b'd' => {
                for c in &mut copies {
                    let _ = m.copy_data(c, Frame::new(b'd', frame.body()), &mut stats);
                }
            }
            b'E' | b'N' => {
                let _ = m.error_fields(frame, true);
            }
            b'A' => {
                let _ = m.notification(frame);
            }
            b'S' => {
                let _ = m.parameter_status(frame);
            }
            _ => {}
        }
    }
}

/// One line of an audit segment, as `audit verify` and `audit export` read
/// it; and statement text as the log records it.
pub fn audit_line(data: &[u8]) {
    if let Ok(r) = crate::audit::decode_line(data) {
        let _ = r.typed();
    }
    // The same bytes as the body of a line with its hash right, so that the
    // envelope and event parsers behind the hash check are reached too.
    {
        use sha2::Digest as _;
        let mut line = data.to_vec();
        let hash = hex::encode(sha2::Sha256::digest(&line));
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"\"}");
        if let Ok(r) = crate::audit::decode_line(&line) {
            let _ = r.typed();
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        static DETECTORS: OnceLock<Detectors> = OnceLock::new();
        let detectors = DETECTORS.get_or_init(|| Detectors::new(builtin()));
        let _ = crate::audit::secrets::redact(text, detectors, &[5; 32]);
        let _ = crate::audit::secrets::redact_arg(text);
    }
}
