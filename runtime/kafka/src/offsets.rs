//! Source positions on the cluster, in Kafka Connect's layout: a compacted topic
//! (`<group>-offsets`) whose keys are `["<connector>",{"stream":"<stream>"}]` and whose
//! values are `{"offset":<position>}` (a null value forgets the position). Every read goes
//! to the topic's end, so a task moved from another worker starts where that one stopped.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value as Json};

use crate::cluster::{Cluster, ClusterError, Outgoing, TaskProducer, TopicSpec, CALL_TIMEOUT};
use crate::settings::KafkaSettings;

/// The source positions of a deployment.
pub struct ClusterOffsets {
    topic: String,
    settings: KafkaSettings,
    producer: std::sync::Mutex<TaskProducer>,
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
        cluster.ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 1,
            config: vec![("cleanup.policy".into(), "compact".into())],
        }])?;
        Ok(ClusterOffsets {
            producer: std::sync::Mutex::new(cluster.producer("sluice-offsets")?),
            topic,
            settings: cluster.settings().clone(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every committed position of `connector` (stream, position), read to the topic's end.
    pub fn positions(&self, connector: &str) -> Result<Vec<(String, Json)>, ClusterError> {
        let err = |what: &str, e: &rdkafka::error::KafkaError| ClusterError {
            servers: self.settings.bootstrap_servers.clone(),
            what: format!("{what} `{}`", self.topic),
            message: e.to_string(),
            retriable: true,
        };
        let mut c = self.settings.client_config();
        c.set("enable.auto.commit", "false").set(
            "group.id",
            format!("{}-offsets-reader", self.settings.group),
        );
        let consumer: BaseConsumer = c.create().map_err(|e| err("reading", &e))?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, CALL_TIMEOUT)
            .map_err(|e| err("reading the end of", &e))?;
        let mut table: std::collections::BTreeMap<String, Json> = Default::default();
        if high > low {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low))
                .map_err(|e| err("reading", &e))?;
            consumer.assign(&tpl).map_err(|e| err("reading", &e))?;
            let deadline = Instant::now() + CALL_TIMEOUT;
            let mut next = low;
            while next < high {
                if Instant::now() > deadline {
                    return Err(ClusterError {
                        servers: self.settings.bootstrap_servers.clone(),
                        what: format!("reading `{}`", self.topic),
                        message: format!("stopped at offset {next} of {high}"),
                        retriable: true,
                    });
                }
                let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                    // Transactions' commit markers and aborted records take offsets that
                    // never come as records: where the reader stands says how far it got.
                    next = next.max(position(&consumer).unwrap_or(next));
                    continue;
                };
                let m = m.map_err(|e| err("reading", &e))?;
                next = m.offset() + 1;
                let Some(key) = m.key().and_then(|k| serde_json::from_slice::<Json>(k).ok()) else {
                    continue;
                };
                let (Some(c), Some(s)) = (key[0].as_str(), key[1]["stream"].as_str()) else {
                    continue;
                };
                if c != connector {
                    continue;
                }
                match m
                    .payload()
                    .and_then(|v| serde_json::from_slice::<Json>(v).ok())
                {
                    Some(v) => table.insert(s.to_string(), v["offset"].clone()),
                    None => table.remove(s),
                };
            }
        }
        Ok(table.into_iter().collect())
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

/// The next offset `consumer` reads of its one partition.
fn position(consumer: &BaseConsumer) -> Option<i64> {
    match consumer.position().ok()?.elements().first()?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
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
