//! Connector configs on the cluster: the compacted topic `<group>-configs` (one partition),
//! in Kafka Connect's layout for its `config.storage.topic`:
//! - key `connector-<name>`, value `{"properties":{…}}`: a connector created over the REST
//!   API, with its flat config as it was given; a tombstone when it is deleted;
//! - key `target-state-<name>`, value `{"state":…,"state.v2":…}`: the state asked of a
//!   connector (`STARTED`, `PAUSED` or `STOPPED`; `state` says `PAUSED` for `STOPPED`, as
//!   Connect writes it for workers older than KIP-875), for the file's connectors too.
//!
//! Every worker of a deployment writes here and follows the topic: the order of the topic
//! is the order of the changes, so every worker ends with the same connectors. Connect's
//! `task-…` and `commit-…` records are skipped: Sluice derives task configs on each worker.
//!
//! One writer at a time, as Connect's leader: every worker writes through a transactional
//! producer with the deployment's one `transactional.id` (`sluice-<group>-configs`). A
//! worker about to decide a change takes over ([`ConfigsTopic::begin_write`]: fencing the
//! previous writer) and reads the topic to its end; if another worker took over before it
//! committed, its commit fails and the change is refused as Connect refuses a change made
//! on stale configuration ([`STALE`]), never applied on top of one it did not see.

use std::sync::Mutex;

use serde_json::{json, Map, Value as Json};

use crate::cluster::{make_producer, Cluster, ClusterError, Outgoing, TaskProducer};

/// Kafka Connect's words for a change that lost to a concurrent one.
pub const STALE: &str = "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)";
use crate::reader::{open_state_topic, TopicReader};
use crate::settings::KafkaSettings;

/// One change to the deployment's connectors.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    /// A connector created or reconfigured over REST (`None`: deleted).
    Connector {
        name: String,
        properties: Option<Map<String, Json>>,
    },
    /// The state asked of a connector, in Connect's words (`None`: forgotten, as STARTED).
    TargetState { name: String, state: Option<String> },
    /// A restart asked on some worker, for the workers running the tasks: Connect's
    /// `restart-connector-<name>` (KIP-745, `task: None`), or one task (`restart-task-…`,
    /// Sluice's: Connect forwards those over HTTP instead). An event, not a state.
    Restart {
        name: String,
        task: Option<u32>,
        only_failed: bool,
    },
}

impl ConfigChange {
    fn key(&self) -> String {
        match self {
            ConfigChange::Connector { name, .. } => format!("connector-{name}"),
            ConfigChange::TargetState { name, .. } => format!("target-state-{name}"),
            ConfigChange::Restart {
                name, task: None, ..
            } => format!("restart-connector-{name}"),
            ConfigChange::Restart {
                name,
                task: Some(t),
                ..
            } => format!("restart-task-{name}-{t}"),
        }
    }

    fn value(&self) -> Option<Vec<u8>> {
        let v = match self {
            ConfigChange::Connector { properties, .. } => {
                json!({ "properties": properties.as_ref()? })
            }
            ConfigChange::TargetState { state, .. } => {
                let state = state.as_deref()?;
                let v1 = if state == "STOPPED" { "PAUSED" } else { state };
                json!({ "state": v1, "state.v2": state })
            }
            ConfigChange::Restart { only_failed, .. } => {
                json!({ "include-tasks": true, "only-failed": only_failed })
            }
        };
        Some(v.to_string().into_bytes())
    }

    /// Reads a record of the topic; `None` for records Sluice does not use.
    fn parse(key: &[u8], value: Option<&[u8]>) -> Option<ConfigChange> {
        let key = std::str::from_utf8(key).ok()?;
        // A value that is not JSON is skipped, never taken for a tombstone.
        let value = match value {
            Some(v) => Some(serde_json::from_slice::<Json>(v).ok()?),
            None => None,
        };
        if let Some(name) = key.strip_prefix("connector-") {
            let properties = match value {
                Some(v) => Some(v.get("properties")?.as_object()?.clone()),
                None => None,
            };
            return Some(ConfigChange::Connector {
                name: name.to_string(),
                properties,
            });
        }
        if let Some(name) = key.strip_prefix("restart-connector-") {
            return Some(ConfigChange::Restart {
                name: name.to_string(),
                task: None,
                only_failed: value?.get("only-failed")?.as_bool()?,
            });
        }
        if let Some(rest) = key.strip_prefix("restart-task-") {
            let (name, task) = rest.rsplit_once('-')?;
            return Some(ConfigChange::Restart {
                name: name.to_string(),
                task: Some(task.parse().ok()?),
                only_failed: false,
            });
        }
        if let Some(name) = key.strip_prefix("target-state-") {
            let state = match value {
                Some(v) => Some(
                    v.get("state.v2")
                        .or_else(|| v.get("state"))?
                        .as_str()?
                        .to_string(),
                ),
                None => None,
            };
            return Some(ConfigChange::TargetState {
                name: name.to_string(),
                state,
            });
        }
        None
    }
}

/// The deployment's configs topic: writes acknowledged by every in-sync replica, and a
/// reader that follows it.
pub struct ConfigsTopic {
    topic: String,
    settings: KafkaSettings,
    /// The transactional writer, while this worker is the one writing, and whether the
    /// next write was decided on a read made after taking over ([`ConfigsTopic::begin_write`]).
    writer: Mutex<(Option<TaskProducer>, bool)>,
    reader: Mutex<TopicReader>,
}

impl ConfigsTopic {
    pub fn open(cluster: &Cluster) -> Result<ConfigsTopic, ClusterError> {
        let settings = cluster.settings().clone();
        let topic = settings.configs_topic();
        let reader = open_state_topic(cluster, &topic, "configs")?;
        Ok(ConfigsTopic {
            writer: Mutex::new((None, false)),
            reader: Mutex::new(reader),
            topic,
            settings,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Takes over writing (fencing the worker that wrote last) and reads the topic to its
    /// end: the changes returned are all that any worker committed before.
    pub fn begin_write(&self) -> Result<Vec<ConfigChange>, ClusterError> {
        {
            // Always afresh: a writer kept from before may have been fenced since.
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            *writer = (None, false);
            *writer = (Some(self.take_over()?), true);
        }
        self.read(true)
    }

    fn take_over(&self) -> Result<TaskProducer, ClusterError> {
        make_producer(
            &self.settings,
            "sluice-configs",
            Some(&format!("sluice-{}-configs", self.settings.group)),
        )
    }

    /// Writes `changes` in order, in one transaction; they are acknowledged when this
    /// returns. A change decided after [`ConfigsTopic::begin_write`] that lost to another
    /// worker's is refused ([`STALE`]) and left nothing behind; any other is tried again once
    /// after taking over (it depends on nothing it read).
    pub fn write(&self, changes: &[ConfigChange]) -> Result<(), ClusterError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let decided = std::mem::replace(&mut writer.1, false);
        let mut tries = if decided { 1 } else { 2 };
        loop {
            if writer.0.is_none() {
                writer.0 = Some(self.take_over()?);
            }
            let producer = writer.0.as_ref().expect("set above");
            let written = self.send_all(producer, changes);
            let Err(e) = written else {
                return Ok(());
            };
            // Fenced (another worker wrote since this one took over) or broken: either way
            // the transaction is not committed, and the next write takes over again.
            writer.0 = None;
            tries -= 1;
            tracing::info!(error = %e, "a change to `{}` did not commit", self.topic);
            if tries == 0 {
                return Err(ClusterError {
                    servers: self.settings.bootstrap_servers.clone(),
                    what: format!("writing `{}`", self.topic),
                    message: format!("{STALE}: {}", e.message),
                    retriable: true,
                });
            }
        }
    }

    fn send_all(
        &self,
        producer: &TaskProducer,
        changes: &[ConfigChange],
    ) -> Result<(), ClusterError> {
        let now = crate::offsets::now_ms();
        for change in changes {
            let key = change.key();
            let value = change.value();
            producer.send(&Outgoing {
                topic: &self.topic,
                partition: Some(0),
                key: Some(key.as_bytes()),
                value: value.as_deref(),
                timestamp: now,
                headers: &[],
            })?;
        }
        producer.flush()?;
        producer.commit_transaction()
    }

    /// The changes this reader has next: up to the topic's end as it is now (`to_end`,
    /// waiting for them), or only those that arrived already.
    pub fn read(&self, to_end: bool) -> Result<Vec<ConfigChange>, ClusterError> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let records = reader
            .read(to_end)
            .map_err(|e| read_err(&self.settings, &self.topic, e))?;
        Ok(records
            .iter()
            .filter_map(|(k, v)| ConfigChange::parse(k, v.as_deref()))
            .collect())
    }
}

fn read_err(settings: &KafkaSettings, topic: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError {
        servers: settings.bootstrap_servers.clone(),
        what: format!("reading `{topic}`"),
        message: e.to_string(),
        retriable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(change: ConfigChange) -> Option<ConfigChange> {
        ConfigChange::parse(change.key().as_bytes(), change.value().as_deref())
    }

    #[test]
    fn records_are_in_connects_layout() {
        let mut props = Map::new();
        props.insert("connector.class".into(), json!("file"));
        let c = ConfigChange::Connector {
            name: "orders".into(),
            properties: Some(props.clone()),
        };
        assert_eq!(c.key(), "connector-orders");
        assert_eq!(
            String::from_utf8(c.value().unwrap()).unwrap(),
            r#"{"properties":{"connector.class":"file"}}"#
        );
        assert_eq!(round_trip(c.clone()), Some(c));
        let stopped = ConfigChange::TargetState {
            name: "orders".into(),
            state: Some("STOPPED".into()),
        };
        assert_eq!(
            String::from_utf8(stopped.value().unwrap()).unwrap(),
            r#"{"state":"PAUSED","state.v2":"STOPPED"}"#
        );
        assert_eq!(round_trip(stopped.clone()), Some(stopped));
        let gone = ConfigChange::Connector {
            name: "orders".into(),
            properties: None,
        };
        assert_eq!(round_trip(gone.clone()), Some(gone));
    }

    #[test]
    fn connects_older_records_are_read_and_its_task_records_skipped() {
        assert_eq!(
            ConfigChange::parse(b"target-state-x", Some(br#"{"state":"PAUSED"}"#)),
            Some(ConfigChange::TargetState {
                name: "x".into(),
                state: Some("PAUSED".into())
            })
        );
        assert_eq!(
            ConfigChange::parse(b"task-x-0", Some(br#"{"properties":{}}"#)),
            None
        );
        assert_eq!(
            ConfigChange::parse(b"commit-x", Some(br#"{"tasks":1}"#)),
            None
        );
        assert_eq!(ConfigChange::parse(b"connector-x", Some(b"not json")), None);
    }
}
