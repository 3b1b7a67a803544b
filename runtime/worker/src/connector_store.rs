//! Connectors created over the REST API, stored in the compacted internal topic
//! `__sluice_connectors` (as Kafka Connect's `connect-configs`): one record per connector,
//! keyed by its name, holding the flat config as it was given and the state last asked of it
//! (RUNNING, PAUSED or STOPPED); a tombstone when it is deleted. Each write is fsynced before
//! the request that made it is answered; a restart replays the topic and builds them again.
//!
//! The connectors of the pipeline file keep only their target state here (key
//! `{"file_connector": name}`), and only while it is not RUNNING: one paused or stopped over
//! REST stays so across a restart, as every connector does in Kafka Connect.
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
    /// The pipeline file's connectors that are not RUNNING: PAUSED or STOPPED.
    file_states: Mutex<BTreeMap<String, String>>,
}

fn key(name: &str) -> Vec<u8> {
    json!({ "connector": name }).to_string().into_bytes()
}

fn file_key(name: &str) -> Vec<u8> {
    json!({ "file_connector": name }).to_string().into_bytes()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnectorStore {
    pub fn open(log: &Log) -> Result<ConnectorStore, LogError> {
        let config =
            TopicConfig::from_pairs([("cleanup.policy", "compact"), ("flush.messages", "1")])?;
        let topic = log.ensure_internal_topic(CONNECTORS_TOPIC, config)?;
        let partition = topic.partitions[0].clone();
        let mut table = BTreeMap::new();
        let mut file_states = BTreeMap::new();
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
                let key = r
                    .key
                    .as_deref()
                    .and_then(|k| serde_json::from_slice::<Json>(k).ok());
                if let Some(name) = key.as_ref().and_then(|k| k["file_connector"].as_str()) {
                    let state = r
                        .value
                        .as_deref()
                        .and_then(|v| serde_json::from_slice::<Json>(v).ok())
                        .and_then(|v| v["target_state"].as_str().map(str::to_string));
                    match state {
                        Some(s) => file_states.insert(name.to_string(), s),
                        None => file_states.remove(name),
                    };
                    continue;
                }
                let Some(name) = key
                    .as_ref()
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
            file_states: Mutex::new(file_states),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredConnector>> {
        lock(&self.table)
    }

    /// Every stored connector, by name.
    pub fn all(&self) -> BTreeMap<String, StoredConnector> {
        self.table().clone()
    }

    pub fn get(&self, name: &str) -> Option<StoredConnector> {
        self.table().get(name).cloned()
    }

    /// The target state stored for a connector of the pipeline file (`PAUSED`, `STOPPED`), if
    /// it is not RUNNING.
    pub fn file_state(&self, name: &str) -> Option<String> {
        lock(&self.file_states).get(name).cloned()
    }

    /// The file connectors with a stored state whose names are not in `names`.
    pub fn file_states_except(&self, names: &[String]) -> Vec<String> {
        lock(&self.file_states)
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect()
    }

    /// Writes (durably) a file connector's target state; `None` (RUNNING, or the connector
    /// left the file) forgets it.
    pub fn put_file_state(&self, name: &str, state: Option<&str>) -> Result<(), LogError> {
        if lock(&self.file_states).get(name).map(String::as_str) == state {
            return Ok(());
        }
        let v = state.map(|s| json!({ "target_state": s }).to_string().into_bytes());
        self.append(&file_key(name), v.as_deref())?;
        let mut states = lock(&self.file_states);
        match state {
            Some(s) => states.insert(name.to_string(), s.to_string()),
            None => states.remove(name),
        };
        Ok(())
    }

    fn append(&self, k: &[u8], v: Option<&[u8]>) -> Result<(), LogError> {
        let now = sluice_log::now_ms();
        let mut batch = BatchBuilder::new();
        batch.push(&Record {
            key: Some(k),
            value: v,
            timestamp: now,
            headers: vec![],
        });
        let info = self.partition.append(&mut batch.build(), now)?;
        if !info.durable {
            self.partition.sync_to(info.last_offset)?;
        }
        Ok(())
    }

    /// Writes (durably) a connector's config and target state, or with `None` its tombstone.
    pub fn put(&self, name: &str, stored: Option<&StoredConnector>) -> Result<(), LogError> {
        let v = stored.map(|s| {
            json!({"config": s.config, "target_state": s.target_state})
                .to_string()
                .into_bytes()
        });
        self.append(&key(name), v.as_deref())?;
        let mut table = self.table();
        match stored {
            Some(s) => table.insert(name.to_string(), s.clone()),
            None => table.remove(name),
        };
        Ok(())
    }
}
