//! Source positions, stored in the compacted internal topic `__connect_offsets` (as Kafka
//! Connect's `connect-offsets`): one record per (connector, stream), written with fsync only
//! after the records it covers are durable in the log. Rebuilt by replaying the topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value as Json};
use sluice_connector_sdk::connector::SourcePosition;
use sluice_log::{BatchBuilder, Log, LogError, Partition, Record, TopicConfig};

pub const OFFSETS_TOPIC: &str = "__connect_offsets";

/// Committed source positions of every connector.
pub struct SourceOffsets {
    partition: Arc<Partition>,
    table: Mutex<HashMap<(String, String), Json>>,
}

fn key(connector: &str, stream: &str) -> Vec<u8> {
    json!({"connector": connector, "stream": stream})
        .to_string()
        .into_bytes()
}

impl SourceOffsets {
    pub fn open(log: &Log) -> Result<SourceOffsets, LogError> {
        let config =
            TopicConfig::from_pairs([("cleanup.policy", "compact"), ("flush.messages", "1")])?;
        let topic = log.ensure_internal_topic(OFFSETS_TOPIC, config)?;
        let partition = topic.partitions[0].clone();
        let mut table = HashMap::new();
        let mut offset = partition.log_start_offset();
        while offset < partition.end_offset() {
            let read = partition.read(offset, 1 << 20)?;
            if read.records.is_empty() {
                break;
            }
            let records = sluice_log::decode_record_set(&read.records).map_err(|source| {
                LogError::InvalidBatch {
                    topic: OFFSETS_TOPIC.into(),
                    partition: 0,
                    source,
                }
            })?;
            for r in records {
                offset = offset.max(r.offset + 1);
                let Some(k) = r
                    .key
                    .as_deref()
                    .and_then(|k| serde_json::from_slice::<Json>(k).ok())
                else {
                    continue;
                };
                let (Some(c), Some(s)) = (k["connector"].as_str(), k["stream"].as_str()) else {
                    continue;
                };
                match r
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Json>(v).ok())
                {
                    Some(v) => table.insert((c.to_string(), s.to_string()), v),
                    None => table.remove(&(c.to_string(), s.to_string())),
                };
            }
            if let Some((_, h)) = sluice_log::batch::split_record_set(&read.records)
                .ok()
                .and_then(|b| b.last().copied())
            {
                offset = offset.max(h.last_offset() + 1);
            }
        }
        Ok(SourceOffsets {
            partition,
            table: Mutex::new(table),
        })
    }

    /// Every committed position of a connector.
    pub fn positions(&self, connector: &str) -> Vec<SourcePosition> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .filter(|((c, _), _)| c == connector)
            .map(|((_, s), o)| SourcePosition {
                stream: s.as_str().into(),
                offset: o.clone(),
            })
            .collect()
    }

    /// Sets or (with `None`) forgets positions of a connector's streams, durably (one batch
    /// with tombstones for the forgotten): what `PATCH`/`DELETE …/offsets` do.
    pub fn alter(
        &self,
        connector: &str,
        changes: &[(String, Option<Json>)],
    ) -> Result<(), LogError> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = sluice_log::now_ms();
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = changes
            .iter()
            .map(|(stream, o)| {
                (
                    key(connector, stream),
                    o.as_ref().map(|o| o.to_string().into_bytes()),
                )
            })
            .collect();
        let mut batch = BatchBuilder::new();
        for (k, v) in &encoded {
            batch.push(&Record {
                key: Some(k),
                value: v.as_deref(),
                timestamp: now,
                headers: vec![],
            });
        }
        self.partition.append(&mut batch.build(), now)?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for (stream, o) in changes {
            let k = (connector.to_string(), stream.clone());
            match o {
                Some(o) => table.insert(k, o.clone()),
                None => table.remove(&k),
            };
        }
        Ok(())
    }

    /// Stores positions durably (one batch), then remembers them.
    pub fn commit(&self, connector: &str, positions: &[SourcePosition]) -> Result<(), LogError> {
        if positions.is_empty() {
            return Ok(());
        }
        let now = sluice_log::now_ms();
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = positions
            .iter()
            .map(|p| (key(connector, &p.stream), p.offset.to_string().into_bytes()))
            .collect();
        let mut batch = BatchBuilder::new();
        for (k, v) in &encoded {
            batch.push(&Record {
                key: Some(k),
                value: Some(v),
                timestamp: now,
                headers: vec![],
            });
        }
        self.partition.append(&mut batch.build(), now)?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for p in positions {
            table.insert(
                (connector.to_string(), p.stream.to_string()),
                p.offset.clone(),
            );
        }
        Ok(())
    }
}
