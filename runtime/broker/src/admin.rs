//! CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords, DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs: what admin clients (`kafka-topics`, `kafka-configs`,
//! AdminClient) need. Replication factors above 1 are refused: there is one node.

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
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

pub(crate) async fn create_partitions(
    ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let outcome: Result<(), (i16, String)> = if t.assignments.is_some() {
            Err((
                codes::INVALID_REQUEST,
                "manual replica assignments are not supported: there is one node".into(),
            ))
        } else if name.starts_with("__") {
            Err((
                codes::INVALID_TOPIC_EXCEPTION,
                format!("`{name}` is internal: its partitions are Sluice's to decide"),
            ))
        } else if req.validate_only {
            match ctx.state.log.topic(&name) {
                Ok(topic) if t.count as i64 > topic.partitions.len() as i64 => Ok(()),
                Ok(topic) => Err((
                    codes::INVALID_PARTITIONS,
                    format!(
                        "topic `{name}` has {} partitions: it can only grow",
                        topic.partitions.len()
                    ),
                )),
                Err(e) => Err((codes::from_log_error(&e), e.to_string())),
            }
        } else {
            let (log, n) = (ctx.state.log.clone(), name.clone());
            let count = u32::try_from(t.count).unwrap_or(0);
            match blocking(move || log.add_partitions(&n, count)).await {
                Some(Ok(_)) => {
                    tracing::info!(topic = %name, partitions = t.count, client = %ctx.client_id, "added partitions");
                    Ok(())
                }
                Some(Err(e)) => Err((codes::from_log_error(&e), e.to_string())),
                None => Err((
                    codes::UNKNOWN_SERVER_ERROR,
                    "adding partitions failed".into(),
                )),
            }
        };
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(sb(&message));
        }
        resp.results.push(r);
    }
    resp
}

/// One resource's answer to AlterConfigs or IncrementalAlterConfigs: two message types of
/// the same shape.
macro_rules! alter_response {
    ($ty:ty, $res:expr, $outcome:expr) => {{
        let mut r = <$ty>::default();
        r.resource_type = $res.resource_type;
        r.resource_name = $res.resource_name.clone();
        if let Err((code, message)) = $outcome {
            r.error_code = code;
            r.error_message = Some(sb(&message));
        }
        r
    }};
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;
/// Settings whose value is a comma-separated list (APPEND and SUBTRACT apply to them).
const LIST_SETTINGS: &[&str] = &["cleanup.policy"];

/// One resource of an alter request, checked and (unless `validate_only`) applied: the
/// topic's overrides become what `change` makes of the current ones.
async fn alter_topic(
    ctx: &Ctx,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                codes::INVALID_REQUEST,
                "broker settings are set on `sluice broker`'s command line, not at run time".into(),
            ))
        }
        other => {
            return Err((
                codes::INVALID_REQUEST,
                format!("resource type {other} is not supported"),
            ))
        }
    }
    let topic = ctx
        .state
        .log
        .topic(name)
        .map_err(|e| (codes::from_log_error(&e), e.to_string()))?;
    let mut overrides = topic.config.overrides.clone();
    change(&mut overrides).map_err(|m| (codes::INVALID_CONFIG, m))?;
    if validate_only {
        return TopicConfig::from_pairs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map(|_| ())
            .map_err(|e| (codes::INVALID_CONFIG, e.to_string()));
    }
    let (log, n) = (ctx.state.log.clone(), name.to_string());
    match blocking(move || log.alter_topic_config(&n, &overrides)).await {
        Some(Ok(t)) => {
            tracing::info!(topic = %name, overrides = ?t.config.overrides, client = %ctx.client_id, "altered topic settings");
            Ok(())
        }
        Some(Err(e)) => Err((codes::from_log_error(&e), e.to_string())),
        None => Err((
            codes::UNKNOWN_SERVER_ERROR,
            "altering settings failed".into(),
        )),
    }
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `kafka-configs --alter --add-config/--delete-config`: each setting set, deleted (back to
/// its default), appended to or subtracted from.
fn apply_incremental(
    overrides: &mut BTreeMap<String, String>,
    changes: &[incremental_alter_configs_request::AlterableConfig],
) -> Result<(), String> {
    for c in changes {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        match (c.config_operation, value) {
            (OP_SET, Some(v)) => {
                overrides.insert(key, v);
            }
            (OP_SET, None) => return Err(format!("SET of `{key}` needs a value")),
            (OP_DELETE, _) => {
                overrides.remove(&key);
            }
            (op @ (OP_APPEND | OP_SUBTRACT), Some(v)) => {
                if !LIST_SETTINGS.contains(&key.as_str()) {
                    return Err(format!(
                        "`{key}` is not a list: APPEND and SUBTRACT apply to {LIST_SETTINGS:?}; use SET"
                    ));
                }
                let current = overrides.get(&key).cloned().unwrap_or_else(|| {
                    TopicConfig::default()
                        .entries()
                        .into_iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v)
                        .unwrap_or_default()
                });
                let mut items = list_items(&current);
                for item in list_items(&v) {
                    if op == OP_APPEND && !items.contains(&item) {
                        items.push(item);
                    } else if op == OP_SUBTRACT {
                        items.retain(|i| *i != item);
                    }
                }
                overrides.insert(key, items.join(","));
            }
            (OP_APPEND | OP_SUBTRACT, None) => {
                return Err(format!("APPEND or SUBTRACT of `{key}` needs a value"))
            }
            (op, _) => return Err(format!("unknown operation {op} on `{key}`")),
        }
    }
    Ok(())
}

pub(crate) async fn incremental_alter_configs(
    ctx: &Ctx,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = alter_topic(ctx, res.resource_type, &name, req.validate_only, |o| {
            apply_incremental(o, &res.configs)
        })
        .await;
        resp.responses.push(alter_response!(
            incremental_alter_configs_response::AlterConfigsResourceResponse,
            res,
            outcome
        ));
    }
    resp
}

/// The older AlterConfigs: the settings given replace every override of the topic.
pub(crate) async fn alter_configs(ctx: &Ctx, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = alter_topic(ctx, res.resource_type, &name, req.validate_only, |o| {
            o.clear();
            for c in &res.configs {
                let value = c.value.as_ref().ok_or_else(|| {
                    format!(
                        "`{}` has no value (AlterConfigs replaces every setting)",
                        c.name
                    )
                })?;
                o.insert(c.name.to_string(), value.to_string());
            }
            Ok(())
        })
        .await;
        resp.responses.push(alter_response!(
            alter_configs_response::AlterConfigsResourceResponse,
            res,
            outcome
        ));
    }
    resp
}

pub(crate) async fn delete_records(ctx: &Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut out = DeleteRecordsTopicResult::default();
        out.name = t.name.clone();
        for p in t.partitions {
            let mut r = DeleteRecordsPartitionResult::default();
            r.partition_index = p.partition_index;
            r.low_watermark = -1;
            let outcome = if name.starts_with("__") {
                Err(codes::INVALID_TOPIC_EXCEPTION)
            } else {
                match ctx.state.log.partition(&name, p.partition_index) {
                    Ok(part) => {
                        let before = p.offset;
                        match blocking(move || part.delete_records_before(before)).await {
                            Some(Ok(start)) => Ok(start),
                            Some(Err(e)) => Err(codes::from_log_error(&e)),
                            None => Err(codes::UNKNOWN_SERVER_ERROR),
                        }
                    }
                    Err(e) => Err(codes::from_log_error(&e)),
                }
            };
            match outcome {
                Ok(start) => {
                    tracing::info!(topic = %name, partition = p.partition_index, start, client = %ctx.client_id, "deleted records");
                    r.low_watermark = start;
                }
                Err(code) => r.error_code = code,
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    resp
}
