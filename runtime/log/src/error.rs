//! Errors of the log, one enum per concern, each message something an operator can act on.

use std::io;
use std::path::PathBuf;

/// A batch that is not a valid Kafka RecordBatch v2.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    #[error("record set is empty")]
    Empty,
    #[error("batch is truncated: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported batch magic {0}: only RecordBatch v2 (magic 2) is accepted")]
    UnsupportedMagic(i8),
    #[error("invalid batchLength {0}")]
    BadLength(i32),
    #[error("batch declares {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("CRC32C mismatch: batch says {stored:#010x}, contents give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown compression codec {0} in batch attributes")]
    UnknownCompression(u8),
    #[error("invalid lastOffsetDelta {0}")]
    BadLastOffsetDelta(i32),
    #[error("invalid recordsCount {0}")]
    BadRecordCount(i32),
    #[error("malformed record: {0}")]
    BadRecord(&'static str),
    #[error("batch is compressed with {0}, which this build cannot decompress yet")]
    CompressedUnsupported(&'static str),
}

/// A topic configuration that cannot be accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("unknown topic config `{key}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    #[error("invalid value `{value}` for topic config `{key}`: expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("malformed config `{0}`: expected key=value")]
    Malformed(String),
}

/// Everything the log can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("invalid topic name `{name}`: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition} (it has {partitions}: 0..{partitions})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        partitions: u32,
    },
    #[error("invalid partition count {0}: a topic needs between 1 and 100000 partitions")]
    InvalidPartitionCount(i64),
    #[error("topic `{topic}` has {current} partitions: it can only grow, so ask for more than {current} (not {requested})")]
    PartitionsCannotShrink {
        topic: String,
        current: u32,
        requested: u32,
    },
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: the log holds offsets {log_start}..{log_end}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("invalid batch for {topic}-{partition}: {source}")]
    InvalidBatch {
        topic: String,
        partition: u32,
        #[source]
        source: BatchError,
    },
    #[error("batch of {size} bytes exceeds max.message.bytes={max} of topic `{topic}`")]
    BatchTooLarge {
        topic: String,
        size: usize,
        max: i64,
    },
    #[error("topic `{0}` is compacted (cleanup.policy=compact): every record needs a key")]
    NullKeyOnCompactedTopic(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("disk full while {context}: nothing was written (free space and retry)")]
    DiskFull { context: String },
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("data directory {dir} is in use by another sluice process{}", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    DataDirLocked { dir: PathBuf, holder: Option<u32> },
    #[error("data directory {0} does not exist")]
    NoDataDir(PathBuf),
    #[error("the log is open read-only: {0} needs a writable open")]
    ReadOnly(&'static str),
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the log was closed after an earlier I/O failure on {0}; restart to recover")]
    Poisoned(String),
    #[error("topic `{topic}` was deleted: {what} refused (recreate the topic, then restart what writes to it)")]
    TopicDeleted { topic: String, what: &'static str },
    #[error("the log is closed (shutting down): {0} refused")]
    Closed(&'static str),
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> LogError {
        let context = context.into();
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            LogError::DiskFull { context }
        } else {
            LogError::Io { context, source }
        }
    }

    /// Whether the same call may succeed later without anything in the request changing.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            LogError::DiskFull { .. } | LogError::Io { .. } | LogError::DataDirLocked { .. }
        )
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
