//! `sluice bench postgres-replication`: the replication pipeline of the Postgres issue —
//! `postgres_cdc` → topic (Avro) → `postgres` sink — against a real server, in one run:
//! - sustained: `--changes` single-row inserts by pgbench (4 clients, as fast as it goes)
//!   while the pipeline runs; changes/s from the first write until the replica holds all;
//! - lag: inserts at `--rate` per second for `--seconds`; for each row, the time from its
//!   write in the source (`clock_timestamp()`, just before its commit) to its write in the
//!   replica (a trigger's `clock_timestamp()`, just before the sink's commit): p50, p99;
//! - drained: `--changes` inserts written while the pipeline is paused, then the time it
//!   takes to bring the replica level: the pipeline's own pace.
//!
//! The source and the replica are two tables of the database `--connection` names (a
//! replica in another database measures the same). The bench creates and drops its tables,
//! publication and slot.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::bench_postgres::{drop_slot_and_publication, psql};
use crate::cli::PostgresReplicationBenchArgs;

const SOURCE: &str = "sluice_bench_repl_src";
const REPLICA: &str = "sluice_bench_repl_dst";
const SLOT: &str = "sluice_bench_repl";

fn drop_all(connection: &str) -> Result<()> {
    drop_slot_and_publication(connection, SLOT)?;
    psql(
        connection,
        &format!(
            "DROP TABLE IF EXISTS {SOURCE}, {REPLICA}; DROP FUNCTION IF EXISTS {REPLICA}_applied()"
        ),
    )?;
    // The sink's exactly-once positions of an earlier run would skip this run's records
    // (each run starts a new log, whose offsets start at 0 again).
    if psql(
        connection,
        "SELECT to_regclass('sluice_offsets') IS NOT NULL",
    )? == "t"
    {
        psql(
            connection,
            &format!("DELETE FROM sluice_offsets WHERE topic = 'bench.public.{SOURCE}'"),
        )?;
    }
    Ok(())
}

fn setup(connection: &str) -> Result<()> {
    drop_all(connection)?;
    psql(
        connection,
        &format!(
            "CREATE TABLE {SOURCE} (id bigserial PRIMARY KEY, customer text, sku text, qty integer,
               price numeric(10,2), status text, city text, note text, written timestamptz NOT NULL);
             CREATE TABLE {REPLICA} (id bigint PRIMARY KEY, customer text, sku text, qty integer,
               price numeric(10,2), status text, city text, note text, written timestamptz,
               applied timestamptz);
             CREATE FUNCTION {REPLICA}_applied() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.applied := clock_timestamp(); RETURN NEW; END $$;
             CREATE TRIGGER applied BEFORE INSERT OR UPDATE ON {REPLICA}
               FOR EACH ROW EXECUTE FUNCTION {REPLICA}_applied();"
        ),
    )?;
    Ok(())
}

fn replica_rows(connection: &str) -> Result<i64> {
    Ok(psql(connection, &format!("SELECT count(*) FROM {REPLICA}"))?.parse()?)
}

/// pgbench with the insert script: `-t` transactions per client, or `-R` per second for `-T`.
fn pgbench(connection: &str, script: &std::path::Path, extra: &[String]) -> Result<()> {
    let out = Command::new("pgbench")
        .args(["-n", "-c", "4", "-j", "2", "-f"])
        .arg(script)
        .args(extra)
        .arg(connection)
        .output()
        .context("running pgbench (Debian's postgresql-contrib or postgresql package)")?;
    if !out.status.success() {
        bail!("pgbench: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn wait_rows(connection: &str, worker: &Worker, rows: i64, limit: Duration) -> Result<()> {
    let started = Instant::now();
    while replica_rows(connection)? < rows {
        if let Some((task, trace)) = worker.first_failure() {
            bail!("task {task} failed: {trace}");
        }
        if started.elapsed() > limit {
            bail!(
                "{} of {rows} rows in the replica after {limit:?}",
                replica_rows(connection)?
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn run(args: PostgresReplicationBenchArgs) -> Result<()> {
    let wal_level = psql(&args.connection, "SHOW wal_level")
        .context("the bench needs a Postgres server: pass --connection")?;
    if wal_level != "logical" {
        bail!("the server's wal_level is {wal_level}; the bench needs logical");
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-replication-")
        .tempdir_in(&args.dir)?;
    setup(&args.connection)?;
    println!(
        "sluice bench postgres-replication: postgres_cdc -> topic (Avro) -> postgres sink; {} inserts as fast as pgbench goes, then {} inserts/s for {} s",
        args.changes, args.rate, args.seconds
    );
    let yaml = format!(
        "runtime: {{ data_dir: {d} }}\n\
         sources:\n  bench:\n    type: postgres_cdc\n    connection: \"{c}\"\n    tables: [public.{SOURCE}]\n    topic_prefix: bench\n    slot: {SLOT}\n    publication: {SLOT}\n    snapshot_mode: no_data\n    key_format: avro\n    value_format: avro\n    status_interval: 1s\n\
         sinks:\n  replica:\n    type: postgres\n    topics: [bench.public.{SOURCE}]\n    connection: \"{c}\"\n    table: {REPLICA}\n    insert_mode: upsert\n    pk_mode: record_key\n    key_format: avro\n    value_format: avro\n",
        d = work.path().join("data").display(),
        c = args.connection,
    );
    let registry = Arc::new(crate::run::builtin_connectors()?);
    let pipeline =
        parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let data = work.path().join("data");
    let log = Log::open(&data, LogOptions::default())?;
    let worker = Worker::start(&pipeline, &registry, &log, WorkerOptions::default())?;
    let started = Instant::now();
    while psql(
        &args.connection,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
    )? != "t"
    {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the source did not start streaming");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = work.path().join("insert.sql");
    let mut f = std::fs::File::create(&script)?;
    writeln!(
        f,
        "INSERT INTO {SOURCE} (customer, sku, qty, price, status, city, note, written) VALUES \
         ('customer-' || (random() * 50000)::int, 'sku-' || (random() * 1000000)::int, 1 + (random() * 8)::int, \
          (random() * 500)::numeric(10,2), 'paid', 'Porto', 'a row of the replication benchmark', clock_timestamp());"
    )?;
    drop(f);

    // Sustained: as fast as pgbench writes, with the pipeline running.
    let changes = args.changes / 4 * 4;
    let started = Instant::now();
    pgbench(
        &args.connection,
        &script,
        &["-t".into(), (changes / 4).to_string()],
    )?;
    let written_in = started.elapsed().as_secs_f64();
    wait_rows(
        &args.connection,
        &worker,
        changes as i64,
        Duration::from_secs(900),
    )?;
    let applied_in = started.elapsed().as_secs_f64();
    let sustained = changes as f64 / applied_in;

    // Lag at a fixed rate: every row's write in the source to its write in the replica.
    let before: i64 = psql(
        &args.connection,
        &format!("SELECT coalesce(max(id), 0) FROM {SOURCE}"),
    )?
    .parse()?;
    pgbench(
        &args.connection,
        &script,
        &[
            "-R".into(),
            args.rate.to_string(),
            "-T".into(),
            args.seconds.to_string(),
        ],
    )?;
    let total: i64 = psql(&args.connection, &format!("SELECT count(*) FROM {SOURCE}"))?.parse()?;
    wait_rows(&args.connection, &worker, total, Duration::from_secs(300))?;
    let lag = psql(
        &args.connection,
        &format!(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
             FROM (SELECT extract(epoch FROM applied - written) * 1000 AS ms FROM {REPLICA} WHERE id > {before}) l"
        ),
    )?;
    let parts: Vec<&str> = lag.split('|').collect();
    let (rows, p50, p99) = match parts.as_slice() {
        [n, a, b] => (
            n.parse::<i64>()?,
            a.parse::<f64>().unwrap_or(f64::NAN),
            b.parse::<f64>().unwrap_or(f64::NAN),
        ),
        _ => bail!("unexpected lag figures: {lag}"),
    };
    let rate_achieved = rows as f64 / args.seconds as f64;

    // Drained: the same inserts written while the pipeline is paused, then the time it
    // takes to bring the replica level (the pipeline's own pace, whatever pgbench's).
    for c in ["bench", "replica"] {
        worker.pause(c).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    pgbench(
        &args.connection,
        &script,
        &["-t".into(), (changes / 4).to_string()],
    )?;
    let total: i64 = psql(&args.connection, &format!("SELECT count(*) FROM {SOURCE}"))?.parse()?;
    let started = Instant::now();
    for c in ["bench", "replica"] {
        worker.resume(c).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    wait_rows(&args.connection, &worker, total, Duration::from_secs(900))?;
    let drained = changes as f64 / started.elapsed().as_secs_f64();
    worker.stop(Duration::from_secs(10));
    drop(worker);
    log.close()?;
    drop_all(&args.connection)?;

    println!(
        "{:<52} {:>10.0} changes/s   (pgbench wrote them at {:.0}/s)",
        "sustained: source commit -> replica commit",
        sustained,
        changes as f64 / written_in
    );
    println!(
        "{:<52} {:>10.0} changes/s   (one-row transactions)",
        "drained: written while paused, then applied", drained
    );
    println!(
        "{:<52} {:>10.0} changes/s   lag p50 {:.1} ms, p99 {:.1} ms ({rows} rows)",
        format!("at {} inserts/s asked", args.rate),
        rate_achieved,
        p50,
        p99
    );
    Ok(())
}
