//! `sluice bench log`: append and read throughput of one partition, measured in the same run
//! as the machine's raw sequential file I/O on the same bytes, so that the ratios mean
//! something on a shared, noisy machine. Each figure is the median of `--rounds` runs.
//!
//! The write rows model a broker: each batch is first copied into a receive buffer (what a
//! socket read does), then written raw, or appended (CRC32C check, offset assignment, index
//! upkeep, write, fsync per policy). Batches are built before timing; building them is
//! reported on its own row.

use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sluice_log::{BatchBuilder, Log, LogOptions, Record, TopicConfig};

use crate::cli::{BenchCommand, LogBenchArgs};

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Log(args) => log_bench(args),
        BenchCommand::Broker(args) => crate::bench_broker::run(args),
        BenchCommand::Registry(args) => crate::bench_registry::run(args),
        BenchCommand::Pipeline(args) => crate::bench_pipeline::run(args),
        BenchCommand::Plugin(args) => crate::bench_plugin::run(args),
        BenchCommand::Rest(args) => crate::bench_rest::run(args),
        BenchCommand::HttpSink(args) => crate::bench_http::run(args),
        BenchCommand::Webhook(args) => crate::bench_webhook::run(args),
        BenchCommand::PostgresSink(args) => crate::bench_postgres::run(args),
        BenchCommand::PostgresCdc(args) => crate::bench_cdc::run(args),
        BenchCommand::PostgresReplication(args) => crate::bench_replication::run(args),
        BenchCommand::Kafka(args) => crate::bench_kafka::run(args),
    }
}

#[derive(Default)]
pub(crate) struct Samples(pub(crate) Vec<f64>);

impl Samples {
    pub(crate) fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

const ROWS: [&str; 10] = [
    "encode batches (CPU only)",
    "raw write, buffered",
    "append, fsync never",
    "append, fsync every 100 ms",
    "raw write + fdatasync per batch",
    "append, fsync every append",
    "raw read, page cache",
    "read, page cache",
    "read + decode every record",
    "sequential read, 4 KiB fetches",
];

fn build_batches(args: &LogBenchArgs) -> Vec<Vec<u8>> {
    let value: Vec<u8> = (0..args.record_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let ts = sluice_log::now_ms();
    (0..args.records.div_ceil(args.batch_records))
        .map(|b| {
            let n = args
                .batch_records
                .min(args.records - b * args.batch_records);
            let mut builder = BatchBuilder::with_capacity(n * (args.record_size + 10));
            for _ in 0..n {
                builder.push(&Record {
                    key: None,
                    value: Some(&value),
                    timestamp: ts,
                    headers: vec![],
                });
            }
            builder.build()
        })
        .collect()
}

/// Both write paths start from a batch just received into a buffer, as a broker's socket read
/// leaves it: the same copy is timed on both sides, and the bytes are as warm as in real life.
fn receive(buf: &mut Vec<u8>, batch: &[u8]) {
    buf.clear();
    buf.extend_from_slice(batch);
}

fn raw_write(path: &std::path::Path, batches: &[Vec<u8>], sync_each: bool) -> Result<Duration> {
    let mut f = File::create(path)?;
    let mut received = Vec::with_capacity(batches.iter().map(Vec::len).max().unwrap_or(0));
    let start = Instant::now();
    for b in batches {
        receive(&mut received, b);
        f.write_all(&received)?;
        if sync_each {
            f.sync_data()?;
        }
    }
    let elapsed = start.elapsed();
    Ok(elapsed)
}

fn raw_read(path: &std::path::Path) -> Result<(Duration, u64)> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let start = Instant::now();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((start.elapsed(), total))
}

fn append_all(
    log: &Log,
    topic: &str,
    config: TopicConfig,
    batches: &[Vec<u8>],
) -> Result<Duration> {
    log.create_topic(topic, 1, config)?;
    let p = log.partition(topic, 0)?;
    let mut received = Vec::with_capacity(batches.iter().map(Vec::len).max().unwrap_or(0));
    let now = sluice_log::now_ms();
    let start = Instant::now();
    for b in batches {
        receive(&mut received, b);
        p.append(&mut received, now)?;
    }
    // Like the raw baseline, no final fsync: each mode's own policy is what is measured.
    Ok(start.elapsed())
}

fn read_all(
    log: &Log,
    topic: &str,
    fetch_bytes: usize,
    decode: bool,
) -> Result<(Duration, u64, u64)> {
    let p = log.partition(topic, 0)?;
    let (mut offset, end) = (p.log_start_offset(), p.end_offset());
    let (mut bytes, mut records) = (0u64, 0u64);
    let start = Instant::now();
    while offset < end {
        let r = p.read(offset, fetch_bytes)?;
        bytes += r.records.len() as u64;
        for (at, h) in sluice_log::batch::split_record_set(&r.records)? {
            if decode {
                let recs = sluice_log::record::decode_records(&r.records[at..at + h.size], &h)?;
                records += recs.iter().filter(|r| r.value.is_some()).count() as u64;
            } else {
                records += h.records_count as u64;
            }
            offset = h.last_offset() + 1;
        }
    }
    Ok((start.elapsed(), bytes, records))
}

/// Appends `values` (keyless) to `partition` in batches of about 256 KB: how the benches
/// that measure a sink fill its topic before timing.
pub(crate) fn append_values(
    partition: &sluice_log::Partition,
    values: impl Iterator<Item = String>,
) -> Result<()> {
    let mut batch = BatchBuilder::new();
    for value in values {
        batch.push(&Record {
            key: None,
            value: Some(value.as_bytes()),
            timestamp: sluice_log::now_ms(),
            headers: Vec::new(),
        });
        if batch.size_estimate() >= 256 * 1024 {
            partition.append(
                &mut std::mem::take(&mut batch).build(),
                sluice_log::now_ms(),
            )?;
        }
    }
    if !batch.is_empty() {
        partition.append(&mut batch.build(), sluice_log::now_ms())?;
    }
    Ok(())
}

fn cfg(pairs: &[(&str, &str)]) -> Result<TopicConfig> {
    Ok(TopicConfig::from_pairs(pairs.iter().copied())?)
}

fn log_bench(args: LogBenchArgs) -> Result<()> {
    anyhow::ensure!(
        args.records > 0 && args.batch_records > 0 && args.rounds > 0,
        "records, batch size and rounds must be positive"
    );
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a temporary folder in {}", args.dir.display()))?;
    let encode_start = Instant::now();
    let batches = build_batches(&args);
    let encode_time = encode_start.elapsed();
    let total_bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let n = args.records as f64;
    let mb = total_bytes as f64 / 1e6;
    println!(
        "sluice bench log: {} records of {} B in batches of {} ({:.1} MB on disk), {} rounds, in {}",
        args.records,
        args.record_size,
        args.batch_records,
        mb,
        args.rounds,
        work.path().display()
    );
    // (seconds per row); rate = records / seconds.
    let mut secs: Vec<Samples> = ROWS.iter().map(|_| Samples::default()).collect();
    let mut ratio_never = Samples::default();
    let mut ratio_read = Samples::default();
    let mut ratio_fsync = Samples::default();
    for round in 0..args.rounds {
        let dir = work.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&dir)?;
        let raw_path = dir.join("raw.bin");
        secs[0].0.push(encode_time.as_secs_f64());
        let raw = raw_write(&raw_path, &batches, false)?.as_secs_f64();
        let log = Log::open(
            dir.join("log"),
            LogOptions {
                read_only: false,
                maintenance_interval: None,
            },
        )?;
        let never =
            append_all(&log, "never", cfg(&[("flush.messages", "-1")])?, &batches)?.as_secs_f64();
        let timed = append_all(
            &log,
            "every-100ms",
            cfg(&[("flush.messages", "-1"), ("flush.ms", "100")])?,
            &batches,
        )?
        .as_secs_f64();
        // fsync per append is ~1-3 ms here: measure it on a tenth of the data.
        let tenth = &batches[..(batches.len() / 10).max(1)];
        let tenth_frac = tenth.len() as f64 / batches.len() as f64;
        let raw_sync =
            raw_write(&dir.join("raw-sync.bin"), tenth, true)?.as_secs_f64() / tenth_frac;
        let each = append_all(
            &log,
            "every-append",
            cfg(&[("flush.messages", "1")])?,
            tenth,
        )?
        .as_secs_f64()
            / tenth_frac;
        let (raw_read_t, _) = raw_read(&raw_path)?;
        let (read_t, read_bytes, read_records) = read_all(&log, "never", 1 << 20, false)?;
        anyhow::ensure!(
            read_bytes == total_bytes && read_records == args.records as u64,
            "read back {read_records} records / {read_bytes} bytes, expected {} / {total_bytes}",
            args.records
        );
        let (decode_t, _, decoded) = read_all(&log, "never", 1 << 20, true)?;
        anyhow::ensure!(decoded == args.records as u64, "decoded {decoded} records");
        let (small_t, _, _) = read_all(&log, "never", 4096, false)?;
        log.close()?;
        drop(log);
        for (row, t) in [(1, raw), (2, never), (3, timed), (4, raw_sync), (5, each)] {
            secs[row].0.push(t);
        }
        secs[6].0.push(raw_read_t.as_secs_f64());
        secs[7].0.push(read_t.as_secs_f64());
        secs[8].0.push(decode_t.as_secs_f64());
        secs[9].0.push(small_t.as_secs_f64());
        ratio_never.0.push(raw / never);
        ratio_fsync.0.push(raw_sync / each);
        ratio_read
            .0
            .push(raw_read_t.as_secs_f64() / read_t.as_secs_f64());
        std::fs::remove_dir_all(&dir)?;
    }
    println!("{:<34} {:>14} {:>10}", "", "records/s", "MB/s");
    for (i, name) in ROWS.iter().enumerate() {
        let s = secs[i].median();
        println!("{:<34} {:>14.0} {:>10.1}", name, n / s, mb / s);
    }
    println!();
    println!(
        "append (fsync never) / raw buffered write:     {:.2}",
        ratio_never.median()
    );
    println!(
        "append (fsync each) / raw write+fdatasync:     {:.2}",
        ratio_fsync.median()
    );
    println!(
        "read (page cache) / raw read (page cache):     {:.2}",
        ratio_read.median()
    );
    Ok(())
}
