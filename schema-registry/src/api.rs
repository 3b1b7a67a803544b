//! The Confluent Schema Registry v1 REST API over [`Registry`]: same paths, bodies, status
//! codes and `error_code`s, so existing clients work unchanged. [`router`] builds the axum
//! router; it is tested without a socket and served by `sluice registry`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::registry::{Registry, RegistryError, SchemaRequest, SubjectVersion, VersionSpec};

/// Requests larger than this are refused (a schema is rarely past a few hundred KiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Shared = State<Arc<Registry>>;

/// A JSON answer with the registry's content type.
struct Reply(StatusCode, Value);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = (self.0, self.1.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        resp
    }
}

fn ok(v: Value) -> Reply {
    Reply(StatusCode::OK, v)
}

/// Errors in Confluent's envelope: `{"error_code": N, "message": "..."}`.
struct ApiError(StatusCode, u32, String);

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError(status, e.error_code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Reply(self.0, json!({"error_code": self.1, "message": self.2})).into_response()
    }
}

type ApiResult = Result<Reply, ApiError>;

/// Runs a registry write on the blocking pool. Writes fsync before they answer (and wait for
/// each other): on the async threads, which in `sluice run` also serve Kafka clients, a slow
/// disk would stall everything else.
async fn blocking<T: Send + 'static>(
    registry: Arc<Registry>,
    write: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || write(&registry))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                format!("the registry's write task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError(
            status,
            42209,
            format!("request body too large: the limit is {MAX_BODY_BYTES} bytes"),
        );
    }
    ApiError(
        StatusCode::UNPROCESSABLE_ENTITY,
        422,
        format!("unreadable request body: {e}"),
    )
}

fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            422,
            format!("malformed request body: {e}"),
        )
    })
}

fn version_json(v: &SubjectVersion) -> Value {
    let mut out =
        json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema});
    if v.schema_type != "AVRO" {
        out["schemaType"] = json!(v.schema_type);
    }
    if !v.references.is_empty() {
        out["references"] = json!(v.references);
    }
    if v.deleted {
        out["deleted"] = json!(true);
    }
    out
}

/// Query flags as clients send them: `true`, `True`, `1`… (Python's client sends `False`).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "`{other}` is not true or false"
        ))),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Flags {
    #[serde(default, deserialize_with = "lenient_bool")]
    deleted: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    permanent: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    verbose: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    default_to_global: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    force: bool,
    subject_prefix: Option<String>,
    /// Accepted for compatibility: schemas are always stored in normalized form.
    #[serde(default, deserialize_with = "lenient_bool")]
    #[allow(dead_code)]
    normalize: bool,
}

/// Builds the router (tests call it without a socket).
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_raw_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route("/mode/{subject}", get(get_mode).put(put_mode))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            registry.clone(),
            count_request,
        ))
        .with_state(registry)
}

/// Counts each request by its route's template (`/subjects/{subject}/versions`), method
/// and status; a path no route matches counts as `unmatched`.
async fn count_request(
    State(registry): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let resp = next.run(req).await;
    registry.request_metrics().observe(
        &route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

fn parse_id(id: &str) -> Result<u32, ApiError> {
    id.parse()
        .map_err(|_| RegistryError::SchemaNotFound(id.to_string()).into())
}

async fn schema_by_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    let (schema, schema_type, references) = r.schema_by_id(parse_id(&id)?)?;
    let mut out = json!({"schema": schema});
    if schema_type != "AVRO" {
        out["schemaType"] = json!(schema_type);
    }
    if !references.is_empty() {
        out["references"] = json!(references);
    }
    Ok(ok(out))
}

fn raw(schema: &str) -> Reply {
    ok(serde_json::from_str(schema).unwrap_or_else(|_| Value::String(schema.to_string())))
}

async fn raw_schema_by_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    Ok(raw(&r.schema_by_id(parse_id(&id)?)?.0))
}

async fn subjects_of_id(
    State(r): Shared,
    Path(id): Path<String>,
    Query(f): Query<Flags>,
) -> ApiResult {
    let mut subjects: Vec<String> = r
        .versions_of_id(parse_id(&id)?, f.deleted)?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

async fn versions_of_id(
    State(r): Shared,
    Path(id): Path<String>,
    Query(f): Query<Flags>,
) -> ApiResult {
    let pairs = r.versions_of_id(parse_id(&id)?, f.deleted)?;
    Ok(ok(Value::Array(
        pairs
            .into_iter()
            .map(|(s, v)| json!({"subject": s, "version": v}))
            .collect(),
    )))
}

async fn list_subjects(State(r): Shared, Query(f): Query<Flags>) -> ApiResult {
    Ok(ok(
        json!(r.subjects(f.deleted, f.subject_prefix.as_deref())),
    ))
}

async fn lookup(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: SchemaRequest = parse_body(body)?;
    Ok(ok(version_json(&r.lookup(&subject, &req, f.deleted)?)))
}

async fn delete_subject(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> ApiResult {
    let deleted = blocking(r, move |r| r.delete_subject(&subject, f.permanent)).await?;
    Ok(ok(json!(deleted)))
}

async fn list_versions(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> ApiResult {
    Ok(ok(json!(r.versions(&subject, f.deleted)?)))
}

async fn register(
    State(r): Shared,
    Path(subject): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: SchemaRequest = parse_body(body)?;
    let (id, version, stored) = blocking(r, move |r| {
        let (id, version) = r.register(&subject, &req)?;
        let stored = r.version(&subject, VersionSpec::Number(version), false)?;
        Ok((id, version, stored))
    })
    .await?;
    Ok(ok(
        json!({"id": id, "version": version, "schema": stored.schema}),
    ))
}

async fn get_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> ApiResult {
    Ok(ok(version_json(&r.version(
        &subject,
        VersionSpec::parse(&version)?,
        f.deleted,
    )?)))
}

async fn get_raw_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> ApiResult {
    Ok(raw(&r
        .version(&subject, VersionSpec::parse(&version)?, f.deleted)?
        .schema))
}

async fn referenced_by(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    Ok(ok(json!(
        r.referenced_by(&subject, VersionSpec::parse(&version)?)?
    )))
}

async fn delete_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let deleted = blocking(r, move |r| r.delete_version(&subject, spec, f.permanent)).await?;
    Ok(ok(json!(deleted)))
}

fn compat_reply(report: crate::registry::CompatibilityReport, verbose: bool) -> Reply {
    if verbose {
        ok(json!({"is_compatible": report.is_compatible, "messages": report.messages}))
    } else {
        ok(json!({"is_compatible": report.is_compatible}))
    }
}

async fn compat_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(f): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let req: SchemaRequest = parse_body(body)?;
    match r.test_compatibility(&subject, Some(spec), &req) {
        Ok(report) => Ok(compat_reply(report, f.verbose)),
        Err(RegistryError::InvalidSchema(m)) if f.verbose => {
            Ok(ok(json!({"is_compatible": false, "messages": [m]})))
        }
        Err(e) => Err(e.into()),
    }
}

async fn compat_all(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: SchemaRequest = parse_body(body)?;
    Ok(compat_reply(
        r.test_compatibility(&subject, None, &req)?,
        f.verbose,
    ))
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

fn config_level(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let c: ConfigBody = parse_body(body)?;
    c.compatibility.or(c.compatibility_level).ok_or_else(|| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            "the body needs a `compatibility` level".into(),
        )
    })
}

async fn get_global_config(State(r): Shared) -> ApiResult {
    Ok(ok(
        json!({"compatibilityLevel": r.config(None, true)?.as_str()}),
    ))
}

async fn put_global_config(State(r): Shared, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let wanted = config_level(body)?;
    let level = blocking(r, move |r| r.set_config(None, &wanted)).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn delete_global_config(State(r): Shared) -> ApiResult {
    let level = blocking(r, |r| r.delete_config(None)).await?;
    Ok(ok(json!({"compatibilityLevel": level.as_str()})))
}

async fn get_config(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> ApiResult {
    Ok(ok(
        json!({"compatibilityLevel": r.config(Some(&subject), f.default_to_global)?.as_str()}),
    ))
}

async fn put_config(
    State(r): Shared,
    Path(subject): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let wanted = config_level(body)?;
    let level = blocking(r, move |r| r.set_config(Some(&subject), &wanted)).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn delete_config(State(r): Shared, Path(subject): Path<String>) -> ApiResult {
    let level = blocking(r, move |r| r.delete_config(Some(&subject))).await?;
    Ok(ok(json!({"compatibilityLevel": level.as_str()})))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

async fn get_global_mode(State(r): Shared) -> ApiResult {
    Ok(ok(json!({"mode": r.mode(None, true)?.as_str()})))
}

async fn put_global_mode(
    State(r): Shared,
    Query(f): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let m: ModeBody = parse_body(body)?;
    let mode = blocking(r, move |r| r.set_mode(None, &m.mode, f.force)).await?;
    Ok(ok(json!({"mode": mode.as_str()})))
}

async fn get_mode(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> ApiResult {
    Ok(ok(
        json!({"mode": r.mode(Some(&subject), f.default_to_global)?.as_str()}),
    ))
}

async fn put_mode(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let m: ModeBody = parse_body(body)?;
    let mode = blocking(r, move |r| r.set_mode(Some(&subject), &m.mode, f.force)).await?;
    Ok(ok(json!({"mode": mode.as_str()})))
}

pub use sluice_listeners::auth::{AuthConfig, BasicUser};

/// [`router`] behind authentication, when any is configured: 401 with Confluent's envelope
/// and a `WWW-Authenticate` challenge otherwise.
pub fn router_with_auth(registry: Arc<Registry>, auth: AuthConfig) -> Router {
    sluice_listeners::auth::require(router(registry), auth, || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            40101,
            "Unauthorized: valid credentials are required".into(),
        )
        .into_response()
    })
}
