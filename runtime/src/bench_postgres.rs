//! `sluice bench postgres-sink`: rows per second the `postgres` sink applies from a topic of
//! records of 10 fields, for `insert` and for `upsert`, each beside `psql \copy … FROM` of
//! the same rows (CSV) into the same server in the same run. Needs a server to write to:
//! `--connection` (libpq key/value); the bench creates and drops its own tables.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_log::{Log, LogOptions, TopicConfig};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::cli::PostgresSinkBenchArgs;

const TABLE: &str = "sluice_bench_rows";
const COLUMNS: &str = "id bigint PRIMARY KEY, customer text, sku text, qty integer, price numeric(10,2), status text, city text, country text, created timestamptz, note text";

pub(crate) fn psql(connection: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .arg(connection)
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .output()
        .context("running psql (install Debian's postgresql-client)")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Drops the replication slot `slot` and the publication of the same name, if they exist.
pub(crate) fn drop_slot_and_publication(connection: &str, slot: &str) -> Result<()> {
    psql(
        connection,
        &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )?;
    psql(connection, &format!("DROP PUBLICATION IF EXISTS {slot}"))?;
    Ok(())
}

/// Row `n`: ten fields.
fn fields(n: u64) -> [String; 10] {
    [
        n.to_string(),
        format!("customer-{:05}", n % 50_000),
        format!("sku-{:06}", n % 1_000_000),
        (n % 9 + 1).to_string(),
        format!("{}.{:02}", n % 500, n % 100),
        ["new", "paid", "shipped"][(n % 3) as usize].to_string(),
        ["Lyon", "Porto", "Graz", "Turku"][(n % 4) as usize].to_string(),
        ["FR", "PT", "AT", "FI"][(n % 4) as usize].to_string(),
        format!("2026-12-{:02}T{:02}:00:00Z", n % 28 + 1, n % 24),
        "an order row of the postgres sink benchmark".to_string(),
    ]
}

const NAMES: [&str; 10] = [
    "id", "customer", "sku", "qty", "price", "status", "city", "country", "created", "note",
];

fn json_row(n: u64) -> String {
    let f = fields(n);
    format!(
        "{{\"id\":{},\"customer\":\"{}\",\"sku\":\"{}\",\"qty\":{},\"price\":{},\"status\":\"{}\",\"city\":\"{}\",\"country\":\"{}\",\"created\":\"{}\",\"note\":\"{}\"}}",
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
    )
}

fn reset(connection: &str) -> Result<()> {
    psql(
        connection,
        &format!("DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} ({COLUMNS}); DELETE FROM sluice_offsets WHERE connector LIKE 'bench_%'"),
    )
    .or_else(|_| psql(connection, &format!("DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} ({COLUMNS})")))?;
    Ok(())
}

/// `psql \copy` of the rows as CSV: seconds.
fn copy_round(connection: &str, csv: &std::path::Path) -> Result<f64> {
    reset(connection)?;
    let started = Instant::now();
    psql(
        connection,
        &format!(
            "\\copy {TABLE} ({}) FROM '{}' (FORMAT csv)",
            NAMES.join(", "),
            csv.display()
        ),
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// The sink applying the topic in `data` with `mode`: seconds from its start to the last
/// position committed in the target.
fn sink_round(
    args: &PostgresSinkBenchArgs,
    data: &std::path::Path,
    mode: &str,
    name: &str,
    round: usize,
) -> Result<f64> {
    reset(&args.connection)?;
    // A name per kind of round: the runtime keeps its own committed offsets per connector.
    let connector = format!("bench_{name}_{round}");
    let yaml = format!(
        "runtime: {{ data_dir: {d} }}\ntopics: {{ rows: {{}} }}\nsinks:\n  {connector}:\n    type: postgres\n    topics: [rows]\n    connection: \"{c}\"\n    table: {TABLE}\n    insert_mode: {mode}\n{pk}",
        d = data.display(),
        c = args.connection,
        pk = if mode == "upsert" { "    pk_mode: record_value\n    pk_fields: [id]\n" } else { "" },
    );
    let registry = Arc::new(crate::run::builtin_connectors()?);
    let pipeline =
        parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let log = Log::open(data, LogOptions::default())?;
    let started = Instant::now();
    let worker = Worker::start(&pipeline, &registry, &log, WorkerOptions::default())?;
    let deadline = started + Duration::from_secs(600);
    let query = format!(
        "SELECT coalesce(sum(next_offset), 0) FROM sluice_offsets WHERE connector = '{connector}'"
    );
    // One connection for the polling (a psql per look costs a process and a backend, which
    // would take CPU from what is measured).
    let poll = Poller::connect(&args.connection)?;
    loop {
        let done = poll.count(&query).unwrap_or(0);
        if done >= args.records {
            break;
        }
        if let Some((task, trace)) = worker.first_failure() {
            bail!("task {task} failed: {trace}");
        }
        if Instant::now() > deadline {
            bail!(
                "the sink applied {done} of {} records in 600 s",
                args.records
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = started.elapsed().as_secs_f64();
    worker.stop(Duration::from_secs(10));
    log.close()?;
    let rows: u64 = psql(&args.connection, &format!("SELECT count(*) FROM {TABLE}"))?.parse()?;
    if rows != args.records {
        bail!("{rows} rows in {TABLE}, expected {}", args.records);
    }
    Ok(secs)
}

/// A connection kept open for polling a count.
pub(crate) struct Poller {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Poller {
    pub(crate) fn connect(connection: &str) -> Result<Poller> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let (client, conn) = tokio_postgres::connect(connection, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(client)
        })?;
        Ok(Poller { runtime, client })
    }

    /// The first column of the first row of `query`, a bigint or numeric read as text.
    pub(crate) fn count(&self, query: &str) -> Result<u64> {
        let rows = self
            .runtime
            .block_on(self.client.simple_query(&format!("SELECT ({query})::text")))?;
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                return Ok(r.get(0).unwrap_or("0").parse()?);
            }
        }
        Ok(0)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn run(args: PostgresSinkBenchArgs) -> Result<()> {
    psql(&args.connection, "SELECT 1")
        .context("the bench needs a Postgres server: pass --connection")?;
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-postgres-")
        .tempdir_in(&args.dir)?;
    let base = work.path();
    // The same rows twice: as CSV for psql, as JSON records in a topic for the sink.
    let csv = base.join("rows.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    for n in 0..args.records {
        writeln!(out, "{}", fields(n).join(","))?;
    }
    out.flush()?;
    drop(out);
    let data = base.join("data");
    {
        let log = Log::open(&data, LogOptions::default())?;
        log.create_topic("rows", 1, TopicConfig::default())?;
        let partition = log.partition("rows", 0)?;
        crate::bench::append_values(&partition, (0..args.records).map(json_row))?;
        log.close()?;
    }
    println!(
        "sluice bench postgres-sink: {} rows of 10 fields, {} rounds, into {}",
        args.records, args.rounds, TABLE
    );
    let (mut copy, mut insert, mut upsert) = (Vec::new(), Vec::new(), Vec::new());
    let mut statements = Vec::new();
    for round in 0..args.rounds {
        copy.push(copy_round(&args.connection, &csv)?);
        insert.push(sink_round(&args, &data, "insert", "insert", round)?);
        // The same inserts without COPY: what COPY buys.
        std::env::set_var(
            sluice_connector_postgres::sink::task::STATEMENTS_ONLY_ENV,
            "1",
        );
        let plain = sink_round(&args, &data, "insert", "statements", round);
        std::env::remove_var(sluice_connector_postgres::sink::task::STATEMENTS_ONLY_ENV);
        statements.push(plain?);
        upsert.push(sink_round(&args, &data, "upsert", "upsert", round)?);
    }
    let per_sec = |v: Vec<f64>| args.records as f64 / median(v);
    let (copy, insert, upsert) = (per_sec(copy), per_sec(insert), per_sec(upsert));
    let statements = per_sec(statements);
    println!("{:<48} {:>12} {:>8}", "", "rows/s", "ratio");
    println!(
        "{:<48} {:>12.0} {:>8.2}",
        "psql \\copy FROM (CSV)", copy, 1.0
    );
    println!(
        "{:<48} {:>12.0} {:>8.2}",
        "postgres sink, insert (COPY into the table)",
        insert,
        insert / copy
    );
    println!(
        "{:<48} {:>12.0} {:>8.2}   COPY / statements: {:.2}",
        "postgres sink, insert (statements, no COPY)",
        statements,
        statements / copy,
        insert / statements
    );
    println!(
        "{:<48} {:>12.0} {:>8.2}",
        "postgres sink, upsert (COPY, staged, last per key)",
        upsert,
        upsert / copy
    );
    println!(
        "target for inserts: >= 0.7 of psql \\copy: {}",
        if insert / copy >= 0.7 {
            "met"
        } else {
            "NOT met"
        }
    );
    psql(&args.connection, &format!("DROP TABLE IF EXISTS {TABLE}; DELETE FROM sluice_offsets WHERE connector LIKE 'bench_%'; DELETE FROM sluice_sink_fence WHERE connector LIKE 'bench_%'"))?;
    Ok(())
}
