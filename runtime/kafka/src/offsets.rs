//! Source positions on the cluster, in Kafka Connect's layout: a compacted topic
//! (`<group>-offsets`) whose keys are `["<connector>",{"stream":"<stream>"}]` and whose
//! values are `{"offset":<position>}` (a null value forgets the position). Every read goes
//! to the topic's end, so a task moved from another worker starts where that one stopped.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value as Json};

use crate::cluster::{Cluster, ClusterError, Outgoing, TaskProducer};
use crate::reader::{open_state_topic, TopicReader};
use crate::settings::KafkaSettings;

/// Every position read, by (connector, stream).
type Positions = BTreeMap<(String, String), Json>;

/// The source positions of a deployment.
pub struct ClusterOffsets {
    topic: String,
    settings: KafkaSettings,
    producer: Mutex<TaskProducer>,
    /// A reader that follows the topic, and every position it read: (connector, stream).
    known: Mutex<(TopicReader, Positions)>,
}

/// The key of a connector's stream.
pub fn offset_key(connector: &str, stream: &str) -> Vec<u8> {
    json!([connector, {"stream": stream}])
        .to_string()
        .into_bytes()
}

impl ClusterOffsets {
    pub fn open(cluster: &Cluster) -> Result<ClusterOffsets, ClusterError> {
        let topic = cluster.settings().offsets_topic();
        let reader = open_state_topic(cluster, &topic, "offsets")?;
        Ok(ClusterOffsets {
            producer: Mutex::new(cluster.producer("sluice-offsets")?),
            known: Mutex::new((reader, BTreeMap::new())),
            topic,
            settings: cluster.settings().clone(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every committed position of `connector` (stream, position), read to the topic's end.
    pub fn positions(&self, connector: &str) -> Result<Vec<(String, Json)>, ClusterError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (reader, table) = &mut *known;
        let records = reader.read(true).map_err(|e| ClusterError {
            servers: self.settings.bootstrap_servers.clone(),
            what: format!("reading `{}`", self.topic),
            message: e.to_string(),
            retriable: true,
        })?;
        for (key, value) in records {
            let Ok(key) = serde_json::from_slice::<Json>(&key) else {
                continue;
            };
            let (Some(c), Some(s)) = (key[0].as_str(), key[1]["stream"].as_str()) else {
                continue;
            };
            let stream = (c.to_string(), s.to_string());
            match value.and_then(|v| serde_json::from_slice::<Json>(&v).ok()) {
                Some(v) => table.insert(stream, v["offset"].clone()),
                None => table.remove(&stream),
            };
        }
        Ok(table
            .range((connector.to_string(), String::new())..)
            .take_while(|((c, _), _)| c == connector)
            .map(|((_, s), v)| (s.clone(), v.clone()))
            .collect())
    }

    /// Stores positions (a `None` forgets one), acknowledged by all in-sync replicas before
    /// this returns.
    pub fn commit(
        &self,
        connector: &str,
        changes: &[(String, Option<Json>)],
    ) -> Result<(), ClusterError> {
        if changes.is_empty() {
            return Ok(());
        }
        let producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        for (stream, offset) in changes {
            let key = offset_key(connector, stream);
            let value = offset_value(offset.as_ref());
            producer.send(&Outgoing {
                topic: &self.topic,
                partition: Some(0),
                key: Some(&key),
                value: value.as_deref(),
                timestamp: now,
                headers: &[],
            })?;
        }
        producer.flush()
    }
}

/// The value of a stream's position (`None`: the tombstone that forgets it).
pub fn offset_value(offset: Option<&Json>) -> Option<Vec<u8>> {
    offset.map(|o| json!({ "offset": o }).to_string().into_bytes())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
