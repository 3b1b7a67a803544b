//! `sluice bench rest`: Kafka Connect's REST API of a running pipeline (file → topic → file,
//! fed all along by a writer thread, so the tasks are busy) under load from `wrk` on loopback:
//! requests per second and latency percentiles of the status call, the expanded list and
//! `/metrics`, and the records the pipeline delivered meanwhile.

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::metrics::WorkerMetrics;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::bench_registry::wrk_with;
use crate::cli::RestBenchArgs;

pub fn run(args: RestBenchArgs) -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("sluice bench rest loads the API with wrk: install it first (apt-get install wrk)");
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-rest-")
        .tempdir_in(&args.dir)?;
    let base = work.path();
    std::fs::create_dir_all(base.join("in"))?;
    let yaml = format!(
        "runtime: {{ data_dir: {b}/data }}\nsources:\n  lines_in: {{ type: file, topic: t, path: \"{b}/in/*.txt\", poll_interval: 10ms }}\n\
         sinks:\n  lines_out: {{ type: file, topics: [t], path: {b}/out, roll_interval: 100ms }}\n",
        b = base.display()
    );
    let registry = Arc::new(crate::run::builtin_connectors()?);
    let pipeline =
        parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let log = Log::open(base.join("data"), LogOptions::default())?;
    let worker = Arc::new(Worker::start(
        &pipeline,
        &registry,
        &log,
        WorkerOptions {
            metrics: Some(Arc::new(WorkerMetrics::new("bench"))),
            ..Default::default()
        },
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(sluice_rest::serve::RestListener::bind(
        "127.0.0.1:0".parse()?,
        Default::default(),
    ))?;
    let addr = listener.local_addr();
    let api = sluice_rest::RestApi {
        worker: worker.clone(),
        registry: registry.clone(),
        info: sluice_rest::ServerInfo::new("bench", &addr.to_string(), "bench.yaml"),
        data: None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    runtime.spawn(listener.serve(api, async move { stopped.cancelled().await }));

    // Keeps the pipeline busy: a file of 2,000 lines every 20 ms.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, inbox) = (writing.clone(), base.join("in"));
        std::thread::spawn(move || -> std::io::Result<u64> {
            let mut n = 0u64;
            while writing.load(Ordering::Relaxed) {
                let staged = inbox.join(format!(".{n}"));
                let mut f = std::io::BufWriter::new(std::fs::File::create(&staged)?);
                for i in 0..2000 {
                    writeln!(
                        f,
                        "{{\"n\":{n},\"i\":{i},\"note\":\"a line of the REST benchmark\"}}"
                    )?;
                }
                f.flush()?;
                drop(f);
                std::fs::rename(&staged, inbox.join(format!("{n:06}.txt")))?;
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(n * 2000)
        })
    };
    println!(
        "sluice bench rest: wrk -t1 -c{} for {} s per call, against a running file -> topic -> file pipeline",
        args.connections, args.seconds
    );
    println!(
        "{:<44} {:>10} {:>9} {:>9}",
        "call", "requests/s", "p50 ms", "p99 ms"
    );
    let url = format!("http://{addr}");
    for (label, path) in [
        (
            "GET /connectors/lines_out/status",
            "/connectors/lines_out/status",
        ),
        (
            "GET /connectors?expand=status&expand=info",
            "/connectors?expand=status&expand=info",
        ),
        ("GET /metrics", "/metrics"),
    ] {
        let script = base.join("call.lua");
        std::fs::write(
            &script,
            format!("request = function()\n  return wrk.format(\"GET\", \"{path}\")\nend\n"),
        )?;
        let r = wrk_with(&url, &script, args.connections, args.seconds)?;
        println!(
            "{label:<44} {:>10.0} {:>9.2} {:>9.2}",
            r.requests_per_sec, r.p50_ms, r.p99_ms
        );
    }
    writing.store(false, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    if let Some((task, trace)) = worker.first_failure() {
        bail!("task {task} failed under load: {trace}");
    }
    let delivered = log
        .committed_offset("connect-lines_out", "t", 0)
        .map_or(0, |c| c.offset);
    println!("records written meanwhile: {written}, delivered by the sink so far: {delivered}");
    stop.cancel();
    drop(runtime);
    worker.stop(Duration::from_secs(10));
    log.close()?;
    Ok(())
}
