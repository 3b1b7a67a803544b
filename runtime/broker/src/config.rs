//! Broker settings: where it listens, what it tells clients, and its limits.

use std::net::SocketAddr;
use std::time::Duration;

/// Frames up to this size are ordinary requests (a producer's `max.request.size` is 1 MiB by
/// default); they take memory from the part of the budget kept for them.
pub const SMALL_REQUEST_BYTES: usize = 1024 * 1024 + 64 * 1024;

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
    /// Memory for request frames being received, across every connection (Kafka's
    /// `queued.max.request.bytes`). A frame's declared size is reserved before its body is
    /// read, so a connection waits (unread) for room instead of being served half; a
    /// quarter is kept for frames up to [`SMALL_REQUEST_BYTES`], so that ordinary clients
    /// are served while large requests wait.
    pub queued_max_request_bytes: usize,
    /// The operator's opt-in to an unauthenticated listener on a non-loopback address (see
    /// `sluice_listeners`).
    pub allow_unauthenticated: bool,
    /// Connections beyond this are accepted and closed at once.
    pub max_connections: usize,
    /// Requests a connection may have in flight (pipelined) before reading waits.
    pub max_in_flight_per_connection: usize,
    /// Shortest and longest session timeouts a group member may ask for.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// How long the first rebalance of an empty group waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`, 3 s): consumers started together then share
    /// the first assignment instead of one taking every partition and handing half back.
    pub group_initial_rebalance_delay: Duration,
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
            queued_max_request_bytes: 512 * 1024 * 1024,
            allow_unauthenticated: false,
            max_connections: 10_000,
            max_in_flight_per_connection: 64,
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(1800),
            group_initial_rebalance_delay: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl BrokerConfig {
    /// Memory budget for frames up to [`SMALL_REQUEST_BYTES`], and for larger ones.
    pub fn request_pools(&self) -> (usize, usize) {
        let small = (self.queued_max_request_bytes / 4).max(SMALL_REQUEST_BYTES);
        (small, self.queued_max_request_bytes.saturating_sub(small))
    }

    /// Settings that cannot work together, said before anything opens.
    pub fn validate(&self) -> Result<(), String> {
        let (_, large) = self.request_pools();
        if self.max_request_bytes > SMALL_REQUEST_BYTES && self.max_request_bytes > large {
            return Err(format!(
                "max request size {} bytes does not fit the request memory budget: queued max request bytes {} keeps a quarter (at least {SMALL_REQUEST_BYTES}) for small requests, leaving {large} for large ones; raise the budget to at least {} or lower the max request size",
                self.max_request_bytes,
                self.queued_max_request_bytes,
                self.max_request_bytes + self.max_request_bytes / 3 + 1
            ));
        }
        Ok(())
    }
}
