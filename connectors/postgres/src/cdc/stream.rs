//! Decoded transactions into records: each captured change becomes a Debezium event (a
//! primary-key change a delete, a tombstone and a create; a delete followed by a tombstone
//! when asked), numbered within its transaction so that a restart can skip what is already
//! written, and the bookkeeping of what the slot may be told is durable.
//!
//! A transaction's changes are handed on as they arrive, never held whole: only its last
//! record waits for the Commit message, to carry the transaction's end LSN.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value as Json};
use sluice_connector_sdk::connector::{SourcePosition, SourceRecord, SOURCE_ERROR_HEADER};
use sluice_connector_sdk::data::{Payload, Value};
use tokio_postgres::Client;

use super::event::{Op, SourceInfo, TableEvents};
use super::lsn::Lsn;
use super::pgoutput::{Datum, Message, Relation, PG_EPOCH_OFFSET_MICROS};
use super::settings::CdcSettings;
use super::setup::{self, Types};
use super::types::ColumnType;
use super::CdcError;

/// Where a record sits in the slot's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamPos {
    /// The transaction's commit LSN (the Begin message's final LSN).
    pub lsn: Lsn,
    /// The record's number within its transaction, from 1.
    pub seq: u64,
    /// Set on the transaction's last record: its end LSN.
    pub end: Option<Lsn>,
}

impl StreamPos {
    pub fn to_json(self) -> Json {
        let mut o = json!({"lsn": self.lsn.0, "seq": self.seq});
        if let Some(e) = self.end {
            o["end"] = json!(e.0);
        }
        o
    }
}

/// A committed position, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A snapshot read: the slot's consistent point, the tables already read whole, and
    /// whether it was the snapshot's last record.
    Snapshot {
        slot_lsn: Lsn,
        done: Vec<String>,
        last: bool,
    },
    Stream(StreamPos),
}

impl Committed {
    pub fn parse(offset: &Json) -> Option<Committed> {
        if let Some(slot_lsn) = offset.get("snapshot_lsn").and_then(Json::as_u64) {
            return Some(Committed::Snapshot {
                slot_lsn: Lsn(slot_lsn),
                done: offset
                    .get("done")
                    .and_then(|d| serde_json::from_value(d.clone()).ok())
                    .unwrap_or_default(),
                last: offset.get("last").and_then(Json::as_bool).unwrap_or(false),
            });
        }
        Some(Committed::Stream(StreamPos {
            lsn: Lsn(offset.get("lsn")?.as_u64()?),
            seq: offset.get("seq").and_then(Json::as_u64).unwrap_or(0),
            end: offset.get("end").and_then(Json::as_u64).map(Lsn),
        }))
    }
}

/// The open transaction.
struct Txn {
    final_lsn: Lsn,
    commit_us: i64,
    xid: u32,
    /// Records numbered so far (skipped ones included, so numbers are the same on a replay).
    seq: u64,
    /// Records of it handed on.
    emitted: u64,
}

/// Turns the stream's messages into records.
pub struct Capture {
    settings: Arc<CdcSettings>,
    stream: Arc<str>,
    db: String,
    tables: HashMap<u32, Arc<TableEvents>>,
    /// Relations seen that are not captured.
    ignored: HashMap<u32, String>,
    /// Skip what is at or before this (the last committed position).
    resume: Option<StreamPos>,
    txn: Option<Txn>,
    /// Records ready to hand on; the open transaction's latest waits in `held`.
    pub out: Vec<SourceRecord>,
    /// The open transaction's latest record and its number.
    held: Option<(SourceRecord, u64)>,
    /// Transactions whose records are all handed on: (commit LSN, end LSN).
    inflight: VecDeque<(Lsn, Lsn)>,
    /// Where the slot may be confirmed once nothing is in flight.
    idle: Lsn,
    /// What was last confirmed (never goes back).
    confirmed: Lsn,
    last_commit: Lsn,
    /// The last position handed on (what an in-process reconnect resumes after).
    pub last_sent: Option<StreamPos>,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Capture {
    pub fn new(
        settings: Arc<CdcSettings>,
        stream: Arc<str>,
        db: String,
        resume: Option<StreamPos>,
        start: Lsn,
    ) -> Capture {
        Capture {
            settings,
            stream,
            db,
            tables: HashMap::new(),
            ignored: HashMap::new(),
            resume,
            txn: None,
            out: Vec::new(),
            held: None,
            inflight: VecDeque::new(),
            idle: start,
            confirmed: start,
            last_commit: Lsn(0),
            last_sent: resume,
        }
    }

    /// Whether a transaction is open or records wait to be handed on.
    pub fn busy(&self) -> bool {
        self.txn.is_some() || !self.out.is_empty() || self.held.is_some()
    }

    /// Installs a table built from the catalog (so the snapshot's schemas are reused).
    pub fn install(&mut self, relation_id: u32, table: Arc<TableEvents>) {
        self.tables.insert(relation_id, table);
    }

    /// One decoded message.
    pub async fn handle(
        &mut self,
        msg: Message<'_>,
        client: &Client,
        types: &mut Types,
    ) -> Result<(), CdcError> {
        match msg {
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.txn = Some(Txn {
                    final_lsn,
                    commit_us: commit_time + PG_EPOCH_OFFSET_MICROS,
                    xid,
                    seq: 0,
                    emitted: 0,
                });
            }
            Message::Commit { end_lsn, .. } => {
                let Some(txn) = self.txn.take() else {
                    return Err(CdcError::Protocol("Commit without Begin".into()));
                };
                self.last_commit = txn.final_lsn;
                match self.held.take() {
                    Some((mut last, seq)) => {
                        if let Some(o) = last.position.offset.as_object_mut() {
                            o.insert("end".into(), json!(end_lsn.0));
                        }
                        self.out.push(last);
                        self.last_sent = Some(StreamPos {
                            lsn: txn.final_lsn,
                            seq,
                            end: Some(end_lsn),
                        });
                        self.inflight.push_back((txn.final_lsn, end_lsn));
                    }
                    None if txn.emitted > 0 => {
                        self.inflight.push_back((txn.final_lsn, end_lsn));
                    }
                    None => {
                        // Nothing of it is ours (or all was written before a restart).
                        if self.inflight.is_empty() && self.out.is_empty() {
                            self.idle = self.idle.max(end_lsn);
                        } else {
                            self.inflight.push_back((txn.final_lsn, end_lsn));
                        }
                    }
                }
            }
            Message::Relation(rel) => self.relation(rel, client, types).await?,
            Message::Insert { relation, new } => {
                let Some(t) = self.tables.get(&relation).cloned() else {
                    return Ok(());
                };
                if self.settings.skips('c') {
                    return Ok(());
                }
                let (after, errors, unavailable) = values(&t, &new, None);
                let key = t.key_of(&after);
                self.emit(&t, Op::Create, key, None, Some(after), errors, unavailable);
            }
            Message::Update { relation, old, new } => {
                let Some(t) = self.tables.get(&relation).cloned() else {
                    return Ok(());
                };
                if self.settings.skips('u') {
                    return Ok(());
                }
                let old_full = old.as_ref().filter(|(k, _)| *k == b'O').map(|(_, o)| o);
                let (after, mut errors, unavailable) = values(&t, &new, old_full);
                let before = match &old {
                    Some((_, o)) => {
                        let (b, e, _) = values(&t, o, None);
                        errors.extend(e);
                        Some(b)
                    }
                    None => None,
                };
                let new_key = t.key_of(&after);
                let key_changed = before.as_ref().is_some_and(|b| {
                    !t.key.is_empty() && t.key.iter().any(|&i| b.get(i) != after.get(i))
                });
                if key_changed {
                    // As Debezium: a delete of the old key (and its tombstone), then a create.
                    let before = before.unwrap_or_default();
                    let old_key = t.key_of(&before);
                    self.emit(
                        &t,
                        Op::Delete,
                        old_key.clone(),
                        Some(before),
                        None,
                        errors.clone(),
                        Vec::new(),
                    );
                    if self.settings.tombstones_on_delete {
                        self.emit_tombstone(&t, old_key);
                    }
                    self.emit(
                        &t,
                        Op::Create,
                        new_key,
                        None,
                        Some(after),
                        errors,
                        unavailable,
                    );
                } else {
                    // Under DEFAULT the old row is not sent: `before` is null, as Debezium.
                    let before = before.filter(|_| old_full.is_some());
                    self.emit(
                        &t,
                        Op::Update,
                        new_key,
                        before,
                        Some(after),
                        errors,
                        unavailable,
                    );
                }
            }
            Message::Delete { relation, old } => {
                let Some(t) = self.tables.get(&relation).cloned() else {
                    return Ok(());
                };
                if self.settings.skips('d') {
                    return Ok(());
                }
                let (before, errors, _) = values(&t, &old.1, None);
                let key = t.key_of(&before);
                self.emit(
                    &t,
                    Op::Delete,
                    key.clone(),
                    Some(before),
                    None,
                    errors,
                    Vec::new(),
                );
                if self.settings.tombstones_on_delete {
                    self.emit_tombstone(&t, key);
                }
            }
            Message::Truncate { relations, .. } => {
                if self.settings.skips('t') {
                    return Ok(());
                }
                for id in relations {
                    if let Some(t) = self.tables.get(&id).cloned() {
                        self.emit(&t, Op::Truncate, None, None, None, Vec::new(), Vec::new());
                    }
                }
            }
            Message::Origin { .. }
            | Message::Type { .. }
            | Message::Logical { .. }
            | Message::StreamStart { .. }
            | Message::StreamStop
            | Message::StreamCommit { .. }
            | Message::StreamAbort { .. } => {}
        }
        Ok(())
    }

    async fn relation(
        &mut self,
        rel: Relation,
        client: &Client,
        types: &mut Types,
    ) -> Result<(), CdcError> {
        let dotted = format!("{}.{}", rel.namespace, rel.name);
        if !self.settings.captures(&rel.namespace, &rel.name) {
            self.ignored.insert(rel.id, dotted);
            return Ok(());
        }
        let mut columns = Vec::with_capacity(rel.columns.len());
        for c in &rel.columns {
            columns.push(ColumnType {
                name: c.name.clone(),
                pg: types.resolve(client, c.type_oid, c.type_modifier).await?,
                key: c.key,
            });
        }
        // The key is the primary key (as Debezium), whatever the replica identity flags.
        let catalog = setup::table_columns(client, rel.id).await?;
        let key_names = if !catalog.primary_key.is_empty() {
            catalog.primary_key
        } else {
            catalog.replica_identity_index
        };
        for c in &mut columns {
            c.key = key_names.contains(&c.name);
        }
        if let Some(existing) = self.tables.get(&rel.id) {
            if existing.columns == columns {
                return Ok(());
            }
        }
        let table = TableEvents::new(
            &self.settings.topic_prefix,
            &rel.namespace,
            &rel.name,
            columns,
            self.settings.key_columns.get(&dotted).map(Vec::as_slice),
            self.settings.decimals,
        )
        .map_err(CdcError::Setup)?;
        if self.tables.contains_key(&rel.id) {
            tracing::info!(table = %dotted, "the table's columns changed: a new schema version");
        }
        self.tables.insert(rel.id, Arc::new(table));
        Ok(())
    }

    /// Numbers the next record of the open transaction; `None`: written before a restart,
    /// so not emitted again.
    fn next_position(&mut self) -> Option<SourcePosition> {
        let txn = self.txn.as_mut()?;
        txn.seq += 1;
        let pos = StreamPos {
            lsn: txn.final_lsn,
            seq: txn.seq,
            end: None,
        };
        if let Some(r) = self.resume {
            let written =
                pos.lsn < r.lsn || (pos.lsn == r.lsn && (r.end.is_some() || pos.seq <= r.seq));
            if written {
                return None;
            }
        }
        Some(SourcePosition {
            stream: self.stream.clone(),
            offset: pos.to_json(),
        })
    }

    fn push(&mut self, record: SourceRecord) {
        let Some(txn) = &mut self.txn else { return };
        txn.emitted += 1;
        if let Some((prev, seq)) = self.held.replace((record, txn.seq)) {
            self.out.push(prev);
            self.last_sent = Some(StreamPos {
                lsn: txn.final_lsn,
                seq,
                end: None,
            });
        }
    }

    /// After a lost connection: the open transaction is sent again by the server, and what
    /// of it was handed on is skipped; what is in flight stays in flight.
    pub fn reconnected(&mut self) {
        self.txn = None;
        self.held = None;
        self.resume = self.last_sent;
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        t: &TableEvents,
        op: Op,
        key: Option<Payload>,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        errors: Vec<String>,
        unavailable: Vec<String>,
    ) {
        let Some(position) = self.next_position() else {
            return;
        };
        let Some(txn) = &self.txn else { return };
        let source = SourceInfo {
            name: &self.settings.topic_prefix,
            db: &self.db,
            ts_us: txn.commit_us,
            snapshot: "false",
            tx_id: Some(txn.xid),
            lsn: Some(txn.final_lsn.0),
            sequence: Some(format!(
                "[\"{}\",\"{}\"]",
                self.last_commit.0, txn.final_lsn.0
            )),
        };
        let record = if errors.is_empty() {
            t.record(
                op,
                key,
                before,
                after,
                &source,
                now_us(),
                &unavailable,
                position,
            )
        } else {
            bad_record_for(t, errors, position)
        };
        self.push(record);
    }

    fn emit_tombstone(&mut self, t: &TableEvents, key: Option<Payload>) {
        let Some(position) = self.next_position() else {
            return;
        };
        let ts = self.txn.as_ref().map_or(0, |x| x.commit_us / 1000);
        let record = t.tombstone(key, ts, position);
        self.push(record);
    }

    /// The server's end of WAL from a keepalive: confirmable when nothing is in flight.
    pub fn keepalive(&mut self, wal_end: Lsn) {
        if !self.busy() && self.inflight.is_empty() {
            self.idle = self.idle.max(wal_end);
        }
    }

    /// What the slot may be told is durable, given the last committed position.
    pub fn confirmable(&mut self, committed: Option<&StreamPos>) -> Lsn {
        if let Some(c) = committed {
            while let Some(&(commit, end)) = self.inflight.front() {
                let done = commit < c.lsn || (commit == c.lsn && c.end.is_some());
                if !done {
                    break;
                }
                self.confirmed = self.confirmed.max(end);
                self.inflight.pop_front();
            }
        }
        if self.inflight.is_empty() && !self.busy() {
            self.confirmed = self.confirmed.max(self.idle);
        }
        self.confirmed
    }
}

/// A record for the error policy: the change could not be read (a value Postgres sent that
/// does not parse as its column's type).
pub(crate) fn bad_record_for(
    t: &TableEvents,
    errors: Vec<String>,
    position: SourcePosition,
) -> SourceRecord {
    SourceRecord {
        topic: Some(t.topic.clone()),
        partition: None,
        key: None,
        value: Some(Payload::Raw(bytes::Bytes::from(errors.join("; ")))),
        headers: vec![(
            SOURCE_ERROR_HEADER.to_string(),
            format!(
                "a change of {}.{} cannot be read: {}",
                t.schema_name,
                t.table,
                errors.join("; ")
            )
            .into_bytes(),
        )],
        timestamp: None,
        position,
    }
}

/// A tuple's values in column order; the errors of values that do not parse; the columns
/// whose unchanged TOASTed value was not sent (taken from `old` when it has them).
fn values(
    t: &TableEvents,
    tuple: &[Datum<'_>],
    old: Option<&Vec<Datum<'_>>>,
) -> (Vec<Value>, Vec<String>, Vec<String>) {
    let mut out = Vec::with_capacity(t.columns.len());
    let mut errors = Vec::new();
    let mut unavailable = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let mut datum = tuple.get(i).cloned().unwrap_or(Datum::Null);
        if datum == Datum::UnchangedToast {
            if let Some(o) = old.and_then(|o| o.get(i)) {
                datum = o.clone();
            }
        }
        out.push(match datum {
            Datum::Null => Value::Null,
            Datum::UnchangedToast => {
                unavailable.push(c.name.clone());
                Value::Null
            }
            Datum::Text(bytes) | Datum::Binary(bytes) => {
                match std::str::from_utf8(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|text| c.pg.parse(text, t.decimals()))
                {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(format!("column `{}`: {e}", c.name));
                        Value::Null
                    }
                }
            }
        });
    }
    (out, errors, unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let p = StreamPos {
            lsn: Lsn(100),
            seq: 3,
            end: Some(Lsn(120)),
        };
        let j = p.to_json();
        assert_eq!(j, json!({"lsn": 100, "seq": 3, "end": 120}));
        assert_eq!(Committed::parse(&j), Some(Committed::Stream(p)));
        let s =
            json!({"snapshot_lsn": 7, "done": ["public.a"], "table": "public.b", "last": false});
        assert!(matches!(
            Committed::parse(&s),
            Some(Committed::Snapshot {
                slot_lsn: Lsn(7),
                last: false,
                ..
            })
        ));
        assert_eq!(Committed::parse(&json!({"x": 1})), None);
    }
}
