//! Registry writes wait for the disk (an fsync per change) on the blocking pool, never on the
//! async threads: in `sluice run` those threads also serve Kafka clients and the pipelines'
//! HTTP traffic, so a slow disk must not stall them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sluice_schema_registry::api::router;
use sluice_schema_registry::registry::Registry;
use sluice_schema_registry::store::{SchemaStore, StoreError, StoredRecord};
use tower::ServiceExt;

/// A store whose writes take `delay` (a slow or stalled disk).
struct SlowStore {
    records: Mutex<Vec<StoredRecord>>,
    delay: Duration,
    slow: AtomicBool,
}

impl SchemaStore for SlowStore {
    fn append(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        if self.slow.load(Ordering::Acquire) {
            std::thread::sleep(self.delay);
        }
        self.records
            .lock()
            .unwrap()
            .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        Ok(())
    }

    fn replay(&self) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(self.records.lock().unwrap().clone())
    }
}

fn request(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// One async thread only, as a busy runtime would have to spare: a write blocking it would
/// hold up every other request until the disk answers.
#[tokio::test(flavor = "current_thread")]
async fn reads_are_answered_while_a_write_waits_for_a_slow_disk() {
    let store = Arc::new(SlowStore {
        records: Mutex::new(Vec::new()),
        delay: Duration::from_millis(1500),
        slow: AtomicBool::new(false),
    });
    let app = router(Arc::new(Registry::open(store.clone()).unwrap()));
    let schema = r#"{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"}"#;
    let resp = app
        .clone()
        .oneshot(request("POST", "/subjects/a-value/versions", schema))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    store.slow.store(true, Ordering::Release);
    let started = Instant::now();
    let writer = tokio::spawn(app.clone().oneshot(request(
        "PUT",
        "/config/a-value",
        r#"{"compatibility": "FULL"}"#,
    )));
    // Let the write start and reach the disk.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let read = app
        .clone()
        .oneshot(request("GET", "/subjects/a-value/versions/latest", ""))
        .await
        .unwrap();
    let read_took = started.elapsed();
    assert_eq!(read.status(), StatusCode::OK);
    assert!(
        read_took < Duration::from_millis(1000),
        "a read waited {read_took:?} behind a write to a slow disk"
    );
    let written = writer.await.unwrap().unwrap();
    assert_eq!(written.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the write did wait for its disk"
    );
}
