use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use tower::ServiceExt;

use super::task::{router, Shared};
use super::*;

fn settings(v: Json) -> Result<ServerSettings, Vec<String>> {
    let values = spec()
        .validate(v.as_object().unwrap())
        .map_err(|issues| issues.iter().map(|i| i.to_string()).collect::<Vec<_>>())?;
    ServerSettings::from_config(&values).map_err(|i| i.iter().map(|i| i.to_string()).collect())
}

async fn post(
    app: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (StatusCode, Option<String>, Json) {
    let mut request = Request::post(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    )
}

/// Plays the runtime: takes what callers sent and reports it committed, as the log would.
fn commit_everything(shared: Arc<Shared>) -> std::thread::JoinHandle<Vec<SourceRecordSeen>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let records = shared.take(100, Duration::from_millis(300));
            if records.is_empty() {
                return seen;
            }
            for r in &records {
                seen.push(SourceRecordSeen {
                    key: r.key.as_ref().map(|k| match k {
                        sluice_connector_sdk::data::Payload::Raw(b) => {
                            String::from_utf8(b.to_vec()).unwrap()
                        }
                        _ => unreachable!(),
                    }),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap()))
                        .collect(),
                });
            }
            let last = records.last().unwrap().position.offset.as_u64().unwrap();
            shared.committed(last);
        }
    })
}

#[derive(Debug)]
struct SourceRecordSeen {
    key: Option<String>,
    headers: Vec<(String, String)>,
}

#[test]
fn settings_are_checked_before_anything_listens() {
    let s = settings(json!({
        "listen": "127.0.0.1:8090",
        "path": "/hooks/{source}",
        "body": "ndjson",
        "auth": {"hmac_sha256": {"secret": "s3cret"}},
        "rate_limit": {"requests": 100},
        "key_from": "header:X-Request-Id",
        "record_headers": ["header:X-GitHub-Event", "path:source"],
    }))
    .unwrap();
    assert_eq!(s.path_params, vec!["source"]);
    assert_eq!(s.rate_limit, Some((100, Duration::from_secs(1))));
    assert_eq!(s.max_body, 1 << 20);
    assert!(!format!("{s:?}").contains("s3cret"));
    assert!(settings(json!({"listen": "127.0.0.1:1"}))
        .unwrap()
        .rate_limit
        .is_none());

    let errors = settings(json!({"listen": "0.0.0.0:8090"})).unwrap_err();
    assert!(
        errors[0].contains("reachable from other machines"),
        "{errors:?}"
    );
    let errors = settings(json!({"listen": "localhost"})).unwrap_err();
    assert!(errors[0].contains("not an address"), "{errors:?}");
    let errors = settings(json!({
        "listen": "127.0.0.1:1",
        "path": "hooks/{a b}",
        "key_from": "path:nope",
        "record_headers": ["query:x"],
        "body": "raw",
    }))
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("must start with `/`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`record_headers`: entry 1: \"query:x\"")
                && e.contains("header:NAME")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no parameter `{nope}`")),
        "{errors:?}"
    );
    let errors =
        settings(json!({"listen": "127.0.0.1:1", "body": "raw", "key_from": "pointer:/id"}))
            .unwrap_err();
    assert!(errors[0].contains("needs a JSON `body`"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_answered_once_its_records_are_committed_with_keys_and_headers() {
    let s = settings(json!({
        "listen": "127.0.0.1:1",
        "path": "/hooks/{source}",
        "body": "json_array",
        "record_headers": ["header:X-Event", "path:source"],
    }))
    .unwrap();
    let shared = Shared::new(s);
    let app = router(shared.clone());
    let runtime = commit_everything(shared.clone());
    let (status, _, body) = post(
        &app,
        "/hooks/github",
        &[("x-event", "push"), ("idempotency-key", "delivery-7")],
        br#"[{"n":1},{"n":2}]"#,
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"records": 2})));
    let seen = runtime.join().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].key.as_deref(),
        Some("delivery-7"),
        "Idempotency-Key is the key"
    );
    assert_eq!(
        seen[1].headers,
        vec![
            ("X-Event".into(), "push".into()),
            ("source".into(), "github".into())
        ]
    );
    // Nothing to take: an empty array is answered at once.
    assert_eq!(post(&app, "/hooks/x", &[], b"[]").await.0, StatusCode::OK);
    // Other paths and methods are not ours.
    assert_eq!(
        post(&app, "/elsewhere", &[], b"[]").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_are_refused_at_once_and_take_nothing() {
    let s = settings(json!({
        "listen": "127.0.0.1:1",
        "path": "/in",
        "auth": {"bearer": "t0ken"},
        "max_body": "16B",
    }))
    .unwrap();
    let shared = Shared::new(s);
    let app = router(shared.clone());
    let auth = [("authorization", "Bearer t0ken")];
    let (status, _, body) = post(&app, "/in", &[], b"{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("bearer token is required"));
    assert_eq!(
        post(&app, "/in", &[("authorization", "Bearer nope")], b"{}")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, body) = post(&app, "/in", &auth, b"{\"a\":\"0123456789abcdef\"}").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_body (16 bytes)"),
        "{body}"
    );
    let (status, _, body) = post(&app, "/in", &auth, b"{nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON"),
        "{body}"
    );
    assert!(
        shared.take(10, Duration::ZERO).is_empty(),
        "nothing was taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_or_the_backlog_callers_get_429_and_503_with_retry_after() {
    let s = settings(json!({
        "listen": "127.0.0.1:1",
        "rate_limit": {"requests": 2, "per": "10s"},
        "max_pending": 1,
        "ack_timeout": "200ms",
    }))
    .unwrap();
    let shared = Shared::new(s);
    let app = router(shared.clone());
    // Nobody takes the records (the log is held up): the first call waits out ack_timeout.
    let started = std::time::Instant::now();
    let (status, retry, body) = post(&app, "/", &[], b"{\"n\":1}").await;
    assert_eq!(
        (status, retry.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("within ack_timeout"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Its record still waits for the log: the backlog is full, the next call is refused at once.
    let started = std::time::Instant::now();
    let (status, retry, body) = post(&app, "/", &[], b"{\"n\":2}").await;
    assert_eq!(
        (status, retry.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1"))
    );
    assert!(
        body["message"].as_str().unwrap().contains("max_pending 1"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    // The third call in 10 s is over the rate limit.
    let (status, retry, _) = post(&app, "/", &[], b"{\"n\":3}").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("5"), "a token every 5 s");
    // Stopping answers what waits and refuses what comes.
    shared.close("the pipeline is stopping: retry");
    let (status, _, _) = post(&app, "/", &[], b"{}").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the rate limit still comes first"
    );
}
