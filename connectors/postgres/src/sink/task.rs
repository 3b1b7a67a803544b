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
//!
//! A full batch (`batch_size`) is written on the sink's runtime while the runtime goes on
//! putting the next records: Postgres takes one batch while the next is read and parsed.
//! One transaction at a time, in order; its positions are reported by the first flush after
//! it commits, and if it fails nothing of it was committed and its records are pending
//! again, ahead of the newer ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use sluice_connector_sdk::connector::{
    ConnectorError, RefusedRecord, Result, SinkRecord, SinkTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::data::Payload;
use tokio_postgres::Client;

use super::record::kafka_columns;
use super::record::{understand, Change, SchemaCache};
use super::settings::PkMode;
use super::settings::SinkSettings;
use super::sql::{self, Table};
use super::types::{column_type, Shape};
pub use super::write::STATEMENTS_ONLY_ENV;
use super::write::{self, Batch, Written};
use crate::offsets::{self, Epoch, OffsetsError};

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) table: String,
    pub(super) change: Change,
    pub(super) row_shape: Option<Arc<Shape>>,
    pub(super) key_shape: Option<Arc<Shape>>,
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) value: Option<Bytes>,
}

impl Pending {
    fn fields(&self) -> Vec<&String> {
        match &self.change {
            Change::Row { row, .. } | Change::Delete(row) => row.keys().collect(),
            Change::Truncate | Change::Skip => Vec::new(),
        }
    }
}

/// A task of the `postgres` sink.
pub struct PostgresSinkTask {
    info: TaskInfo,
    settings: Arc<SinkSettings>,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    epoch: Option<Epoch>,
    tables: HashMap<String, Table>,
    schemas: SchemaCache,
    /// The positions of the last transaction (what a flush that waits reports).
    applied: Vec<(TopicPartition, i64)>,
    /// When the oldest pending record was put.
    pending_since: Option<std::time::Instant>,
    /// Rows committed through COPY (the fast path), for tests and benchmarks.
    rows_copied: u64,
    pending: Vec<Pending>,
    /// The next offset per partition once `pending` is applied.
    next: BTreeMap<(String, i32), i64>,
    refused: Vec<RefusedRecord>,
    /// The transaction running on the runtime (its connection and records are in it).
    in_flight: Option<InFlight>,
}

/// A transaction running while the task goes on: what it returns, and the positions it
/// commits.
struct InFlight {
    job: tokio::task::JoinHandle<(Client, Batch, std::result::Result<Written, ConnectorError>)>,
    positions: Vec<(TopicPartition, i64)>,
}

pub(super) fn db_error(context: &str, e: &tokio_postgres::Error) -> ConnectorError {
    let text = match e.as_db_error() {
        Some(db) => format!("{context}: {} ({})", db.message(), db.code().code()),
        None => format!("{context}: {e}"),
    };
    // A lost connection or a restarting server may come back (the server cuts its
    // sessions with 57P01 as it shuts down); the rest will not.
    let passes = e
        .as_db_error()
        .is_none_or(|db| crate::client::retry_can_help(db.code().code()));
    if e.is_closed() || passes {
        ConnectorError::retriable(text)
    } else {
        ConnectorError::fatal(text)
    }
}

pub(super) fn offsets_error(e: OffsetsError) -> ConnectorError {
    if e.is_retriable() {
        ConnectorError::retriable(e.to_string())
    } else {
        ConnectorError::fatal(e.to_string())
    }
}

/// Whether Postgres refused the data itself (SQLSTATE classes 22 and 23), not the statement.
pub(super) fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(&db.code().code()[..2], "22" | "23"))
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
            schemas: SchemaCache::default(),
            rows_copied: 0,
            applied: Vec::new(),
            pending_since: None,
            pending: Vec::new(),
            next: BTreeMap::new(),
            refused: Vec::new(),
            in_flight: None,
        })
    }

    /// Rows committed through COPY so far (the rest went through statements).
    pub fn rows_copied(&self) -> u64 {
        self.rows_copied
    }

    fn connect(&mut self) -> Result<()> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        let config = self.settings.connection.clone();
        let client = self.runtime.block_on(async {
            let client = crate::client::open(&config)
                .await
                .map_err(|e| e.into_connector(|e| db_error("connecting to Postgres", e)))?;
            offsets::ensure_tables(&client)
                .await
                .map_err(offsets_error)?;
            Ok::<_, ConnectorError>(client)
        })?;
        self.client = Some(client);
        self.tables.clear();
        Ok(())
    }

    /// The target tables of what is pending, read once: created when missing
    /// (`auto_create`), widened for new fields (`auto_evolve`); records with fields the
    /// table still has no column for are refused.
    fn prepare_tables(&mut self) -> Result<()> {
        let names: Vec<String> = {
            let mut n: Vec<String> = self.pending.iter().map(|p| p.table.clone()).collect();
            n.sort();
            n.dedup();
            n
        };
        for name in names {
            if self.tables.contains_key(&name) {
                continue;
            }
            let client = self
                .client
                .as_ref()
                .ok_or_else(|| ConnectorError::fatal("not connected"))?;
            let mut found = self
                .runtime
                .block_on(sql::describe(client, &name, &self.settings))?;
            if found.is_none() && self.settings.auto_create {
                let (columns, key) = self.columns_to_create(&name)?;
                let statement = sql::create_table(&name, &columns, &key);
                tracing::info!(table = %name, "postgres sink: creating the table ({statement})");
                self.runtime
                    .block_on(client.batch_execute(&statement))
                    .map_err(|e| db_error(&format!("creating table {name}"), &e))?;
                found = self
                    .runtime
                    .block_on(sql::describe(client, &name, &self.settings))?;
            }
            let table = found.ok_or_else(|| {
                ConnectorError::fatal(format!(
                    "table {name} does not exist in the target database: create it, or set `auto_create: true`"
                ))
            })?;
            self.tables.insert(name, table);
        }
        if self.settings.auto_evolve {
            self.evolve()?;
        }
        // Most batches fit whole: only then is nothing moved.
        let fits = |tables: &HashMap<String, Table>, p: &Pending| {
            let table = &tables[&p.table];
            match &p.change {
                Change::Row { row, .. } | Change::Delete(row) => row.keys().all(|k| table.has(k)),
                Change::Truncate | Change::Skip => true,
            }
        };
        if self.pending.iter().all(|p| fits(&self.tables, p)) {
            return Ok(());
        }
        let (fitting, unfit): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| fits(&self.tables, p));
        for p in &unfit {
            let columns = &self.tables[&p.table].columns;
            let missing: Vec<String> = p
                .fields()
                .into_iter()
                .filter(|k| !columns.contains(k))
                .map(|m| format!("`{m}`"))
                .collect();
            let fix = if !self.settings.auto_evolve {
                "add the columns, or set `auto_evolve: true`"
            } else if p.row_shape.is_none() {
                "the record carries no schema to type new columns by (read the topic as avro, or json with schemas): add the columns"
            } else {
                "auto_evolve adds only optional fields (a required field would need a value for the rows already there): add the columns"
            };
            let why = format!(
                "table {} has no column for field(s) {}: {fix}",
                p.table,
                missing.join(", ")
            );
            self.refuse(p, why);
        }
        self.pending = fitting;
        Ok(())
    }

    /// The columns and key of a table created for the pending records of `name`, typed by
    /// the first record's schema.
    fn columns_to_create(&self, name: &str) -> Result<(Vec<sql::Column>, Vec<String>)> {
        let s = &self.settings;
        let Some(first) = self
            .pending
            .iter()
            .find(|p| p.table == name && p.row_shape.is_some())
        else {
            return Err(ConnectorError::fatal(format!(
                "table {name} does not exist, and `auto_create` needs records that carry a schema to create it from: read the topic with `value_format: avro` (or json with `value_schemas_enable: true`), or create the table"
            )));
        };
        let row = first.row_shape.clone().unwrap_or_default();
        let mut columns: Vec<sql::Column> = Vec::new();
        let typed = |field: &str| -> Option<sql::Column> {
            row.field(field)
                .or_else(|| first.key_shape.as_ref().and_then(|k| k.field(field)))
                .map(|f| sql::Column {
                    name: f.name.clone(),
                    sql_type: column_type(&f.kind),
                    nullable: f.optional,
                })
        };
        let key: Vec<String> = match s.pk_mode {
            PkMode::None => Vec::new(),
            PkMode::Kafka => {
                let names = kafka_columns(s);
                for (n, t) in names.iter().zip(["text", "integer", "bigint"]) {
                    columns.push(sql::Column {
                        name: n.clone(),
                        sql_type: t.into(),
                        nullable: false,
                    });
                }
                names
            }
            PkMode::RecordKey if s.pk_fields.is_empty() => match &first.key_shape {
                Some(k) => k.fields.iter().map(|f| f.name.clone()).collect(),
                None => {
                    return Err(ConnectorError::fatal(format!(
                        "creating table {name}: the record key carries no schema, so its columns are unknown: name them in `pk_fields`"
                    )))
                }
            },
            PkMode::RecordKey | PkMode::RecordValue => s.pk_fields.clone(),
        };
        if s.pk_mode != PkMode::Kafka {
            for k in &key {
                let mut column = typed(k).ok_or_else(|| {
                    ConnectorError::fatal(format!(
                        "creating table {name}: the key column `{k}` is in neither the key's nor the value's schema"
                    ))
                })?;
                column.nullable = false;
                columns.push(column);
            }
        }
        for f in &row.fields {
            if !columns.iter().any(|c| c.name == f.name) {
                columns.push(sql::Column {
                    name: f.name.clone(),
                    sql_type: column_type(&f.kind),
                    nullable: f.optional,
                });
            }
        }
        Ok((columns, key))
    }

    /// `ALTER TABLE … ADD COLUMN` for the optional fields pending rows have and their
    /// tables do not; never drops or retypes a column.
    fn evolve(&mut self) -> Result<()> {
        let mut added: BTreeMap<String, Vec<sql::Column>> = BTreeMap::new();
        for p in &self.pending {
            let (Some(shape), Change::Row { row, .. }) = (&p.row_shape, &p.change) else {
                continue;
            };
            let table = &self.tables[&p.table];
            for field in row.keys() {
                if table.has(field) {
                    continue;
                }
                let Some(f) = shape.field(field).filter(|f| f.optional) else {
                    continue;
                };
                let list = added.entry(p.table.clone()).or_default();
                if !list.iter().any(|c| &c.name == field) {
                    list.push(sql::Column {
                        name: f.name.clone(),
                        sql_type: column_type(&f.kind),
                        nullable: true,
                    });
                }
            }
        }
        for (name, columns) in added {
            let client = self
                .client
                .as_ref()
                .ok_or_else(|| ConnectorError::fatal("not connected"))?;
            let statement = sql::add_columns(&self.tables[&name], &columns);
            tracing::info!(table = %name, "postgres sink: widening the table ({statement})");
            self.runtime
                .block_on(client.batch_execute(&statement))
                .map_err(|e| db_error(&format!("adding columns to table {name}"), &e))?;
            let table = self
                .runtime
                .block_on(sql::describe(client, &name, &self.settings))?
                .ok_or_else(|| {
                    ConnectorError::retriable(format!("table {name} went away while being widened"))
                })?;
            self.tables.insert(name, table);
        }
        Ok(())
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

impl SinkTask for PostgresSinkTask {
    fn open(&mut self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        self.settle()?;
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
            let understood = understand(&self.settings, r, &mut self.schemas).map_err(|why| {
                // Refused before Postgres sees it: the error policy decides.
                ConnectorError::bad_record(format!(
                    "{}-{} offset {}: {why}",
                    r.topic, r.partition, r.offset
                ))
            })?;
            taken.push(Pending {
                table: understood.table,
                change: understood.change,
                row_shape: understood.row_shape,
                key_shape: understood.key_shape,
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
        // A skipped change (a delete while deletes are off) only moves the position on.
        if self.pending.is_empty() {
            self.pending_since = Some(std::time::Instant::now());
        }
        self.pending
            .extend(taken.into_iter().filter(|p| p.change != Change::Skip));
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        self.apply_pending(false)
    }

    fn take_refused(&mut self) -> Vec<RefusedRecord> {
        std::mem::take(&mut self.refused)
    }

    fn close(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        // The runtime closes partitions before its last flush: what is pending is applied
        // now, with its positions, or the rows would land without them and be applied
        // again after the restart.
        self.apply_pending(true)?;
        for tp in partitions {
            self.next.remove(&(tp.topic, tp.partition));
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        // A transaction in flight ends (committed or not) before the connection closes;
        // its outcome is for the successor to read back from the positions table.
        let ended = self.settle();
        self.client = None;
        ended
    }
}

impl PostgresSinkTask {
    /// Applies what is pending in one transaction with its positions, and returns the
    /// positions applied. Unless `now`, a small batch waits (`batch.max_rows`,
    /// `batch.linger`): each transaction costs round trips and a commit, so fewer, larger
    /// ones go faster.
    fn apply_pending(&mut self, now: bool) -> Result<Vec<(TopicPartition, i64)>> {
        if self.in_flight.as_ref().is_some_and(|f| f.job.is_finished()) {
            self.settle()?;
        }
        if !now
            && !self.pending.is_empty()
            && self.pending.len() < self.settings.batch_size
            && self
                .pending_since
                .is_some_and(|t| t.elapsed() < self.settings.batch_linger)
        {
            return Ok(self.applied.clone());
        }
        // One transaction at a time, in order: the one in flight ends first.
        self.settle()?;
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
            self.applied = positions.clone();
            return Ok(positions);
        }
        self.connect()?;
        let epoch = self
            .epoch
            .ok_or_else(|| ConnectorError::fatal("flush before open"))?;
        self.prepare_tables()?;
        let stored: Vec<(String, i32, i64)> = positions
            .iter()
            .map(|(tp, next)| (tp.topic.clone(), tp.partition, *next))
            .collect();
        // A full batch is written while the task reads the next (under load, Postgres
        // takes one batch while the next is parsed); one sent because it waited long
        // enough is awaited, so that a trickle is reported as soon as it is written.
        let full = self.pending.len() >= self.settings.batch_size;
        let batch = Batch {
            pending: std::mem::take(&mut self.pending),
            stored,
            connector: self.info.connector.clone(),
            epoch,
        };
        self.pending_since = None;
        let mut client = self
            .client
            .take()
            .ok_or_else(|| ConnectorError::fatal("not connected"))?;
        let settings = self.settings.clone();
        let tables = self.tables.clone();
        // The transaction runs on the sink's runtime while the task reads and parses the
        // next records: Postgres takes one batch while the next is made ready. Its
        // positions are reported once it has committed (the next flush, or now).
        let job = self.runtime.spawn(async move {
            let outcome = write::write(&mut client, &settings, &tables, &batch).await;
            (client, batch, outcome)
        });
        self.in_flight = Some(InFlight { job, positions });
        if now || !full {
            self.settle()?;
        }
        Ok(self.applied.clone())
    }

    /// Waits for the transaction in flight, if any, and takes its outcome: its positions
    /// become the applied ones, its refused records go to the error policy; if it failed,
    /// nothing of it was committed and its records are pending again, first.
    fn settle(&mut self) -> Result<()> {
        let Some(InFlight { job, positions }) = self.in_flight.take() else {
            return Ok(());
        };
        let (client, batch, outcome) = self
            .runtime
            .block_on(job)
            .map_err(|e| ConnectorError::fatal(format!("the sink's transaction ended: {e}")))?;
        self.client = Some(client);
        match outcome {
            Ok((refused, copied)) => {
                self.rows_copied += copied;
                for (i, why) in refused {
                    let p = batch.pending[i].clone();
                    self.refuse(&p, why);
                }
                self.applied = positions;
                Ok(())
            }
            Err(e) => {
                let mut again = batch.pending;
                again.append(&mut self.pending);
                self.pending = again;
                self.pending_since
                    .get_or_insert_with(std::time::Instant::now);
                Err(e)
            }
        }
    }
}
