//! A sink task's loop: read its partitions from the log, decode and transform, `put` in
//! batches, `flush` at least every SINK_FLUSH_EVERY, and commit what the sink made durable.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use sluice_connector_sdk::connector::{
    ErrorKind, SinkRecord, SinkTask, SinkValueRun, TopicPartition,
};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::plugin::wire;
use sluice_connector_sdk::Bytes;
use sluice_kafka::SinkConsumer;
use sluice_log::OffsetCommit;

/// How long a read from a cluster waits for records when there are none.
const SINK_CLUSTER_WAIT: Duration = Duration::from_millis(50);

use super::{
    raw, Ctx, RecordOrigin, RecordStage, SinkCtx, Stage, SINK_FLUSH_EVERY, SINK_IDLE_WAIT,
    SINK_READ_BYTES,
};
use crate::convert::decode_batches;
use crate::metrics::TaskMetrics;
use crate::transforms::{apply_all, TRecord, Transform};

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
        key: crate::transforms::key_to_json(&r.key),
        value: json(&r.value)?,
        headers: std::mem::take(&mut r.headers),
        timestamp: r.timestamp,
    };
    match apply_all(chain, t)? {
        Some(t) => {
            // Keys and values were read the same way as on the source side.
            r.value = t.value.map(|v| Payload::Raw(v.to_string().into()));
            r.key = t.key.map(crate::transforms::key_from_json);
            r.headers = t.headers;
            r.timestamp = t.timestamp;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn group(name: &str) -> String {
    format!("connect-{name}")
}

/// Where a sink task reads: its partitions of the embedded log, or the partitions its
/// consumer group gives its consumer on a Kafka cluster.
enum Reader {
    Log,
    Kafka {
        consumer: Box<SinkConsumer>,
        /// The partitions the task has open.
        assigned: BTreeSet<(String, i32)>,
    },
}

impl Reader {
    fn new(ctx: &SinkCtx) -> Result<Reader, String> {
        let Some(k) = &ctx.kafka else {
            return Ok(Reader::Log);
        };
        let consumer = k
            .cluster
            .sink_consumer(
                &group(&ctx.name),
                &format!("sluice-{}", ctx.task),
                ctx.topics,
            )
            .map_err(|e| e.to_string())?;
        Ok(Reader::Kafka {
            consumer: Box::new(consumer),
            assigned: BTreeSet::new(),
        })
    }

    /// The partitions to close when the task ends.
    fn open_partitions(&self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        match self {
            Reader::Log => partitions.to_vec(),
            Reader::Kafka { assigned, .. } => assigned.iter().map(tp_of).collect(),
        }
    }
}

fn tp_of((topic, partition): &(String, i32)) -> TopicPartition {
    TopicPartition {
        topic: topic.clone(),
        partition: *partition,
    }
}

fn commit_sink(
    ctx: &Ctx,
    reader: &Reader,
    durable: &[(TopicPartition, i64)],
) -> Result<(), String> {
    if let Reader::Kafka { consumer, .. } = reader {
        let positions: HashMap<(String, i32), i64> = durable
            .iter()
            .map(|(tp, next)| ((tp.topic.clone(), tp.partition), *next))
            .collect();
        return consumer.commit(&positions).map_err(|e| e.to_string());
    }
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
    ctx.log
        .commit_offsets(&group(&ctx.name), &commits)
        .map_err(|e| e.to_string())
}

/// Runs a sink task until it is asked to stop or fails (the failure is in `ctx`). Either way
/// the task's partitions are closed and the task stopped; only a task that did not fail
/// flushes and commits on the way out.
pub(super) fn sink_loop(
    ctx: &SinkCtx,
    mut task: Box<dyn SinkTask>,
    partitions: Vec<TopicPartition>,
) {
    let mut reader = match Reader::new(ctx) {
        Ok(r) => r,
        Err(e) => {
            ctx.fail(Stage::Start, e);
            if let Err(e) = task.stop() {
                tracing::warn!(connector = %ctx.name, task = %ctx.task, error = %e, "the sink did not stop cleanly");
            }
            return;
        }
    };
    let opened = run_sink(ctx, &mut task, &partitions, &mut reader);
    if opened {
        if let Err(e) = task.close(reader.open_partitions(&partitions)) {
            tracing::warn!(connector = %ctx.name, task = %ctx.task, error = %e, "the sink did not close its partitions cleanly");
        }
        if !ctx.failed() {
            match task.flush() {
                Ok(durable) => {
                    if !dead_letter_refused(ctx, task.as_mut()) {
                        // The failure is recorded; nothing past the refused records commits.
                    } else if let Err(e) = commit_sink(ctx, &reader, &durable) {
                        ctx.fail(Stage::Commit, format!("committing sink positions: {e}"));
                    }
                }
                Err(e) => ctx.fail(Stage::Flush, e),
            }
        }
    }
    if let Err(e) = task.stop() {
        tracing::warn!(connector = %ctx.name, task = %ctx.task, error = %e, "the sink did not stop cleanly");
    }
}

/// The loop; `false` when the partitions could not be opened.
fn run_sink(
    ctx: &SinkCtx,
    task: &mut Box<dyn SinkTask>,
    partitions: &[TopicPartition],
    reader: &mut Reader,
) -> bool {
    // On a cluster, partitions are opened as the group assigns them.
    let overrides = match ctx.retry("open", || task.open(reader.open_partitions(partitions))) {
        Ok(o) => o,
        Err(e) => {
            ctx.fail(Stage::Start, e);
            return false;
        }
    };
    let mut positions: HashMap<TopicPartition, i64> = HashMap::new();
    for tp in partitions {
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
        && ctx.decoders.key.is_pass_through()
        && ctx.decoders.value.is_pass_through();
    // A sink that needs only values (JSON lines) gets runs of them, read in place.
    let values_path = !encoded_path
        && task.accepts_values()
        && ctx.transforms.is_empty()
        && ctx.decoders.key.is_pass_through()
        && ctx.decoders.value.is_pass_through();
    // The same for a sink whose values a converter turns into JSON (Avro, a reader schema):
    // each partition's values decoded into one buffer, with no record object per value.
    let decoded_values_path = !encoded_path
        && !values_path
        && task.accepts_values()
        && ctx.transforms.is_empty()
        && ctx.decoders.key.is_pass_through()
        && ctx.decoders.value.decodes_in_place();
    let mut spare_buffers: Vec<Vec<u8>> = Vec::new();
    let mut last_committed: Vec<(TopicPartition, i64)> = Vec::new();
    while !ctx.control.should_stop() {
        if ctx.control.is_paused() {
            // Nothing is read while paused; what was put is flushed and committed first.
            if !flush_and_commit(ctx, task.as_mut(), &mut last_committed, reader) {
                return true;
            }
            ctx.control.wait_while_paused();
            continue;
        }
        let mut batch: Vec<SinkRecord> = Vec::new();
        let mut read_buffers: Vec<Bytes> = Vec::new();
        let mut value_runs: Vec<SinkValueRun> = Vec::new();
        // A sink that takes encoded batches (a plugin) gets one written straight from what
        // was read, when nothing changes the records on the way.
        let mut encoded = (encoded_path).then(|| wire::SinkBatchWriter::new(&mut encoded_batch));
        let reads: Vec<(TopicPartition, i64, Bytes)> = match reader {
            Reader::Log => {
                let mut reads = Vec::with_capacity(partitions.len());
                for tp in partitions {
                    let Ok(p) = ctx.log.partition(&tp.topic, tp.partition) else {
                        continue;
                    };
                    let pos = positions.get(tp).copied().unwrap_or(0);
                    if pos >= p.end_offset() {
                        continue;
                    }
                    let reuse = spare_buffers.pop().unwrap_or_default();
                    let from = pos.max(p.log_start_offset());
                    match p.read_into(from, SINK_READ_BYTES, reuse) {
                        Ok(r) => reads.push((tp.clone(), pos, Bytes::from(r.records))),
                        Err(e) => {
                            ctx.fail(Stage::Read, e);
                            return true;
                        }
                    }
                }
                reads
            }
            Reader::Kafka { .. } => {
                match read_cluster(
                    ctx,
                    task.as_mut(),
                    reader,
                    &mut positions,
                    &mut last_committed,
                ) {
                    Some(reads) => reads,
                    None => return true, // the failure is recorded in `ctx`
                }
            }
        };
        for (tp, pos, read_buffer) in reads {
            let tp = &tp;
            if let Some(m) = &ctx.metrics {
                m.bytes_in.inc_by(read_buffer.len() as u64);
            }
            read_buffers.push(read_buffer.clone());
            if values_path || decoded_values_path {
                match value_run(&read_buffer, tp, pos) {
                    Some(Ok((raw, next))) => {
                        let run = if decoded_values_path {
                            let value = &ctx.decoders.value;
                            let mut out = spare_buffers.pop().unwrap_or_default();
                            out.clear();
                            let Some(run) = decode_run(ctx, value, &raw, out) else {
                                return true; // a bad record the error policy does not tolerate
                            };
                            read_buffers.push(run.buf.clone());
                            run
                        } else {
                            raw
                        };
                        if let Some(m) = &ctx.metrics {
                            m.records_in.inc_by((next - pos).max(0) as u64);
                        }
                        positions.insert(tp.clone(), next);
                        if !run.values.is_empty() {
                            value_runs.push(run);
                        }
                        continue;
                    }
                    Some(Err(e)) => {
                        ctx.fail(
                            Stage::Read,
                            format!("decoding {}-{}: {e}", tp.topic, tp.partition),
                        );
                        return true;
                    }
                    None => {} // compressed batches: as records, below
                }
            }
            let records = match decode_batches(&read_buffer) {
                Ok(r) => r,
                Err(e) => {
                    ctx.fail(
                        Stage::Read,
                        format!("decoding {}-{}: {e}", tp.topic, tp.partition),
                    );
                    return true;
                }
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
                let (key_decoder, value_decoder) = (&ctx.decoders.key, &ctx.decoders.value);
                let origin = RecordOrigin::Log {
                    topic: &tp.topic,
                    partition: tp.partition,
                    offset: r.offset,
                };
                let (key, key_schema) = match r.key.map(|k| key_decoder.decode(k)) {
                    None => (None, None),
                    Some(Ok((k, schema))) => (Some(k), schema),
                    Some(Err((e, _))) => {
                        let e = format!("key: {e}");
                        if !ctx.bad_record(RecordStage::Converter, &e, r.value.as_deref(), origin) {
                            return true;
                        }
                        continue;
                    }
                };
                let (value, value_schema) = match r.value.map(|v| value_decoder.decode(v)) {
                    None => (None, None),
                    Some(Ok((v, schema))) => (Some(v), schema),
                    Some(Err((e, original))) => {
                        if !ctx.bad_record(RecordStage::Converter, &e, Some(&original), origin) {
                            return true;
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
                            let origin = RecordOrigin::Log {
                                topic: &tp.topic,
                                partition: tp.partition,
                                offset: record.offset,
                            };
                            let original = match &record.value {
                                Some(Payload::Raw(b)) => Some(b.clone()),
                                _ => None,
                            };
                            if !ctx.bad_record(
                                RecordStage::Transform,
                                &e,
                                original.as_deref(),
                                origin,
                            ) {
                                return true;
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
            if let Some(m) = &ctx.metrics {
                m.records_in.inc_by((next - pos).max(0) as u64);
            }
            positions.insert(tp.clone(), next);
        }
        let encoded_count = encoded.map(|w| w.finish()).unwrap_or(0);
        let put_started = Instant::now();
        let put_count = encoded_count as usize
            + value_runs.iter().map(|r| r.values.len()).sum::<usize>()
            + batch.len();
        if encoded_count > 0 {
            if let Err(e) = put_encoded(ctx, task.as_mut(), &encoded_batch) {
                ctx.fail(Stage::Put, e);
                return true;
            }
        }
        // In chunks, flushing between them when due: a sink whose `put` waits on a slow
        // endpoint (backpressure) still commits what it delivered every SINK_FLUSH_EVERY,
        // so a crash resends little.
        for chunk in value_chunks(&value_runs, PUT_CHUNK) {
            if let Err(e) = put_values(ctx, task.as_mut(), &chunk) {
                ctx.fail(Stage::Put, e);
                return true;
            }
            if last_flush.elapsed() >= SINK_FLUSH_EVERY {
                last_flush = Instant::now();
                if !flush_and_commit(ctx, task.as_mut(), &mut last_committed, reader) {
                    return true;
                }
            }
        }
        let caught_up = batch.is_empty() && encoded_count == 0 && value_runs.is_empty();
        drop(value_runs);
        if caught_up {
            if !put_since_flush {
                // Checking for new records costs an atomic load per partition: look often,
                // so that records are delivered milliseconds after they are appended.
                std::thread::sleep(SINK_IDLE_WAIT);
            }
        } else {
            let mut batch = batch;
            while !batch.is_empty() {
                let rest = batch.split_off(batch.len().min(PUT_CHUNK));
                if let Err(e) = put_batch(ctx, task.as_mut(), batch) {
                    ctx.fail(Stage::Put, e);
                    return true;
                }
                batch = rest;
                if !batch.is_empty() && last_flush.elapsed() >= SINK_FLUSH_EVERY {
                    last_flush = Instant::now();
                    if !flush_and_commit(ctx, task.as_mut(), &mut last_committed, reader) {
                        return true;
                    }
                }
            }
            put_since_flush = true;
            if let Some(m) = &ctx.metrics {
                m.records_out.inc_by(put_count as u64);
                TaskMetrics::observe(&m.put_seconds, put_started.elapsed());
            }
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
            if !flush_and_commit(ctx, task.as_mut(), &mut last_committed, reader) {
                return true;
            }
        }
    }
    true
}

/// One read from the cluster: the group's assignment changes first (partitions taken
/// away are flushed, committed and closed; new ones opened, the sink's own positions
/// kept), then the records that arrived, as batches per partition from the position the
/// task holds.
fn read_cluster(
    ctx: &SinkCtx,
    task: &mut dyn SinkTask,
    reader: &mut Reader,
    positions: &mut HashMap<TopicPartition, i64>,
    last_committed: &mut Vec<(TopicPartition, i64)>,
) -> Option<Vec<(TopicPartition, i64, Bytes)>> {
    let Reader::Kafka { consumer, assigned } = reader else {
        return Some(Vec::new());
    };
    let incoming = match consumer.read(SINK_READ_BYTES, SINK_CLUSTER_WAIT) {
        Ok(r) => r,
        Err(e) => {
            ctx.fail(Stage::Read, e);
            return None;
        }
    };
    let now = match consumer.assignment() {
        Ok(a) => a,
        Err(e) => {
            ctx.fail(Stage::Read, e);
            return None;
        }
    };
    // Revoked partitions stay assigned until released below; lost ones (a session that
    // expired) are gone already.
    let revoked = consumer.take_revoked();
    let mut gone_set: BTreeSet<(String, i32)> = assigned.difference(&now).cloned().collect();
    gone_set.extend(revoked.iter().filter(|r| assigned.contains(*r)).cloned());
    let new: Vec<TopicPartition> = now
        .iter()
        .filter(|p| !assigned.contains(*p) && !revoked.contains(*p))
        .map(tp_of)
        .collect();
    *assigned = now.into_iter().filter(|p| !revoked.contains(p)).collect();
    let gone: Vec<TopicPartition> = gone_set.iter().map(tp_of).collect();
    if !gone.is_empty() {
        tracing::info!(connector = %ctx.name, task = %ctx.task, partitions = ?gone, "partitions moved to another member of the sink's group");
        if !flush_and_commit(ctx, task, last_committed, reader) {
            return None;
        }
        if let Err(e) = task.close(gone.clone()) {
            tracing::warn!(connector = %ctx.name, task = %ctx.task, error = %e, "the sink did not close its partitions cleanly");
        }
        for tp in &gone {
            positions.remove(tp);
        }
    }
    if !revoked.is_empty() {
        let Reader::Kafka { consumer, .. } = &*reader else {
            return None;
        };
        if let Err(e) = consumer.release(&revoked) {
            ctx.fail(Stage::Read, e);
            return None;
        }
    }
    if !new.is_empty() {
        tracing::info!(connector = %ctx.name, task = %ctx.task, partitions = ?new, "partitions assigned by the sink's group");
        match ctx.retry("open", || task.open(new.clone())) {
            Ok(own) => positions.extend(own),
            Err(e) => {
                ctx.fail(Stage::Start, e);
                return None;
            }
        }
    }
    // Records per partition, in order; those before the task's own position are skipped.
    let mut per_partition: Vec<(TopicPartition, Vec<sluice_kafka::Incoming>)> = Vec::new();
    for m in incoming {
        if gone_set.contains(&(m.topic.clone(), m.partition)) {
            continue; // its next holder reads it
        }
        let tp = TopicPartition {
            topic: m.topic.clone(),
            partition: m.partition,
        };
        if positions.get(&tp).is_some_and(|&p| m.offset < p) {
            continue;
        }
        match per_partition.iter_mut().find(|(t, _)| *t == tp) {
            Some((_, v)) => v.push(m),
            None => per_partition.push((tp, vec![m])),
        }
    }
    Some(
        per_partition
            .into_iter()
            .map(|(tp, records)| {
                let from = records[0].offset;
                (tp, from, Bytes::from(batches_of(&records)))
            })
            .collect(),
    )
}

/// Records read from a cluster as record batches with their offsets (one batch per run of
/// consecutive offsets), so that every path of the loop reads them as it reads the log.
fn batches_of(records: &[sluice_kafka::Incoming]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut run_start = 0;
    for i in 1..=records.len() {
        if i < records.len() && records[i].offset == records[i - 1].offset + 1 {
            continue;
        }
        let run = &records[run_start..i];
        let mut b = sluice_log::BatchBuilder::new();
        for r in run {
            b.push(&sluice_log::Record {
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                timestamp: r.timestamp,
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect(),
            });
        }
        let mut built = b.build();
        // The base offset is outside the batch's checksum.
        built[..8].copy_from_slice(&run[0].offset.to_be_bytes());
        out.extend_from_slice(&built);
        run_start = i;
    }
    out
}

/// Flushes the sink and commits what it made durable (an fsync: only when a position moved
/// since `last_committed`); `false` when the task failed (recorded in `ctx`).
fn flush_and_commit(
    ctx: &Ctx,
    task: &mut dyn SinkTask,
    last_committed: &mut Vec<(TopicPartition, i64)>,
    reader: &Reader,
) -> bool {
    let started = Instant::now();
    let flushed = ctx.retry("flush", || task.flush());
    if let Some(m) = &ctx.metrics {
        TaskMetrics::observe(&m.flush_seconds, started.elapsed());
    }
    match flushed {
        Ok(durable) => {
            if !dead_letter_refused(ctx, task) {
                return false;
            }
            if durable != *last_committed {
                if let Err(e) = commit_sink(ctx, reader, &durable) {
                    ctx.fail(Stage::Commit, format!("committing sink positions: {e}"));
                    return false;
                }
                *last_committed = durable;
            }
            true
        }
        Err(e) => {
            ctx.fail(Stage::Flush, e);
            false
        }
    }
}

/// The records the sink gave up on, through the error policy; `false` when the policy
/// stopped the task (then nothing of that flush may be committed).
fn dead_letter_refused(ctx: &Ctx, task: &mut dyn SinkTask) -> bool {
    for r in task.take_refused() {
        let origin = RecordOrigin::Log {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
        };
        if !ctx.bad_record_with(
            RecordStage::Sink,
            &r.reason,
            r.value.as_deref(),
            origin,
            &r.headers,
        ) {
            return false;
        }
    }
    true
}

/// A run of stored values decoded (Avro to JSON, resolved to a reader schema) into `out`,
/// one buffer for the run. A value that does not decode follows the error policy; `None`:
/// the policy stopped the task.
fn decode_run(
    ctx: &Ctx,
    decoder: &crate::convert::Decoder,
    raw: &SinkValueRun,
    mut out: Vec<u8>,
) -> Option<SinkValueRun> {
    let mut values = Vec::with_capacity(raw.values.len());
    for (i, &(offset, span)) in raw.values.iter().enumerate() {
        let Some(stored) = span.and(raw.value(i)) else {
            values.push((offset, None)); // a tombstone stays one
            continue;
        };
        let start = out.len();
        match decoder.decode_into(stored, &mut out) {
            Ok(_) => values.push((offset, Some((start as u32, out.len() as u32)))),
            Err(e) => {
                let origin = RecordOrigin::Log {
                    topic: &raw.topic,
                    partition: raw.partition,
                    offset,
                };
                if !ctx.bad_record(RecordStage::Converter, &e, Some(stored), origin) {
                    return None;
                }
            }
        }
    }
    Some(SinkValueRun {
        topic: raw.topic.clone(),
        partition: raw.partition,
        buf: Bytes::from(out),
        values,
    })
}

/// The values of a read (whole batches from offset `from` on) as a run, with the next offset
/// to read; `None` when a batch is compressed (those records go the records way).
fn value_run(
    buf: &Bytes,
    tp: &TopicPartition,
    from: i64,
) -> Option<Result<(SinkValueRun, i64), String>> {
    let batches = match sluice_log::batch::split_verified(buf) {
        Ok(b) => b,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut run = SinkValueRun {
        topic: Arc::from(tp.topic.as_str()),
        partition: tp.partition,
        buf: buf.clone(),
        values: Vec::new(),
    };
    let mut next = from;
    for (start, h) in batches {
        if h.compression().ok() != Some(sluice_log::Compression::None) {
            return None;
        }
        next = next.max(h.last_offset() + 1);
        if h.is_control() {
            continue;
        }
        let base = buf.as_ptr() as usize;
        let values = &mut run.values;
        let walked =
            sluice_log::record::for_each_value(&buf[start..start + h.size], &h, |offset, value| {
                if offset >= from {
                    let span = value.map(|v| {
                        let at = (v.as_ptr() as usize - base) as u32;
                        (at, at + v.len() as u32)
                    });
                    values.push((offset, span));
                }
            });
        if let Err(e) = walked {
            return Some(Err(e.to_string()));
        }
    }
    Some(Ok((run, next)))
}

/// Runs of values to a sink that takes them; after a bad record, the records go again one
/// at a time, so that only the bad one meets the error policy.
/// The most records handed to one `put`: between two, the loop may flush and commit.
const PUT_CHUNK: usize = 512;

/// `runs` cut into pieces of at most `max` records (the value buffers are shared).
fn value_chunks(runs: &[SinkValueRun], max: usize) -> Vec<Vec<SinkValueRun>> {
    let mut chunks = Vec::new();
    let mut current: Vec<SinkValueRun> = Vec::new();
    let mut in_current = 0;
    for run in runs {
        let mut values = &run.values[..];
        while !values.is_empty() {
            let take = values.len().min(max - in_current);
            current.push(SinkValueRun {
                topic: run.topic.clone(),
                partition: run.partition,
                buf: run.buf.clone(),
                values: values[..take].to_vec(),
            });
            values = &values[take..];
            in_current += take;
            if in_current == max {
                chunks.push(std::mem::take(&mut current));
                in_current = 0;
            }
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

fn put_values(ctx: &Ctx, task: &mut dyn SinkTask, runs: &[SinkValueRun]) -> Result<(), String> {
    match ctx.retry("put", || task.put_values(runs)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::BadRecord => {
            let records = runs.iter().flat_map(SinkValueRun::to_records).collect();
            put_batch(ctx, task, records)
        }
        Err(e) => Err(e.to_string()),
    }
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
                    let origin = RecordOrigin::Log {
                        topic: &r.topic,
                        partition: r.partition,
                        offset: r.offset,
                    };
                    if e.kind != ErrorKind::BadRecord
                        || !ctx.bad_record(
                            RecordStage::Sink,
                            &e.message,
                            raw(&r.value).as_deref(),
                            origin,
                        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::Transform;
    use sluice_connector_sdk::config::ConfigSpec;

    fn insert_origin() -> Vec<Transform> {
        let spec: ConfigSpec = crate::transforms::spec("insert_field").unwrap();
        let settings = serde_json::json!({"static_field": "origin", "static_value": "sink"});
        let values = spec.validate(settings.as_object().unwrap()).unwrap();
        vec![Transform::build("t", "insert_field", &values, None, false).unwrap()]
    }

    #[test]
    fn a_key_that_is_not_json_survives_a_sinks_transforms_as_on_a_source() {
        for (key, back) in [
            (&b"plain-key"[..], &b"plain-key"[..]),
            (b"{\"id\":7}", b"{\"id\":7}"),
            (b"\"quoted\"", b"quoted"),
        ] {
            let mut r = SinkRecord {
                topic: Arc::from("t"),
                partition: 0,
                offset: 0,
                timestamp: 0,
                key: Some(Payload::Raw(Bytes::copy_from_slice(key))),
                value: Some(Payload::Raw(Bytes::from_static(b"{\"n\":1}"))),
                key_schema: None,
                value_schema: None,
                headers: Vec::new(),
            };
            assert!(transform_sink_record(&insert_origin(), &mut r).unwrap());
            let Some(Payload::Raw(k)) = &r.key else {
                panic!("the key was dropped")
            };
            assert_eq!(&k[..], back, "key {:?}", String::from_utf8_lossy(key));
            let Some(Payload::Raw(v)) = &r.value else {
                panic!()
            };
            assert_eq!(&v[..], br#"{"n":1,"origin":"sink"}"#);
        }
    }

    #[test]
    fn value_runs_are_cut_into_chunks_that_keep_every_record_once_and_in_order() {
        let run = |partition: i32, n: i64| SinkValueRun {
            topic: Arc::from("t"),
            partition,
            buf: Bytes::from_static(b"{}"),
            values: (0..n).map(|o| (o, Some((0, 2)))).collect(),
        };
        let runs = vec![run(0, 5), run(1, 3), run(2, 4)];
        let chunks = value_chunks(&runs, 4);
        let sizes: Vec<usize> = chunks
            .iter()
            .map(|c| c.iter().map(|r| r.values.len()).sum())
            .collect();
        assert_eq!(sizes, vec![4, 4, 4]);
        let flat: Vec<(i32, i64)> = chunks
            .iter()
            .flatten()
            .flat_map(|r| r.values.iter().map(move |(o, _)| (r.partition, *o)))
            .collect();
        let expected: Vec<(i32, i64)> = runs
            .iter()
            .flat_map(|r| r.values.iter().map(move |(o, _)| (r.partition, *o)))
            .collect();
        assert_eq!(flat, expected);
        assert!(value_chunks(&[], 4).is_empty());
        assert_eq!(value_chunks(&runs, 100).len(), 1);
    }
}
