//! A sink that stalls slows the reading of its topic; it never makes memory grow with the
//! backlog (the backlog stays on disk, in the log).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_connector_sdk::config::{ConfigSpec, ConfigValues};
use sluice_connector_sdk::connector::{
    Result, SinkConnector, SinkRecord, SinkTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::registry::{ConnectorRegistry, ConnectorType, Factory, Origin};
use sluice_log::{Log, LogOptions};
use sluice_worker::config::parse_pipeline;
use sluice_worker::run::Worker;

/// Takes 20 ms per batch, and counts records.
struct SlowSink(Arc<AtomicUsize>);
struct SlowTask(Arc<AtomicUsize>);

impl SinkConnector for SlowSink {
    fn task_configs(&self, _max: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![ConfigSpec::default()
            .validate(&serde_json::Map::new())
            .expect("empty config")])
    }
    fn create_task(&self, _info: TaskInfo, _c: ConfigValues) -> Result<Box<dyn SinkTask>> {
        Ok(Box::new(SlowTask(self.0.clone())))
    }
}

impl SinkTask for SlowTask {
    fn open(&mut self, _p: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        Ok(vec![])
    }
    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.fetch_add(records.len(), Ordering::Relaxed);
        Ok(())
    }
    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        Ok(vec![])
    }
    fn close(&mut self, _p: Vec<TopicPartition>) -> Result<()> {
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[test]
fn a_stalled_sink_holds_back_reading_not_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let line = format!(r#"{{"payload":"{}"}}"#, "x".repeat(200));
    let total = 300_000; // ~65 MB of input
    std::fs::write(
        d.join("in/big.json"),
        (0..total)
            .map(|_| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();

    let counted = Arc::new(AtomicUsize::new(0));
    let mut registry = ConnectorRegistry::new();
    sluice_connector_file::register(&mut registry).unwrap();
    let c = counted.clone();
    registry
        .register(ConnectorType {
            name: "slow".into(),
            description: "a stalling sink".into(),
            config: ConfigSpec::default(),
            origin: Origin::BuiltIn,
            factory: Factory::Sink(Box::new(move |_| {
                Ok(Box::new(SlowSink(c.clone())) as Box<dyn SinkConnector>)
            })),
        })
        .unwrap();
    let yaml = format!(
        "runtime: {{ data_dir: {d}/data }}\ntopics: {{ big: {{ config: {{ flush.messages: -1 }} }} }}\nsources:\n  s: {{ type: file, topic: big, path: {d}/in/*.json, poll_interval: 10ms }}\nsinks:\n  k: {{ type: slow, topics: [big] }}\n",
        d = d.display()
    );
    let pipeline = parse_pipeline(&yaml, &registry, &|_| None).unwrap();
    let log = Log::open(
        d.join("data"),
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )
    .unwrap();
    let before = rss_mb();
    let worker = Worker::start(&pipeline, &registry, &log, Default::default()).unwrap();
    let topic = log.partition("big", 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic.end_offset() < total as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = rss_mb() - before;
    let sunk = counted.load(Ordering::Relaxed);
    worker.stop(Duration::from_secs(10));
    assert_eq!(
        topic.end_offset(),
        total as i64,
        "the source was not held back by the slow sink"
    );
    assert!(
        sunk < total,
        "the sink is behind ({sunk} of {total}): the backlog waits in the log"
    );
    assert!(
        grown < 48.0,
        "memory grew by {grown:.0} MB with a backlog of {} records",
        total - sunk
    );
}
