//! Consumer-group offsets: commit and fetch per group, topic and partition.
//!
//! Every commit is a record in the compacted internal topic `__consumer_offsets` (as in
//! Kafka), appended with `flush.messages=1` before the commit returns, and the in-memory table
//! is rebuilt from that topic on open. A commit of several partitions is one batch: all of it
//! is stored or none. Deleting a topic writes tombstones for its offsets.
//!
//! Record key: `version u16 = 1 | group (u16 len, bytes) | topic (u16 len, bytes) | partition u32`.
//! Record value: `version u16 = 1 | offset i64 | leader epoch i32 | commit time i64 | metadata (u32 len, bytes)`.
//!
//! The same topic keeps each group's opaque membership snapshot for the broker's coordinator:
//! key `version u16 = 2 | group (u16 len, bytes)`, value the snapshot (null removes it).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use crate::batch::BatchBuilder;
use crate::config::{CleanupPolicy, TopicConfig};
use crate::error::{LogError, Result};
use crate::log::{now_ms, Log};
use crate::record::{decode_records, Record};

/// The internal topic that stores group offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
const FORMAT_VERSION: u16 = 1;

/// An offset a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    /// Free-form client metadata, returned as it was committed.
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// One partition's entry in a commit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

type GroupTable = HashMap<String, BTreeMap<(String, u32), CommittedOffset>>;

#[derive(Default)]
pub(crate) struct GroupState {
    table: RwLock<GroupTable>,
    /// Opaque per-group metadata the broker's coordinator stores (membership, generation).
    metadata: RwLock<HashMap<String, Vec<u8>>>,
    /// Serialises commits so the table follows the log's order.
    write: std::sync::Mutex<()>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + group.len() + topic.len());
    k.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    put_str(&mut k, group);
    put_str(&mut k, topic);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Group-metadata records use key version 2: `2 u16 | group (u16 len, bytes)`.
const METADATA_KEY_VERSION: u16 = 2;

fn encode_metadata_key(group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + group.len());
    k.extend_from_slice(&METADATA_KEY_VERSION.to_be_bytes());
    put_str(&mut k, group);
    k
}

fn decode_metadata_key(k: &[u8]) -> Option<String> {
    let mut r = Reader(k);
    if r.u16()? != METADATA_KEY_VERSION {
        return None;
    }
    let len = r.u16()? as usize;
    let group = r.string(len)?;
    r.0.is_empty().then_some(group)
}

fn encode_value(c: &CommittedOffset) -> Vec<u8> {
    let mut v = Vec::with_capacity(26 + c.metadata.len());
    v.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    v.extend_from_slice(&c.offset.to_be_bytes());
    v.extend_from_slice(&c.leader_epoch.to_be_bytes());
    v.extend_from_slice(&c.commit_timestamp.to_be_bytes());
    v.extend_from_slice(&(c.metadata.len() as u32).to_be_bytes());
    v.extend_from_slice(c.metadata.as_bytes());
    v
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn string(&mut self, len: usize) -> Option<String> {
        self.take(len)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

fn decode_key(k: &[u8]) -> Option<(String, String, u32)> {
    let mut r = Reader(k);
    if r.u16()? != FORMAT_VERSION {
        return None;
    }
    let gl = r.u16()? as usize;
    let group = r.string(gl)?;
    let tl = r.u16()? as usize;
    let topic = r.string(tl)?;
    Some((group, topic, r.u32()?))
}

fn decode_value(v: &[u8]) -> Option<CommittedOffset> {
    let mut r = Reader(v);
    if r.u16()? != FORMAT_VERSION {
        return None;
    }
    let offset = r.i64()?;
    let leader_epoch = r.u32()? as i32;
    let commit_timestamp = r.i64()?;
    let ml = r.u32()? as usize;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        commit_timestamp,
        metadata: r.string(ml)?,
    })
}

fn offsets_topic_config() -> TopicConfig {
    TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 16 << 20,
        flush_messages: Some(1),
        overrides: [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), (16u64 << 20).to_string()),
            ("flush.messages".to_string(), "1".to_string()),
        ]
        .into_iter()
        .collect(),
        ..TopicConfig::default()
    }
}

impl Log {
    /// Rebuilds the offsets table from `__consumer_offsets` (on open).
    pub(crate) fn load_group_offsets(&self) -> Result<()> {
        let Ok(part) = self.partition(OFFSETS_TOPIC, 0) else {
            return Ok(());
        };
        let mut table = GroupTable::new();
        let mut metadata = HashMap::new();
        let mut offset = part.log_start_offset();
        let end = part.end_offset();
        while offset < end {
            let read = part.read(offset, 1 << 20)?;
            if read.records.is_empty() {
                break;
            }
            for (start, h) in crate::batch::split_record_set(&read.records).map_err(|source| {
                LogError::InvalidBatch {
                    topic: OFFSETS_TOPIC.into(),
                    partition: 0,
                    source,
                }
            })? {
                let bytes = &read.records[start..start + h.size];
                for r in decode_records(bytes, &h).map_err(|source| LogError::InvalidBatch {
                    topic: OFFSETS_TOPIC.into(),
                    partition: 0,
                    source,
                })? {
                    if r.offset < offset {
                        continue;
                    }
                    if let Some(group) = r.key.and_then(decode_metadata_key) {
                        match r.value {
                            Some(v) => metadata.insert(group, v.to_vec()),
                            None => metadata.remove(&group),
                        };
                        continue;
                    }
                    let Some((group, topic, p)) = r.key.and_then(decode_key) else {
                        continue;
                    };
                    match r.value.and_then(decode_value) {
                        Some(c) => {
                            table.entry(group).or_default().insert((topic, p), c);
                        }
                        None => {
                            if let Some(g) = table.get_mut(&group) {
                                g.remove(&(topic, p));
                                if g.is_empty() {
                                    table.remove(&group);
                                }
                            }
                        }
                    }
                }
                offset = h.last_offset() + 1;
            }
        }
        *self
            .inner
            .groups
            .table
            .write()
            .unwrap_or_else(|e| e.into_inner()) = table;
        *self
            .inner
            .groups
            .metadata
            .write()
            .unwrap_or_else(|e| e.into_inner()) = metadata;
        Ok(())
    }

    /// Appends records to `__consumer_offsets` as one batch, durably, then runs `apply` to
    /// update the in-memory tables, all under the write lock so the tables follow the log.
    fn write_internal(
        &self,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        apply: impl FnOnce(),
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let part = self.offsets_partition()?;
        let _w = self
            .inner
            .groups
            .write
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let mut builder = BatchBuilder::new();
        for (k, v) in records {
            builder.push(&Record {
                key: Some(k),
                value: v.as_deref(),
                timestamp: now,
                headers: vec![],
            });
        }
        part.append(&mut builder.build(), now)?;
        apply();
        Ok(())
    }

    /// Stores (or with `None` removes) a group's opaque metadata, durably: the broker keeps
    /// group membership here so that members survive a restart without rebalancing.
    pub fn store_group_metadata(&self, group: &str, metadata: Option<&[u8]>) -> Result<()> {
        let record = (encode_metadata_key(group), metadata.map(<[u8]>::to_vec));
        self.write_internal(&[record], || {
            let mut all = self
                .inner
                .groups
                .metadata
                .write()
                .unwrap_or_else(|e| e.into_inner());
            match metadata {
                Some(m) => all.insert(group.to_string(), m.to_vec()),
                None => all.remove(group),
            };
        })
    }

    /// Every group's stored metadata.
    pub fn group_metadata(&self) -> Vec<(String, Vec<u8>)> {
        let all = self
            .inner
            .groups
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner());
        all.iter().map(|(g, m)| (g.clone(), m.clone())).collect()
    }

    fn offsets_partition(&self) -> Result<std::sync::Arc<crate::Partition>> {
        match self.partition(OFFSETS_TOPIC, 0) {
            Ok(p) => Ok(p),
            Err(LogError::UnknownTopic(_)) => {
                match self.create_topic_inner(OFFSETS_TOPIC, 1, offsets_topic_config()) {
                    Ok(t) => Ok(t.partitions[0].clone()),
                    Err(LogError::TopicExists(_)) => self.partition(OFFSETS_TOPIC, 0),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Stores a group's offsets for one or more partitions, durably and all together.
    pub fn commit_offsets(&self, group: &str, commits: &[OffsetCommit]) -> Result<()> {
        if group.is_empty() {
            return Err(LogError::InvalidTopicName {
                name: group.into(),
                reason: "a group id cannot be empty".into(),
            });
        }
        for c in commits {
            self.partition(&c.topic, c.partition)?;
        }
        let now = now_ms();
        let entries: Vec<((String, u32), CommittedOffset)> = commits
            .iter()
            .map(|c| {
                let value = CommittedOffset {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp: now,
                };
                ((c.topic.clone(), c.partition as u32), value)
            })
            .collect();
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
            .iter()
            .map(|((t, p), c)| (encode_key(group, t, *p), Some(encode_value(c))))
            .collect();
        self.write_internal(&records, || {
            let mut table = self
                .inner
                .groups
                .table
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let g = table.entry(group.to_string()).or_default();
            for (key, c) in entries {
                g.insert(key, c);
            }
        })
    }

    /// The offset `group` last committed for a partition, if any.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<CommittedOffset> {
        let table = self
            .inner
            .groups
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner());
        table
            .get(group)?
            .get(&(topic.to_string(), u32::try_from(partition).ok()?))
            .cloned()
    }

    /// Every offset `group` has committed: `(topic, partition, committed)`.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, u32, CommittedOffset)> {
        let table = self
            .inner
            .groups
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner());
        table
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let table = self
            .inner
            .groups
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = table.keys().cloned().collect();
        names.sort();
        names
    }

    /// Removes a group's offsets (tombstones in `__consumer_offsets`).
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let keys: Vec<(String, u32)> = self
            .group_offsets(group)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
        self.write_tombstones(
            keys.into_iter()
                .map(|(t, p)| (group.to_string(), t, p))
                .collect(),
        )
    }

    /// Removes the offsets `group` committed for these partitions (Kafka's OffsetDelete);
    /// partitions it never committed are skipped.
    pub fn delete_group_offsets(&self, group: &str, partitions: &[(String, u32)]) -> Result<()> {
        let doomed: Vec<(String, String, u32)> = partitions
            .iter()
            .filter(|(t, p)| self.committed_offset(group, t, *p as i32).is_some())
            .map(|(t, p)| (group.to_string(), t.clone(), *p))
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        self.write_tombstones(doomed)
    }

    pub(crate) fn forget_topic_offsets(&self, topic: &str) -> Result<()> {
        let doomed: Vec<(String, String, u32)> = {
            let table = self
                .inner
                .groups
                .table
                .read()
                .unwrap_or_else(|e| e.into_inner());
            table
                .iter()
                .flat_map(|(g, offsets)| {
                    offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .map(move |(t, p)| (g.clone(), t.clone(), *p))
                })
                .collect()
        };
        self.write_tombstones(doomed)
    }

    fn write_tombstones(&self, doomed: Vec<(String, String, u32)>) -> Result<()> {
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = doomed
            .iter()
            .map(|(g, t, p)| (encode_key(g, t, *p), None))
            .collect();
        self.write_internal(&records, || {
            let mut table = self
                .inner
                .groups
                .table
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for (g, t, p) in doomed {
                if let Some(offsets) = table.get_mut(&g) {
                    offsets.remove(&(t, p));
                    if offsets.is_empty() {
                        table.remove(&g);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip() {
        let k = encode_key("g1", "orders", 7);
        assert_eq!(decode_key(&k), Some(("g1".into(), "orders".into(), 7)));
        let c = CommittedOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 5,
        };
        assert_eq!(decode_value(&encode_value(&c)), Some(c));
        assert_eq!(decode_key(&k[..5]), None);
    }
}
