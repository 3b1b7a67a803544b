//! `sluice bench postgres-cdc`: the `postgres_cdc` source against a real server, in one run:
//! - the snapshot of a table of `--rows` rows of 10 columns, beside `psql \copy … TO
//!   /dev/null` of the same table (the read limit), interleaved rounds;
//! - streaming: `--changes` single-row updates (pgbench, 4 clients) written while the
//!   source is stopped, then the time the source takes to put all of them in the log;
//! - latency from commit to the record being in the log, at `--rate` updates per second
//!   (pgbench `-R`), read back in this process as records arrive: p50 and p99;
//! - one transaction updating every row, streamed through; and the process's peak memory.
//!
//! - with `--debezium`, Debezium 3.6's Postgres connector (its embedded engine, JSON output,
//!   no Kafka broker) on the same table and the same changes, from its own slot.
//!
//! Needs a server with `wal_level = logical` and a user with REPLICATION: `--connection`.
//! The bench creates and drops its own table, publication and slot.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::bench_pipeline::peak_rss_mb;
use crate::bench_postgres::{drop_slot_and_publication, psql};
use crate::cli::PostgresCdcBenchArgs;

const TABLE: &str = "sluice_bench_cdc";
const TOPIC: &str = "bench.public.sluice_bench_cdc";
const SLOT: &str = "sluice_bench_cdc";

fn drop_capture(connection: &str) -> Result<()> {
    drop_slot_and_publication(connection, SLOT)
}

fn setup_table(args: &PostgresCdcBenchArgs) -> Result<()> {
    drop_capture(&args.connection)?;
    psql(
        &args.connection,
        &format!(
            "DROP TABLE IF EXISTS {TABLE};
             CREATE TABLE {TABLE} (id bigint PRIMARY KEY, customer text, sku text, qty integer,
               price numeric(10,2), status text, city text, country text, created timestamptz, note text);
             INSERT INTO {TABLE} SELECT g, 'customer-' || (g % 50000), 'sku-' || (g % 1000000), g % 9 + 1,
               (g % 500) + (g % 100) / 100.0, (ARRAY['new','paid','shipped'])[g % 3 + 1],
               (ARRAY['Lyon','Porto','Graz','Turku'])[g % 4 + 1], (ARRAY['FR','PT','AT','FI'])[g % 4 + 1],
               timestamptz '2026-12-01' + g * interval '1 second', 'an order row of the cdc benchmark'
             FROM generate_series(1, {}) g",
            args.rows
        ),
    )?;
    psql(&args.connection, &format!("VACUUM ANALYZE {TABLE}"))?;
    Ok(())
}

/// A worker running one `postgres_cdc` source into `data`.
struct Capture {
    log: Log,
    worker: Worker,
}

impl Capture {
    fn start(args: &PostgresCdcBenchArgs, data: &std::path::Path, mode: &str) -> Result<Capture> {
        let yaml = format!(
            "runtime: {{ data_dir: {d} }}\nsources:\n  bench:\n    type: postgres_cdc\n    connection: \"{c}\"\n    tables: [public.{TABLE}]\n    topic_prefix: bench\n    slot: {SLOT}\n    publication: {SLOT}\n    snapshot_mode: {mode}\n    value_format: json\n    status_interval: 1s\n",
            d = data.display(),
            c = args.connection,
        );
        let registry = Arc::new(crate::run::builtin_connectors()?);
        let pipeline =
            parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let log = Log::open(data, LogOptions::default())?;
        let worker = Worker::start(&pipeline, &registry, &log, WorkerOptions::default())?;
        Ok(Capture { log, worker })
    }

    fn end_offset(&self) -> i64 {
        self.log
            .partition(TOPIC, 0)
            .map(|p| p.end_offset())
            .unwrap_or(0)
    }

    /// Waits until the topic holds `records`; seconds from `started`.
    fn wait_for(&self, records: i64, started: Instant, limit: Duration) -> Result<f64> {
        loop {
            if self.end_offset() >= records {
                return Ok(started.elapsed().as_secs_f64());
            }
            if let Some((task, trace)) = self.worker.first_failure() {
                bail!("task {task} failed: {trace}");
            }
            if started.elapsed() > limit {
                bail!(
                    "{} of {records} records in the topic after {limit:?}",
                    self.end_offset()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) -> Result<()> {
        self.worker.stop(Duration::from_secs(10));
        self.log.close()?;
        Ok(())
    }
}

/// The CPU time of the walsender serving the bench's slot, when the server runs on this
/// machine (its `/proc` entry readable): how busy the server itself is while it streams.
struct WalsenderCpu {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl WalsenderCpu {
    fn ticks(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    fn start(connection: &str) -> Option<WalsenderCpu> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let pid = psql(
                connection,
                &format!("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
            )
            .ok()?;
            if let Ok(pid) = pid.parse::<u32>() {
                let ticks = WalsenderCpu::ticks(pid)?;
                return Some(WalsenderCpu {
                    pid,
                    ticks,
                    at: Instant::now(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The share of one core it used since `start` (clock ticks of 1/100 s, Linux' USER_HZ).
    fn busy(self) -> Option<f64> {
        let ticks = WalsenderCpu::ticks(self.pid)?;
        Some((ticks - self.ticks) as f64 / 100.0 / self.at.elapsed().as_secs_f64())
    }
}

/// Waits until the slot exists and is read (the source is streaming).
fn wait_streaming(connection: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql(
        connection,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
    )? != "t"
    {
        if Instant::now() > deadline {
            bail!("the source did not start streaming");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn pgbench(args: &PostgresCdcBenchArgs, script: &std::path::Path, extra: &[String]) -> Result<()> {
    let out = Command::new("pgbench")
        .args(["-n", "-c", "4", "-j", "2", "-f"])
        .arg(script)
        .args(extra)
        .arg(&args.connection)
        .output()
        .context("running pgbench (Debian's postgresql-contrib or postgresql package)")?;
    if !out.status.success() {
        bail!("pgbench: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Debezium's embedded engine (`runtime/benches/debezium`), built once into `dir`.
struct Debezium {
    classpath: String,
    offsets: std::path::PathBuf,
}

impl Debezium {
    fn build(dir: &std::path::Path) -> Result<Debezium> {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/debezium");
        let jars = dir.join("jars");
        let out = Command::new("mvn")
            .args(["-q", "-B", "-f"])
            .arg(project.join("pom.xml"))
            .arg("dependency:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", jars.display()))
            .output()
            .context("running mvn (Maven) to fetch Debezium")?;
        if !out.status.success() {
            bail!("mvn: {}", String::from_utf8_lossy(&out.stdout));
        }
        let classes = dir.join("classes");
        let jars_glob = format!("{}/*", jars.display());
        let out = Command::new("javac")
            .args(["-cp", &jars_glob, "-d"])
            .arg(&classes)
            .arg(project.join("DebeziumBench.java"))
            .output()
            .context("running javac (a JDK 17+)")?;
        if !out.status.success() {
            bail!("javac: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Debezium {
            classpath: format!("{}:{jars_glob}", classes.display()),
            offsets: dir.join("debezium.offsets"),
        })
    }

    /// Runs the engine until `events` events: seconds since its first event.
    fn run(&self, args: &PostgresCdcBenchArgs, events: u64, mode: &str) -> Result<f64> {
        // The libpq key/value form (the bench's `--connection`).
        let setting = |key: &str, default: &str| {
            args.connection
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or(default)
                .to_string()
        };
        let (host, port) = (setting("host", "127.0.0.1"), setting("port", "5432"));
        let (user, dbname) = (setting("user", "postgres"), setting("dbname", "postgres"));
        let out = Command::new("java")
            .args([
                "-cp",
                &self.classpath,
                "DebeziumBench",
                &host,
                &port,
                &user,
                &dbname,
            ])
            .arg(format!("public.{TABLE}"))
            .arg(&self.offsets)
            .arg(events.to_string())
            .arg(mode)
            .output()
            .context("running java")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("done "))
            .with_context(|| {
                format!(
                    "Debezium did not finish: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        Ok(line.split_whitespace().nth(2).unwrap_or("nan").parse()?)
    }

    fn drop_slot(connection: &str) -> Result<()> {
        drop_slot_and_publication(connection, "dbz_bench")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Reads the topic from `from` as records arrive, until `until` records: for each, the time
/// since its commit (`source.ts_us`), in ms.
fn latencies(capture: &Capture, from: i64, until: i64, limit: Duration) -> Result<Vec<f64>> {
    let partition = capture.log.partition(TOPIC, 0)?;
    let started = Instant::now();
    let mut offset = from;
    let mut out = Vec::new();
    while offset < until {
        if started.elapsed() > limit {
            bail!(
                "{} of {} records arrived in {limit:?}",
                offset - from,
                until - from
            );
        }
        let read = partition.read(offset, 1 << 20)?;
        if read.records.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let seen = now_us();
        let records = sluice_worker::convert::decode_batches(&read.records.into())
            .map_err(anyhow::Error::msg)?;
        let first_new = offset;
        for r in records.iter().filter(|r| r.offset >= first_new) {
            if let Some(v) = &r.value {
                let json: serde_json::Value = serde_json::from_slice(v)?;
                if let Some(committed) = json["source"]["ts_us"].as_i64() {
                    out.push((seen - committed) as f64 / 1000.0);
                }
            }
            offset = r.offset + 1;
        }
    }
    Ok(out)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

pub fn run(args: PostgresCdcBenchArgs) -> Result<()> {
    let wal_level = psql(&args.connection, "SHOW wal_level")
        .context("the bench needs a Postgres server: pass --connection")?;
    if wal_level != "logical" {
        bail!("the server's wal_level is {wal_level}; the bench needs logical");
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-cdc-")
        .tempdir_in(&args.dir)?;
    let base = work.path();
    println!(
        "sluice bench postgres-cdc: a table of {} rows x 10 columns, {} streamed updates, {} rounds",
        args.rows, args.changes, args.rounds
    );
    setup_table(&args)?;

    // The snapshot, beside psql \copy of the same table to /dev/null.
    let (mut copy, mut snapshot) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let started = Instant::now();
        psql(&args.connection, &format!("\\copy {TABLE} TO '/dev/null'"))?;
        copy.push(started.elapsed().as_secs_f64());
        drop_capture(&args.connection)?;
        let data = base.join(format!("snapshot-{round}"));
        let started = Instant::now();
        let capture = Capture::start(&args, &data, "initial_only")?;
        snapshot.push(capture.wait_for(args.rows as i64, started, Duration::from_secs(900))?);
        capture.stop()?;
        std::fs::remove_dir_all(&data)?;
    }
    let copy_rate = args.rows as f64 / median(copy);
    let snapshot_rate = args.rows as f64 / median(snapshot);

    // Debezium's snapshot of the same table; its slot stays for the streaming rounds.
    let debezium = match args.debezium {
        true => Some(Debezium::build(base)?),
        false => None,
    };
    let mut dbz_snapshot = Vec::new();
    if let Some(d) = &debezium {
        for _ in 0..args.rounds {
            Debezium::drop_slot(&args.connection)?;
            let _ = std::fs::remove_file(&d.offsets);
            dbz_snapshot.push(d.run(&args, args.rows, "initial")?);
        }
    }

    // Streaming: updates written while the source is stopped, then drained.
    drop_capture(&args.connection)?;
    let data = base.join("stream");
    let capture = Capture::start(&args, &data, "no_data")?;
    wait_streaming(&args.connection)?;
    capture.stop()?;
    let script = base.join("update.sql");
    let mut f = std::fs::File::create(&script)?;
    writeln!(f, "\\set id random(1, {})", args.rows)?;
    writeln!(f, "UPDATE {TABLE} SET qty = qty + 1 WHERE id = :id;")?;
    drop(f);
    let mut drained = Vec::new();
    let mut walsender_busy = Vec::new();
    let mut dbz_drained = Vec::new();
    let mut expected: i64 = 0;
    let changes = args.changes / 4 * 4;
    for _ in 0..args.rounds {
        pgbench(
            &args,
            &script,
            &["-t".into(), (args.changes / 4).to_string()],
        )?;
        expected += changes as i64;
        let started = Instant::now();
        let capture = Capture::start(&args, &data, "no_data")?;
        let walsender = WalsenderCpu::start(&args.connection);
        let secs = capture.wait_for(expected, started, Duration::from_secs(900))?;
        drained.push(changes as f64 / secs);
        if let Some(busy) = walsender.and_then(WalsenderCpu::busy) {
            walsender_busy.push(busy);
        }
        capture.stop()?;
        // The same changes, from Debezium's own slot.
        if let Some(d) = &debezium {
            dbz_drained.push(changes as f64 / d.run(&args, changes, "initial")?);
        }
    }
    let stream_rate = median(drained);
    if debezium.is_some() {
        Debezium::drop_slot(&args.connection)?;
    }

    // Latency at a steady rate, with the source running.
    let capture = Capture::start(&args, &data, "no_data")?;
    wait_streaming(&args.connection)?;
    let from = capture.end_offset();
    let rate_started = Instant::now();
    let bench = {
        let args_rate = args.rate;
        let seconds = args.seconds;
        let connection = args.connection.clone();
        let script = script.clone();
        std::thread::spawn(move || -> Result<()> {
            let out = Command::new("pgbench")
                .args(["-n", "-c", "4", "-j", "2", "-f"])
                .arg(&script)
                .args(["-R", &args_rate.to_string(), "-T", &seconds.to_string()])
                .arg(&connection)
                .output()?;
            if !out.status.success() {
                bail!("pgbench: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        })
    };
    // How many the rate run writes is known once it ends; read until then, then the rest.
    let mut lat = Vec::new();
    let mut offset = from;
    while !bench.is_finished() {
        let end = capture.end_offset();
        if end > offset {
            lat.extend(latencies(&capture, offset, end, Duration::from_secs(60))?);
            offset = end;
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    bench
        .join()
        .map_err(|_| anyhow::anyhow!("pgbench thread"))??;
    let written: i64 = psql(
        &args.connection,
        &format!("SELECT sum(qty) - sum(id % 9 + 1) FROM {TABLE}"),
    )?
    .parse()?;
    let total = written - expected; // the rate run's updates
    lat.extend(latencies(
        &capture,
        offset,
        from + total,
        Duration::from_secs(120),
    )?);
    let achieved = total as f64 / rate_started.elapsed().as_secs_f64();
    let (p50, p99) = (percentile(&mut lat, 0.50), percentile(&mut lat, 0.99));

    // One transaction updating every row.
    let before = capture.end_offset();
    let started = Instant::now();
    psql(
        &args.connection,
        &format!("UPDATE {TABLE} SET qty = qty + 1"),
    )?;
    let big_secs =
        capture.wait_for(before + args.rows as i64, started, Duration::from_secs(900))?;
    capture.stop()?;
    let rss = peak_rss_mb();
    drop_capture(&args.connection)?;
    psql(&args.connection, &format!("DROP TABLE IF EXISTS {TABLE}"))?;

    println!("{:<58} {:>12} {:>8}", "", "rows/s", "ratio");
    println!(
        "{:<58} {:>12.0} {:>8.2}",
        "psql \\copy TO /dev/null (the read limit)", copy_rate, 1.0
    );
    println!(
        "{:<58} {:>12.0} {:>8.2}   target >= 0.7",
        "postgres_cdc snapshot (COPY, JSON events into the log)",
        snapshot_rate,
        snapshot_rate / copy_rate
    );
    println!(
        "{:<58} {:>12.0}            target >= 100,000",
        "postgres_cdc streaming (pgbench updates, drained)", stream_rate
    );
    if !walsender_busy.is_empty() {
        println!(
            "{:<58} {:>12}   {:.2} of a core (1.00: the server's own limit)",
            "  the server's walsender, busy while it was drained",
            "",
            median(walsender_busy)
        );
    }
    println!(
        "{:<58} {:>12.0}   p50 {:.1} ms, p99 {:.1} ms (target p99 < 50 ms)",
        format!("commit -> log latency at {} updates/s asked", args.rate),
        achieved,
        p50,
        p99
    );
    println!(
        "{:<58} {:>12.0}   {:.1} s",
        "one transaction of every row",
        args.rows as f64 / big_secs,
        big_secs
    );
    if !dbz_snapshot.is_empty() {
        let dbz_snap = args.rows as f64 / median(dbz_snapshot);
        let dbz_stream = median(dbz_drained);
        println!(
            "{:<58} {:>12.0} {:>8.2}   Sluice / Debezium: {:.2} (target >= 2)",
            "Debezium 3.6 snapshot (embedded engine, JSON, no broker)",
            dbz_snap,
            dbz_snap / copy_rate,
            snapshot_rate / dbz_snap
        );
        println!(
            "{:<58} {:>12.0}            Sluice / Debezium: {:.2} (target >= 2)",
            "Debezium 3.6 streaming (the same changes, drained)",
            dbz_stream,
            stream_rate / dbz_stream
        );
        println!("(Debezium timed from its first event: JVM and engine start-up not counted)");
    }
    println!("peak memory of this process (VmHWM): {rss:.0} MB (target < 200 MB)");
    Ok(())
}
