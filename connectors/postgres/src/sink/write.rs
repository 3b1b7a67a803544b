//! One transaction of the `postgres` sink: the pending records of a flush applied table by
//! table (COPY for runs, statements for a trickle), their positions stored beside them, and
//! a run Postgres refuses for its data applied again record by record under savepoints.
//!
//! Must not touch the task's state: a transaction runs on the sink's runtime while the task
//! reads the next records ([`super::task`] hands it its records and connection, and takes
//! them back with the outcome).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;
use sluice_connector_sdk::connector::ConnectorError;
use tokio_postgres::{Client, Transaction};

use super::copy::{self, Staged};
use super::record::Change;
use super::row::Row;
use super::settings::{InsertMode, SinkSettings};
use super::sql::{self, Table};
use super::task::{db_error, is_data_error, offsets_error, Pending};
use crate::offsets::{self, Epoch};

/// What one transaction writes.
pub(super) struct Batch {
    pub pending: Vec<Pending>,
    /// The positions committed with the rows: (topic, partition, next offset).
    pub stored: Vec<(String, i32, i64)>,
    pub connector: String,
    pub epoch: Epoch,
}

/// A transaction's outcome: the records Postgres refused (index in the batch, why), and
/// the rows that went through COPY.
pub(super) type Written = (Vec<(usize, String)>, u64);

/// Applies `batch` and its positions in one transaction, or nothing of it.
pub(super) async fn write(
    client: &mut Client,
    settings: &SinkSettings,
    tables: &HashMap<String, Table>,
    batch: &Batch,
) -> Result<Written, ConnectorError> {
    let pending = &batch.pending;
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
    let mut copied = 0;
    for (name, idx) in &by_table {
        let run: Vec<&Pending> = idx.iter().map(|&i| &pending[i]).collect();
        match apply(&tx, settings, &tables[*name], &run).await {
            Ok(n) => copied += n,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut refused = Vec::new();
    let tx = match failed {
        None => tx,
        Some(e) if is_data_error(&e) => {
            tracing::debug!(error = %e, "postgres sink: a run was refused for its data; applying record by record");
            copied = 0;
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
                match apply(&sp, settings, &tables[p.table.as_str()], &[p]).await {
                    Ok(_) => sp.commit().await.map_err(|e| db_error("RELEASE", &e))?,
                    Err(e) if is_data_error(&e) => {
                        let why = e.as_db_error().map_or(e.to_string(), |d| {
                            format!("{} ({})", d.message(), d.code().code())
                        });
                        refused.push((i, format!("table {}: {why}", p.table)));
                        sp.rollback()
                            .await
                            .map_err(|e| db_error("ROLLBACK TO SAVEPOINT", &e))?;
                    }
                    Err(e) => return Err(db_error(&format!("writing table {}", p.table), &e)),
                }
            }
            tx
        }
        Some(e) => return Err(db_error("writing rows", &e)),
    };
    offsets::store(&tx, &batch.connector, batch.epoch, &batch.stored)
        .await
        .map_err(offsets_error)?;
    tx.commit().await.map_err(|e| db_error("COMMIT", &e))?;
    Ok((refused, copied))
}

/// Runs at least this long go through COPY; shorter ones (a trickle of changes) cost less as
/// one statement with a `jsonb` parameter.
const COPY_AT_LEAST: usize = 16;

/// `sluice bench postgres-sink` sets this to measure the statement path beside COPY.
pub const STATEMENTS_ONLY_ENV: &str = "SLUICE_BENCH_PG_SINK_STATEMENTS_ONLY";

fn copy_at_least() -> usize {
    match std::env::var_os(STATEMENTS_ONLY_ENV) {
        Some(_) => usize::MAX,
        None => COPY_AT_LEAST,
    }
}

/// Applies `batch` (records of one table, in order) in `tx`: consecutive rows that leave
/// the same columns out in one statement, consecutive deletes in another, a truncate alone.
async fn apply(
    tx: &Transaction<'_>,
    settings: &SinkSettings,
    table: &Table,
    batch: &[&Pending],
) -> std::result::Result<u64, tokio_postgres::Error> {
    let mut copied = 0;
    /// Which statement a change joins: rows by the columns they leave out.
    fn run_of(c: &Change) -> (u8, Option<&Vec<String>>) {
        match c {
            Change::Row { unavailable, .. } => (0, Some(unavailable)),
            Change::Delete(_) => (1, None),
            Change::Truncate => (2, None),
            Change::Skip => (3, None),
        }
    }
    let mut i = 0;
    while i < batch.len() {
        let kind = run_of(&batch[i].change);
        let run: Vec<&Pending> = batch[i..]
            .iter()
            .take_while(|p| {
                run_of(&p.change) == kind && (kind.0 != 2 || p.offset == batch[i].offset)
            })
            .copied()
            .collect();
        i += run.len();
        let left_out: &[String] = kind.1.map(Vec::as_slice).unwrap_or_default();
        if kind.0 == 2 {
            tx.execute(&sql::truncate(table), &[]).await?;
            continue;
        }
        if run.len() >= copy_at_least() && kind.0 <= 1 {
            // The fast path: COPY, straight from the rows.
            let rows: Vec<&Row> = run
                .iter()
                .filter_map(|p| match &p.change {
                    Change::Row { row, .. } | Change::Delete(row) => Some(row),
                    Change::Truncate | Change::Skip => None,
                })
                .collect();
            copied += rows.len() as u64;
            if kind.0 == 1 {
                let key: Vec<&String> = table.key.iter().collect();
                copy::staged(tx, table, &key, &rows, Staged::Delete).await?;
                continue;
            }
            let cols = table.cols_of(&rows, left_out);
            match settings.insert_mode {
                InsertMode::Insert => copy::insert(tx, table, &cols, &rows).await?,
                InsertMode::Upsert => copy::staged(tx, table, &cols, &rows, Staged::Upsert).await?,
                InsertMode::Update => copy::staged(tx, table, &cols, &rows, Staged::Update).await?,
            }
            continue;
        }
        let docs: Vec<Json> = run
            .iter()
            .filter_map(|p| match &p.change {
                Change::Row { row, .. } | Change::Delete(row) => Some(row.to_json()),
                Change::Truncate | Change::Skip => None,
            })
            .collect();
        let statement = match kind.0 {
            0 => match settings.insert_mode {
                InsertMode::Insert => sql::insert(table, &docs, left_out),
                InsertMode::Upsert => sql::upsert(table, &docs, left_out),
                InsertMode::Update => sql::update(table, &docs, left_out),
            },
            1 => sql::delete(table),
            _ => continue,
        };
        tx.execute(&statement, &[&Json::Array(docs)]).await?;
    }
    Ok(copied)
}
