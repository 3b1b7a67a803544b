use super::*;
use serde_json::{json, Value as Json};

fn settings(v: Json) -> Result<SinkSettings, Vec<String>> {
    let values = spec()
        .validate(v.as_object().unwrap())
        .map_err(|issues| issues.iter().map(|i| i.to_string()).collect::<Vec<_>>())?;
    SinkSettings::from_config(&values).map_err(|i| i.iter().map(|i| i.to_string()).collect())
}

#[test]
fn the_issues_example_is_valid_and_typed() {
    let s = settings(json!({
        "url": "https://crm.example/api/${topic}",
        "method": "PUT",
        "headers": {"X-Source": "sluice"},
        "auth": {"bearer": "t0ken"},
        "body": "ndjson",
        "batch": {"max_records": 200, "max_bytes": "64KiB", "linger": "5ms"},
        "compression": "gzip",
        "max_in_flight": 8,
        "retry": {"max_retries": 3, "initial_backoff": "50ms", "max_backoff": "2s"},
        "timeout": "10s",
        "drop_codes": "409",
    }))
    .unwrap();
    assert_eq!(s.limits.max_records, 200);
    assert_eq!(s.limits.max_bytes, 65536);
    assert_eq!(s.limits.linger, Duration::from_millis(5));
    assert_eq!(s.retry.max_attempts, 4, "3 retries after the first attempt");
    assert_eq!(s.transport.method, reqwest::Method::PUT);
    assert_eq!(s.transport.content_type, "application/x-ndjson");
    assert_eq!(
        s.transport.headers,
        vec![("X-Source".to_string(), "sluice".to_string())]
    );
    assert!(
        !format!("{s:?}").contains("t0ken"),
        "secrets never in Debug"
    );
    assert_eq!(s.max_in_flight, 8);
    assert_eq!(s.statuses.classify(409), crate::classify::Outcome::Dropped);

    let defaults = settings(json!({"url": "http://127.0.0.1:1/x"})).unwrap();
    assert_eq!(defaults.limits.max_records, 500);
    assert_eq!(defaults.limits.max_bytes, 1 << 20);
    assert_eq!(defaults.retry.max_attempts, 11);
    assert!(defaults.ordered);
    let unlimited = settings(json!({"url": "http://h/x", "retry": {"max_retries": -1}})).unwrap();
    assert_eq!(unlimited.retry.max_attempts, 0);
}

#[test]
fn bad_settings_say_what_and_where_without_secrets() {
    let err = settings(json!({
        "url": "http://h/${nope}",
        "headers": {"Content-Type": "text/plain", "bad name": "x"},
        "retry_codes": "5xx,abc",
        "retry": {"initial_backoff": "2s", "max_backoff": "1s"},
        "auth": {"oauth2": {"token_url": "ftp://x", "client_id": "c", "client_secret": "s3cret"}},
    }))
    .unwrap_err();
    let has = |k: &str| err.iter().any(|e| e.starts_with(k));
    assert!(
        has("`url`: url \"http://h/${nope}\": unknown placeholder"),
        "{err:?}"
    );
    assert!(
        has("`headers.Content-Type`: set by the sink itself"),
        "{err:?}"
    );
    assert!(
        has("`headers.bad name`: not a valid HTTP header name"),
        "{err:?}"
    );
    assert!(has("`retry_codes`:"), "{err:?}");
    assert!(has("`retry.max_backoff`: must not be less"), "{err:?}");
    assert!(has("`auth.oauth2.token_url`:"), "{err:?}");
    assert!(err.iter().all(|e| !e.contains("s3cret")), "{err:?}");

    let err = settings(json!({"url": "http://h/x", "batch": {"max_records": 0}, "method": "GET"}))
        .unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.starts_with("`batch.max_records`: expected an integer from 1")),
        "{err:?}"
    );
    assert!(
        err.iter()
            .any(|e| e.starts_with("`method`: expected one of")),
        "{err:?}"
    );
}
