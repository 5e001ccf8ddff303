use std::{process::Command, time::Duration};
use interceptor_tests::{PgCluster, PgOptions, process};
fn main() -> anyhow::Result<()> {
    for max in [100u32, 1100] {
        let pg = PgCluster::start_with(&PgOptions { max_connections: max, ..Default::default() })?;
        pg.create_user_db("bench", "pw", "bench")?;
        let b = pg.bindir().join("pgbench");
        process::run(Command::new(&b).args(["-i","-q","-s","1","-h","127.0.0.1","-p",&pg.port().to_string(),"-U","bench","bench"]).env("PGPASSWORD","pw"), Duration::from_secs(120))?.ok()?;
        for extra in [&[][..], &["-C"][..]] {
            let out = process::run(Command::new(&b).args(["-n","-S","-T","5","-c","8","-j","2","-h","127.0.0.1","-p",&pg.port().to_string(),"-U","bench"]).args(extra).arg("bench").env("PGPASSWORD","pw"), Duration::from_secs(60))?.ok()?;
            println!("max={max} {extra:?}: {}", out.stdout.lines().filter(|l| l.starts_with("tps") || l.contains("latency average")).collect::<Vec<_>>().join(" / "));
        }
    }
    Ok(())
}
