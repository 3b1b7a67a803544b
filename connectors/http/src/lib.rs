//! # sluice-connector-http: HTTP sink and sources
//!
//! **Owns:** how Sluice talks HTTP to the outside world: the `http` sink ([`sink`]), the
//! `http_server` webhook source ([`server`]) and the `http_poll` source ([`poll`]), all
//! registered by [`register`]. The sink gathers each partition's records into requests
//! delivered in order, classifies every answer, finds refused records by splitting and
//! hands them to the dead-letter topic with the status and the start of the answer, and
//! commits offsets only below what is delivered.
//!
//! Layout, along the data path (record → request → answer):
//! - [`url_template`]: `url` with `${topic}`, `${partition}` and `${key}` filled and
//!   percent-encoded per record, checked with no I/O;
//! - [`batch`]: one partition's records gathered into requests (`max_records`,
//!   `max_bytes`, `linger`, a URL change), a refused batch split in halves;
//! - [`body`]: request bodies (`json_array`, `ndjson`, `single`), gzip or zstd;
//! - [`transport`]: requests over reqwest (method, headers, bearer, basic or OAuth2 client
//!   credentials auth, compression, `Idempotency-Key`, TLS through rustls);
//! - [`classify`]: which statuses are delivered, retried or refused, `Retry-After`, and
//!   the exponential backoff with full jitter the sink and sources share;
//! - [`deliver`]: one batch's retries and splits, and what is left undelivered;
//! - [`sink`]: the connector type (its settings and checks) and its task (a lane per
//!   partition, `max_in_flight`, the offsets it may commit);
//! - [`poll`]: the `http_poll` source: pages read into records ([`poll::page`]), cursors
//!   from the answer, the last record or the `Link` header ([`poll::link`]), the position
//!   in each record;
//! - [`settings`]: `headers`, `auth`, `tls` and `retry` as the connectors spell them;
//! - [`server`]: the `http_server` webhook source: calls checked ([`server::guard`]),
//!   bodies read into records ([`server::decode`]), a 200 only once they are in the log.
//!
//! Not built yet: TLS on the webhook's own listener (the sink and the poller speak
//! https:// through rustls, with `tls.ca_file` and client certificates).
//!
//! **Must not touch:** topics, offsets storage, converters: the runtime does those through
//! the SDK traits.
//!
//! ```
//! use std::time::Duration;
//! use sluice_connector_http::classify::{Outcome, StatusPolicy};
//!
//! let policy = StatusPolicy::default();
//! assert_eq!(policy.classify(200), Outcome::Delivered);
//! assert_eq!(policy.classify(503), Outcome::Retry);
//! assert_eq!(policy.classify(400), Outcome::Refused);
//! ```

pub mod batch;
pub mod body;
pub mod classify;
pub mod deliver;
pub mod poll;
pub mod server;
pub mod settings;
pub mod sink;
pub mod transport;
pub mod url_template;

use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};

/// Adds `http` as a sink type, `http_server` and `http_poll` as source types.
pub fn register(registry: &mut ConnectorRegistry) -> Result<(), RegistryError> {
    registry.register(ConnectorType {
        name: "http_server".into(),
        description: "a webhook endpoint: callers POST records and get their 200 only once the records are in the log; 429, 503, 413, 400 and 401 at once otherwise".into(),
        config: server::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| Ok(Box::new(server::HttpServer::new(c))))),
    })?;
    registry.register(ConnectorType {
        name: "http_poll".into(),
        description: "polls an HTTP API for JSON records, following pages by cursor or Link header, and resumes at the right page after a restart".into(),
        config: poll::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| Ok(Box::new(poll::HttpPoll::new(c))))),
    })?;
    registry.register(ConnectorType {
        name: "http".into(),
        description: "sends records to an HTTP endpoint in batches, in order per partition, retrying what may succeed and dead-lettering what the endpoint refuses".into(),
        config: sink::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|c| Ok(Box::new(sink::HttpSink::new(c))))),
    })
}
