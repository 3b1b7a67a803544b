//! Exactly once into the target database: the positions a sink consumed (topic, partition,
//! next offset) live in a table of Sluice's in that database, written in the same
//! transaction as the rows they cover, so rows and positions commit together or not at
//! all; `open` reads them back and the runtime resumes there (the SDK's sink-held offsets).
//!
//! A task that lost its partitions but still runs (a zombie: stalled, then woken) must not
//! commit after its successor started. Each task claims the connector's *epoch* when it
//! starts, which increments it; every commit locks the connector's fence row and checks the
//! epoch is still its own. The lock also makes a successor's claim wait for a commit in
//! progress, so the successor reads positions that include it.
//!
//! Tables (created if missing):
//! - `sluice_sink_fence(connector text primary key, epoch bigint)`;
//! - `sluice_offsets(connector text, topic text, partition integer, next_offset bigint,
//!   primary key (connector, topic, partition))`.

use tokio_postgres::{Client, Transaction};

pub const FENCE_TABLE: &str = "sluice_sink_fence";
pub const OFFSETS_TABLE: &str = "sluice_offsets";

/// A task's claim on its connector's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(pub i64);

/// Why positions could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("connector `{connector}`: a newer task (epoch {current}) has taken over from this one (epoch {ours}); this task stops without committing")]
    Fenced {
        connector: String,
        ours: i64,
        current: i64,
    },
    #[error("connector `{connector}` has no fence row: its epoch was never claimed (or the row was deleted)")]
    NoClaim { connector: String },
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
}

impl OffsetsError {
    /// Whether trying again may help: a lost connection or a restarting server, yes; being
    /// fenced, no.
    pub fn is_retriable(&self) -> bool {
        match self {
            OffsetsError::Db(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// Creates Sluice's tables when they are missing.
pub async fn ensure_tables(client: &Client) -> Result<(), OffsetsError> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {FENCE_TABLE} (connector text PRIMARY KEY, epoch bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (
                 connector text NOT NULL, topic text NOT NULL, partition integer NOT NULL,
                 next_offset bigint NOT NULL, PRIMARY KEY (connector, topic, partition));"
        ))
        .await?;
    Ok(())
}

/// A new task takes over `connector`: its epoch goes up by one, and every earlier task's
/// commits fail from now on.
pub async fn claim(client: &Client, connector: &str) -> Result<Epoch, OffsetsError> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {FENCE_TABLE} (connector, epoch) VALUES ($1, 1)
                 ON CONFLICT (connector) DO UPDATE SET epoch = {FENCE_TABLE}.epoch + 1
                 RETURNING epoch"
            ),
            &[&connector],
        )
        .await?;
    Ok(Epoch(row.get(0)))
}

/// The positions stored for `connector`: (topic, partition, next offset to read).
pub async fn read(
    client: &Client,
    connector: &str,
) -> Result<Vec<(String, i32, i64)>, OffsetsError> {
    let rows = client
        .query(
            &format!(
                "SELECT topic, partition, next_offset FROM {OFFSETS_TABLE}
                 WHERE connector = $1 ORDER BY topic, partition"
            ),
            &[&connector],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Inside the transaction that writes the rows: checks that `epoch` is still the
/// connector's (holding its fence row until the commit), then stores `positions`.
pub async fn store(
    tx: &Transaction<'_>,
    connector: &str,
    epoch: Epoch,
    positions: &[(String, i32, i64)],
) -> Result<(), OffsetsError> {
    let current: Option<i64> = tx
        .query_opt(
            &format!("SELECT epoch FROM {FENCE_TABLE} WHERE connector = $1 FOR UPDATE"),
            &[&connector],
        )
        .await?
        .map(|r| r.get(0));
    match current {
        None => {
            return Err(OffsetsError::NoClaim {
                connector: connector.to_string(),
            })
        }
        Some(current) if current != epoch.0 => {
            return Err(OffsetsError::Fenced {
                connector: connector.to_string(),
                ours: epoch.0,
                current,
            })
        }
        Some(_) => {}
    }
    if positions.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = positions.iter().map(|(t, _, _)| t.as_str()).collect();
    let partitions: Vec<i32> = positions.iter().map(|(_, p, _)| *p).collect();
    let offsets: Vec<i64> = positions.iter().map(|(_, _, o)| *o).collect();
    tx.execute(
        &format!(
            "INSERT INTO {OFFSETS_TABLE} (connector, topic, partition, next_offset)
             SELECT $1, t, p, o FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS u(t, p, o)
             ON CONFLICT (connector, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
        ),
        &[&connector, &topics, &partitions, &offsets],
    )
    .await?;
    Ok(())
}
