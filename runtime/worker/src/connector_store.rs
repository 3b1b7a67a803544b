//! Connectors created over the REST API, stored in the compacted internal topic
//! `__sluice_connectors` (as Kafka Connect's `connect-configs`): one record per connector,
//! keyed by its name, holding the flat config as it was given and the state last asked of it
//! (RUNNING, PAUSED or STOPPED); a tombstone when it is deleted. Each write is fsynced before
//! the request that made it is answered; a restart replays the topic and builds them again.
//!
//! Must not touch: what a config means (that is [`crate::config::parse_flat_connector`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value as Json};
use sluice_log::{BatchBuilder, Log, LogError, Partition, Record, TopicConfig};

pub const CONNECTORS_TOPIC: &str = "__sluice_connectors";

/// A stored connector: its flat config and the state last asked of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnector {
    pub config: Map<String, Json>,
    /// `RUNNING`, `PAUSED` or `STOPPED`.
    pub target_state: String,
}

/// The connectors created over REST, as last written.
pub struct ConnectorStore {
    partition: Arc<Partition>,
    table: Mutex<BTreeMap<String, StoredConnector>>,
}

fn key(name: &str) -> Vec<u8> {
    json!({ "connector": name }).to_string().into_bytes()
}

impl ConnectorStore {
    pub fn open(log: &Log) -> Result<ConnectorStore, LogError> {
        let config =
            TopicConfig::from_pairs([("cleanup.policy", "compact"), ("flush.messages", "1")])?;
        let topic = log.ensure_internal_topic(CONNECTORS_TOPIC, config)?;
        let partition = topic.partitions[0].clone();
        let mut table = BTreeMap::new();
        let mut offset = partition.log_start_offset();
        while offset < partition.end_offset() {
            let read = partition.read(offset, 1 << 20)?;
            if read.records.is_empty() {
                break;
            }
            let records = sluice_log::decode_record_set(&read.records).map_err(|source| {
                LogError::InvalidBatch {
                    topic: CONNECTORS_TOPIC.into(),
                    partition: 0,
                    source,
                }
            })?;
            for r in records {
                offset = offset.max(r.offset + 1);
                let Some(name) = r
                    .key
                    .as_deref()
                    .and_then(|k| serde_json::from_slice::<Json>(k).ok())
                    .and_then(|k| k["connector"].as_str().map(str::to_string))
                else {
                    continue;
                };
                let stored = r
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Json>(v).ok())
                    .and_then(|v| {
                        Some(StoredConnector {
                            config: v.get("config")?.as_object()?.clone(),
                            target_state: v["target_state"].as_str().unwrap_or("RUNNING").into(),
                        })
                    });
                match stored {
                    Some(s) => table.insert(name, s),
                    None => table.remove(&name),
                };
            }
        }
        Ok(ConnectorStore {
            partition,
            table: Mutex::new(table),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredConnector>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stored connector, by name.
    pub fn all(&self) -> BTreeMap<String, StoredConnector> {
        self.table().clone()
    }

    pub fn get(&self, name: &str) -> Option<StoredConnector> {
        self.table().get(name).cloned()
    }

    /// Writes (durably) a connector's config and target state, or with `None` its tombstone.
    pub fn put(&self, name: &str, stored: Option<&StoredConnector>) -> Result<(), LogError> {
        let now = sluice_log::now_ms();
        let k = key(name);
        let v = stored.map(|s| {
            json!({"config": s.config, "target_state": s.target_state})
                .to_string()
                .into_bytes()
        });
        let mut batch = BatchBuilder::new();
        batch.push(&Record {
            key: Some(&k),
            value: v.as_deref(),
            timestamp: now,
            headers: vec![],
        });
        let info = self.partition.append(&mut batch.build(), now)?;
        if !info.durable {
            self.partition.sync_to(info.last_offset)?;
        }
        let mut table = self.table();
        match stored {
            Some(s) => table.insert(name.to_string(), s.clone()),
            None => table.remove(name),
        };
        Ok(())
    }
}
