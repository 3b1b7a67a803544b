//! One `http_server` task: the listener on its own small runtime, an inbox between the
//! callers and `poll`, and the callers' waits released by `committed`.
//!
//! Each call's records get consecutive sequence numbers, which are their source positions;
//! the call waits on the number of its last record. When the runtime reports a position
//! committed (the records up to it are in the log), every call at or below it gets its 200.
//! `pending` counts the records taken and not yet committed: past `max_pending` a call is
//! refused with 503 at once, so a log that stops taking records (a full disk, a failed
//! fsync) costs a bounded amount of memory and no caller hangs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SourcePosition, SourceRecord, SourceTask, TaskInfo,
};
use sluice_connector_sdk::data::Payload;
use tokio::sync::oneshot;

use super::decode::decode;
use super::guard::{CallerAuth, RateLimit};
use super::{RequestPart, ServerSettings};

/// How long `stop` lets answers already decided reach their callers.
const STOP_GRACE: Duration = Duration::from_secs(2);

struct Waiter {
    records: usize,
    done: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inbox {
    records: VecDeque<SourceRecord>,
    next_seq: u64,
    /// Records taken and not yet committed.
    pending: usize,
    /// Calls waiting, by the sequence number of their last record.
    waiters: BTreeMap<u64, Waiter>,
    /// Why calls are refused now (the task is stopping).
    closed: Option<&'static str>,
}

/// What the handler and the task share.
pub struct Shared {
    settings: ServerSettings,
    stream: Arc<str>,
    inbox: Mutex<Inbox>,
    arrived: Condvar,
    limit: Option<Mutex<RateLimit>>,
}

impl Shared {
    pub fn new(settings: ServerSettings) -> Arc<Shared> {
        let limit = settings
            .rate_limit
            .map(|(requests, per)| Mutex::new(RateLimit::new(requests, per)));
        Arc::new(Shared {
            stream: format!("http_server:{}", settings.path).into(),
            settings,
            inbox: Mutex::new(Inbox::default()),
            arrived: Condvar::new(),
            limit,
        })
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Up to `max` records taken by callers, waiting at most `timeout` for the first.
    pub fn take(&self, max: usize, timeout: Duration) -> Vec<SourceRecord> {
        let deadline = Instant::now() + timeout;
        let mut inbox = self.inbox();
        while inbox.records.is_empty() && inbox.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            inbox = self
                .arrived
                .wait_timeout(inbox, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let n = inbox.records.len().min(max.max(1));
        inbox.records.drain(..n).collect()
    }

    /// The records up to `seq` are in the log: their callers get their answer.
    pub fn committed(&self, seq: u64) {
        let mut inbox = self.inbox();
        let later = inbox.waiters.split_off(&(seq + 1));
        let done = std::mem::replace(&mut inbox.waiters, later);
        for (_, w) in done {
            inbox.pending = inbox.pending.saturating_sub(w.records);
            let _ = w.done.send(()); // a caller that gave up is gone: fine
        }
    }

    /// No more calls; those waiting get 503 (their records may or may not reach the log,
    /// so they retry, at least once).
    pub fn close(&self, why: &'static str) {
        let mut inbox = self.inbox();
        inbox.closed = Some(why);
        inbox.waiters.clear(); // dropping the senders answers every waiting call
        inbox.records.clear();
        inbox.pending = 0;
        self.arrived.notify_all();
    }
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error_code": status.as_u16(), "message": message.into()});
    (status, axum::Json(body)).into_response()
}

fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn unauthorized(auth: &CallerAuth, why: impl Into<String>) -> Response {
    let mut response = answer(StatusCode::UNAUTHORIZED, why);
    let challenge = match auth {
        CallerAuth::Basic { .. } => Some("Basic realm=\"sluice\""),
        CallerAuth::Bearer(_) => Some("Bearer"),
        _ => None,
    };
    if let Some(c) = challenge {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    response
}

/// The router: `path` (POST) answered by [`call`].
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let path = shared.settings.path.clone();
    axum::Router::new()
        .route(&path, axum::routing::post(call))
        // The body limit is ours (413 with a message); axum's default would cut at 2 MB.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn call(
    State(shared): State<Arc<Shared>>,
    params: RawPathParams,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let s = &shared.settings;
    if let Some(limit) = &shared.limit {
        let taken = limit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now());
        if let Err(wait) = taken {
            let r = answer(
                StatusCode::TOO_MANY_REQUESTS,
                "over the rate limit: retry after the time Retry-After gives",
            );
            return with_retry_after(r, wait);
        }
    }
    if let Some(why) = shared.inbox().closed {
        return with_retry_after(
            answer(StatusCode::SERVICE_UNAVAILABLE, why),
            Duration::from_secs(1),
        );
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = s.auth.check_header(text("authorization")) {
        return unauthorized(&s.auth, why);
    }
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than max_body ({} bytes)", s.max_body),
        )
    };
    if text("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > s.max_body)
    {
        return too_large();
    }
    let bytes: Bytes = match axum::body::to_bytes(body, s.max_body).await {
        Ok(b) => b,
        Err(e) => {
            // The limit is the only error a complete body can meet here.
            let source = std::error::Error::source(&e).map(|c| c.to_string());
            if source.is_some_and(|c| c.contains("length limit")) {
                return too_large();
            }
            return answer(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            );
        }
    };
    if let CallerAuth::HmacSha256 { header, .. } = &s.auth {
        if let Err(why) = s.auth.check_signature(text(header), &bytes) {
            return unauthorized(&s.auth, why);
        }
    }
    let decoded = match decode(s.body, bytes) {
        Ok(d) => d,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let params: HashMap<&str, &str> = params.iter().collect();
    let part = |p: &RequestPart| -> Option<Vec<u8>> {
        match p {
            RequestPart::Header(name) => headers.get(name).map(|v| v.as_bytes().to_vec()),
            RequestPart::Path(name) => params.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
            RequestPart::Pointer(_) => None,
        }
    };
    let record_headers: Vec<(String, Vec<u8>)> = s
        .record_headers
        .iter()
        .filter_map(|p| {
            let name = match p {
                RequestPart::Header(n) | RequestPart::Path(n) | RequestPart::Pointer(n) => n,
            };
            part(p).map(|v| (name.clone(), v))
        })
        .collect();
    let count = decoded.len();
    if count == 0 {
        return (StatusCode::OK, axum::Json(json!({"records": 0}))).into_response();
    }
    if count > s.max_pending {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body holds {count} records, more than max_pending ({})",
                s.max_pending
            ),
        );
    }
    let (done, acknowledged) = oneshot::channel();
    {
        let mut inbox = shared.inbox();
        if let Some(why) = inbox.closed {
            return with_retry_after(
                answer(StatusCode::SERVICE_UNAVAILABLE, why),
                Duration::from_secs(1),
            );
        }
        if inbox.pending + count > s.max_pending {
            let r = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} records are waiting for the log (max_pending {}): retry later",
                    inbox.pending, s.max_pending
                ),
            );
            return with_retry_after(r, Duration::from_secs(1));
        }
        for d in decoded {
            let key = match &s.key_from {
                Some(RequestPart::Pointer(p)) => d
                    .doc
                    .as_ref()
                    .and_then(|doc| doc.pointer(p))
                    .and_then(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(t) => Some(t.clone().into_bytes()),
                        other => Some(other.to_string().into_bytes()),
                    }),
                Some(p) => part(p),
                None => headers
                    .get("idempotency-key")
                    .map(|v| v.as_bytes().to_vec()),
            };
            let seq = inbox.next_seq;
            inbox.next_seq += 1;
            inbox.records.push_back(SourceRecord {
                topic: None,
                partition: None,
                key: key.map(|k| Payload::Raw(Bytes::from(k))),
                value: Some(Payload::Raw(d.value)),
                headers: record_headers.clone(),
                timestamp: None,
                position: SourcePosition {
                    stream: shared.stream.clone(),
                    offset: json!(seq),
                },
            });
        }
        inbox.pending += count;
        let last = inbox.next_seq - 1;
        inbox.waiters.insert(
            last,
            Waiter {
                records: count,
                done,
            },
        );
    }
    shared.arrived.notify_one();
    match tokio::time::timeout(s.ack_timeout, acknowledged).await {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(json!({"records": count}))).into_response(),
        Ok(Err(_)) => with_retry_after(
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline stopped before the records were in the log: retry",
            ),
            Duration::from_secs(1),
        ),
        Err(_) => with_retry_after(
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the records were not in the log within ack_timeout ({} ms): retry (the records may arrive twice)",
                    s.ack_timeout.as_millis()
                ),
            ),
            Duration::from_secs(1),
        ),
    }
}

/// A task of the `http_server` source.
pub struct ServerTask {
    info: TaskInfo,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    serving: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl ServerTask {
    pub fn new(info: TaskInfo, settings: ServerSettings) -> Result<ServerTask> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("sluice-webhook-{}", info.connector))
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectorError::fatal(format!("could not start the webhook's threads: {e}"))
            })?;
        Ok(ServerTask {
            info,
            shared: Shared::new(settings),
            runtime: Some(runtime),
            serving: None,
        })
    }
}

impl SourceTask for ServerTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        // Numbers go on from the last committed one, so a position never means two records.
        if let Some(seq) = committed
            .iter()
            .find(|p| p.stream == self.shared.stream)
            .and_then(|p| p.offset.as_u64())
        {
            self.shared.inbox().next_seq = seq + 1;
        }
        let addr = self.shared.settings.listen;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                ConnectorError::fatal(format!(
                    "cannot listen on {addr}: {e} (is another process using it?)"
                ))
            })?;
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| ConnectorError::fatal("the webhook task is stopped"))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| ConnectorError::fatal(format!("cannot listen on {addr}: {e}")))?
        };
        let app = router(self.shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let connector = self.info.connector.clone();
        let serving = runtime.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(connector = %connector, "the webhook listener failed: {e}");
            }
        });
        self.serving = Some((stop, serving));
        Ok(())
    }

    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        Ok(self.shared.take(max_records, timeout))
    }

    fn committed(&mut self, positions: Vec<SourcePosition>) -> Result<()> {
        if let Some(seq) = positions
            .iter()
            .filter(|p| p.stream == self.shared.stream)
            .filter_map(|p| p.offset.as_u64())
            .max()
        {
            self.shared.committed(seq);
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.shared.close("the pipeline is stopping: retry");
        if let (Some(runtime), Some((stop, serving))) = (self.runtime.as_ref(), self.serving.take())
        {
            let _ = stop.send(());
            let _ = runtime.block_on(async { tokio::time::timeout(STOP_GRACE, serving).await });
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        Ok(())
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.shared.close("the pipeline is stopping: retry");
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
