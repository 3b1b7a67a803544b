//! Connectors created, reconfigured and deleted over REST, through the router: Kafka
//! Connect's status codes and bodies, the file's validation with key paths, and the stored
//! configs coming back when the worker starts again on the same log.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_log::{Log, LogOptions};
use sluice_worker::run::Worker;

use crate::tests::{call, fixture, wait_for_state};
use crate::{RestApi, ServerInfo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_are_created_changed_and_deleted_and_come_back_after_a_restart() {
    let mut f = fixture();
    let api = &f.api;
    let root = f._tmp.path().to_path_buf();
    std::fs::create_dir_all(root.join("more")).unwrap();

    // Kafka Connect's own class name for a file source, with its `file` setting.
    let create = json!({
        "name": "more_in",
        "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "tasks.max": "1",
            "file": format!("{}/more/*.txt", root.display()),
            "topic": "more",
        }
    });
    let (st, info) = call(api, "POST", "/connectors", Some(create.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{info}");
    assert_eq!(info["name"], "more_in");
    assert_eq!(info["type"], "source");
    assert_eq!(info["tasks"], json!([{"connector": "more_in", "task": 0}]));
    assert_eq!(
        info["config"]["connector.class"], create["config"]["connector.class"],
        "the config as it was given"
    );
    assert_eq!(info["config"]["name"], "more_in");
    wait_for_state(api, "more_in", "RUNNING").await;
    let (st, body) = call(api, "POST", "/connectors", Some(create)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["message"], "Connector more_in already exists");

    // Every problem at once, each with its key; nothing is created.
    let bad = json!({
        "name": "bad",
        "config": {
            "connector.class": "file",
            "topics": "more",
            "path": format!("{}/bad", root.display()),
            "tasks.max": "many",
            "errors.tolerance": "some",
            "rol_bytes": "10",
        }
    });
    let (st, body) = call(api, "POST", "/connectors", Some(bad)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Connector configuration is invalid and contains the following"),
        "{message}"
    );
    for expected in [
        "tasks.max: `tasks` must be an integer",
        "errors.tolerance: `tolerance` must be `none` or `all`",
        "rol_bytes: ",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    let (st, _) = call(api, "GET", "/connectors/bad", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) = call(
        api,
        "POST",
        "/connectors",
        Some(json!({"name": "x", "config": {"connector.class": "nosuch"}})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("connector.class: unknown connector class `nosuch`"),
        "{body}"
    );

    // PUT creates (201), then reconfigures (200); PATCH merges, `null` removes a key.
    let sink = json!({
        "connector.class": "file",
        "topics": "more",
        "path": format!("{}/more_out", root.display()),
        "roll_interval": "1s",
        "transforms": "tag",
        "transforms.tag.type": "insert_field",
        "transforms.tag.static_field": "origin",
        "transforms.tag.static_value": "rest",
    });
    let (st, info) = call(
        api,
        "PUT",
        "/connectors/more_out/config",
        Some(sink.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{info}");
    assert_eq!(info["type"], "sink");
    wait_for_state(api, "more_out", "RUNNING").await;
    let mut changed = sink.clone();
    changed["roll_interval"] = json!("2s");
    let (st, info) = call(api, "PUT", "/connectors/more_out/config", Some(changed)).await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["config"]["roll_interval"], "2s");
    let (st, info) = call(
        api,
        "PATCH",
        "/connectors/more_out/config",
        Some(json!({"roll_interval": null, "roll_bytes": "1000"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{info}");
    let (_, config) = call(api, "GET", "/connectors/more_out/config", None).await;
    assert_eq!(config.get("roll_interval"), None, "{config}");
    assert_eq!(config["roll_bytes"], "1000");
    assert_eq!(config["transforms.tag.static_value"], "rest");
    wait_for_state(api, "more_out", "RUNNING").await;
    let (st, body) = call(
        api,
        "PATCH",
        "/connectors/more_out/config",
        Some(json!({"roll_bytes": "-5"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "an invalid patch: {body}");
    let (_, config) = call(api, "GET", "/connectors/more_out/config", None).await;
    assert_eq!(config["roll_bytes"], "1000", "and the config is unchanged");

    // The file's connectors are refused with where to change them.
    let (st, body) = call(api, "DELETE", "/connectors/lines_in", None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(body["message"].as_str().unwrap().contains("pipelines.yaml"));

    // A paused connector comes back paused; a deleted one does not come back.
    let (st, _) = call(api, "PUT", "/connectors/more_in/pause", None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_for_state(api, "more_in", "PAUSED").await;
    let (st, body) = call(api, "DELETE", "/connectors/more_out", None).await;
    assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null));
    let (st, _) = call(api, "GET", "/connectors/more_out", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, list) = call(api, "GET", "/connectors", None).await;
    assert_eq!(
        (st, list),
        (StatusCode::OK, json!(["lines_in", "lines_out", "more_in"]))
    );

    // A connector of the file stopped over REST stays stopped across the restart.
    let (st, _) = call(api, "PUT", "/connectors/lines_out/stop", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // The same file, the same log: the stored connector is built again, in its state.
    assert!(api.worker.stop(Duration::from_secs(10)).is_empty());
    let registry = api.registry.clone();
    let _dir = std::mem::replace(&mut f._tmp, tempfile::tempdir().unwrap());
    drop(f); // the worker and the log, so that the data directory can be opened again
    let yaml = format!(
        "sources:\n  lines_in: {{ type: file, path: \"{r}/in/*.txt\", topic: lines }}\n\
         sinks:\n  lines_out: {{ type: file, path: {r}/out, topics: [lines] }}\n",
        r = root.display()
    );
    let pipeline = sluice_worker::config::parse_pipeline(&yaml, &registry, &|_| None).unwrap();
    let log = Log::open(root.join("data"), LogOptions::default()).unwrap();
    let worker = Worker::start(&pipeline, &registry, &log, Default::default()).unwrap();
    assert_eq!(worker.restore_problems(), &[] as &[String]);
    let again = RestApi {
        worker: Arc::new(worker),
        registry,
        info: ServerInfo::new("cluster-1", "127.0.0.1:8083", "pipelines.yaml"),
        data: None,
    };
    let (_, list) = call(&again, "GET", "/connectors", None).await;
    assert_eq!(list, json!(["lines_in", "lines_out", "more_in"]));
    let s = wait_for_state(&again, "more_in", "PAUSED").await;
    assert_eq!(s["connector"]["state"], "PAUSED");
    let (_, config) = call(&again, "GET", "/connectors/more_in/config", None).await;
    assert_eq!(config["topic"], "more");
    let (_, s) = call(&again, "GET", "/connectors/lines_out/status", None).await;
    assert_eq!(s["connector"]["state"], "STOPPED", "{s}");
    assert_eq!(s["tasks"], json!([]), "a stopped connector has no tasks");
    let (st, _) = call(&again, "PUT", "/connectors/lines_out/resume", None).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait_for_state(&again, "lines_out", "RUNNING").await;
    assert!(again.worker.stop(Duration::from_secs(10)).is_empty());
    log.close().unwrap();
}

/// A connector being reconfigured is never missing: its old tasks stop while it stays
/// listed, and the new config takes its place (a client polling in between once got 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_stays_listed_while_it_is_reconfigured() {
    let f = fixture();
    let api = Arc::new(f.api.clone());
    let root = f._tmp.path().to_path_buf();
    let sink = |roll: u32| {
        json!({
            "connector.class": "file",
            "topics": "lines",
            "path": format!("{}/copies", root.display()),
            "roll_interval": format!("{roll}ms"),
        })
    };
    let (st, body) = call(&api, "PUT", "/connectors/copies/config", Some(sink(100))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    wait_for_state(&api, "copies", "RUNNING").await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (api, stop) = (api.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for path in ["/connectors/copies/config", "/connectors/copies/status"] {
                    let (st, _) = call(&api, "GET", path, None).await;
                    if st != StatusCode::OK {
                        seen.push(format!("{path}: {st}"));
                    }
                }
                let (_, list) = call(&api, "GET", "/connectors", None).await;
                if !list
                    .as_array()
                    .is_some_and(|l| l.contains(&json!("copies")))
                {
                    seen.push(format!("/connectors: {list}"));
                }
            }
            seen
        })
    };
    for roll in 101..111 {
        let (st, body) = call(&api, "PUT", "/connectors/copies/config", Some(sink(roll))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let missing = poller.await.unwrap();
    assert!(
        missing.is_empty(),
        "the connector went missing: {missing:?}"
    );
    let (_, config) = call(&api, "GET", "/connectors/copies/config", None).await;
    assert_eq!(config["roll_interval"], "110ms");
    assert!(api.worker.stop(Duration::from_secs(10)).is_empty());
}
