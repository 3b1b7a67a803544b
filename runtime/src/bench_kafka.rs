//! `sluice bench kafka`: `sluice broker` beside one Apache Kafka node (KRaft, broker and
//! controller in one JVM, from the Maven jars of `scripts/kafka-jars.sh`) on this machine,
//! driven by the same clients with the same settings, alternated within each round so that
//! a noisy neighbour hurts both alike. Medians of `--rounds`; ratios are Sluice ÷ Kafka.
//!
//! Workloads, each on a fresh one-partition topic:
//! - Kafka's `ProducerPerformance` (Java client): `acks=all` with idempotence (the 4.x
//!   defaults), then `acks=1` without, as fast as it goes; `linger.ms=5`, `batch.size=65536`,
//!   no compression. Latency comes from a third run at a fixed rate (`--latency-rate` for 5 s,
//!   `acks=all`): at full speed, latency is mostly time queued in the client's buffer.
//! - Kafka's `ConsumerPerformance` reading the `acks=all` topic (fetch rate, the group's join
//!   excluded).
//! - kcat (librdkafka) producing with `acks=1` and consuming, as `sluice bench broker` does.
//!
//! Durability differs and is printed: Kafka acknowledges `acks=all` once the record is in
//! its page cache (it relies on replicas, and one node has none), Sluice once it is fsynced.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::Samples;
use crate::bench_broker::{
    kcat_available, timed_consume, timed_produce, write_records, InProcessBroker,
};
use crate::cli::KafkaBenchArgs;

const LOG4J: &str = "status=warn\nappender.c.type=Console\nappender.c.name=OUT\nappender.c.layout.type=PatternLayout\nappender.c.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level=INFO\nrootLogger.appenderRef.c.ref=OUT\n";

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One Apache Kafka node in a child JVM; killed when dropped.
pub(crate) struct KafkaNode {
    child: Child,
    pub(crate) bootstrap: String,
}

impl KafkaNode {
    pub(crate) fn start(lib: &Path, dir: &Path) -> Result<KafkaNode> {
        let (port, controller) = (free_port()?, free_port()?);
        std::fs::create_dir_all(dir)?;
        let props = dir.join("server.properties");
        let log4j = dir.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J)?;
        std::fs::write(
            &props,
            format!(
                "process.roles=broker,controller\nnode.id=1\n\
                 controller.quorum.bootstrap.servers=127.0.0.1:{controller}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                 log.dirs={}\nnum.partitions=1\noffsets.topic.replication.factor=1\n\
                 transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
                 share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n",
                dir.join("data").display()
            ),
        )?;
        let classpath = format!("{}/*", lib.display());
        let java = |args: &[&str]| {
            let mut c = Command::new("java");
            c.arg(format!(
                "-Dlog4j2.configurationFile=file:{}",
                log4j.display()
            ))
            .arg("-cp")
            .arg(&classpath)
            .args(args);
            c
        };
        let id = java(&["kafka.tools.StorageTool", "random-uuid"])
            .stderr(Stdio::null())
            .output()
            .context("running java (is a JDK 17+ installed?)")?;
        let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
        let props_arg = props.display().to_string();
        let formatted = java(&[
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            &id,
            "-c",
            &props_arg,
        ])
        .stdout(Stdio::null())
        .status()?;
        if !formatted.success() {
            bail!("formatting the Kafka node's storage failed ({formatted}); is {} a Kafka classpath?", lib.display());
        }
        let out = std::fs::File::create(dir.join("kafka.log"))?;
        let child = Command::new("java")
            .args([
                "-Xms1g",
                "-Xmx1g",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile=file:{}",
                log4j.display()
            ))
            .arg(format!("-Dkafka.logs.dir={}", dir.join("logs").display()))
            .arg("-cp")
            .arg(&classpath)
            .arg("kafka.Kafka")
            .arg(&props)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting kafka.Kafka")?;
        let node = KafkaNode {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let log = std::fs::read_to_string(dir.join("kafka.log")).unwrap_or_default();
            if log.contains("Kafka Server started") {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!(
                    "Kafka did not start within 90 s; see {}",
                    dir.join("kafka.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Kafka tool's main class and returns its stdout.
fn tool(lib: &Path, log4j: &Path, class: &str, args: &[String]) -> Result<String> {
    let out = Command::new("java")
        .args(["-Xmx512m", "-XX:+UseG1GC"])
        .arg(format!(
            "-Dlog4j2.configurationFile=file:{}",
            log4j.display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(class)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {class}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{class} failed ({}): {stdout}", out.status);
    }
    Ok(stdout)
}

/// ProducerPerformance's summary: records/s, then p50, p99 and max latency in ms.
struct ProduceFigures {
    per_sec: f64,
    p50: f64,
    p99: f64,
}

fn parse_producer(out: &str) -> Result<ProduceFigures> {
    // "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
    //  p50 ms 50th, p95 ms 95th, p99 ms 99th, p999 ms 99.9th."
    let last = out
        .lines()
        .rev()
        .find(|l| l.contains("50th"))
        .with_context(|| format!("no summary line in ProducerPerformance's output: {out}"))?;
    let number_before = |marker: &str| -> Result<f64> {
        let head = &last[..last
            .find(marker)
            .with_context(|| format!("`{marker}` in `{last}`"))?];
        head.split([' ', ','])
            .rfind(|w| !w.is_empty())
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("a number before `{marker}` in `{last}`"))
    };
    Ok(ProduceFigures {
        per_sec: number_before(" records/sec")?,
        p50: number_before(" ms 50th")?,
        p99: number_before(" ms 99th")?,
    })
}

fn parse_consumer(out: &str) -> Result<f64> {
    // CSV: start, end, MB, MB/s, nMsg, nMsg/s, rebalance ms, fetch ms, fetch MB/s, fetch nMsg/s
    let row = out
        .lines()
        .rev()
        .find(|l| l.split(',').count() >= 10 && !l.starts_with("start.time"))
        .with_context(|| format!("no result row in ConsumerPerformance's output: {out}"))?;
    row.split(',')
        .nth(9)
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("fetch.nMsg.sec in `{row}`"))
}

const ROWS: [&str; 7] = [
    "Java producer, acks=all, idempotent: records/s",
    "  latency p50 (ms) at a fixed rate",
    "  latency p99 (ms) at a fixed rate",
    "Java producer, acks=1: records/s",
    "Java consumer (fetch): records/s",
    "kcat produce, acks=1: records/s",
    "kcat consume: records/s",
];

/// Every workload once against `bootstrap`; `tag` keeps topic names apart.
fn workloads(
    args: &KafkaBenchArgs,
    log4j: &Path,
    input: &Path,
    bootstrap: &str,
    tag: &str,
) -> Result<[f64; 7]> {
    let lib = &args.kafka_lib;
    let n = args.records.to_string();
    let size = args.record_size.to_string();
    let produce =
        |topic: &str, records: &str, rate: &str, props: &[&str]| -> Result<ProduceFigures> {
            let mut a: Vec<String> = [
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--num-records",
                records,
                "--record-size",
                &size,
                "--throughput",
                rate,
                "--command-property",
                "linger.ms=5",
                "batch.size=65536",
                "compression.type=none",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.extend(props.iter().map(|s| s.to_string()));
            parse_producer(&tool(
                lib,
                log4j,
                "org.apache.kafka.tools.ProducerPerformance",
                &a,
            )?)
        };
    let all = produce(
        &format!("{tag}-all"),
        &n,
        "-1",
        &["acks=all", "enable.idempotence=true"],
    )?;
    let one = produce(
        &format!("{tag}-one"),
        &n,
        "-1",
        &["acks=1", "enable.idempotence=false"],
    )?;
    let paced = produce(
        &format!("{tag}-paced"),
        &(args.latency_rate * 5).to_string(),
        &args.latency_rate.to_string(),
        &["acks=all", "enable.idempotence=true"],
    )?;
    let consumer_args: Vec<String> = [
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &format!("{tag}-all"),
        "--num-records",
        &n,
        "--group",
        &format!("{tag}-group"),
        "--timeout",
        "60000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let consumed = parse_consumer(&tool(
        lib,
        log4j,
        "org.apache.kafka.tools.ConsumerPerformance",
        &consumer_args,
    )?)?;
    let records = args.records as f64;
    let kcat_topic = format!("{tag}-kcat");
    let kcat_produce = records / timed_produce(bootstrap, &kcat_topic, "1", input)?;
    let kcat_consume = records / timed_consume(bootstrap, &kcat_topic, args.records)?;
    Ok([
        all.per_sec,
        paced.p50,
        paced.p99,
        one.per_sec,
        consumed,
        kcat_produce,
        kcat_consume,
    ])
}

pub fn run(args: KafkaBenchArgs) -> Result<()> {
    if !kcat_available() {
        bail!("sluice bench kafka also drives both brokers with kcat: install it first (apt-get install kcat)");
    }
    if !args.kafka_lib.join(".complete").exists() {
        bail!(
            "{} is not a complete Kafka classpath: pass --kafka-lib \"$(scripts/kafka-jars.sh)\" (or set SLUICE_KAFKA_LIB)",
            args.kafka_lib.display()
        );
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-kafka-")
        .tempdir_in(&args.dir)?;
    let log4j = work.path().join("tools-log4j2.properties");
    std::fs::write(&log4j, LOG4J.replace("INFO", "WARN"))?;
    let input = work.path().join("records.txt");
    write_records(&input, args.records, args.record_size)?;
    let broker = InProcessBroker::start(&work.path().join("sluice"))?;
    let sluice = broker.bootstrap.clone();
    let kafka = KafkaNode::start(&args.kafka_lib, &work.path().join("kafka"))?;
    let version = std::fs::read_dir(&args.kafka_lib)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find_map(|n| {
            n.strip_prefix("kafka-clients-")?
                .strip_suffix(".jar")
                .map(String::from)
        })
        .unwrap_or_else(|| "?".into());
    println!(
        "sluice bench kafka: {} records of {} B per run, {} rounds, sluice broker at {sluice} vs Apache Kafka {version} (one KRaft node, -Xmx1g) at {}",
        args.records, args.record_size, args.rounds, kafka.bootstrap
    );
    println!("clients: Kafka {version} ProducerPerformance/ConsumerPerformance (linger.ms=5, batch.size=65536, no compression) and kcat (librdkafka 2.0.2, linger.ms=5)");
    println!("durability: Sluice fsyncs before answering acks=all (group commit); Kafka answers from its page cache (flush.messages unset, no replicas)");
    // Warm both up (the JVM's JIT above all) with a short untimed run each.
    let warm = KafkaBenchArgs {
        records: (args.records / 5).max(10_000),
        rounds: 1,
        latency_rate: args.latency_rate / 5,
        kafka_lib: args.kafka_lib.clone(),
        record_size: args.record_size,
        dir: PathBuf::new(),
    };
    for (bootstrap, tag) in [(&sluice, "warm-s"), (&kafka.bootstrap, "warm-k")] {
        let small = work.path().join("warm.txt");
        write_records(&small, warm.records, args.record_size)?;
        workloads(&warm, &log4j, &small, bootstrap, tag)?;
    }
    let mut columns: [[Samples; 7]; 2] = Default::default();
    for round in 0..args.rounds {
        for (side, bootstrap) in [&sluice, &kafka.bootstrap].into_iter().enumerate() {
            let tag = format!("r{round}-{}", ["s", "k"][side]);
            let figures = workloads(&args, &log4j, &input, bootstrap, &tag)?;
            for (col, v) in columns[side].iter_mut().zip(figures) {
                col.0.push(v);
            }
        }
        eprintln!("round {} of {} done", round + 1, args.rounds);
    }
    println!();
    println!(
        "{:<48} {:>12} {:>12} {:>8}",
        "median of rounds", "sluice", "kafka", "ratio"
    );
    for (i, name) in ROWS.iter().enumerate() {
        let (s, k) = (columns[0][i].median(), columns[1][i].median());
        // Latency rows: Kafka ÷ Sluice, so that above 1 means Sluice is better on every row.
        let ratio = if name.contains("latency") {
            k / s
        } else {
            s / k
        };
        let fmt = |v: f64| {
            if name.contains("latency") {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        };
        println!("{:<48} {:>12} {:>12} {:>7.2}x", name, fmt(s), fmt(k), ratio);
    }
    println!("(ratio above 1: Sluice ahead; for latency rows it is Kafka's ÷ Sluice's)");
    drop(kafka);
    broker.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tools_summaries() {
        let p = parse_producer("1000 records sent, 152392.563243 records/sec (14.53 MB/sec), 314.74 ms avg latency, 589.00 ms max latency, 360 ms 50th, 545 ms 95th, 549 ms 99th, 553 ms 99.9th.\n").unwrap();
        assert_eq!((p.per_sec, p.p50, p.p99), (152392.563243, 360.0, 549.0));
        let c = parse_consumer("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n2026-12-07 14:09:01:708, 2026-12-07 14:09:03:757, 47.6837, 23.2717, 500000, 244021.4739, 779, 1270, 37.5462, 393700.7874\n").unwrap();
        assert_eq!(c, 393700.7874);
        assert!(parse_producer("no summary").is_err());
    }
}
