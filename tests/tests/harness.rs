//! The harness itself, without the daemon: a cluster that starts, serves
//! SCRAM over TCP and cleans up; a cgroup that really holds the commands
//! started in it (also after they drop to another uid) and goes away.

use std::{process::Command, time::Duration};

use interceptor_tests::{PgCluster, TestCgroup, process};

const T: Duration = Duration::from_secs(30);

#[test]
fn pg_cluster_serves_scram_over_tcp_and_cleans_up() {
    let pg = PgCluster::start().unwrap();
    pg.create_sample_db("app", "s3cret-app", "demo").unwrap();
    assert_eq!(
        pg.sql("demo", "select count(*) from customers")
            .unwrap()
            .trim(),
        "3"
    );

    let psql = pg.bindir().join("psql");
    let url = format!("host=127.0.0.1 port={} dbname=demo user=app", pg.port());
    let ok = process::run(
        Command::new(&psql)
            .args(["-X", "-At", &url, "-c", "select sum(amount) from orders"])
            .env("PGPASSWORD", "s3cret-app"),
        T,
    )
    .unwrap();
    assert!(ok.success(), "{ok}");
    assert_eq!(ok.stdout.trim(), "552.75");

    let bad = process::run(
        Command::new(&psql)
            .args(["-X", "-At", &url, "-c", "select 1"])
            .env("PGPASSWORD", "wrong")
            .env_remove("PGPASSFILE"),
        T,
    )
    .unwrap();
    assert!(!bad.success(), "a wrong password was accepted: {bad}");
    assert!(
        bad.stderr.contains("password authentication failed"),
        "{bad}"
    );

    let data = pg.data_dir();
    drop(pg);
    assert!(!data.exists(), "{} left behind", data.display());
}

#[test]
fn run_in_cgroup_places_the_child_before_exec() {
    let cg = TestCgroup::new().unwrap();
    assert!(cg.name().starts_with("interceptor-test-"), "{}", cg.name());
    let out = cg
        .run(Command::new("cat").arg("/proc/self/cgroup"), T)
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("0::/{}", cg.name())),
        "{out}"
    );

    // Dropping to another uid before exec must not undo the move.
    let mut as_nobody = Command::new("cat");
    as_nobody.arg("/proc/self/cgroup");
    process::as_user(&mut as_nobody, "nobody").unwrap();
    let out = cg.run(&mut as_nobody, T).unwrap().ok().unwrap();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("0::/{}", cg.name())),
        "{out}"
    );

    let mut sleeper = Command::new("sleep");
    sleeper.arg("600");
    let mut child = cg.spawn(&mut sleeper).unwrap();
    assert_eq!(cg.procs(), vec![child.id()]);
    let path = cg.path().to_owned();
    drop(cg);
    // The guard killed it.
    assert!(!child.wait().unwrap().success());
    assert!(!path.exists(), "{} left behind", path.display());
}
