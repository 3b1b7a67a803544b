//! Metadata (with topic auto-creation) and FindCoordinator: this one node leads every
//! partition and coordinates every group.

use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use sluice_log::{LogError, TopicConfig};
use uuid::Uuid;

use crate::codes;
use crate::server::Ctx;
use crate::state::{blocking, sb};

pub(crate) async fn metadata(ctx: &Ctx, req: MetadataRequest) -> MetadataResponse {
    let state = &ctx.state;
    // v0-3 had no flag: auto-creation was always allowed.
    let allow_create =
        state.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    let wanted: Option<Vec<String>> = req.topics.map(|ts| {
        ts.into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect()
    });
    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(state.config.node_id);
    broker.host = sb(&state.advertised.0);
    broker.port = state.advertised.1 as i32;
    resp.brokers = vec![broker];
    resp.cluster_id = Some(sb(&state.cluster_id));
    resp.controller_id = BrokerId(state.config.node_id);
    let names: Vec<String> = match wanted {
        Some(names) => names,
        None => state.log.topics().iter().map(|t| t.name.clone()).collect(),
    };
    for name in names {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(sb(&name)));
        let found = match state.log.topic(&name) {
            Ok(t) => Ok(t),
            Err(LogError::UnknownTopic(_)) if allow_create => {
                let (log, n, parts) = (
                    state.log.clone(),
                    name.clone(),
                    state.config.default_partitions,
                );
                let created =
                    blocking(move || log.create_topic(&n, parts, TopicConfig::default())).await;
                match created {
                    Some(Ok(t)) => {
                        tracing::info!(topic = %name, partitions = parts, client = %ctx.client_id, "auto-created topic");
                        Ok(t)
                    }
                    Some(Err(LogError::TopicExists(_))) => state.log.topic(&name),
                    Some(Err(e)) => Err(e),
                    None => Err(LogError::Poisoned("topic creation".into())),
                }
            }
            Err(e) => Err(e),
        };
        match found {
            Ok(t) => {
                topic.topic_id = Uuid::from_bytes(t.id);
                topic.is_internal = t.is_internal();
                topic.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut mp = MetadataResponsePartition::default();
                        mp.partition_index = p.id() as i32;
                        mp.leader_id = BrokerId(state.config.node_id);
                        mp.leader_epoch = -1;
                        mp.replica_nodes = vec![BrokerId(state.config.node_id)];
                        mp.isr_nodes = vec![BrokerId(state.config.node_id)];
                        mp
                    })
                    .collect();
            }
            Err(e) => topic.error_code = codes::from_log_error(&e),
        }
        resp.topics.push(topic);
    }
    resp
}

/// What a client asking for transactions is told.
pub(crate) const TRANSACTIONS_NOT_SERVED: &str = "transactions are not supported by this broker yet: use an idempotent producer (enable.idempotence=true, no transactional.id), or run on a Kafka cluster";

pub(crate) async fn find_coordinator(
    ctx: &Ctx,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let state = &ctx.state;
    let mut resp = FindCoordinatorResponse::default();
    // key_type 1 asks for a transaction coordinator: transactions are not served yet. A
    // retriable error (COORDINATOR_NOT_AVAILABLE) would have clients retry until their
    // timeout and then blame the network; a fatal one with a message says what is wrong.
    let (error, message) = if req.key_type == 0 {
        (codes::NONE, None)
    } else {
        tracing::warn!(client = %ctx.client_id, key = %req.key, "{TRANSACTIONS_NOT_SERVED}");
        (
            codes::UNSUPPORTED_VERSION,
            Some(sb(TRANSACTIONS_NOT_SERVED)),
        )
    };
    resp.error_code = error;
    resp.error_message = message.clone();
    resp.node_id = BrokerId(if error == codes::NONE {
        state.config.node_id
    } else {
        -1
    });
    resp.host = sb(if error == codes::NONE {
        &state.advertised.0
    } else {
        ""
    });
    resp.port = if error == codes::NONE {
        state.advertised.1 as i32
    } else {
        -1
    };
    // v4+ batches keys; we serve up to v2, but fill the list for completeness.
    resp.coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|k| {
            let mut c = CoordinatorEntry::default();
            c.key = k;
            c.node_id = resp.node_id;
            c.host = resp.host.clone();
            c.port = resp.port;
            c.error_code = error;
            c.error_message = message.clone();
            c
        })
        .collect();
    resp
}
