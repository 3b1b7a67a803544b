//! The snapshot: every captured table's rows as `op: r` events, read with `COPY … TO
//! STDOUT` inside the snapshot the slot exported when it was created, so that the stream
//! that follows starts exactly where the snapshot ends: no gap, no overlap.
//!
//! Rows are parsed as they arrive (COPY's text format, the same text the stream sends) and
//! handed on in batches: a table of any size goes through in bounded memory. The last
//! record of the whole snapshot waits for the next one, so that it can be marked `last`.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use sluice_connector_sdk::connector::{SourcePosition, SourceRecord};
use sluice_connector_sdk::data::Value;
use tokio_postgres::Client;

use super::event::{Op, SourceInfo, TableEvents};
use super::lsn::Lsn;
use super::replication::quote_ident;
use super::setup::CapturedTable;
use super::types::copy_field;
use super::CdcError;

/// Where the snapshot's records go (the task's outbox); `false` once the task stops.
pub trait Emit {
    fn emit(&mut self, records: Vec<SourceRecord>) -> impl std::future::Future<Output = bool>;
}

/// What a snapshot run is.
pub struct SnapshotRun<'a> {
    pub stream: Arc<str>,
    pub topic_prefix: &'a str,
    pub db: &'a str,
    /// The main slot's consistent point (where the stream resumes).
    pub slot_lsn: Lsn,
    /// Tables read whole by an earlier run (skipped).
    pub done: Vec<String>,
    pub batch: usize,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Reads the tables in the transaction `client` has open on the exported snapshot.
/// Returns the rows read per table, or `None` when the task stopped.
pub async fn read(
    client: &Client,
    run: &mut SnapshotRun<'_>,
    tables: &[(CapturedTable, Arc<TableEvents>)],
    out: &mut impl Emit,
) -> Result<Option<Vec<(String, u64)>>, CdcError> {
    let started_us = now_us();
    let mut held: Option<SourceRecord> = None;
    let mut batch: Vec<SourceRecord> = Vec::with_capacity(run.batch);
    let mut first = true;
    let mut counts = Vec::new();
    let todo: Vec<&(CapturedTable, Arc<TableEvents>)> = tables
        .iter()
        .filter(|(t, _)| !run.done.contains(&t.dotted()))
        .collect();
    for (table, events) in todo {
        let columns: Vec<String> = events
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let sql = format!(
            "COPY (SELECT {} FROM {}) TO STDOUT",
            columns.join(", "),
            table.qualified()
        );
        let stream = client.copy_out(&sql).await?;
        futures_util::pin_mut!(stream);
        let mut rows: u64 = 0;
        let mut partial: Vec<u8> = Vec::new();
        let dotted = table.dotted();
        // Every read of this table has the same position (built once, cloned per row).
        let offset = json!({
            "snapshot_lsn": run.slot_lsn.0,
            "done": run.done,
            "table": dotted,
        });
        let mut on_line =
            |line: &[u8], batch: &mut Vec<SourceRecord>, held: &mut Option<SourceRecord>| {
                rows += 1;
                let mut values = Vec::with_capacity(events.columns.len());
                let mut errors = Vec::new();
                for (i, field) in line.split(|&b| b == b'\t').enumerate() {
                    let Some(column) = events.columns.get(i) else {
                        errors.push(format!(
                            "more fields than the table's {} columns",
                            events.columns.len()
                        ));
                        break;
                    };
                    values.push(match copy_field(field) {
                        None => Value::Null,
                        Some(text) => match std::str::from_utf8(&text)
                            .map_err(|e| e.to_string())
                            .and_then(|t| column.pg.parse(t, events.decimals()))
                        {
                            Ok(v) => v,
                            Err(e) => {
                                errors.push(format!("column `{}`: {e}", column.name));
                                Value::Null
                            }
                        },
                    });
                }
                let position = SourcePosition {
                    stream: run.stream.clone(),
                    offset: offset.clone(),
                };
                let record = if errors.is_empty() {
                    let source = SourceInfo {
                        name: run.topic_prefix,
                        db: run.db,
                        ts_us: started_us,
                        snapshot: if first { "first" } else { "true" },
                        tx_id: None,
                        lsn: Some(run.slot_lsn.0),
                        sequence: None,
                    };
                    first = false;
                    let key = events.key_of(&values);
                    events.record(
                        Op::Read,
                        key,
                        None,
                        Some(values),
                        &source,
                        now_us(),
                        &[],
                        position,
                    )
                } else {
                    super::stream::bad_record_for(events, errors, position)
                };
                if let Some(prev) = held.replace(record) {
                    batch.push(prev);
                }
            };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let mut rest: &[u8] = &chunk;
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                if partial.is_empty() {
                    on_line(&rest[..nl], &mut batch, &mut held);
                } else {
                    partial.extend_from_slice(&rest[..nl]);
                    let line = std::mem::take(&mut partial);
                    on_line(&line, &mut batch, &mut held);
                }
                rest = &rest[nl + 1..];
            }
            partial.extend_from_slice(rest);
            if batch.len() >= run.batch {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(run.batch));
                if !out.emit(full).await {
                    return Ok(None);
                }
            }
        }
        if !partial.is_empty() {
            let line = std::mem::take(&mut partial);
            on_line(&line, &mut batch, &mut held);
        }
        tracing::info!(table = %dotted, rows, "snapshot: table read");
        counts.push((dotted.clone(), rows));
        run.done.push(dotted);
    }
    if let Some(mut last) = held {
        if let Some(o) = last.position.offset.as_object_mut() {
            o.insert("last".into(), json!(true));
            o.insert("done".into(), json!(run.done));
        }
        mark_last(&mut last);
        batch.push(last);
    }
    if !batch.is_empty() && !out.emit(batch).await {
        return Ok(None);
    }
    Ok(Some(counts))
}

/// `source.snapshot: last` on the snapshot's final record.
fn mark_last(record: &mut SourceRecord) {
    use sluice_connector_sdk::data::Payload;
    if let Some(Payload::Typed {
        value: Value::Record(fields),
        ..
    }) = &mut record.value
    {
        if let Some((_, Value::Record(source))) = fields.iter_mut().find(|(n, _)| &**n == "source")
        {
            if let Some((_, v)) = source.iter_mut().find(|(n, _)| &**n == "snapshot") {
                *v = Value::String("last".into());
            }
        }
    }
}
