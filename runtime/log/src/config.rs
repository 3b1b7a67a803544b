//! Per-topic configuration, with Kafka's names so that `kafka-configs` habits carry over.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `cleanup.policy` | `delete` | `delete`, `compact`, or `compact,delete` |
//! | `retention.ms` | 604800000 (7 d) | delete sealed segments whose newest record is older; -1 keeps forever |
//! | `retention.bytes` | -1 | per partition: delete oldest sealed segments past this size; -1 = no limit |
//! | `segment.bytes` | 1073741824 | roll the active segment when it would pass this size |
//! | `segment.ms` | 604800000 | roll the active segment when its first record is this old |
//! | `index.interval.bytes` | 4096 | bytes of log between two offset-index entries |
//! | `flush.messages` | 1 | fsync once this many records are unflushed; 1 = every append; -1 = never (left to the OS) |
//! | `flush.ms` | -1 | fsync unflushed data at least this often (background flusher); -1 = never |
//! | `delete.retention.ms` | 86400000 | how long a tombstone stays in a compacted topic |
//! | `max.message.bytes` | 1048588 | the largest batch accepted |
//! | `write.caching` | false | as in Redpanda: when true, the broker answers `acks=all` after the append instead of after the fsync (the `flush.*` policy still fsyncs) |
//!
//! Sluice's default `flush.messages` is 1, not Kafka's "never": one node has no replicas, so an
//! acknowledged append must already be on disk. Set `flush.messages=-1` or `flush.ms` for speed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        })
    }
}

/// A validated topic configuration. Build it with [`TopicConfig::from_pairs`] or set fields
/// directly and call [`TopicConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u64,
    /// `None` = never fsync because of record count.
    pub flush_messages: Option<u64>,
    /// `None` = no timed fsync.
    pub flush_ms: Option<u64>,
    pub delete_retention_ms: i64,
    pub max_message_bytes: i64,
    /// Answer `acks=all` before the fsync (Redpanda's `write.caching`).
    pub write_caching: bool,
    /// Keys the user set explicitly (the others show as defaults in `describe`).
    pub overrides: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            flush_messages: Some(1),
            flush_ms: None,
            delete_retention_ms: 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            write_caching: false,
            overrides: BTreeMap::new(),
        }
    }
}

/// Every key this version understands, in the order `describe` shows them.
pub const KNOWN_KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "delete.retention.ms",
    "max.message.bytes",
    "write.caching",
];

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

fn int(key: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(invalid(key, value, &format!("an integer >= {min}"))),
    }
}

/// An integer >= 1, or -1 for "never".
fn optional_positive(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(v) if v >= 1 => Ok(Some(v as u64)),
        _ => Err(invalid(key, value, "an integer >= 1, or -1 for never")),
    }
}

/// The closest known key, if it is close enough to be a typo.
pub fn suggest(key: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.to_string())
}

impl TopicConfig {
    /// Parses `key=value` settings over the defaults.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let mut cfg = TopicConfig::default();
        for (k, v) in pairs {
            cfg.set(k, v)?;
        }
        Ok(cfg)
    }

    /// Parses settings written `key=value`, as given on the command line.
    pub fn from_assignments(items: &[String]) -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        for item in items {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::Malformed(item.clone()))?;
            pairs.push((k.trim(), v.trim()));
        }
        Self::from_pairs(pairs)
    }

    /// Sets one key, checking its value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "cleanup.policy" => {
                let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
                parts.sort_unstable();
                parts.dedup();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "`delete`, `compact` or `compact,delete`",
                        ))
                    }
                }
            }
            "retention.ms" => self.retention_ms = int(key, value, -1)?,
            "retention.bytes" => self.retention_bytes = int(key, value, -1)?,
            "segment.bytes" => self.segment_bytes = int(key, value, 14)? as u64,
            "segment.ms" => self.segment_ms = int(key, value, 1)?,
            "index.interval.bytes" => self.index_interval_bytes = int(key, value, 0)? as u64,
            "flush.messages" => self.flush_messages = optional_positive(key, value)?,
            "flush.ms" => self.flush_ms = optional_positive(key, value)?,
            "delete.retention.ms" => self.delete_retention_ms = int(key, value, 0)?,
            "max.message.bytes" => self.max_message_bytes = int(key, value, 0)?,
            "write.caching" => {
                self.write_caching = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(key, value, "`true` or `false`")),
                }
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.into(),
                    suggestion: suggest(key, KNOWN_KEYS),
                })
            }
        }
        self.overrides
            .insert(key.to_string(), value.trim().to_string());
        Ok(())
    }

    /// Re-checks a configuration built by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut copy = TopicConfig::default();
        for (k, v) in self.entries() {
            copy.set(&k, &v)?;
        }
        Ok(())
    }

    /// Every key with its effective value and whether it was set explicitly.
    pub fn entries(&self) -> Vec<(String, String)> {
        let never = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-1".into());
        KNOWN_KEYS
            .iter()
            .map(|k| {
                let v = match *k {
                    "cleanup.policy" => self.cleanup_policy.to_string(),
                    "retention.ms" => self.retention_ms.to_string(),
                    "retention.bytes" => self.retention_bytes.to_string(),
                    "segment.bytes" => self.segment_bytes.to_string(),
                    "segment.ms" => self.segment_ms.to_string(),
                    "index.interval.bytes" => self.index_interval_bytes.to_string(),
                    "flush.messages" => never(self.flush_messages),
                    "flush.ms" => never(self.flush_ms),
                    "delete.retention.ms" => self.delete_retention_ms.to_string(),
                    "max.message.bytes" => self.max_message_bytes.to_string(),
                    "write.caching" => self.write_caching.to_string(),
                    _ => String::new(),
                };
                (k.to_string(), v)
            })
            .collect()
    }

    pub fn is_override(&self, key: &str) -> bool {
        self.overrides.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = TopicConfig::from_pairs([
            ("cleanup.policy", "delete,compact"),
            ("flush.messages", "-1"),
        ])
        .unwrap();
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.flush_messages, None);
        assert_eq!(c.retention_ms, 604_800_000);
        assert!(c.is_override("flush.messages"));
        assert!(!c.is_override("retention.ms"));
        c.validate().unwrap();
    }

    #[test]
    fn typo_gets_a_suggestion() {
        let err = TopicConfig::from_pairs([("retention.msx", "5")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown topic config `retention.msx` (did you mean `retention.ms`?)"
        );
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let err = TopicConfig::from_pairs([("segment.bytes", "big")]).unwrap_err();
        assert!(
            err.to_string().contains("expected an integer >= 14"),
            "{err}"
        );
        assert!(TopicConfig::from_pairs([("cleanup.policy", "shred")]).is_err());
        assert!(TopicConfig::from_pairs([("flush.ms", "0")]).is_err());
        assert!(TopicConfig::from_pairs([("write.caching", "maybe")]).is_err());
        assert!(
            TopicConfig::from_pairs([("write.caching", "true")])
                .unwrap()
                .write_caching
        );
        assert!(TopicConfig::from_assignments(&["noequals".into()]).is_err());
    }
}
