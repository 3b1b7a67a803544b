//! The REST API without a socket (router + oneshot), checked against Confluent's documented
//! paths, bodies, status codes and error codes; state survives a reopen of the log.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sluice_log::{Log, LogOptions};
use sluice_schema_registry::api::router;
use sluice_schema_registry::registry::Registry;
use sluice_schema_registry::store::LogStore;
use tower::ServiceExt;

struct Fixture {
    dir: tempfile::TempDir,
    app: axum::Router,
}

fn open(dir: &std::path::Path) -> axum::Router {
    let log = Log::open(
        dir,
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )
    .unwrap();
    let store = LogStore::open(&log).unwrap();
    router(Arc::new(Registry::open(Arc::new(store)).unwrap()))
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    Fixture { dir, app }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn user_v1() -> Value {
    json!({"schema": r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":"long"}]}"#})
}

fn user_v2_compatible() -> Value {
    json!({"schema": r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null}]}"#})
}

fn user_v2_incompatible() -> Value {
    json!({"schema": r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":"long"},{"name":"email","type":"string"}]}"#})
}

#[tokio::test]
async fn register_look_up_and_read_back() {
    let f = fixture();
    let (s, body) = call(
        &f.app,
        "POST",
        "/subjects/users-value/versions",
        Some(user_v1()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 1);
    // The same schema again, written differently: same id, no new version.
    let respelled = json!({"schema": r#"{ "name":"com.acme.User", "type":"record", "fields":[ {"type":{"type":"long"},"name":"id"} ] }"#});
    let (_, body) = call(
        &f.app,
        "POST",
        "/subjects/users-value/versions",
        Some(respelled.clone()),
    )
    .await;
    assert_eq!(
        (body["id"].clone(), body["version"].clone()),
        (json!(1), json!(1))
    );
    // Under another subject: the same global id.
    let (_, body) = call(
        &f.app,
        "POST",
        "/subjects/other-value/versions",
        Some(user_v1()),
    )
    .await;
    assert_eq!(body["id"], 1);

    let (s, body) = call(&f.app, "POST", "/subjects/users-value", Some(respelled)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            body["subject"].clone(),
            body["version"].clone(),
            body["id"].clone()
        ),
        (json!("users-value"), json!(1), json!(1))
    );

    let (_, body) = call(&f.app, "GET", "/schemas/ids/1", None).await;
    let schema: Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["name"], "com.acme.User");
    let (_, body) = call(&f.app, "GET", "/schemas/ids/1/schema", None).await;
    assert_eq!(body["type"], "record");
    let (_, body) = call(&f.app, "GET", "/schemas/ids/1/subjects", None).await;
    assert_eq!(body, json!(["other-value", "users-value"]));
    let (_, body) = call(&f.app, "GET", "/schemas/ids/1/versions", None).await;
    assert_eq!(
        body,
        json!([{"subject":"other-value","version":1},{"subject":"users-value","version":1}])
    );
    let (_, body) = call(&f.app, "GET", "/subjects", None).await;
    assert_eq!(body, json!(["other-value", "users-value"]));
    let (_, body) = call(&f.app, "GET", "/subjects?subjectPrefix=users", None).await;
    assert_eq!(body, json!(["users-value"]));
    let (_, body) = call(&f.app, "GET", "/subjects/users-value/versions/latest", None).await;
    assert_eq!(body["version"], 1);
    let (_, body) = call(&f.app, "GET", "/schemas/types", None).await;
    assert_eq!(body, json!(["AVRO"]));
}

#[tokio::test]
async fn compatibility_is_enforced_with_reasons() {
    let f = fixture();
    call(&f.app, "POST", "/subjects/u/versions", Some(user_v1())).await;
    let (s, body) = call(
        &f.app,
        "POST",
        "/subjects/u/versions",
        Some(user_v2_incompatible()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["error_code"], 409);
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("READER_FIELD_MISSING_DEFAULT_VALUE")
            && msg.contains("email")
            && msg.contains("/fields/1"),
        "{msg}"
    );
    assert!(
        msg.contains("oldSchemaVersion: 1") && msg.contains("compatibility: 'BACKWARD'"),
        "{msg}"
    );

    let (_, body) = call(
        &f.app,
        "POST",
        "/compatibility/subjects/u/versions/latest?verbose=true",
        Some(user_v2_incompatible()),
    )
    .await;
    assert_eq!(body["is_compatible"], false);
    assert!(body["messages"][0].as_str().unwrap().contains("email"));
    let (_, body) = call(
        &f.app,
        "POST",
        "/compatibility/subjects/u/versions/latest",
        Some(user_v2_compatible()),
    )
    .await;
    assert_eq!(body, json!({"is_compatible": true}));
    let (_, body) = call(
        &f.app,
        "POST",
        "/compatibility/subjects/nobody/versions/latest",
        Some(user_v1()),
    )
    .await;
    assert_eq!(
        body,
        json!({"is_compatible": true}),
        "an empty subject accepts anything"
    );

    let (s, body) = call(
        &f.app,
        "POST",
        "/subjects/u/versions",
        Some(user_v2_compatible()),
    )
    .await;
    assert_eq!(
        (s, body["id"].clone(), body["version"].clone()),
        (StatusCode::OK, json!(2), json!(2))
    );

    // Per-subject NONE lets anything through; the global level stays BACKWARD.
    let (_, body) = call(
        &f.app,
        "PUT",
        "/config/u",
        Some(json!({"compatibility": "none"})),
    )
    .await;
    assert_eq!(body, json!({"compatibility": "NONE"}));
    let (s, _) = call(
        &f.app,
        "POST",
        "/subjects/u/versions",
        Some(json!({"schema": "\"string\""})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, body) = call(&f.app, "GET", "/config", None).await;
    assert_eq!(body, json!({"compatibilityLevel": "BACKWARD"}));
    let (s, body) = call(&f.app, "GET", "/config/other", None).await;
    assert_eq!(
        (s, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40408))
    );
    let (_, body) = call(&f.app, "GET", "/config/other?defaultToGlobal=true", None).await;
    assert_eq!(body, json!({"compatibilityLevel": "BACKWARD"}));
    let (s, body) = call(
        &f.app,
        "PUT",
        "/config",
        Some(json!({"compatibility": "SIDEWAYS"})),
    )
    .await;
    assert_eq!(
        (s, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42203))
    );
}

#[tokio::test]
async fn errors_carry_confluent_codes_and_change_nothing() {
    let f = fixture();
    let cases: Vec<(&str, &str, Option<Value>, u16, u32)> = vec![
        ("GET", "/subjects/missing/versions", None, 404, 40401),
        ("GET", "/subjects/missing/versions/1", None, 404, 40401),
        ("GET", "/schemas/ids/42", None, 404, 40403),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"schema": "{not json"})),
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(
                json!({"schema": r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#}),
            ),
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"schema": "\"int\"", "schemaType": "PROTOBUF"})),
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(
                json!({"schema": r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}"#}),
            ),
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"nope": 1})),
            422,
            422,
        ),
        (
            "PUT",
            "/mode",
            Some(json!({"mode": "SOMETIMES"})),
            422,
            42204,
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (s, b) = call(&f.app, method, uri, body).await;
        assert_eq!(
            (s.as_u16(), b["error_code"].as_u64()),
            (status, Some(code as u64)),
            "{method} {uri}: {b}"
        );
    }
    let (_, body) = call(&f.app, "GET", "/subjects", None).await;
    assert_eq!(body, json!([]), "nothing was written");
    call(&f.app, "POST", "/subjects/s/versions", Some(user_v1())).await;
    for (uri, code) in [
        ("/subjects/s/versions/2", 40402),
        ("/subjects/s/versions/0", 42202),
        ("/subjects/s/versions/abc", 42202),
    ] {
        let (_, b) = call(&f.app, "GET", uri, None).await;
        assert_eq!(b["error_code"], code, "{uri}");
    }
    let (s, b) = call(&f.app, "POST", "/subjects/s", Some(user_v2_compatible())).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );
    // An oversized body is refused with a clear message.
    let huge = json!({"schema": "x".repeat(5 * 1024 * 1024)});
    let (s, b) = call(&f.app, "POST", "/subjects/s/versions", Some(huge)).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(42209))
    );
}

#[tokio::test]
async fn soft_then_hard_deletes_and_version_numbers() {
    let f = fixture();
    call(&f.app, "POST", "/subjects/d/versions", Some(user_v1())).await;
    call(
        &f.app,
        "POST",
        "/subjects/d/versions",
        Some(user_v2_compatible()),
    )
    .await;
    let (s, b) = call(
        &f.app,
        "DELETE",
        "/subjects/d/versions/1?permanent=true",
        None,
    )
    .await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40407)),
        "hard delete needs a soft delete first"
    );
    let (_, b) = call(&f.app, "DELETE", "/subjects/d/versions/1", None).await;
    assert_eq!(b, json!(1));
    let (s, b) = call(&f.app, "DELETE", "/subjects/d/versions/1", None).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40406)),
        "deleting a soft-deleted version again says so, as Confluent's does: {b}"
    );
    let (s, b) = call(&f.app, "DELETE", "/subjects/d/versions/9", None).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40402))
    );
    let (_, b) = call(&f.app, "GET", "/subjects/d/versions", None).await;
    assert_eq!(b, json!([2]));
    let (_, b) = call(&f.app, "GET", "/subjects/d/versions?deleted=true", None).await;
    assert_eq!(b, json!([1, 2]));
    let (_, b) = call(&f.app, "GET", "/subjects/d/versions/1?deleted=true", None).await;
    assert_eq!(b["deleted"], true);
    // The id stays readable: old data must still decode.
    let (s, _) = call(&f.app, "GET", "/schemas/ids/1", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = call(&f.app, "DELETE", "/subjects/d", None).await;
    assert_eq!(b, json!([2]));
    let (_, b) = call(&f.app, "DELETE", "/subjects/d", None).await;
    assert_eq!(b["error_code"], 40404);
    let (_, b) = call(&f.app, "GET", "/subjects", None).await;
    assert_eq!(b, json!([]));
    let (_, b) = call(&f.app, "GET", "/subjects?deleted=true", None).await;
    assert_eq!(b, json!(["d"]));
    // Re-registering after a soft delete: a new version number, the same id.
    let (_, b) = call(&f.app, "POST", "/subjects/d/versions", Some(user_v1())).await;
    assert_eq!(
        (b["id"].clone(), b["version"].clone()),
        (json!(1), json!(3))
    );
    call(&f.app, "DELETE", "/subjects/d", None).await;
    let (_, b) = call(&f.app, "DELETE", "/subjects/d?permanent=true", None).await;
    assert_eq!(b, json!([1, 2, 3]));
    let (_, b) = call(&f.app, "GET", "/subjects/d/versions?deleted=true", None).await;
    assert_eq!(b["error_code"], 40401, "gone for good");
    let (_, b) = call(&f.app, "GET", "/schemas/ids/1", None).await;
    assert!(b["schema"].is_string(), "ids are never reused or lost");
}

#[tokio::test]
async fn references_and_modes() {
    let f = fixture();
    let address = json!({"schema": r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"city","type":"string"}]}"#});
    call(&f.app, "POST", "/subjects/address/versions", Some(address)).await;
    let customer = json!({
        "schema": r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"home","type":"com.acme.Address"}]}"#,
        "references": [{"name": "com.acme.Address", "subject": "address", "version": 1}]
    });
    let (s, b) = call(
        &f.app,
        "POST",
        "/subjects/customer/versions",
        Some(customer.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = call(
        &f.app,
        "GET",
        "/subjects/address/versions/1/referencedby",
        None,
    )
    .await;
    assert_eq!(b, json!([2]));
    let (_, b) = call(&f.app, "GET", "/subjects/customer/versions/1", None).await;
    assert_eq!(b["references"][0]["subject"], "address");
    let (s, b) = call(&f.app, "DELETE", "/subjects/address/versions/1", None).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42206)),
        "still referenced"
    );
    // A compatible evolution through the reference is checked with the reference resolved.
    let customer2 = json!({
        "schema": r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"home","type":"com.acme.Address"},{"name":"vip","type":"boolean","default":false}]}"#,
        "references": [{"name": "com.acme.Address", "subject": "address", "version": 1}]
    });
    let (s, b) = call(
        &f.app,
        "POST",
        "/subjects/customer/versions",
        Some(customer2),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let (_, b) = call(&f.app, "PUT", "/mode", Some(json!({"mode": "READONLY"}))).await;
    assert_eq!(b, json!({"mode": "READONLY"}));
    let (s, b) = call(&f.app, "POST", "/subjects/new/versions", Some(user_v1())).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42205))
    );
    call(&f.app, "PUT", "/mode", Some(json!({"mode": "READWRITE"}))).await;
    let (s, b) = call(&f.app, "PUT", "/mode", Some(json!({"mode": "IMPORT"}))).await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42205)),
        "IMPORT needs force while schemas exist"
    );
    let (_, b) = call(&f.app, "GET", "/mode/customer", None).await;
    assert_eq!(b["error_code"], 40409);
}

#[tokio::test]
async fn state_is_rebuilt_from_the_log() {
    let f = fixture();
    call(&f.app, "POST", "/subjects/a/versions", Some(user_v1())).await;
    call(
        &f.app,
        "POST",
        "/subjects/a/versions",
        Some(user_v2_compatible()),
    )
    .await;
    call(
        &f.app,
        "PUT",
        "/config/a",
        Some(json!({"compatibility": "FULL"})),
    )
    .await;
    call(&f.app, "DELETE", "/subjects/a/versions/1", None).await;
    let Fixture { dir, app } = f;
    drop(app);
    let app = open(dir.path());
    let (_, b) = call(&app, "GET", "/subjects/a/versions?deleted=true", None).await;
    assert_eq!(b, json!([1, 2]));
    let (_, b) = call(&app, "GET", "/subjects/a/versions", None).await;
    assert_eq!(b, json!([2]));
    let (_, b) = call(&app, "GET", "/config/a", None).await;
    assert_eq!(b, json!({"compatibilityLevel": "FULL"}));
    // New ids continue after the highest ever used.
    let (_, b) = call(
        &app,
        "POST",
        "/subjects/b/versions",
        Some(json!({"schema": "\"string\""})),
    )
    .await;
    assert_eq!(b["id"], 3);
}

#[tokio::test]
async fn import_mode_keeps_ids_and_versions_from_another_registry() {
    let f = fixture();
    let mut imported = user_v1();
    imported["id"] = json!(100);
    imported["version"] = json!(7);
    let (s, b) = call(
        &f.app,
        "POST",
        "/subjects/imp/versions",
        Some(imported.clone()),
    )
    .await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42205)),
        "ids only in IMPORT mode"
    );
    call(&f.app, "PUT", "/mode", Some(json!({"mode": "IMPORT"}))).await;
    let (s, b) = call(&f.app, "POST", "/subjects/imp/versions", Some(imported)).await;
    assert_eq!(
        (s, b["id"].clone(), b["version"].clone()),
        (StatusCode::OK, json!(100), json!(7)),
        "{b}"
    );
    let mut clash = user_v2_compatible();
    clash["id"] = json!(100);
    let (_, b) = call(&f.app, "POST", "/subjects/imp2/versions", Some(clash)).await;
    assert_eq!(
        b["error_code"], 42207,
        "an id already used by another schema"
    );
    call(&f.app, "PUT", "/mode", Some(json!({"mode": "READWRITE"}))).await;
    let (_, b) = call(
        &f.app,
        "POST",
        "/subjects/fresh/versions",
        Some(json!({"schema": "\"string\""})),
    )
    .await;
    assert_eq!(b["id"], 101, "new ids continue after imported ones");
}

/// Requests are counted by route template, method and status, and exported under the
/// names the runtime's `/metrics` serves.
#[tokio::test]
async fn requests_are_counted_by_route_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let registry = Arc::new(Registry::open(Arc::new(LogStore::open(&log).unwrap())).unwrap());
    let app = router(registry.clone());
    for subject in ["a-value", "b-value"] {
        let (s, _) = call(
            &app,
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(user_v1()),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _) = call(&app, "GET", "/subjects/nope/versions/1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, "GET", "/no/such/path", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let m = registry.request_metrics();
    assert_eq!(m.requests("/subjects/{subject}/versions", "POST", 200), 2);
    assert_eq!(
        m.requests("/subjects/{subject}/versions/{version}", "GET", 404),
        1
    );
    assert_eq!(m.requests("unmatched", "GET", 404), 1);
    let mut prom = prometheus_client::registry::Registry::default();
    m.register(&mut prom);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &prom).unwrap();
    assert!(
        text.contains(r#"sluice_registry_requests_total{route="/subjects/{subject}/versions",method="POST",status="200"} 2"#),
        "{text}"
    );
    assert!(text.contains("sluice_registry_request_duration_seconds_count{route=\"/subjects/{subject}/versions\",method=\"POST\"} 2"), "{text}");
}
