//! `sluice bench webhook`: single-record POSTs from `wrk` to the `http_server` source, each
//! answered only once its record is in the log, beside `wrk` against a bare hello-world axum
//! server in the same process and run: requests per second and latency percentiles, with
//! the topic's default flush policy (an fsync per append) and with `flush.messages=-1`
//! (the operating system writes back). Each figure is the median of `--rounds` rounds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::bench_registry::{wrk_with, WrkResult};
use crate::cli::WebhookBenchArgs;

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Rows(Vec<WrkResult>);

impl Rows {
    fn print(&self, label: &str, bare_rps: f64) {
        let rps = median(self.0.iter().map(|r| r.requests_per_sec).collect());
        let p50 = median(self.0.iter().map(|r| r.p50_ms).collect());
        let p99 = median(self.0.iter().map(|r| r.p99_ms).collect());
        println!(
            "{label:<52} {rps:>11.0} {p50:>8.2} {p99:>8.2} {:>7.2}",
            rps / bare_rps
        );
    }
}

pub fn run(args: WebhookBenchArgs) -> Result<()> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("sluice bench webhook loads the listener with wrk: install it first (apt-get install wrk)");
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-webhook-")
        .tempdir_in(&args.dir)?;
    let base = work.path();
    let body = r#"{"event":"push","repository":"sluice","sender":"bench","size":3}"#;
    let script = base.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;

    // The bare server: hello world, on its own runtime.
    let bare_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = bare_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let bare_url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new().route("/", axum::routing::post(|| async { "ok" }));
    bare_runtime.spawn(async move { axum::serve(listener, app).await });

    // The webhook sources: one topic fsynced per append (the default), one left to the OS.
    let (fsynced, os) = (free_port()?, free_port()?);
    let yaml = format!(
        "runtime: {{ data_dir: {d}/data }}\ntopics:\n  fsynced: {{}}\n  unflushed: {{ config: {{ flush.messages: -1 }} }}\n\
         sources:\n  hook_fsynced: {{ type: http_server, topic: fsynced, listen: \"127.0.0.1:{fsynced}\" }}\n\
         \x20 hook_os: {{ type: http_server, topic: unflushed, listen: \"127.0.0.1:{os}\" }}\n",
        d = base.display()
    );
    let registry = Arc::new(crate::run::builtin_connectors()?);
    let pipeline =
        parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let log = Log::open(base.join("data"), LogOptions::default())?;
    let worker = Worker::start(&pipeline, &registry, &log, WorkerOptions::default())?;
    std::thread::sleep(Duration::from_millis(500)); // the listeners bind in their tasks

    println!(
        "sluice bench webhook: wrk -t1 -c{} for {} s per row, single-record JSON POSTs of {} B, {} rounds",
        args.connections,
        args.seconds,
        body.len(),
        args.rounds
    );
    println!(
        "{:<52} {:>11} {:>8} {:>8} {:>7}",
        "", "requests/s", "p50 ms", "p99 ms", "ratio"
    );
    let (mut bare, mut synced, mut unsynced) = (Rows::default(), Rows::default(), Rows::default());
    for _ in 0..args.rounds {
        bare.0.push(wrk_with(
            &bare_url,
            &script,
            args.connections,
            args.seconds,
        )?);
        synced.0.push(wrk_with(
            &format!("http://127.0.0.1:{fsynced}/"),
            &script,
            args.connections,
            args.seconds,
        )?);
        unsynced.0.push(wrk_with(
            &format!("http://127.0.0.1:{os}/"),
            &script,
            args.connections,
            args.seconds,
        )?);
    }
    if let Some((task, trace)) = worker.first_failure() {
        bail!("task {task} failed under load: {trace}");
    }
    let bare_rps = median(bare.0.iter().map(|r| r.requests_per_sec).collect());
    bare.print("bare axum hello world", bare_rps);
    synced.print(
        "http_server, 200 after the log (fsync per append)",
        bare_rps,
    );
    unsynced.print(
        "http_server, 200 after the log (flush.messages=-1)",
        bare_rps,
    );
    worker.stop(Duration::from_secs(10));
    log.close()?;
    drop(bare_runtime);
    Ok(())
}
