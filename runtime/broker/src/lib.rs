//! # sluice-broker: the Kafka protocol on top of the log
//!
//! **Owns:** the Kafka wire protocol listener: connections, framing, ordering of answers,
//! the API handlers, the consumer-group coordinator and the idempotent-producer table.
//! Every message codec comes from the `kafka-protocol` crate; this crate writes none.
//!
//! **Must not touch:** bytes on disk (it calls `sluice-log`), schemas, connectors.
//!
//! ## Layout
//! - `server`: listener, connections (reader/writer tasks), dispatch by API key.
//! - `apis`: the exact API versions served and advertised.
//! - `metadata`, `admin`: Metadata (auto-create), FindCoordinator, Create/DeleteTopics,
//!   CreatePartitions, DeleteRecords, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.
//! - `produce`, `producers`: Produce (group commit for `acks=all`), InitProducerId, sequences.
//! - `fetch`: Fetch (long-poll), ListOffsets.
//! - `coordinator`, `group_api`: consumer groups and committed offsets; the first rebalance
//!   of an empty group waits `group.initial.rebalance.delay.ms`, as Kafka's does.
//! - `group_admin`: DeleteGroups, OffsetDelete.
//! - `metrics`: requests by API and outcome, latency, bytes, connections (Prometheus).
//!
//! ## Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sluice_broker::{Broker, BrokerConfig, BrokerState};
//! use sluice_log::{Log, LogOptions};
//!
//! let log = Log::open("./data", LogOptions::default())?;
//! let config = BrokerConfig::default(); // 127.0.0.1:9092
//! let broker = Broker::open(log, config).await?;
//! broker.serve(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

mod admin;
mod apis;
pub mod codes;
mod config;
pub mod coordinator;
mod fetch;
mod group_admin;
mod group_api;
mod metadata;
pub mod metrics;
mod produce;
pub mod producers;
mod server;
mod state;

pub use apis::SUPPORTED as SUPPORTED_APIS;
pub use config::{BrokerConfig, SMALL_REQUEST_BYTES};
pub use server::{answer_frame, Broker};
pub use state::{load_cluster_id, BrokerState};

use std::net::SocketAddr;

/// Errors that stop the broker (request-level problems are answered on the wire instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source} (is another broker running there?)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Refused(#[from] sluice_listeners::ListenerError),
    #[error("invalid broker settings: {0}")]
    Config(String),
    #[error("cannot read the broker's state in the data directory: {0}")]
    State(#[source] std::io::Error),
}
