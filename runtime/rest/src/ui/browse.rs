//! The dashboard's message browser: `GET /ui/topics/{topic}/records` reads a page of one
//! partition from an offset or a timestamp and shows each record as people read it (keys
//! and values decoded with their schema, headers as text, dead-letter headers among them).
//!
//! Query: `partition` (0), `offset` or `timestamp` (ms; the first record at or after it),
//! `limit` (20, at most 500). Without `offset` and `timestamp`: the last `limit` records.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use sluice_worker::convert::AvroIn;
use sluice_worker::show::{headers, show};

use crate::{ok, query_pairs, ApiError, DataAccess, RestApi};

const MAX_LIMIT: usize = 500;
const READ_BYTES: usize = 1 << 20;

/// Where a page starts and how long it is, as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct PageQuery {
    pub partition: i32,
    pub offset: Option<i64>,
    pub timestamp: Option<i64>,
    pub limit: usize,
}

impl PageQuery {
    pub fn parse(raw: &Option<String>) -> Result<PageQuery, String> {
        let mut q = PageQuery {
            partition: 0,
            offset: None,
            timestamp: None,
            limit: 20,
        };
        for (k, v) in query_pairs(raw) {
            if v.is_empty() {
                continue;
            }
            let number = |what: &str| {
                v.parse::<i64>()
                    .map_err(|_| format!("`{what}` must be a whole number, not `{v}`"))
            };
            match k.as_str() {
                "partition" => q.partition = number("partition")? as i32,
                "offset" => q.offset = Some(number("offset")?),
                "timestamp" => q.timestamp = Some(number("timestamp")?),
                "limit" => q.limit = number("limit")?.clamp(1, MAX_LIMIT as i64) as usize,
                _ => {}
            }
        }
        Ok(q)
    }
}

/// One page of records, blocking (it reads the log).
pub fn page(data: &DataAccess, topic: &str, q: &PageQuery) -> Result<Value, ApiError> {
    let partition = data
        .log
        .partition(topic, q.partition)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let (start, end) = (partition.log_start_offset(), partition.end_offset());
    let from = match (q.timestamp, q.offset) {
        (Some(ts), _) => partition
            .offset_for_timestamp(ts)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_or(end, |(offset, _)| offset),
        (None, Some(offset)) => offset,
        (None, None) => end - q.limit as i64,
    }
    .clamp(start, end);
    let avro = data.schemas.clone().map(AvroIn::new);
    let decode = |bytes: &[u8]| -> Option<(Value, u32)> {
        let (id, _) = sluice_schema_registry::wire::split(bytes).ok()?;
        let (v, _) = avro.as_ref()?.decode(bytes).ok()?;
        Some((v, id))
    };
    let mut records = Vec::new();
    let mut next = from;
    let mut problem = None;
    while records.len() < q.limit && next < end {
        let read = partition
            .read(next, READ_BYTES)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if read.records.is_empty() {
            break;
        }
        let batch = match sluice_log::decode_record_set(&read.records) {
            Ok(b) => b,
            Err(e) => {
                problem = Some(format!(
                    "records from offset {next} cannot be shown here: {e}"
                ));
                break;
            }
        };
        let Some(last) = batch.last().map(|r| r.offset) else {
            break;
        };
        for r in batch.into_iter().filter(|r| r.offset >= next) {
            if records.len() == q.limit {
                break;
            }
            let (key, key_schema) = show(r.key.as_deref(), decode);
            let (value, value_schema) = show(r.value.as_deref(), decode);
            records.push(json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": key,
                "key_schema_id": key_schema,
                "value": value,
                "value_schema_id": value_schema,
                "headers": headers(&r.headers),
            }));
        }
        next = last + 1;
    }
    Ok(json!({
        "topic": topic,
        "partition": q.partition,
        "partitions": data.log.topic(topic).map(|t| t.partitions.len()).unwrap_or(0),
        "start": start,
        "end": end,
        "from": from,
        "records": records,
        "problem": problem,
    }))
}

pub(crate) async fn records(
    State(api): State<Arc<RestApi>>,
    Path(topic): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = PageQuery::parse(&raw).map_err(ApiError::bad_request)?;
    let data = api.data.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "this worker serves no log to browse".into(),
        )
    })?;
    let body = tokio::task::spawn_blocking(move || page(&data, &topic, &q))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_says_where_and_how_much() {
        assert_eq!(
            PageQuery::parse(&Some("partition=2&offset=40&limit=9999".into())).unwrap(),
            PageQuery {
                partition: 2,
                offset: Some(40),
                timestamp: None,
                limit: MAX_LIMIT
            }
        );
        assert_eq!(PageQuery::parse(&None).unwrap().limit, 20);
        let err = PageQuery::parse(&Some("offset=ten".into())).unwrap_err();
        assert!(err.contains("`offset` must be a whole number"), "{err}");
    }
}
