//! Fetch (with long-poll) and ListOffsets.
//!
//! A Fetch returns whole batches starting with the one that holds the requested offset, at
//! least one batch even past `max_bytes` (KIP-74), and waits up to `max_wait_ms` for
//! `min_bytes` to arrive on any requested partition before answering with what there is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::*;
use sluice_log::{LogError, Partition};
use tokio::task::JoinSet;

use crate::codes;
use crate::server::Ctx;
use crate::state::blocking;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

struct Wanted {
    topic: TopicName,
    partitions: Vec<(i32, i64, usize)>,
}

pub(crate) async fn fetch(ctx: &Ctx, req: FetchRequest) -> FetchResponse {
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .map(|t| Wanted {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition,
                        p.fetch_offset,
                        p.partition_max_bytes.max(0) as usize,
                    )
                })
                .collect(),
        })
        .collect();
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    loop {
        let (resp, bytes, waits) = read_once(ctx, &wanted, max_bytes).await;
        let now = Instant::now();
        if bytes >= min_bytes.max(1) || now >= deadline || waits.is_empty() {
            return resp;
        }
        // Park until any requested partition grows past its fetch offset, or the deadline.
        let remaining = deadline - now;
        let mut set = JoinSet::new();
        for (p, offset) in waits {
            set.spawn(async move { p.wait_for(offset, remaining).await });
        }
        let _ = tokio::time::timeout(remaining, set.join_next()).await;
        set.abort_all();
        if Instant::now() >= deadline {
            return read_once(ctx, &wanted, max_bytes).await.0;
        }
    }
}

/// One pass over the requested partitions: the response, the bytes in it, and the partitions
/// to wait on (those read to their end).
async fn read_once(
    ctx: &Ctx,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (FetchResponse, usize, Vec<(Arc<Partition>, i64)>) {
    let mut resp = FetchResponse::default();
    let mut total = 0usize;
    let mut waits = Vec::new();
    for w in wanted {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = w.topic.clone();
        for &(index, offset, partition_max) in &w.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = index;
            match ctx.state.log.partition(&w.topic, index) {
                Err(e) => pd.error_code = codes::from_log_error(&e),
                Ok(p) => {
                    // Past the response limit, partitions still report their offsets but no data
                    // (the first batch is always sent, however large).
                    let budget = if total >= max_bytes {
                        0
                    } else {
                        partition_max.min(max_bytes - total)
                    };
                    let reader = p.clone();
                    let read = if budget == 0 && total > 0 {
                        Ok(sluice_log::ReadResult {
                            records: Vec::new(),
                            high_watermark: p.end_offset(),
                            log_start_offset: p.log_start_offset(),
                        })
                    } else {
                        blocking(move || reader.read(offset, budget.max(1)))
                            .await
                            .unwrap_or(Err(LogError::Poisoned("read".into())))
                    };
                    match read {
                        Ok(r) => {
                            pd.high_watermark = r.high_watermark;
                            pd.last_stable_offset = r.high_watermark;
                            pd.log_start_offset = r.log_start_offset;
                            pd.aborted_transactions = Some(Vec::new());
                            total += r.records.len();
                            if r.records.is_empty() && offset >= r.high_watermark {
                                waits.push((p.clone(), offset));
                            }
                            pd.records = Some(Bytes::from(r.records));
                        }
                        Err(e) => {
                            pd.error_code = codes::from_log_error(&e);
                            pd.high_watermark = p.end_offset();
                            pd.last_stable_offset = p.end_offset();
                            pd.log_start_offset = p.log_start_offset();
                            if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                                tracing::error!(topic = %w.topic.0, partition = index, error = %e, "fetch failed");
                            }
                        }
                    }
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total, waits)
}

pub(crate) async fn list_offsets(ctx: &Ctx, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.leader_epoch = -1;
            match ctx.state.log.partition(&t.name, p.partition_index) {
                Err(e) => pr.error_code = codes::from_log_error(&e),
                Ok(part) => {
                    let ts = p.timestamp;
                    let found = blocking(move || -> Result<(i64, i64), LogError> {
                        Ok(match ts {
                            EARLIEST => (part.log_start_offset(), -1),
                            LATEST => (part.end_offset(), -1),
                            MAX_TIMESTAMP => {
                                match part.offset_for_timestamp(part.max_timestamp())? {
                                    Some((offset, ts)) => (offset, ts),
                                    None => (-1, -1),
                                }
                            }
                            ts => part.offset_for_timestamp(ts)?.unwrap_or((-1, -1)),
                        })
                    })
                    .await
                    .unwrap_or(Err(LogError::Poisoned("list offsets".into())));
                    match found {
                        Ok((offset, timestamp)) => {
                            pr.offset = offset;
                            pr.timestamp = timestamp;
                        }
                        Err(e) => pr.error_code = codes::from_log_error(&e),
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
