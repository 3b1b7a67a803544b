//! Broker settings: where it listens, what it tells clients, and its limits.

use std::net::SocketAddr;
use std::time::Duration;

/// How the Kafka listener runs. `Default` is what `sluice broker` uses without flags.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to bind (default `127.0.0.1:9092`).
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to (Metadata, FindCoordinator). Defaults to
    /// the bound address, never `localhost` (librdkafka may resolve it to `::1`).
    pub advertised: Option<(String, u16)>,
    /// This broker's node id.
    pub node_id: i32,
    /// Create a topic when a client's Metadata request asks for one that does not exist and
    /// allows auto-creation (producers do by default).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: u32,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`, 100 MiB).
    pub max_request_bytes: usize,
    /// Connections beyond this are accepted and closed at once.
    pub max_connections: usize,
    /// Requests a connection may have in flight (pipelined) before reading waits.
    pub max_in_flight_per_connection: usize,
    /// Shortest and longest session timeouts a group member may ask for.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// How long shutdown waits for in-flight requests before aborting them.
    pub shutdown_grace: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            node_id: 1,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            max_in_flight_per_connection: 64,
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(1800),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
