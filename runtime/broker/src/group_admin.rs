//! DeleteGroups and OffsetDelete: what `kafka-consumer-groups --delete` and
//! `--delete-offsets` (AdminClient's deleteConsumerGroups, deleteConsumerGroupOffsets) send.

use bytes::Buf;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::codes;
use crate::server::Ctx;
use crate::state::blocking;

pub(crate) async fn delete_groups(ctx: &Ctx, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let (state, group) = (ctx.state.clone(), id.0.to_string());
        let outcome = blocking(move || state.groups.delete(&group)).await;
        let mut r = DeletableGroupResult::default();
        r.error_code = match outcome {
            Some(Ok(())) => {
                tracing::info!(group = %id.0, client = %ctx.client_id, "deleted group");
                codes::NONE
            }
            Some(Err(code)) => code,
            None => codes::UNKNOWN_SERVER_ERROR,
        };
        r.group_id = id;
        resp.results.push(r);
    }
    resp
}

/// The topics a consumer-protocol member subscribed to; `None` when its metadata is not
/// the consumer protocol's (or unreadable), which counts as subscribed to everything.
fn subscribed_topics(metadata: &bytes::Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    // Newer versions only add fields at the end: read what this codec knows.
    let version = version.clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

pub(crate) async fn offset_delete(ctx: &Ctx, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut resp = OffsetDeleteResponse::default();
    let group = req.group_id.0.to_string();
    let Some(info) = ctx.state.groups.describe(&group) else {
        resp.error_code = codes::GROUP_ID_NOT_FOUND;
        return resp;
    };
    // Offsets of a topic the live members read from cannot go (Kafka's rule): they would be
    // committed again at once, or the members would restart from the reset policy.
    let mut subscribed: Option<Vec<String>> = Some(Vec::new());
    if !info.members.is_empty() {
        if info.protocol_type != "consumer" {
            resp.error_code = codes::NON_EMPTY_GROUP;
            return resp;
        }
        for m in &info.members {
            match (subscribed.as_mut(), subscribed_topics(&m.metadata)) {
                (Some(all), Some(topics)) => all.extend(topics),
                _ => subscribed = None,
            }
        }
    }
    let mut doomed = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let blocked = subscribed
            .as_ref()
            .map(|s| s.contains(&name))
            .unwrap_or(true);
        let known = ctx.state.log.topic(&name).ok();
        let mut out = OffsetDeleteResponseTopic::default();
        out.name = t.name.clone();
        for p in t.partitions {
            let mut r = OffsetDeleteResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = match &known {
                None => codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some(topic)
                    if p.partition_index < 0
                        || p.partition_index as usize >= topic.partitions.len() =>
                {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                }
                Some(_) if blocked => codes::GROUP_SUBSCRIBED_TO_TOPIC,
                Some(_) => {
                    doomed.push((name.clone(), p.partition_index as u32));
                    codes::NONE
                }
            };
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    if !doomed.is_empty() {
        let (log, g) = (ctx.state.log.clone(), group.clone());
        match blocking(move || log.delete_group_offsets(&g, &doomed)).await {
            Some(Ok(())) => {
                tracing::info!(group = %group, client = %ctx.client_id, "deleted committed offsets")
            }
            Some(Err(e)) => resp.error_code = codes::from_log_error(&e),
            None => resp.error_code = codes::UNKNOWN_SERVER_ERROR,
        }
    }
    resp
}
