//! The worker on an Apache Kafka cluster (`runtime.kafka`): what the task loops use there
//! instead of the embedded log. Topics are the cluster's; source positions are in
//! `<group>-offsets` (Kafka Connect's layout); sink positions are the offsets of consumer
//! group `connect-<sink>`; dead letters go to the cluster's dead-letter topic; and which
//! worker runs which source task is decided by the cluster's group coordinator
//! ([`sluice_kafka::Leases`]). Converters, transforms and the error policy are the same code
//! on both backends.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use sluice_kafka::{
    Cluster, ClusterError, ClusterOffsets, KafkaSettings, Leases, Outgoing, TaskProducer, TopicSpec,
};
use sluice_log::TopicConfig;

/// Topic settings that mean something only to Sluice's embedded log.
const EMBEDDED_ONLY: &[&str] = &["write.caching"];

/// A deployment's cluster and the state it keeps there.
pub struct KafkaRuntime {
    pub cluster: Cluster,
    pub offsets: ClusterOffsets,
    dead_letters: Mutex<Option<TaskProducer>>,
    leases: OnceLock<(Leases, TaskIndex)>,
}

/// Each source task's (connector, task) partition of the tasks topic.
type TaskIndex = HashMap<(String, u32), u32>;

impl KafkaRuntime {
    /// Connects to the cluster and opens the positions topic.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaRuntime, ClusterError> {
        let cluster = Cluster::connect(settings)?;
        let offsets = ClusterOffsets::open(&cluster)?;
        Ok(KafkaRuntime {
            cluster,
            offsets,
            dead_letters: Mutex::new(None),
            leases: OnceLock::new(),
        })
    }

    pub fn settings(&self) -> &KafkaSettings {
        self.cluster.settings()
    }

    /// Creates `name` on the cluster if it is missing, with the settings the pipeline file
    /// gives it (those Kafka knows).
    pub(crate) fn ensure_topic(
        &self,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
    ) -> Result<(), ClusterError> {
        let config = config
            .entries()
            .into_iter()
            .filter(|(k, _)| config.is_override(k) && !EMBEDDED_ONLY.contains(&k.as_str()))
            .collect();
        self.cluster.ensure_topics(&[TopicSpec {
            name: name.to_string(),
            partitions,
            config,
        }])
    }

    /// Writes one dead-letter record and waits for its acknowledgement.
    pub(crate) fn dead_letter(
        &self,
        topic: &str,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        now: i64,
    ) -> Result<(), ClusterError> {
        let mut producer = self.dead_letters.lock().unwrap_or_else(|p| p.into_inner());
        if producer.is_none() {
            *producer = Some(self.cluster.producer("sluice-dead-letters")?);
        }
        let p = producer.as_ref().expect("set above");
        p.send(&Outgoing {
            topic,
            partition: Some(0),
            key: None,
            value,
            timestamp: now,
            headers,
        })?;
        p.flush()
    }

    /// Joins the deployment's group with these source tasks (connector, task), each
    /// standing for one partition of the tasks topic, in this order on every worker.
    pub(crate) fn join(&self, mut tasks: Vec<(String, u32)>) -> Result<(), ClusterError> {
        tasks.sort();
        let index: TaskIndex = tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let client_id = format!("sluice-{}-{}", self.settings().group, std::process::id());
        let leases = Leases::join(&self.cluster, index.len() as u32, &client_id)?;
        let _ = self.leases.set((leases, index));
        Ok(())
    }

    /// The worker's membership, once it joined its group.
    pub(crate) fn leases(&self) -> Option<&Leases> {
        self.leases.get().map(|(l, _)| l)
    }

    /// The lease of a source task: its index, and the leases (`None` before the worker
    /// joined its group, or for a task that was not in the file when it did).
    pub(crate) fn lease(&self, connector: &str, task: u32) -> Option<(&Leases, u32)> {
        let (leases, index) = self.leases.get()?;
        index
            .get(&(connector.to_string(), task))
            .map(|i| (leases, *i))
    }
}
