//! The connector traits, the records that cross them, and connector errors.
//!
//! Every method is synchronous and moves owned data in and out; errors are values. That is
//! what lets the same traits be exported across a C ABI from a dynamically loaded library:
//! no borrowed async types, no runtime, no panics across the boundary. The runtime runs each
//! task on its own blocking thread. A connector that needs async I/O (HTTP, Postgres) owns a
//! small runtime inside its task and blocks on it in `poll`/`put`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use crate::config::ConfigValues;
use crate::data::Payload;

/// Where a source record came from, so that the source can resume after it: a stable name
/// for the stream (a file's fingerprint, a replication slot, a webhook path) and a position
/// in it (a byte offset, an LSN), both stored in the runtime's offsets topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePosition {
    /// Shared: the records of one stream carry the same name without a copy each.
    pub stream: Arc<str>,
    pub offset: Json,
}

/// A source that cannot make a record out of some input (a malformed line, say) hands it over
/// anyway, with the input as its raw value and the reason in this header: the runtime then
/// applies the connector's error policy (stop, or the dead-letter topic), so bad input is
/// never dropped silently.
pub const SOURCE_ERROR_HEADER: &str = "sluice.source.error";

/// The record header holding a record's place in its source's order (32 hex digits), a
/// space and the connector's name; see [`SourceTask::position_order`].
pub const POSITION_HEADER: &str = "sluice.position";

/// See [`SourceTask::position_order`].
pub type PositionOrder = fn(&SourcePosition) -> Option<u128>;

/// A record a source produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// `None`: the topic the connector is configured with.
    pub topic: Option<String>,
    /// `None`: by key (Kafka's partitioner), else spread.
    pub partition: Option<i32>,
    pub key: Option<Payload>,
    pub value: Option<Payload>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the epoch (`None`: when it is appended).
    pub timestamp: Option<i64>,
    pub position: SourcePosition,
}

/// What a poll hands over: records, or — from a plugin — the same records still in the
/// plugin ABI's binary encoding ([`crate::plugin::wire`]), which the runtime reads in place
/// instead of building a [`SourceRecord`] per record a second time.
#[derive(Debug)]
pub enum Polled {
    Records(Vec<SourceRecord>),
    Encoded(bytes::Bytes),
    /// Runs of plain values (a file's lines, say), the cheapest form for many small records:
    /// no record object per record on either side.
    Values(Vec<ValueRun>),
}

/// Values of one stream, without keys, headers or timestamps, as slices of one buffer.
///
/// Each value comes with the stream's position after it, in one list, and every span is
/// checked against the buffer when it is added: a run cannot hold a value without its
/// position, or a span outside its buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRun {
    buf: bytes::Bytes,
    stream: Arc<str>,
    /// Where each value starts and ends in `buf`, and the stream's position after it (a
    /// byte offset, a sequence number).
    values: Vec<((u32, u32), u64)>,
}

/// A value span that does not lie inside its run's buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value span {start}..{end} is outside the run's buffer of {len} bytes")]
pub struct SpanOutOfBounds {
    pub start: usize,
    pub end: usize,
    pub len: usize,
}

impl ValueRun {
    /// An empty run of values that will be slices of `buf`.
    pub fn new(buf: bytes::Bytes, stream: Arc<str>) -> ValueRun {
        ValueRun {
            buf,
            stream,
            values: Vec::new(),
        }
    }

    /// Adds the value `buf[start..end]`, after which the stream is at `position`.
    pub fn push(&mut self, start: usize, end: usize, position: u64) -> Result<(), SpanOutOfBounds> {
        let out = SpanOutOfBounds {
            start,
            end,
            len: self.buf.len(),
        };
        if start > end || end > self.buf.len() {
            return Err(out);
        }
        let (Ok(s), Ok(e)) = (u32::try_from(start), u32::try_from(end)) else {
            return Err(out);
        };
        self.values.push(((s, e), position));
        Ok(())
    }

    pub fn stream(&self) -> &Arc<str> {
        &self.stream
    }

    /// The bytes of the buffer the values are slices of.
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Each value, with the stream's position after it.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        // Spans were checked against this buffer by `push`, which is the only way in.
        self.values
            .iter()
            .map(|&((start, end), position)| (&self.buf[start as usize..end as usize], position))
    }

    /// The same values as records.
    pub fn into_records(self) -> Vec<SourceRecord> {
        self.values
            .iter()
            .map(|&((start, end), position)| SourceRecord {
                topic: None,
                partition: None,
                key: None,
                value: Some(Payload::Raw(self.buf.slice(start as usize..end as usize))),
                headers: Vec::new(),
                timestamp: None,
                position: SourcePosition {
                    stream: self.stream.clone(),
                    offset: Json::from(position),
                },
            })
            .collect()
    }
}

/// Values of one partition in offset order, as slices of one buffer (what the log returned):
/// for sinks that use nothing but values and offsets ([`SinkTask::accepts_values`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkValueRun {
    pub topic: Arc<str>,
    pub partition: i32,
    pub buf: bytes::Bytes,
    /// Per record: its offset, and where its value is in `buf` (`None`: a tombstone).
    pub values: Vec<(i64, Option<(u32, u32)>)>,
}

impl SinkValueRun {
    /// The value of record `i` (`None`: a tombstone).
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        let (_, span) = self.values.get(i)?;
        span.and_then(|(start, end)| self.buf.get(start as usize..end as usize))
    }

    /// The same records, whole (keys, headers and timestamps are not carried).
    pub fn to_records(&self) -> Vec<SinkRecord> {
        self.values
            .iter()
            .map(|(offset, span)| SinkRecord {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: *offset,
                timestamp: -1,
                key: None,
                value: span
                    .map(|(start, end)| Payload::Raw(self.buf.slice(start as usize..end as usize))),
                headers: Vec::new(),
                key_schema: None,
                value_schema: None,
            })
            .collect()
    }
}

/// A record a sink gave up on for good (an HTTP endpoint answered 400 for it, or its retries
/// ran out): the runtime hands it to the error policy (the dead-letter topic, or the task
/// stops) before it commits any position past it.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// What goes to the dead-letter topic (the value as the sink read it).
    pub value: Option<bytes::Bytes>,
    /// Why, for the `sluice.error.message` header and the log.
    pub reason: String,
    /// More dead-letter headers (`sluice.error.http.status`, `sluice.error.http.body`).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A topic partition a sink reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A record handed to a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Shared by the records of a partition.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Payload>,
    pub value: Option<Payload>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The Avro schema (JSON text) that `key` conforms to, when the topic is read with a
    /// converter that knows one (`avro`, `json` with an embedded schema, or a reader schema
    /// the sink declares); raw keys are then JSON text of that schema. Shared by the records
    /// of one schema.
    pub key_schema: Option<Arc<str>>,
    /// The same for `value`: a sink that writes typed output (Avro files, database rows)
    /// takes its types from here.
    pub value_schema: Option<Arc<str>>,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient (a timeout, a connection reset, a 503): the runtime retries with backoff.
    Retriable,
    /// This record cannot be handled (bad data): the error policy decides (stop, or the
    /// dead-letter topic).
    BadRecord,
    /// The task cannot go on (bad credentials, a missing table): it stops with this error.
    Fatal,
}

/// An error from a connector, as a value that can cross a C ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ConnectorError {
    pub fn retriable(message: impl Into<String>) -> Self {
        ConnectorError {
            kind: ErrorKind::Retriable,
            message: message.into(),
        }
    }
    pub fn bad_record(message: impl Into<String>) -> Self {
        ConnectorError {
            kind: ErrorKind::BadRecord,
            message: message.into(),
        }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        ConnectorError {
            kind: ErrorKind::Fatal,
            message: message.into(),
        }
    }
    pub fn is_retriable(&self) -> bool {
        self.kind == ErrorKind::Retriable
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retriable => "retriable",
            ErrorKind::BadRecord => "bad record",
            ErrorKind::Fatal => "fatal",
        };
        write!(f, "{} ({kind})", self.message)
    }
}

impl std::error::Error for ConnectorError {}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// What a task knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The connector's name in the pipeline file.
    pub connector: String,
    /// 0-based; `tasks` in all.
    pub task: u32,
    pub tasks: u32,
}

/// A source connector: splits its work into task configs, and starts tasks.
pub trait SourceConnector: Send {
    /// Settings for up to `max_tasks` tasks, the work split between them (e.g. files by hash).
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>>;
    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>>;
}

/// One task of a source.
pub trait SourceTask: Send {
    /// Starts reading after these positions (the last committed for this task's streams).
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()>;
    /// Up to `max_records` records, waiting at most `timeout` for the first; may be empty.
    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>>;
    /// What the runtime calls: `poll`, unless the records already exist in an encoded batch
    /// (plugins). Connectors leave the default.
    fn poll_batch(&mut self, max_records: usize, timeout: Duration) -> Result<Polled> {
        self.poll(max_records, timeout).map(Polled::Records)
    }
    /// For a source whose positions are totally ordered (a CDC source's LSNs): how to
    /// read a record's place in that order from its position (`None` for a record outside
    /// the order). The runtime then stores it beside each record ([`POSITION_HEADER`]) and,
    /// after a crash between an append and its positions' commit, drops the re-polled
    /// records that a partition already holds, so nothing is written twice. `None` (the
    /// default): at least once.
    fn position_order(&self) -> Option<PositionOrder> {
        None
    }
    /// These positions are durable in the log and committed: the source may now release what
    /// they cover (answer webhook callers, delete or rename processed files, confirm an LSN).
    fn committed(&mut self, positions: Vec<SourcePosition>) -> Result<()>;
    /// Stops reading and releases resources; `committed` is not called afterwards.
    fn stop(&mut self) -> Result<()>;
}

/// A sink connector: splits its work into task configs, and starts tasks.
pub trait SinkConnector: Send {
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>>;
    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>>;
}

/// One task of a sink.
pub trait SinkTask: Send {
    /// These partitions are now this task's. Returns the positions (next offset to read) the
    /// sink stores itself, e.g. in the same database transaction as its rows for exactly-once
    /// delivery; those override the group's committed offsets. Most sinks return none.
    fn open(&mut self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>>;
    /// A batch of records, in offset order per partition. Lent for the call (a pointer and a
    /// length across a C ABI); the runtime hands the same batch again after a retriable error.
    fn put(&mut self, records: &[SinkRecord]) -> Result<()>;
    /// Whether [`SinkTask::put_encoded`] is implemented (plugins): the runtime then hands
    /// over batches already in the plugin ABI's encoding when no transform or converter
    /// changes the records, instead of building a [`SinkRecord`] per record only to encode it.
    fn accepts_encoded(&self) -> bool {
        false
    }
    /// Whether this sink uses nothing of a record but its value and offset (JSON lines, say):
    /// the runtime may then hand over runs of values ([`SinkTask::put_values`]) instead of
    /// a record object per record, when no transform or converter changes the records.
    fn accepts_values(&self) -> bool {
        false
    }
    /// Runs of values; the same contract as `put`. The default hands them to `put`.
    fn put_values(&mut self, runs: &[SinkValueRun]) -> Result<()> {
        let records: Vec<SinkRecord> = runs.iter().flat_map(SinkValueRun::to_records).collect();
        self.put(&records)
    }
    /// A batch in [`crate::plugin::wire`]'s sink layout; the same contract as `put`.
    fn put_encoded(&mut self, _batch: &[u8]) -> Result<()> {
        Err(ConnectorError::fatal(
            "this sink takes records, not encoded batches",
        ))
    }
    /// Makes everything put so far durable. Returns the positions (next offset) now durable;
    /// the runtime commits them as consumer-group offsets only after this returns.
    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>>;
    /// The records given up on since the last call. The runtime calls it right after each
    /// `flush` and dead-letters them before committing that flush's positions, so a sink
    /// must hand a record over here no later than the flush whose positions pass it.
    fn take_refused(&mut self) -> Vec<RefusedRecord> {
        Vec::new()
    }
    /// These partitions are no longer this task's (rebalance or shutdown, after a flush).
    fn close(&mut self, partitions: Vec<TopicPartition>) -> Result<()>;
    fn stop(&mut self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn value_runs_are_the_same_records_without_the_objects() {
        let buf = Bytes::from_static(b"one\ntwo\n");
        let mut run = ValueRun::new(buf.clone(), Arc::from("file:1"));
        run.push(0, 3, 4).unwrap();
        run.push(4, 7, 8).unwrap();
        assert_eq!(
            run.push(4, 9, 10),
            Err(SpanOutOfBounds {
                start: 4,
                end: 9,
                len: 8
            })
        );
        assert!(
            run.push(5, 4, 10).is_err(),
            "a span that ends before it starts"
        );
        assert_eq!(run.len(), 2, "refused spans are not added");
        let seen: Vec<(&[u8], u64)> = run.iter().collect();
        assert_eq!(seen, vec![(&b"one"[..], 4), (&b"two"[..], 8)]);
        let records = run.into_records();
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[1].value,
            Some(Payload::Raw(Bytes::from_static(b"two")))
        );
        assert_eq!(records[1].position.offset, Json::from(8));

        let sink_run = SinkValueRun {
            topic: Arc::from("t"),
            partition: 3,
            buf,
            values: vec![(10, Some((0, 3))), (11, None)],
        };
        assert_eq!(sink_run.value(0), Some(&b"one"[..]));
        assert_eq!(sink_run.value(1), None, "a tombstone");
        assert_eq!(sink_run.value(2), None, "past the end");
        let records = sink_run.to_records();
        assert_eq!((records[1].offset, records[1].partition), (11, 3));
        assert_eq!(records[1].value, None);
    }
}
