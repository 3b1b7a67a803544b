//! `sluice bench broker`: the embedded broker under a real librdkafka client (Debian's
//! `kcat`), all on this machine: produce throughput with `acks=1` and `acks=all`, consume
//! throughput, and end-to-end latency at a fixed rate. The broker runs inside this process;
//! kcat runs as child processes, so client and broker share the machine's cores, as the
//! targets assume.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use sluice_broker::{Broker, BrokerConfig, BrokerState};
use sluice_log::{Log, LogOptions};
use tokio_util::sync::CancellationToken;

use crate::cli::BrokerBenchArgs;

pub(crate) fn kcat_available() -> bool {
    Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn producer_args(bootstrap: &str, topic: &str, acks: &str) -> Vec<String> {
    [
        "-b",
        bootstrap,
        "-P",
        "-t",
        topic,
        "-q",
        "-X",
        "linger.ms=5",
        "-X",
        &format!("acks={acks}"),
        "-X",
        "batch.num.messages=10000",
        "-X",
        "queue.buffering.max.messages=1000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub(crate) fn timed_produce(
    bootstrap: &str,
    topic: &str,
    acks: &str,
    input: &std::path::Path,
) -> Result<f64> {
    let file = std::fs::File::open(input)?;
    let start = Instant::now();
    let status = Command::new("kcat")
        .args(producer_args(bootstrap, topic, acks))
        .stdin(file)
        .status()
        .context("running kcat -P")?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("kcat -P (acks={acks}) failed: {status}");
    }
    Ok(secs)
}

pub(crate) fn timed_consume(bootstrap: &str, topic: &str, records: usize) -> Result<f64> {
    // Printing nothing per record (-f ''): what is timed is the fetch path, not kcat's output.
    // -c makes kcat exit only once it has received exactly that many records.
    let start = Instant::now();
    let status = Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-c",
            &records.to_string(),
            "-q",
            "-f",
            "",
        ])
        .stdout(Stdio::null())
        .status()
        .context("running kcat -C")?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("kcat -C failed: {status}");
    }
    Ok(secs)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Sends `rate` records/s for `duration` through kcat -P (linger 5 ms) and measures, in a kcat
/// -C reading the same partition, the time from hand-over to the producer to arrival.
fn latency(bootstrap: &str, topic: &str, rate: u64, duration: Duration) -> Result<Vec<f64>> {
    let mut consumer = Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "end",
            "-u",
            "-q",
            "-f",
            "%s\n",
            "-X",
            "fetch.wait.max.ms=100",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting kcat -C")?;
    let stdout = consumer.stdout.take().context("kcat stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<(u64, f64)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let arrived = now_nanos();
            let mut fields = line.split(' ');
            // Measured records are `SEQ NANOS PADDING`; warm-up records have no sequence number.
            let seq = fields
                .next()
                .and_then(|seq| seq.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            if let Some(sent) = fields.next().and_then(|s| s.parse::<u128>().ok()) {
                let _ = tx.send((seq, arrived.saturating_sub(sent) as f64 / 1e6));
            }
        }
    });
    let mut producer = Command::new("kcat")
        .args(producer_args(bootstrap, topic, "1"))
        .stdin(Stdio::piped())
        .spawn()
        .context("starting kcat -P")?;
    let mut stdin = producer.stdin.take().context("kcat stdin")?;
    // Warm-up: wait until the consumer sees records before measuring.
    let warm_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        writeln!(stdin, "warmup 0")?;
        stdin.flush()?;
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() || Instant::now() > warm_deadline {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    while rx.try_recv().is_ok() {}
    let total = rate * duration.as_secs();
    let start = Instant::now();
    let padding = "p".repeat(60);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        writeln!(stdin, "{i} {} {padding}", now_nanos())?;
        stdin.flush()?;
    }
    // kcat -P may hold back the last lines it read: keep feeding unmeasured lines while
    // waiting for the last measured ones.
    let mut samples = Vec::with_capacity(total as usize);
    let mut seen = vec![false; total as usize];
    let deadline = Instant::now() + Duration::from_secs(10);
    while (samples.len() as u64) < total && Instant::now() < deadline {
        writeln!(stdin, "tail 0")?;
        stdin.flush()?;
        if let Ok((seq, ms)) = rx.recv_timeout(Duration::from_millis(20)) {
            if let Some(slot) = seen.get_mut(seq as usize).filter(|s| !**s) {
                *slot = true;
                samples.push(ms);
            }
        }
    }
    drop(stdin);
    let _ = producer.wait();
    let _ = consumer.kill();
    let _ = consumer.wait();
    let _ = reader.join();
    if (samples.len() as u64) < total {
        let missing: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, s)| !**s)
            .map(|(i, _)| i)
            .take(10)
            .collect();
        bail!(
            "only {} of {total} latency records arrived; missing e.g. {missing:?}",
            samples.len()
        );
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(samples)
}

/// `records` lines of `size` bytes (and a newline) in `path`: what kcat produces, one
/// record per line.
pub(crate) fn write_records(path: &std::path::Path, records: usize, size: usize) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let value = "v".repeat(size);
    for _ in 0..records {
        writeln!(f, "{value}")?;
    }
    f.flush()?;
    Ok(())
}

/// The broker serving a fresh log inside this process, on a free loopback port.
pub(crate) struct InProcessBroker {
    runtime: tokio::runtime::Runtime,
    pub(crate) log: Log,
    pub(crate) bootstrap: String,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<Result<(), sluice_broker::BrokerError>>,
}

impl InProcessBroker {
    pub(crate) fn start(data_dir: &std::path::Path) -> Result<InProcessBroker> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let log = Log::open(data_dir, LogOptions::default())?;
        let broker = runtime.block_on(Broker::open(
            log.clone(),
            BrokerConfig {
                listen: "127.0.0.1:0".parse()?,
                ..BrokerConfig::default()
            },
        ))?;
        let state: Arc<BrokerState> = broker.state().clone();
        let bootstrap = format!("127.0.0.1:{}", state.advertised.1);
        let stop = CancellationToken::new();
        let serving = runtime.spawn(broker.serve(stop.clone()));
        Ok(InProcessBroker {
            runtime,
            log,
            bootstrap,
            stop,
            serving,
        })
    }

    /// Stops serving and closes the log cleanly.
    pub(crate) fn close(self) -> Result<()> {
        self.stop.cancel();
        let _ = self.runtime.block_on(self.serving);
        self.log.close()?;
        Ok(())
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(args: BrokerBenchArgs) -> Result<()> {
    if !kcat_available() {
        bail!("sluice bench broker drives the broker with kcat (librdkafka): install it first (apt-get install kcat)");
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-broker-")
        .tempdir_in(&args.dir)?;
    let input = work.path().join("records.txt");
    write_records(&input, args.records, args.record_size)?;
    let broker = InProcessBroker::start(&work.path().join("data"))?;
    let (log, bootstrap) = (broker.log.clone(), broker.bootstrap.clone());

    let n = args.records as f64;
    let mb = (args.records * args.record_size) as f64 / 1e6;
    println!("sluice bench broker: {} records of {} B, kcat (librdkafka) linger.ms=5, broker at {bootstrap}", args.records, args.record_size);
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let acks1 = timed_produce(&bootstrap, "bench-acks1", "1", &input)?;
    rows.push(("produce, acks=1", acks1));
    let acks_all = timed_produce(&bootstrap, "bench-acksall", "all", &input)?;
    rows.push(("produce, acks=all (fsync, group commit)", acks_all));
    let consume = timed_consume(&bootstrap, "bench-acks1", args.records)?;
    rows.push(("consume from the beginning", consume));
    println!("{:<42} {:>12} {:>9}", "", "records/s", "MB/s");
    for (name, secs) in &rows {
        println!("{:<42} {:>12.0} {:>9.1}", name, n / secs, mb / secs);
    }
    println!();
    println!("consume / produce (acks=1):   {:.2}", acks1 / consume);
    println!("acks=all / acks=1 (produce):  {:.2}", acks1 / acks_all);
    if args.latency_seconds > 0 {
        log.create_topic("bench-latency", 1, sluice_log::TopicConfig::default())?;
        let samples = latency(
            &bootstrap,
            "bench-latency",
            args.latency_rate,
            Duration::from_secs(args.latency_seconds),
        )?;
        println!();
        println!(
            "end-to-end latency at {} records/s for {} s ({} records, producer linger.ms=5): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            args.latency_rate,
            args.latency_seconds,
            samples.len(),
            pct(&samples, 0.50),
            pct(&samples, 0.99),
            pct(&samples, 0.999),
            samples.last().copied().unwrap_or(0.0)
        );
    }
    broker.close()
}
