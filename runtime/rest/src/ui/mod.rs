//! The dashboard at `/ui`: the pipeline as a live graph (sources → topics → sinks), the
//! connectors with their states, rates and buttons, the topics, and the last reload.
//!
//! - `GET /ui`: the page; its script and style are compiled into the binary (no npm step,
//!   no library: plain DOM and SVG).
//! - `GET /ui/snapshot`: one snapshot as JSON (the first paint, and scripts).
//! - `GET /ui/topics/{topic}/records`: the message browser's pages ([`browse`]).
//! - `GET /ui/schemas`: subjects, versions, compatibility, users ([`schemas`]).
//! - `GET /ui/events`: the same snapshot pushed over server-sent events every second
//!   (`?interval_ms=` from 200 to 10,000), with rates from the difference between two
//!   snapshots. Nothing is computed while no page is open.
//!
//! The page acts through the REST API's own endpoints (pause, resume, stop, restart), so the
//! dashboard can do nothing the API cannot, under the same authentication.

pub mod browse;
pub mod graph;
pub mod schemas;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_worker::metrics_text::{parse_metrics, Series};
use sluice_worker::run::Role;

use crate::{query_pairs, shapes, ApiError, RestApi};

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

pub(crate) async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub(crate) async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub(crate) async fn style() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// Counters read from one rendering of `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Per connector: records in, records out, errors, dead-lettered, restarts, sink lag.
    pub connectors: BTreeMap<String, [f64; 6]>,
    /// Per topic and partition: start offset, end offset, bytes.
    pub partitions: BTreeMap<(String, u32), [f64; 3]>,
    /// Per topic: consumer groups' lag, `(group, partition, records)`.
    pub group_lag: BTreeMap<String, Vec<(String, u32, f64)>>,
}

/// Topic settings shown even when they have their default value.
const ALWAYS_SHOWN: &[&str] = &["cleanup.policy", "retention.ms", "retention.bytes"];

const IN: usize = 0;
const OUT: usize = 1;

impl Counters {
    pub fn read(series: &[Series]) -> Counters {
        let mut c = Counters::default();
        let connector_slot = |name: &str| match name {
            "sluice_task_records_in_total" => Some(0),
            "sluice_task_records_out_total" => Some(1),
            "sluice_task_errors_total" => Some(2),
            "sluice_task_dead_letter_records_total" => Some(3),
            "sluice_task_restarts_total" => Some(4),
            "sluice_sink_lag_records" => Some(5),
            _ => None,
        };
        let partition_slot = |name: &str| match name {
            "sluice_log_start_offset" => Some(0),
            "sluice_log_end_offset" => Some(1),
            "sluice_log_size_bytes" => Some(2),
            _ => None,
        };
        for s in series {
            if s.name == "sluice_consumergroup_lag_records" {
                if let (Some(g), Some(t), Some(p)) = (
                    s.labels.get("group"),
                    s.labels.get("topic"),
                    s.labels.get("partition").and_then(|p| p.parse().ok()),
                ) {
                    c.group_lag
                        .entry(t.clone())
                        .or_default()
                        .push((g.clone(), p, s.value));
                }
                continue;
            }
            if let (Some(slot), Some(connector)) =
                (connector_slot(&s.name), s.labels.get("connector"))
            {
                c.connectors.entry(connector.clone()).or_default()[slot] += s.value;
            } else if let (Some(slot), Some(topic), Some(partition)) = (
                partition_slot(&s.name),
                s.labels.get("topic"),
                s.labels.get("partition").and_then(|p| p.parse().ok()),
            ) {
                // The log's series carry no connector label; a sink's lag series does and
                // was taken above.
                c.partitions.entry((topic.clone(), partition)).or_default()[slot] = s.value;
            }
        }
        c
    }

    fn topic_end(&self, topic: &str) -> f64 {
        self.partitions
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, v)| v[1])
            .sum()
    }
}

/// Records/s between two readings of a counter (0 when it went back: a restart).
pub fn rate(before: f64, after: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || after < before {
        0.0
    } else {
        (after - before) / secs
    }
}

/// The previous reading, for rates.
pub struct Previous {
    at: Instant,
    counters: Counters,
}

/// Everything the page shows, at one instant. Blocking (it renders the metrics, which read
/// the log): call it off the async threads.
pub fn snapshot(api: &RestApi, previous: Option<&Previous>) -> (Value, Previous) {
    let now = Instant::now();
    let counters = Counters::read(&parse_metrics(
        &api.worker.metrics_text().unwrap_or_default(),
    ));
    let elapsed = previous.map(|p| now.duration_since(p.at));
    let per_sec = |before: Option<f64>, after: f64| match (before, elapsed) {
        (Some(b), Some(e)) => json!(rate(b, after, e)),
        _ => Value::Null,
    };
    let mut connectors = Vec::new();
    let mut for_graph = Vec::new();
    for name in api.worker.connectors() {
        let (Ok(status), Ok(plan)) = (api.worker.status(&name), api.worker.plan(&name)) else {
            continue; // deleted between the two calls
        };
        let kind = match status.role {
            Role::Source => graph::NodeKind::Source,
            Role::Sink => graph::NodeKind::Sink,
        };
        let c = counters.connectors.get(&name).copied().unwrap_or_default();
        // A connector that had counted nothing yet has no series: zero, not unknown.
        let before = previous.map(|p| {
            p.counters
                .connectors
                .get(&name)
                .copied()
                .unwrap_or_default()
        });
        let state = shapes::status(api, &name)
            .ok()
            .and_then(|s| s["connector"]["state"].as_str().map(String::from))
            .unwrap_or_else(|| "UNKNOWN".into());
        let tasks: Vec<Value> = status
            .tasks
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "state": t.state.as_str(),
                    "trace": t.trace,
                    "restarts": t.restarts,
                })
            })
            .collect();
        connectors.push(json!({
            "name": name,
            "type": status.type_name,
            "role": status.role.as_str(),
            "state": state,
            "tasks": tasks,
            "topics": plan.topics,
            "dead_letter_topic": plan.errors.dead_letter_topic,
            "records_in": c[IN],
            "records_out": c[OUT],
            "errors": c[2],
            "dead_lettered": c[3],
            "restarts": c[4],
            "lag": c[5],
            "rate_in": per_sec(before.map(|b| b[IN]), c[IN]),
            "rate_out": per_sec(before.map(|b| b[OUT]), c[OUT]),
        }));
        for_graph.push(graph::Connector {
            name,
            kind,
            topics: plan.topics.clone(),
            dead_letter_topic: plan.errors.dead_letter_topic.clone(),
        });
    }
    let mut topics: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for ((topic, partition), v) in &counters.partitions {
        topics.entry(topic.clone()).or_default().push(json!({
            "partition": partition,
            "start": v[0],
            "end": v[1],
            "bytes": v[2],
        }));
    }
    let topics: Vec<Value> = topics
        .into_iter()
        .map(|(name, partitions)| {
            let end = counters.topic_end(&name);
            let before = previous.map(|p| p.counters.topic_end(&name));
            let bytes: f64 = partitions.iter().filter_map(|p| p["bytes"].as_f64()).sum();
            // What a reader asks first (how long data stays, whether it is compacted), in
            // effect even when defaulted, then every other setting the topic overrides.
            let settings: BTreeMap<String, String> = api
                .data
                .as_ref()
                .and_then(|d| d.log.topic(&name).ok())
                .map(|t| {
                    t.config
                        .entries()
                        .into_iter()
                        .filter(|(k, _)| {
                            ALWAYS_SHOWN.contains(&k.as_str()) || t.config.is_override(k)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let groups: Vec<Value> = counters
                .group_lag
                .get(&name)
                .into_iter()
                .flatten()
                .map(|(g, p, lag)| json!({"group": g, "partition": p, "lag": lag}))
                .collect();
            json!({
                "name": name,
                "internal": name.starts_with("__"),
                "settings": settings,
                "groups": groups,
                "partitions": partitions,
                "end": end,
                "bytes": bytes,
                "rate_in": per_sec(before, end),
            })
        })
        .collect();
    let body = json!({
        "time_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        "worker": {"version": api.info.version, "worker_id": api.info.worker_id},
        "connectors": connectors,
        "topics": topics,
        "graph": graph::layout(&for_graph),
        "reload": shapes::reload(&api.worker.reload_status()),
    });
    (body, Previous { at: now, counters })
}

type Api = State<Arc<RestApi>>;

pub(crate) async fn snapshot_json(State(api): Api) -> Result<Response, ApiError> {
    let (body, _) = tokio::task::spawn_blocking(move || snapshot(&api, None))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut resp = body.to_string().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The push interval a page asks for (`?interval_ms=`), kept within reason.
fn interval(query: &Option<String>) -> Duration {
    let asked = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "interval_ms")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(1000);
    Duration::from_millis(asked.clamp(200, 10_000))
}

pub(crate) async fn events(State(api): Api, RawQuery(q): RawQuery) -> Response {
    let every = interval(&q);
    let start = (api, None::<Previous>, true);
    let stream = futures_util::stream::unfold(start, move |(api, previous, first)| async move {
        if !first {
            tokio::time::sleep(every).await;
        }
        let worker_api = api.clone();
        let (body, next) =
            tokio::task::spawn_blocking(move || snapshot(&worker_api, previous.as_ref()))
                .await
                .ok()?;
        let event = Event::default().event("snapshot").data(body.to_string());
        Some((Ok::<_, Infallible>(event), (api, Some(next), false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_tasks_and_keep_partitions() {
        let text = "\
sluice_task_records_in_total{pipeline=\"p\",connector=\"src\",task=\"0\"} 10
sluice_task_records_in_total{pipeline=\"p\",connector=\"src\",task=\"1\"} 5
sluice_task_records_out_total{pipeline=\"p\",connector=\"src\",task=\"0\"} 15
sluice_sink_lag_records{pipeline=\"p\",connector=\"out\",topic=\"t\",partition=\"0\"} 7
sluice_log_end_offset{topic=\"t\",partition=\"0\"} 100
sluice_log_end_offset{topic=\"t\",partition=\"1\"} 50
sluice_log_size_bytes{topic=\"t\",partition=\"1\"} 4096
sluice_consumergroup_lag_records{group=\"connect-out\",topic=\"t\",partition=\"1\"} 3
";
        let c = Counters::read(&parse_metrics(text));
        assert_eq!(c.connectors["src"][IN], 15.0);
        assert_eq!(c.connectors["src"][OUT], 15.0);
        assert_eq!(c.connectors["out"][5], 7.0, "a sink's lag is its own");
        assert_eq!(c.topic_end("t"), 150.0);
        assert_eq!(c.partitions[&("t".to_string(), 1)], [0.0, 50.0, 4096.0]);
        assert!(!c.partitions.contains_key(&("t".to_string(), 7)));
        assert_eq!(c.group_lag["t"], vec![("connect-out".to_string(), 1, 3.0)]);
    }

    #[test]
    fn rates_never_go_negative() {
        assert_eq!(rate(100.0, 300.0, Duration::from_secs(2)), 100.0);
        assert_eq!(rate(300.0, 10.0, Duration::from_secs(1)), 0.0, "a restart");
        assert_eq!(rate(1.0, 2.0, Duration::ZERO), 0.0);
    }

    #[test]
    fn the_push_interval_is_bounded() {
        assert_eq!(interval(&None), Duration::from_secs(1));
        assert_eq!(
            interval(&Some("interval_ms=5".into())),
            Duration::from_millis(200)
        );
        assert_eq!(
            interval(&Some("interval_ms=500".into())),
            Duration::from_millis(500)
        );
    }
}
