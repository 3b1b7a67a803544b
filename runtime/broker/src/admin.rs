//! CreateTopics, DeleteTopics and DescribeConfigs: what admin clients (`kafka-topics`,
//! AdminClient) need. Replication factors above 1 are refused: there is one node.

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use sluice_log::{validate_topic_name, LogError, TopicConfig};
use uuid::Uuid;

use crate::codes;
use crate::server::Ctx;
use crate::state::{blocking, sb};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub(crate) async fn create_topics(ctx: &Ctx, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = t.name.clone();
        let partitions = if t.num_partitions == -1 {
            ctx.state.config.default_partitions as i32
        } else {
            t.num_partitions
        };
        let checked: Result<TopicConfig, (i16, String)> = (|| {
            if !(t.replication_factor == -1 || t.replication_factor == 1) {
                return Err((
                    codes::INVALID_REPLICATION_FACTOR,
                    format!(
                        "replication factor {} is impossible on one node: use 1 or -1",
                        t.replication_factor
                    ),
                ));
            }
            if !t.assignments.is_empty() {
                return Err((
                    codes::INVALID_REQUEST,
                    "manual replica assignments are not supported".into(),
                ));
            }
            if partitions < 1 {
                return Err((
                    codes::INVALID_PARTITIONS,
                    format!("invalid partition count {partitions}"),
                ));
            }
            validate_topic_name(&name)
                .map_err(|e| (codes::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
            let pairs: Vec<(String, String)> = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            TopicConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| (codes::INVALID_CONFIG, e.to_string()))
        })();
        let outcome = match checked {
            Err(e) => Err(e),
            Ok(_) if req.validate_only => {
                if ctx.state.log.topic(&name).is_ok() {
                    Err((
                        codes::TOPIC_ALREADY_EXISTS,
                        format!("topic `{name}` already exists"),
                    ))
                } else {
                    Ok(None)
                }
            }
            Ok(config) => {
                let (log, n) = (ctx.state.log.clone(), name.clone());
                match blocking(move || log.create_topic(&n, partitions as u32, config)).await {
                    Some(Ok(topic)) => Ok(Some(topic)),
                    Some(Err(e)) => Err((codes::from_log_error(&e), e.to_string())),
                    None => Err((codes::UNKNOWN_SERVER_ERROR, "topic creation failed".into())),
                }
            }
        };
        match outcome {
            Ok(topic) => {
                result.num_partitions = partitions;
                result.replication_factor = 1;
                if let Some(topic) = topic {
                    result.topic_id = Uuid::from_bytes(topic.id);
                    tracing::info!(topic = %name, partitions, client = %ctx.client_id, "created topic");
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(sb(&message));
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
        }
        resp.topics.push(result);
    }
    resp
}

pub(crate) async fn delete_topics(ctx: &Ctx, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut names: Vec<String> = req.topic_names.iter().map(|n| n.0.to_string()).collect();
    names.extend(
        req.topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())),
    );
    let mut resp = DeleteTopicsResponse::default();
    for name in names {
        let mut r = DeletableTopicResult::default();
        r.name = Some(TopicName(sb(&name)));
        let protected = name.starts_with("__");
        let (log, n) = (ctx.state.log.clone(), name.clone());
        let outcome = if protected {
            Some(Err(LogError::InvalidTopicName {
                name: name.clone(),
                reason: "internal topics cannot be deleted".into(),
            }))
        } else {
            blocking(move || log.delete_topic(&n)).await
        };
        match outcome {
            Some(Ok(())) => tracing::info!(topic = %name, client = %ctx.client_id, "deleted topic"),
            Some(Err(e)) => {
                r.error_code = codes::from_log_error(&e);
                r.error_message = Some(sb(&e.to_string()));
            }
            None => r.error_code = codes::UNKNOWN_SERVER_ERROR,
        }
        resp.responses.push(r);
    }
    resp
}

pub(crate) async fn describe_configs(
    ctx: &Ctx,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        match res.resource_type {
            RESOURCE_TOPIC => match ctx.state.log.topic(&res.resource_name) {
                Ok(topic) => {
                    let wanted = res
                        .configuration_keys
                        .as_ref()
                        .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
                    for (k, v) in topic.config.entries() {
                        if wanted.as_ref().map(|w| !w.contains(&k)).unwrap_or(false) {
                            continue;
                        }
                        let mut c = DescribeConfigsResourceResult::default();
                        c.name = sb(&k);
                        c.value = Some(sb(&v));
                        c.config_source = if topic.config.is_override(&k) {
                            SOURCE_DYNAMIC_TOPIC
                        } else {
                            SOURCE_DEFAULT
                        };
                        out.configs.push(c);
                    }
                }
                Err(e) => {
                    out.error_code = codes::from_log_error(&e);
                    out.error_message = Some(sb(&e.to_string()));
                }
            },
            RESOURCE_BROKER => {}
            other => {
                out.error_code = codes::INVALID_REQUEST;
                out.error_message = Some(sb(&format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(out);
    }
    resp
}
