//! Sluice on an Apache Kafka cluster (`runtime.kafka` in the pipeline file), through
//! `rdkafka` (bundled librdkafka, TLS and SASL PLAIN/SCRAM through the system OpenSSL).
//!
//! What it owns: the settings and their checks ([`settings`]), the clients the worker's
//! task loops use on the cluster instead of the embedded log ([`cluster`]: topics, a
//! producer per source task, a consumer per sink task in group `connect-<sink>`), source
//! positions in a compacted topic in Kafka Connect's layout ([`offsets`]), the schema
//! registry's store in `_schemas` in Confluent's format with one writer elected by Kafka's
//! transactional fencing ([`schemas`]), connectors created over the REST API and the
//! states asked of connectors in Connect's configs layout ([`configs`]), and which worker
//! runs which source task through Kafka's group protocol ([`leases`]), and where each task
//! runs in Connect's status layout ([`status`]). [`reader`] follows
//! the one-partition state topics.
//! What it must not touch: converters, transforms and the error policy (the worker's, the
//! same on both backends), and the embedded log.
//!
//! ```no_run
//! use sluice_kafka::{Cluster, KafkaSettings};
//! let settings = KafkaSettings {
//!     bootstrap_servers: "127.0.0.1:9092".into(),
//!     security: None,
//!     group: "sluice-shop".into(),
//! };
//! assert!(settings.problems().is_empty());
//! let cluster = Cluster::connect(settings)?;
//! println!("{:?}", cluster.partition_count("orders")?);
//! # Ok::<(), sluice_kafka::ClusterError>(())
//! ```

pub mod cluster;
pub mod configs;
pub mod leases;
pub mod offsets;
pub mod reader;
pub mod schemas;
pub mod settings;
pub mod status;

pub use cluster::{
    Cluster, ClusterError, Incoming, Outgoing, SinkConsumer, TaskProducer, TopicSpec,
};
pub use configs::{ConfigChange, ConfigsTopic};
pub use leases::{Lease, Leases};
pub use offsets::ClusterOffsets;
pub use schemas::KafkaSchemaStore;
pub use settings::{KafkaSettings, Protocol, SaslMechanism, Security};
pub use status::{StatusTopic, TaskState};
