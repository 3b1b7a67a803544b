//! # sluice-log: the durable, partitioned log under everything Sluice does
//!
//! **Owns:** the bytes on disk of every topic: segments, indexes, recovery after a crash,
//! fsync policy, retention, compaction, and consumer-group offsets. Records are stored as
//! Kafka RecordBatch v2, byte for byte as producers send them, so the broker can serve
//! fetches without re-encoding.
//!
//! **Must not touch:** networking, the Kafka wire protocol, schemas, connectors. It knows
//! batches and offsets, never what a record means. All I/O is blocking: async callers run it
//! on blocking threads; only [`Partition::wait_for`] (the long-poll) is async.
//!
//! ## Layout
//! - [`batch`] / [`record`]: RecordBatch v2 headers, CRC32C validation, record encoding.
//! - [`storage`]: the file-system trait; [`sim`]: an in-memory implementation that simulates
//!   power loss and injects faults (full disk, failing fsync) for tests.
//! - `segment`: one `.log` with its sparse `.index` and `.timeindex`; scanning and recovery.
//! - [`partition`]: segments + one writer + lock-free readers, rolling, retention, long-poll.
//! - `compaction`: `cleanup.policy=compact`, latest record per key, tombstones after a delay.
//! - [`config`]: per-topic settings with Kafka's names.
//! - [`log`]: the data directory, topics, locking, clean shutdown; [`groups`]: group offsets.
//!
//! ## Guarantees
//! - An append returns only after every batch in it passed its CRC check, and, with
//!   `flush.messages=1` (the default), after an fsync. On error nothing of it is visible,
//!   now or after a restart.
//! - On open after a crash, the tail of each partition is re-validated and cut at the first
//!   torn or corrupt batch; damaged or missing indexes are rebuilt. A corrupt batch is never
//!   served.
//!
//! ## Example
//! ```
//! use sluice_log::{BatchBuilder, Log, LogOptions, Record, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path(), LogOptions::default())?;
//! log.create_topic("orders", 3, TopicConfig::default())?;
//!
//! let mut batch = BatchBuilder::new();
//! batch.push(&Record { key: Some(b"id-1"), value: Some(b"{\"qty\":2}"), timestamp: 1_700_000_000_000, headers: vec![] });
//! let partition = log.partition("orders", 0)?;
//! let stored = partition.append(&mut batch.build(), sluice_log::now_ms())?;
//! assert_eq!(stored.base_offset, 0);
//!
//! let read = partition.read(0, 1 << 20)?;
//! let records = sluice_log::decode_record_set(&read.records)?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"{\"qty\":2}"[..]));
//! log.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
mod compaction;
pub mod config;
mod delete_records;
pub mod error;
pub mod groups;
pub mod log;
pub mod partition;
pub mod record;
mod segment;
pub mod sim;
pub mod storage;
mod topic_admin;

pub use batch::{BatchBuilder, BatchHeader, Compression};
pub use config::{CleanupPolicy, TopicConfig};
pub use error::{BatchError, ConfigError, LogError};
pub use groups::{CommittedOffset, OffsetCommit, OFFSETS_TOPIC};
pub use log::{
    now_ms, validate_topic_name, Log, LogMaintenance, LogOptions, MaintenanceFailure, Topic,
};
pub use partition::{
    AppendInfo, MaintenanceReport, Partition, PartitionStats, ReadResult, SyncMode,
};
pub use record::{Record, StoredRecord};

/// An owned record decoded from a record set, for callers that keep records past the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Decodes every record of a record set (whole uncompressed batches, as [`Partition::read`]
/// returns), skipping control batches.
pub fn decode_record_set(bytes: &[u8]) -> Result<Vec<OwnedRecord>, BatchError> {
    let mut out = Vec::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    for (start, h) in batch::split_record_set(bytes)? {
        if h.is_control() {
            continue;
        }
        for r in record::decode_records(&bytes[start..start + h.size], &h)? {
            out.push(OwnedRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect(),
            });
        }
    }
    Ok(out)
}
