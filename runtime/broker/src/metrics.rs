//! The broker's Prometheus metrics: requests by API and outcome with their latency, bytes
//! read and written on the Kafka listener, open connections. The families live here from
//! the start (counting costs an atomic add); whoever serves `/metrics` registers them in
//! its registry with [`BrokerMetrics::register`].
//!
//! A request's outcome is `ok` (answered, or an `acks=0` produce taken) or `closed` (the
//! broker closed the connection over it: malformed, an API or version it does not serve).
//! Per-partition error codes stay in the answers, as Kafka's clients read them.

use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Clone)]
struct Latency;

impl MetricConstructor<Histogram> for Latency {
    fn new_metric(&self) -> Histogram {
        // 100 µs to ~13 s: a metadata answer to a Fetch long-poll or a JoinGroup wait.
        Histogram::new(exponential_buckets(0.0001, 2.0, 18))
    }
}

/// The handles one API counts into, made on its first request (no lookup afterwards).
struct ApiHandles {
    ok: Counter,
    closed: Counter,
    seconds: Histogram,
}

/// API keys are small integers; one slot each, filled on first use.
const API_SLOTS: usize = 128;

pub struct BrokerMetrics {
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<ApiLabels, Histogram, Latency>,
    apis: Box<[OnceLock<ApiHandles>]>,
    /// Requests that could not be read as any API (too short, an unknown key).
    unreadable: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    connections: Gauge,
}

impl std::fmt::Debug for BrokerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerMetrics")
            .field("bytes_in", &self.bytes_in.get())
            .field("bytes_out", &self.bytes_out.get())
            .finish()
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let unreadable = requests
            .get_or_create(&RequestLabels {
                api: "unknown".into(),
                outcome: "closed".into(),
            })
            .clone();
        BrokerMetrics {
            requests,
            request_seconds: Family::new_with_constructor(Latency),
            apis: (0..API_SLOTS).map(|_| OnceLock::new()).collect(),
            unreadable,
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            connections: Gauge::default(),
        }
    }
}

impl BrokerMetrics {
    /// Adds the broker's families to `registry` (they keep counting where they are: the
    /// registry holds handles to the same counters).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sluice_broker_requests",
            "Kafka requests by API and outcome (ok: answered; closed: the connection was closed over it)",
            self.requests.clone(),
        );
        registry.register(
            "sluice_broker_request_duration_seconds",
            "Time from a request read to its answer ready, by API (a Fetch includes its wait for data)",
            self.request_seconds.clone(),
        );
        registry.register(
            "sluice_broker_bytes_in",
            "Bytes of request frames read on the Kafka listener",
            self.bytes_in.clone(),
        );
        registry.register(
            "sluice_broker_bytes_out",
            "Bytes of response frames written on the Kafka listener",
            self.bytes_out.clone(),
        );
        registry.register(
            "sluice_broker_connections",
            "Kafka client connections open now",
            self.connections.clone(),
        );
    }

    fn api(&self, key: ApiKey) -> Option<&ApiHandles> {
        let slot = self.apis.get(usize::try_from(key as i16).ok()?)?;
        Some(slot.get_or_init(|| {
            let api = format!("{key:?}");
            let counter = |outcome: &str| {
                self.requests
                    .get_or_create(&RequestLabels {
                        api: api.clone(),
                        outcome: outcome.into(),
                    })
                    .clone()
            };
            ApiHandles {
                ok: counter("ok"),
                closed: counter("closed"),
                seconds: self
                    .request_seconds
                    .get_or_create(&ApiLabels { api: api.clone() })
                    .clone(),
            }
        }))
    }

    /// A request of `key` answered (or taken without an answer) after `took`.
    pub(crate) fn answered(&self, key: ApiKey, took: Duration) {
        if let Some(h) = self.api(key) {
            h.ok.inc();
            h.seconds.observe(took.as_secs_f64());
        }
    }

    /// A request the connection was closed over; `key` when it could be read.
    pub(crate) fn closed(&self, key: Option<ApiKey>) {
        match key.and_then(|k| self.api(k)) {
            Some(h) => {
                h.closed.inc();
            }
            None => {
                self.unreadable.inc();
            }
        }
    }

    pub(crate) fn read(&self, bytes: usize) {
        self.bytes_in.inc_by(bytes as u64);
    }

    pub(crate) fn written(&self, bytes: usize) {
        self.bytes_out.inc_by(bytes as u64);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Requests of `api` (its Debug name, `Produce`) with `outcome` counted so far.
    pub fn requests(&self, api: &str, outcome: &str) -> u64 {
        self.requests
            .get(&RequestLabels {
                api: api.into(),
                outcome: outcome.into(),
            })
            .map_or(0, |c| c.get())
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.get()
    }

    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_api_and_outcome_and_exported_once_registered() {
        let m = BrokerMetrics::default();
        m.answered(ApiKey::Produce, Duration::from_millis(2));
        m.answered(ApiKey::Produce, Duration::from_millis(3));
        m.closed(Some(ApiKey::Fetch));
        m.closed(None);
        m.read(100);
        m.written(40);
        assert_eq!(m.requests("Produce", "ok"), 2);
        assert_eq!(m.requests("Fetch", "closed"), 1);
        assert_eq!(m.requests("unknown", "closed"), 1);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "sluice_broker_requests_total{api=\"Produce\",outcome=\"ok\"} 2",
            "sluice_broker_requests_total{api=\"Fetch\",outcome=\"closed\"} 1",
            "sluice_broker_request_duration_seconds_count{api=\"Produce\"} 2",
            "sluice_broker_bytes_in_total 100",
            "sluice_broker_bytes_out_total 40",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
