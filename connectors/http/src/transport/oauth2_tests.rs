//! OAuth 2.0 client credentials against a real token endpoint and a real resource server on
//! 127.0.0.1 (axum): the token fetched with basic client authentication, cached, fetched
//! again once when the resource server answers 401, and refused credentials stopping the
//! task with a message that names the client but never a secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};

use super::*;
use crate::batch::{BatchLimits, Batcher};
use crate::body::BodyFormat;

#[derive(Default)]
struct Idp {
    /// Tokens handed out; token `n` is `tok-n`.
    issued: AtomicU64,
    /// The resource server takes only tokens above this (a revocation).
    revoked_up_to: AtomicU64,
}

async fn servers() -> (String, Arc<Idp>) {
    let idp = Arc::new(Idp::default());
    let token = {
        let idp = idp.clone();
        move |headers: HeaderMap, body: String| {
            let idp = idp.clone();
            async move {
                // "sluice" : "s3cr&t" form-encoded, then basic auth (RFC 6749 §2.3.1).
                let expected = format!("Basic {}", base64(b"sluice:s3cr%26t"));
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(expected.as_str()) {
                    let error = r#"{"error":"invalid_client"}"#;
                    return (StatusCode::UNAUTHORIZED, error.to_string());
                }
                assert!(
                    body.starts_with("grant_type=client_credentials&scope=write"),
                    "{body}"
                );
                let n = idp.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let answer = format!(
                    r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#
                );
                (StatusCode::OK, answer)
            }
        }
    };
    let api = {
        let idp = idp.clone();
        move |headers: HeaderMap| {
            let idp = idp.clone();
            async move {
                let n: u64 = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer tok-"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if n == 0 || n <= idp.revoked_up_to.load(Ordering::SeqCst) {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                }
            }
        }
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route("/api", axum::routing::post(api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), idp)
}

fn transport(base: &str, secret: &str) -> HttpTransport {
    HttpTransport::new(&TransportConfig {
        method: reqwest::Method::POST,
        headers: Vec::new(),
        content_type: "application/json".into(),
        compression: Compression::None,
        auth: Auth::OAuth2(OAuth2Config {
            token_url: format!("{base}/token"),
            client_id: "sluice".into(),
            client_secret: secret.into(),
            scope: Some("write".into()),
        }),
        timeout: Duration::from_secs(10),
        tls: Default::default(),
    })
    .unwrap()
}

fn batch(url: &str) -> ClosedBatch {
    let mut batcher = Batcher::new(BatchLimits::default(), BodyFormat::JsonArray);
    batcher.add(url, 0, br#"{"a":1}"#, std::time::Instant::now());
    batcher.take().unwrap()
}

#[tokio::test]
async fn the_token_is_cached_and_fetched_again_once_after_a_401() {
    let (base, idp) = servers().await;
    let t = transport(&base, "s3cr&t");
    let api = batch(&format!("{base}/api"));
    for _ in 0..3 {
        assert_eq!(t.send(&api, "k").await.unwrap().status, 200);
    }
    assert_eq!(
        idp.issued.load(Ordering::SeqCst),
        1,
        "one token for three requests"
    );
    // The resource server revokes it: the next request gets a 401, fetches a new token and
    // is sent again, once, without the caller seeing the 401.
    idp.revoked_up_to.store(1, Ordering::SeqCst);
    assert_eq!(t.send(&api, "k").await.unwrap().status, 200);
    assert_eq!(idp.issued.load(Ordering::SeqCst), 2);
    // A server that refuses every token: one fetch more, then its 401 is the answer.
    idp.revoked_up_to.store(u64::MAX, Ordering::SeqCst);
    assert_eq!(t.send(&api, "k").await.unwrap().status, 401);
    assert_eq!(
        idp.issued.load(Ordering::SeqCst),
        3,
        "refreshed once, not in a loop"
    );
}

#[tokio::test]
async fn refused_credentials_stop_with_the_reason_and_no_secret() {
    let (base, _) = servers().await;
    let t = transport(&base, "wrong-secret");
    let Err(NoAnswer::Stop(why)) = t.send(&batch(&format!("{base}/api")), "k").await else {
        panic!("refused credentials stop the task");
    };
    assert!(
        why.contains("answered 401 (invalid_client) to client `sluice`"),
        "{why}"
    );
    assert!(
        why.contains("check auth.oauth2's client_id, client_secret and scope"),
        "{why}"
    );
    assert!(!why.contains("wrong-secret") && !format!("{t:?}").contains("wrong-secret"));
}
