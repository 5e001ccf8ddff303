use super::*;
use crate::mask::policy::SensitiveSpec;

fn rel(schema: Option<&str>, name: &str) -> Relation {
    Relation {
        schema: schema.map(str::to_owned),
        name: name.to_owned(),
    }
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    let table = |oid, name: &str, cols: &[&str], def: Option<&str>| RelInfo {
        oid,
        schema: "public".into(),
        name: name.into(),
        kind: if def.is_some() { 'v' } else { 'r' },
        columns: cols.iter().map(|c| (*c).to_owned()).collect(),
        view_def: def.map(str::to_owned),
        attnums: (1..=cols.len() as i16).collect(),
        carries: Vec::new(),
    };
    let customers = table(
        1,
        "customers",
        &["id", "name", "email", "ssn", "card"],
        None,
    );
    let orders = table(2, "orders", &["id", "customer_id", "amount"], None);
    // As pg_get_viewdef prints them under the catalog connection's
    // `search_path = pg_catalog`: names outside pg_catalog qualified.
    let v = table(
        3,
        "v_cust",
        &["id", "s"],
        Some(
            " SELECT customers.id, upper(customers.ssn) AS s FROM public.customers WHERE (customers.ssn IS NOT NULL);",
        ),
    );
    let vv = table(
        4,
        "v_v",
        &["x"],
        Some("SELECT v_cust.s AS x FROM public.v_cust"),
    );
    for (names, info) in [
        (
            vec![rel(None, "customers"), rel(Some("public"), "customers")],
            customers,
        ),
        (
            vec![rel(None, "orders"), rel(Some("public"), "orders")],
            orders,
        ),
        (vec![rel(None, "v_cust"), rel(Some("public"), "v_cust")], v),
        (vec![rel(None, "v_v")], vv),
    ] {
        for n in names {
            s.relations.insert(n, Some(info.clone()));
        }
    }
    s.relations.insert(rel(None, "tmp"), None);
    s.user_functions.insert("leak".into());
    s
}

fn policy() -> MaskPolicy {
    let mut m = MaskPolicy::default();
    for (c, cat) in [("ssn", "ssn"), ("card", "card"), ("email", "email")] {
        m.add_sensitive(SensitiveSpec {
            columns: vec![format!("public.customers.{c}")],
            category: cat.into(),
        })
        .unwrap();
    }
    m
}

fn trace(sql: &str) -> Traced {
    let snap = snapshot();
    let pol = policy();
    let stmt = crate::sql::parse_one(sql, &crate::sql::Limits::default()).expect("parses");
    Tracer::new(&snap, &pol).trace(&stmt)
}

/// Per output column: its categories, `?` when opaque.
fn cols(sql: &str) -> Vec<String> {
    let t = trace(sql);
    t.outputs
        .unwrap_or_else(|| panic!("{sql}: no outputs"))
        .iter()
        .map(|c| {
            let mut v: Vec<&str> = c.lin.sources.iter().map(|(cat, _)| cat.as_str()).collect();
            v.dedup();
            if c.lin.opaque {
                v.push("?");
            }
            v.join("+")
        })
        .collect()
}

#[test]
fn plain_and_expressions() {
    assert_eq!(cols("select id, name, ssn from customers"), ["", "", "ssn"]);
    assert_eq!(
        cols("select upper(ssn), ssn || '', ssn::text, lower(name) from customers"),
        ["ssn", "ssn", "ssn", ""]
    );
    assert_eq!(
        cols(
            "select coalesce(email, name), case when ssn like '1%' then 'a' else 'b' end from customers"
        ),
        ["email", "ssn"]
    );
    assert_eq!(
        cols("select c.ssn, c.name from public.customers c"),
        ["ssn", ""]
    );
    assert_eq!(
        cols("select count(*), count(distinct ssn), string_agg(card, ',') from customers"),
        ["", "ssn", "card"]
    );
    assert_eq!(
        cols("select substr(ssn, 8) as tail, current_user from customers"),
        ["ssn", ""]
    );
}

#[test]
fn stars_and_whole_rows() {
    assert_eq!(
        cols("select * from customers"),
        ["", "", "email", "ssn", "card"]
    );
    assert_eq!(
        cols("select o.*, c.* from orders o join customers c on c.id = o.customer_id"),
        ["", "", "", "", "", "email", "ssn", "card"]
    );
    assert_eq!(
        cols("select * from orders join customers using (id)"),
        ["", "", "", "", "email", "ssn", "card"]
    );
    assert_eq!(
        cols("select row_to_json(c) from customers c"),
        ["email+ssn+card"].map(sorted)
    );
    assert_eq!(
        cols("select to_jsonb(c.*) from customers c"),
        ["email+ssn+card"].map(sorted)
    );
    assert_eq!(
        cols("select c from customers c"),
        ["email+ssn+card"].map(sorted)
    );
    assert_eq!(
        cols("select json_agg(customers) from customers"),
        ["email+ssn+card"].map(sorted)
    );
    assert_eq!(
        cols("select (c).ssn from customers c"),
        ["email+ssn+card"].map(sorted)
    );
}

fn sorted(s: &str) -> String {
    let mut v: Vec<&str> = s.split('+').collect();
    v.sort();
    v.join("+")
}

#[test]
fn subqueries_ctes_unions_views() {
    assert_eq!(
        cols("select x from (select ssn as x from customers) s"),
        ["ssn"]
    );
    assert_eq!(
        cols("select * from (select upper(ssn), name from customers) s"),
        ["ssn", ""]
    );
    assert_eq!(
        cols("with t as (select ssn from customers) select * from t"),
        ["ssn"]
    );
    assert_eq!(
        cols("with t(a) as (select ssn from customers) select a from t"),
        ["ssn"]
    );
    assert_eq!(
        cols("select name from customers union all select ssn from customers"),
        ["ssn"]
    );
    assert_eq!(cols("select (select ssn from customers limit 1)"), ["ssn"]);
    assert_eq!(
        cols("select exists (select 1 from customers where ssn like '1%')"),
        ["ssn"]
    );
    assert_eq!(cols("select * from v_cust"), ["", "ssn"]);
    assert_eq!(cols("select x from v_v"), ["ssn"]);
    assert_eq!(
        cols("values ((select ssn from customers limit 1))"),
        ["ssn"]
    );
    assert_eq!(
        cols(
            "with recursive r(n, s) as (select 1, ''::text union all select n + 1, (select ssn from customers limit 1) from r where n < 2) select s from r"
        ),
        ["ssn"]
    );
    assert_eq!(
        cols("select s.ssn from customers c, lateral (select c.ssn) s"),
        ["ssn"]
    );
}

#[test]
fn unknowns_are_opaque() {
    // `tmp` is known to be missing: not opaque, but marked (its rows, should
    // any come, are masked whole).
    let t = trace("select * from tmp");
    assert!(
        t.outputs
            .unwrap()
            .iter()
            .all(|c| c.lin.missing && !c.lin.opaque)
    );
    assert!(t.reach.missing);
    assert_eq!(cols("select * from never_looked_up"), ["?"]);
    assert_eq!(cols("select leak(1)"), ["?"]);
    let t = trace("select query_to_xml('select ssn from customers', true, false, '')");
    assert!(t.refusals[0].contains("query_to_xml"));
    assert!(!trace("select * from pg_stats").refusals.is_empty());
}

#[test]
fn filters_writes_and_paths() {
    let t = trace("select name from customers where ssn like '1%'");
    assert!(t.filters.sources.iter().any(|(c, _)| c == "ssn"));
    assert!(
        trace("select name from customers where id = 1 order by name")
            .filters
            .is_clean()
    );
    assert!(
        !trace("select name from customers order by ssn")
            .filters
            .is_clean()
    );
    assert!(
        !trace("select count(*) from customers group by ssn")
            .filters
            .is_clean()
    );
    assert!(
        !trace("select o.id from orders o join customers c on c.ssn = o.amount::text")
            .filters
            .is_clean()
    );

    assert!(
        !trace("create table x as select ssn from customers")
            .written
            .is_clean()
    );
    assert!(!trace("select ssn into x from customers").written.is_clean());
    assert!(
        !trace("insert into orders (id) select ssn::int from customers")
            .written
            .is_clean()
    );
    assert!(!trace("update customers set name = ssn").written.is_clean());
    assert!(
        trace("update customers set name = 'x' where id = 1")
            .written
            .is_clean()
    );
    assert!(
        !trace("create materialized view m as select ssn from customers")
            .written
            .is_clean()
    );

    assert_eq!(
        cols("update customers set name = 'x' returning ssn, id"),
        ["ssn", ""]
    );
    assert_eq!(
        cols("delete from customers where id = 3 returning *"),
        ["", "", "email", "ssn", "card"]
    );
    assert_eq!(
        cols("insert into customers (id) values (9) returning card"),
        ["card"]
    );
    assert_eq!(
        cols("with d as (delete from customers returning ssn) select * from d"),
        ["ssn"]
    );

    let t = trace("copy customers to stdout with (format csv)");
    assert_eq!(t.copy, Some(CopyLayout::new(CopyFormat::Csv)));
    // Options in both syntaxes as PostgreSQL's grammar reads them, with its
    // defaults for the rest; the statement traced without them.
    let copy = |sql: &str| {
        crate::sql::copy_to_client(sql, 64)
            .unwrap()
            .unwrap_or_else(|| panic!("{sql}: not a COPY TO STDOUT"))
    };
    let layout = |sql: &str| {
        CopyLayout::from_options(&copy(sql).options).unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let l = layout(r"copy customers to stdout with delimiter as E'\t' null as '\N'");
    assert_eq!(
        (l.format, l.delimiter, l.null.as_slice()),
        (CopyFormat::Text, b'\t', br"\N".as_slice())
    );
    let l = layout(
        r"copy customers to stdout with (format csv, delimiter ';', null 'NULL', quote '''', escape '\', header, force_quote *, encoding 'UTF8')",
    );
    assert_eq!(
        (
            l.format,
            l.delimiter,
            l.null.as_slice(),
            l.quote,
            l.escape,
            l.header
        ),
        (
            CopyFormat::Csv,
            b';',
            b"NULL".as_slice(),
            b'\'',
            b'\\',
            true
        )
    );
    let l =
        layout("copy customers to stdout csv header delimiter '-' quote as '~' force quote ssn");
    assert_eq!(
        (l.format, l.quote, l.escape, l.header, l.delimiter),
        (CopyFormat::Csv, b'~', b'~', true, b'-')
    );
    let l = layout("copy (select 1) to stdout with (header false, format text, delimiter '|')");
    assert_eq!(
        (l.format, l.delimiter, l.header, l.null.as_slice()),
        (CopyFormat::Text, b'|', false, br"\N".as_slice())
    );
    assert_eq!(
        layout("copy customers to stdout binary").format,
        CopyFormat::Binary
    );
    let c = copy("COPY customers (id, ssn) TO STDOUT WITH CSV HEADER FORCE QUOTE *");
    assert_eq!(cols(&c.bare), ["", "ssn"], "{}", c.bare);
    assert!(
        crate::sql::copy_to_client("copy customers from stdin", 64)
            .unwrap()
            .is_none()
    );
    // What cannot be rebuilt field by field is refused, naming the option.
    for (sql, why) in [
        (
            "copy customers to stdout with (format csv, encoding 'SJIS')",
            "ENCODING 'SJIS'",
        ),
        (
            "copy customers to stdout with (encoding 'EUC_JP')",
            "ENCODING 'EUC_JP'",
        ),
        (
            "copy customers to stdout with (delimiter 'ab')",
            "DELIMITER",
        ),
        ("copy customers to stdout with (delimiter '§')", "DELIMITER"),
    ] {
        let e = CopyLayout::from_options(&copy(sql).options).unwrap_err();
        assert!(e.contains(why), "{sql}: {e}");
    }
    assert_eq!(t.outputs.unwrap().len(), 5);
    assert_eq!(cols("copy (select ssn from customers) to stdout"), ["ssn"]);
    assert_eq!(
        cols("copy customers (name, ssn) to stdout binary"),
        ["", "ssn"]
    );
    let t = trace("declare c cursor for select ssn from customers");
    assert_eq!(t.declares.as_deref(), Some("c"));
    assert_eq!(trace("fetch 5 from c").fetches.as_deref(), Some("c"));
}

#[test]
fn prepared_and_side_channels() {
    let t = trace("prepare p as select ssn from customers");
    assert_eq!(t.prepares.as_deref(), Some("p"));
    assert_eq!(t.outputs.unwrap().len(), 1);
    assert_eq!(trace("execute p").executes.as_deref(), Some("p"));
    assert!(
        !trace("select pg_notify('c', ssn) from customers")
            .side
            .is_clean()
    );
    assert!(
        trace("select pg_notify('c', name) from customers")
            .side
            .is_clean()
    );
}

/// A catalog view's definition (printed under `search_path = pg_catalog`)
/// names pg_catalog's relations unqualified: they are pg_catalog's, whatever
/// the session's search_path (pg_dump reads `pg_catalog.pg_roles`).
#[test]
fn catalog_views_name_pg_catalog_relations_unqualified() {
    let mut snap = Snapshot::default();
    let info = |oid, name: &str, cols: &[&str], def: Option<&str>| RelInfo {
        oid,
        schema: "pg_catalog".into(),
        name: name.into(),
        kind: if def.is_some() { 'v' } else { 'r' },
        columns: cols.iter().map(|c| (*c).to_owned()).collect(),
        view_def: def.map(str::to_owned),
        attnums: (1..=cols.len() as i16).collect(),
        carries: Vec::new(),
    };
    snap.relations.insert(rel(Some("pg_catalog"), "pg_roles"), Some(info(11, "pg_roles", &["rolname", "rolpassword", "rolconfig", "oid"], Some(" SELECT pg_authid.rolname,
    '********'::text AS rolpassword,
    s.setconfig AS rolconfig,
    pg_authid.oid
   FROM (pg_authid
     LEFT JOIN pg_db_role_setting s ON (((pg_authid.oid = s.setrole) AND (s.setdatabase = (0)::oid))));"))));
    snap.relations.insert(
        rel(Some("pg_catalog"), "pg_authid"),
        Some(info(12, "pg_authid", &["oid", "rolname"], None)),
    );
    snap.relations.insert(
        rel(Some("pg_catalog"), "pg_db_role_setting"),
        Some(info(
            13,
            "pg_db_role_setting",
            &["setdatabase", "setrole", "setconfig"],
            None,
        )),
    );
    // The session's unqualified name is another relation.
    snap.relations.insert(rel(None, "pg_authid"), None);
    let pol = policy();
    let stmt = crate::sql::parse_one(
        "SELECT oid, rolname FROM pg_catalog.pg_roles ORDER BY 1",
        &crate::sql::Limits::default(),
    )
    .unwrap();
    let t = Tracer::new(&snap, &pol).trace(&stmt);
    let outs: Vec<bool> = t.outputs.unwrap().iter().map(|c| c.lin.opaque).collect();
    assert_eq!(outs, [false, false]);
}
