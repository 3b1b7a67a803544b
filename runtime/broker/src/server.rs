//! The TCP listener, connections and request dispatch.
//!
//! Each connection has a reader and a writer task. As in Kafka, the requests of one connection
//! are handled one after another, in order (a producer pipelining batches to a partition must
//! see them stored in the order it sent them); answers go back in the same order. A request
//! that parks (a Fetch long-poll, a JoinGroup waiting for the group) holds back only its own
//! connection, never another. One exception keeps pipelined `acks=all` producers fast: a
//! Produce is appended in order, but its wait for the fsync is handed to the writer, so the
//! next request is appended while the disk works and both share one fsync (group commit).
//! At most `max_in_flight_per_connection` answers wait for the writer; past that the reader
//! stops reading, which is the backpressure a client sees.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::BrokerState;
use crate::{apis, codes, BrokerError};

/// What the reader hands the writer, in request order.
enum Handled {
    Now(Reply),
    /// An answer that is still being completed (a Produce waiting for its fsync).
    Later(tokio::task::JoinHandle<Reply>),
}

/// An answer to one request.
pub(crate) enum Reply {
    Frame(BytesMut),
    /// `acks=0` produce: no answer at all.
    Nothing,
    /// A request the connection cannot survive (malformed, unknown API): close it.
    Close(String),
}

/// Request context handed to every handler.
pub(crate) struct Ctx {
    pub state: Arc<BrokerState>,
    pub version: i16,
    pub client_id: String,
    pub peer: SocketAddr,
}

/// A bound, not yet serving, broker.
pub struct Broker {
    state: Arc<BrokerState>,
    listener: TcpListener,
    warning: Option<sluice_listeners::Warning>,
}

/// Memory for request frames being received, shared by every connection.
struct RequestMemory {
    small: Semaphore,
    large: Semaphore,
}

impl RequestMemory {
    fn new(config: &crate::BrokerConfig) -> RequestMemory {
        let (small, large) = config.request_pools();
        RequestMemory {
            small: Semaphore::new(small.min(Semaphore::MAX_PERMITS)),
            large: Semaphore::new(large.min(Semaphore::MAX_PERMITS)),
        }
    }

    /// Waits until `size` bytes are free for one frame (its whole declared size, so that a
    /// frame once started is never starved half way).
    async fn reserve(&self, size: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let pool = if size <= crate::config::SMALL_REQUEST_BYTES {
            &self.small
        } else {
            &self.large
        };
        pool.acquire_many(u32::try_from(size).ok()?).await.ok()
    }
}

impl Broker {
    /// Opens the Kafka listener the way every command does: checks the listener policy
    /// (`sluice_listeners`), binds, then builds the state with the port actually bound (so
    /// `127.0.0.1:0` advertises the real port).
    pub async fn open(
        log: sluice_log::Log,
        config: crate::BrokerConfig,
    ) -> Result<Broker, BrokerError> {
        let warning = check_listener(&config)?;
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?
            .port();
        let config = crate::BrokerConfig {
            listen: SocketAddr::new(addr.ip(), port),
            ..config
        };
        let state = BrokerState::new(log, config, port)?;
        Ok(Broker {
            state,
            listener,
            warning,
        })
    }

    /// Binds the listener for a state built by the caller (who shares it with other parts of
    /// its runtime); the same listener policy applies.
    pub async fn bind(state: Arc<BrokerState>) -> Result<Broker, BrokerError> {
        let warning = check_listener(&state.config)?;
        let addr = state.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
        Ok(Broker {
            state,
            listener,
            warning,
        })
    }

    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// What the operator should be told about this listener (an unauthenticated listener
    /// beyond loopback that they opted into).
    pub fn warning(&self) -> Option<&sluice_listeners::Warning> {
        self.warning.as_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// Serves until `shutdown` fires, then lets in-flight requests finish within the grace
    /// period and aborts the rest, naming how many were cut off.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let connections = Arc::new(AtomicUsize::new(0));
        let memory = Arc::new(RequestMemory::new(&self.state.config));
        let mut tasks = JoinSet::new();
        let ticker_state = self.state.clone();
        let ticker_stop = shutdown.child_token();
        tasks.spawn(async move { ticker_state.groups.run_expiry(ticker_stop).await });
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    if connections.load(Ordering::Acquire) >= self.state.config.max_connections {
                        tracing::warn!(%peer, limit = self.state.config.max_connections, "too many connections: closing the new one");
                        drop(stream);
                        continue;
                    }
                    connections.fetch_add(1, Ordering::AcqRel);
                    let (state, cancel, counter, memory) = (self.state.clone(), shutdown.child_token(), connections.clone(), memory.clone());
                    tasks.spawn(async move {
                        connection(state, memory, stream, peer, cancel).await;
                        counter.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            }
        }
        let grace = self.state.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                grace_secs = grace.as_secs(),
                "shutdown: aborting connections still busy after the grace period"
            );
            tasks.abort_all();
        }
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.groups.persist_now()).await;
        Ok(())
    }
}

fn check_listener(
    config: &crate::BrokerConfig,
) -> Result<Option<sluice_listeners::Warning>, BrokerError> {
    config.validate().map_err(BrokerError::Config)?;
    Ok(sluice_listeners::check(&sluice_listeners::Listener {
        service: sluice_listeners::Service::Kafka,
        addr: config.listen,
        authenticated: false,
        allow_unauthenticated: config.allow_unauthenticated,
    })?)
}

/// Bytes read from the socket at most per step while a frame arrives: the buffer grows with
/// what arrived, not with what the frame declared.
const READ_STEP: usize = 1024 * 1024;

async fn connection(
    state: Arc<BrokerState>,
    memory: Arc<RequestMemory>,
    stream: TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    tracing::debug!(%peer, "connection opened");
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Handled>(state.config.max_in_flight_per_connection);
    let closing = cancel.child_token();
    let writer_closing = closing.clone();
    let writer_state = state.clone();
    state.metrics.connection_opened();
    let writer = tokio::spawn(async move {
        while let Some(handled) = rx.recv().await {
            let reply = match handled {
                Handled::Now(reply) => Ok(reply),
                Handled::Later(handle) => handle.await,
            };
            match reply {
                Ok(Reply::Frame(bytes)) => {
                    if wr.write_all(&bytes).await.is_err() {
                        break;
                    }
                    writer_state.metrics.written(bytes.len());
                }
                Ok(Reply::Nothing) => {}
                Ok(Reply::Close(reason)) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    break;
                }
                Err(e) => {
                    tracing::error!(%peer, error = %e, "request task failed");
                    break;
                }
            }
        }
        writer_closing.cancel();
        let _ = wr.shutdown().await;
    });
    let max = state.config.max_request_bytes;
    loop {
        let size = tokio::select! {
            _ = closing.cancelled() => break,
            r = rd.read_i32() => match r { Ok(s) => s, Err(_) => break },
        };
        if size < 8 || size as usize > max {
            tracing::warn!(%peer, size, limit = max, "request frame size out of bounds: closing connection");
            break;
        }
        let size = size as usize;
        let permit = tokio::select! {
            _ = closing.cancelled() => break,
            p = memory.reserve(size) => match p { Some(p) => p, None => break },
        };
        let mut frame: Vec<u8> = Vec::with_capacity(size.min(64 * 1024));
        let read = tokio::select! {
            _ = closing.cancelled() => break,
            r = read_frame(&mut rd, &mut frame, size) => r,
        };
        if read.is_err() {
            tracing::debug!(%peer, "connection closed inside a request");
            break;
        }
        state.metrics.read(size + 4);
        let handled = tokio::select! {
            _ = closing.cancelled() => break,
            h = handle_request(state.clone(), Bytes::from(frame), peer) => h,
        };
        // The frame (and what decoding borrowed from it) is gone: its memory is free again.
        drop(permit);
        if tx.send(handled).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
    state.metrics.connection_closed();
    tracing::debug!(%peer, "connection closed");
}

/// Reads exactly `size` bytes into `frame`, growing it as they arrive (doubling, capped at
/// `size`), so that a client declaring a large frame and sending it slowly holds only what
/// it sent.
async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    frame: &mut Vec<u8>,
    size: usize,
) -> std::io::Result<()> {
    while frame.len() < size {
        if frame.len() == frame.capacity() {
            let target = (frame.capacity() * 2).clamp(64 * 1024, size);
            frame.reserve_exact(target - frame.len());
        }
        let want = (size - frame.len()).min(READ_STEP) as u64;
        let n = (&mut *rd).take(want).read_buf(frame).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// The fixed start of every request header: API key, version, correlation id.
fn header_prefix(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let prefix: &[u8; 8] = frame.get(..8)?.try_into().ok()?;
    Some((
        i16::from_be_bytes([prefix[0], prefix[1]]),
        i16::from_be_bytes([prefix[2], prefix[3]]),
        i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]),
    ))
}

/// Answers one request frame (without its size prefix) as a connection would, without a
/// socket: the response frame (with its size prefix), `None` when the request gets no answer
/// (`acks=0`), or the reason the connection would be closed. For tests and fuzzing.
pub async fn answer_frame(
    state: Arc<BrokerState>,
    frame_bytes: Bytes,
) -> Result<Option<Vec<u8>>, String> {
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    let reply = match handle_request(state, frame_bytes, peer).await {
        Handled::Now(reply) => reply,
        Handled::Later(handle) => handle.await.map_err(|e| e.to_string())?,
    };
    match reply {
        Reply::Frame(bytes) => Ok(Some(bytes.to_vec())),
        Reply::Nothing => Ok(None),
        Reply::Close(reason) => Err(reason),
    }
}

fn frame(correlation_id: i32, header_version: i16, body: &impl Encodable, version: i16) -> Reply {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if let Err(e) = header
        .encode(&mut out, header_version)
        .and_then(|_| body.encode(&mut out, version))
    {
        return Reply::Close(format!("could not encode response: {e}"));
    }
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Reply::Frame(out)
}

fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default();
    resp.error_code = error_code;
    resp.api_keys = apis::SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect();
    resp
}

macro_rules! dispatch {
    ($ctx:expr, $buf:expr, $key:expr, $corr:expr, $req:ty, $handler:path) => {{
        let req = match <$req>::decode(&mut $buf, $ctx.version) {
            Ok(r) => r,
            Err(e) => {
                return Reply::Close(format!(
                    "malformed {:?} v{} request: {e}",
                    $key, $ctx.version
                ))
            }
        };
        let version = $ctx.version;
        let resp = $handler(&$ctx, req).await;
        frame($corr, $key.response_header_version(version), &resp, version)
    }};
}

/// Answers one request and counts it (by API and outcome, with its latency; a Produce's
/// when its answer is ready).
async fn handle_request(state: Arc<BrokerState>, frame_bytes: Bytes, peer: SocketAddr) -> Handled {
    let started = std::time::Instant::now();
    let key = header_prefix(&frame_bytes).and_then(|(k, _, _)| ApiKey::try_from(k).ok());
    let counted = state.clone();
    let handled = route_request(state, frame_bytes, peer, started).await;
    if let Handled::Now(reply) = &handled {
        match (reply, key) {
            (Reply::Close(_), _) | (_, None) => counted.metrics.closed(key),
            (_, Some(key)) => counted.metrics.answered(key, started.elapsed()),
        }
    }
    handled
}

async fn route_request(
    state: Arc<BrokerState>,
    frame_bytes: Bytes,
    peer: SocketAddr,
    started: std::time::Instant,
) -> Handled {
    let Some((api_key, version, correlation_id)) = header_prefix(&frame_bytes) else {
        return Handled::Now(Reply::Close("frame shorter than a request header".into()));
    };
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Handled::Now(Reply::Close(format!("unknown API key {api_key}")));
    };
    let Some((lo, hi)) = apis::range(key) else {
        return Handled::Now(Reply::Close(format!(
            "API {key:?} is not served by this broker"
        )));
    };
    if key == ApiKey::ApiVersions && version > hi {
        // A newer client: answer in v0 form with UNSUPPORTED_VERSION and our ranges, without
        // decoding a body we may not understand. The client retries with a version we list.
        return Handled::Now(frame(
            correlation_id,
            0,
            &api_versions_body(codes::UNSUPPORTED_VERSION),
            0,
        ));
    }
    if version < lo || version > hi {
        return Handled::Now(Reply::Close(format!(
            "{key:?} v{version} is outside the served range {lo}..={hi}"
        )));
    }
    let mut buf = frame_bytes;
    let header = match decode_request_header_from_buffer(&mut buf) {
        Ok(h) => h,
        Err(e) => return Handled::Now(Reply::Close(format!("malformed request header: {e}"))),
    };
    let client_id = header
        .client_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let ctx = Ctx {
        state,
        version,
        client_id,
        peer,
    };
    if key != ApiKey::Produce {
        return Handled::Now(handle(ctx, buf, key, correlation_id).await);
    }
    let req = match ProduceRequest::decode(&mut buf, version) {
        Ok(r) => r,
        Err(e) => {
            return Handled::Now(Reply::Close(format!(
                "malformed Produce v{version} request: {e}"
            )))
        }
    };
    let acks = req.acks;
    let completion = crate::produce::produce(&ctx, req).await;
    let header_version = key.response_header_version(version);
    let state = ctx.state;
    Handled::Later(tokio::spawn(async move {
        let resp = completion.await;
        state.metrics.answered(ApiKey::Produce, started.elapsed());
        if acks == 0 {
            Reply::Nothing
        } else {
            frame(correlation_id, header_version, &resp, version)
        }
    }))
}

/// Every API but Produce: decoded, handled and answered in one go.
async fn handle(ctx: Ctx, mut buf: Bytes, key: ApiKey, correlation_id: i32) -> Reply {
    let version = ctx.version;
    match key {
        ApiKey::ApiVersions => {
            if let Err(e) = ApiVersionsRequest::decode(&mut buf, version) {
                return Reply::Close(format!("malformed ApiVersions request: {e}"));
            }
            // The ApiVersions response header is always v0, whatever the request version.
            frame(correlation_id, 0, &api_versions_body(codes::NONE), version)
        }
        ApiKey::Metadata => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            MetadataRequest,
            crate::metadata::metadata
        ),
        ApiKey::Fetch => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            FetchRequest,
            crate::fetch::fetch
        ),
        ApiKey::ListOffsets => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            ListOffsetsRequest,
            crate::fetch::list_offsets
        ),
        ApiKey::FindCoordinator => {
            dispatch!(
                ctx,
                buf,
                key,
                correlation_id,
                FindCoordinatorRequest,
                crate::metadata::find_coordinator
            )
        }
        ApiKey::JoinGroup => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            JoinGroupRequest,
            crate::group_api::join_group
        ),
        ApiKey::SyncGroup => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            SyncGroupRequest,
            crate::group_api::sync_group
        ),
        ApiKey::Heartbeat => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            HeartbeatRequest,
            crate::group_api::heartbeat
        ),
        ApiKey::LeaveGroup => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            LeaveGroupRequest,
            crate::group_api::leave_group
        ),
        ApiKey::OffsetCommit => {
            dispatch!(
                ctx,
                buf,
                key,
                correlation_id,
                OffsetCommitRequest,
                crate::group_api::offset_commit
            )
        }
        ApiKey::OffsetFetch => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            OffsetFetchRequest,
            crate::group_api::offset_fetch
        ),
        ApiKey::ListGroups => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            ListGroupsRequest,
            crate::group_api::list_groups
        ),
        ApiKey::DescribeGroups => {
            dispatch!(
                ctx,
                buf,
                key,
                correlation_id,
                DescribeGroupsRequest,
                crate::group_api::describe_groups
            )
        }
        ApiKey::CreateTopics => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            CreateTopicsRequest,
            crate::admin::create_topics
        ),
        ApiKey::DeleteTopics => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            DeleteTopicsRequest,
            crate::admin::delete_topics
        ),
        ApiKey::DescribeConfigs => {
            dispatch!(
                ctx,
                buf,
                key,
                correlation_id,
                DescribeConfigsRequest,
                crate::admin::describe_configs
            )
        }
        ApiKey::CreatePartitions => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            CreatePartitionsRequest,
            crate::admin::create_partitions
        ),
        ApiKey::AlterConfigs => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            AlterConfigsRequest,
            crate::admin::alter_configs
        ),
        ApiKey::IncrementalAlterConfigs => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            IncrementalAlterConfigsRequest,
            crate::admin::incremental_alter_configs
        ),
        ApiKey::DeleteRecords => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            DeleteRecordsRequest,
            crate::admin::delete_records
        ),
        ApiKey::DeleteGroups => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            DeleteGroupsRequest,
            crate::group_admin::delete_groups
        ),
        ApiKey::OffsetDelete => dispatch!(
            ctx,
            buf,
            key,
            correlation_id,
            OffsetDeleteRequest,
            crate::group_admin::offset_delete
        ),
        ApiKey::InitProducerId => {
            dispatch!(
                ctx,
                buf,
                key,
                correlation_id,
                InitProducerIdRequest,
                crate::produce::init_producer_id
            )
        }
        other => Reply::Close(format!("API {other:?} is not served by this broker")),
    }
}
