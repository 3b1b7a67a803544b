//! `sluice bench http-sink`: the `http` sink delivering a topic of ~200-byte JSON records in
//! `json_array` batches of 500 to a local HTTP server that counts and discards them, beside
//! `wrk` posting the same 500-record bodies to the same server over as many connections, in
//! the same run. The ratio of the two request rates says what the sink costs over a bare
//! HTTP client; each figure is the median of `--rounds` interleaved rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use sluice_log::{Log, LogOptions, TopicConfig};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::bench_registry::wrk_with;
use crate::cli::HttpSinkBenchArgs;

/// Records per request, as the benchmark asks.
const BATCH: usize = 500;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    records: AtomicU64,
}

/// Every record of the benchmark starts with this, and nothing else in a body holds it.
const RECORD_START: &[u8] = b"{\"id\":";

/// The records in a body, counted with a SIMD substring search: the server must cost far
/// less than what it measures (both clients pay it alike).
fn count_records(body: &[u8]) -> u64 {
    memchr::memmem::find_iter(body, RECORD_START).count() as u64
}

/// The endpoint a real service would be: the body parsed as JSON, its records counted.
async fn parse(State(counts): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(records)) => {
            counts
                .records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            counts.requests.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn ingest(State(counts): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    counts
        .records
        .fetch_add(count_records(&body), Ordering::Relaxed);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// A JSON record of about 200 bytes.
fn record(n: u64) -> String {
    format!(
        "{{\"id\":{n},\"customer\":\"customer-{:05}\",\"item\":\"sku-{:06}\",\"quantity\":{},\"price\":{}.{:02},\"status\":\"confirmed\",\"note\":\"this is an order of the http sink benchmark, padded to make it about two hundred bytes long\"}}",
        n % 10_000,
        n % 1_000_000,
        n % 9 + 1,
        n % 500,
        n % 100
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn run(args: HttpSinkBenchArgs) -> Result<()> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("sluice bench http-sink compares with wrk: install it first (apt-get install wrk)");
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-http-")
        .tempdir_in(&args.dir)?;
    let base = work.path();

    // The counting server, on its own threads.
    let counts = Arc::new(Counts::default());
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(ingest))
        .route("/parse", axum::routing::post(parse))
        .layer(axum::extract::DefaultBodyLimit::max(8 << 20))
        .with_state(counts.clone());
    server.spawn(async move { axum::serve(listener, app).await });

    // The same body wrk posts: one json_array request of the sink's.
    let body: String = {
        let records: Vec<String> = (0..BATCH as u64).map(record).collect();
        format!("[{}]", records.join(","))
    };
    let body_file = base.join("body.json");
    std::fs::write(&body_file, &body)?;
    let script = base.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "local f = io.open(\"{}\", \"rb\")\nwrk.method = \"POST\"\nwrk.body = f:read(\"*all\")\nf:close()\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            body_file.display()
        ),
    )?;

    println!(
        "sluice bench http-sink: {} records of ~{} B over {} partitions, json_array batches of {BATCH}, max_in_flight {}, {} task(s); wrk -t1 -c{} posting the same {} B body; {} rounds",
        args.records,
        record(1).len(),
        args.partitions,
        args.connections,
        args.tasks,
        args.connections,
        body.len(),
        args.rounds
    );
    // Two servers: one that costs next to nothing (the sink's own cost shows), and one
    // that parses every body, as a real endpoint does.
    let endpoints = [
        ("/ingest", "a server that counts records (SIMD search)"),
        ("/parse", "a server that parses each body as JSON"),
    ];
    let mut figures = Vec::new();
    for (path, label) in endpoints {
        let (mut sink_rps, mut wrk_rps, mut sink_records) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..args.rounds {
            let (requests, records, secs) = sink_round(&args, base, round, addr, path, &counts)?;
            sink_rps.push(requests as f64 / secs);
            sink_records.push(records as f64 / secs);
            let before = counts.records.load(Ordering::Relaxed);
            let w = wrk_with(
                &format!("http://{addr}{path}"),
                &script,
                args.connections,
                args.seconds,
            )?;
            if counts.records.load(Ordering::Relaxed) == before {
                bail!("the server counted no records from wrk");
            }
            wrk_rps.push(w.requests_per_sec);
        }
        figures.push((
            label,
            median(sink_rps),
            median(wrk_rps),
            median(sink_records),
        ));
    }
    println!("{:<60} {:>12} {:>14}", "", "requests/s", "records/s");
    for (label, sink, bare, per_sec) in &figures {
        println!("{label}:");
        println!(
            "{:<60} {:>12.0} {:>14.0}",
            "  wrk posting the 500-record body (bare client)",
            bare,
            bare * BATCH as f64
        );
        println!(
            "{:<60} {:>12.0} {:>14.0}",
            "  http sink (topic -> json_array requests)", sink, per_sec
        );
        println!(
            "  ratio sink / wrk: {:.2} (target >= 0.8); records/s {:.0} (target >= 300,000)",
            sink / bare,
            per_sec
        );
    }
    drop(server);
    Ok(())
}

/// One round: a fresh topic of `args.records` records, a sink delivering all of them.
/// Returns the requests and records the server counted and the seconds from the sink's
/// start to the last record counted.
fn sink_round(
    args: &HttpSinkBenchArgs,
    base: &std::path::Path,
    round: usize,
    addr: std::net::SocketAddr,
    path: &str,
    counts: &Counts,
) -> Result<(u64, u64, f64)> {
    let data = base.join(format!("data-{round}{}", path.replace('/', "-")));
    let log = Log::open(&data, LogOptions::default())?;
    log.create_topic("orders", args.partitions, TopicConfig::default())?;
    let per_partition = args.records / u64::from(args.partitions);
    for p in 0..args.partitions {
        let first = u64::from(p) * per_partition;
        let partition = log.partition("orders", p as i32)?;
        crate::bench::append_values(&partition, (first..first + per_partition).map(record))?;
    }
    let yaml = format!(
        "runtime: {{ data_dir: {d} }}\ntopics: {{ orders: {{ partitions: {p} }} }}\nsinks:\n  out:\n    type: http\n    topics: [orders]\n    url: \"http://{addr}{path}\"\n    batch: {{ max_records: {BATCH}, max_bytes: 1MiB, linger: 20ms }}\n    max_in_flight: {c}\n    tasks: {t}\n",
        d = data.display(),
        p = args.partitions,
        c = args.connections,
        t = args.tasks
    );
    let registry = Arc::new(crate::run::builtin_connectors()?);
    let pipeline =
        parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (requests_before, records_before) = (
        counts.requests.load(Ordering::Relaxed),
        counts.records.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let worker = Worker::start(&pipeline, &registry, &log, WorkerOptions::default())
        .context("starting the sink")?;
    let deadline = started + Duration::from_secs(300);
    let total = per_partition * u64::from(args.partitions);
    loop {
        let got = counts.records.load(Ordering::Relaxed) - records_before;
        if got >= total {
            break;
        }
        if let Some((task, trace)) = worker.first_failure() {
            bail!("task {task} failed: {trace}");
        }
        if Instant::now() > deadline {
            bail!("the sink delivered {got} of {total} records in 300 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = started.elapsed().as_secs_f64();
    worker.stop(Duration::from_secs(10));
    log.close()?;
    std::fs::remove_dir_all(&data)?;
    Ok((
        counts.requests.load(Ordering::Relaxed) - requests_before,
        total,
        secs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_a_body_are_counted_and_are_about_200_bytes() {
        let body: Vec<String> = (0..BATCH as u64).map(record).collect();
        assert_eq!(
            count_records(format!("[{}]", body.join(",")).as_bytes()),
            BATCH as u64
        );
        assert!((190..=230).contains(&record(123_456).len()));
    }
}
