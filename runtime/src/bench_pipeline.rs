//! `sluice bench pipeline`: file → topic → file through the real runtime (file source, log,
//! exactly-once file sink), beside `cp` of the same input in the same run, with peak memory.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::metrics::WorkerMetrics;
use sluice_worker::run::{Worker, WorkerOptions};

use crate::cli::PipelineBenchArgs;

pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Records in the sink's finished files (named by their first and last offsets).
fn count_output_lines(dir: &std::path::Path, ext: &str) -> usize {
    let suffix = format!(".{ext}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(&suffix)
                .and_then(|n| {
                    let parts: Vec<&str> = n.rsplitn(3, '-').collect();
                    Some(
                        parts.first()?.parse::<i64>().ok()? - parts.get(1)?.parse::<i64>().ok()?
                            + 1,
                    )
                })
        })
        .sum::<i64>() as usize
}

/// Every run: its name for `--runs` and its label in the figures.
pub const RUNS: [(&str, &str); 6] = [
    ("bytes", "pipeline, bytes pass-through"),
    ("bytes-no-metrics", "pipeline, bytes, metrics off"),
    ("json", "pipeline, json checked in and out"),
    ("avro", "pipeline, json -> avro topic -> json"),
    ("envelope", "pipeline, json -> Connect envelope"),
    ("csv", "pipeline, csv -> json topic -> csv"),
];

/// The runs `--runs` names, in [`RUNS`]' order; an unknown name is an error.
pub fn chosen_runs(names: &[String]) -> Result<Vec<(&'static str, &'static str)>> {
    if let Some(unknown) = names.iter().find(|n| !RUNS.iter().any(|(r, _)| r == n)) {
        let known: Vec<&str> = RUNS.iter().map(|(r, _)| *r).collect();
        bail!("unknown run `{unknown}`: use any of {}", known.join(", "));
    }
    Ok(RUNS
        .into_iter()
        .filter(|(name, _)| names.iter().any(|n| n == name))
        .collect())
}

const SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"customer","type":"string"},{"name":"email","type":"string"},{"name":"amount","type":"double"},{"name":"currency","type":"string"},{"name":"status","type":"string"},{"name":"note","type":"string"}]}"#;

fn run_once(
    work: &std::path::Path,
    input: &std::path::Path,
    format: &str,
    records: usize,
    kafka: Option<&str>,
) -> Result<f64> {
    // Every run counts into metrics, as `sluice run` does, but the one that measures them.
    let (format, metrics) = match format.strip_suffix("-no-metrics") {
        Some(base) => (base, false),
        None => (format, true),
    };
    let run_dir = if metrics {
        format!("run-{format}")
    } else {
        format!("run-{format}-no-metrics")
    };
    let (source, sink) = match format {
        "avro" => (
            format!("value_format: avro, value_schema: '{SCHEMA}'"),
            "value_format: avro".to_string(),
        ),
        "envelope" => (
            format!("value_format: json, value_schemas_enable: true, value_schema: '{SCHEMA}'"),
            "value_format: json, value_schemas_enable: true".to_string(),
        ),
        "csv" => (
            "value_format: json, format: csv".to_string(),
            "value_format: json, format: csv".to_string(),
        ),
        _ => (
            format!("value_format: {format}"),
            format!("value_format: {format}"),
        ),
    };
    // The csv run reads the CSV twin of the input (see [`write_input`]) and writes CSV.
    let ext = if format == "csv" { "csv" } else { "jsonl" };
    let csv_twin;
    let input = if format == "csv" {
        csv_twin = input.with_extension("csv");
        if !csv_twin.exists() {
            bail!(
                "the csv run reads {}, the CSV twin of its input; let `sluice bench pipeline` write its input (leave out --input)",
                csv_twin.display()
            );
        }
        csv_twin.as_path()
    } else {
        input
    };
    let base = work.join(run_dir);
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("in"))?;
    // On Kafka every run has its own topic and groups (the cluster outlives the runs), and
    // the topic keeps Kafka's defaults (its flush settings are the broker's business).
    static KAFKA_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let (runtime, topic, topic_config) = match kafka {
        Some(servers) => {
            let n = KAFKA_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (
                format!(
                    "{{ data_dir: {}/data, kafka: {{ bootstrap_servers: \"{servers}\", group: bench-{n} }} }}",
                    base.display()
                ),
                format!("t{n}"),
                String::new(),
            )
        }
        None => (
            format!("{{ data_dir: {}/data }}", base.display()),
            "t".to_string(),
            "config: { flush.messages: -1, flush.ms: 1000 }".to_string(),
        ),
    };
    let yaml = format!(
        "runtime: {runtime}\ntopics: {{ {topic}: {{ {topic_config} }} }}\nsources:\n  s: {{ type: file, topic: {topic}, {source}, path: {b}/in/*.{ext}, poll_interval: 10ms }}\nsinks:\n  k: {{ type: file, topics: [{topic}], {sink}, path: {b}/out, roll_bytes: 67108864, roll_interval: 20ms }}\n",
        b = base.display()
    );
    let registry = crate::run::builtin_connectors()?;
    let pipeline =
        parse_pipeline(&yaml, &registry, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let log = Log::open(
        base.join("data"),
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )?;
    let kafka = match &pipeline.kafka {
        Some(settings) => Some(std::sync::Arc::new(
            sluice_worker::on_kafka::KafkaRuntime::connect(settings.clone())?,
        )),
        None => None,
    };
    let options = WorkerOptions {
        metrics: metrics.then(|| std::sync::Arc::new(WorkerMetrics::new("bench"))),
        kafka,
        ..Default::default()
    };
    let worker = Worker::start(&pipeline, &registry, &log, options)?;
    let start = Instant::now();
    // The source sees the file appear whole (a rename), as a finished log file would.
    std::fs::hard_link(input, base.join("in/.staged"))
        .or_else(|_| std::fs::copy(input, base.join("in/.staged")).map(|_| ()))?;
    std::fs::rename(
        base.join("in/.staged"),
        base.join(format!("in/input.{ext}")),
    )?;
    let deadline = start + Duration::from_secs(600);
    while count_output_lines(&base.join("out"), ext) < records {
        if Instant::now() > deadline {
            bail!("the pipeline did not finish within 10 minutes");
        }
        if let Some((task, trace)) = worker.first_failure() {
            bail!("task {task} failed: {trace}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();

    let left = worker.stop(Duration::from_secs(10));
    if !left.is_empty() {
        bail!("tasks did not stop: {left:?}");
    }
    log.close()?;
    Ok(secs)
}

pub fn run(args: PipelineBenchArgs) -> Result<()> {
    let runs = chosen_runs(&args.runs)?;
    if args.instructions {
        return crate::bench_instructions::run(&args);
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-pipeline-")
        .tempdir_in(&args.dir)?;
    let input = match &args.input {
        Some(given) => given.clone(),
        None => {
            let input = work.path().join("input.jsonl");
            write_input(&input, args.records)?;
            input
        }
    };
    if args.once {
        // One run of one format, nothing else: what --instructions counts under callgrind.
        let [format] = args.runs.as_slice() else {
            bail!("--once takes exactly one run");
        };
        run_once(work.path(), &input, format, args.records, None)?;
        return Ok(());
    }
    let bytes = std::fs::metadata(&input)?.len() as f64;
    let mb = bytes / 1e6;
    println!(
        "sluice bench pipeline: {} JSON lines, {:.1} MB, file -> topic -> file",
        args.records, mb
    );
    // Rounds interleave `cp` and the runs, so that each sees the same machine; every run's
    // files are removed before the next, so page-cache pressure stays alike.
    let mut cp_times = Vec::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut kafka_times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let kafka_node = if args.on_kafka {
        let lib = args.kafka_lib.as_ref().context(
            "--on-kafka needs Apache Kafka's jars: --kafka-lib or SLUICE_KAFKA_LIB (scripts/kafka-jars.sh prints the folder)",
        )?;
        let node = crate::bench_kafka::KafkaNode::start(lib, &work.path().join("kafka"))?;
        println!("Apache Kafka node at {}", node.bootstrap);
        Some(node)
    } else {
        None
    };
    // A run writes the log and the output (two copies of the input), `cp` one: the scratch
    // file covers both with room to spare.
    let settle = || prepare_page_cache(&args.page_cache, work.path(), 3 * bytes as usize);
    for _ in 0..args.rounds.max(1) {
        let copy = work.path().join("copy.jsonl");
        settle()?;
        let cp_start = Instant::now();
        let status = Command::new("cp")
            .arg(&input)
            .arg(&copy)
            .status()
            .context("running cp")?;
        if !status.success() {
            bail!("cp failed");
        }
        cp_times.push(cp_start.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;
        for (i, (format, _)) in runs.iter().enumerate() {
            settle()?;
            times[i].push(run_once(work.path(), &input, format, args.records, None)?);
            std::fs::remove_dir_all(work.path().join(format!("run-{format}")))?;
            if let Some(node) = &kafka_node {
                settle()?;
                let secs = run_once(
                    work.path(),
                    &input,
                    format,
                    args.records,
                    Some(&node.bootstrap),
                )?;
                kafka_times[i].push(secs);
                std::fs::remove_dir_all(work.path().join(format!("run-{format}")))?;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let cp = median(&mut cp_times);
    let n = args.records as f64;
    println!(
        "medians of {} rounds              records/s      MB/s",
        args.rounds.max(1)
    );
    println!("{:<40} {:>12.0} {:>9.1}", "cp", n / cp, mb / cp);
    let (mut bytes_run, mut no_metrics_run) = (None, None);
    for (i, (format, label)) in runs.iter().enumerate() {
        let secs = median(&mut times[i]);
        match *format {
            "bytes" => bytes_run = Some(secs),
            "bytes-no-metrics" => no_metrics_run = Some(secs),
            _ => {}
        }
        println!("{label:<40} {:>12.0} {:>9.1}", n / secs, mb / secs);
        if kafka_node.is_some() {
            let on_kafka = median(&mut kafka_times[i]);
            println!(
                "{:<40} {:>12.0} {:>9.1}   (on Kafka / embedded: {:.2})",
                format!("{label}, on Kafka"),
                n / on_kafka,
                mb / on_kafka,
                secs / on_kafka
            );
        }
    }
    if let Some(bytes_run) = bytes_run {
        println!("bytes pass-through / cp: {:.2}", cp / bytes_run);
        if let Some(off) = no_metrics_run {
            println!(
                "bytes pass-through, metrics on / off: {:.3}",
                off / bytes_run
            );
        }
    }
    println!(
        "peak memory of this process (VmHWM): {:.0} MB",
        peak_rss_mb()
    );
    Ok(())
}

/// Brings the page cache's memory to the same state before each timed step (see
/// `--page-cache`): on a VM whose freed memory goes back to the host after a second or two,
/// pages the kernel takes from it cost a fault in the hypervisor each (about 0.5 s per
/// 200 MB here), and a step that happens to reuse memory just freed does not pay that.
fn prepare_page_cache(mode: &str, dir: &std::path::Path, bytes: usize) -> Result<()> {
    match mode {
        "warm" => {
            let scratch = dir.join("page-cache-scratch");
            {
                let mut f =
                    std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&scratch)?);
                let block = vec![0x5au8; 1 << 20];
                for _ in 0..bytes.div_ceil(block.len()) {
                    f.write_all(&block)?;
                }
                f.flush()?;
            }
            std::fs::remove_file(&scratch)?;
        }
        "cold" => std::thread::sleep(Duration::from_secs(4)),
        _ => {}
    }
    Ok(())
}

/// The fixed input: `records` JSON lines of about 200 bytes.
/// The input: `records` JSON lines of ~200 bytes at `input`, and the same records as CSV
/// (a header row, then one row each) at its `.csv` twin, for the csv run.
pub fn write_input(input: &std::path::Path, records: usize) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(input)?);
    let mut csv = std::io::BufWriter::new(std::fs::File::create(input.with_extension("csv"))?);
    writeln!(csv, "id,customer,email,amount,currency,status,note")?;
    let note = "n".repeat(60);
    for i in 0..records {
        let (customer, euros, cents) = (i % 100_000, i % 997, i % 100);
        // About 200 bytes of JSON per line.
        writeln!(
            f,
            r#"{{"id":{i},"customer":"customer-{customer:06}","email":"user{i}@example.com","amount":{euros}.{cents:02},"currency":"EUR","status":"confirmed","note":"{note}"}}"#,
        )?;
        writeln!(
            csv,
            "{i},customer-{customer:06},user{i}@example.com,{euros}.{cents:02},EUR,confirmed,{note}"
        )?;
    }
    f.flush()?;
    csv.flush()?;
    Ok(())
}
