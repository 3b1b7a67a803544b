//! One `postgres` sink task: records held by `put`, applied by `flush` in one transaction
//! with their positions ([`crate::offsets`]), so each record is applied exactly once.
//!
//! Rows are JSON objects (the value, with the key's fields for `pk_mode: record_key`, or
//! the record's topic/partition/offset for `kafka`) handed to Postgres as one `jsonb` array
//! per statement; `jsonb_populate_record` types them by the target table's own columns.
//! Within a run of upserts only the last change per key is applied (Postgres refuses to
//! update one row twice in a statement). A statement Postgres refuses for its data (a
//! constraint, a value out of range) is applied again record by record under savepoints:
//! the records it refuses go to the error policy with Postgres' message, the rest commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value as Json};
use sluice_connector_sdk::connector::{
    ConnectorError, RefusedRecord, Result, SinkRecord, SinkTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::data::Payload;
use tokio_postgres::{Client, NoTls, Transaction};

use super::settings::{InsertMode, PkMode, SinkSettings};
use super::sql::{self, Table};
use crate::offsets::{self, Epoch, OffsetsError};

/// What a record asks of its table.
#[derive(Debug, Clone)]
enum Change {
    Row(Map<String, Json>),
    /// A tombstone: the key's columns.
    Delete(Map<String, Json>),
}

#[derive(Debug, Clone)]
struct Pending {
    table: String,
    change: Change,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    value: Option<Bytes>,
}

/// A task of the `postgres` sink.
pub struct PostgresSinkTask {
    info: TaskInfo,
    settings: Arc<SinkSettings>,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    epoch: Option<Epoch>,
    tables: HashMap<String, Table>,
    pending: Vec<Pending>,
    /// The next offset per partition once `pending` is applied.
    next: BTreeMap<(String, i32), i64>,
    refused: Vec<RefusedRecord>,
}

fn db_error(context: &str, e: &tokio_postgres::Error) -> ConnectorError {
    let text = match e.as_db_error() {
        Some(db) => format!("{context}: {} ({})", db.message(), db.code().code()),
        None => format!("{context}: {e}"),
    };
    // A lost connection or a restarting server may come back; the rest will not.
    if e.is_closed() || e.as_db_error().is_none() {
        ConnectorError::retriable(text)
    } else {
        ConnectorError::fatal(text)
    }
}

fn offsets_error(e: OffsetsError) -> ConnectorError {
    if e.is_retriable() {
        ConnectorError::retriable(e.to_string())
    } else {
        ConnectorError::fatal(e.to_string())
    }
}

/// Whether Postgres refused the data itself (SQLSTATE classes 22 and 23), not the statement.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(&db.code().code()[..2], "22" | "23"))
}

fn json_of(p: &Payload) -> std::result::Result<Json, String> {
    match p {
        Payload::Raw(b) => serde_json::from_slice(b).map_err(|e| format!("not JSON: {e}")),
        Payload::Typed { value, .. } => Ok(value.to_json()),
    }
}

fn raw(p: &Option<Payload>) -> Option<Bytes> {
    match p {
        Some(Payload::Raw(b)) => Some(b.clone()),
        Some(Payload::Typed { value, .. }) => Some(Bytes::from(value.to_json().to_string())),
        None => None,
    }
}

impl PostgresSinkTask {
    pub fn new(info: TaskInfo, settings: SinkSettings) -> Result<PostgresSinkTask> {
        // One worker of its own: the connection task runs between calls too, so a
        // transaction dropped on an error is rolled back at once, not at the next call
        // (else its row locks would block a successor).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("sluice-pg-{}", info.connector))
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectorError::fatal(format!("could not start the sink's runtime: {e}"))
            })?;
        Ok(PostgresSinkTask {
            info,
            settings: Arc::new(settings),
            runtime,
            client: None,
            epoch: None,
            tables: HashMap::new(),
            pending: Vec::new(),
            next: BTreeMap::new(),
            refused: Vec::new(),
        })
    }

    fn connect(&mut self) -> Result<()> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        let config = self.settings.connection.clone();
        let client = self.runtime.block_on(async {
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| db_error("connecting to Postgres", &e))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            offsets::ensure_tables(&client)
                .await
                .map_err(offsets_error)?;
            Ok::<_, ConnectorError>(client)
        })?;
        self.client = Some(client);
        self.tables.clear();
        Ok(())
    }

    /// The row a record becomes, or why it cannot be one.
    fn change(&self, r: &SinkRecord) -> std::result::Result<Change, String> {
        let s = &self.settings;
        let key_fields = || -> std::result::Result<Map<String, Json>, String> {
            let key = r
                .key
                .as_ref()
                .ok_or("the record has no key (pk_mode: record_key)")?;
            match json_of(key)? {
                Json::Object(m) => Ok(match s.pk_fields.is_empty() {
                    true => m,
                    false => s
                        .pk_fields
                        .iter()
                        .filter_map(|f| m.get(f).map(|v| (f.clone(), v.clone())))
                        .collect(),
                }),
                other if s.pk_fields.len() == 1 => {
                    Ok(Map::from_iter([(s.pk_fields[0].clone(), other)]))
                }
                _ => Err(
                    "the key is not a JSON object (name its column with one `pk_fields` entry)"
                        .into(),
                ),
            }
        };
        let Some(value) = &r.value else {
            if s.delete_enabled {
                return Ok(Change::Delete(key_fields()?));
            }
            return Err("a tombstone (no value) and `delete_enabled` is false".into());
        };
        let Json::Object(mut row) = json_of(value)? else {
            return Err("the value is not a JSON object: a row needs named fields".into());
        };
        match s.pk_mode {
            PkMode::RecordKey => row.extend(key_fields()?),
            PkMode::Kafka => {
                let names = if s.pk_fields.len() == 3 {
                    s.pk_fields.clone()
                } else {
                    ["__connect_topic", "__connect_partition", "__connect_offset"]
                        .map(String::from)
                        .to_vec()
                };
                row.insert(names[0].clone(), Json::from(&*r.topic));
                row.insert(names[1].clone(), Json::from(r.partition));
                row.insert(names[2].clone(), Json::from(r.offset));
            }
            PkMode::None | PkMode::RecordValue => {}
        }
        Ok(Change::Row(row))
    }

    fn refuse(&mut self, p: &Pending, reason: String) {
        self.refused.push(RefusedRecord {
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.offset,
            value: p.value.clone(),
            reason,
            headers: Vec::new(),
        });
    }
}

/// Applies `batch` (records of one table, in order) in `tx`: consecutive rows in one
/// statement, consecutive deletes in another.
async fn apply(
    tx: &Transaction<'_>,
    settings: &SinkSettings,
    table: &Table,
    batch: &[&Pending],
) -> std::result::Result<(), tokio_postgres::Error> {
    let mut i = 0;
    while i < batch.len() {
        let deleting = matches!(batch[i].change, Change::Delete(_));
        let run: Vec<&Pending> = batch[i..]
            .iter()
            .take_while(|p| matches!(p.change, Change::Delete(_)) == deleting)
            .copied()
            .collect();
        i += run.len();
        let docs: Vec<Json> = run
            .iter()
            .map(|p| match &p.change {
                Change::Row(m) | Change::Delete(m) => Json::Object(m.clone()),
            })
            .collect();
        let statement = if deleting {
            sql::delete(table)
        } else {
            match settings.insert_mode {
                InsertMode::Insert => sql::insert(table, &docs),
                InsertMode::Upsert => sql::upsert(table, &docs),
                InsertMode::Update => sql::update(table, &docs),
            }
        };
        tx.execute(&statement, &[&Json::Array(docs)]).await?;
    }
    Ok(())
}

impl SinkTask for PostgresSinkTask {
    fn open(&mut self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        self.connect()?;
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| ConnectorError::fatal("not connected"))?;
        let connector = self.info.connector.clone();
        let (epoch, stored) = self
            .runtime
            .block_on(async {
                let epoch = offsets::claim(client, &connector).await?;
                let stored = offsets::read(client, &connector).await?;
                Ok::<_, OffsetsError>((epoch, stored))
            })
            .map_err(offsets_error)?;
        self.epoch = Some(epoch);
        Ok(stored
            .into_iter()
            .filter(|(t, p, _)| {
                partitions
                    .iter()
                    .any(|tp| &tp.topic == t && tp.partition == *p)
            })
            .map(|(topic, partition, next)| (TopicPartition { topic, partition }, next))
            .collect())
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        // All or nothing: after a bad record the runtime hands the records again one by
        // one, so none of this call may be kept (it would be applied twice).
        let mut taken = Vec::with_capacity(records.len());
        for r in records {
            let change = self.change(r).map_err(|why| {
                // Refused before Postgres sees it: the error policy decides.
                ConnectorError::bad_record(format!(
                    "{}-{} offset {}: {why}",
                    r.topic, r.partition, r.offset
                ))
            })?;
            taken.push(Pending {
                table: self.settings.table.render(&r.topic, None, None),
                change,
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
                value: raw(&r.value),
            });
        }
        for p in &taken {
            self.next
                .insert((p.topic.to_string(), p.partition), p.offset + 1);
        }
        self.pending.extend(taken);
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        let positions: Vec<(TopicPartition, i64)> = self
            .next
            .iter()
            .map(|((topic, partition), next)| {
                (
                    TopicPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    *next,
                )
            })
            .collect();
        if self.pending.is_empty() {
            return Ok(positions);
        }
        self.connect()?;
        let epoch = self
            .epoch
            .ok_or_else(|| ConnectorError::fatal("flush before open"))?;
        // The target tables' columns and keys, read once.
        let names: Vec<String> = {
            let mut n: Vec<String> = self.pending.iter().map(|p| p.table.clone()).collect();
            n.sort();
            n.dedup();
            n
        };
        for name in names {
            if !self.tables.contains_key(&name) {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| ConnectorError::fatal("not connected"))?;
                let table = self
                    .runtime
                    .block_on(sql::describe(client, &name, &self.settings))?;
                self.tables.insert(name, table);
            }
        }
        // A field the table has no column for refuses its record (auto_evolve is not built).
        let (fitting, unfit): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| {
                let columns = &self.tables[&p.table].columns;
                match &p.change {
                    Change::Row(m) | Change::Delete(m) => m.keys().all(|k| columns.contains(k)),
                }
            });
        for p in &unfit {
            let columns = &self.tables[&p.table].columns;
            let missing: Vec<&String> = match &p.change {
                Change::Row(m) | Change::Delete(m) => {
                    m.keys().filter(|k| !columns.contains(k)).collect()
                }
            };
            let why =
                format!(
                "table {} has no column for field(s) {}: add them (auto_evolve is not built yet)",
                p.table,
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
            );
            self.refuse(p, why);
        }
        self.pending = fitting;
        let stored: Vec<(String, i32, i64)> = positions
            .iter()
            .map(|(tp, next)| (tp.topic.clone(), tp.partition, *next))
            .collect();
        let connector = self.info.connector.clone();
        let pending = std::mem::take(&mut self.pending);
        let settings = self.settings.clone();
        let tables = &self.tables;
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| ConnectorError::fatal("not connected"))?;
        let refused: Result<Vec<(usize, String)>> = self.runtime.block_on(async {
            let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, p) in pending.iter().enumerate() {
                by_table.entry(p.table.as_str()).or_default().push(i);
            }
            // First all at once; a data error sends every record through its own savepoint.
            let tx = client
                .transaction()
                .await
                .map_err(|e| db_error("BEGIN", &e))?;
            let mut failed = None;
            for (name, idx) in &by_table {
                let batch: Vec<&Pending> = idx.iter().map(|&i| &pending[i]).collect();
                if let Err(e) = apply(&tx, &settings, &tables[*name], &batch).await {
                    failed = Some(e);
                    break;
                }
            }
            let mut refused = Vec::new();
            let tx = match failed {
                None => tx,
                Some(e) if is_data_error(&e) => {
                    tx.rollback().await.map_err(|e| db_error("ROLLBACK", &e))?;
                    let mut tx = client
                        .transaction()
                        .await
                        .map_err(|e| db_error("BEGIN", &e))?;
                    for (i, p) in pending.iter().enumerate() {
                        let sp = tx
                            .savepoint("sluice_record")
                            .await
                            .map_err(|e| db_error("SAVEPOINT", &e))?;
                        match apply(&sp, &settings, &tables[p.table.as_str()], &[p]).await {
                            Ok(()) => sp.commit().await.map_err(|e| db_error("RELEASE", &e))?,
                            Err(e) if is_data_error(&e) => {
                                let why = e.as_db_error().map_or(e.to_string(), |d| {
                                    format!("{} ({})", d.message(), d.code().code())
                                });
                                refused.push((i, format!("table {}: {why}", p.table)));
                                sp.rollback()
                                    .await
                                    .map_err(|e| db_error("ROLLBACK TO SAVEPOINT", &e))?;
                            }
                            Err(e) => {
                                return Err(db_error(&format!("writing table {}", p.table), &e))
                            }
                        }
                    }
                    tx
                }
                Some(e) => return Err(db_error("writing rows", &e)),
            };
            offsets::store(&tx, &connector, epoch, &stored)
                .await
                .map_err(offsets_error)?;
            tx.commit().await.map_err(|e| db_error("COMMIT", &e))?;
            Ok::<_, ConnectorError>(refused)
        });
        let refused = match refused {
            Ok(r) => r,
            Err(e) => {
                // Nothing was committed: the records wait for the retry or the restart.
                self.pending = pending;
                return Err(e);
            }
        };
        for (i, why) in refused {
            let p = pending[i].clone();
            self.refuse(&p, why);
        }
        Ok(positions)
    }

    fn take_refused(&mut self) -> Vec<RefusedRecord> {
        std::mem::take(&mut self.refused)
    }

    fn close(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        // The runtime closes partitions before its last flush: what is pending is applied
        // now, with its positions, or the rows would land without them and be applied
        // again after the restart.
        self.flush()?;
        for tp in partitions {
            self.next.remove(&(tp.topic, tp.partition));
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.client = None;
        Ok(())
    }
}
