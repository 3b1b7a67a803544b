//! One partition: an ordered list of segments with one writer and many readers.
//!
//! The writer (appends, rolls) holds `writer`; retention and compaction hold `maintenance`.
//! Readers never take either: they clone the current segment list (an `Arc` swap under a
//! short read lock) and read with positional I/O up to each segment's published length, so a
//! reader never waits for an append or an fsync. The end offset is published through a
//! `watch` channel, which is also how long-polling readers wait for new data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::batch::{self, Compression};
use crate::config::TopicConfig;
use crate::error::{LogError, Result};
use crate::record::decode_records;
use crate::segment::{self, load_indexes, scan, ScanEnd, Segment, SegmentMeta};
use crate::storage::Storage;

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// Whether the batches were fsynced before this returned (per `flush.messages`).
    pub durable: bool,
    /// With [`SyncMode::Deferred`]: the topic's `flush.messages` asks for an fsync now.
    pub sync_due: bool,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated RecordBatch v2 bytes, exactly as stored; empty at the end of the log.
    pub records: Vec<u8>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Totals for `describe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStats {
    pub log_start_offset: i64,
    pub end_offset: i64,
    pub segments: usize,
    pub size_bytes: u64,
}

#[derive(Debug, Default)]
struct WriterState {
    unflushed_records: u64,
    unflushed_since: Option<Instant>,
    /// Bumped on every roll: a flush that raced with a roll must not touch the new counters.
    generation: u64,
}

#[derive(Debug, Default)]
pub(crate) struct MaintenanceState {
    /// Base offset of the active segment at the last compaction: nothing new sealed since.
    pub cleaned_up_to: Option<i64>,
    pub tombstones_pending: bool,
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub records_compacted_away: u64,
}

pub struct Partition {
    pub(crate) topic: String,
    pub(crate) id: u32,
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    /// Swapped whole when an admin alters the topic's settings (see `Log::alter_topic_config`).
    config: RwLock<Arc<TopicConfig>>,
    read_only: bool,
    writer: Mutex<WriterState>,
    pub(crate) maintenance: Mutex<MaintenanceState>,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    end: watch::Sender<i64>,
    /// Every offset below this is on disk (fsynced).
    durable_end: AtomicI64,
    /// One group-commit fsync at a time; waiters it covers return without their own.
    sync_lock: Mutex<()>,
    pub(crate) log_start: AtomicI64,
    poisoned: AtomicBool,
    /// [`Fence`] as a number: set under the writer lock, so that no append is half done
    /// when a topic is deleted or the log closed, and none starts after.
    fence: AtomicU8,
}

/// Why a partition takes no more writes (beyond a poisoning I/O failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fence {
    Open = 0,
    /// Its topic was deleted: a holder of the `Arc<Partition>` (a pipeline source) must not
    /// go on appending to files that are gone.
    Deleted = 1,
    /// The log was closed: the clean-shutdown mark promises that nothing follows.
    Closed = 2,
}

/// When an append fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// As the topic's `flush.messages` says, before the append returns.
    Policy,
    /// Never inside the append: the caller follows up with [`Partition::sync_to`] (group
    /// commit for `acks=all`) or lets the policy's flush happen in the background; see
    /// [`AppendInfo::sync_due`].
    Deferred,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct OpenOptions {
    pub read_only: bool,
    pub clean_shutdown: bool,
}

impl Partition {
    /// Opens (and, when writable, recovers) the partition in `dir`.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        topic: &str,
        id: u32,
        config: Arc<TopicConfig>,
        opts: OpenOptions,
    ) -> Result<Partition> {
        let ctx = |what: &str| format!("{what} {}", dir.display());
        if !opts.read_only {
            storage
                .create_dir_all(&dir)
                .map_err(|e| LogError::io(ctx("creating"), e))?;
        }
        let names = storage
            .list_dir(&dir)
            .map_err(|e| LogError::io(ctx("listing"), e))?;
        let mut bases = Vec::new();
        for name in &names {
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<i64>().ok())
            {
                bases.push(base);
            } else if !opts.read_only && (name.ends_with(".cleaned") || name.ends_with(".tmp")) {
                // Leftovers of a compaction or index write interrupted by a crash.
                let _ = storage.remove_file(&dir.join(name));
            }
        }
        bases.sort_unstable();
        let interval = config.index_interval_bytes;
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let mut truncated_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(segment::file_name(base, "log"));
            let file = if opts.read_only {
                storage.open_read_only(&path)
            } else {
                storage.open(&path, false)
            }
            .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
            let file_len = file
                .len()
                .map_err(|e| LogError::io(format!("reading {}", path.display()), e))?;
            let is_last = i + 1 == bases.len();
            let trusted = if !is_last || opts.clean_shutdown {
                load_indexes(
                    storage.as_ref(),
                    &path,
                    file.as_ref(),
                    base,
                    file_len,
                    interval,
                )
            } else {
                None
            };
            let (meta, len) = match trusted {
                Some(meta) => (meta, file_len),
                None => {
                    let result = scan(
                        file.as_ref(),
                        base,
                        0,
                        SegmentMeta::empty_at(base),
                        interval,
                    )
                    .map_err(|e| LogError::io(format!("scanning {}", path.display()), e))?;
                    if result.end != ScanEnd::Clean && opts.read_only {
                        // Most likely an append in progress in the writing process.
                        tracing::debug!(topic, partition = id, segment = %path.display(), reason = ?result.end, "read-only open: ignoring an incomplete tail");
                    } else if result.end != ScanEnd::Clean {
                        tracing::warn!(
                            topic, partition = id, segment = %path.display(),
                            valid_bytes = result.valid_len, dropped_bytes = file_len - result.valid_len,
                            reason = ?result.end,
                            "recovery: truncating the segment at its first torn or corrupt batch"
                        );
                        if !opts.read_only {
                            file.truncate(result.valid_len)
                                .and_then(|_| file.sync_data())
                                .map_err(|e| {
                                    LogError::io(format!("truncating {}", path.display()), e)
                                })?;
                        }
                        if !is_last {
                            truncated_at = Some(i);
                        }
                    }
                    let seg = Segment::new(
                        base,
                        path.clone(),
                        file.clone(),
                        result.valid_len,
                        result.meta,
                    );
                    if !opts.read_only && (!is_last || truncated_at.is_some()) {
                        seg.persist_indexes(storage.as_ref()).map_err(|e| {
                            LogError::io(format!("writing indexes of {}", path.display()), e)
                        })?;
                    }
                    segments.push(Arc::new(seg));
                    if truncated_at.is_some() {
                        break;
                    }
                    continue;
                }
            };
            segments.push(Arc::new(Segment::new(base, path, file, len, meta)));
        }
        if let Some(i) = truncated_at {
            // Data after a corrupt batch in a sealed segment cannot be trusted to follow on: drop
            // the later segments, as Kafka's recovery does.
            for &base in &bases[i + 1..] {
                tracing::warn!(
                    topic,
                    partition = id,
                    base,
                    "recovery: deleting segment after a corrupt one"
                );
                if !opts.read_only {
                    for ext in ["log", "index", "timeindex"] {
                        let _ = storage.remove_file(&dir.join(segment::file_name(base, ext)));
                    }
                }
            }
        }
        if segments.is_empty() && !opts.read_only {
            segments.push(Arc::new(Segment::create(storage.as_ref(), &dir, 0)?));
            storage
                .sync_dir(&dir)
                .map_err(|e| LogError::io(ctx("syncing"), e))?;
        }
        let end = segments.last().map(|s| s.next_offset()).unwrap_or(0);
        let first_base = segments.first().map(|s| s.base_offset).unwrap_or(0);
        // DeleteRecords may have moved the start past the first segment's base.
        let start =
            first_base.max(crate::delete_records::stored_log_start(&*storage, &dir)?.min(end));
        if let (false, Some(last)) = (opts.read_only, segments.last()) {
            // What recovery kept may sit only in the page cache (a crash of the process, not
            // the machine): make it durable before counting it as such.
            last.file
                .sync_data()
                .map_err(|e| LogError::io(format!("fsync of {}", last.log_path.display()), e))?;
        }
        let (end_tx, _) = watch::channel(end);
        Ok(Partition {
            topic: topic.to_string(),
            id,
            dir,
            storage,
            config: RwLock::new(config),
            read_only: opts.read_only,
            writer: Mutex::new(WriterState::default()),
            maintenance: Mutex::new(MaintenanceState::default()),
            segments: RwLock::new(Arc::new(segments)),
            end: end_tx,
            durable_end: AtomicI64::new(end),
            sync_lock: Mutex::new(()),
            log_start: AtomicI64::new(start),
            poisoned: AtomicBool::new(false),
            fence: AtomicU8::new(Fence::Open as u8),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn config(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_config(&self, config: Arc<TopicConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offset the next appended record will get (Kafka's log end offset / high watermark).
    pub fn end_offset(&self) -> i64 {
        *self.end.borrow()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub(crate) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn update_segments(&self, f: impl FnOnce(&mut Vec<Arc<Segment>>)) {
        let mut guard = self.segments.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    pub fn stats(&self) -> PartitionStats {
        let segs = self.segments();
        PartitionStats {
            log_start_offset: self.log_start_offset(),
            end_offset: self.end_offset(),
            segments: segs.len(),
            size_bytes: segs.iter().map(|s| s.len()).sum(),
        }
    }

    pub(crate) fn check_writable(&self, what: &'static str) -> Result<()> {
        if self.read_only {
            return Err(LogError::ReadOnly(what));
        }
        self.check_fence(what)?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned(format!("{}-{}", self.topic, self.id)));
        }
        Ok(())
    }

    pub(crate) fn check_fence(&self, what: &'static str) -> Result<()> {
        match self.fence.load(Ordering::Acquire) {
            x if x == Fence::Deleted as u8 => Err(LogError::TopicDeleted {
                topic: self.topic.clone(),
                what,
            }),
            x if x == Fence::Closed as u8 => Err(LogError::Closed(what)),
            _ => Ok(()),
        }
    }

    /// Refuses every later write. Waits for an append in progress to finish first.
    pub(crate) fn fence(&self, why: Fence) {
        // The lock order of retention (maintenance, then writer).
        let _m = lock(&self.maintenance);
        let _w = lock(&self.writer);
        self.fence.store(why as u8, Ordering::Release);
    }

    /// Whether a poisoning I/O failure stopped writes here (until a restart recovers).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Appends a record set (one or more RecordBatch v2, e.g. the `records` of a Produce
    /// request). Every batch is validated first; offsets are assigned by rewriting `baseOffset`.
    /// On any error nothing becomes visible, and nothing is left that recovery would keep.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo> {
        self.append_with(records, now_ms, SyncMode::Policy)
    }

    /// [`Partition::append`] for batches this process has just built with
    /// [`crate::BatchBuilder`]: their CRCs were computed by the builder and are not computed
    /// again (every other check stays). Bytes from anywhere else go through `append`.
    pub fn append_built(&self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo> {
        self.append_checked(records, now_ms, SyncMode::Policy, false)
    }

    /// [`Partition::append`] with a choice of when to fsync.
    pub fn append_with(
        &self,
        records: &mut [u8],
        now_ms: i64,
        mode: SyncMode,
    ) -> Result<AppendInfo> {
        self.append_checked(records, now_ms, mode, true)
    }

    fn append_checked(
        &self,
        records: &mut [u8],
        now_ms: i64,
        mode: SyncMode,
        check_crcs: bool,
    ) -> Result<AppendInfo> {
        self.check_writable("append")?;
        let invalid = |source| LogError::InvalidBatch {
            topic: self.topic.clone(),
            partition: self.id,
            source,
        };
        let batches = if check_crcs {
            batch::split_record_set(records)
        } else {
            batch::split_verified(records).and_then(|b| {
                if b.is_empty() {
                    Err(crate::BatchError::Empty)
                } else {
                    Ok(b)
                }
            })
        }
        .map_err(invalid)?;
        let cfg = self.config();
        for (start, h) in &batches {
            if cfg.max_message_bytes >= 0 && h.size as i64 > cfg.max_message_bytes {
                return Err(LogError::BatchTooLarge {
                    topic: self.topic.clone(),
                    size: h.size,
                    max: cfg.max_message_bytes,
                });
            }
            if cfg.cleanup_policy.compacts()
                && !h.is_control()
                && h.compression() == Ok(Compression::None)
            {
                let recs = decode_records(&records[*start..*start + h.size], h).map_err(invalid)?;
                if recs.iter().any(|r| r.key.is_none()) {
                    return Err(LogError::NullKeyOnCompactedTopic(self.topic.clone()));
                }
            }
        }

        let mut w = lock(&self.writer);
        // Again under the lock: a delete or close may have fenced the partition meanwhile.
        self.check_fence("append")?;
        self.maybe_roll(&mut w, records.len() as u64, now_ms)?;
        let active = self
            .segments()
            .last()
            .cloned()
            .ok_or(LogError::ReadOnly("append to an empty read-only log"))?;
        let base_offset = active.next_offset();
        let mut next = base_offset;
        let mut record_count = 0u64;
        for (start, h) in &batches {
            batch::set_base_offset(&mut records[*start..], next);
            next += h.last_offset_delta as i64 + 1;
            record_count += h.records_count as u64;
        }
        let pos = active.len();
        let path = active.log_path.display().to_string();
        if let Err(e) = active.file.write_at(records, pos) {
            // Remove whatever prefix reached the file so that no partial batch outlives us.
            if active.file.truncate(pos).is_err() {
                self.poisoned.store(true, Ordering::Release);
            }
            return Err(LogError::io(format!("appending to {path}"), e));
        }
        w.unflushed_records += record_count;
        w.unflushed_since.get_or_insert_with(Instant::now);
        let policy_wants_sync =
            matches!(self.config().flush_messages, Some(n) if w.unflushed_records >= n);
        let durable = match mode {
            SyncMode::Policy if policy_wants_sync => {
                if let Err(e) = active.file.sync_data() {
                    // After a failed fsync the page cache cannot be trusted (fsyncgate): stop
                    // writing here; a restart recovers from what is really on disk.
                    let _ = active.file.truncate(pos);
                    self.poisoned.store(true, Ordering::Release);
                    return Err(LogError::io(format!("fsync of {path}"), e));
                }
                w.unflushed_records = 0;
                w.unflushed_since = None;
                true
            }
            _ => false,
        };
        let sync_due = mode == SyncMode::Deferred && policy_wants_sync;
        {
            let mut meta = active.meta_mut();
            for (start, h) in &batches {
                let mut h = *h;
                h.base_offset =
                    i64::from_be_bytes(records[*start..*start + 8].try_into().unwrap_or([0; 8]));
                meta.add_batch(
                    active.base_offset,
                    pos + *start as u64,
                    &h,
                    self.config().index_interval_bytes,
                );
            }
        }
        active.publish_len(pos + records.len() as u64);
        self.end.send_replace(next);
        if durable {
            self.durable_end.fetch_max(next, Ordering::AcqRel);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_start_offset: self.log_start_offset(),
            durable,
            sync_due,
        })
    }

    /// Rolls to a new segment when the incoming bytes would overflow the active one, or it is
    /// older than `segment.ms`. Called with the writer lock held.
    fn maybe_roll(&self, w: &mut WriterState, incoming: u64, now_ms: i64) -> Result<()> {
        let Some(active) = self.segments().last().cloned() else {
            return Ok(());
        };
        let len = active.len();
        if len == 0 {
            return Ok(());
        }
        let (first_ts, next) = {
            let m = active.meta();
            (m.first_timestamp, m.next_offset)
        };
        let too_big =
            len + incoming > self.config().segment_bytes || len + incoming > u32::MAX as u64;
        let too_old = first_ts
            .map(|ts| now_ms - ts >= self.config().segment_ms)
            .unwrap_or(false);
        let offsets_full = next - active.base_offset > (u32::MAX / 2) as i64;
        if too_big || too_old || offsets_full {
            self.roll(w, &active)?;
        }
        Ok(())
    }

    /// Seals `active` (fsync, indexes written) and starts a new segment at the end offset.
    fn roll(&self, w: &mut WriterState, active: &Segment) -> Result<()> {
        let path = active.log_path.display().to_string();
        active
            .file
            .sync_data()
            .map_err(|e| LogError::io(format!("fsync of {path} before rolling"), e))?;
        active
            .persist_indexes(self.storage.as_ref())
            .map_err(|e| LogError::io(format!("writing indexes of {path}"), e))?;
        let seg_base_after_roll = active.next_offset();
        let seg = Segment::create(self.storage.as_ref(), &self.dir, seg_base_after_roll)?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io(format!("syncing {}", self.dir.display()), e))?;
        tracing::debug!(topic = %self.topic, partition = self.id, base = seg.base_offset, "rolled segment");
        self.update_segments(|v| v.push(Arc::new(seg)));
        w.unflushed_records = 0;
        w.unflushed_since = None;
        w.generation += 1;
        self.durable_end
            .fetch_max(seg_base_after_roll, Ordering::AcqRel);
        Ok(())
    }

    /// Fsyncs unflushed appends (the flusher calls it when `flush.ms` has passed). The fsync
    /// runs without the writer lock, so appends go on while it waits for the disk.
    pub fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let (segment, pending, generation, end) = {
            let w = lock(&self.writer);
            if w.unflushed_records == 0 {
                return Ok(());
            }
            let Some(active) = self.segments().last().cloned() else {
                return Ok(());
            };
            (active, w.unflushed_records, w.generation, self.end_offset())
        };
        if let Err(e) = segment.file.sync_data() {
            self.poisoned.store(true, Ordering::Release);
            return Err(LogError::io(
                format!("fsync of {}", segment.log_path.display()),
                e,
            ));
        }
        let mut w = lock(&self.writer);
        if w.generation == generation {
            w.unflushed_records = w.unflushed_records.saturating_sub(pending);
            if w.unflushed_records == 0 {
                w.unflushed_since = None;
            }
        }
        drop(w);
        self.durable_end.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Returns once every offset up to and including `offset` is fsynced. Concurrent callers
    /// share fsyncs (group commit): one fsync covers every append made before it started.
    pub fn sync_to(&self, offset: i64) -> Result<()> {
        self.check_writable("sync")?;
        if self.durable_end.load(Ordering::Acquire) > offset {
            return Ok(());
        }
        let _one_at_a_time = lock(&self.sync_lock);
        if self.durable_end.load(Ordering::Acquire) > offset {
            return Ok(());
        }
        self.flush()
    }

    /// Every offset below this is fsynced.
    pub fn durable_end_offset(&self) -> i64 {
        self.durable_end.load(Ordering::Acquire)
    }

    /// Flushes if `flush.ms` has passed since the oldest unflushed append.
    pub(crate) fn flush_if_due(&self) -> Result<()> {
        let Some(ms) = self.config().flush_ms else {
            return Ok(());
        };
        let due = lock(&self.writer)
            .unflushed_since
            .map(|t| t.elapsed() >= Duration::from_millis(ms))
            .unwrap_or(false);
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// Reads whole batches starting with the one that holds `offset`: up to `max_bytes`, but at
    /// least one batch even if it is larger (as Kafka's Fetch does).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.read_into(offset, max_bytes, Vec::new())
    }

    /// [`Partition::read`] into `buf`, a buffer to reuse (a consumer that reads in a loop
    /// hands back the last result's `records`).
    pub fn read_into(&self, offset: i64, max_bytes: usize, buf: Vec<u8>) -> Result<ReadResult> {
        let end = self.end_offset();
        let start = self.log_start_offset();
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.id,
                offset,
                log_start: start,
                log_end: end,
            });
        }
        let mut out = ReadResult {
            records: Vec::new(),
            high_watermark: end,
            log_start_offset: start,
        };
        if offset == end {
            return Ok(out);
        }
        let segs = self.segments();
        let first = segs
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &segs[first..] {
            let io = |e| LogError::io(format!("reading {}", seg.log_path.display()), e);
            if let Some((pos, h)) = seg.locate(offset).map_err(io)? {
                out.records = seg.read_batches_into(pos, h.size, max_bytes, end, buf)?;
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Waits until the end offset passes `offset` or `timeout` runs out; returns the end offset.
    /// This is the long-poll behind a Fetch with `max_wait_ms`.
    pub async fn wait_for(&self, offset: i64, timeout: Duration) -> i64 {
        let mut rx = self.end.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&end| end > offset)).await;
        self.end_offset()
    }

    /// The newest record timestamp in the partition (-1 when empty).
    pub fn max_timestamp(&self) -> i64 {
        self.segments()
            .iter()
            .map(|s| s.meta().max_timestamp)
            .max()
            .unwrap_or(-1)
    }

    /// The first record with a timestamp at or after `ts`: `(offset, timestamp)`, as
    /// ListOffsets by timestamp answers; `None` if every record is older.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        for seg in self.segments().iter() {
            if seg.meta().max_timestamp < ts {
                continue;
            }
            let io = |e| LogError::io(format!("reading {}", seg.log_path.display()), e);
            let start = seg.time_lookup_start(ts);
            let Some((pos, h)) = seg
                .scan_headers(start, |h| h.max_timestamp >= ts)
                .map_err(io)?
            else {
                continue;
            };
            let bytes = seg.read_batches(pos, h.size, 0)?;
            if let Ok(records) = decode_records(&bytes, &h) {
                if let Some(r) = records
                    .iter()
                    .find(|r| r.timestamp >= ts && r.offset >= self.log_start_offset())
                {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
            return Ok(Some((
                h.base_offset.max(self.log_start_offset()),
                h.max_timestamp,
            )));
        }
        Ok(None)
    }

    /// Retention and compaction, per the topic's `cleanup.policy`.
    pub fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport> {
        self.check_writable("maintenance")?;
        let mut report = MaintenanceReport::default();
        if self.config().cleanup_policy.deletes() {
            self.enforce_retention(now_ms, &mut report)?;
        }
        if self.config().cleanup_policy.compacts() {
            self.compact(now_ms, &mut report)?;
        }
        Ok(report)
    }

    fn enforce_retention(&self, now_ms: i64, report: &mut MaintenanceReport) -> Result<()> {
        let _m = lock(&self.maintenance);
        self.check_fence("retention")?;
        let cfg = self.config();
        loop {
            let segs = self.segments();
            let Some(oldest) = segs.first().cloned() else {
                return Ok(());
            };
            let expired = |s: &Segment| {
                cfg.retention_ms >= 0 && s.meta().max_timestamp < now_ms - cfg.retention_ms
            };
            if segs.len() == 1 {
                // Kafka rolls an expired active segment so that retention can delete it.
                if oldest.len() > 0 && expired(&oldest) {
                    let mut w = lock(&self.writer);
                    self.roll(&mut w, &oldest)?;
                    continue;
                }
                return Ok(());
            }
            let total: u64 = segs.iter().map(|s| s.len()).sum();
            let over_size =
                cfg.retention_bytes >= 0 && total - oldest.len() >= cfg.retention_bytes as u64;
            if !(expired(&oldest) || over_size) {
                return Ok(());
            }
            let next_base = segs[1].base_offset;
            self.update_segments(|v| {
                v.retain(|s| s.base_offset != oldest.base_offset);
            });
            self.log_start.fetch_max(next_base, Ordering::AcqRel);
            for path in [
                oldest.log_path.clone(),
                oldest.index_path(),
                oldest.time_index_path(),
            ] {
                let _ = self.storage.remove_file(&path);
            }
            tracing::info!(
                topic = %self.topic, partition = self.id, base = oldest.base_offset,
                bytes = oldest.len(), "retention: deleted segment"
            );
            report.segments_deleted += 1;
            report.bytes_deleted += oldest.len();
        }
    }

    pub(crate) fn replace_segment(&self, base: i64, replacement: Option<Arc<Segment>>) {
        self.update_segments(|v| {
            if let Some(i) = v.iter().position(|s| s.base_offset == base) {
                match replacement {
                    Some(seg) => v[i] = seg,
                    None => {
                        v.remove(i);
                    }
                }
            }
        });
    }

    /// Fences writers, persists indexes and fsyncs: the clean half of a shutdown.
    pub(crate) fn close(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.fence(Fence::Closed);
        if self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        self.flush()?;
        if let Some(active) = self.segments().last() {
            active.persist_indexes(self.storage.as_ref()).map_err(|e| {
                LogError::io(
                    format!("writing indexes of {}", active.log_path.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Read-only opens only: picks up batches and segments another process has written since.
    pub fn refresh(&self) -> Result<()> {
        if !self.read_only {
            return Ok(());
        }
        let names = self
            .storage
            .list_dir(&self.dir)
            .map_err(|e| LogError::io(format!("listing {}", self.dir.display()), e))?;
        let mut on_disk: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
            .collect();
        on_disk.sort_unstable();
        let segs = self.segments();
        let mut next: Vec<Arc<Segment>> = segs
            .iter()
            .filter(|s| on_disk.contains(&s.base_offset))
            .cloned()
            .collect();
        let interval = self.config().index_interval_bytes;
        // Grow the last known segment, then add any newer ones.
        if let Some(last) = next.last() {
            let meta = last.meta().clone();
            let r = scan(
                last.file.as_ref(),
                last.base_offset,
                last.len(),
                meta,
                interval,
            )
            .map_err(|e| LogError::io(format!("reading {}", last.log_path.display()), e))?;
            if r.valid_len > last.len() {
                *last.meta_mut() = r.meta;
                last.publish_len(r.valid_len);
            }
        }
        let known_last = next.last().map(|s| s.base_offset).unwrap_or(-1);
        for base in on_disk.into_iter().filter(|&b| b > known_last) {
            let path = self.dir.join(segment::file_name(base, "log"));
            let Ok(file) = self.storage.open_read_only(&path) else {
                continue;
            };
            let r = scan(
                file.as_ref(),
                base,
                0,
                SegmentMeta::empty_at(base),
                interval,
            )
            .map_err(|e| LogError::io(format!("reading {}", path.display()), e))?;
            next.push(Arc::new(Segment::new(
                base,
                path,
                file,
                r.valid_len,
                r.meta,
            )));
        }
        let end = next.last().map(|s| s.next_offset()).unwrap_or(0);
        let start = next.first().map(|s| s.base_offset).unwrap_or(0);
        *self.segments.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.log_start.store(start, Ordering::Release);
        self.end.send_replace(end);
        Ok(())
    }
}
