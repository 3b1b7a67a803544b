//! Wire handlers for the group APIs and committed offsets: they translate Kafka messages to
//! the [`crate::coordinator::Coordinator`] and the log's offset store, and back.

use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use sluice_log::OffsetCommit;

use crate::codes;
use crate::coordinator::{GroupState, JoinRequest};
use crate::server::Ctx;
use crate::state::{blocking, sb};

pub(crate) async fn join_group(ctx: &Ctx, req: JoinGroupRequest) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        // v0 had no rebalance timeout: it was the session timeout.
        rebalance_timeout: Duration::from_millis(
            if ctx.version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            }
            .max(0) as u64,
        ),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_member_id: ctx.version >= 4,
    };
    let out = ctx.state.groups.join(join).await;
    let mut resp = JoinGroupResponse::default();
    resp.error_code = out.error;
    resp.generation_id = out.generation;
    resp.protocol_type = out.protocol_type.as_deref().map(sb);
    // Before v7 the protocol name is not nullable: send "" rather than null.
    resp.protocol_name = Some(sb(out.protocol.as_deref().unwrap_or("")));
    resp.leader = sb(&out.leader);
    resp.member_id = sb(&out.member_id);
    resp.members = out
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = sb(&id);
            m.group_instance_id = instance.as_deref().map(sb);
            m.metadata = metadata;
            m
        })
        .collect();
    resp
}

pub(crate) async fn sync_group(ctx: &Ctx, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let out = ctx
        .state
        .groups
        .sync(
            &req.group_id.0,
            req.generation_id,
            &req.member_id,
            instance.as_deref(),
            assignments,
        )
        .await;
    let mut resp = SyncGroupResponse::default();
    resp.error_code = out.error;
    resp.protocol_type = out.protocol_type.as_deref().map(sb);
    resp.protocol_name = out.protocol.as_deref().map(sb);
    resp.assignment = out.assignment;
    resp
}

pub(crate) async fn heartbeat(ctx: &Ctx, req: HeartbeatRequest) -> HeartbeatResponse {
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let mut resp = HeartbeatResponse::default();
    resp.error_code = ctx.state.groups.heartbeat(
        &req.group_id.0,
        req.generation_id,
        &req.member_id,
        instance.as_deref(),
    );
    resp
}

pub(crate) async fn leave_group(ctx: &Ctx, req: LeaveGroupRequest) -> LeaveGroupResponse {
    // v0-2 name one member; v3+ a batch with optional instance ids.
    let members: Vec<(String, Option<String>)> = if ctx.version < 3 {
        vec![(req.member_id.to_string(), None)]
    } else {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    };
    let errors = ctx.state.groups.leave(&req.group_id.0, &members);
    let mut resp = LeaveGroupResponse::default();
    if ctx.version < 3 {
        resp.error_code = errors.first().copied().unwrap_or(codes::NONE);
    } else {
        resp.members = members
            .iter()
            .zip(&errors)
            .map(|((id, instance), err)| {
                let mut m = MemberResponse::default();
                m.member_id = sb(id);
                m.group_instance_id = instance.as_deref().map(sb);
                m.error_code = *err;
                m
            })
            .collect();
    }
    resp
}

pub(crate) async fn offset_commit(ctx: &Ctx, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let mut error = ctx.state.groups.check_commit(
        &group,
        req.generation_id_or_member_epoch,
        &req.member_id,
        instance.as_deref(),
    );
    let mut per_partition: Vec<(String, i32, i16)> = Vec::new();
    let mut commits = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let topic = t.name.0.to_string();
            let code = match ctx.state.log.partition(&topic, p.partition_index) {
                Err(e) => codes::from_log_error(&e),
                Ok(_) if error != codes::NONE => error,
                Ok(_) => {
                    commits.push(OffsetCommit {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    });
                    codes::NONE
                }
            };
            per_partition.push((topic, p.partition_index, code));
        }
    }
    if error == codes::NONE && !commits.is_empty() {
        let (log, g) = (ctx.state.log.clone(), group.clone());
        match blocking(move || log.commit_offsets(&g, &commits)).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::error!(group = %group, error = %e, "storing committed offsets failed");
                error = codes::from_log_error(&e);
            }
            None => error = codes::UNKNOWN_SERVER_ERROR,
        }
        if error != codes::NONE {
            for entry in per_partition.iter_mut().filter(|e| e.2 == codes::NONE) {
                entry.2 = error;
            }
        }
    }
    let mut resp = OffsetCommitResponse::default();
    for (topic, partition, code) in per_partition {
        if resp
            .topics
            .last()
            .map(|t: &OffsetCommitResponseTopic| t.name.0.as_str() != topic.as_str())
            .unwrap_or(true)
        {
            let mut t = OffsetCommitResponseTopic::default();
            t.name = TopicName(sb(&topic));
            resp.topics.push(t);
        }
        let mut p = OffsetCommitResponsePartition::default();
        p.partition_index = partition;
        p.error_code = code;
        if let Some(t) = resp.topics.last_mut() {
            t.partitions.push(p);
        }
    }
    resp
}

/// `(partition, offset, leader epoch, metadata)`.
type CommittedRow = (i32, i64, i32, String);

/// Committed offsets of one group for the named topics (all committed topics if `None`).
fn fetch_offsets(
    ctx: &Ctx,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<CommittedRow>)> {
    let log = &ctx.state.log;
    let topics = match topics {
        Some(t) => t,
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (t, p, _) in log.group_offsets(group) {
                by_topic.entry(t).or_default().push(p as i32);
            }
            by_topic.into_iter().collect()
        }
    };
    topics
        .into_iter()
        .map(|(topic, parts)| {
            let rows = parts
                .into_iter()
                .map(|p| match log.committed_offset(group, &topic, p) {
                    Some(c) => (p, c.offset, c.leader_epoch, c.metadata),
                    // Nothing committed: offset -1 and no error, as Kafka answers.
                    None => (p, -1, -1, String::new()),
                })
                .collect();
            (topic, rows)
        })
        .collect()
}

pub(crate) async fn offset_fetch(ctx: &Ctx, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if ctx.version >= 8 {
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = g.group_id.clone();
            for (topic, rows) in fetch_offsets(ctx, &g.group_id.0, topics) {
                let mut t = OffsetFetchResponseTopics::default();
                t.name = TopicName(sb(&topic));
                t.partitions = rows
                    .into_iter()
                    .map(|(p, offset, epoch, md)| {
                        let mut r = OffsetFetchResponsePartitions::default();
                        r.partition_index = p;
                        r.committed_offset = offset;
                        r.committed_leader_epoch = epoch;
                        r.metadata = Some(sb(&md));
                        r
                    })
                    .collect();
                out.topics.push(t);
            }
            resp.groups.push(out);
        }
        return resp;
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    for (topic, rows) in fetch_offsets(ctx, &req.group_id.0, topics) {
        let mut t = OffsetFetchResponseTopic::default();
        t.name = TopicName(sb(&topic));
        t.partitions = rows
            .into_iter()
            .map(|(p, offset, epoch, md)| {
                let mut r = OffsetFetchResponsePartition::default();
                r.partition_index = p;
                r.committed_offset = offset;
                r.committed_leader_epoch = epoch;
                r.metadata = Some(sb(&md));
                r
            })
            .collect();
        resp.topics.push(t);
    }
    resp
}

pub(crate) async fn list_groups(ctx: &Ctx, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    let wanted: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    for (id, state, protocol_type) in ctx.state.groups.list() {
        if !wanted.is_empty() && !wanted.contains(&state.name().to_lowercase()) {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(sb(&id));
        g.protocol_type = sb(&protocol_type);
        g.group_state = sb(state.name());
        g.group_type = sb("classic");
        resp.groups.push(g);
    }
    resp
}

pub(crate) async fn describe_groups(
    ctx: &Ctx,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut g = DescribedGroup::default();
        g.group_id = id.clone();
        match ctx.state.groups.describe(&id.0) {
            Some(info) => {
                g.group_state = sb(info.state.name());
                g.protocol_type = sb(&info.protocol_type);
                g.protocol_data = sb(&info.protocol);
                let show_details = matches!(
                    info.state,
                    GroupState::Stable | GroupState::CompletingRebalance
                );
                g.members = info
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut d = DescribedGroupMember::default();
                        d.member_id = sb(&m.member_id);
                        d.group_instance_id = m.instance_id.as_deref().map(sb);
                        d.client_id = sb(&m.client_id);
                        d.client_host = sb(&m.client_host);
                        if show_details {
                            d.member_metadata = m.metadata;
                            d.member_assignment = m.assignment;
                        }
                        d
                    })
                    .collect();
            }
            None => g.group_state = sb("Dead"),
        }
        resp.groups.push(g);
    }
    resp
}
