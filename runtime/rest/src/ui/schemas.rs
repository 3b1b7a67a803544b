//! The dashboard's schemas view: `GET /ui/schemas` lists the registry's subjects with their
//! versions (schema text pretty-printed, for the page's side-by-side diff), compatibility
//! level, and the topics and connectors that use each subject (Confluent's default
//! TopicNameStrategy: `<topic>-key` and `<topic>-value`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use sluice_schema_registry::registry::{Registry, VersionSpec};

use crate::{ok, ApiError, RestApi};

/// The topic a subject names under TopicNameStrategy, if it follows it.
pub fn topic_of(subject: &str) -> Option<&str> {
    subject
        .strip_suffix("-value")
        .or_else(|| subject.strip_suffix("-key"))
}

/// Schema text as people read it: JSON indented (Avro schemas are JSON), else as stored.
fn pretty(schema: &str) -> String {
    serde_json::from_str::<Value>(schema)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| schema.to_string())
}

/// Every subject, blocking (the registry reads under a lock).
pub fn list(api: &RestApi, registry: &Registry) -> Value {
    let connectors: Vec<(String, Vec<String>)> = api
        .worker
        .connectors()
        .into_iter()
        .filter_map(|n| api.worker.plan(&n).ok().map(|p| (n, p.topics)))
        .collect();
    let subjects: Vec<Value> = registry
        .subjects(false, None)
        .into_iter()
        .map(|subject| {
            let versions: Vec<Value> = registry
                .versions(&subject, false)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| {
                    registry
                        .version(&subject, VersionSpec::Number(v), false)
                        .ok()
                })
                .map(|v| {
                    json!({
                        "version": v.version,
                        "id": v.id,
                        "type": v.schema_type,
                        "schema": pretty(&v.schema),
                    })
                })
                .collect();
            let topic = topic_of(&subject);
            let used_by: Vec<&String> = connectors
                .iter()
                .filter(|(_, topics)| topic.is_some_and(|t| topics.iter().any(|x| x == t)))
                .map(|(n, _)| n)
                .collect();
            json!({
                "subject": subject,
                "compatibility": registry
                    .config(Some(&subject), true)
                    .map(|c| c.as_str())
                    .unwrap_or("?"),
                "topic": topic,
                "connectors": used_by,
                "versions": versions,
            })
        })
        .collect();
    json!({ "available": true, "subjects": subjects })
}

pub(crate) async fn schemas(State(api): State<Arc<RestApi>>) -> Result<Response, ApiError> {
    let Some(registry) = api.data.as_ref().and_then(|d| d.schemas.clone()) else {
        return ok(json!({
            "available": false,
            "subjects": [],
            "message": "this pipeline has no schema registry (no `avro` format and no `runtime.registry`)",
        }));
    };
    let body = tokio::task::spawn_blocking(move || list(&api, &registry))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_topic_by_the_default_strategy() {
        assert_eq!(topic_of("orders-value"), Some("orders"));
        assert_eq!(topic_of("orders-key"), Some("orders"));
        assert_eq!(topic_of("shop.Order"), None);
        assert_eq!(pretty("{\"type\":\"int\"}"), "{\n  \"type\": \"int\"\n}");
        assert_eq!(pretty("syntax = \"proto3\";"), "syntax = \"proto3\";");
    }
}
