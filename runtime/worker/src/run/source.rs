//! A source task's loop: poll, run transforms and converters, append to the log in batches
//! per partition, then commit the positions of what is durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_connector_sdk::connector::{
    Polled, SourcePosition, SourceRecord, SourceTask, ValueRun, POSITION_HEADER,
    SOURCE_ERROR_HEADER,
};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::plugin::wire;
use sluice_connector_sdk::Bytes;
use sluice_kafka::{Outgoing, TaskProducer};
use sluice_log::{BatchBuilder, LogError, Record, TopicConfig};

use super::positions::Tails;
use super::{
    ensure_topic, Ctx, RecordOrigin, RecordStage, SourceCtx, Stage, TaskError, MAX_BATCH_BYTES,
    POLL_RECORDS, POLL_TIMEOUT, SOURCE_COMMIT_EVERY,
};
use crate::metrics::TaskMetrics;
use crate::offsets::SourceOffsets;
use crate::partitioner::partition_for_key;
use crate::transforms::{apply_all, TRecord, Transform};

/// Runs a source task until it is asked to stop or fails (the failure is in `ctx`); the
/// task's `stop` is called either way.
pub(super) fn source_loop(ctx: &SourceCtx, mut task: Box<dyn SourceTask>, offsets: &SourceOffsets) {
    run_source(ctx, &mut task, offsets);
    if let Err(e) = task.stop() {
        tracing::warn!(connector = %ctx.name, task = %ctx.task, error = %e, "the source did not stop cleanly");
    }
}

fn run_source(ctx: &SourceCtx, task: &mut Box<dyn SourceTask>, offsets: &SourceOffsets) {
    let topic = ctx.topic.to_string();
    let kafka = ctx.kafka.as_deref();
    // On a cluster: the task's producer, made before the positions are read: with
    // `exactly_once`, initializing it fences the task's previous run (a worker killed
    // mid-transaction) and aborts what it left open, so that the positions read are the
    // ones its last committed transaction left.
    let producer = match kafka {
        None => None,
        Some(k) => {
            let client_id = format!("sluice-{}", ctx.task);
            // One transactional id per task of the deployment: a task started again (here
            // or on another worker) fences the one before and aborts what it left open.
            let made = if ctx.exactly_once {
                let id = format!("sluice-{}-{}", k.settings().group, ctx.task);
                k.cluster.transactional_producer(&client_id, &id)
            } else {
                k.cluster.producer(&client_id)
            };
            match made {
                Ok(p) => Some(p),
                Err(e) => return ctx.fail(Stage::Start, e),
            }
        }
    };
    let committed = match kafka {
        None => offsets.positions(&ctx.name),
        Some(k) => match k.offsets.positions(&ctx.name) {
            Ok(p) => p
                .into_iter()
                .map(|(stream, offset)| SourcePosition {
                    stream: stream.into(),
                    offset,
                })
                .collect(),
            Err(e) => return ctx.fail(Stage::Start, format!("reading source positions: {e}")),
        },
    };
    let lease = kafka.and_then(|k| Some((k.leases()?, ctx.lease.clone()?)));
    if let Err(e) = ctx.retry("start", || task.start(committed.clone())) {
        return ctx.fail(Stage::Start, e);
    }
    // Exactly once for sources with ordered positions: what a crash left past the last
    // committed positions is read back, so that it is not appended twice.
    let order = task.position_order();
    // (On a cluster, what a crash left past the positions is delivered again: at least once.)
    let tails = match order {
        Some(_) if kafka.is_none() => Tails::recover(&ctx.log, &ctx.name),
        _ => Tails::default(),
    };
    let mut partitions: HashMap<String, Vec<PartOut>> = HashMap::new();
    // The connector's own topic was created when the worker started: a topic deleted since
    // is not created again behind the operator's back.
    match existing_partitions(ctx, &topic) {
        Ok(parts) => {
            partitions.insert(topic.clone(), parts);
        }
        Err(e) => return ctx.fail_with(e),
    }
    let main_parts = partitions[&topic].clone();
    let sticky = AtomicU32::new(0);
    // Positions of records already in the log, not yet committed.
    let mut positions = Positions::default();
    let mut last_commit = Instant::now();
    let mut transcoded: Vec<u8> = Vec::new();
    // Batches are built in buffers kept from poll to poll.
    let mut out = Batching {
        now: 0,
        round: 0,
        appended_records: 0,
        appended_bytes: 0,
        main_builders: (0..main_parts.len()).map(|_| BatchBuilder::new()).collect(),
        routed: HashMap::new(),
        tails,
        producer,
    };
    while !ctx.control.should_stop() {
        if lease.as_ref().is_some_and(|(leases, l)| !leases.holds(l)) {
            tracing::info!(connector = %ctx.name, task = %ctx.task, "the task moved to another worker of the group");
            break; // what is written is committed below
        }
        if ctx.control.is_paused() {
            // Nothing is polled while paused; what is in the log is committed first.
            if let Err(e) = commit_source(ctx, task.as_mut(), offsets, &mut positions, &out) {
                return ctx.fail(Stage::Commit, e);
            }
            // A paused task hands its lease over at once when the group moves it.
            ctx.control
                .wait_while_paused_unless(|| lease.as_ref().is_some_and(|(l, k)| !l.holds(k)));
            continue;
        }
        let poll_started = Instant::now();
        let polled = match ctx.retry("poll", || task.poll_batch(POLL_RECORDS, POLL_TIMEOUT)) {
            Ok(p) => p,
            Err(e) => return ctx.fail(Stage::Poll, e),
        };
        if let Some(m) = &ctx.metrics {
            TaskMetrics::observe(&m.poll_seconds, poll_started.elapsed());
            m.bytes_in.inc_by(polled_bytes(&polled));
        }
        // An encoded batch (from a plugin) and runs of values are read in place unless
        // transforms or the converter need records.
        let values_in_place = ctx.transforms.is_empty()
            && (ctx.encoders.value.checks_in_place() || ctx.encoders.value.transcodes_raw());
        let (records, encoded, runs) = match polled {
            Polled::Records(r) => (r, None, Vec::new()),
            Polled::Values(runs) if values_in_place => (Vec::new(), None, runs),
            Polled::Values(runs) => (
                runs.into_iter().flat_map(ValueRun::into_records).collect(),
                None,
                Vec::new(),
            ),
            Polled::Encoded(b) if ctx.transforms.is_empty() => (Vec::new(), Some(b), Vec::new()),
            Polled::Encoded(b) => match wire::decode_source(&b) {
                Ok(r) => (r, None, Vec::new()),
                Err(e) => return ctx.fail(Stage::Poll, format!("the source's records: {e}")),
            },
        };
        let views = match encoded.as_deref().map(wire::source_views) {
            None => Vec::new(),
            Some(Ok(v)) => v,
            Some(Err(e)) => return ctx.fail(Stage::Poll, format!("the source's records: {e}")),
        };
        let count = records.len() + views.len() + runs.iter().map(ValueRun::len).sum::<usize>();
        if count == 0 {
            if let Err(e) = commit_source(ctx, task.as_mut(), offsets, &mut positions, &out) {
                return ctx.fail(Stage::Commit, e);
            }
            last_commit = Instant::now();
            continue;
        }
        let caught_up = count < POLL_RECORDS;
        if let Some(m) = &ctx.metrics {
            m.records_in.inc_by(count as u64);
        }
        out.now = sluice_log::now_ms();
        out.round = sticky.fetch_add(1, Ordering::Relaxed) as usize;
        // A record the error policy does not tolerate stops the task, but only after the
        // records before it are stored and their positions committed. Each form of polled
        // record has its own path (the fast ones read in place); all go through `drive`.
        let flow = if let Some(buf) = &encoded {
            // A position is kept per run of records of one stream, parsed once.
            let pass_through =
                ctx.encoders.key.passes_through() && ctx.encoders.value.passes_through();
            let mut run: Option<wire::SourceView<'_>> = None;
            let flow = drive(
                ctx,
                views.iter().copied(),
                |v| {
                    let topics = (topic.as_str(), main_parts.as_slice(), &mut partitions);
                    deliver_view(ctx, &mut out, topics, buf, pass_through, v)
                },
                |v| {
                    if run.is_some_and(|r| r.stream != v.stream) {
                        remember_view(&mut positions, run.take())
                            .map_err(|e| TaskError::new(Stage::Poll, e))?;
                    }
                    run = Some(v);
                    Ok(())
                },
            );
            if let Err(e) = remember_view(&mut positions, run) {
                return ctx.fail(Stage::Poll, e);
            }
            flow
        } else if !runs.is_empty() {
            let mut flow = Flow::Continue;
            for run in &runs {
                // The position after the last value stored (or refused and tolerated).
                let mut done: Option<u64> = None;
                flow = drive(
                    ctx,
                    run.iter(),
                    |&mut (raw, position)| {
                        let value = ValueIn { run, raw, position };
                        deliver_value(ctx, &mut out, (&topic, &main_parts), &mut transcoded, value)
                    },
                    |(_, position)| {
                        done = Some(position);
                        Ok(())
                    },
                );
                remember_run(&mut positions, run, done);
                if !matches!(flow, Flow::Continue) {
                    break;
                }
            }
            flow
        } else {
            drive(
                ctx,
                records,
                |r| {
                    let topics = (topic.as_str(), main_parts.as_slice(), &mut partitions);
                    let ordered = order.and_then(|f| f(&r.position));
                    deliver_record(ctx, &mut out, topics, r, ordered)
                },
                |r| {
                    positions.remember(r.position);
                    Ok(())
                },
            )
        };
        let stopped_at_bad_record = match flow {
            Flow::Continue => false,
            Flow::Stopped => true,
            Flow::Failed => return, // the failure is recorded in `ctx`
        };
        hold_appends_while_asked(ctx);
        let finished = out.finish((&topic, &main_parts, &mut partitions));
        if let Some(m) = &ctx.metrics {
            m.records_out
                .inc_by(std::mem::take(&mut out.appended_records));
            m.bytes_out.inc_by(std::mem::take(&mut out.appended_bytes));
        }
        if let Err(e) = finished {
            return ctx.fail_with(e);
        }
        // The records are in the log (durable per the topic's flush policy): now their
        // positions, at once when the source has caught up (a webhook's callers are waiting),
        // else at most every SOURCE_COMMIT_EVERY (each commit is an fsync).
        if caught_up || stopped_at_bad_record || last_commit.elapsed() >= SOURCE_COMMIT_EVERY {
            if let Err(e) = commit_source(ctx, task.as_mut(), offsets, &mut positions, &out) {
                return ctx.fail(Stage::Commit, e);
            }
            last_commit = Instant::now();
        }
        if stopped_at_bad_record {
            return; // the failure is recorded in `ctx`
        }
    }
    if let Err(e) = commit_source(ctx, task.as_mut(), offsets, &mut positions, &out) {
        ctx.fail(Stage::Commit, e);
    }
}

/// What became of one polled record on its way to the log.
enum Step {
    /// Stored in a batch, or filtered out by a transform.
    Done,
    /// Refused: the error policy decides.
    Refused(Refusal),
    /// The task cannot go on (an append failed).
    Fatal(TaskError),
}

/// A polled record a stage refused, with what its dead-letter copy carries.
struct Refusal {
    stage: RecordStage,
    message: String,
    original: Option<Bytes>,
    stream: String,
    offset: String,
}

/// How a run of polled records ended.
enum Flow {
    Continue,
    /// A refused record the policy does not tolerate: the records before it are stored.
    Stopped,
    /// The task failed (recorded in its context).
    Failed,
}

/// The one outcome handler of every form of polled record: `step` takes a record to its
/// batch; a record stored, filtered out, or refused and tolerated (dead-lettered) is then
/// handed to `remember` (its position will be committed); a refused record the policy does
/// not tolerate stops the run before it is remembered, so that a restart reads it again.
fn drive<T>(
    ctx: &Ctx,
    items: impl IntoIterator<Item = T>,
    mut step: impl FnMut(&mut T) -> Step,
    mut remember: impl FnMut(T) -> Result<(), TaskError>,
) -> Flow {
    for mut item in items {
        match step(&mut item) {
            Step::Done => {}
            Step::Refused(r) => {
                let origin = RecordOrigin::Source {
                    stream: &r.stream,
                    offset: &r.offset,
                };
                if !ctx.bad_record(r.stage, &r.message, r.original.as_deref(), origin) {
                    return Flow::Stopped;
                }
            }
            Step::Fatal(e) => {
                ctx.fail_with(e);
                return Flow::Failed;
            }
        }
        if let Err(e) = remember(item) {
            ctx.fail_with(e);
            return Flow::Failed;
        }
    }
    Flow::Continue
}

fn refused_record(
    r: &SourceRecord,
    stage: RecordStage,
    message: String,
    original: Option<Bytes>,
) -> Step {
    Step::Refused(Refusal {
        stage,
        message,
        original,
        stream: r.position.stream.to_string(),
        offset: r.position.offset.to_string(),
    })
}

/// A record a source built: its error header, the transforms, the converters, its batch.
fn deliver_record(
    ctx: &SourceCtx,
    out: &mut Batching,
    topics: Topics<'_>,
    r: &mut SourceRecord,
    order: Option<u128>,
) -> Step {
    if let Some(i) = r.headers.iter().position(|(k, _)| k == SOURCE_ERROR_HEADER) {
        let message = String::from_utf8_lossy(&r.headers[i].1).into_owned();
        let original = match r.value.take() {
            Some(Payload::Raw(b)) => Some(b),
            _ => None,
        };
        return refused_record(r, RecordStage::Source, message, original);
    }
    let topic = topics.0;
    // A record may name its topic (a CDC source's table); transforms may route it again.
    let mut target: Option<String> = r.topic.take().filter(|t| t != topic);
    if !ctx.transforms.is_empty() {
        let from = target.as_deref().unwrap_or(topic);
        match transform_source_record(&ctx.transforms, from, r, out.now) {
            Ok(Some(t)) => target = (t != topic).then_some(t),
            Ok(None) => return Step::Done, // filtered out
            Err((message, original)) => {
                return refused_record(r, RecordStage::Transform, message, original)
            }
        }
    }
    let to = target.as_deref().unwrap_or(topic);
    let (key, value) = match convert_to(ctx, to, r.key.take(), r.value.take()) {
        Ok(kv) => kv,
        Err(e) => {
            let original = e.original.map(Bytes::from);
            return refused_record(r, RecordStage::Converter, e.message, original);
        }
    };
    let position = order.map(|o| (o, super::positions::header_value(o, &ctx.name)));
    let mut headers: Vec<(&str, Option<&[u8]>)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
        .collect();
    if let Some((_, h)) = &position {
        headers.push((POSITION_HEADER, Some(h.as_slice())));
    }
    let stored = out.push(
        ctx,
        topics,
        target.as_deref(),
        OutRecord {
            key: key.as_deref(),
            value: value.as_deref(),
            partition: r.partition,
            timestamp: r.timestamp,
            headers,
            order,
        },
    );
    match stored {
        Ok(()) => Step::Done,
        Err(e) => Step::Fatal(e),
    }
}

/// A record of a plugin's encoded batch, read in place (`bytes` keys and values go into
/// the batch straight from the plugin's).
fn deliver_view(
    ctx: &SourceCtx,
    out: &mut Batching,
    topics: Topics<'_>,
    buf: &Bytes,
    pass_through: bool,
    v: &wire::SourceView<'_>,
) -> Step {
    let refused = |stage, message, original: Option<&[u8]>| {
        Step::Refused(Refusal {
            stage,
            message,
            original: original.map(|o| buf.slice_ref(o)),
            stream: v.stream.to_string(),
            offset: String::from_utf8_lossy(v.offset).into_owned(),
        })
    };
    if let Some((_, m)) = v.headers().find(|(k, _)| *k == SOURCE_ERROR_HEADER) {
        let message = String::from_utf8_lossy(m).into_owned();
        return refused(RecordStage::Source, message, v.value);
    }
    let (key, value) = if pass_through {
        (None, None)
    } else {
        match convert(
            ctx,
            v.key.map(|k| Payload::Raw(buf.slice_ref(k))),
            v.value.map(|b| Payload::Raw(buf.slice_ref(b))),
        ) {
            Ok(kv) => kv,
            Err(e) => return refused(RecordStage::Converter, e.message, v.value),
        }
    };
    let topic = topics.0;
    let stored = out.push(
        ctx,
        topics,
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
            order: None,
        },
    );
    match stored {
        Ok(()) => Step::Done,
        Err(e) => Step::Fatal(e),
    }
}

/// One value of a run, with where it stands in its stream.
struct ValueIn<'a> {
    run: &'a ValueRun,
    raw: &'a [u8],
    position: u64,
}

/// A value of a run (JSON lines), stored as it is once checked, or converted (Avro, a
/// declared schema) into a buffer reused from value to value.
fn deliver_value(
    ctx: &SourceCtx,
    out: &mut Batching,
    (topic, main_parts): (&str, &[PartOut]),
    transcoded: &mut Vec<u8>,
    ValueIn { run, raw, position }: ValueIn<'_>,
) -> Step {
    let encoder = &ctx.encoders.value;
    let stored = if encoder.checks_in_place() {
        encoder.check_raw(raw).map(|()| raw)
    } else {
        transcoded.clear();
        encoder
            .encode_raw_into(raw, transcoded)
            .map(|()| transcoded.as_slice())
    };
    match stored {
        Ok(v) => match out.push_value(topic, main_parts, v) {
            Ok(()) => Step::Done,
            Err(e) => Step::Fatal(e),
        },
        Err(message) => Step::Refused(Refusal {
            stage: RecordStage::Converter,
            message,
            original: Some(Bytes::copy_from_slice(raw)),
            stream: run.stream().to_string(),
            offset: position.to_string(),
        }),
    }
}

/// The bytes a poll handed over: an encoded batch's, runs' buffers, records' keys and values.
fn polled_bytes(polled: &Polled) -> u64 {
    let raw = |p: &Option<Payload>| match p {
        Some(Payload::Raw(b)) => b.len() as u64,
        _ => 0,
    };
    match polled {
        Polled::Encoded(b) => b.len() as u64,
        Polled::Values(runs) => runs.iter().map(|r| r.buffer_len() as u64).sum(),
        Polled::Records(records) => records.iter().map(|r| raw(&r.key) + raw(&r.value)).sum(),
    }
}

/// Remembers the position after the last value of a run handled.
fn remember_run(positions: &mut Positions, run: &ValueRun, done: Option<u64>) {
    if let Some(p) = done {
        positions.remember(SourcePosition {
            stream: run.stream().clone(),
            offset: serde_json::Value::from(p),
        });
    }
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
    ctx: &SourceCtx,
    key: Option<Payload>,
    value: Option<Payload>,
) -> Result<(Option<Bytes>, Option<Bytes>), crate::convert::EncodeError> {
    convert_to(ctx, ctx.topic, key, value)
}

/// [`convert`] for a record going to `topic` (typed payloads with their own schemas are
/// registered per topic).
fn convert_to(
    ctx: &SourceCtx,
    topic: &str,
    key: Option<Payload>,
    value: Option<Payload>,
) -> Result<(Option<Bytes>, Option<Bytes>), crate::convert::EncodeError> {
    Ok((
        ctx.encoders.key.encode_to(topic, key)?,
        ctx.encoders.value.encode_to(topic, value)?,
    ))
}

/// A converted record on its way into a batch.
struct OutRecord<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    partition: Option<i32>,
    timestamp: Option<i64>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    /// Its place in the source's order, for sources with ordered positions.
    order: Option<u128>,
}

/// The connector's topic, its partitions, and the partitions of topics routed to.
type Topics<'a> = (
    &'a str,
    &'a [PartOut],
    &'a mut HashMap<String, Vec<PartOut>>,
);

/// The batches of one poll: per partition of the connector's topic (indexed: no hashing per
/// record), and per topic a router sent records to. Full batches are appended as they fill.
struct Batching {
    now: i64,
    round: usize,
    /// Records and bytes appended since the metrics last took them.
    appended_records: u64,
    appended_bytes: u64,
    main_builders: Vec<BatchBuilder>,
    routed: HashMap<String, HashMap<usize, BatchBuilder>>,
    /// What partitions already hold after a crash (sources with ordered positions).
    tails: Tails,
    /// On a Kafka cluster: the task's producer.
    producer: Option<TaskProducer>,
}

/// Where a partition's batches go: the embedded log, or a partition on the cluster.
#[derive(Clone)]
enum PartOut {
    Log(Arc<sluice_log::Partition>),
    Kafka(Arc<str>, i32),
}

/// An append that failed, on either backend.
enum AppendFailure {
    Log(LogError),
    Kafka(sluice_kafka::ClusterError),
}

impl AppendFailure {
    fn into_task_error(self, to: impl std::fmt::Display) -> TaskError {
        let context = format_args!("appending to {to}");
        match self {
            AppendFailure::Log(e) => TaskError::from_log(Stage::Append, context, &e),
            AppendFailure::Kafka(e) if e.retriable => {
                TaskError::new(Stage::Append, format!("{context}: {e}"))
            }
            AppendFailure::Kafka(e) => {
                TaskError::permanent(Stage::Append, format!("{context}: {e}"))
            }
        }
    }
}

/// Appends a built batch: to the embedded partition (durable per the topic's policy when
/// this returns), or record by record to the task's producer (acknowledged at the next
/// flush, before positions are committed).
fn append_built(
    producer: Option<&TaskProducer>,
    part: &PartOut,
    built: &mut [u8],
    now: i64,
) -> Result<(), AppendFailure> {
    match (part, producer) {
        (PartOut::Log(p), _) => p
            .append_built(built, now)
            .map(drop)
            .map_err(AppendFailure::Log),
        (PartOut::Kafka(topic, partition), Some(producer)) => {
            let records = sluice_log::decode_record_set(built).map_err(|source| {
                AppendFailure::Log(LogError::InvalidBatch {
                    topic: topic.to_string(),
                    partition: *partition as u32,
                    source,
                })
            })?;
            for r in &records {
                let names: Vec<std::borrow::Cow<'_, str>> = r
                    .headers
                    .iter()
                    .map(|(k, _)| String::from_utf8_lossy(k))
                    .collect();
                let headers: Vec<(&str, Option<&[u8]>)> = names
                    .iter()
                    .zip(&r.headers)
                    .map(|(k, (_, v))| (k.as_ref(), v.as_deref()))
                    .collect();
                producer
                    .send(&Outgoing {
                        topic,
                        partition: Some(*partition),
                        key: r.key.as_deref(),
                        value: r.value.as_deref(),
                        timestamp: r.timestamp,
                        headers: &headers,
                    })
                    .map_err(AppendFailure::Kafka)?;
            }
            Ok(())
        }
        (PartOut::Kafka(..), None) => unreachable!("a cluster's partitions come with a producer"),
    }
}

/// The partitions of a topic that must exist (the connector's own).
fn existing_partitions(ctx: &Ctx, topic: &str) -> Result<Vec<PartOut>, TaskError> {
    let gone = |e: String| TaskError::permanent(Stage::Append, format!("topic `{topic}`: {e}"));
    match &ctx.kafka {
        None => match ctx.log.topic(topic) {
            Ok(t) => Ok(t.partitions.iter().cloned().map(PartOut::Log).collect()),
            Err(e) => Err(gone(e.to_string())),
        },
        Some(k) => match k.cluster.partition_count(topic) {
            Ok(Some(n)) => Ok(kafka_parts(topic, n)),
            Ok(None) => Err(gone(
                "the Kafka cluster has no such topic (deleted?)".into(),
            )),
            Err(e) => Err(TaskError::new(Stage::Append, e.to_string())),
        },
    }
}

fn kafka_parts(topic: &str, n: u32) -> Vec<PartOut> {
    let topic: Arc<str> = Arc::from(topic);
    (0..n as i32)
        .map(|p| PartOut::Kafka(topic.clone(), p))
        .collect()
}

impl Batching {
    fn push(
        &mut self,
        ctx: &Ctx,
        (topic, main_parts, partitions): Topics<'_>,
        target: Option<&str>,
        r: OutRecord<'_>,
    ) -> Result<(), TaskError> {
        let parts: &[PartOut] = match target {
            None => main_parts,
            Some(t) => partitions_of(ctx, partitions, t)?,
        };
        let p = match (r.partition, r.key) {
            (Some(p), _) => (p.max(0) as usize) % parts.len(),
            (None, Some(k)) => partition_for_key(k, parts.len() as u32) as usize,
            (None, None) => self.round % parts.len(),
        };
        if let Some(order) = r.order.filter(|_| !self.tails.is_empty()) {
            if self.tails.holds(target.unwrap_or(topic), p, order) {
                return Ok(()); // appended before a crash, its position not yet committed
            }
        }
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
            self.appended_records += builder.len() as u64;
            let built = builder.build_in_place();
            self.appended_bytes += built.len() as u64;
            let appended = append_built(self.producer.as_ref(), &parts[p], built, self.now);
            builder.clear();
            appended
                .map_err(|e| e.into_task_error(format_args!("{}-{p}", target.unwrap_or(topic))))?;
        }
        Ok(())
    }

    /// A value with no key, header, partition or timestamp of its own, to the topic's
    /// partition of this poll: what runs of values are.
    #[inline]
    fn push_value(
        &mut self,
        topic: &str,
        main_parts: &[PartOut],
        value: &[u8],
    ) -> Result<(), TaskError> {
        let p = self.round % main_parts.len();
        let builder = &mut self.main_builders[p];
        builder.push(&Record {
            key: None,
            value: Some(value),
            timestamp: self.now,
            headers: Vec::new(),
        });
        if builder.size_estimate() >= MAX_BATCH_BYTES {
            self.appended_records += builder.len() as u64;
            let built = builder.build_in_place();
            self.appended_bytes += built.len() as u64;
            let appended = append_built(self.producer.as_ref(), &main_parts[p], built, self.now);
            builder.clear();
            appended.map_err(|e| e.into_task_error(format_args!("{topic}-{p}")))?;
        }
        Ok(())
    }

    /// Appends what is left in every batch; the builders stay, empty, for the next poll.
    fn finish(&mut self, (topic, main_parts, partitions): Topics<'_>) -> Result<(), TaskError> {
        for (p, builder) in self.main_builders.iter_mut().enumerate() {
            if !builder.is_empty() {
                self.appended_records += builder.len() as u64;
                let built = builder.build_in_place();
                self.appended_bytes += built.len() as u64;
                let appended =
                    append_built(self.producer.as_ref(), &main_parts[p], built, self.now);
                builder.clear();
                appended.map_err(|e| e.into_task_error(format_args!("{topic}-{p}")))?;
            }
        }
        for (t, per_topic) in &mut self.routed {
            for (p, builder) in per_topic.iter_mut() {
                if builder.is_empty() {
                    continue;
                }
                let parts = partitions.get(t).ok_or_else(|| {
                    TaskError::new(Stage::Append, format!("topic `{t}` vanished"))
                })?;
                self.appended_records += builder.len() as u64;
                let built = builder.build_in_place();
                self.appended_bytes += built.len() as u64;
                let appended = append_built(self.producer.as_ref(), &parts[*p], built, self.now);
                builder.clear();
                appended.map_err(|e| e.into_task_error(format_args!("{t}-{p}")))?;
            }
        }
        Ok(())
    }
}

/// A test hook for end-to-end tests of the real binary: while the file named by
/// `SLUICE_TEST_HOLD_APPENDS` exists, sources' appends wait, as behind a full disk or an
/// fsync that does not return (unset, as in production, this costs one check per poll).
fn hold_appends_while_asked(ctx: &Ctx) {
    static HOLD: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let hold = HOLD
        .get_or_init(|| std::env::var_os("SLUICE_TEST_HOLD_APPENDS").map(std::path::PathBuf::from));
    if let Some(path) = hold {
        while path.exists() && !ctx.control.should_stop() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Commits the positions of records already in the log, then tells the source. On a
/// cluster, every record sent is first acknowledged (a failed delivery commits nothing).
fn commit_source(
    ctx: &Ctx,
    task: &mut dyn SourceTask,
    offsets: &SourceOffsets,
    positions: &mut Positions,
    out: &Batching,
) -> Result<(), String> {
    let positions = std::mem::take(positions).into_vec();
    if positions.is_empty() {
        return Ok(());
    }
    match (&ctx.kafka, &out.producer) {
        // The positions go in the transaction of the records they cover: both or neither.
        (Some(k), Some(producer)) if producer.is_transactional() => {
            let now = sluice_log::now_ms();
            for p in &positions {
                let key = sluice_kafka::offsets::offset_key(&ctx.name, &p.stream);
                let value = sluice_kafka::offsets::offset_value(Some(&p.offset));
                producer
                    .send(&Outgoing {
                        topic: k.offsets.topic(),
                        partition: Some(0),
                        key: Some(&key),
                        value: value.as_deref(),
                        timestamp: now,
                        headers: &[],
                    })
                    .map_err(|e| format!("committing source positions: {e}"))?;
            }
            producer
                .commit_transaction()
                .map_err(|e| format!("committing source records and positions: {e}"))?;
        }
        (Some(k), Some(producer)) => {
            producer.flush().map_err(|e| e.to_string())?;
            let changes: Vec<(String, Option<serde_json::Value>)> = positions
                .iter()
                .map(|p| (p.stream.to_string(), Some(p.offset.clone())))
                .collect();
            k.offsets
                .commit(&ctx.name, &changes)
                .map_err(|e| format!("committing source positions: {e}"))?;
        }
        _ => offsets
            .commit(&ctx.name, &positions)
            .map_err(|e| format!("committing source positions: {e}"))?,
    }
    if let Err(e) = task.committed(positions) {
        tracing::warn!(connector = %ctx.name, error = %e, "source could not release committed records");
    }
    Ok(())
}

/// The partitions of a topic, created with defaults on first use (a router's target).
fn partitions_of<'a>(
    ctx: &Ctx,
    cache: &'a mut HashMap<String, Vec<PartOut>>,
    topic: &str,
) -> Result<&'a Vec<PartOut>, TaskError> {
    if !cache.contains_key(topic) {
        let parts = match &ctx.kafka {
            None => {
                let log_err = |e: LogError| {
                    TaskError::from_log(Stage::Append, format_args!("topic `{topic}`"), &e)
                };
                ensure_topic(&ctx.log, topic, 1, TopicConfig::default()).map_err(log_err)?;
                let t = ctx.log.topic(topic).map_err(log_err)?;
                t.partitions.iter().cloned().map(PartOut::Log).collect()
            }
            Some(k) => {
                let cluster_err = |e: sluice_kafka::ClusterError| {
                    TaskError::new(Stage::Append, format!("topic `{topic}`: {e}"))
                };
                k.ensure_topic(topic, 1, &TopicConfig::default())
                    .map_err(cluster_err)?;
                let n = k.cluster.partition_count(topic).map_err(cluster_err)?;
                kafka_parts(topic, n.unwrap_or(1))
            }
        };
        cache.insert(topic.to_string(), parts);
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
    let key = crate::transforms::key_to_json(&r.key);
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
            r.key = t.key.map(crate::transforms::key_from_json);
            r.headers = t.headers;
            r.timestamp = Some(t.timestamp);
            Ok(Some(t.topic))
        }
        Ok(None) => Ok(None),
        Err(e) => Err((e, original)),
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
