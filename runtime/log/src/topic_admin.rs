//! Changing a live topic: more partitions (Kafka's CreatePartitions) and new settings
//! (AlterConfigs, IncrementalAlterConfigs).
//!
//! Both rewrite `topic.json` atomically as their commit point. New partitions' directories are
//! made and synced first: a crash before the rewrite leaves directories the topic does not
//! count, which the next attempt clears and makes again. Readers holding the old
//! `Arc<Topic>` keep a consistent (older) view; the map then holds the new one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::TopicConfig;
use crate::error::{LogError, Result};
use crate::log::{Log, Topic, TopicFile, MAX_PARTITIONS, TOPICS_DIR};
use crate::partition::{lock, OpenOptions, Partition};
use crate::segment;

impl Log {
    /// Grows `name` to `count` partitions. Records already written stay where they are (keys
    /// hashed to a partition before may map elsewhere from now on, as on Kafka).
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<Arc<Topic>> {
        self.check_writable("adding partitions")?;
        if count == 0 || count > MAX_PARTITIONS {
            return Err(LogError::InvalidPartitionCount(count as i64));
        }
        let _admin = lock(&self.inner.admin);
        let topic = self.topic(name)?;
        let current = topic.partitions.len() as u32;
        if count <= current {
            return Err(LogError::PartitionsCannotShrink {
                topic: name.into(),
                current,
                requested: count,
            });
        }
        let storage = &self.inner.storage;
        let dir = self.inner.dir.join(TOPICS_DIR).join(name);
        let io = |what: String, e| LogError::io(format!("{what} of topic `{name}`"), e);
        for p in current..count {
            let pdir = dir.join(p.to_string());
            if storage.exists(&pdir) {
                // Left by an attempt that crashed before its commit point: never counted.
                storage
                    .remove_dir_all(&pdir)
                    .map_err(|e| io(format!("clearing partition {p}"), e))?;
            }
            storage
                .create_dir_all(&pdir)
                .map_err(|e| io(format!("creating partition {p}"), e))?;
            storage
                .open(&pdir.join(segment::file_name(0, "log")), true)
                .map_err(|e| io(format!("creating partition {p}"), e))?;
            storage
                .sync_dir(&pdir)
                .map_err(|e| io(format!("syncing partition {p}"), e))?;
        }
        storage
            .sync_dir(&dir)
            .map_err(|e| io("syncing the directory".into(), e))?;
        self.write_topic_file(&topic, count, &topic.config)?;
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            let opts = OpenOptions {
                read_only: false,
                clean_shutdown: true,
            };
            partitions.push(Arc::new(Partition::open(
                storage.clone(),
                dir.join(p.to_string()),
                name,
                p,
                topic.config.clone(),
                opts,
            )?));
        }
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            created_ms: topic.created_ms,
            config: topic.config.clone(),
            partitions,
        });
        self.publish(grown.clone());
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(grown)
    }

    /// Replaces `name`'s setting overrides with `overrides` (every key not given returns to
    /// its default). Appends and maintenance use the new settings from the next batch on.
    pub fn alter_topic_config(
        &self,
        name: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Arc<Topic>> {
        self.check_writable("altering a topic's settings")?;
        let config = Arc::new(TopicConfig::from_pairs(
            overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?);
        let _admin = lock(&self.inner.admin);
        let topic = self.topic(name)?;
        self.write_topic_file(&topic, topic.partitions.len() as u32, &config)?;
        for p in &topic.partitions {
            p.set_config(config.clone());
        }
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            created_ms: topic.created_ms,
            config,
            partitions: topic.partitions.clone(),
        });
        self.publish(altered.clone());
        tracing::info!(topic = name, ?overrides, "altered topic settings");
        Ok(altered)
    }

    /// The commit point of both changes: `topic.json` rewritten atomically.
    fn write_topic_file(&self, topic: &Topic, partitions: u32, config: &TopicConfig) -> Result<()> {
        let file = TopicFile {
            name: topic.name.clone(),
            topic_id: topic.id_hex(),
            partitions,
            created_ms: topic.created_ms,
            config: config.overrides.clone(),
        };
        let path = self
            .inner
            .dir
            .join(TOPICS_DIR)
            .join(&topic.name)
            .join("topic.json");
        let io = |e| LogError::io(format!("writing {}", path.display()), e);
        let json = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        self.inner.storage.write_atomic(&path, &json).map_err(io)
    }

    fn publish(&self, topic: Arc<Topic>) {
        self.inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.name.clone(), topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimStorage, TornWrites};
    use crate::{BatchBuilder, LogOptions, Record};

    fn options() -> LogOptions {
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        }
    }

    fn one_record(value: &[u8]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(&Record {
            key: Some(b"k"),
            value: Some(value),
            timestamp: 1,
            headers: vec![],
        });
        b.build()
    }

    #[test]
    fn partitions_grow_keep_their_data_and_survive_a_crash() {
        let sim = SimStorage::new();
        let log = Log::open_on(Arc::new(sim.clone()), "/data", options()).unwrap();
        log.create_topic("t", 2, TopicConfig::default()).unwrap();
        log.partition("t", 1)
            .unwrap()
            .append(&mut one_record(b"before"), 1)
            .unwrap();
        let Err(err) = log.add_partitions("t", 2) else {
            panic!("a topic cannot keep or lose partitions through add_partitions")
        };
        assert!(matches!(
            err,
            LogError::PartitionsCannotShrink {
                current: 2,
                requested: 2,
                ..
            }
        ));
        let grown = log.add_partitions("t", 5).unwrap();
        assert_eq!(grown.partitions.len(), 5);
        log.partition("t", 4)
            .unwrap()
            .append(&mut one_record(b"after"), 1)
            .unwrap();
        log.flush().unwrap();
        let image = sim.crash_image(TornWrites::LoseUnsynced);
        let reopened = Log::open_on(Arc::new(image), "/data", options()).unwrap();
        let t = reopened.topic("t").unwrap();
        assert_eq!(t.partitions.len(), 5, "the new count is durable");
        assert_eq!(t.partitions[1].end_offset(), 1);
        assert_eq!(t.partitions[4].end_offset(), 1);
    }

    #[test]
    fn altered_settings_apply_to_the_next_append_and_persist() {
        let sim = SimStorage::new();
        let log = Log::open_on(Arc::new(sim.clone()), "/data", options()).unwrap();
        log.create_topic("t", 1, TopicConfig::default()).unwrap();
        let small = BTreeMap::from([("max.message.bytes".to_string(), "64".to_string())]);
        log.alter_topic_config("t", &small).unwrap();
        let big = one_record(&[b'x'; 200]);
        let Err(err) = log.partition("t", 0).unwrap().append(&mut big.clone(), 1) else {
            panic!("a 200-byte batch passed a 64-byte limit")
        };
        assert!(
            matches!(err, LogError::BatchTooLarge { max: 64, .. }),
            "{err}"
        );
        let bad = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert!(log.alter_topic_config("t", &bad).is_err());
        assert_eq!(
            log.topic("t").unwrap().config.overrides,
            small,
            "a refused change changes nothing"
        );
        let image = sim.crash_image(TornWrites::LoseUnsynced);
        let reopened = Log::open_on(Arc::new(image), "/data", options()).unwrap();
        assert_eq!(reopened.topic("t").unwrap().config.max_message_bytes, 64);
        log.alter_topic_config("t", &BTreeMap::new()).unwrap();
        log.partition("t", 0)
            .unwrap()
            .append(&mut big.clone(), 1)
            .expect("back to the default limit");
    }
}
