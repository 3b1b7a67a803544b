//! Kafka Connect's JSON bodies, built from the worker's state: `ConnectorInfo`,
//! `ConnectorStateInfo` (with `trace` left out when empty), the flat string config map
//! (dotted keys for the YAML's nesting), `ConfigKeyInfo` and the validate response.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Map, Value};
use sluice_connector_sdk::config::{ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::registry::{ConnectorRegistry, ConnectorType};
use sluice_worker::config::{ConnectorPlan, Side};
use sluice_worker::run::reload::ReloadStatus;
use sluice_worker::run::{Origin, Role, State as TaskState, TaskStatus};

use crate::{ok, ApiError, RestApi};

/// Keys of a flat config that belong to the runtime, not to the connector type's settings.
const RUNTIME_KEYS: [&str; 11] = [
    "connector.class",
    "name",
    "tasks.max",
    "topic",
    "topics",
    "key_format",
    "value_format",
    "key_schema",
    "value_schema",
    "key_schemas_enable",
    "value_schemas_enable",
];
const RUNTIME_PREFIXES: [&str; 3] = ["errors.", "restart.", "transforms"];

fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A setting as Kafka Connect shows one: a string (lists comma-separated).
fn flat_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flat_value).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A connector type's settings as flat strings, secrets hidden; nested settings spread out
/// as dotted keys (`batch.max_records`), as Kafka Connect's connectors name theirs.
pub fn settings_map(values: &ConfigValues) -> Map<String, Value> {
    fn spread(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, inner) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    spread(&key, inner, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), Value::String(flat_value(other)));
            }
        }
    }
    let mut out = Map::new();
    spread("", &Value::Object(values.to_json_hidden()), &mut out);
    out
}

/// A connector's configuration as Kafka Connect's flat string map.
pub fn config(plan: &ConnectorPlan, role: Role) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("connector.class", plan.type_name.clone());
    put("name", plan.name.clone());
    put("tasks.max", plan.tasks.to_string());
    for side in Side::BOTH {
        let (name, f) = (side.name(), plan.side(side));
        put(&format!("{name}_format"), f.format.name().to_string());
        if let Some(s) = &f.schema {
            put(&format!("{name}_schema"), s.clone());
        }
        if f.schemas_enable {
            put(&format!("{name}_schemas_enable"), "true".into());
        }
    }
    let e = &plan.errors;
    put(
        "errors.tolerance",
        if e.tolerate_all { "all" } else { "none" }.into(),
    );
    if let Some(t) = &e.dead_letter_topic {
        put("errors.dead_letter_topic", t.clone());
    }
    put("errors.retry_timeout", duration(e.retry_timeout));
    put("errors.log", e.log_errors.to_string());
    let r = &plan.restart;
    put("restart.max_attempts", r.max_attempts.to_string());
    put("restart.initial_backoff", duration(r.initial_backoff));
    put("restart.max_backoff", duration(r.max_backoff));
    if !plan.transforms.is_empty() {
        let names: Vec<&str> = plan.transforms.iter().map(|t| t.name.as_str()).collect();
        put("transforms", names.join(","));
    }
    for (k, v) in settings_map(&plan.settings) {
        m.insert(k, v);
    }
    // A source writes one topic, a sink reads a list (Connect's `topics`).
    let key = if role == Role::Source {
        "topic"
    } else {
        "topics"
    };
    m.insert(key.into(), Value::String(plan.topics.join(",")));
    m
}

/// What `GET …/config` shows: a connector created over REST, its config as it was given
/// (with its `name`); one of the file, its entry as the flat map.
pub fn connector_config(api: &RestApi, name: &str) -> Result<Map<String, Value>, ApiError> {
    if api.worker.origin(name)? == Origin::Rest {
        if let Some(mut given) = api.worker.stored_config(name) {
            given
                .entry("name")
                .or_insert_with(|| Value::String(name.to_string()));
            return Ok(given);
        }
    }
    let role = api.worker.status(name)?.role;
    Ok(config(&api.worker.plan(name)?, role))
}

/// `ConnectorInfo`: name, config, tasks, type.
pub fn info(api: &RestApi, name: &str) -> Result<Value, ApiError> {
    let status = api.worker.status(name)?;
    let cfg = connector_config(api, name)?;
    let tasks: Vec<Value> = api
        .worker
        .task_configs(name)?
        .into_iter()
        .map(|(id, _)| json!({"connector": name, "task": id}))
        .collect();
    Ok(json!({
        "name": name,
        "config": cfg,
        "tasks": tasks,
        "type": status.role.as_str(),
    }))
}

/// One task's `TaskState`.
pub fn task_state(api: &RestApi, t: &TaskStatus) -> Value {
    let mut v = json!({
        "id": t.id,
        "state": t.state.as_str(),
        "worker_id": t.worker_id.as_deref().unwrap_or(&api.info.worker_id),
    });
    if let Some(trace) = t.trace.as_deref().filter(|s| !s.is_empty()) {
        v["trace"] = json!(trace);
    }
    v
}

/// `ConnectorStateInfo`.
pub fn status(api: &RestApi, name: &str) -> Result<Value, ApiError> {
    let s = api.worker.status(name)?;
    let tasks: Vec<Value> = s.tasks.iter().map(|t| task_state(api, t)).collect();
    // A connector's own state is what was asked of it; a connector all of whose tasks
    // failed reads RUNNING with FAILED tasks, as in Kafka Connect.
    let state = match s.state {
        TaskState::Paused | TaskState::Stopped => s.state,
        _ => TaskState::Running,
    };
    Ok(json!({
        "name": s.name,
        "connector": {"state": state.as_str(), "worker_id": api.info.worker_id},
        "tasks": tasks,
        "type": s.role.as_str(),
    }))
}

/// A connector type by the name Kafka Connect clients use (`connector.class`): Sluice's
/// type name, or the last segment of a Java class name that matches it.
pub fn plugin<'a>(
    registry: &'a ConnectorRegistry,
    name: &str,
) -> Result<&'a ConnectorType, ApiError> {
    let short = name.rsplit('.').next().unwrap_or(name);
    registry
        .sources()
        .chain(registry.sinks())
        .find(|t| t.name == name || t.name == short)
        .ok_or_else(|| ApiError::not_found(format!("Unknown plugin {name}")))
}

fn kind_name(kind: &FieldKind) -> &'static str {
    match kind {
        FieldKind::String
        | FieldKind::OneOf(_)
        | FieldKind::Duration
        | FieldKind::Size
        | FieldKind::Map(_)
        | FieldKind::Object(_)
        | FieldKind::OneKey(_) => "STRING",
        FieldKind::Secret => "PASSWORD",
        FieldKind::Integer { .. } => "LONG",
        FieldKind::Boolean => "BOOLEAN",
        FieldKind::List(_) => "LIST",
    }
}

/// `ConfigKeyInfo` of a setting (the `definition` of a validate entry).
pub fn config_key(name: &str, f: &FieldSpec, order: Option<usize>) -> Value {
    json!({
        "name": name,
        "type": kind_name(&f.kind),
        "required": f.required,
        "default_value": f.default.as_ref().map(flat_value),
        "importance": if f.required { "HIGH" } else { "MEDIUM" },
        "documentation": f.doc,
        "group": "Common",
        "order": order.map_or(-1, |o| o as i64),
        "width": "NONE",
        "display_name": name,
        "dependents": [],
    })
}

/// `PUT /connector-plugins/{type}/config/validate`: 200 even when invalid, with each
/// setting's errors; a `connector.class` naming another type is a 400.
pub async fn validate(
    State(api): State<Arc<RestApi>>,
    Path(plugin_name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let t = plugin(&api.registry, &plugin_name)?;
    let given: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not a JSON object of settings: {e}"
        ))
    })?;
    if let Some(class) = given.get("connector.class").and_then(Value::as_str) {
        if plugin(&api.registry, class).ok().map(|c| c.name.as_str()) != Some(t.name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Included connector type {class} does not match request type {plugin_name}"
            )));
        }
    }
    let texts: Vec<(&str, String)> = given
        .iter()
        .filter(|(k, _)| {
            !RUNTIME_KEYS.contains(&k.as_str())
                && !RUNTIME_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.as_str(), flat_value(v)))
        .collect();
    let settings = t
        .config
        .from_flat(texts.iter().map(|(k, v)| (*k, v.as_str())));
    let issues = ConnectorRegistry::validate(t, &settings)
        .err()
        .unwrap_or_default();
    let errors_of = |key: Option<&str>| -> Vec<String> {
        issues
            .iter()
            .filter(|i| i.key.as_deref() == key)
            .map(|i| i.message.clone())
            .collect()
    };
    let mut configs = Vec::new();
    let mut class_errors = errors_of(None);
    let leaves = t.config.leaves();
    for (i, (name, f)) in leaves.iter().enumerate() {
        // A map of names (`headers`) is given as `headers.<name>` keys.
        let given_value = given.get(name.as_str()).map(flat_value).or_else(|| {
            let prefix = format!("{name}.");
            let parts: Vec<String> = given
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| format!("{}={}", &k[prefix.len()..], flat_value(v)))
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        });
        let shown = if f.kind == FieldKind::Secret {
            given_value.map(|_| "[hidden]".to_string())
        } else {
            given_value.or_else(|| f.default.as_ref().map(flat_value))
        };
        let prefix = format!("{name}.");
        configs.push(json!({
            "definition": config_key(name, f, Some(i + 1)),
            "value": {
                "name": name,
                "value": shown,
                "recommended_values": match &f.kind {
                    FieldKind::OneOf(v) => v.clone(),
                    _ => Vec::new(),
                },
                "errors": issues
                    .iter()
                    .filter(|i| i.key.as_deref().is_some_and(|k| k == name || (matches!(f.kind, FieldKind::Map(_)) && k.starts_with(&prefix))))
                    .map(|i| i.message.clone())
                    .collect::<Vec<_>>(),
                "visible": true,
            }
        }));
    }
    // Settings the type does not know: their errors go with `connector.class`'s, as
    // Connect reports problems with no field of their own.
    for i in &issues {
        if let Some(k) = &i.key {
            let known = leaves.iter().any(|(name, f)| {
                k == name
                    || (matches!(f.kind, FieldKind::Map(_)) && k.starts_with(&format!("{name}.")))
            });
            if !known {
                class_errors.push(format!("{k}: {}", i.message));
            }
        }
    }
    configs.insert(
        0,
        json!({
            "definition": {
                "name": "connector.class", "type": "STRING", "required": true,
                "default_value": null, "importance": "HIGH",
                "documentation": "The Sluice connector type (or a Kafka Connect class name Sluice knows).",
                "group": "Common", "order": 0, "width": "LONG", "display_name": "Connector class",
                "dependents": [],
            },
            "value": {
                "name": "connector.class",
                "value": t.name,
                "recommended_values": [],
                "errors": class_errors,
                "visible": true,
            }
        }),
    );
    let error_count: usize = configs
        .iter()
        .map(|c| c["value"]["errors"].as_array().map_or(0, Vec::len))
        .sum();
    ok(json!({
        "name": t.name,
        "error_count": error_count,
        "groups": ["Common"],
        "configs": configs,
    }))
}

fn time(ms: i64) -> Value {
    json!(ms)
}

/// `GET /reload`: the active configuration and the last attempt.
pub fn reload(s: &ReloadStatus) -> Value {
    let last = s.last.as_ref().map(|a| {
        json!({
            "at_ms": time(a.at_ms),
            "result": a.result.as_str(),
            "added": a.added,
            "changed": a.changed,
            "removed": a.removed,
            "needs_restart": a.needs_restart,
            "errors": a.errors.iter().map(|e| json!({
                "file": e.file, "line": e.line, "column": e.column, "message": e.message,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "active": {"hash": s.active_hash, "since_ms": time(s.active_since_ms)},
        "last_attempt": last,
        "attempts": s.counts,
    })
}
