//! The connector runtime: a supervisor of independently controlled connectors, one thread
//! per task (connectors are synchronous by design), each task with its own controls (stop,
//! pause, restart), failed tasks started again with backoff, and shutdown that drains within
//! a time limit and names what it left.
//!
//! Delivery is at least once everywhere: a source's positions are committed to
//! `__connect_offsets` only after the records they cover are appended (and fsynced per the
//! topic's policy); a sink's positions are committed as consumer-group offsets (group
//! `connect-<sink name>`) only after its `flush` returns them. A sink that stores its own
//! position (the file sink, through its file names) overrides the group's on start.
//!
//! Backpressure is by construction: sources append before they poll again, and sinks read
//! the log only as fast as `put` returns, a bounded batch at a time.
//!
//! Layout: this file holds what a task's loop shares with its connector (converters,
//! retries, the error policy and dead-letter topic); `supervisor` is the worker that holds
//! and steers the connectors; `unit` one connector, its tasks' drivers and the builder;
//! `reload` swaps connectors when the file changes; `control` is one task's controls;
//! `status` the states and typed errors reported; `source` is a source task's loop, `sink`
//! a sink task's.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_connector_sdk::connector::{ConnectorError, ErrorKind};
use sluice_connector_sdk::data::Payload;
use sluice_log::{BatchBuilder, Log, LogError, Record, TopicConfig};

use crate::config::{ConnectorPlan, ErrorPolicy, Format, Side, SideFormat};
use crate::convert::{AvroIn, AvroOut, Decoder, Encoder};
use crate::metrics::TaskMetrics;
use crate::transforms::Transform;
use sluice_schema_registry::registry::{Registry, SchemaRequest};

mod control;
mod created;
mod follow;
mod positions;
pub mod reload;
mod sink;
mod source;
pub mod status;
mod supervisor;
mod unit;

use control::TaskControl;
pub use status::{ConnectorStatus, Event, Observer, Role, Stage, State, TaskError, TaskStatus};
pub use supervisor::{ControlError, Worker, WorkerOptions};
pub use unit::Origin;

const POLL_RECORDS: usize = 20_000;
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
const SINK_READ_BYTES: usize = 4 << 20;
/// A sink is asked to flush at least this often (it decides what is due: the file sink
/// finishes files older than its `roll_interval`), and at once when it has caught up with
/// its partitions after a put, so the tail of a burst does not wait for the clock.
const SINK_FLUSH_EVERY: Duration = Duration::from_millis(20);
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// How long a caught-up sink waits before looking for new records again.
const SINK_IDLE_WAIT: Duration = Duration::from_millis(2);
/// While a source keeps returning full polls, its positions are committed this often.
const SOURCE_COMMIT_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("connector `{connector}`: {message}")]
    Connector { connector: String, message: String },
    #[error("{0} is not built in this version of Sluice yet")]
    NotBuilt(String),
    #[error("schema registry: {0}")]
    Schemas(String),
    #[error("{0}")]
    Cluster(String),
}

/// Where a record failed, as its dead-letter copy's `sluice.error.stage` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordStage {
    /// The source itself marked the record as bad.
    Source,
    Transform,
    Converter,
    /// The sink refused it (`put` with a bad-record error).
    Sink,
}

impl RecordStage {
    fn as_str(self) -> &'static str {
        match self {
            RecordStage::Source => "source",
            RecordStage::Transform => "transform",
            RecordStage::Converter => "converter",
            RecordStage::Sink => "sink",
        }
    }

    /// The task's stage when the record stops it.
    fn task_stage(self) -> Stage {
        match self {
            RecordStage::Source => Stage::Poll,
            RecordStage::Transform => Stage::Transform,
            RecordStage::Converter => Stage::Convert,
            RecordStage::Sink => Stage::Put,
        }
    }
}

/// Where a failed record came from: a source's stream and position, or a sink's place in
/// the log. Its dead-letter copy carries it as `sluice.error.source.stream` and
/// `…source.offset`, or `sluice.error.topic`, `…partition` and `…offset`.
#[derive(Clone, Copy)]
enum RecordOrigin<'a> {
    Source {
        stream: &'a str,
        offset: &'a dyn std::fmt::Display,
    },
    Log {
        topic: &'a str,
        partition: i32,
        offset: i64,
    },
}

impl RecordOrigin<'_> {
    fn headers(&self) -> Vec<(&'static str, String)> {
        match *self {
            RecordOrigin::Source { stream, offset } => vec![
                ("source.stream", stream.to_string()),
                ("source.offset", offset.to_string()),
            ],
            RecordOrigin::Log {
                topic,
                partition,
                offset,
            } => vec![
                ("topic", topic.to_string()),
                ("partition", partition.to_string()),
                ("offset", offset.to_string()),
            ],
        }
    }
}

impl std::fmt::Display for RecordOrigin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RecordOrigin::Source { stream, offset } => {
                write!(f, "stream `{stream}` at {offset}")
            }
            RecordOrigin::Log {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}-{partition} at offset {offset}"),
        }
    }
}

/// One converter per side of the records: a source's encoders, a sink's decoders.
struct Sides<T> {
    key: T,
    value: T,
}

/// What a source task's loop holds beyond the shared [`Ctx`]: its encoders and the one
/// topic it writes (transforms may route records elsewhere).
struct SourceCtx<'a> {
    base: &'a Ctx,
    encoders: &'a Sides<Encoder>,
    topic: &'a str,
    /// On a Kafka cluster: the task's lease (it runs only while this worker
    /// holds it).
    lease: Option<sluice_kafka::Lease>,
    /// `exactly_once: true` (on a cluster): records and positions in one transaction.
    exactly_once: bool,
}

/// What a sink task's loop holds beyond the shared [`Ctx`]: its decoders.
struct SinkCtx<'a> {
    base: &'a Ctx,
    decoders: &'a Sides<Decoder>,
    /// The topics the sink reads (on a Kafka cluster, its consumer subscribes to them).
    topics: &'a [String],
}

impl std::ops::Deref for SourceCtx<'_> {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        self.base
    }
}

impl std::ops::Deref for SinkCtx<'_> {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        self.base
    }
}

/// What one run of any task's loop holds: its connector's settings, its controls, and the
/// first failure it met (the loop returns after recording it). A source's or a sink's own
/// part is in [`SourceCtx`] or [`SinkCtx`].
struct Ctx {
    name: String,
    task: String,
    log: Log,
    /// The cluster the task's topics are on, when the worker runs on Kafka.
    kafka: Option<Arc<crate::on_kafka::KafkaRuntime>>,
    control: Arc<TaskControl>,
    observer: Option<Observer>,
    errors: ErrorPolicy,
    transforms: Arc<Vec<Transform>>,
    failure: RefCell<Option<TaskError>>,
    /// Counted once per batch; `None` when metrics are off.
    metrics: Option<TaskMetrics>,
}

impl Ctx {
    fn tell(&self, event: Event) {
        if let Some(o) = &self.observer {
            o(&event);
        }
    }

    /// Records why the task cannot go on (the first reason wins); the loop returns next.
    fn fail(&self, stage: Stage, e: impl std::fmt::Display) {
        self.fail_with(TaskError::new(stage, e));
    }

    fn fail_with(&self, e: TaskError) {
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            if let Some(m) = &self.metrics {
                m.error(e.stage.as_str());
            }
            tracing::error!(connector = %self.name, task = %self.task, stage = %e.stage, error = %e.message, "task failed");
            *failure = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Runs `op` until it succeeds, retrying retriable errors with exponential backoff up to
    /// the policy's `retry_timeout`.
    fn retry<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            match op() {
                Err(e)
                    if e.kind == ErrorKind::Retriable
                        && started.elapsed() < self.errors.retry_timeout
                        && !self.control.should_stop() =>
                {
                    if failures == 0 {
                        self.tell(Event::Retrying {
                            task: self.task.clone(),
                            what: what.to_string(),
                            error: e.to_string(),
                            for_secs: self.errors.retry_timeout.as_secs(),
                        });
                    }
                    failures += 1;
                    if let Some(m) = &self.metrics {
                        m.retries.inc();
                    }
                    tracing::warn!(connector = %self.name, task = %self.task, error = %e, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Ok(v) => {
                    if failures > 0 {
                        self.tell(Event::Recovered {
                            task: self.task.clone(),
                            what: what.to_string(),
                            failures,
                        });
                        tracing::info!(connector = %self.name, task = %self.task, failures, "{what} recovered");
                    }
                    return Ok(v);
                }
                other => return other,
            }
        }
    }

    /// A record that failed at `stage`: with `tolerance: all` it goes to the dead-letter topic
    /// (if one is set, with headers naming where it came from) and the task goes on; with
    /// `none` the task stops. Every path of both loops hands its bad records here.
    fn bad_record(
        &self,
        stage: RecordStage,
        message: &str,
        original: Option<&[u8]>,
        origin: RecordOrigin<'_>,
    ) -> bool {
        self.bad_record_with(stage, message, original, origin, &[])
    }

    /// [`Ctx::bad_record`] with more headers for the dead-letter record (what the sink knows
    /// about the failure: an HTTP status and the start of the answer).
    fn bad_record_with(
        &self,
        stage: RecordStage,
        message: &str,
        original: Option<&[u8]>,
        origin: RecordOrigin<'_>,
        extra_headers: &[(String, Vec<u8>)],
    ) -> bool {
        let stage_name = stage.as_str();
        if self.errors.log_errors {
            tracing::warn!(connector = %self.name, task = %self.task, stage = stage_name, error = message, %origin, "record failed");
        }
        if !self.errors.tolerate_all {
            // Not restarted: the same record would fail again.
            self.fail_with(TaskError::permanent(
                stage.task_stage(),
                format!("a record failed in {stage_name} ({origin}): {message} (set `errors.tolerance: all` to route failing records to a dead-letter topic)"),
            ));
            return false; // counted as the task's failure
        }
        if let Some(m) = &self.metrics {
            m.error(stage_name);
        }
        let Some(dlq) = &self.errors.dead_letter_topic else {
            return true;
        };
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            (
                "sluice.error.connector".into(),
                self.name.clone().into_bytes(),
            ),
            ("sluice.error.stage".into(), stage_name.as_bytes().to_vec()),
            ("sluice.error.message".into(), message.as_bytes().to_vec()),
        ];
        headers.extend(
            origin
                .headers()
                .into_iter()
                .map(|(k, v)| (format!("sluice.error.{k}"), v.into_bytes())),
        );
        headers.extend(extra_headers.iter().cloned());
        let now = sluice_log::now_ms();
        let record = Record {
            key: None,
            value: original,
            timestamp: now,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect(),
        };
        if let Some(kafka) = &self.kafka {
            return match kafka.dead_letter(dlq, original, &record.headers, now) {
                Ok(()) => {
                    if let Some(m) = &self.metrics {
                        m.dead_letter.inc();
                    }
                    true
                }
                Err(e) => {
                    self.fail_with(TaskError::new(
                        Stage::DeadLetter,
                        format!("cannot write to the dead-letter topic `{dlq}`: {e}"),
                    ));
                    false
                }
            };
        }
        let mut b = BatchBuilder::new();
        b.push(&record);
        match self
            .log
            .partition(dlq, 0)
            .and_then(|p| p.append(&mut b.build(), now))
        {
            Ok(_) => {
                if let Some(m) = &self.metrics {
                    m.dead_letter.inc();
                }
                true
            }
            Err(e) => {
                self.fail_with(TaskError::from_log(
                    Stage::DeadLetter,
                    format_args!("cannot write to the dead-letter topic `{dlq}`"),
                    &e,
                ));
                false
            }
        }
    }
}

fn ensure_topic(
    log: &Log,
    name: &str,
    partitions: u32,
    config: TopicConfig,
) -> Result<(), LogError> {
    match log.topic(name) {
        Ok(_) => Ok(()),
        Err(LogError::UnknownTopic(_)) => match log.create_topic(name, partitions, config) {
            Ok(_) | Err(LogError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// A connector that cannot be set up, and why.
fn connector_err(plan: &ConnectorPlan, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::Connector {
        connector: plan.name.clone(),
        message: e.to_string(),
    }
}

fn raw(p: &Option<Payload>) -> Option<Vec<u8>> {
    match p {
        Some(Payload::Raw(b)) => Some(b.to_vec()),
        Some(Payload::Typed { value, .. }) => Some(format!("{value:?}").into_bytes()),
        None => None,
    }
}

/// A source's encoder for its keys or values (`side`), registering the schema under
/// `<topic>-<side>` (TopicNameStrategy) when the format is `avro`.
fn source_encoder(
    plan: &ConnectorPlan,
    topic: &str,
    side: Side,
    schemas: Option<&Arc<Registry>>,
    own_schemas: bool,
) -> Result<Encoder, WorkerError> {
    let encoder = declared_encoder(plan, topic, side, schemas.map(|r| &**r), own_schemas)?;
    Ok(if own_schemas {
        encoder.with_own_schemas(crate::convert::OwnSchemas::new(
            schemas.cloned(),
            side.name(),
        ))
    } else {
        encoder
    })
}

/// A source's encoder for what the pipeline file declares (`<side>_format`,
/// `<side>_schema`).
fn declared_encoder(
    plan: &ConnectorPlan,
    topic: &str,
    side: Side,
    schemas: Option<&Registry>,
    own_schemas: bool,
) -> Result<Encoder, WorkerError> {
    let SideFormat {
        format,
        ref schema,
        schemas_enable,
    } = *plan.side(side);
    let side = side.name();
    let parsed = match schema {
        Some(text) => {
            Some(apache_avro::Schema::parse_str(text).map_err(|e| connector_err(plan, e))?)
        }
        None => None,
    };
    match (format, parsed, schemas) {
        (Format::Avro, Some(parsed), Some(reg)) => {
            let subject = format!("{topic}-{side}");
            let req = SchemaRequest {
                schema: schema.clone().unwrap_or_default(),
                ..Default::default()
            };
            let (id, version) =
                reg.register(&subject, &req)
                    .map_err(|e| WorkerError::Connector {
                        connector: plan.name.clone(),
                        message: format!("registering its {side} schema under `{subject}`: {e}"),
                    })?;
            tracing::info!(connector = %plan.name, subject = %subject, id, version, "{side} schema registered");
            Ok(Encoder::avro(AvroOut {
                schema_id: id,
                codec: sluice_connector_sdk::avro::Compiled::new(parsed),
            }))
        }
        (Format::Avro, None, Some(_)) if own_schemas => Ok(Encoder::plain(Format::Avro)),
        (Format::Avro, _, _) => Err(connector_err(
            plan,
            format!("`{side}_format: avro` needs `{side}_schema` and the schema registry"),
        )),
        (Format::Json, parsed, _) => Encoder::json(parsed, schemas_enable)
            .map_err(|e| connector_err(plan, format!("`{side}_schema`: {e}"))),
        (format, _, _) => Ok(Encoder::plain(format)),
    }
}

/// A sink's decoder for its keys or values (`side`).
fn sink_decoder(
    plan: &ConnectorPlan,
    side: Side,
    avro_in: &Option<Arc<AvroIn>>,
) -> Result<Decoder, WorkerError> {
    let SideFormat {
        format,
        ref schema,
        schemas_enable,
    } = *plan.side(side);
    let reader = match schema {
        Some(text) => Some((
            text.clone(),
            apache_avro::Schema::parse_str(text).map_err(|e| connector_err(plan, e))?,
        )),
        None => None,
    };
    let avro = if format == Format::Avro {
        avro_in.clone()
    } else {
        None
    };
    Ok(Decoder::new(format, avro, schemas_enable, reader))
}
