//! Against a real HTTP server on 127.0.0.1 (axum), not a mock.

use super::*;
use crate::batch::{BatchLimits, Batcher};
use crate::body::BodyFormat;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn server(status: u16) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            log.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                path: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
                body: body.to_vec(),
            });
            axum::response::Response::builder()
                .status(status)
                .header("retry-after", "3")
                .body(axum::body::Body::from("x".repeat(3000)))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), seen)
}

fn batch(url: &str) -> ClosedBatch {
    let mut batcher = Batcher::new(BatchLimits::default(), BodyFormat::JsonArray);
    batcher.add(url, 5, br#"{"a":1}"#, Instant::now());
    batcher.add(url, 6, br#"{"a":2}"#, Instant::now());
    batcher.take().unwrap()
}

fn config(compression: Compression, auth: Auth) -> TransportConfig {
    TransportConfig {
        tls: Default::default(),
        method: reqwest::Method::PUT,
        headers: vec![("X-Team".into(), "payments".into())],
        content_type: "application/json".into(),
        compression,
        auth,
        timeout: Duration::from_secs(10),
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn sends_method_headers_auth_key_and_compressed_body() {
    let (base, seen) = server(201).await;
    let auth = Auth::Basic {
        username: "ops".into(),
        password: "s3cret".into(),
    };
    assert!(!format!("{auth:?}").contains("s3cret"));
    let transport = HttpTransport::new(&config(Compression::Gzip, auth)).unwrap();
    let answer = transport
        .send(&batch(&format!("{base}/in/orders")), "orders/0/5-6")
        .await
        .unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(
        answer.body.len(),
        BODY_EXCERPT,
        "only the start of the answer is kept"
    );
    assert_eq!(answer.retry_after.as_deref(), Some("3"));
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("PUT", "/in/orders")
    );
    assert_eq!(header(&seen, "x-team"), Some("payments"));
    assert_eq!(header(&seen, "idempotency-key"), Some("orders/0/5-6"));
    assert_eq!(header(&seen, "content-encoding"), Some("gzip"));
    assert_eq!(header(&seen, "content-type"), Some("application/json"));
    assert_eq!(
        header(&seen, "authorization"),
        Some("Basic b3BzOnMzY3JldA==")
    );
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(&seen.body[..])
        .read_to_end(&mut body)
        .unwrap();
    assert_eq!(body, br#"[{"a":1},{"a":2}]"#);
}

#[tokio::test]
async fn bearer_tokens_and_plain_bodies() {
    let (base, seen) = server(503).await;
    let transport =
        HttpTransport::new(&config(Compression::None, Auth::Bearer("tok".into()))).unwrap();
    let answer = transport.send(&batch(&base), "t/0/5-6").await.unwrap();
    assert_eq!(answer.status, 503);
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(header(&seen, "authorization"), Some("Bearer tok"));
    assert_eq!(header(&seen, "content-encoding"), None);
    assert_eq!(seen.body, br#"[{"a":1},{"a":2}]"#);
}

#[tokio::test]
async fn no_server_is_no_answer_naming_the_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let transport = HttpTransport::new(&config(Compression::None, Auth::None)).unwrap();
    let Err(NoAnswer::Lost(why)) = transport
        .send(&batch(&format!("http://{address}/x")), "k")
        .await
    else {
        panic!("a closed port must be no answer");
    };
    assert!(why.to_lowercase().contains("connection refused"), "{why}");
}

#[test]
fn bad_headers_are_refused_at_build() {
    let mut bad = config(Compression::None, Auth::None);
    bad.headers = vec![("bad header".into(), "v".into())];
    assert_eq!(
        HttpTransport::new(&bad).unwrap_err(),
        TransportError::HeaderName {
            name: "bad header".into()
        }
    );
    bad.headers = vec![("x-ok".into(), "line\nbreak".into())];
    assert!(matches!(
        HttpTransport::new(&bad).unwrap_err(),
        TransportError::HeaderValue { .. }
    ));
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}
