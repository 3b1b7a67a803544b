//! One `http` sink task: a lane per partition and the offsets it may commit.
//!
//! `put` (on the runtime's sink thread) adds each record to its partition's open batch;
//! closed batches go down a bounded channel to the partition's worker, so a slow endpoint
//! holds `put` back instead of filling memory. The worker delivers batches in offset order
//! (one in flight per partition, or up to `max_in_flight` with `ordered: false`), all
//! workers sharing `max_in_flight` permits, and records its progress: the offset below
//! which every record is done (delivered, dropped, or refused and handed back). `flush`
//! reads that progress without waiting, so commits follow deliveries and never pass a
//! request still in flight; `close` sends what is open and waits, within [`DRAIN_LIMIT`],
//! for the rest.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_connector_sdk::connector::{
    ConnectorError, RefusedRecord, Result, SinkRecord, SinkTask, SinkValueRun, TaskInfo,
    TopicPartition,
};
use sluice_connector_sdk::data::Payload;
use tokio::sync::{mpsc, Semaphore};

use super::{OnNull, SinkSettings};
use crate::batch::{Batcher, ClosedBatch};
use crate::classify::Jitter;
use crate::deliver::deliver;
use crate::transport::HttpTransport;

/// How long `close` waits for the requests in flight before it leaves them (they are not
/// committed, so they are sent again when the partition is next opened).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Batches waiting for a partition's worker: with `max_bytes` of 1 MiB, at most a few MiB.
const LANE_DEPTH: usize = 4;

/// What a partition's worker does next, in offset order.
enum Work {
    Batch(ClosedBatch),
    /// A record that joins no request: a tombstone skipped, or a record refused before it
    /// was sent (not JSON for a JSON body, no key for a `${key}` URL).
    Skip {
        offset: i64,
        refused: Option<RefusedRecord>,
    },
}

/// Where a partition stands, shared by its worker and the task.
#[derive(Default)]
struct Progress {
    /// The next offset not yet done; `None` until something is.
    done_below: Option<i64>,
    refused: Vec<RefusedRecord>,
    /// Why delivery stopped for good (the token endpoint refused our credentials).
    stopped: Option<String>,
    /// Work sent to the worker and not finished.
    outstanding: usize,
}

/// What the task needs to reach one partition's worker.
struct Lane {
    topic: Arc<str>,
    partition: i32,
    batcher: Batcher,
    /// The offset after the last record put: a put retried after an error hands records
    /// again, and those already taken are skipped.
    next_offset: Option<i64>,
    work: Option<mpsc::Sender<Work>>,
    progress: Arc<Mutex<Progress>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

/// A task of the `http` sink.
pub struct HttpSinkTask {
    info: TaskInfo,
    settings: Arc<SinkSettings>,
    transport: Arc<HttpTransport>,
    runtime: Option<tokio::runtime::Runtime>,
    permits: Arc<Semaphore>,
    lanes: HashMap<TopicPartition, Lane>,
    refused: Vec<RefusedRecord>,
    seed: u64,
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    // A worker that panicked leaves plain data behind: still readable.
    progress
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn refused(
    topic: &Arc<str>,
    partition: i32,
    offset: i64,
    value: Option<Bytes>,
    reason: String,
) -> RefusedRecord {
    RefusedRecord {
        topic: topic.clone(),
        partition,
        offset,
        value,
        reason,
        headers: Vec::new(),
    }
}

impl HttpSinkTask {
    pub fn new(
        info: TaskInfo,
        settings: SinkSettings,
        transport: HttpTransport,
    ) -> Result<HttpSinkTask> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("sluice-http-{}-{}", info.connector, info.task))
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectorError::fatal(format!("could not start the HTTP sink's threads: {e}"))
            })?;
        let permits = Arc::new(Semaphore::new(settings.max_in_flight));
        let seed = Jitter::from_clock(u64::from(info.task)).unit().to_bits();
        Ok(HttpSinkTask {
            info,
            settings: Arc::new(settings),
            transport: Arc::new(transport),
            runtime: Some(runtime),
            permits,
            lanes: HashMap::new(),
            refused: Vec::new(),
            seed,
        })
    }

    fn lane(&mut self, topic: &Arc<str>, partition: i32) -> Result<&mut Lane> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        if !self.lanes.contains_key(&tp) {
            let runtime = self
                .runtime
                .as_ref()
                .ok_or_else(|| ConnectorError::fatal("the HTTP sink task is stopped"))?;
            let (tx, rx) = mpsc::channel(LANE_DEPTH);
            let progress = Arc::new(Mutex::new(Progress::default()));
            let worker = runtime.spawn(run_lane(
                rx,
                LaneWorker {
                    topic: topic.clone(),
                    partition,
                    progress: progress.clone(),
                    settings: self.settings.clone(),
                    transport: self.transport.clone(),
                    permits: self.permits.clone(),
                    seed: self.seed ^ (partition as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                },
            ));
            self.lanes.insert(
                tp.clone(),
                Lane {
                    topic: topic.clone(),
                    partition,
                    batcher: Batcher::new(self.settings.limits, self.settings.format),
                    next_offset: None,
                    work: Some(tx),
                    progress,
                    worker: Some(worker),
                },
            );
        }
        self.lanes
            .get_mut(&tp)
            .ok_or_else(|| ConnectorError::fatal("a partition's lane vanished"))
    }

    /// One record, its value and key as the log holds them, into its partition's `lane`
    /// (looked up once per run of records, not per record).
    fn add(
        settings: &SinkSettings,
        lane: &mut Lane,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<Bytes>,
    ) -> Result<()> {
        if lane.next_offset.is_some_and(|next| offset < next) {
            return Ok(()); // taken already, by a put that was retried
        }
        lane.next_offset = Some(offset + 1);
        let (topic, partition) = (lane.topic.clone(), lane.partition);
        let Some(value) = value else {
            let refused = (settings.on_null == OnNull::Fail).then(|| {
                refused(
                    &topic,
                    partition,
                    offset,
                    None,
                    "the record has no value (on_null_value: fail)".into(),
                )
            });
            return lane.skip(offset, refused);
        };
        let url = if settings.url.is_fixed() {
            None
        } else {
            match settings.url.render(&topic, partition, key) {
                Ok(url) => Some(url),
                Err(e) => {
                    let r = refused(&topic, partition, offset, Some(value), e.to_string());
                    return lane.skip(offset, Some(r));
                }
            }
        };
        let url = url.as_deref().unwrap_or(settings.url.as_str());
        let added = lane.batcher.add(url, offset, &value, Instant::now());
        for batch in added.closed {
            lane.send(Work::Batch(batch))?;
        }
        if let Some(not_json) = added.refused {
            let r = refused(&topic, partition, offset, Some(value), not_json.to_string());
            lane.skip(offset, Some(r))?;
        }
        Ok(())
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.runtime
            .as_ref()
            .ok_or_else(|| ConnectorError::fatal("the HTTP sink task is stopped"))
    }
}

impl Lane {
    fn send(&mut self, work: Work) -> Result<()> {
        let Some(tx) = &self.work else {
            return Err(ConnectorError::fatal(format!(
                "partition {}-{} is closed",
                self.topic, self.partition
            )));
        };
        lock(&self.progress).outstanding += 1;
        // Blocks while the partition's worker is busy: backpressure onto the log reader.
        tx.blocking_send(work).map_err(|_| {
            ConnectorError::fatal(format!(
                "the worker of partition {}-{} is gone",
                self.topic, self.partition
            ))
        })
    }

    /// A record that joins no request; the open batch goes first, to keep offsets in order.
    fn skip(&mut self, offset: i64, refused: Option<RefusedRecord>) -> Result<()> {
        if let Some(batch) = self.batcher.take() {
            self.send(Work::Batch(batch))?;
        }
        self.send(Work::Skip { offset, refused })
    }

    fn send_open(&mut self, only_due: Option<Instant>) -> Result<()> {
        if only_due.is_some_and(|now| !self.batcher.due(now)) {
            return Ok(());
        }
        match self.batcher.take() {
            Some(batch) => self.send(Work::Batch(batch)),
            None => Ok(()),
        }
    }
}

fn key_bytes(key: &Option<Payload>) -> Option<Vec<u8>> {
    match key {
        Some(Payload::Raw(b)) => Some(b.to_vec()),
        Some(Payload::Typed { value, .. }) => match value.to_json() {
            serde_json::Value::String(s) => Some(s.into_bytes()),
            other => Some(other.to_string().into_bytes()),
        },
        None => None,
    }
}

impl SinkTask for HttpSinkTask {
    fn open(&mut self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        for tp in partitions {
            let topic: Arc<str> = tp.topic.as_str().into();
            self.lane(&topic, tp.partition)?;
        }
        Ok(Vec::new())
    }

    fn accepts_values(&self) -> bool {
        // Value runs carry no keys.
        !self.settings.url.uses_key()
    }

    fn put_values(&mut self, runs: &[SinkValueRun]) -> Result<()> {
        let settings = self.settings.clone();
        for run in runs {
            let lane = self.lane(&run.topic, run.partition)?;
            for (i, (offset, _)) in run.values.iter().enumerate() {
                let value = run.value(i).map(|v| run.buf.slice_ref(v));
                Self::add(&settings, lane, *offset, None, value)?;
            }
        }
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        let settings = self.settings.clone();
        // Records come in runs of one partition: its lane is looked up once per run.
        for run in records.chunk_by(|a, b| a.partition == b.partition && a.topic == b.topic) {
            let lane = self.lane(&run[0].topic, run[0].partition)?;
            for r in run {
                let key = key_bytes(&r.key);
                let value = match &r.value {
                    Some(Payload::Raw(b)) => Some(b.clone()),
                    Some(Payload::Typed { value, .. }) => {
                        Some(Bytes::from(value.to_json().to_string()))
                    }
                    None => None,
                };
                Self::add(&settings, lane, r.offset, key.as_deref(), value)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        let now = Instant::now();
        for lane in self.lanes.values_mut() {
            if lane.work.is_some() {
                lane.send_open(Some(now))?;
            }
        }
        let mut durable = Vec::new();
        let mut closed = Vec::new();
        for (tp, lane) in &self.lanes {
            let mut progress = lock(&lane.progress);
            if let Some(why) = &progress.stopped {
                return Err(ConnectorError::fatal(format!(
                    "partition {}-{}: {why}",
                    lane.topic, lane.partition
                )));
            }
            self.refused.append(&mut progress.refused);
            if let Some(next) = progress.done_below {
                durable.push((tp.clone(), next));
            }
            if lane.work.is_none() {
                closed.push(tp.clone());
            }
        }
        // A closed partition's last progress is reported once, then it is forgotten.
        for tp in closed {
            self.lanes.remove(&tp);
        }
        Ok(durable)
    }

    fn take_refused(&mut self) -> Vec<RefusedRecord> {
        std::mem::take(&mut self.refused)
    }

    fn close(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        let mut workers = Vec::new();
        for tp in &partitions {
            if let Some(lane) = self.lanes.get_mut(tp) {
                if lane.work.is_some() {
                    lane.send_open(None)?;
                }
                lane.work = None; // the worker ends when its queue is empty
                if let Some(w) = lane.worker.take() {
                    workers.push((tp.clone(), lane.progress.clone(), w));
                }
            }
        }
        let runtime = self.runtime()?;
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        for (tp, progress, worker) in workers {
            let abort = worker.abort_handle();
            let finished =
                runtime.block_on(async { tokio::time::timeout_at(deadline, worker).await.is_ok() });
            if !finished {
                abort.abort();
                let left = lock(&progress).outstanding;
                tracing::warn!(
                    connector = %self.info.connector,
                    task = self.info.task,
                    partition = %format!("{}-{}", tp.topic, tp.partition),
                    requests_left = left,
                    "the endpoint did not take the last requests within {}s; they are not committed and go again at the next start",
                    DRAIN_LIMIT.as_secs()
                );
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        Ok(())
    }
}

impl Drop for HttpSinkTask {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a partition's worker shares with the task.
struct LaneWorker {
    topic: Arc<str>,
    partition: i32,
    progress: Arc<Mutex<Progress>>,
    settings: Arc<SinkSettings>,
    transport: Arc<HttpTransport>,
    permits: Arc<Semaphore>,
    seed: u64,
}

/// How one piece of work ended.
struct Done {
    last_offset: i64,
    refused: Vec<RefusedRecord>,
    stopped: Option<String>,
}

async fn run_lane(mut rx: mpsc::Receiver<Work>, lane: LaneWorker) {
    let lane = Arc::new(lane);
    let per_partition = if lane.settings.ordered {
        1
    } else {
        lane.settings.max_in_flight
    };
    // Started in offset order, finished in offset order: progress only moves past work
    // whose predecessors are all done.
    let mut pending: VecDeque<tokio::task::JoinHandle<Done>> = VecDeque::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            biased;
            done = async { pending.front_mut().expect("checked non-empty").await }, if !pending.is_empty() => {
                pending.pop_front();
                let done = done.unwrap_or_else(|e| Done {
                    last_offset: -1,
                    refused: Vec::new(),
                    stopped: Some(format!("a delivery failed: {e}")),
                });
                lane.record(done);
            }
            work = rx.recv(), if open && pending.len() < per_partition => match work {
                Some(work) => pending.push_back(tokio::spawn(lane.clone().perform(work))),
                None => open = false,
            },
        }
    }
}

impl LaneWorker {
    async fn perform(self: Arc<Self>, work: Work) -> Done {
        match work {
            Work::Skip { offset, refused } => Done {
                last_offset: offset,
                refused: refused.into_iter().collect(),
                stopped: None,
            },
            Work::Batch(batch) => {
                let last_offset = batch.last_offset();
                let mut jitter = Jitter::new(self.seed ^ batch.first_offset() as u64);
                let delivery = {
                    let Ok(_permit) = self.permits.acquire().await else {
                        return Done {
                            last_offset,
                            refused: Vec::new(),
                            stopped: Some("the sink is stopping".into()),
                        };
                    };
                    deliver(
                        &*self.transport,
                        (&self.topic, self.partition),
                        &self.settings.statuses,
                        self.settings.retry,
                        &mut jitter,
                        batch,
                    )
                    .await
                };
                let refused = delivery
                    .undelivered
                    .into_iter()
                    .map(|u| {
                        let mut r = refused(
                            &self.topic,
                            self.partition,
                            u.offset,
                            Some(u.value),
                            u.reason,
                        );
                        if let Some(status) = u.status {
                            r.headers = vec![
                                (
                                    "sluice.error.http.status".into(),
                                    status.to_string().into_bytes(),
                                ),
                                ("sluice.error.http.body".into(), u.body),
                            ];
                        }
                        r
                    })
                    .collect();
                Done {
                    last_offset,
                    refused,
                    stopped: delivery.stopped,
                }
            }
        }
    }

    fn record(&self, done: Done) {
        let mut progress = lock(&self.progress);
        progress.outstanding = progress.outstanding.saturating_sub(1);
        if progress.stopped.is_some() {
            return; // nothing moves past a stop
        }
        if let Some(why) = done.stopped {
            progress.stopped = Some(why);
            return;
        }
        progress.refused.extend(done.refused);
        progress.done_below = Some(done.last_offset + 1);
    }
}
