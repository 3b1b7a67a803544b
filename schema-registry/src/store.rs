//! Where the registry keeps its state: records in a compacted internal topic of the log
//! (`__schemas`, as `_schemas` is for Confluent's registry). Every change is one record,
//! written with fsync before the API answers; the state is rebuilt by replaying the topic.

use std::sync::Arc;

use sluice_log::{BatchBuilder, Log, Partition, Record, TopicConfig};

/// The internal topic holding every registry change.
pub const SCHEMAS_TOPIC: &str = "__schemas";

/// A failure of the storage under the registry (answered as 50001).
#[derive(Debug, thiserror::Error)]
#[error("schema storage failed: {0}")]
pub struct StoreError(pub String);

/// A stored record: key and value (`None`: a tombstone).
pub type StoredRecord = (Vec<u8>, Option<Vec<u8>>);

/// Append-only keyed records, replayable in order.
///
/// A store shared by several registries (a Kafka topic) also says what the others wrote:
/// every write runs between [`SchemaStore::begin_write`] (which returns what others wrote
/// since, to be applied before the write is decided) and [`SchemaStore::end_write`] (which
/// makes the records of the write durable together, or says it lost to another writer).
pub trait SchemaStore: Send + Sync {
    /// Stores one record (`None` value: a tombstone): durably at once, or at `end_write`.
    fn append(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError>;
    /// Every record in order, from the oldest kept.
    fn replay(&self) -> Result<Vec<StoredRecord>, StoreError>;
    /// A write begins: the records other writers stored since this store last looked.
    fn begin_write(&self) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(Vec::new())
    }
    /// A write ends: `commit` its records, or drop them. An error whose message starts with
    /// [`WRITE_LOST`] when another writer took over meanwhile: the write is decided again.
    fn end_write(&self, commit: bool) -> Result<(), StoreError> {
        let _ = commit;
        Ok(())
    }
    /// Whether a write's records become durable only at `end_write` (a refused write that
    /// appended some must then forget them).
    fn is_shared(&self) -> bool {
        false
    }
    /// Records other writers stored since this store last looked (without waiting).
    fn updates(&self) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(Vec::new())
    }
}

/// What [`SchemaStore::end_write`] says when another writer took over during the write.
pub const WRITE_LOST: &str = "another registry took over writing; the write is decided again";

/// [`SchemaStore`] on the embedded log.
pub struct LogStore {
    partition: Arc<Partition>,
}

impl LogStore {
    /// The store on `__schemas`, fsyncing every change before it is acknowledged.
    pub fn open(log: &Log) -> Result<LogStore, StoreError> {
        Self::open_with(log, true)
    }

    /// `durable = false` leaves fsync to the OS: for benchmarks that measure the registry's
    /// own cost apart from the disk's. Applies when the topic is first created.
    pub fn open_with(log: &Log, durable: bool) -> Result<LogStore, StoreError> {
        let flush = if durable { "1" } else { "-1" };
        let config = TopicConfig::from_pairs([
            ("cleanup.policy", "compact"),
            ("flush.messages", flush),
            ("segment.bytes", "16777216"),
        ])
        .map_err(|e| StoreError(e.to_string()))?;
        let topic = log
            .ensure_internal_topic(SCHEMAS_TOPIC, config)
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(LogStore {
            partition: topic.partitions[0].clone(),
        })
    }
}

impl SchemaStore for LogStore {
    fn append(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let now = sluice_log::now_ms();
        let mut batch = BatchBuilder::new();
        batch.push(&Record {
            key: Some(key),
            value,
            timestamp: now,
            headers: vec![],
        });
        self.partition
            .append(&mut batch.build(), now)
            .map(|_| ())
            .map_err(|e| StoreError(e.to_string()))
    }

    fn replay(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let mut out = Vec::new();
        let mut offset = self.partition.log_start_offset();
        while offset < self.partition.end_offset() {
            let read = self
                .partition
                .read(offset, 1 << 20)
                .map_err(|e| StoreError(e.to_string()))?;
            if read.records.is_empty() {
                break;
            }
            for r in sluice_log::decode_record_set(&read.records)
                .map_err(|e| StoreError(e.to_string()))?
            {
                if r.offset >= offset {
                    if let Some(k) = r.key {
                        out.push((k, r.value));
                    }
                }
                offset = offset.max(r.offset + 1);
            }
            if let Some((_, h)) = sluice_log::batch::split_record_set(&read.records)
                .ok()
                .and_then(|b| b.last().copied())
            {
                offset = offset.max(h.last_offset() + 1);
            }
        }
        Ok(out)
    }
}
