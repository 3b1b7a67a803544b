//! Every endpoint and error through the router, without a socket, on a real worker running
//! file connectors on a temporary log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_log::{Log, LogOptions};
use sluice_worker::run::Worker;
use tower::ServiceExt;

use crate::{router, router_with_auth, RestApi, ServerInfo};

pub(crate) struct Fixture {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) api: RestApi,
    pub(crate) log: Log,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.api.worker.stop(Duration::from_secs(10));
        let _ = self.log.close();
    }
}

pub(crate) fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let mut registry = ConnectorRegistry::new();
    sluice_connector_file::register(&mut registry).unwrap();
    sluice_connector_http::register(&mut registry).unwrap();
    let yaml = format!(
        "sources:\n  lines_in: {{ type: file, path: \"{r}/in/*.txt\", topic: lines }}\n\
         sinks:\n  lines_out: {{ type: file, path: {r}/out, topics: [lines], restart: {{ max_attempts: 3 }} }}\n",
        r = root.display()
    );
    let pipeline = sluice_worker::config::parse_pipeline(&yaml, &registry, &|_| None).unwrap();
    let log = Log::open(root.join("data"), LogOptions::default()).unwrap();
    let worker = Worker::start(
        &pipeline,
        &registry,
        &log,
        sluice_worker::run::WorkerOptions {
            metrics: Some(Arc::new(sluice_worker::metrics::WorkerMetrics::new("test"))),
            ..Default::default()
        },
    )
    .unwrap();
    Fixture {
        _tmp: tmp,
        api: RestApi {
            worker: Arc::new(worker),
            registry: Arc::new(registry),
            info: ServerInfo::new("cluster-1", "127.0.0.1:8083", "pipelines.yaml"),
            data: Some(crate::DataAccess {
                log: log.clone(),
                schemas: None,
            }),
        },
        log,
    }
}

pub(crate) async fn call(
    api: &RestApi,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let resp = router(api.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}"))
    };
    (status, v)
}

pub(crate) async fn wait_for_state(api: &RestApi, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, s) = call(api, "GET", &format!("/connectors/{name}/status"), None).await;
        if s["tasks"]
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["state"] == state))
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {state}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_endpoints_have_kafka_connects_shapes() {
    let f = fixture();
    let api = &f.api;
    let (st, root) = call(api, "GET", "/", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(root["kafka_cluster_id"], "cluster-1");
    assert!(root["version"].is_string() && root["commit"].is_string());
    let (st, reload) = call(api, "GET", "/reload", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        reload["active"]["hash"].as_str().map(str::len),
        Some(16),
        "{reload}"
    );
    assert_eq!(reload["last_attempt"], Value::Null, "no reload yet");
    let (st, health) = call(api, "GET", "/health", None).await;
    assert_eq!(
        (st, health["status"].clone()),
        (StatusCode::OK, json!("healthy"))
    );

    let (st, list) = call(api, "GET", "/connectors", None).await;
    assert_eq!(
        (st, list),
        (StatusCode::OK, json!(["lines_in", "lines_out"]))
    );

    // Both connectors' tasks start on their own threads: wait for both before reading them.
    wait_for_state(api, "lines_in", "RUNNING").await;
    let status = wait_for_state(api, "lines_out", "RUNNING").await;
    assert_eq!(
        status,
        json!({
            "name": "lines_out",
            "connector": {"state": "RUNNING", "worker_id": "127.0.0.1:8083"},
            "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "127.0.0.1:8083"}],
            "type": "sink"
        }),
        "no `trace` key when there is none"
    );

    let (_, expanded) = call(
        api,
        "GET",
        "/connectors?expand=status&expand=info&expand=bogus",
        None,
    )
    .await;
    assert_eq!(expanded["lines_in"]["status"]["type"], "source");
    assert_eq!(expanded["lines_in"]["info"]["config"]["topic"], "lines");
    assert_eq!(expanded["lines_out"]["info"]["config"]["topics"], "lines");
    assert_eq!(
        expanded["lines_out"]["info"]["tasks"],
        json!([{"connector": "lines_out", "task": 0}])
    );
    let (_, only_info) = call(api, "GET", "/connectors?expand=info", None).await;
    assert!(only_info["lines_in"].get("status").is_none());

    let (st, info) = call(api, "GET", "/connectors/lines_in", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(info["type"], "source");
    assert_eq!(info["name"], "lines_in");
    let (_, config) = call(api, "GET", "/connectors/lines_out/config", None).await;
    assert_eq!(config["connector.class"], "file");
    assert_eq!(config["tasks.max"], "1");
    assert_eq!(config["errors.tolerance"], "none");
    assert_eq!(config["restart.max_attempts"], "3");
    assert!(
        config.as_object().unwrap().values().all(Value::is_string),
        "a flat string map: {config}"
    );

    let (_, tasks) = call(api, "GET", "/connectors/lines_in/tasks", None).await;
    assert_eq!(tasks[0]["id"], json!({"connector": "lines_in", "task": 0}));
    assert_eq!(tasks[0]["config"]["connector.class"], "file");
    let (st, t0) = call(api, "GET", "/connectors/lines_in/tasks/0/status", None).await;
    assert_eq!(
        (st, t0["state"].clone()),
        (StatusCode::OK, json!("RUNNING"))
    );

    let (_, topics) = call(api, "GET", "/connectors/lines_out/topics", None).await;
    assert_eq!(topics, json!({"lines_out": {"topics": ["lines"]}}));
    let (st, offsets) = call(api, "GET", "/connectors/lines_out/offsets", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(offsets["offsets"].is_array());

    let (st, plugins) = call(api, "GET", "/connector-plugins?connectorsOnly=true", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(plugins
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["class"] == "file" && p["type"] == "sink"));
    let (st, keys) = call(api, "GET", "/connector-plugins/file/config", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(keys
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "path" && k["required"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text_format() {
    let f = fixture();
    wait_for_state(&f.api, "lines_out", "RUNNING").await;
    let resp = router(f.api.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("sluice_task_state{pipeline=\"test\",connector=\"lines_out\",task=\"0\",state=\"RUNNING\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE sluice_task_records_in_total counter"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_connect_shape_and_status() {
    let f = fixture();
    let api = &f.api;
    for (method, uri, status) in [
        ("GET", "/connectors/nope", 404),
        ("GET", "/connectors/nope/status", 404),
        ("PUT", "/connectors/nope/pause", 404),
        ("POST", "/connectors/nope/restart", 404),
        ("GET", "/connectors/lines_in/tasks/7/status", 404),
        ("POST", "/connectors/lines_in/tasks/7/restart", 404),
        ("GET", "/connectors/lines_in/tasks/x/status", 400),
        ("GET", "/connector-plugins/nope/config", 404),
        ("GET", "/no/such/path", 404),
        ("PUT", "/connectors/lines_in/config", 409),
        ("PATCH", "/connectors/lines_in/config", 409),
        ("DELETE", "/connectors/lines_in", 409),
        ("DELETE", "/connectors/nope", 404),
        ("PATCH", "/connectors/lines_in/offsets", 400),
        ("DELETE", "/connectors/lines_in/offsets", 400),
        ("PATCH", "/connectors/nope/offsets", 404),
    ] {
        let (st, body) = call(api, method, uri, Some(json!({}))).await;
        assert_eq!(st.as_u16(), status, "{method} {uri}: {body}");
        assert_eq!(body["error_code"], status, "{method} {uri}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (_, body) = call(api, "GET", "/connectors/nope", None).await;
    assert_eq!(body["message"], "Connector nope not found");
    let (_, body) = call(api, "PUT", "/connectors/lines_in/config", Some(json!({}))).await;
    assert!(
        body["message"].as_str().unwrap().contains("pipelines.yaml"),
        "{body}"
    );

    let (st, _) = call(
        api,
        "POST",
        "/connectors",
        Some(json!({"name": "lines_in", "config": {}})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, body) = call(
        api,
        "POST",
        "/connectors",
        Some(json!({"name": "new", "config": {}})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("connector.class"),
        "{body}"
    );
    let req = Request::builder()
        .method("POST")
        .uri("/connectors")
        .body(Body::from("{not json"))
        .unwrap();
    let resp = router(api.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_stop_and_restart_steer_the_tasks() {
    let f = fixture();
    let api = &f.api;
    wait_for_state(api, "lines_out", "RUNNING").await;
    let (st, body) = call(api, "PUT", "/connectors/lines_out/pause", None).await;
    assert_eq!((st, body), (StatusCode::ACCEPTED, Value::Null));
    let s = wait_for_state(api, "lines_out", "PAUSED").await;
    assert_eq!(s["connector"]["state"], "PAUSED");
    let (st, _) = call(api, "PUT", "/connectors/lines_out/pause", None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "pause is idempotent");
    let (st, _) = call(api, "PUT", "/connectors/lines_out/resume", None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_for_state(api, "lines_out", "RUNNING").await;

    let (st, body) = call(api, "PUT", "/connectors/lines_in/stop", None).await;
    assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null));
    let (_, s) = call(api, "GET", "/connectors/lines_in/status", None).await;
    assert_eq!(s["connector"]["state"], "STOPPED");
    assert_eq!(s["tasks"], json!([]), "a stopped connector has no tasks");
    let (st, _) = call(api, "PUT", "/connectors/lines_in/stop", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "stop is idempotent");
    // Offsets change only while stopped (KIP-875).
    let change =
        json!({"offsets": [{"partition": {"stream": "file:1:2:3"}, "offset": {"position": 42}}]});
    let (st, body) = call(api, "PATCH", "/connectors/lines_in/offsets", Some(change)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body["message"],
        "The offsets for this connector have been altered successfully"
    );
    let (_, got) = call(api, "GET", "/connectors/lines_in/offsets", None).await;
    assert_eq!(
        got,
        json!({"offsets": [{"partition": {"stream": "file:1:2:3"}, "offset": {"position": 42}}]})
    );
    let (st, body) = call(api, "DELETE", "/connectors/lines_in/offsets", None).await;
    assert_eq!(
        (st, body["message"].clone()),
        (
            StatusCode::OK,
            json!("The offsets for this connector have been reset successfully")
        )
    );
    let (_, got) = call(api, "GET", "/connectors/lines_in/offsets", None).await;
    assert_eq!(got, json!({"offsets": []}));
    let bad =
        json!({"offsets": [{"partition": {"kafka_topic": "lines"}, "offset": {"position": 1}}]});
    let (st, _) = call(api, "PATCH", "/connectors/lines_in/offsets", Some(bad)).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a source partition names its stream"
    );
    let (st, _) = call(api, "PUT", "/connectors/lines_in/resume", None).await;
    assert_eq!(
        st,
        StatusCode::ACCEPTED,
        "resume starts a stopped connector"
    );
    wait_for_state(api, "lines_in", "RUNNING").await;

    let (st, body) = call(api, "POST", "/connectors/lines_in/restart", None).await;
    assert_eq!(
        (st, body),
        (StatusCode::NO_CONTENT, Value::Null),
        "connector only: 204"
    );
    let (st, body) = call(
        api,
        "POST",
        "/connectors/lines_in/restart?includeTasks=true&onlyFailed=true",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(
        body["tasks"][0]["state"], "RUNNING",
        "only failed tasks restart: {body}"
    );
    let (st, body) = call(
        api,
        "POST",
        "/connectors/lines_in/restart?includeTasks=true",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(body["tasks"][0]["state"], "RESTARTING", "{body}");
    let s = wait_for_state(api, "lines_in", "RUNNING").await;
    assert_eq!(s["connector"]["state"], "RUNNING");
    let (st, _) = call(api, "POST", "/connectors/lines_in/tasks/0/restart", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    wait_for_state(api, "lines_in", "RUNNING").await;
    let status = api.worker.status("lines_in").unwrap();
    assert_eq!(status.tasks[0].restarts, 2, "each restart is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_answers_200_with_each_settings_errors() {
    let f = fixture();
    let api = &f.api;
    let (st, body) = call(
        api,
        "PUT",
        "/connector-plugins/file/config/validate",
        Some(json!({"connector.class": "file", "name": "x", "topics": "a", "pth": "/tmp"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body["error_count"].as_u64().unwrap() >= 1, "{body}");
    let configs = body["configs"].as_array().unwrap();
    let all_errors: Vec<&Value> = configs
        .iter()
        .flat_map(|c| c["value"]["errors"].as_array().unwrap())
        .collect();
    assert!(
        all_errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("pth")),
        "{body}"
    );
    for c in configs {
        for key in [
            "name",
            "type",
            "required",
            "importance",
            "documentation",
            "group",
            "order",
            "width",
            "display_name",
            "dependents",
        ] {
            assert!(
                c["definition"].get(key).is_some(),
                "definition lacks {key}: {c}"
            );
        }
    }
    let (st, body) = call(
        api,
        "PUT",
        "/connector-plugins/file/config/validate",
        Some(json!({"connector.class": "file", "path": "/tmp/in/*.txt"})),
    )
    .await;
    assert_eq!(
        (st, body["error_count"].clone()),
        (StatusCode::OK, json!(0)),
        "{body}"
    );
    let (st, _) = call(
        api,
        "PUT",
        "/connector-plugins/file/config/validate",
        Some(json!({"connector.class": "jsonl"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_when_configured() {
    let f = fixture();
    let auth: sluice_schema_registry::api::AuthConfig =
        serde_json::from_value(json!({"bearer_tokens": ["s3cret"]})).unwrap();
    let app = router_with_auth(f.api.clone(), auth);
    let denied = app
        .clone()
        .oneshot(Request::get("/connectors").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(denied.headers().contains_key("www-authenticate"));
    let allowed = app
        .oneshot(
            Request::get("/connectors")
                .header("authorization", "Bearer s3cret")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
}
