//! # sluice-rest: Kafka Connect's REST API on Sluice's supervisor
//!
//! **Owns:** the control plane over HTTP: the endpoints, bodies, status codes and error
//! shape (`{"error_code": …, "message": …}`) of Kafka Connect's REST API, so that kcctl,
//! Kafbat UI, Redpanda Console and scripts with curl work unchanged; authentication (basic,
//! bearer) as the schema registry has it; the listener policy (no unauthenticated
//! non-loopback listener).
//!
//! **Must not touch:** how tasks run (that is [`sluice_worker::run::Worker`]); what a
//! request may change is what the worker offers.
//!
//! Built now: `GET /`, `/health`, `/metrics` (Prometheus), `/reload` (hot reload status), `/connectors` (with `expand=status|info`),
//! `/connectors/{name}`, `…/config`, `…/status`, `…/tasks`, `…/tasks/{id}/status`,
//! `…/topics`, `…/offsets`; `POST …/restart` (`includeTasks`, `onlyFailed`), `…/tasks/{id}/
//! restart`; `PUT …/pause`, `…/resume`, `…/stop`; `GET /connector-plugins`,
//! `…/{type}/config`; `PUT …/{type}/config/validate`; `POST /connectors`, `PUT`/`PATCH
//! …/config` and `DELETE` for connectors created over REST (stored by the worker, back after
//! a restart); a connector of the pipeline file answers 409 to those (edit the file);
//! `PATCH`/`DELETE …/offsets` change a stopped connector's positions (KIP-875).
//!
//! ## Example
//! ```no_run
//! # async fn example(worker: std::sync::Arc<sluice_worker::run::Worker>,
//! #                  registry: std::sync::Arc<sluice_connector_sdk::registry::ConnectorRegistry>) {
//! let api = sluice_rest::RestApi {
//!     worker,
//!     registry,
//!     info: sluice_rest::ServerInfo::new("cluster-id", "127.0.0.1:8083", "pipelines.yaml"),
//!     data: None,
//! };
//! let app: axum::Router = sluice_rest::router(api);
//! # let _ = app;
//! # }
//! ```
//!
//! ## Layout
//! - this file: the router and its handlers;
//! - [`shapes`]: Kafka Connect's JSON bodies built from the worker's state;
//! - [`serve`]: the listener (policy check, bind, serve with graceful shutdown);
//! - [`ui`]: the dashboard at `/ui` (page, snapshot, server-sent events, graph layout).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_worker::run::{ControlError, Worker};

pub mod serve;
pub mod shapes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_created;
#[cfg(test)]
mod tests_ui;
pub mod ui;

/// How long a connector's tasks get to stop (committing) on `PUT …/stop`.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What `GET /` and the status bodies say of this worker.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub commit: String,
    pub kafka_cluster_id: String,
    /// `host:port` of the REST listener, as Kafka Connect's `worker_id`.
    pub worker_id: String,
    /// The pipeline file the connectors come from (named in 409s).
    pub pipeline_file: String,
}

impl ServerInfo {
    pub fn new(kafka_cluster_id: &str, worker_id: &str, pipeline_file: &str) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: option_env!("SLUICE_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_string(),
            kafka_cluster_id: kafka_cluster_id.to_string(),
            worker_id: worker_id.to_string(),
            pipeline_file: pipeline_file.to_string(),
        }
    }
}

/// What the API serves: the running worker, the connector types, this worker's identity.
#[derive(Clone)]
pub struct RestApi {
    pub worker: Arc<Worker>,
    pub registry: Arc<ConnectorRegistry>,
    pub info: ServerInfo,
    /// What the dashboard's message browser reads (`None`: it says it cannot).
    pub data: Option<DataAccess>,
}

/// The log the pipeline runs on, and the schema registry Avro keys and values are decoded
/// with (when the pipeline has one).
#[derive(Clone)]
pub struct DataAccess {
    pub log: sluice_log::Log,
    pub schemas: Option<Arc<sluice_schema_registry::registry::Registry>>,
}

/// An error in Kafka Connect's shape: `{"error_code": <HTTP status>, "message": …}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::UnknownConnector(_) | ControlError::UnknownTask(..) => {
                StatusCode::NOT_FOUND
            }
            ControlError::Refused { .. } | ControlError::Exists(_) | ControlError::InFile(_) => {
                StatusCode::CONFLICT
            }
            ControlError::BadRequest(_) | ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_reply(
            self.0,
            &json!({"error_code": self.0.as_u16(), "message": self.1}),
        )
    }
}

fn json_reply(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn ok(body: Value) -> Result<Response, ApiError> {
    Ok(json_reply(StatusCode::OK, &body))
}

fn no_content() -> Result<Response, ApiError> {
    Ok(StatusCode::NO_CONTENT.into_response())
}

type Reply = Result<Response, ApiError>;

/// The query string's pairs, repeated keys kept (`expand=status&expand=info`).
fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A boolean query parameter as Kafka Connect reads one (`true`, case-insensitive).
fn flag(pairs: &[(String, String)], name: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == name && v.eq_ignore_ascii_case("true"))
}

/// The API's routes (no authentication: see [`router_with_auth`]).
pub fn router(api: RestApi) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .route("/ui/snapshot", get(ui::snapshot_json))
        .route("/ui/events", get(ui::events))
        .route("/ui/topics/{topic}/records", get(ui::browse::records))
        .route("/ui/schemas", get(ui::schemas::schemas))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/reload", get(reload_status))
        .route("/connectors", get(list_connectors).post(create_connector))
        .route(
            "/connectors/{name}",
            get(connector_info).delete(delete_connector),
        )
        .route(
            "/connectors/{name}/config",
            get(connector_config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{name}/status", get(connector_status))
        .route("/connectors/{name}/tasks", get(connector_tasks))
        .route("/connectors/{name}/tasks/{id}/status", get(task_status))
        .route("/connectors/{name}/tasks/{id}/restart", post(restart_task))
        .route("/connectors/{name}/restart", post(restart_connector))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(reset_topics))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{plugin}/config", get(plugin_config))
        .route(
            "/connector-plugins/{plugin}/config/validate",
            put(shapes::validate),
        )
        .fallback(|| async { ApiError::not_found("HTTP 404 Not Found") })
        .with_state(Arc::new(api))
}

/// [`router`] behind basic or bearer authentication when any is configured: 401 with the
/// Connect error shape and a `WWW-Authenticate` challenge otherwise.
pub fn router_with_auth(api: RestApi, auth: sluice_listeners::auth::AuthConfig) -> Router {
    sluice_listeners::auth::require(router(api), auth, || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: valid credentials are required".into(),
        )
        .into_response()
    })
}

type Api = State<Arc<RestApi>>;

async fn root(State(api): Api) -> Reply {
    ok(json!({
        "version": api.info.version,
        "commit": api.info.commit,
        "kafka_cluster_id": api.info.kafka_cluster_id,
    }))
}

/// KIP-1017: this worker has started (it answers only once every connector is built).
async fn health(State(_api): Api) -> Reply {
    ok(json!({
        "status": "healthy",
        "message": "Worker has completed startup and is ready to handle requests."
    }))
}

/// Prometheus' text exposition: the tasks' counters and what is read at scrape time.
async fn metrics(State(api): Api) -> Reply {
    let worker = api.worker.clone();
    let text = tokio::task::spawn_blocking(move || worker.metrics_text())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| ApiError::not_found("this worker runs without metrics"))?;
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// The active configuration's hash and time, and the last reload with its errors.
async fn reload_status(State(api): Api) -> Reply {
    ok(shapes::reload(&api.worker.reload_status()))
}

async fn list_connectors(State(api): Api, RawQuery(q): RawQuery) -> Reply {
    let pairs = query_pairs(&q);
    let expand: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.as_str())
        .collect();
    let names = api.worker.connectors();
    if expand.is_empty() {
        return ok(json!(names));
    }
    let mut out = Map::new();
    for name in names {
        let mut entry = Map::new();
        // Unknown expansions are ignored, as Kafka Connect does.
        if expand.contains(&"status") {
            entry.insert("status".into(), shapes::status(&api, &name)?);
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), shapes::info(&api, &name)?);
        }
        out.insert(name, Value::Object(entry));
    }
    ok(Value::Object(out))
}

async fn connector_info(State(api): Api, Path(name): Path<String>) -> Reply {
    ok(shapes::info(&api, &name)?)
}

async fn connector_config(State(api): Api, Path(name): Path<String>) -> Reply {
    ok(Value::Object(shapes::connector_config(&api, &name)?))
}

async fn connector_status(State(api): Api, Path(name): Path<String>) -> Reply {
    ok(shapes::status(&api, &name)?)
}

async fn connector_tasks(State(api): Api, Path(name): Path<String>) -> Reply {
    let plan = api.worker.plan(&name)?;
    let role = api.worker.status(&name)?.role;
    let tasks: Vec<Value> = api
        .worker
        .task_configs(&name)?
        .into_iter()
        .map(|(id, config)| {
            let mut flat = shapes::config(&plan, role);
            for (k, v) in shapes::settings_map(&config) {
                flat.insert(k, v);
            }
            json!({"id": {"connector": name, "task": id}, "config": flat})
        })
        .collect();
    ok(json!(tasks))
}

fn task_id(id: &str) -> Result<u32, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("task id `{id}` is not a number")))
}

async fn task_status(State(api): Api, Path((name, id)): Path<(String, String)>) -> Reply {
    let id = task_id(&id)?;
    let status = api.worker.status(&name)?;
    let task = status
        .tasks
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::from(ControlError::UnknownTask(name.clone(), id)))?;
    ok(shapes::task_state(&api, task))
}

async fn restart_task(State(api): Api, Path((name, id)): Path<(String, String)>) -> Reply {
    api.worker.restart_task(&name, task_id(&id)?)?;
    no_content()
}

/// KIP-745: 204 when only the connector is restarted, 202 with the status otherwise.
async fn restart_connector(
    State(api): Api,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let pairs = query_pairs(&q);
    let (include_tasks, only_failed) = (flag(&pairs, "includeTasks"), flag(&pairs, "onlyFailed"));
    api.worker.status(&name)?;
    if !include_tasks && !only_failed {
        // A Sluice connector has no thread of its own beside its tasks: nothing to restart.
        return no_content();
    }
    let restarting = if include_tasks {
        api.worker.restart_tasks(&name, only_failed)?
    } else {
        Vec::new()
    };
    let mut body = shapes::status(&api, &name)?;
    if let Some(tasks) = body.get_mut("tasks").and_then(Value::as_array_mut) {
        for t in tasks {
            let restarted = t["id"]
                .as_u64()
                .is_some_and(|id| restarting.contains(&(id as u32)));
            if restarted {
                t["state"] = json!("RESTARTING");
                if let Some(o) = t.as_object_mut() {
                    o.remove("trace");
                }
            }
        }
    }
    Ok(json_reply(StatusCode::ACCEPTED, &body))
}

async fn pause(State(api): Api, Path(name): Path<String>) -> Reply {
    // Off the async threads: a pause waits for a reconfiguration under way to finish.
    let worker = api.worker.clone();
    tokio::task::spawn_blocking(move || worker.pause(&name))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn resume(State(api): Api, Path(name): Path<String>) -> Reply {
    let worker = api.worker.clone();
    tokio::task::spawn_blocking(move || worker.resume(&name))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn stop(State(api): Api, Path(name): Path<String>) -> Reply {
    let worker = api.worker.clone();
    let left = tokio::task::spawn_blocking(move || worker.stop_connector(&name, STOP_GRACE))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if !left.is_empty() {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "these tasks did not stop within {} s: {}",
                STOP_GRACE.as_secs(),
                left.join(", ")
            ),
        ));
    }
    no_content()
}

async fn topics(State(api): Api, Path(name): Path<String>) -> Reply {
    let plan = api.worker.plan(&name)?;
    ok(json!({ name.clone(): { "topics": plan.topics } }))
}

async fn reset_topics(State(api): Api, Path(name): Path<String>) -> Reply {
    api.worker.plan(&name)?;
    Err(ApiError(
        StatusCode::NOT_IMPLEMENTED,
        "resetting a connector's active topics is not built in this version of Sluice yet \
         (its topics are the ones the pipeline file names)"
            .into(),
    ))
}

async fn offsets(State(api): Api, Path(name): Path<String>) -> Reply {
    let offsets: Vec<Value> = api
        .worker
        .offsets(&name)?
        .into_iter()
        .map(|(partition, offset)| json!({"partition": partition, "offset": offset}))
        .collect();
    ok(json!({ "offsets": offsets }))
}

/// KIP-875: `{"offsets": [{"partition": {…}, "offset": {…} | null}]}` on a stopped connector.
async fn alter_offsets(
    State(api): Api,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Reply {
    api.worker.plan(&name)?;
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
    let Some(list) = parsed
        .get("offsets")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Err(ApiError::bad_request(
            "the request body must list the offsets to change: {\"offsets\": [{\"partition\": …, \"offset\": …}]}",
        ));
    };
    let changes = list
        .iter()
        .map(|e| (e["partition"].clone(), e["offset"].clone()))
        .collect();
    let message = api.worker.alter_offsets(&name, Some(changes))?;
    ok(json!({ "message": message }))
}

async fn reset_offsets(State(api): Api, Path(name): Path<String>) -> Reply {
    let message = api.worker.alter_offsets(&name, None)?;
    ok(json!({ "message": message }))
}

/// The request body as a JSON object.
fn object_body(body: &[u8], what: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!(
            "the request body must be {what}, found {}",
            match other {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Null => "null",
                _ => "a scalar",
            }
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not JSON: {e}"
        ))),
    }
}

/// Runs a config change off the async threads (it builds connectors and fsyncs), and names
/// the pipeline file when the connector is one of its.
async fn change<T: Send + 'static>(
    api: &Arc<RestApi>,
    f: impl FnOnce(&RestApi) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    let inner = api.clone();
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            ControlError::InFile(n) => in_file(api, &n),
            e => e.into(),
        })
}

/// A connector of the pipeline file is changed by editing the file: 409, whatever the body.
fn refuse_file_connector(api: &RestApi, name: &str) -> Result<(), ApiError> {
    match api.worker.origin(name) {
        Ok(sluice_worker::run::Origin::File) => Err(in_file(api, name)),
        _ => Ok(()),
    }
}

fn in_file(api: &RestApi, name: &str) -> ApiError {
    ApiError(
        StatusCode::CONFLICT,
        format!(
            "Connector {name} is defined in the pipeline file {}: edit the file to change it",
            api.info.pipeline_file
        ),
    )
}

fn created(body: Value) -> Result<Response, ApiError> {
    Ok(json_reply(StatusCode::CREATED, &body))
}

/// `POST /connectors` with `{"name", "config", "initial_state"?}` (KIP-980): 201 and the
/// new connector's `ConnectorInfo`; 409 when the name is taken; 400 when the config is
/// invalid, every problem named with its key.
async fn create_connector(State(api): Api, body: axum::body::Bytes) -> Reply {
    let parsed = object_body(&body, "an object with `name` and `config`")?;
    let Some(name) = parsed
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(ApiError::bad_request(
            "the request needs a connector `name`",
        ));
    };
    let config = match parsed.get("config") {
        Some(Value::Object(c)) => c.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`config` must be an object of settings (Kafka Connect's flat string map)",
            ))
        }
        None => return Err(ApiError::bad_request("the request needs a `config`")),
    };
    let initial = match parsed.get("initial_state").and_then(Value::as_str) {
        None | Some("RUNNING") => sluice_worker::run::State::Running,
        Some("PAUSED") => sluice_worker::run::State::Paused,
        Some("STOPPED") => sluice_worker::run::State::Stopped,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`initial_state` must be RUNNING, PAUSED or STOPPED, found {other}"
            )))
        }
    };
    let n = name.clone();
    change(&api, move |a| {
        a.worker
            .put_connector(&n, config, &a.registry, true, initial)
    })
    .await?;
    created(shapes::info(&api, &name)?)
}

/// `PUT /connectors/{name}/config`: creates (201) or reconfigures (200) a connector.
async fn put_config(State(api): Api, Path(name): Path<String>, body: axum::body::Bytes) -> Reply {
    refuse_file_connector(&api, &name)?;
    let config = object_body(
        &body,
        "an object of settings (Kafka Connect's flat string map)",
    )?;
    let n = name.clone();
    let was_created = change(&api, move |a| {
        a.worker.put_connector(
            &n,
            config,
            &a.registry,
            false,
            sluice_worker::run::State::Running,
        )
    })
    .await?;
    let info = shapes::info(&api, &name)?;
    if was_created {
        created(info)
    } else {
        ok(info)
    }
}

/// `PATCH /connectors/{name}/config` (KIP-477): merges the given keys into the config
/// (`null` removes one).
async fn patch_config(State(api): Api, Path(name): Path<String>, body: axum::body::Bytes) -> Reply {
    refuse_file_connector(&api, &name)?;
    let patch = object_body(&body, "an object of settings to change")?;
    let n = name.clone();
    change(&api, move |a| {
        a.worker.patch_connector(&n, patch, &a.registry)
    })
    .await?;
    ok(shapes::info(&api, &name)?)
}

async fn delete_connector(State(api): Api, Path(name): Path<String>) -> Reply {
    change(&api, move |a| a.worker.delete_connector(&name)).await?;
    no_content()
}

async fn plugins(State(api): Api) -> Reply {
    let mut out: Vec<Value> = Vec::new();
    for (kind, types) in [
        ("source", api.registry.sources().collect::<Vec<_>>()),
        ("sink", api.registry.sinks().collect()),
    ] {
        for t in types {
            out.push(json!({"class": t.name, "type": kind, "version": api.info.version}));
        }
    }
    ok(json!(out))
}

async fn plugin_config(State(api): Api, Path(plugin): Path<String>) -> Reply {
    let t = shapes::plugin(&api.registry, &plugin)?;
    let keys: Vec<Value> = t
        .config
        .leaves()
        .into_iter()
        .map(|(name, f)| shapes::config_key(&name, f, None))
        .collect();
    ok(json!(keys))
}
