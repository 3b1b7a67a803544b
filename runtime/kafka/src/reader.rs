//! Reading one of the deployment's one-partition state topics (`_schemas`,
//! `<group>-offsets`, `<group>-configs`) from its beginning, committed records only, and
//! going on from where the reader got to. Shared by the stores that keep a table of such a
//! topic.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::cluster::{Cluster, ClusterError, TopicSpec, CALL_TIMEOUT};
use crate::settings::KafkaSettings;

/// Creates the compacted one-partition state topic `topic` if it is missing, and a reader of
/// it from its beginning (in consumer group `<group>-<purpose>-reader`, which never joins).
pub fn open_state_topic(
    cluster: &Cluster,
    topic: &str,
    purpose: &str,
) -> Result<TopicReader, ClusterError> {
    cluster.ensure_topics(&[TopicSpec {
        name: topic.to_string(),
        partitions: 1,
        config: vec![("cleanup.policy".into(), "compact".into())],
    }])?;
    let settings = cluster.settings();
    TopicReader::open(
        settings,
        topic,
        &format!("{}-{purpose}-reader", settings.group),
    )
    .map_err(|e| ClusterError {
        servers: settings.bootstrap_servers.clone(),
        what: format!("reading `{topic}`"),
        message: e.to_string(),
        retriable: true,
    })
}

/// A record of a state topic: its key and value (`None`: a tombstone). Records without a
/// key are skipped: every state topic is keyed.
pub type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// What went wrong reading, in words (each store wraps it in its own error).
#[derive(Debug)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Partition 0 of `topic`, read from its beginning with `read_committed`.
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
}

impl TopicReader {
    pub fn open(settings: &KafkaSettings, topic: &str, group_id: &str) -> Result<Self, ReadError> {
        let mut c = settings.client_config();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = c.create().map_err(|e| ReadError(e.to_string()))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| ReadError(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| ReadError(e.to_string()))?;
        Ok(TopicReader {
            consumer,
            topic: topic.to_string(),
        })
    }

    /// The records this reader has next: all there are (`to_end`: up to the topic's end as
    /// it is now, waiting for them), or only what arrived already.
    pub fn read(&self, to_end: bool) -> Result<Vec<KeyedRecord>, ReadError> {
        let mut out = Vec::new();
        let end = if to_end {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.topic, 0, CALL_TIMEOUT)
                .map_err(|e| ReadError(format!("reading the end: {e}")))?;
            Some(high)
        } else {
            None
        };
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let wait = if end.is_some() {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(wait) {
                Some(Ok(m)) => {
                    if let Some(k) = m.key() {
                        out.push((k.to_vec(), m.payload().map(<[u8]>::to_vec)));
                    }
                    continue;
                }
                Some(Err(e)) => return Err(ReadError(e.to_string())),
                None => {}
            }
            let Some(end) = end else {
                return Ok(out);
            };
            // Transactions' commit markers and aborted records take offsets that never come
            // as records: where the reader stands says how far it got.
            let position = self.position()?;
            if position >= end || end == 0 {
                return Ok(out);
            }
            if Instant::now() > deadline {
                return Err(ReadError(format!("stopped at offset {position} of {end}")));
            }
        }
    }

    fn position(&self) -> Result<i64, ReadError> {
        Ok(self
            .consumer
            .position()
            .map_err(|e| ReadError(e.to_string()))?
            .elements()
            .first()
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0))
    }
}
