//! Produce and InitProducerId.
//!
//! Batches are stored exactly as received; only `baseOffset` and `partitionLeaderEpoch` (-1,
//! neither covered by the CRC) are rewritten. `acks=all` is answered once the batches are
//! fsynced, with group commit: one fsync covers every batch waiting on that partition, from
//! every connection. `acks=1` is answered after the append; the topic's flush policy fsyncs in
//! the background.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use sluice_log::batch::split_record_set;
use sluice_log::{now_ms, LogError, SyncMode};

use crate::codes;
use crate::producers::SequenceCheck;
use crate::server::Ctx;
use crate::state::{blocking, sb};

struct Outcome {
    error: i16,
    message: Option<String>,
    base_offset: i64,
    log_start: i64,
}

fn failed(error: i16, message: impl Into<String>) -> Outcome {
    Outcome {
        error,
        message: Some(message.into()),
        base_offset: -1,
        log_start: -1,
    }
}

/// A topic's partitions and their record sets, as the request carried them.
type TopicWork = (String, Vec<(i32, Option<Bytes>)>);

/// The part of a Produce that must wait for the disk; it runs after the appends, so the next
/// request of the connection can be appended meanwhile (and share the fsync).
pub(crate) type ProduceCompletion =
    std::pin::Pin<Box<dyn std::future::Future<Output = ProduceResponse> + Send>>;

type Results = Vec<(String, Vec<(i32, Outcome)>)>;

/// Appends every record set of the request, in request order, then returns what is left:
/// waiting for the fsync (`acks=all`) and building the response.
pub(crate) async fn produce(ctx: &Ctx, req: ProduceRequest) -> ProduceCompletion {
    let acks = req.acks;
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        let mut resp = ProduceResponse::default();
        for t in req.topic_data {
            let mut tr = TopicProduceResponse::default();
            tr.name = t.name;
            for p in t.partition_data {
                tr.partition_responses.push(partition_response(
                    p.index,
                    failed(
                        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        "transactions are not supported yet",
                    ),
                ));
            }
            resp.responses.push(tr);
        }
        return Box::pin(async move { resp });
    }
    let work: Vec<TopicWork> = req
        .topic_data
        .into_iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partition_data
                    .into_iter()
                    .map(|p| (p.index, p.records))
                    .collect(),
            )
        })
        .collect();
    let state = ctx.state.clone();
    let appended = blocking(move || {
        let mut appended = Vec::new();
        let mut results: Results = Vec::new();
        for (topic, parts) in work {
            let mut outs = Vec::new();
            for (index, records) in parts {
                let outcome = append_one(&state, &topic, index, records, &mut appended);
                outs.push((index, outcome));
            }
            results.push((topic, outs));
        }
        (results, appended)
    })
    .await;
    let (mut results, appended) = appended.unwrap_or_default();
    // Partitions whose answer waits for the disk: acks=all, unless the topic caches writes.
    let (must_sync, background): (Appended, Appended) = appended
        .into_iter()
        .partition(|(p, _, _)| acks == -1 && !p.config().write_caching);
    for (p, _, sync_due) in background {
        if sync_due {
            // The topic's flush policy wants an fsync; this answer does not wait for it.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = p.flush() {
                    tracing::error!(topic = p.topic(), partition = p.id(), error = %e, "background flush failed");
                }
            });
        }
    }
    if must_sync.is_empty() {
        return Box::pin(async move { response(results) });
    }
    Box::pin(async move {
        let synced = blocking(move || {
            // One group-commit fsync per partition covers this and every concurrent request.
            for (p, last_offset, _) in must_sync {
                if let Err(e) = p.sync_to(last_offset) {
                    for (topic, outs) in results.iter_mut().filter(|(t, _)| t == p.topic()) {
                        for (index, out) in outs.iter_mut() {
                            if *index as u32 == p.id() && out.error == codes::NONE {
                                tracing::error!(topic = %topic, partition = index, error = %e, "fsync failed");
                                *out = failed(codes::KAFKA_STORAGE_ERROR, e.to_string());
                            }
                        }
                    }
                }
            }
            results
        })
        .await
        .unwrap_or_default();
        response(synced)
    })
}

fn response(results: Results) -> ProduceResponse {
    let mut resp = ProduceResponse::default();
    for (topic, outs) in results {
        let mut tr = TopicProduceResponse::default();
        tr.name = TopicName(sb(&topic));
        tr.partition_responses = outs
            .into_iter()
            .map(|(i, o)| partition_response(i, o))
            .collect();
        resp.responses.push(tr);
    }
    resp
}

fn partition_response(index: i32, o: Outcome) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = o.error;
    r.error_message = o.message.map(|m| sb(&m));
    r.base_offset = o.base_offset;
    r.log_append_time_ms = -1;
    r.log_start_offset = o.log_start;
    r
}

type Appended = Vec<(std::sync::Arc<sluice_log::Partition>, i64, bool)>;

fn append_one(
    state: &crate::state::BrokerState,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
    appended: &mut Appended,
) -> Outcome {
    let partition = match state.log.partition(topic, index) {
        Ok(p) => p,
        Err(e) => return failed(codes::from_log_error(&e), e.to_string()),
    };
    let Some(records) = records else {
        return failed(codes::CORRUPT_MESSAGE, "no records");
    };
    let mut bytes = records.to_vec();
    let batches = match split_record_set(&bytes) {
        Ok(b) => b,
        Err(e) => return failed(codes::CORRUPT_MESSAGE, e.to_string()),
    };
    for (start, _) in &batches {
        bytes[start + 12..start + 16].copy_from_slice(&(-1i32).to_be_bytes());
    }
    let first = batches[0].1;
    let idempotent = first.producer_id >= 0;
    if idempotent && batches.len() != 1 {
        return failed(
            codes::INVALID_RECORD,
            "an idempotent producer must send one batch per partition",
        );
    }
    let last_seq = first.base_sequence.wrapping_add(first.last_offset_delta);
    let table = idempotent.then(|| state.producers.partition(topic, index));
    let mut guard = table
        .as_ref()
        .map(|t| t.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(producers) = guard.as_deref() {
        match producers.check(
            first.producer_id,
            first.producer_epoch,
            first.base_sequence,
            last_seq,
        ) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate(offset) => {
                return Outcome {
                    error: codes::NONE,
                    message: None,
                    base_offset: offset,
                    log_start: partition.log_start_offset(),
                };
            }
            SequenceCheck::Refuse(code) => {
                return failed(
                    code,
                    format!(
                        "sequence {} of producer {} epoch {} does not follow on",
                        first.base_sequence, first.producer_id, first.producer_epoch
                    ),
                );
            }
        }
    }
    match partition.append_with(&mut bytes, now_ms(), SyncMode::Deferred) {
        Ok(info) => {
            if let Some(producers) = guard.as_deref_mut() {
                producers.record(
                    first.producer_id,
                    first.producer_epoch,
                    first.base_sequence,
                    last_seq,
                    info.base_offset,
                );
            }
            appended.push((partition.clone(), info.last_offset, info.sync_due));
            Outcome {
                error: codes::NONE,
                message: None,
                base_offset: info.base_offset,
                log_start: info.log_start_offset,
            }
        }
        Err(e) => {
            if !matches!(
                e,
                LogError::InvalidBatch { .. }
                    | LogError::BatchTooLarge { .. }
                    | LogError::NullKeyOnCompactedTopic(_)
            ) {
                tracing::error!(topic, partition = index, error = %e, "append failed");
            }
            failed(codes::from_log_error(&e), e.to_string())
        }
    }
}

pub(crate) async fn init_producer_id(
    ctx: &Ctx,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        resp.error_code = codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        tracing::warn!(client = %ctx.client_id, "InitProducerId with a transactional id: transactions are not supported yet");
        return resp;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumps its epoch after an error; its sequences restart.
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch.checked_add(1).unwrap_or(0);
    } else {
        resp.producer_id = ProducerId(ctx.state.producers.allocate_id());
        resp.producer_epoch = 0;
    }
    resp
}
