//! `cargo xtask demo`: the main job on an embedded default.
//!
//! Starts a throw-away PostgreSQL (as `postgres`, on 127.0.0.1) with sample
//! data, writes a root-only credentials file and a config whose target is
//! that database's own address, creates a demo cgroup, starts
//! `interceptor run` on it, and runs an unchanged `psql` inside the cgroup
//! against the database's real address with no password anywhere in its
//! environment. Prints the result and the daemon's `session_start` event,
//! then removes everything (also on failure or Ctrl-C: every piece is a
//! `Drop` guard).

use std::{process::Command, time::Duration};

use anyhow::{Context as _, bail};
use interceptor_tests::{
    Daemon, DaemonConfig, PgCluster, TestCgroup,
    daemon::{expanded, field},
    paths,
    pg::random_hex,
    process,
    stack::{session_id, str_field},
};

use crate::{setup, sh};

#[derive(clap::Args)]
pub struct Args {
    /// Keep everything running after the demo query, until Ctrl-C, and print
    /// how to run your own commands inside the watched cgroup.
    #[arg(long)]
    hold: bool,
}

const QUERY: &str = "select c.name, count(o.id) as orders, sum(o.amount) as total \
                     from customers c join orders o on o.customer_id = c.id \
                     group by c.name order by total desc";

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo loads eBPF programs and creates a cgroup: run `cargo xtask demo` as root");
    }
    setup::run()?;
    sh::run(&mut sh::cargo(&["build", "-p", "interceptor"]))?;

    println!("demo: starting PostgreSQL");
    let pg = PgCluster::start()?;
    // The application's password: known to the database and to the daemon's
    // root-only credentials file, never to the workload.
    let password = random_hex(16)?;
    pg.create_sample_db("app", &password, "demo")?;
    println!(
        "demo: PostgreSQL on {} (database demo, user app, data in {})",
        pg.addr(),
        pg.data_dir().display()
    );

    let cg = TestCgroup::with_prefix("interceptor-demo")?;
    println!("demo: watched cgroup {}", cg.path().display());
    let daemon = Daemon::start(DaemonConfig {
        name_prefix: "interceptor-demo".into(),
        // The shipped policy set: psql in an interceptor-demo* cgroup is `ci-tools`.
        policy_dir: Some(paths::workspace_root().join("policies")),
        ..DaemonConfig::for_cluster(cg.path(), &pg, "demo", "app", &password)
    })?;
    let layout = daemon.layout();
    println!(
        "demo: interceptor running (pid {}), proxy on {}, pins in {}, config {}",
        daemon.pid().unwrap_or_default(),
        daemon.listen(),
        layout.pin_dir.display(),
        layout.config.display()
    );
    println!(
        "--- config\n{}---",
        std::fs::read_to_string(&layout.config)?
    );

    let conninfo = format!("host=127.0.0.1 port={} dbname=demo user=app", pg.port());
    let mut psql = Command::new("psql");
    psql.args(["-X", "-P", "pager=off", &conninfo, "-c", QUERY])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/tmp");
    // An ordinary unprivileged workload.
    process::as_user(&mut psql, "nobody")?;
    println!(
        "demo: inside {}: psql \"{conninfo}\" -c \"{QUERY}\"  (as nobody, no password)",
        cg.name()
    );
    let out = cg.run(&mut psql, Duration::from_mins(1))?;
    print!("{}", out.stdout);
    if !out.success() {
        bail!(
            "psql inside the watched cgroup failed: {out}\n--- interceptor\n{}",
            daemon.output()
        );
    }
    let start = daemon
        .session_start_of(out.pid, Duration::from_secs(5))
        .with_context(|| {
            format!(
                "no session_start for psql (pid {}):\n{}",
                out.pid,
                daemon.output()
            )
        })?;
    println!(
        "demo: the interceptor's session_start event:\n{}",
        serde_json::to_string_pretty(&expanded(&start))?
    );
    if let Some(id) = daemon.wait_event(Duration::from_secs(1), |e| {
        str_field(e, "event").as_deref() == Some("identity") && session_id(e) == session_id(&start)
    }) {
        println!(
            "demo: policy identity of this session: {}",
            str_field(&id, "identity").unwrap_or_default()
        );
    }
    println!(
        "demo: psql pid {} ran {} as uid {}; it reached {} through the proxy without knowing the password",
        out.pid,
        str_field(&start, "attestation.exe").unwrap_or_default(),
        field(&start, "attestation.uid").map_or_else(|| "?".into(), |v| v.to_string()),
        str_field(&start, "orig_dst").unwrap_or_default(),
    );
    // Masking: customers.email is tagged sensitive in the shipped policy;
    // CI tools see a keyed token in its place (the same for the same value).
    let masked_sql = "select name, email from customers order by id";
    let mut masked = Command::new("psql");
    masked
        .args(["-X", "-P", "pager=off", &conninfo, "-c", masked_sql])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/tmp");
    process::as_user(&mut masked, "nobody")?;
    println!("demo: inside {}: psql -c \"{masked_sql}\"", cg.name());
    let out_masked = cg.run(&mut masked, Duration::from_mins(1))?;
    print!("{}", out_masked.stdout);
    if !out_masked.success()
        || out_masked.stdout.contains("@example.com")
        || !out_masked.stdout.contains("tok_email_")
    {
        bail!(
            "the e-mail addresses were not masked: {out_masked}\n--- interceptor\n{}",
            daemon.output()
        );
    }
    // The same unchanged psql tries what a CI job or an agent must not do.
    let refused_sql = "DROP TABLE customers";
    let mut bad = Command::new("psql");
    bad.args(["-X", "-P", "pager=off", &conninfo, "-c", refused_sql])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/tmp");
    process::as_user(&mut bad, "nobody")?;
    println!("demo: inside {}: psql -c \"{refused_sql}\"", cg.name());
    let out_bad = cg.run(&mut bad, Duration::from_mins(1))?;
    print!("{}", out_bad.stderr);
    if out_bad.success() {
        bail!("the demo policy let `{refused_sql}` through: {out_bad}");
    }
    let still = pg.sql("demo", "select count(*) from customers")?;
    println!(
        "demo: customers still has {} rows; the refusal is in the audit log",
        still.trim()
    );
    if let Some(end) = daemon.wait_event(Duration::from_secs(5), |e| {
        str_field(e, "event").as_deref() == Some("session_end")
            && session_id(e) == session_id(&start)
    }) {
        println!("demo: session_end: {end}");
    }

    if args.hold {
        println!(
            "demo: holding. In another shell, run a command inside the watched cgroup, e.g.\n  \
             sh -c 'echo $$ > {}/cgroup.procs; exec psql \"{conninfo}\"'\n\
             Press Ctrl-C to stop and clean up.",
            cg.path().display()
        );
        while process::check_interrupted().is_ok() {
            process::sleep(Duration::from_millis(200)).ok();
        }
    }
    println!("demo: cleaning up (interceptor, PostgreSQL, cgroup, pins, temporary files)");
    drop(daemon);
    drop(pg);
    drop(cg);
    println!("demo: done");
    Ok(())
}
