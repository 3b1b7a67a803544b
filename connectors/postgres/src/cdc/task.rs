//! The source task: `start` checks the database and explains what is wrong before anything
//! is created; a capture thread (its own small tokio runtime) then runs sessions: the
//! publication, the slot, a snapshot when one is due, and the stream. Records reach `poll`
//! through a bounded channel; `committed` tells the thread what is durable in the log, and
//! only that is confirmed to the slot. A lost connection or a restarting server is retried
//! with backoff inside the thread, resuming where it was.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_connector_sdk::connector::{
    ConnectorError, PositionOrder, Result, SourcePosition, SourceRecord, SourceTask, TaskInfo,
};
use sluice_connector_sdk::data::{Field, Payload, Schema, Value};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::event::TableEvents;
use super::lsn::Lsn;
use super::pgoutput;
use super::replication::{quote_ident, quote_literal, Replicated, ReplicationConnection};
use super::settings::{CdcSettings, SnapshotMode};
use super::setup::{self, CapturedTable, Types};
use super::snapshot::{self, Emit, SnapshotRun};
use super::stream::{Capture, Committed, StreamPos};
use super::types::ColumnType;
use super::CdcError;

/// Records per batch handed to `poll`, and batches the channel holds.
const BATCH: usize = 512;
const CHANNEL_BATCHES: usize = 4;
/// Attempts at a slot another process holds before the task fails saying who.
const BUSY_ATTEMPTS: u32 = 6;

enum Delivery {
    Records(Vec<SourceRecord>),
    Failed(ConnectorError),
}

#[derive(Default)]
struct Shared {
    /// The last committed stream position (what the slot may be confirmed up to).
    committed: Mutex<Option<StreamPos>>,
}

pub struct CdcTask {
    info: TaskInfo,
    settings: Arc<CdcSettings>,
    stream: Arc<str>,
    rx: Option<Receiver<Delivery>>,
    buffer: VecDeque<SourceRecord>,
    failed: Option<ConnectorError>,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl CdcTask {
    pub fn new(info: TaskInfo, settings: CdcSettings) -> CdcTask {
        let stream: Arc<str> = Arc::from(format!("postgres_cdc:{}", settings.slot));
        CdcTask {
            info,
            settings: Arc::new(settings),
            stream,
            rx: None,
            buffer: VecDeque::new(),
            failed: None,
            shared: Arc::new(Shared::default()),
            stop: None,
            thread: None,
        }
    }
}

/// Where the last run left off, from the committed position.
#[derive(Debug, Clone)]
enum Resume {
    Fresh,
    /// A snapshot that did not finish.
    Snapshot {
        slot_lsn: Lsn,
        done: Vec<String>,
    },
    /// Streaming from `start`, skipping what `after` covers.
    Stream {
        start: Lsn,
        after: Option<StreamPos>,
    },
}

impl Resume {
    fn from_committed(c: Option<Committed>) -> Resume {
        match c {
            None => Resume::Fresh,
            Some(Committed::Snapshot {
                slot_lsn,
                done,
                last: false,
                ..
            }) => Resume::Snapshot { slot_lsn, done },
            Some(Committed::Snapshot {
                slot_lsn,
                last: true,
                ..
            }) => Resume::Stream {
                start: slot_lsn,
                after: None,
            },
            Some(Committed::Stream(pos)) => Resume::Stream {
                start: pos.lsn,
                after: Some(pos),
            },
        }
    }
}

impl SourceTask for CdcTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        let last = committed
            .iter()
            .rev()
            .find(|p| p.stream == self.stream)
            .and_then(|p| Committed::parse(&p.offset));
        let resume = Resume::from_committed(last);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectorError::fatal(format!("starting the capture runtime: {e}")))?;
        let settings = self.settings.clone();
        // Everything that can be checked is checked before anything is created.
        let (client, tables) = runtime
            .block_on(async {
                let client = setup::connect(&settings).await?;
                let tables = setup::check(&client, &settings).await?;
                Ok::<_, CdcError>((client, tables))
            })
            .map_err(|e| e.to_connector())?;
        tracing::info!(
            connector = %self.info.connector,
            slot = %settings.slot,
            publication = %settings.publication,
            tables = %tables.iter().map(CapturedTable::dotted).collect::<Vec<_>>().join(", "),
            resume = ?resume,
            "postgres_cdc: capturing"
        );
        let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
        let (stop_tx, stop_rx) = watch::channel(false);
        let capture = Capturer {
            settings,
            stream: self.stream.clone(),
            application: format!("sluice_{}", self.info.connector),
            shared: self.shared.clone(),
            outbox: Outbox { tx, stop: stop_rx },
            client: Some(client),
            tables,
            resume,
            capture: None,
            types: Types::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("sluice-cdc-{}", self.info.connector))
            .spawn(move || runtime.block_on(capture.run()))
            .map_err(|e| ConnectorError::fatal(format!("starting the capture thread: {e}")))?;
        self.rx = Some(rx);
        self.stop = Some(stop_tx);
        self.thread = Some(thread);
        Ok(())
    }

    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        let Some(rx) = &self.rx else {
            return Err(ConnectorError::fatal("polled before start"));
        };
        if self.buffer.is_empty() {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            match rx.recv_timeout(timeout) {
                Ok(Delivery::Records(r)) => self.buffer.extend(r),
                Ok(Delivery::Failed(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(ConnectorError::fatal("the capture thread ended"))
                }
            }
        }
        while self.buffer.len() < max_records && self.failed.is_none() {
            match rx.try_recv() {
                Ok(Delivery::Records(r)) => self.buffer.extend(r),
                Ok(Delivery::Failed(e)) => self.failed = Some(e),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let n = self.buffer.len().min(max_records);
        Ok(self.buffer.drain(..n).collect())
    }

    fn position_order(&self) -> Option<PositionOrder> {
        Some(|p| {
            // Asked of every record: a snapshot read is told apart before its list of tables
            // done is read.
            if p.offset.get("snapshot_lsn").is_some() {
                return None;
            }
            match Committed::parse(&p.offset)? {
                // Heartbeats repeat a position; snapshot reads are not in the stream's order.
                Committed::Stream(_) if p.offset.get("heartbeat").is_some() => None,
                Committed::Stream(pos) => Some((u128::from(pos.lsn.0) << 64) | u128::from(pos.seq)),
                Committed::Snapshot { .. } => None,
            }
        })
    }

    fn committed(&mut self, positions: Vec<SourcePosition>) -> Result<()> {
        for p in positions.iter().filter(|p| p.stream == self.stream) {
            if let Some(Committed::Stream(pos)) = Committed::parse(&p.offset) {
                let mut c = self
                    .shared
                    .committed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *c = Some(pos);
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        // The thread sees the stop at its next step; the channel is dropped so a send
        // waiting for room ends too.
        self.rx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Ok(())
    }
}

/// The channel to `poll`, with the task's stop.
struct Outbox {
    tx: SyncSender<Delivery>,
    stop: watch::Receiver<bool>,
}

impl Outbox {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Hands records on without waiting: the records back when the channel is full.
    fn try_send(
        &self,
        records: Vec<SourceRecord>,
    ) -> std::result::Result<(), Option<Vec<SourceRecord>>> {
        match self.tx.try_send(Delivery::Records(records)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Delivery::Records(r))) => Err(Some(r)),
            Err(_) => Err(None),
        }
    }

    fn fail(&self, e: ConnectorError) {
        let _ = self.tx.send(Delivery::Failed(e));
    }
}

impl Emit for Outbox {
    async fn emit(&mut self, mut records: Vec<SourceRecord>) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            match self.try_send(records) {
                Ok(()) => return true,
                Err(Some(back)) => {
                    records = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(None) => return false,
            }
        }
    }
}

/// The capture thread's state across sessions.
struct Capturer {
    settings: Arc<CdcSettings>,
    stream: Arc<str>,
    application: String,
    shared: Arc<Shared>,
    outbox: Outbox,
    client: Option<Client>,
    tables: Vec<CapturedTable>,
    resume: Resume,
    /// Kept across reconnects: what is in flight stays in flight.
    capture: Option<Capture>,
    types: Types,
}

/// How a session ended without an error.
enum Ended {
    Stopped,
    /// `initial_only`: the snapshot is written; nothing more to do.
    SnapshotOnly,
}

impl Capturer {
    async fn run(mut self) {
        let mut attempt: u32 = 0;
        let mut busy: u32 = 0;
        loop {
            let started = Instant::now();
            let ended = self.session().await;
            // A session that ran for a while was healthy: the next failure starts the
            // backoff again from its shortest wait.
            if started.elapsed() > Duration::from_secs(30) {
                attempt = 0;
                busy = 0;
            }
            match ended {
                Ok(Ended::Stopped) => return,
                Ok(Ended::SnapshotOnly) => {
                    tracing::info!(slot = %self.settings.slot, "postgres_cdc: snapshot_mode initial_only: the snapshot is written, no changes follow");
                    let mut stop = self.outbox.stop.clone();
                    let _ = stop.wait_for(|s| *s).await;
                    return;
                }
                Err(e) if e.is_retriable() && !self.outbox.stopped() => {
                    if matches!(e, CdcError::Busy(_)) {
                        busy += 1;
                        if busy >= BUSY_ATTEMPTS {
                            self.outbox.fail(ConnectorError::fatal(e.to_string()));
                            return;
                        }
                    }
                    attempt += 1;
                    let wait = Duration::from_millis(500 * 2u64.pow(attempt.min(6)))
                        .min(Duration::from_secs(30));
                    tracing::warn!(slot = %self.settings.slot, error = %e, retry_in = ?wait, "postgres_cdc: retrying");
                    self.client = None;
                    if let Some(c) = &mut self.capture {
                        c.reconnected();
                    }
                    let mut stop = self.outbox.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => {
                    if !self.outbox.stopped() {
                        tracing::error!(slot = %self.settings.slot, error = %e, "postgres_cdc: stopped");
                        self.outbox.fail(e.to_connector());
                    }
                    return;
                }
            }
        }
    }

    async fn session(&mut self) -> std::result::Result<Ended, CdcError> {
        let client = match self.client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => {
                let c = setup::connect(&self.settings).await?;
                self.tables = setup::check(&c, &self.settings).await?;
                c
            }
        };
        let result = self.session_with(&client).await;
        self.client = Some(client);
        result
    }

    async fn session_with(&mut self, client: &Client) -> std::result::Result<Ended, CdcError> {
        let settings = self.settings.clone();
        setup::ensure_publication(client, &settings, &self.tables).await?;
        let db = settings
            .connection
            .get_dbname()
            .unwrap_or_default()
            .to_string();
        let mut slot = setup::slot_state(client, &settings.slot).await?;
        if let Some(s) = &slot {
            if let Some(pid) = s.active_pid {
                return Err(CdcError::Busy(format!(
                    "the slot `{}` is in use by process {pid}{}; stop the other reader (or `SELECT pg_terminate_backend({pid})`)",
                    settings.slot,
                    s.holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
                )));
            }
            if s.plugin.as_deref() != Some("pgoutput") || s.database.as_deref() != Some(db.as_str())
            {
                return Err(CdcError::Setup(format!(
                    "the slot `{}` exists for plugin {:?} in database {:?}; Sluice needs a pgoutput slot in `{db}`: choose another `slot`",
                    settings.slot, s.plugin, s.database
                )));
            }
        }
        let lost = slot
            .as_ref()
            .is_some_and(|s| s.wal_status.as_deref() == Some("lost"));
        let mut repl =
            ReplicationConnection::connect(&settings.connection, &self.application).await?;

        // What to do: a fresh snapshot with a new slot, a snapshot resumed on a temporary
        // slot's export, or only the stream.
        let mode = settings.snapshot_mode;
        let (start, after, snapshot): (Lsn, Option<StreamPos>, Plan) = match self.resume.clone() {
            Resume::Fresh => {
                let wants = mode != SnapshotMode::NoData;
                if slot.is_some() && lost {
                    setup::drop_slot(client, &settings.slot).await?;
                    slot = None;
                }
                if slot.is_some() && wants {
                    // The slot exists but no position was stored (a crash before the
                    // snapshot's first commit): it still holds every change since its
                    // point, so the snapshot comes from a temporary slot's export and
                    // the stream follows from the slot, dropping nothing.
                    (Lsn(0), None, Plan::Temporary { done: Vec::new() })
                } else if slot.is_none() {
                    let (point, name) =
                        create_slot(&mut repl, &settings.slot, false, wants).await?;
                    tracing::info!(slot = %settings.slot, consistent_point = %point, "postgres_cdc: slot created");
                    if wants {
                        (point, None, Plan::Exported { name, point })
                    } else {
                        (point, None, Plan::None)
                    }
                } else {
                    (Lsn(0), None, Plan::None)
                }
            }
            Resume::Snapshot { slot_lsn, done } => {
                if slot.is_none() || lost {
                    return Err(slot_gone(&settings.slot, lost));
                }
                (slot_lsn, None, Plan::Temporary { done })
            }
            Resume::Stream { start, after } => {
                if slot.is_none() || lost {
                    if mode == SnapshotMode::WhenNeeded {
                        tracing::warn!(slot = %settings.slot, "postgres_cdc: the slot is gone; snapshot_mode when_needed: a new snapshot");
                        if lost {
                            setup::drop_slot(client, &settings.slot).await?;
                        }
                        self.resume = Resume::Fresh;
                        self.capture = None;
                        return Err(CdcError::Lost("starting again with a new slot".into()));
                    }
                    return Err(slot_gone(&settings.slot, lost));
                }
                if mode == SnapshotMode::Always && self.capture.is_none() {
                    (start, after, Plan::Temporary { done: Vec::new() })
                } else {
                    (start, after, Plan::None)
                }
            }
        };

        if self.capture.is_none() {
            // Each table's events from the catalog, so the snapshot and the stream share one
            // schema per table until its columns change.
            let mut built: Vec<(CapturedTable, Arc<TableEvents>)> = Vec::new();
            for t in self.tables.clone() {
                let events = self.table_events(client, &t).await?;
                built.push((t, Arc::new(events)));
            }
            let run_snapshot = !matches!(snapshot, Plan::None);
            if run_snapshot {
                let (name, point, done, temp) = match snapshot {
                    Plan::Exported { name, point } => (name, point, Vec::new(), None),
                    Plan::Temporary { done } => {
                        // A temporary slot exports a snapshot of now. The main slot's stream
                        // still sends these tables' changes since its own point: a change
                        // the new snapshot already shows comes again after it (so a row the
                        // first, interrupted snapshot read and that was deleted since is
                        // deleted downstream too), and no change is lost.
                        let mut temp =
                            ReplicationConnection::connect(&settings.connection, &self.application)
                                .await?;
                        let temp_slot = format!(
                            "{}_snap{}",
                            &settings.slot[..settings.slot.len().min(50)],
                            std::process::id()
                        );
                        let (point, name) = create_slot(&mut temp, &temp_slot, true, true).await?;
                        tracing::info!(point = %point, "postgres_cdc: snapshot from a temporary slot");
                        (name, start, done, Some(temp))
                    }
                    Plan::None => unreachable!("checked above"),
                };
                client
                    .batch_execute(&format!(
                        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                        quote_literal(&name)
                    ))
                    .await?;
                let mut run = SnapshotRun {
                    stream: self.stream.clone(),
                    topic_prefix: &settings.topic_prefix,
                    db: &db,
                    slot_lsn: point,
                    done,
                    batch: BATCH,
                };
                let counts = snapshot::read(client, &mut run, &built, &mut self.outbox).await;
                client.batch_execute("COMMIT").await.ok();
                if let Some(temp) = temp {
                    temp.close().await;
                }
                match counts? {
                    None => return Ok(Ended::Stopped),
                    Some(counts) => {
                        let rows: u64 = counts.iter().map(|(_, n)| n).sum();
                        tracing::info!(slot = %settings.slot, tables = counts.len(), rows, "postgres_cdc: snapshot done");
                    }
                }
                if mode == SnapshotMode::InitialOnly {
                    repl.close().await;
                    return Ok(Ended::SnapshotOnly);
                }
            }
            let mut capture = Capture::new(
                settings.clone(),
                self.stream.clone(),
                db.clone(),
                after,
                start,
            );
            for (t, events) in built {
                capture.install(t.oid, events);
            }
            self.capture = Some(capture);
        }

        let resume_at = self
            .capture
            .as_ref()
            .and_then(|c| c.last_sent)
            .map(|p| p.lsn)
            .unwrap_or(start);
        let options = format!(
            "proto_version '1', publication_names {}",
            quote_literal(&quote_ident(&settings.publication))
        );
        repl.start_replication(&settings.slot, resume_at, &options)
            .await?;
        tracing::info!(slot = %settings.slot, from = %resume_at, "postgres_cdc: streaming");
        self.stream_loop(client, &mut repl).await
    }

    async fn table_events(
        &mut self,
        client: &Client,
        t: &CapturedTable,
    ) -> std::result::Result<TableEvents, CdcError> {
        let catalog = setup::table_columns(client, t.oid).await?;
        let key = if catalog.primary_key.is_empty() {
            catalog.replica_identity_index.clone()
        } else {
            catalog.primary_key.clone()
        };
        let mut columns = Vec::with_capacity(catalog.columns.len());
        for (name, oid, typmod) in &catalog.columns {
            columns.push(ColumnType {
                name: name.clone(),
                pg: self.types.resolve(client, *oid, *typmod).await?,
                key: key.contains(name),
            });
        }
        TableEvents::new(
            &self.settings.topic_prefix,
            &t.schema,
            &t.name,
            columns,
            self.settings
                .key_columns
                .get(&t.dotted())
                .map(Vec::as_slice),
            self.settings.decimals,
        )
        .map_err(CdcError::Setup)
    }

    async fn stream_loop(
        &mut self,
        client: &Client,
        repl: &mut ReplicationConnection,
    ) -> std::result::Result<Ended, CdcError> {
        let settings = self.settings.clone();
        let mut status =
            tokio::time::interval(settings.status_interval.min(Duration::from_secs(1)));
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = Instant::now() - settings.status_interval;
        let mut sent_confirm = Lsn(0);
        let mut last_heartbeat = Instant::now();
        let mut stop = self.outbox.stop.clone();
        let mut pending: Option<Vec<SourceRecord>> = None;
        let Some(capture) = self.capture.as_mut() else {
            return Err(CdcError::Protocol("streaming without a capture".into()));
        };
        loop {
            // Hand on a batch when it is full or when the stream has nothing more ready
            // (records gather while messages are already read, so a busy stream makes big
            // batches and an idle one sends at once). While the channel is full, reading
            // goes on until the next batch is full too; then the server waits, but status
            // updates go on.
            let ready = capture.out.len() >= BATCH || !repl.has_buffered_message();
            if pending.is_none() && !capture.out.is_empty() && ready {
                pending = Some(std::mem::take(&mut capture.out));
            }
            if let Some(batch) = pending.take() {
                match self.outbox.try_send(batch) {
                    Ok(()) => {}
                    Err(Some(back)) => pending = Some(back),
                    Err(None) => return Ok(Ended::Stopped),
                }
            }
            let committed = *self
                .shared
                .committed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let target = capture.confirmable(committed.as_ref());
            // Confirm promptly when it moves (at most every 200 ms), else every interval.
            let due = (target > sent_confirm
                && last_status.elapsed() >= Duration::from_millis(200))
                || last_status.elapsed() >= settings.status_interval;
            if due {
                repl.send_status(target, false).await?;
                sent_confirm = target;
                last_status = Instant::now();
            }
            if let Some(every) = settings.heartbeat_interval {
                if last_heartbeat.elapsed() >= every && !capture.busy() && pending.is_none() {
                    let record = heartbeat(
                        &settings.topic_prefix,
                        &self.stream,
                        capture.last_sent,
                        target,
                    );
                    capture.out.push(record);
                    last_heartbeat = Instant::now();
                    continue;
                }
            }
            if pending.is_some() && capture.out.len() >= BATCH {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(Ended::Stopped),
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => {
                    let target = capture.confirmable(committed.as_ref());
                    let _ = repl.send_status(target, false).await;
                    return Ok(Ended::Stopped);
                }
                received = repl.recv() => match received? {
                    Replicated::XLogData { data, .. } => {
                        let msg = pgoutput::decode(&data, false)
                            .map_err(|e| CdcError::Protocol(e.to_string()))?;
                        capture.handle(msg, client, &mut self.types).await?;
                    }
                    Replicated::Keepalive { wal_end, reply } => {
                        capture.keepalive(wal_end);
                        if reply {
                            let target = capture.confirmable(committed.as_ref());
                            repl.send_status(target, false).await?;
                            sent_confirm = target;
                            last_status = Instant::now();
                        }
                    }
                },
                // A batch waits for room in the channel: try again soon.
                _ = tokio::time::sleep(Duration::from_millis(2)), if pending.is_some() => {}
                _ = status.tick() => {}
            }
        }
    }
}

/// What the session snapshots.
enum Plan {
    None,
    /// The new slot's own export.
    Exported {
        name: String,
        point: Lsn,
    },
    /// A temporary slot's export (an interrupted snapshot resumed, or `always`).
    Temporary {
        done: Vec<String>,
    },
}

fn slot_gone(slot: &str, lost: bool) -> CdcError {
    CdcError::Setup(format!(
        "the slot `{slot}` {}: the changes since the stored position cannot be read. Set `snapshot_mode: when_needed` to take a new snapshot, or reset the connector's offsets",
        if lost { "was invalidated by Postgres (wal_status lost: max_slot_wal_keep_size?)" } else { "no longer exists (dropped, or lost in a failover)" }
    ))
}

/// `CREATE_REPLICATION_SLOT`: its consistent point and exported snapshot's name.
async fn create_slot(
    repl: &mut ReplicationConnection,
    slot: &str,
    temporary: bool,
    export: bool,
) -> std::result::Result<(Lsn, String), CdcError> {
    let sql = format!(
        "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput {}",
        quote_ident(slot),
        if temporary { " TEMPORARY" } else { "" },
        if export {
            "EXPORT_SNAPSHOT"
        } else {
            "NOEXPORT_SNAPSHOT"
        }
    );
    let rows = repl.simple_query(&sql).await.map_err(|e| match e {
        CdcError::Server(s) if s.code == "53400" => CdcError::Setup(format!(
            "no replication slot is free ({}): raise max_replication_slots or drop an unused slot",
            s.message
        )),
        other => other,
    })?;
    let row = rows
        .first()
        .ok_or_else(|| CdcError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
    let point = row
        .get(1)
        .cloned()
        .flatten()
        .ok_or_else(|| CdcError::Protocol("no consistent point".into()))?
        .parse::<Lsn>()
        .map_err(CdcError::Protocol)?;
    let name = row.get(2).cloned().flatten().unwrap_or_default();
    Ok((point, name))
}

/// A heartbeat for the connector's own topic (Debezium's `serverName` key, `ts_ms` value).
fn heartbeat(
    prefix: &str,
    stream: &Arc<str>,
    last: Option<StreamPos>,
    confirmed: Lsn,
) -> SourceRecord {
    let key_schema = Arc::new(Schema::Record {
        name: "io.debezium.connector.common.ServerNameKey".into(),
        fields: vec![Field::new("serverName", Schema::String)],
    });
    let value_schema = Arc::new(Schema::Record {
        name: "io.debezium.connector.common.Heartbeat".into(),
        fields: vec![Field::new("ts_ms", Schema::Long)],
    });
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let position = last.unwrap_or(StreamPos {
        lsn: confirmed,
        seq: 0,
        end: Some(confirmed),
    });
    SourceRecord {
        topic: None,
        partition: None,
        key: Some(Payload::Typed {
            schema: key_schema,
            value: Value::Record(vec![("serverName".into(), Value::String(prefix.into()))]),
        }),
        value: Some(Payload::Typed {
            schema: value_schema,
            value: Value::Record(vec![("ts_ms".into(), Value::Long(now_ms))]),
        }),
        headers: Vec::new(),
        timestamp: Some(now_ms),
        position: SourcePosition {
            stream: stream.clone(),
            offset: {
                let mut o = position.to_json();
                o["heartbeat"] = serde_json::json!(true);
                o
            },
        },
    }
}
