//! The runtime's Prometheus metrics: counters and histograms the task loops update once per
//! batch (never per record), and the state read at scrape time (task states, sink lag, log
//! end offsets and sizes, consumer-group lag), encoded by `prometheus-client` and served in
//! Prometheus' text format.
//!
//! Names are `sluice_<area>_<name>_<unit>` (counters end in `_total`); labels `pipeline`,
//! `connector`, `task`, `topic`, `partition`. Consumer-group lag is also exported under
//! kafka_exporter's `kafka_consumergroup_lag` so that existing dashboards work.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::run::{ConnectorStatus, Role, State};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub pipeline: String,
    pub connector: String,
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub pipeline: String,
    pub connector: String,
    pub task: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    pipeline: String,
    connector: String,
    task: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    pipeline: String,
    connector: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumergroup: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SluiceGroupLabels {
    group: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone)]
struct Latency;

impl MetricConstructor<Histogram> for Latency {
    fn new_metric(&self) -> Histogram {
        // 100 µs to about 26 s.
        Histogram::new(exponential_buckets(0.0001, 4.0, 10))
    }
}

/// The families the task loops count into, registered once.
pub struct WorkerMetrics {
    pipeline: String,
    registry: Registry,
    records_in: Family<TaskLabels, Counter>,
    records_out: Family<TaskLabels, Counter>,
    bytes_in: Family<TaskLabels, Counter>,
    bytes_out: Family<TaskLabels, Counter>,
    errors: Family<StageLabels, Counter>,
    dead_letter: Family<TaskLabels, Counter>,
    retries: Family<TaskLabels, Counter>,
    restarts: Family<TaskLabels, Counter>,
    poll_seconds: Family<TaskLabels, Histogram, Latency>,
    put_seconds: Family<TaskLabels, Histogram, Latency>,
    flush_seconds: Family<TaskLabels, Histogram, Latency>,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics")
            .field("pipeline", &self.pipeline)
            .finish()
    }
}

impl WorkerMetrics {
    /// `pipeline`: the `pipeline` label of every series (the pipeline file's name).
    pub fn new(pipeline: &str) -> WorkerMetrics {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str| {
            let f = Family::<TaskLabels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let records_in = counter(
            "sluice_task_records_in",
            "Records a task took in: polled by a source, read from the log by a sink",
        );
        let records_out = counter(
            "sluice_task_records_out",
            "Records a task passed on: appended to the log by a source, put to a sink",
        );
        let bytes_in = counter(
            "sluice_task_bytes_in",
            "Bytes a task took in (values polled, or log batches read)",
        );
        let bytes_out = counter(
            "sluice_task_bytes_out",
            "Bytes of record batches a source appended to the log",
        );
        let dead_letter = counter(
            "sluice_task_dead_letter_records",
            "Records sent to the dead-letter topic",
        );
        let retries = counter(
            "sluice_task_retries",
            "Operations retried after a retriable error",
        );
        let restarts = counter(
            "sluice_task_restarts",
            "Times a task was started again (after a failure, or asked for)",
        );
        let errors = Family::<StageLabels, Counter>::default();
        registry.register(
            "sluice_task_errors",
            "Failed records and task failures, by stage",
            errors.clone(),
        );
        let mut latency = |name: &str, help: &str| {
            let f = Family::<TaskLabels, Histogram, Latency>::new_with_constructor(Latency);
            registry.register(name, help, f.clone());
            f
        };
        let poll_seconds = latency(
            "sluice_task_poll_duration_seconds",
            "How long a source's poll took",
        );
        let put_seconds = latency(
            "sluice_task_put_duration_seconds",
            "How long a sink's put of a batch took",
        );
        let flush_seconds = latency(
            "sluice_task_flush_duration_seconds",
            "How long a sink's flush took",
        );
        WorkerMetrics {
            pipeline: pipeline.to_string(),
            registry,
            records_in,
            records_out,
            bytes_in,
            bytes_out,
            errors,
            dead_letter,
            retries,
            restarts,
            poll_seconds,
            put_seconds,
            flush_seconds,
        }
    }

    fn labels(&self, connector: &str, task: u32) -> TaskLabels {
        TaskLabels {
            pipeline: self.pipeline.clone(),
            connector: connector.to_string(),
            task: task.to_string(),
        }
    }

    /// The handles one task counts into (each an atomic: no lookup per batch). What does
    /// not apply to its role (a sink's polls, a source's puts) gets a handle that is not
    /// exported, so that no series of zeros is shown for it.
    pub fn task(&self, connector: &str, task: u32, role: Role) -> TaskMetrics {
        let l = self.labels(connector, task);
        let unexported = || Latency.new_metric();
        let (source, sink) = (role == Role::Source, role == Role::Sink);
        TaskMetrics {
            records_in: self.records_in.get_or_create_owned(&l),
            records_out: self.records_out.get_or_create_owned(&l),
            bytes_in: self.bytes_in.get_or_create_owned(&l),
            bytes_out: if source {
                self.bytes_out.get_or_create_owned(&l)
            } else {
                Counter::default()
            },
            dead_letter: self.dead_letter.get_or_create_owned(&l),
            retries: self.retries.get_or_create_owned(&l),
            poll_seconds: if source {
                self.poll_seconds.get_or_create_owned(&l)
            } else {
                unexported()
            },
            put_seconds: if sink {
                self.put_seconds.get_or_create_owned(&l)
            } else {
                unexported()
            },
            flush_seconds: if sink {
                self.flush_seconds.get_or_create_owned(&l)
            } else {
                unexported()
            },
            errors: self.errors.clone(),
            labels: l,
        }
    }

    pub fn count_restart(&self, connector: &str, task: u32) {
        self.restarts
            .get_or_create(&self.labels(connector, task))
            .inc();
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The registry the task families are in, for the other parts of the process (the
    /// broker, the schema registry, the log) to add theirs to before the worker starts:
    /// `/metrics` shows them all.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The counters plus what `scrape` reads now, in Prometheus' text format (0.0.4).
    pub fn render(&self, scrape: &Scrape) -> Result<String, std::fmt::Error> {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.registry)?;
        prometheus_client::encoding::text::encode_registry(&mut open_metrics, &scrape.registry)?;
        Ok(to_prometheus_text(&open_metrics))
    }
}

/// OpenMetrics text (what `prometheus-client` writes) as Prometheus' 0.0.4 text format,
/// which every scraper and `promtool check metrics` read: a counter's `# HELP` and `# TYPE`
/// lines name its samples (`x_total`), not the family (`x`).
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + counters.len() * 16);
    for line in open_metrics.lines() {
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None if line == "# EOF" => continue,
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One task's handles.
#[derive(Clone, Debug)]
pub struct TaskMetrics {
    pub records_in: Counter,
    pub records_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub dead_letter: Counter,
    pub retries: Counter,
    pub poll_seconds: Histogram,
    pub put_seconds: Histogram,
    pub flush_seconds: Histogram,
    errors: Family<StageLabels, Counter>,
    labels: TaskLabels,
}

impl TaskMetrics {
    pub fn error(&self, stage: &str) {
        self.errors
            .get_or_create(&StageLabels {
                pipeline: self.labels.pipeline.clone(),
                connector: self.labels.connector.clone(),
                task: self.labels.task.clone(),
                stage: stage.to_string(),
            })
            .inc();
    }

    pub fn observe(h: &Histogram, took: Duration) {
        h.observe(took.as_secs_f64());
    }
}

/// Gauges read at scrape time, built fresh for each scrape.
pub struct Scrape {
    registry: Registry,
    pipeline: String,
    state: Family<StateLabels, Gauge>,
    sink_lag: Family<PartitionLabels, Gauge>,
    end_offset: Family<TopicPartitionLabels, Gauge>,
    start_offset: Family<TopicPartitionLabels, Gauge>,
    log_bytes: Family<TopicPartitionLabels, Gauge>,
    log_segments: Family<TopicPartitionLabels, Gauge>,
    group_lag: Family<SluiceGroupLabels, Gauge>,
    kafka_group_lag: Family<GroupLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
}

impl Scrape {
    pub fn new(pipeline: &str) -> Scrape {
        let mut registry = Registry::default();
        let state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sluice_task_state",
            "1 for the state a task is in (one series per state), else 0",
            state.clone(),
        );
        let sink_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "sluice_sink_lag_records",
            "Records in a partition a sink has not committed yet",
            sink_lag.clone(),
        );
        let mut tp = |name: &str, help: &str| {
            let f = Family::<TopicPartitionLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let end_offset = tp("sluice_log_end_offset", "The next offset of a partition");
        let start_offset = tp(
            "sluice_log_start_offset",
            "The first offset a partition holds",
        );
        let log_bytes = tp(
            "sluice_log_size_bytes",
            "Bytes of a partition's segments on disk",
        );
        let log_segments = tp("sluice_log_segments", "Segments of a partition");
        let group_lag = Family::<SluiceGroupLabels, Gauge>::default();
        registry.register(
            "sluice_consumergroup_lag_records",
            "A consumer group's lag per partition: end offset minus committed offset",
            group_lag.clone(),
        );
        let kafka_group_lag = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "kafka_consumergroup_lag",
            "kafka_exporter's name for a consumer group's lag per partition",
            kafka_group_lag.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "sluice_config_reloads",
            "Reloads of the pipeline file, by result (applied, unchanged, invalid, failed)",
            reloads.clone(),
        );
        Scrape {
            reloads,
            registry,
            pipeline: pipeline.to_string(),
            state,
            sink_lag,
            end_offset,
            start_offset,
            log_bytes,
            log_segments,
            group_lag,
            kafka_group_lag,
        }
    }

    /// One-hot task states of a connector.
    pub fn states(&self, status: &ConnectorStatus) {
        for t in &status.tasks {
            for s in State::ALL {
                if s == State::Stopped {
                    continue; // a connector's state, never a task's
                }
                self.state
                    .get_or_create(&StateLabels {
                        pipeline: self.pipeline.clone(),
                        connector: status.name.clone(),
                        task: t.id.to_string(),
                        state: s.as_str().to_string(),
                    })
                    .set(i64::from(t.state == s));
            }
        }
    }

    /// Reload attempts so far, by result.
    pub fn reloads(&self, counts: &std::collections::BTreeMap<&'static str, u64>) {
        for result in ["applied", "unchanged", "invalid", "failed"] {
            self.reloads
                .get_or_create(&ResultLabels {
                    result: result.to_string(),
                })
                .inc_by(counts.get(result).copied().unwrap_or(0));
        }
    }

    pub fn sink_lag(&self, connector: &str, topic: &str, partition: i32, lag: i64) {
        self.sink_lag
            .get_or_create(&PartitionLabels {
                pipeline: self.pipeline.clone(),
                connector: connector.to_string(),
                topic: topic.to_string(),
                partition: partition.to_string(),
            })
            .set(lag);
    }

    /// A partition of the log: offsets, bytes and segments.
    pub fn partition(
        &self,
        topic: &str,
        partition: i32,
        start: i64,
        end: i64,
        bytes: u64,
        segments: usize,
    ) {
        let l = TopicPartitionLabels {
            topic: topic.to_string(),
            partition: partition.to_string(),
        };
        self.start_offset.get_or_create(&l).set(start);
        self.end_offset.get_or_create(&l).set(end);
        self.log_bytes.get_or_create(&l).set(bytes as i64);
        self.log_segments.get_or_create(&l).set(segments as i64);
    }

    pub fn group_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        self.group_lag
            .get_or_create(&SluiceGroupLabels {
                group: group.to_string(),
                topic: topic.to_string(),
                partition: partition.to_string(),
            })
            .set(lag);
        self.kafka_group_lag
            .get_or_create(&GroupLabels {
                consumergroup: group.to_string(),
                topic: topic.to_string(),
                partition: partition.to_string(),
            })
            .set(lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_each_role_shows_only_its_series() {
        let m = WorkerMetrics::new("shop");
        let source = m.task("orders_in", 0, Role::Source);
        source.records_out.inc_by(5);
        source.error("converter");
        let sink = m.task("orders_out", 1, Role::Sink);
        TaskMetrics::observe(&sink.put_seconds, Duration::from_millis(3));
        m.count_restart("orders_out", 1);
        let scrape = Scrape::new("shop");
        scrape.group_lag("connect-orders_out", "orders", 0, 7);
        let text = m.render(&scrape).unwrap();
        assert!(
            text.contains("# TYPE sluice_task_records_out_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "sluice_task_records_out_total{pipeline=\"shop\",connector=\"orders_in\",task=\"0\"} 5\n"
        ));
        assert!(text.contains("stage=\"converter\"} 1\n"), "{text}");
        assert!(text.contains(
            "sluice_task_restarts_total{pipeline=\"shop\",connector=\"orders_out\",task=\"1\"} 1\n"
        ));
        assert!(text.contains("kafka_consumergroup_lag{consumergroup=\"connect-orders_out\",topic=\"orders\",partition=\"0\"} 7\n"));
        assert!(!text.contains("sluice_task_poll_duration_seconds_count{pipeline=\"shop\",connector=\"orders_out\""), "no polls for a sink");
        assert!(
            !text.contains(
                "sluice_task_put_duration_seconds_count{pipeline=\"shop\",connector=\"orders_in\""
            ),
            "no puts for a source"
        );
        assert!(
            !text.contains("# EOF"),
            "the 0.0.4 format has no EOF marker"
        );
    }
}
