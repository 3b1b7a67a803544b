//! `sluice bench plugin`: the cost of the plugin boundary. The example plugin's connectors
//! (`sequence` source → topic → `jsonl` sink) run twice in the same process: linked in as
//! ordinary Rust, and loaded from the plugin library through the C ABI; same records, same
//! runtime. Medians of rounds, side by side, with the ratio.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::Worker;

use crate::cli::PluginBenchArgs;

fn default_library() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the binary's folder")?;
    Ok(dir.join(format!(
        "{}sluice_example_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )))
}

fn run_once(
    work: &std::path::Path,
    registry: &ConnectorRegistry,
    label: &str,
    records: u64,
) -> Result<f64> {
    let base = work.join(label);
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    // About 200-byte records, as in `sluice bench pipeline`.
    let yaml = format!(
        "runtime: {{ data_dir: {b}/data }}\ntopics: {{ t: {{ config: {{ flush.messages: -1, flush.ms: 1000 }} }} }}\nsources:\n  s: {{ type: sequence, topic: t, count: {records}, pad: 150 }}\nsinks:\n  k: {{ type: jsonl, topics: [t], file: {b}/out.jsonl }}\n",
        b = base.display()
    );
    let pipeline =
        parse_pipeline(&yaml, registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let log = Log::open(
        base.join("data"),
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )?;
    let start = Instant::now();
    let worker = Worker::start(&pipeline, registry, &log, Default::default())?;
    let deadline = start + Duration::from_secs(600);
    loop {
        let done = log
            .committed_offset("connect-k", "t", 0)
            .map(|c| c.offset)
            .unwrap_or(0);
        if done as u64 >= records {
            break;
        }
        if let Some((task, trace)) = worker.first_failure() {
            bail!("{label}: task {task} failed: {trace}");
        }
        if Instant::now() > deadline {
            bail!("{label}: the pipeline did not finish within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = start.elapsed().as_secs_f64();
    let left = worker.stop(Duration::from_secs(10));
    if !left.is_empty() {
        bail!("tasks did not stop: {left:?}");
    }
    log.close()?;
    std::fs::remove_dir_all(&base)?;
    Ok(secs)
}

pub fn run(args: PluginBenchArgs) -> Result<()> {
    let library = match args.library {
        Some(l) => l,
        None => default_library()?,
    };
    if !library.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p sluice-example-plugin`, or pass --library",
            library.display()
        );
    }
    let mut builtin = ConnectorRegistry::new();
    sluice_example_plugin::register(&mut builtin)?;
    let mut plugin = ConnectorRegistry::new();
    let info = sluice_worker::plugins::load_library(&library, &mut plugin)?;
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-plugin-")
        .tempdir_in(&args.dir)?;
    println!(
        "sluice bench plugin: {} records of about 200 bytes, sequence -> topic -> jsonl, plugin {} {} ({})",
        args.records,
        info.name,
        info.version,
        library.display()
    );
    let (mut linked, mut loaded) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        linked.push(run_once(work.path(), &builtin, "builtin", args.records)?);
        loaded.push(run_once(work.path(), &plugin, "plugin", args.records)?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (linked, loaded) = (median(&mut linked), median(&mut loaded));
    let n = args.records as f64;
    println!(
        "medians of {} rounds              records/s",
        args.rounds.max(1)
    );
    println!("{:<40} {:>12.0}", "built in (linked Rust)", n / linked);
    println!(
        "{:<40} {:>12.0}",
        "plugin (C ABI, dynamic library)",
        n / loaded
    );
    println!();
    println!("plugin / built in: {:.2}", linked / loaded);
    Ok(())
}
