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
//! On a Kafka cluster (`runtime.kafka`) the same table lives in `<group>-configs`, in Kafka
//! Connect's layout ([`sluice_kafka::configs`]), written by every worker; each worker
//! follows it and brings its connectors in line ([`crate::run::Worker::follow_configs`]).
//!
//! Must not touch: what a config means (that is [`crate::config::parse_flat_connector`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value as Json};
use sluice_kafka::{ClusterError, ConfigChange, ConfigsTopic};
use sluice_log::{BatchBuilder, Log, LogError, Partition, Record, TopicConfig};

pub const CONNECTORS_TOPIC: &str = "__sluice_connectors";

/// A stored connector: its flat config and the state last asked of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnector {
    pub config: Map<String, Json>,
    /// `RUNNING`, `PAUSED` or `STOPPED`.
    pub target_state: String,
}

/// Where the table is kept.
enum Backend {
    Log(Arc<Partition>),
    /// The topic, and what it says as far as this worker read it (and whether some of
    /// that was read by [`ConnectorStore::begin_write`], not yet handed to the follower).
    Cluster(Arc<ConfigsTopic>, Mutex<(ClusterView, bool)>),
}

/// A failed write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The deployment's connectors as `<group>-configs` says: REST connectors' flat configs and
/// every connector's target state, in Sluice's words (`RUNNING`, `PAUSED`, `STOPPED`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    pub connectors: BTreeMap<String, Map<String, Json>>,
    pub states: BTreeMap<String, String>,
    /// Restarts read and not yet handed to the follower (events, not state).
    pub restarts: Vec<ConfigChange>,
}

impl ClusterView {
    pub fn apply(&mut self, change: ConfigChange) {
        match change.clone() {
            ConfigChange::Connector {
                name,
                properties: Some(p),
            } => {
                self.connectors.insert(name, p);
            }
            ConfigChange::Connector {
                name,
                properties: None,
            } => {
                self.connectors.remove(&name);
            }
            ConfigChange::TargetState {
                name,
                state: Some(s),
            } if s != "STARTED" => {
                self.states.insert(name, s);
            }
            ConfigChange::TargetState { name, .. } => {
                self.states.remove(&name);
            }
            ConfigChange::Restart { .. } => self.restarts.push(change),
        }
    }

    /// The state asked of connector `name`.
    pub fn state(&self, name: &str) -> &str {
        self.states.get(name).map_or("RUNNING", String::as_str)
    }
}

/// Connect's word for a target state.
fn connect_state(state: &str) -> &str {
    if state == "RUNNING" {
        "STARTED"
    } else {
        state
    }
}

/// The connectors created over REST, as last written.
pub struct ConnectorStore {
    backend: Backend,
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
            backend: Backend::Log(partition),
            table: Mutex::new(table),
            file_states: Mutex::new(file_states),
        })
    }

    /// The table on a Kafka cluster, read to the end of `<group>-configs`.
    pub fn on_cluster(configs: Arc<ConfigsTopic>) -> Result<ConnectorStore, ClusterError> {
        let mut view = ClusterView::default();
        for change in configs.read(true)? {
            view.apply(change);
        }
        view.restarts.clear(); // asked of the workers that ran then
        let (table, file_states) = split(&view);
        Ok(ConnectorStore {
            backend: Backend::Cluster(configs, Mutex::new((view, false))),
            table: Mutex::new(table),
            file_states: Mutex::new(file_states),
        })
    }

    /// Whether the table is on a Kafka cluster, shared by the deployment's workers.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Cluster(..))
    }

    /// On a cluster: reads `<group>-configs` to its end and returns what it says (REST
    /// connectors, and file connectors' states) if anything was written since the last
    /// call. `None` on the embedded log, or when nothing changed.
    #[allow(clippy::type_complexity)]
    pub fn follow(
        &self,
    ) -> Result<
        Option<(
            BTreeMap<String, StoredConnector>,
            BTreeMap<String, String>,
            Vec<ConfigChange>,
        )>,
        ClusterError,
    > {
        let Backend::Cluster(configs, view) = &self.backend else {
            return Ok(None);
        };
        let changes = configs.read(true)?;
        let mut view = lock(view);
        let (view, unseen) = &mut *view;
        if changes.is_empty() && !*unseen {
            return Ok(None);
        }
        *unseen = false;
        for change in changes {
            view.apply(change);
        }
        let (table, file_states) = split(view);
        Ok(Some((
            table,
            file_states,
            std::mem::take(&mut view.restarts),
        )))
    }

    /// On a cluster: takes over writing `<group>-configs` and reads it to its end, before a
    /// change is decided; returns whether a REST connector `name` is there. (`None` on the
    /// embedded log, where this worker is the only writer.)
    pub fn begin_write(&self, name: &str) -> Result<Option<bool>, ClusterError> {
        let Backend::Cluster(configs, view) = &self.backend else {
            return Ok(None);
        };
        let changes = configs.begin_write()?;
        let mut view = lock(view);
        let (view, unseen) = &mut *view;
        *unseen |= !changes.is_empty();
        for change in changes {
            view.apply(change);
        }
        Ok(Some(view.connectors.contains_key(name)))
    }
}

/// A cluster view as a store's table (REST connectors) and file connectors' states.
#[allow(clippy::type_complexity)]
fn split(view: &ClusterView) -> (BTreeMap<String, StoredConnector>, BTreeMap<String, String>) {
    let table = view
        .connectors
        .iter()
        .map(|(name, config)| {
            (
                name.clone(),
                StoredConnector {
                    config: config.clone(),
                    target_state: view.state(name).to_string(),
                },
            )
        })
        .collect();
    let file_states = view
        .states
        .iter()
        .filter(|(name, _)| !view.connectors.contains_key(*name))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    (table, file_states)
}

impl ConnectorStore {
    /// Takes a change another worker made into the table, without writing it.
    pub fn note(&self, name: &str, stored: Option<&StoredConnector>) {
        let mut table = self.table();
        match stored {
            Some(s) => table.insert(name.to_string(), s.clone()),
            None => table.remove(name),
        };
    }

    /// Takes a file connector's state another worker asked for, without writing it.
    pub fn note_file_state(&self, name: &str, state: Option<&str>) {
        let mut states = lock(&self.file_states);
        match state {
            Some(s) => states.insert(name.to_string(), s.to_string()),
            None => states.remove(name),
        };
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
    pub fn put_file_state(&self, name: &str, state: Option<&str>) -> Result<(), StoreError> {
        if lock(&self.file_states).get(name).map(String::as_str) == state {
            return Ok(());
        }
        match &self.backend {
            Backend::Log(_) => {
                let v = state.map(|s| json!({ "target_state": s }).to_string().into_bytes());
                self.append(&file_key(name), v.as_deref())?;
            }
            Backend::Cluster(c, _) => c.write(&[ConfigChange::TargetState {
                name: name.to_string(),
                state: state.map(|s| connect_state(s).to_string()),
            }])?,
        }
        let mut states = lock(&self.file_states);
        match state {
            Some(s) => states.insert(name.to_string(), s.to_string()),
            None => states.remove(name),
        };
        Ok(())
    }

    fn append(&self, k: &[u8], v: Option<&[u8]>) -> Result<(), LogError> {
        let Backend::Log(partition) = &self.backend else {
            unreachable!("the embedded log's record format is written only there");
        };
        let now = sluice_log::now_ms();
        let mut batch = BatchBuilder::new();
        batch.push(&Record {
            key: Some(k),
            value: v,
            timestamp: now,
            headers: vec![],
        });
        let info = partition.append(&mut batch.build(), now)?;
        if !info.durable {
            partition.sync_to(info.last_offset)?;
        }
        Ok(())
    }

    /// On a cluster, asks the workers running a connector's tasks to restart them (see
    /// [`ConfigChange::Restart`]).
    pub fn ask_restart(&self, change: ConfigChange) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Cluster(c, _) => Ok(c.write(&[change])?),
            Backend::Log(_) => Ok(()),
        }
    }

    /// Writes (durably) a connector's config and target state, or with `None` its tombstone.
    pub fn put(&self, name: &str, stored: Option<&StoredConnector>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Log(_) => {
                let v = stored.map(|s| {
                    json!({"config": s.config, "target_state": s.target_state})
                        .to_string()
                        .into_bytes()
                });
                self.append(&key(name), v.as_deref())?;
            }
            Backend::Cluster(c, _) => {
                let state = ConfigChange::TargetState {
                    name: name.to_string(),
                    state: stored.map(|s| connect_state(&s.target_state).to_string()),
                };
                let connector = ConfigChange::Connector {
                    name: name.to_string(),
                    properties: stored.map(|s| s.config.clone()),
                };
                // Connect's order: the state before the config, so that a follower never
                // starts a connector asked to be paused; a deletion goes the other way.
                match stored {
                    Some(_) => c.write(&[state, connector])?,
                    None => c.write(&[connector, state])?,
                }
            }
        }
        let mut table = self.table();
        match stored {
            Some(s) => table.insert(name.to_string(), s.clone()),
            None => table.remove(name),
        };
        Ok(())
    }
}
