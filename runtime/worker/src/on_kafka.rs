//! The worker on an Apache Kafka cluster (`runtime.kafka`): what the task loops use there
//! instead of the embedded log. Topics are the cluster's; source positions are in
//! `<group>-offsets` (Kafka Connect's layout); sink positions are the offsets of consumer
//! group `connect-<sink>`; connectors created over REST and the states asked of connectors
//! are in `<group>-configs` (Connect's layout), which every worker follows; dead letters go
//! to the cluster's dead-letter topic; and which worker runs which source task is decided
//! by the cluster's group coordinator ([`sluice_kafka::Leases`]). Converters, transforms and the error policy are the same code
//! on both backends.

use std::sync::{Arc, Mutex, OnceLock};

use sluice_kafka::{
    Cluster, ClusterError, ClusterOffsets, ConfigsTopic, KafkaSettings, Lease, Leases, Outgoing,
    StatusTopic, TaskProducer, TopicSpec,
};
use sluice_log::TopicConfig;

/// Topic settings that mean something only to Sluice's embedded log.
const EMBEDDED_ONLY: &[&str] = &["write.caching"];

/// A deployment's cluster and the state it keeps there.
pub struct KafkaRuntime {
    pub cluster: Cluster,
    pub offsets: ClusterOffsets,
    pub configs: Arc<ConfigsTopic>,
    pub status: StatusTopic,
    dead_letters: Mutex<Option<TaskProducer>>,
    leases: OnceLock<Leases>,
}

impl KafkaRuntime {
    /// Connects to the cluster and opens the positions topic.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaRuntime, ClusterError> {
        let cluster = Cluster::connect(settings)?;
        let offsets = ClusterOffsets::open(&cluster)?;
        let configs = Arc::new(ConfigsTopic::open(&cluster)?);
        let status = StatusTopic::open(&cluster)?;
        Ok(KafkaRuntime {
            status,
            cluster,
            offsets,
            configs,
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

    /// Makes a source connector's `tasks` tasks known to the deployment's group (its tasks
    /// topic), before or after this worker joined it.
    pub(crate) fn offer(&self, connector: &str, tasks: u32) -> Result<(), ClusterError> {
        sluice_kafka::leases::offer(&self.cluster, connector, tasks)
    }

    /// Joins the deployment's group: from here on, source tasks run where it says.
    pub(crate) fn join(&self) -> Result<(), ClusterError> {
        let client_id = format!("sluice-{}-{}", self.settings().group, std::process::id());
        let leases = Leases::join(&self.cluster, &client_id)?;
        let _ = self.leases.set(leases);
        Ok(())
    }

    /// The worker's membership, once it joined its group.
    pub(crate) fn leases(&self) -> Option<&Leases> {
        self.leases.get()
    }

    /// The lease of a source task (`None` before the worker joined its group).
    pub(crate) fn lease(&self, connector: &str, task: u32) -> Option<(&Leases, Lease)> {
        let leases = self.leases.get()?;
        Some((leases, Lease::of(self.settings(), connector, task)))
    }
}
