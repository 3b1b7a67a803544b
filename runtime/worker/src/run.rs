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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_connector_sdk::connector::{
    ConnectorError, ErrorKind, Polled, SinkRecord, SinkTask, SourcePosition, SourceRecord,
    SourceTask, TaskInfo, TopicPartition, SOURCE_ERROR_HEADER,
};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::plugin::wire;
use sluice_connector_sdk::registry::{ConnectorRegistry, Factory};
use sluice_connector_sdk::Bytes;
use sluice_log::{BatchBuilder, Log, LogError, OffsetCommit, Record, TopicConfig};

use crate::config::{ConnectorPlan, ErrorPolicy, Format, Pipeline};
use crate::convert::{decode_batches, AvroIn, AvroOut, Decoder, Encoder};
use crate::offsets::SourceOffsets;
use crate::partitioner::partition_for_key;
use crate::transforms::{apply_all, TRecord, Transform};
use sluice_schema_registry::registry::{Registry, SchemaRequest};

const POLL_RECORDS: usize = 20_000;
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
const SINK_READ_BYTES: usize = 4 << 20;
/// A sink is asked to flush at least this often (it decides what is due: the file sink
/// finishes files older than its `roll_interval`), and at once when it has caught up with
/// its partitions after a put, so the tail of a burst does not wait for the clock.
const SINK_FLUSH_EVERY: Duration = Duration::from_millis(100);
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
                let ctx = Ctx {
                    name: plan.name.clone(),
                    task: format!("{}/{i}", plan.name),
                    log: log.clone(),
                    stop: stop.clone(),
                    status: status.clone(),
                    errors: plan.errors.clone(),
                    converters: converters.clone(),
                    transforms: Arc::new(plan.transforms.clone()),
                };
                set(&status, &ctx.task, TaskState::Running);
                let (topic, offsets) = (plan.topics[0].clone(), offsets.clone());
                let label = ctx.task.clone();
                threads.push((
                    label.clone(),
                    std::thread::Builder::new()
                        .name(format!("src-{label}"))
                        .spawn(move || source_loop(ctx, task, topic, offsets))
                        .map_err(|e| WorkerError::Connector {
                            connector: label,
                            message: e.to_string(),
                        })?,
                ));
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
                let ctx = Ctx {
                    name: plan.name.clone(),
                    task: format!("{}/{i}", plan.name),
                    log: log.clone(),
                    stop: stop.clone(),
                    status: status.clone(),
                    errors: plan.errors.clone(),
                    converters: converters.clone(),
                    transforms: Arc::new(plan.transforms.clone()),
                };
                set(&status, &ctx.task, TaskState::Running);
                let label = ctx.task.clone();
                threads.push((
                    label.clone(),
                    std::thread::Builder::new()
                        .name(format!("sink-{label}"))
                        .spawn(move || sink_loop(ctx, task, mine))
                        .map_err(|e| WorkerError::Connector {
                            connector: label,
                            message: e.to_string(),
                        })?,
                ));
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

fn source_loop(
    ctx: Ctx,
    mut task: Box<dyn SourceTask>,
    topic: String,
    offsets: Arc<SourceOffsets>,
) {
    let committed = offsets.positions(&ctx.name);
    if let Err(e) = ctx.retry("start", || task.start(committed.clone())) {
        return ctx.fail(e);
    }
    let mut partitions: HashMap<String, Vec<Arc<sluice_log::Partition>>> = HashMap::new();
    if let Err(e) = partitions_of(&ctx.log, &mut partitions, &topic) {
        return ctx.fail(e);
    }
    let main_parts = partitions[&topic].clone();
    let sticky = AtomicU32::new(0);
    // Positions of records already in the log, not yet committed.
    let mut positions = Positions::default();
    let mut last_commit = Instant::now();
    while !ctx.stop.load(Ordering::Acquire) {
        let polled = match ctx.retry("poll", || task.poll_batch(POLL_RECORDS, POLL_TIMEOUT)) {
            Ok(p) => p,
            Err(e) => return ctx.fail(e),
        };
        // An encoded batch (from a plugin) is read in place unless transforms need records.
        let (records, encoded) = match polled {
            Polled::Records(r) => (r, None),
            Polled::Encoded(b) if ctx.transforms.is_empty() => (Vec::new(), Some(b)),
            Polled::Encoded(b) => match wire::decode_source(&b) {
                Ok(r) => (r, None),
                Err(e) => return ctx.fail(format!("the source's records: {e}")),
            },
        };
        let views = match encoded.as_deref().map(wire::source_views) {
            None => Vec::new(),
            Some(Ok(v)) => v,
            Some(Err(e)) => return ctx.fail(format!("the source's records: {e}")),
        };
        let count = records.len() + views.len();
        if count == 0 {
            if let Err(e) = commit_source(&ctx, task.as_mut(), &offsets, &mut positions) {
                return ctx.fail(e);
            }
            last_commit = Instant::now();
            continue;
        }
        let caught_up = count < POLL_RECORDS;
        let mut out = Batching {
            now: sluice_log::now_ms(),
            round: sticky.fetch_add(1, Ordering::Relaxed) as usize,
            main_builders: (0..main_parts.len()).map(|_| BatchBuilder::new()).collect(),
            routed: HashMap::new(),
        };
        // A record the error policy does not tolerate stops the task, but only after the
        // records before it are stored and their positions committed.
        let mut stopped_at_bad_record = false;
        for mut r in records {
            let origin = |r: &SourceRecord| {
                vec![
                    ("source.stream".to_string(), r.position.stream.to_string()),
                    ("source.offset".to_string(), r.position.offset.to_string()),
                ]
            };
            if let Some(i) = r.headers.iter().position(|(k, _)| k == SOURCE_ERROR_HEADER) {
                let message = String::from_utf8_lossy(&r.headers[i].1).into_owned();
                let original = match r.value.take() {
                    Some(Payload::Raw(b)) => Some(b),
                    _ => None,
                };
                let o = origin(&r);
                if !ctx.bad_record("source", &message, original.as_deref(), o) {
                    stopped_at_bad_record = true;
                    break;
                }
                positions.remember(r.position);
                continue;
            }
            let mut target: Option<String> = None;
            if !ctx.transforms.is_empty() {
                match transform_source_record(&ctx.transforms, &topic, &mut r, out.now) {
                    Ok(Some(t)) => target = (t != topic).then_some(t),
                    Ok(None) => {
                        positions.remember(r.position);
                        continue; // filtered out
                    }
                    Err((message, original)) => {
                        let o = origin(&r);
                        if !ctx.bad_record("transform", &message, original.as_deref(), o) {
                            stopped_at_bad_record = true;
                            break;
                        }
                        positions.remember(r.position);
                        continue;
                    }
                }
            }
            let (key, value) = match convert(&ctx, r.key.take(), r.value.take()) {
                Ok(kv) => kv,
                Err(e) => {
                    let o = origin(&r);
                    if !ctx.bad_record("converter", &e.message, e.original.as_deref(), o) {
                        stopped_at_bad_record = true;
                        break;
                    }
                    positions.remember(r.position);
                    continue;
                }
            };
            let headers: Vec<(&str, Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect();
            let stored = out.push(
                &ctx,
                (&topic, &main_parts, &mut partitions),
                target.as_deref(),
                OutRecord {
                    key: key.as_deref(),
                    value: value.as_deref(),
                    partition: r.partition,
                    timestamp: r.timestamp,
                    headers,
                },
            );
            if let Err(e) = stored {
                return ctx.fail(e);
            }
            positions.remember(r.position);
        }
        if let Some(buf) = &encoded {
            // The records of a plugin, read in place; a position is kept per run of records
            // of one stream, parsed once.
            let mut run: Option<wire::SourceView<'_>> = None;
            let pass_through = matches!(
                &*ctx.converters,
                Converters::Source { key, value } if key.passes_through() && value.passes_through()
            );
            for v in &views {
                if run.is_some_and(|r| r.stream != v.stream) {
                    if let Err(e) = remember_view(&mut positions, run.take()) {
                        return ctx.fail(e);
                    }
                }
                let failed = v
                    .headers()
                    .find(|(k, _)| *k == SOURCE_ERROR_HEADER)
                    .map(|(_, m)| ("source", String::from_utf8_lossy(m).into_owned(), v.value));
                let converted = match failed {
                    Some(f) => Err(f),
                    // `bytes` keys and values go into the batch straight from the plugin's.
                    None if pass_through => Ok((None, None)),
                    None => convert(
                        &ctx,
                        v.key.map(|k| Payload::Raw(buf.slice_ref(k))),
                        v.value.map(|b| Payload::Raw(buf.slice_ref(b))),
                    )
                    .map_err(|e| ("converter", e.message, v.value)),
                };
                let (key, value) = match converted {
                    Ok(kv) => kv,
                    Err((stage, message, original)) => {
                        let o = vec![
                            ("source.stream".to_string(), v.stream.to_string()),
                            (
                                "source.offset".to_string(),
                                String::from_utf8_lossy(v.offset).into_owned(),
                            ),
                        ];
                        if !ctx.bad_record(stage, &message, original, o) {
                            // Not remembered: after a restart this record is read again.
                            stopped_at_bad_record = true;
                            break;
                        }
                        run = Some(*v);
                        continue;
                    }
                };
                let stored = out.push(
                    &ctx,
                    (&topic, &main_parts, &mut partitions),
                    v.topic.filter(|t| *t != topic),
                    OutRecord {
                        key: if pass_through { v.key } else { key.as_deref() },
                        value: if pass_through {
                            v.value
                        } else {
                            value.as_deref()
                        },
                        partition: v.partition,
                        timestamp: v.timestamp,
                        headers: v.headers().map(|(k, h)| (k, Some(h))).collect(),
                    },
                );
                if let Err(e) = stored {
                    return ctx.fail(e);
                }
                run = Some(*v);
            }
            if let Err(e) = remember_view(&mut positions, run) {
                return ctx.fail(e);
            }
        }
        if let Err(e) = out.finish((&topic, &main_parts, &mut partitions)) {
            return ctx.fail(e);
        }
        // The records are in the log (durable per the topic's flush policy): now their
        // positions, at once when the source has caught up (a webhook's callers are waiting),
        // else at most every SOURCE_COMMIT_EVERY (each commit is an fsync).
        if caught_up || stopped_at_bad_record || last_commit.elapsed() >= SOURCE_COMMIT_EVERY {
            if let Err(e) = commit_source(&ctx, task.as_mut(), &offsets, &mut positions) {
                return ctx.fail(e);
            }
            last_commit = Instant::now();
        }
        if stopped_at_bad_record {
            let _ = task.stop();
            return; // the status already says why
        }
    }
    if let Err(e) = commit_source(&ctx, task.as_mut(), &offsets, &mut positions) {
        return ctx.fail(e);
    }
    let _ = task.stop();
    set(&ctx.status, &ctx.task, TaskState::Stopped);
}

/// Remembers the position of the last record of a run of one stream's records.
fn remember_view(
    positions: &mut Positions,
    run: Option<wire::SourceView<'_>>,
) -> Result<(), String> {
    let Some(v) = run else {
        return Ok(());
    };
    let offset = v
        .offset()
        .map_err(|e| format!("the source's records: {e}"))?;
    positions.remember(SourcePosition {
        stream: Arc::from(v.stream),
        offset,
    });
    Ok(())
}

/// Key and value through the connector's converters.
fn convert(
    ctx: &Ctx,
    key: Option<Payload>,
    value: Option<Payload>,
) -> Result<(Option<Bytes>, Option<Bytes>), crate::convert::EncodeError> {
    let Converters::Source {
        key: key_encoder,
        value: value_encoder,
    } = &*ctx.converters
    else {
        return Err(crate::convert::EncodeError {
            message: "a source task was given a sink's converters".into(),
            original: None,
        });
    };
    Ok((key_encoder.encode(key)?, value_encoder.encode(value)?))
}

/// A converted record on its way into a batch.
struct OutRecord<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    partition: Option<i32>,
    timestamp: Option<i64>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// The connector's topic, its partitions, and the partitions of topics routed to.
type Topics<'a> = (
    &'a str,
    &'a [Arc<sluice_log::Partition>],
    &'a mut HashMap<String, Vec<Arc<sluice_log::Partition>>>,
);

/// The batches of one poll: per partition of the connector's topic (indexed: no hashing per
/// record), and per topic a router sent records to. Full batches are appended as they fill.
struct Batching {
    now: i64,
    round: usize,
    main_builders: Vec<BatchBuilder>,
    routed: HashMap<String, HashMap<usize, BatchBuilder>>,
}

impl Batching {
    fn push(
        &mut self,
        ctx: &Ctx,
        (topic, main_parts, partitions): Topics<'_>,
        target: Option<&str>,
        r: OutRecord<'_>,
    ) -> Result<(), String> {
        let parts: &[Arc<sluice_log::Partition>] = match target {
            None => main_parts,
            Some(t) => {
                partitions_of(&ctx.log, partitions, t).map_err(|e| format!("topic `{t}`: {e}"))?
            }
        };
        let p = match (r.partition, r.key) {
            (Some(p), _) => (p.max(0) as usize) % parts.len(),
            (None, Some(k)) => partition_for_key(k, parts.len() as u32) as usize,
            (None, None) => self.round % parts.len(),
        };
        let builder = match target {
            None => &mut self.main_builders[p],
            Some(t) => {
                if !self.routed.contains_key(t) {
                    self.routed.insert(t.to_string(), HashMap::new());
                }
                let per_topic = self.routed.get_mut(t).expect("inserted above");
                per_topic.entry(p).or_default()
            }
        };
        builder.push(&Record {
            key: r.key,
            value: r.value,
            timestamp: r.timestamp.unwrap_or(self.now),
            headers: r.headers,
        });
        if builder.size_estimate() >= MAX_BATCH_BYTES {
            let full = std::mem::take(builder);
            parts[p]
                .append_built(&mut full.build(), self.now)
                .map_err(|e| format!("appending to {}-{p}: {e}", target.unwrap_or(topic)))?;
        }
        Ok(())
    }

    /// Appends what is left in every batch.
    fn finish(self, (topic, main_parts, partitions): Topics<'_>) -> Result<(), String> {
        for (p, builder) in self.main_builders.into_iter().enumerate() {
            if !builder.is_empty() {
                main_parts[p]
                    .append_built(&mut builder.build(), self.now)
                    .map_err(|e| format!("appending to {topic}-{p}: {e}"))?;
            }
        }
        for (t, per_topic) in self.routed {
            for (p, builder) in per_topic {
                if builder.is_empty() {
                    continue;
                }
                let parts = partitions
                    .get(&t)
                    .ok_or_else(|| format!("topic `{t}` vanished"))?;
                parts[p]
                    .append_built(&mut builder.build(), self.now)
                    .map_err(|e| format!("appending to {t}-{p}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Commits the positions of records already in the log, then tells the source.
fn commit_source(
    ctx: &Ctx,
    task: &mut dyn SourceTask,
    offsets: &SourceOffsets,
    positions: &mut Positions,
) -> Result<(), String> {
    let positions = std::mem::take(positions).into_vec();
    if positions.is_empty() {
        return Ok(());
    }
    offsets
        .commit(&ctx.name, &positions)
        .map_err(|e| format!("committing source positions: {e}"))?;
    if let Err(e) = task.committed(positions) {
        tracing::warn!(connector = %ctx.name, error = %e, "source could not release committed records");
    }
    Ok(())
}

/// The partitions of a topic, created with defaults on first use (a router's target).
fn partitions_of<'a>(
    log: &Log,
    cache: &'a mut HashMap<String, Vec<Arc<sluice_log::Partition>>>,
    topic: &str,
) -> Result<&'a Vec<Arc<sluice_log::Partition>>, LogError> {
    if !cache.contains_key(topic) {
        ensure_topic(log, topic, 1, TopicConfig::default())?;
        cache.insert(topic.to_string(), log.topic(topic)?.partitions.clone());
    }
    Ok(&cache[topic])
}

/// Runs the source's transforms on a record (as JSON). `Ok(None)`: filtered out;
/// `Ok(Some(topic))`: the topic to write to; `Err`: why, with the original bytes.
fn transform_source_record(
    chain: &[Transform],
    topic: &str,
    r: &mut SourceRecord,
    now: i64,
) -> Result<Option<String>, (String, Option<Bytes>)> {
    let value = match &r.value {
        Some(Payload::Raw(b)) => Some(
            serde_json::from_slice::<serde_json::Value>(b)
                .map_err(|e| (format!("transforms need JSON values: {e}"), Some(b.clone())))?,
        ),
        Some(Payload::Typed { value, .. }) => Some(crate::convert::value_to_json(value)),
        None => None,
    };
    let key = match &r.key {
        Some(Payload::Raw(b)) => Some(serde_json::from_slice(b).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(b).into_owned())
        })),
        Some(Payload::Typed { value, .. }) => Some(crate::convert::value_to_json(value)),
        None => None,
    };
    let original = match &r.value {
        Some(Payload::Raw(b)) => Some(b.clone()),
        _ => None,
    };
    let t = TRecord {
        topic: topic.to_string(),
        key,
        value,
        headers: std::mem::take(&mut r.headers),
        timestamp: r.timestamp.unwrap_or(now),
    };
    match apply_all(chain, t) {
        Ok(Some(t)) => {
            r.value = t.value.map(|v| Payload::Raw(v.to_string().into()));
            r.key = t.key.map(|k| match k {
                serde_json::Value::String(s) => Payload::Raw(s.into()),
                other => Payload::Raw(other.to_string().into()),
            });
            r.headers = t.headers;
            r.timestamp = Some(t.timestamp);
            Ok(Some(t.topic))
        }
        Ok(None) => Ok(None),
        Err(e) => Err((e, original)),
    }
}

/// Runs a sink's transforms on a record's key and value (as JSON); `false`: filtered out.
fn transform_sink_record(chain: &[Transform], r: &mut SinkRecord) -> Result<bool, String> {
    let json = |p: &Option<Payload>| -> Result<Option<serde_json::Value>, String> {
        match p {
            Some(Payload::Raw(b)) => serde_json::from_slice(b)
                .map(Some)
                .map_err(|e| format!("transforms need JSON values: {e}")),
            Some(Payload::Typed { value, .. }) => Ok(Some(crate::convert::value_to_json(value))),
            None => Ok(None),
        }
    };
    let t = TRecord {
        topic: r.topic.to_string(),
        key: json(&r.key).ok().flatten(),
        value: json(&r.value)?,
        headers: std::mem::take(&mut r.headers),
        timestamp: r.timestamp,
    };
    match apply_all(chain, t)? {
        Some(t) => {
            r.value = t.value.map(|v| Payload::Raw(v.to_string().into()));
            r.key = t.key.map(|k| Payload::Raw(k.to_string().into()));
            r.headers = t.headers;
            r.timestamp = t.timestamp;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The latest position per stream of a poll's records. Records mostly come stream by
/// stream, so the current stream is compared first (a pointer, when the source shares its
/// name) and the map is touched only when the stream changes.
#[derive(Default)]
struct Positions {
    current: Option<SourcePosition>,
    others: HashMap<Arc<str>, SourcePosition>,
}

impl Positions {
    fn remember(&mut self, p: SourcePosition) {
        if let Some(c) = &mut self.current {
            if Arc::ptr_eq(&c.stream, &p.stream) || c.stream == p.stream {
                c.offset = p.offset;
                return;
            }
        }
        let earlier = self.others.remove(&p.stream);
        drop(earlier); // superseded by `p`
        if let Some(previous) = self.current.replace(p) {
            self.others.insert(previous.stream.clone(), previous);
        }
    }

    fn into_vec(self) -> Vec<SourcePosition> {
        self.others.into_values().chain(self.current).collect()
    }
}

fn group(name: &str) -> String {
    format!("connect-{name}")
}

fn commit_sink(ctx: &Ctx, durable: &[(TopicPartition, i64)]) -> Result<(), LogError> {
    let commits: Vec<OffsetCommit> = durable
        .iter()
        .map(|(tp, next)| OffsetCommit {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: *next,
            leader_epoch: -1,
            metadata: String::new(),
        })
        .collect();
    ctx.log.commit_offsets(&group(&ctx.name), &commits)
}

fn sink_loop(ctx: Ctx, mut task: Box<dyn SinkTask>, partitions: Vec<TopicPartition>) {
    let overrides = match ctx.retry("open", || task.open(partitions.clone())) {
        Ok(o) => o,
        Err(e) => return ctx.fail(e),
    };
    let mut positions: HashMap<TopicPartition, i64> = HashMap::new();
    for tp in &partitions {
        let Ok(p) = ctx.log.partition(&tp.topic, tp.partition) else {
            continue;
        };
        let own = overrides
            .iter()
            .find(|(o, _)| o == tp)
            .map(|(_, next)| *next);
        let committed = ctx
            .log
            .committed_offset(&group(&ctx.name), &tp.topic, tp.partition)
            .map(|c| c.offset);
        positions.insert(
            tp.clone(),
            own.or(committed).unwrap_or(0).max(p.log_start_offset()),
        );
    }
    let mut last_flush = Instant::now();
    let mut put_since_flush = false;
    let mut encoded_batch: Vec<u8> = Vec::new();
    let encoded_path = task.accepts_encoded()
        && ctx.transforms.is_empty()
        && matches!(&*ctx.converters, Converters::Sink { key, value } if key.is_pass_through() && value.is_pass_through());
    let mut spare_buffers: Vec<Vec<u8>> = Vec::new();
    let mut last_committed: Vec<(TopicPartition, i64)> = Vec::new();
    while !ctx.stop.load(Ordering::Acquire) {
        let mut batch: Vec<SinkRecord> = Vec::new();
        let mut read_buffers: Vec<Bytes> = Vec::new();
        // A sink that takes encoded batches (a plugin) gets one written straight from what
        // was read, when nothing changes the records on the way.
        let mut encoded = (encoded_path).then(|| wire::SinkBatchWriter::new(&mut encoded_batch));
        for tp in &partitions {
            let Ok(p) = ctx.log.partition(&tp.topic, tp.partition) else {
                continue;
            };
            let pos = positions.get(tp).copied().unwrap_or(0);
            if pos >= p.end_offset() {
                continue;
            }
            let reuse = spare_buffers.pop().unwrap_or_default();
            let read = match p.read_into(pos.max(p.log_start_offset()), SINK_READ_BYTES, reuse) {
                Ok(r) => r,
                Err(e) => return ctx.fail(e),
            };
            let read_buffer = Bytes::from(read.records);
            read_buffers.push(read_buffer.clone());
            let records = match decode_batches(&read_buffer) {
                Ok(r) => r,
                Err(e) => return ctx.fail(format!("decoding {}-{}: {e}", tp.topic, tp.partition)),
            };
            let mut next = pos;
            let shared_topic: Arc<str> = Arc::from(tp.topic.as_str());
            for r in records.into_iter().filter(|r| r.offset >= pos) {
                next = r.offset + 1;
                if let Some(w) = &mut encoded {
                    let headers: Vec<(String, Vec<u8>)> = r
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                String::from_utf8_lossy(k).into_owned(),
                                v.clone().unwrap_or_default(),
                            )
                        })
                        .collect();
                    w.push(wire::SinkFields {
                        topic: &tp.topic,
                        partition: tp.partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.as_deref(),
                        value: r.value.as_deref(),
                        headers: &headers,
                        key_schema: None,
                        value_schema: None,
                    });
                    continue;
                }
                let Converters::Sink {
                    key: key_decoder,
                    value: value_decoder,
                } = &*ctx.converters
                else {
                    return ctx.fail("a sink task was given a source's converters");
                };
                let origin = || {
                    vec![
                        ("topic".to_string(), tp.topic.clone()),
                        ("partition".to_string(), tp.partition.to_string()),
                        ("offset".to_string(), r.offset.to_string()),
                    ]
                };
                let (key, key_schema) = match r.key.map(|k| key_decoder.decode(k)) {
                    None => (None, None),
                    Some(Ok((k, schema))) => (Some(k), schema),
                    Some(Err((e, _))) => {
                        let e = format!("key: {e}");
                        if !ctx.bad_record("converter", &e, r.value.as_deref(), origin()) {
                            return;
                        }
                        continue;
                    }
                };
                let (value, value_schema) = match r.value.map(|v| value_decoder.decode(v)) {
                    None => (None, None),
                    Some(Ok((v, schema))) => (Some(v), schema),
                    Some(Err((e, original))) => {
                        if !ctx.bad_record("converter", &e, Some(&original), origin()) {
                            return;
                        }
                        continue;
                    }
                };
                let mut record = SinkRecord {
                    topic: shared_topic.clone(),
                    partition: tp.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: key.map(Payload::Raw),
                    value: value.map(Payload::Raw),
                    key_schema,
                    value_schema,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                String::from_utf8_lossy(&k).into_owned(),
                                v.unwrap_or_default(),
                            )
                        })
                        .collect(),
                };
                if !ctx.transforms.is_empty() {
                    match transform_sink_record(&ctx.transforms, &mut record) {
                        Ok(true) => {}
                        Ok(false) => continue, // filtered out
                        Err(e) => {
                            let origin = vec![
                                ("topic".into(), tp.topic.clone()),
                                ("partition".into(), tp.partition.to_string()),
                                ("offset".into(), record.offset.to_string()),
                            ];
                            let original = match &record.value {
                                Some(Payload::Raw(b)) => Some(b.clone()),
                                _ => None,
                            };
                            if !ctx.bad_record("transform", &e, original.as_deref(), origin) {
                                return;
                            }
                            continue;
                        }
                    }
                }
                batch.push(record);
            }
            if let Some((_, h)) = sluice_log::batch::split_verified(&read_buffer)
                .ok()
                .and_then(|b| b.last().copied())
            {
                next = next.max(h.last_offset() + 1);
            }
            positions.insert(tp.clone(), next);
        }
        let encoded_count = encoded.map(|w| w.finish()).unwrap_or(0);
        if encoded_count > 0 {
            if let Err(e) = put_encoded(&ctx, task.as_mut(), &encoded_batch) {
                return ctx.fail(e);
            }
        }
        let caught_up = batch.is_empty() && encoded_count == 0;
        if caught_up {
            if !put_since_flush {
                // Checking for new records costs an atomic load per partition: look often,
                // so that records are delivered milliseconds after they are appended.
                std::thread::sleep(SINK_IDLE_WAIT);
            }
        } else {
            if !batch.is_empty() {
                if let Err(e) = put_batch(&ctx, task.as_mut(), batch) {
                    return ctx.fail(e);
                }
            }
            put_since_flush = true;
        }
        // Read buffers no record holds any more are read into again: fresh 4 MB buffers
        // would cost page faults and zeroing on every read.
        for b in read_buffers.drain(..) {
            if let Ok(unique) = b.try_into_mut() {
                spare_buffers.push(Vec::from(unique));
            }
        }
        if last_flush.elapsed() >= SINK_FLUSH_EVERY || (caught_up && put_since_flush) {
            last_flush = Instant::now();
            put_since_flush = false;
            match ctx.retry("flush", || task.flush()) {
                Ok(durable) => {
                    // Committing costs an fsync: only when a position moved.
                    if durable != last_committed {
                        if let Err(e) = commit_sink(&ctx, &durable) {
                            return ctx.fail(format!("committing sink positions: {e}"));
                        }
                        last_committed = durable;
                    }
                }
                Err(e) => return ctx.fail(e),
            }
        }
    }
    // Graceful stop: finish what was put, then commit it.
    let _ = task.close(partitions.clone());
    if let Ok(durable) = task.flush() {
        let _ = commit_sink(&ctx, &durable);
    }
    let _ = task.stop();
    set(&ctx.status, &ctx.task, TaskState::Stopped);
}

/// An encoded batch to a sink that takes them; after a bad record, the batch goes again as
/// records, one at a time, so that only the bad one meets the error policy.
fn put_encoded(ctx: &Ctx, task: &mut dyn SinkTask, batch: &[u8]) -> Result<(), String> {
    match ctx.retry("put", || task.put_encoded(batch)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::BadRecord => {
            let records = wire::decode_sink(&Bytes::copy_from_slice(batch))
                .map_err(|e| format!("re-reading a batch: {e}"))?;
            put_batch(ctx, task, records)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn put_batch(ctx: &Ctx, task: &mut dyn SinkTask, batch: Vec<SinkRecord>) -> Result<(), String> {
    match ctx.retry("put", || task.put(&batch)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::BadRecord => {
            // Find the failing records one by one; the others go through.
            for r in batch {
                if let Err(e) = ctx.retry("put", || task.put(std::slice::from_ref(&r))) {
                    let origin = vec![
                        ("topic".into(), r.topic.to_string()),
                        ("partition".into(), r.partition.to_string()),
                        ("offset".into(), r.offset.to_string()),
                    ];
                    if e.kind != ErrorKind::BadRecord
                        || !ctx.bad_record("sink", &e.message, raw(&r.value).as_deref(), origin)
                    {
                        return Err(e.to_string());
                    }
                }
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
