//! The registry API's Prometheus metrics: requests by route (the path template, so that
//! subjects do not each make a series), method and status, and their latency. Counted by a
//! layer of [`crate::api::router`]; whoever serves `/metrics` adds them to its registry with
//! [`RequestMetrics::register`].

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone)]
struct Latency;

impl MetricConstructor<Histogram> for Latency {
    fn new_metric(&self) -> Histogram {
        // 50 µs (a cached lookup) to ~3 s (a register with its fsync on a slow disk).
        Histogram::new(exponential_buckets(0.00005, 2.0, 16))
    }
}

#[derive(Clone)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RouteLabels, Histogram, Latency>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(Latency),
        }
    }
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestMetrics")
    }
}

impl RequestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sluice_registry_requests",
            "Schema registry API requests by route (path template), method and status",
            self.requests.clone(),
        );
        registry.register(
            "sluice_registry_request_duration_seconds",
            "Time to answer a schema registry API request, by route and method",
            self.seconds.clone(),
        );
    }

    pub(crate) fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.seconds
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Requests counted for `route`, `method` and `status` so far.
    pub fn requests(&self, route: &str, method: &str, status: u16) -> u64 {
        self.requests
            .get(&RequestLabels {
                route: route.into(),
                method: method.into(),
                status: status.to_string(),
            })
            .map_or(0, |c| c.get())
    }
}
