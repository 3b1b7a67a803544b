//! The connector runtime: one thread per task (connectors are synchronous by design), a
//! shared stop flag, and shutdown that drains within a time limit and names what it left.
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
//! Layout: this file sets connectors up (converters, schemas, task threads) and holds what
//! every task shares (status, retries, the error policy and dead-letter topic); `source`
//! is a source task's loop, `sink` a sink task's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_connector_sdk::connector::{ConnectorError, ErrorKind, TaskInfo, TopicPartition};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::registry::{ConnectorRegistry, Factory};
use sluice_log::{BatchBuilder, Log, LogError, Record, TopicConfig};

use crate::config::{ConnectorPlan, ErrorPolicy, Format, Pipeline};
use crate::convert::{AvroIn, AvroOut, Decoder, Encoder};
use crate::offsets::SourceOffsets;
use crate::transforms::Transform;
use sluice_schema_registry::registry::{Registry, SchemaRequest};

mod sink;
mod source;

use sink::sink_loop;
use source::source_loop;

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
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Failed(String),
    Stopped,
}

type Statuses = Arc<Mutex<BTreeMap<String, TaskState>>>;

/// Running connector tasks.
pub struct Worker {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<()>)>,
    status: Statuses,
}

fn set(status: &Statuses, task: &str, state: TaskState) {
    status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(task.to_string(), state);
}

/// Held once per connector behind an `Arc`; the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Converters {
    Source { key: Encoder, value: Encoder },
    Sink { key: Decoder, value: Decoder },
}

struct Ctx {
    name: String,
    task: String,
    log: Log,
    stop: Arc<AtomicBool>,
    status: Statuses,
    errors: ErrorPolicy,
    /// Converters: a source's encoders, a sink's decoders.
    converters: Arc<Converters>,
    transforms: Arc<Vec<Transform>>,
}

impl Ctx {
    /// The context of task `i` of a connector.
    fn for_task(
        plan: &ConnectorPlan,
        i: usize,
        log: &Log,
        stop: &Arc<AtomicBool>,
        status: &Statuses,
        converters: &Arc<Converters>,
    ) -> Ctx {
        Ctx {
            name: plan.name.clone(),
            task: format!("{}/{i}", plan.name),
            log: log.clone(),
            stop: stop.clone(),
            status: status.clone(),
            errors: plan.errors.clone(),
            converters: converters.clone(),
            transforms: Arc::new(plan.transforms.clone()),
        }
    }

    fn fail(&self, e: impl std::fmt::Display) {
        tracing::error!(connector = %self.name, task = %self.task, error = %e, "task failed");
        eprintln!("connector {} task {} FAILED: {e}", self.name, self.task);
        set(&self.status, &self.task, TaskState::Failed(e.to_string()));
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
                        && !self.stop.load(Ordering::Acquire) =>
                {
                    if failures == 0 {
                        eprintln!(
                            "connector {} task {}: {what} failed, retrying for up to {} s: {e}",
                            self.name,
                            self.task,
                            self.errors.retry_timeout.as_secs()
                        );
                    }
                    failures += 1;
                    tracing::warn!(connector = %self.name, task = %self.task, error = %e, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Ok(v) => {
                    if failures > 0 {
                        eprintln!("connector {} task {} recovered: {what} succeeded after {failures} retries", self.name, self.task);
                        tracing::info!(connector = %self.name, task = %self.task, failures, "{what} recovered");
                    }
                    return Ok(v);
                }
                other => return other,
            }
        }
    }

    /// A record that failed at `stage`: with `tolerance: all` it goes to the dead-letter topic
    /// (if one is set) and the task goes on; with `none` the task stops.
    fn bad_record(
        &self,
        stage: &str,
        message: &str,
        original: Option<&[u8]>,
        origin: Vec<(String, String)>,
    ) -> bool {
        if self.errors.log_errors {
            tracing::warn!(connector = %self.name, task = %self.task, stage, error = message, "record failed");
        }
        if !self.errors.tolerate_all {
            self.fail(format!("a record failed in {stage}: {message} (set `errors.tolerance: all` to route failing records to a dead-letter topic)"));
            return false;
        }
        let Some(dlq) = &self.errors.dead_letter_topic else {
            return true;
        };
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            (
                "sluice.error.connector".into(),
                self.name.clone().into_bytes(),
            ),
            ("sluice.error.stage".into(), stage.as_bytes().to_vec()),
            ("sluice.error.message".into(), message.as_bytes().to_vec()),
        ];
        headers.extend(
            origin
                .into_iter()
                .map(|(k, v)| (format!("sluice.error.{k}"), v.into_bytes())),
        );
        let now = sluice_log::now_ms();
        let mut b = BatchBuilder::new();
        b.push(&Record {
            key: None,
            value: original,
            timestamp: now,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect(),
        });
        match self
            .log
            .partition(dlq, 0)
            .and_then(|p| p.append(&mut b.build(), now))
        {
            Ok(_) => true,
            Err(e) => {
                self.fail(format!(
                    "cannot write to the dead-letter topic `{dlq}`: {e}"
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

/// Marks a task running and starts its thread, named `<kind>-<connector>/<task>`.
fn spawn_task(
    kind: &str,
    ctx: Ctx,
    body: impl FnOnce(Ctx) + Send + 'static,
) -> Result<(String, JoinHandle<()>), WorkerError> {
    set(&ctx.status, &ctx.task, TaskState::Running);
    let label = ctx.task.clone();
    let handle = std::thread::Builder::new()
        .name(format!("{kind}-{label}"))
        .spawn(move || body(ctx))
        .map_err(|e| WorkerError::Connector {
            connector: label.clone(),
            message: e.to_string(),
        })?;
    Ok((label, handle))
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

impl Worker {
    /// Creates the topics the pipeline needs and starts every task.
    /// `schemas` is the registry the `avro` format registers and looks up schemas in (opened
    /// on the log's `__schemas` when `None` and a connector needs it).
    pub fn start(
        pipeline: &Pipeline,
        registry: &ConnectorRegistry,
        log: &Log,
        schemas: Option<Arc<Registry>>,
    ) -> Result<Worker, WorkerError> {
        let needs_schemas = pipeline
            .sources
            .iter()
            .chain(&pipeline.sinks)
            .any(|p| p.value_format == Format::Avro || p.key_format == Format::Avro);
        let schemas = match (schemas, needs_schemas) {
            (Some(s), _) => Some(s),
            (None, true) => {
                let store = sluice_schema_registry::store::LogStore::open(log)
                    .map_err(|e| WorkerError::Schemas(e.to_string()))?;
                Some(Arc::new(
                    Registry::open(Arc::new(store))
                        .map_err(|e| WorkerError::Schemas(e.to_string()))?,
                ))
            }
            (None, false) => None,
        };
        let avro_in = schemas.as_ref().map(|r| Arc::new(AvroIn::new(r.clone())));
        for (name, (partitions, config)) in &pipeline.topics {
            ensure_topic(log, name, *partitions, config.clone())?;
        }
        for plan in pipeline.sources.iter().chain(&pipeline.sinks) {
            for t in plan
                .topics
                .iter()
                .chain(plan.errors.dead_letter_topic.iter())
            {
                ensure_topic(log, t, 1, TopicConfig::default())?;
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let status: Statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let offsets = Arc::new(SourceOffsets::open(log)?);
        let mut threads = Vec::new();
        for plan in &pipeline.sources {
            let t = registry
                .source(&plan.type_name)
                .map_err(|e| connector_err(plan, e))?;
            let Factory::Source(make) = &t.factory else {
                continue;
            };
            let connector = make(plan.settings.clone()).map_err(|e| connector_err(plan, e))?;
            let configs = connector
                .task_configs(plan.tasks)
                .map_err(|e| connector_err(plan, e))?;
            let tasks = configs.len() as u32;
            let converters = Arc::new(Converters::Source {
                key: source_encoder(plan, "key", schemas.as_deref())?,
                value: source_encoder(plan, "value", schemas.as_deref())?,
            });
            for (i, c) in configs.into_iter().enumerate() {
                let info = TaskInfo {
                    connector: plan.name.clone(),
                    task: i as u32,
                    tasks,
                };
                let task = connector
                    .create_task(info, c)
                    .map_err(|e| connector_err(plan, e))?;
                let ctx = Ctx::for_task(plan, i, log, &stop, &status, &converters);
                let (topic, offsets) = (plan.topics[0].clone(), offsets.clone());
                threads.push(spawn_task("src", ctx, move |ctx| {
                    source_loop(ctx, task, topic, offsets)
                })?);
            }
        }
        for plan in &pipeline.sinks {
            let t = registry
                .sink(&plan.type_name)
                .map_err(|e| connector_err(plan, e))?;
            let Factory::Sink(make) = &t.factory else {
                continue;
            };
            let connector = make(plan.settings.clone()).map_err(|e| connector_err(plan, e))?;
            let configs = connector
                .task_configs(plan.tasks)
                .map_err(|e| connector_err(plan, e))?;
            let mut all = Vec::new();
            for topic in &plan.topics {
                let n = log.topic(topic)?.partitions.len();
                all.extend((0..n as i32).map(|p| TopicPartition {
                    topic: topic.clone(),
                    partition: p,
                }));
            }
            let tasks = configs.len().max(1);
            let converters = Arc::new(Converters::Sink {
                key: sink_decoder(plan, "key", &avro_in)?,
                value: sink_decoder(plan, "value", &avro_in)?,
            });
            for (i, c) in configs.into_iter().enumerate() {
                let mine: Vec<TopicPartition> = all
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| j % tasks == i)
                    .map(|(_, tp)| tp.clone())
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let info = TaskInfo {
                    connector: plan.name.clone(),
                    task: i as u32,
                    tasks: tasks as u32,
                };
                let task = connector
                    .create_task(info, c)
                    .map_err(|e| connector_err(plan, e))?;
                let ctx = Ctx::for_task(plan, i, log, &stop, &status, &converters);
                threads.push(spawn_task("sink", ctx, move |ctx| {
                    sink_loop(ctx, task, mine)
                })?);
            }
        }
        Ok(Worker {
            stop,
            threads,
            status,
        })
    }

    pub fn status(&self) -> BTreeMap<String, TaskState> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks every task to stop, waits up to `grace`, and returns the tasks still running then.
    pub fn stop(self, grace: Duration) -> Vec<String> {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        let mut left = Vec::new();
        for (name, handle) in self.threads {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                left.push(name);
            }
        }
        left
    }
}

/// A source's encoder for its keys or values (`side`), registering the schema under
/// `<topic>-<side>` (TopicNameStrategy) when the format is `avro`.
fn source_encoder(
    plan: &ConnectorPlan,
    side: &str,
    schemas: Option<&Registry>,
) -> Result<Encoder, WorkerError> {
    let (format, schema, schemas_enable) = if side == "key" {
        (plan.key_format, &plan.key_schema, plan.key_schemas_enable)
    } else {
        (
            plan.value_format,
            &plan.value_schema,
            plan.value_schemas_enable,
        )
    };
    let parsed = match schema {
        Some(text) => {
            Some(apache_avro::Schema::parse_str(text).map_err(|e| connector_err(plan, e))?)
        }
        None => None,
    };
    match (format, parsed, schemas) {
        (Format::Avro, Some(parsed), Some(reg)) => {
            let subject = format!("{}-{side}", plan.topics[0]);
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
    side: &str,
    avro_in: &Option<Arc<AvroIn>>,
) -> Result<Decoder, WorkerError> {
    let (format, schema, schemas_enable) = if side == "key" {
        (plan.key_format, &plan.key_schema, plan.key_schemas_enable)
    } else {
        (
            plan.value_format,
            &plan.value_schema,
            plan.value_schemas_enable,
        )
    };
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
