//! The dashboard's routes through the router, without a socket: the page and its assets,
//! one snapshot, and the server-sent events stream (two events, the second with rates).

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::router;
use crate::tests::fixture;

async fn get(api: &crate::RestApi, uri: &str) -> (StatusCode, String, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = router(api.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let f = fixture();
    let (status, kind, body) = get(&f.api, "/ui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/html"));
    assert!(body.contains("<script src=\"/ui/app.js\">"));
    let (_, kind, js) = get(&f.api, "/ui/app.js").await;
    assert!(kind.starts_with("text/javascript") && js.contains("EventSource(\"/ui/events\")"));
    let (_, kind, _) = get(&f.api, "/ui/app.css").await;
    assert!(kind.starts_with("text/css"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_holds_connectors_topics_and_the_graph() {
    let f = fixture();
    std::fs::write(f._tmp.path().join("in/a.txt"), "one\ntwo\n").unwrap();
    // Wait for the records to reach the log: the snapshot reads the metrics.
    let mut snap = Value::Null;
    for _ in 0..100 {
        let (status, kind, body) = get(&f.api, "/ui/snapshot").await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "application/json")
        );
        snap = serde_json::from_str(&body).unwrap();
        let lines_end = snap["topics"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == "lines"))
            .and_then(|t| t["end"].as_f64());
        // The counter and the log's end are read separately: wait for both.
        if snap["connectors"][0]["records_out"].as_f64() == Some(2.0) && lines_end == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = snap["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lines_in", "lines_out"]);
    assert_eq!(snap["connectors"][0]["records_out"], 2.0, "{snap}");
    assert_eq!(
        snap["connectors"][0]["rate_out"],
        Value::Null,
        "no rate from one reading"
    );
    let lines = snap["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lines")
        .expect("the topic");
    assert_eq!(lines["end"], 2.0);
    let ids: Vec<&str> = snap["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["source:lines_in", "topic:lines", "sink:lines_out"]);
    assert!(snap["reload"]["active"]["hash"].is_string(), "{snap}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_push_snapshots_with_rates_from_the_second_on() {
    let f = fixture();
    let req = Request::builder()
        .uri("/ui/events?interval_ms=200")
        .body(Body::empty())
        .unwrap();
    let resp = router(f.api.clone()).oneshot(req).await.unwrap();
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text.matches("event: snapshot").count() < 2 {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("two events within 10 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let snapshots: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(snapshots.len(), 2);
    assert!(snapshots[0]["connectors"][0]["rate_in"].is_null());
    assert!(
        snapshots[1]["connectors"][0]["rate_in"].is_number(),
        "the second event has rates: {}",
        snapshots[1]["connectors"][0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_message_browser_reads_from_an_offset() {
    let f = fixture();
    std::fs::write(f._tmp.path().join("in/a.txt"), "l0\nl1\nl2\nl3\nl4\n").unwrap();
    let mut page = Value::Null;
    for _ in 0..100 {
        let (status, _, body) = get(&f.api, "/ui/topics/lines/records?offset=2").await;
        if status == StatusCode::OK {
            page = serde_json::from_str(&body).unwrap();
            if page["end"] == 5 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let offsets: Vec<i64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [2, 3, 4], "{page}");
    assert_eq!(page["records"][0]["value"], "l2");
    let (_, _, body) = get(&f.api, "/ui/topics/lines/records?limit=2").await;
    let last: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(last["from"], 3, "without an offset: the last records");
    let (status, _, body) = get(&f.api, "/ui/topics/nope/records").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = get(&f.api, "/ui/topics/lines/records?offset=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("`offset` must be a whole number"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_registry_the_schemas_view_says_so() {
    let f = fixture();
    let (status, _, body) = get(&f.api, "/ui/schemas").await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["available"], false);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("no schema registry"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_sits_behind_the_apis_authentication() {
    let f = fixture();
    let auth: sluice_listeners::auth::AuthConfig =
        serde_json::from_value(serde_json::json!({"bearer_tokens": ["s3cret"]})).unwrap();
    let app = crate::router_with_auth(f.api.clone(), auth);
    for uri in ["/ui", "/ui/snapshot", "/ui/events", "/ui/schemas"] {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
    let req = Request::builder()
        .uri("/ui")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
}
