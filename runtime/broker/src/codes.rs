//! Kafka error codes the broker answers with (values from the protocol guide).

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const INVALID_RECORD: i16 = 87;

use sluice_log::LogError;

/// The Kafka error code for a log error, and a message for clients that show one.
pub fn from_log_error(e: &LogError) -> i16 {
    match e {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => UNKNOWN_TOPIC_OR_PARTITION,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::InvalidBatch { .. } => CORRUPT_MESSAGE,
        LogError::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
        LogError::NullKeyOnCompactedTopic(_) => INVALID_RECORD,
        LogError::InvalidTopicName { .. } => INVALID_TOPIC_EXCEPTION,
        LogError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        LogError::InvalidPartitionCount(_) | LogError::PartitionsCannotShrink { .. } => {
            INVALID_PARTITIONS
        }
        LogError::Config(_) => INVALID_CONFIG,
        LogError::DiskFull { .. }
        | LogError::Io { .. }
        | LogError::Poisoned(_)
        | LogError::Corrupt { .. } => KAFKA_STORAGE_ERROR,
        _ => UNKNOWN_SERVER_ERROR,
    }
}
