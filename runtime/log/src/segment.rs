//! One segment: a `.log` file of concatenated batches, and its two sparse indexes.
//!
//! - `.index`: 8-byte entries `(relative offset u32, file position u32)`, one per
//!   `index.interval.bytes` of log: a read at any offset is a binary search and a short scan.
//! - `.timeindex`: 12-byte entries `(max timestamp so far i64, relative offset u32)`: a read
//!   by timestamp starts at the last entry below the target.
//!
//! Indexes are caches: kept in memory, written beside the log when the segment is sealed or
//! the log closes cleanly, checked when loaded and rebuilt from the log whenever in doubt.
//! The CRC of each batch is the truth.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::batch::{BatchHeader, LOG_OVERHEAD};
use crate::error::{BatchError, LogError, Result};
use crate::storage::{Storage, StorageFile};

/// A batch larger than this on disk can only be garbage in a length field.
const MAX_BATCH_ON_DISK: usize = 1 << 30;
const SCAN_CHUNK: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel: u32,
    pub pos: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub ts: i64,
    pub rel: u32,
}

/// What the indexes and counters say about the segment's contents.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentMeta {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// The offset after the last batch (the base offset when empty).
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// `baseTimestamp` of the first batch, used for `segment.ms`.
    pub first_timestamp: Option<i64>,
    pub bytes_since_offset_entry: u64,
    pub bytes_since_time_entry: u64,
    pub batches: u64,
}

impl SegmentMeta {
    pub fn empty_at(base: i64) -> Self {
        SegmentMeta {
            next_offset: base,
            max_timestamp: -1,
            ..Default::default()
        }
    }

    /// Accounts for a batch stored at `pos`, adding index entries every `interval` bytes.
    pub fn add_batch(&mut self, base: i64, pos: u64, h: &BatchHeader, interval: u64) {
        let rel = (h.base_offset - base) as u32;
        if self.offsets.is_empty() || self.bytes_since_offset_entry >= interval {
            self.offsets.push(OffsetEntry {
                rel,
                pos: pos as u32,
            });
            self.bytes_since_offset_entry = 0;
        }
        if h.max_timestamp > self.max_timestamp {
            if self.times.is_empty() || self.bytes_since_time_entry >= interval {
                self.times.push(TimeEntry {
                    ts: h.max_timestamp,
                    rel,
                });
                self.bytes_since_time_entry = 0;
            } else if let Some(last) = self.times.last_mut() {
                // Keep the newest maximum in the last entry so lookups never miss it.
                if last.rel == rel {
                    last.ts = h.max_timestamp;
                }
            }
            self.max_timestamp = h.max_timestamp;
        }
        self.bytes_since_offset_entry += h.size as u64;
        self.bytes_since_time_entry += h.size as u64;
        self.first_timestamp.get_or_insert(h.base_timestamp);
        self.next_offset = h.last_offset() + 1;
        self.batches += 1;
    }
}

/// How a scan of a log file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte belongs to a valid batch.
    Clean,
    /// The file ends inside a batch (a torn write).
    Torn { at: u64 },
    /// A batch fails validation.
    Corrupt { at: u64, reason: String },
}

pub(crate) struct ScanResult {
    pub meta: SegmentMeta,
    pub valid_len: u64,
    pub end: ScanEnd,
}

/// Reads batches from `from` to the end of the file, validating each CRC and that offsets only
/// grow, and continues `meta` with what it finds.
pub(crate) fn scan(
    file: &dyn StorageFile,
    base: i64,
    from: u64,
    mut meta: SegmentMeta,
    interval: u64,
) -> std::io::Result<ScanResult> {
    let file_len = file.len()?;
    let mut pos = from;
    let end = loop {
        if pos == file_len {
            break ScanEnd::Clean;
        }
        let want = ((file_len - pos) as usize).min(SCAN_CHUNK);
        let mut buf = vec![0u8; want];
        let n = file.read_at(&mut buf, pos)?;
        buf.truncate(n);
        let mut at = 0usize;
        let mut stop = None;
        while at < buf.len() {
            let rest = &buf[at..];
            if rest.len() < LOG_OVERHEAD {
                break;
            }
            let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            let size = (len as i64 + LOG_OVERHEAD as i64) as usize;
            if len < 49 || size > MAX_BATCH_ON_DISK {
                stop = Some(ScanEnd::Corrupt {
                    at: pos + at as u64,
                    reason: format!("invalid batch length {len}"),
                });
                break;
            }
            if size > rest.len() {
                if size > SCAN_CHUNK && at == 0 && (pos + size as u64) <= file_len {
                    // One batch bigger than the chunk: validate it on its own.
                    let big = file.read_exact_at(pos, size)?;
                    match check(&big, base, meta.next_offset) {
                        Ok(h) => {
                            meta.add_batch(base, pos, &h, interval);
                            at = size;
                        }
                        Err(reason) => stop = Some(ScanEnd::Corrupt { at: pos, reason }),
                    }
                }
                break;
            }
            match check(&rest[..size], base, meta.next_offset) {
                Ok(h) => {
                    meta.add_batch(base, pos + at as u64, &h, interval);
                    at += size;
                }
                Err(reason) => {
                    stop = Some(ScanEnd::Corrupt {
                        at: pos + at as u64,
                        reason,
                    });
                    break;
                }
            }
        }
        if let Some(stop) = stop {
            break stop;
        }
        if at == 0 {
            break ScanEnd::Torn { at: pos };
        }
        pos += at as u64;
    };
    let valid_len = match &end {
        ScanEnd::Clean => file_len,
        ScanEnd::Torn { at } | ScanEnd::Corrupt { at, .. } => *at,
    };
    Ok(ScanResult {
        meta,
        valid_len,
        end,
    })
}

fn check(batch: &[u8], base: i64, expected_next: i64) -> Result<BatchHeader, String> {
    let h = crate::batch::validate(batch).map_err(|e: BatchError| e.to_string())?;
    if h.base_offset < expected_next {
        return Err(format!(
            "offset {} goes backwards (expected at least {expected_next})",
            h.base_offset
        ));
    }
    if h.last_offset() - base > u32::MAX as i64 {
        return Err(format!(
            "offset {} is too far from the segment base {base}",
            h.last_offset()
        ));
    }
    Ok(h)
}

pub(crate) fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// A segment shared between the partition's writer and its readers.
pub(crate) struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    /// Bytes readers may see: only whole, validated, (per policy) flushed batches.
    len: AtomicU64,
    pub meta: RwLock<SegmentMeta>,
}

impl Segment {
    pub fn new(
        base: i64,
        log_path: PathBuf,
        file: Arc<dyn StorageFile>,
        len: u64,
        meta: SegmentMeta,
    ) -> Self {
        Segment {
            base_offset: base,
            log_path,
            file,
            len: AtomicU64::new(len),
            meta: RwLock::new(meta),
        }
    }

    pub fn create(storage: &dyn Storage, dir: &Path, base: i64) -> Result<Segment> {
        let path = dir.join(file_name(base, "log"));
        let file = storage
            .open(&path, true)
            .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
        file.truncate(0)
            .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
        Ok(Segment::new(
            base,
            path,
            file,
            0,
            SegmentMeta::empty_at(base),
        ))
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub fn publish_len(&self, len: u64) {
        self.len.store(len, Ordering::Release);
    }

    pub fn meta(&self) -> std::sync::RwLockReadGuard<'_, SegmentMeta> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn meta_mut(&self) -> std::sync::RwLockWriteGuard<'_, SegmentMeta> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_offset(&self) -> i64 {
        self.meta().next_offset
    }

    pub fn index_path(&self) -> PathBuf {
        self.log_path.with_extension("index")
    }

    pub fn time_index_path(&self) -> PathBuf {
        self.log_path.with_extension("timeindex")
    }

    /// The file position of the batch holding `offset`, or of the first batch after it
    /// (compaction leaves gaps); `None` when no batch in the segment reaches `offset`.
    pub fn locate(&self, offset: i64) -> std::io::Result<Option<(u64, BatchHeader)>> {
        let start = {
            let meta = self.meta();
            let rel = offset
                .saturating_sub(self.base_offset)
                .clamp(0, u32::MAX as i64) as u32;
            let idx = meta.offsets.partition_point(|e| e.rel <= rel);
            if idx == 0 {
                0
            } else {
                meta.offsets[idx - 1].pos as u64
            }
        };
        self.scan_headers(start, |h| h.last_offset() >= offset)
    }

    /// Walks batch headers from `pos` up to the published length; returns the first that matches.
    pub fn scan_headers(
        &self,
        mut pos: u64,
        mut wanted: impl FnMut(&BatchHeader) -> bool,
    ) -> std::io::Result<Option<(u64, BatchHeader)>> {
        let limit = self.len();
        while pos + crate::batch::BATCH_HEADER_LEN as u64 <= limit {
            let bytes = self
                .file
                .read_exact_at(pos, crate::batch::BATCH_HEADER_LEN)?;
            let h = BatchHeader::parse(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if wanted(&h) {
                return Ok(Some((pos, h)));
            }
            pos += h.size as u64;
        }
        Ok(None)
    }

    /// Whole batches from `pos`: as many as fit in `max_bytes`, and at least the first.
    pub fn read_batches(&self, pos: u64, first_size: usize, max_bytes: usize) -> Result<Vec<u8>> {
        self.read_batches_into(pos, first_size, max_bytes, i64::MAX, Vec::new())
    }

    /// [`Segment::read_batches`] into `buf`, a buffer to reuse: memory that was read into
    /// before is not zeroed or faulted in again. Stops before a batch whose base offset is at
    /// or past `below_offset` (the end offset the caller read first), except the first.
    pub fn read_batches_into(
        &self,
        pos: u64,
        first_size: usize,
        max_bytes: usize,
        below_offset: i64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let limit = self.len();
        let want = (max_bytes.max(first_size) as u64).min(limit.saturating_sub(pos)) as usize;
        let io = |e| LogError::io(format!("reading {}", self.log_path.display()), e);
        buf.clear();
        let done = self.file.read_append_at(&mut buf, pos, want).map_err(io)?;
        if done < want {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes missing at byte {}",
                    want - done,
                    pos + done as u64
                ),
            )));
        }
        let mut end = 0usize;
        while end + LOG_OVERHEAD <= buf.len() {
            let len =
                i32::from_be_bytes([buf[end + 8], buf[end + 9], buf[end + 10], buf[end + 11]]);
            let size = len.max(0) as usize + LOG_OVERHEAD;
            if end + size > buf.len() {
                break;
            }
            let base = i64::from_be_bytes(buf[end..end + 8].try_into().unwrap_or([0; 8]));
            if end > 0 && base >= below_offset {
                // Written but not yet published as the end offset: a reader that got it would
                // ask next for an offset past the end it was told.
                break;
            }
            // Re-checked on every read: bytes that rotted on disk are reported, never served.
            if let Err(e) = crate::batch::validate(&buf[end..end + size]) {
                return Err(LogError::Corrupt {
                    path: self.log_path.clone(),
                    detail: format!("batch at byte {}: {e}", pos + end as u64),
                });
            }
            end += size;
        }
        buf.truncate(end);
        Ok(buf)
    }

    /// Calls `f` with each whole batch up to the published length, reading in large chunks.
    pub fn for_each_batch<E: From<std::io::Error>>(
        &self,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let limit = self.len();
        let mut pos = 0u64;
        while pos < limit {
            let want = ((limit - pos) as usize).min(SCAN_CHUNK);
            let mut buf = self.file.read_exact_at(pos, want)?;
            let mut at = 0usize;
            while at + crate::batch::BATCH_HEADER_LEN <= buf.len() {
                let h = BatchHeader::parse(&buf[at..])
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                if at + h.size > buf.len() {
                    break;
                }
                f(pos + at as u64, &h, &buf[at..at + h.size])?;
                at += h.size;
            }
            if at == 0 {
                // A single batch larger than the chunk.
                let h = BatchHeader::parse(&buf)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                buf = self.file.read_exact_at(pos, h.size)?;
                f(pos, &h, &buf)?;
                at = h.size;
            }
            pos += at as u64;
        }
        Ok(())
    }

    /// Where to start scanning for the first record with a timestamp >= `ts`.
    pub fn time_lookup_start(&self, ts: i64) -> u64 {
        let meta = self.meta();
        let idx = meta.times.partition_point(|e| e.ts < ts);
        if idx == 0 {
            return 0;
        }
        let rel = meta.times[idx - 1].rel;
        let oidx = meta.offsets.partition_point(|e| e.rel <= rel);
        if oidx == 0 {
            0
        } else {
            meta.offsets[oidx - 1].pos as u64
        }
    }

    /// Writes both indexes beside the log (atomically; they are only caches).
    pub fn persist_indexes(&self, storage: &dyn Storage) -> std::io::Result<()> {
        let meta = self.meta();
        let mut off = Vec::with_capacity(meta.offsets.len() * 8);
        for e in &meta.offsets {
            off.extend_from_slice(&e.rel.to_be_bytes());
            off.extend_from_slice(&e.pos.to_be_bytes());
        }
        let mut time = Vec::with_capacity(meta.times.len() * 12);
        for e in &meta.times {
            time.extend_from_slice(&e.ts.to_be_bytes());
            time.extend_from_slice(&e.rel.to_be_bytes());
        }
        storage.write_atomic(&self.index_path(), &off)?;
        storage.write_atomic(&self.time_index_path(), &time)
    }
}

/// Loads a sealed segment's indexes and checks them against the log; `None` means "rebuild".
pub(crate) fn load_indexes(
    storage: &dyn Storage,
    log_path: &Path,
    file: &dyn StorageFile,
    base: i64,
    log_len: u64,
    interval: u64,
) -> Option<SegmentMeta> {
    let off = storage.read_file(&log_path.with_extension("index")).ok()?;
    let time = storage
        .read_file(&log_path.with_extension("timeindex"))
        .ok()?;
    if off.len() % 8 != 0 || time.len() % 12 != 0 || (off.is_empty() && log_len > 0) {
        return None;
    }
    let offsets: Vec<OffsetEntry> = off
        .chunks_exact(8)
        .map(|c| OffsetEntry {
            rel: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            pos: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let times: Vec<TimeEntry> = time
        .chunks_exact(12)
        .map(|c| TimeEntry {
            ts: i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            rel: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
        })
        .collect();
    let increasing = offsets
        .windows(2)
        .all(|w| w[0].rel < w[1].rel && w[0].pos < w[1].pos)
        && times
            .windows(2)
            .all(|w| w[0].ts <= w[1].ts && w[0].rel <= w[1].rel);
    if !increasing || offsets.first().map(|e| e.pos != 0).unwrap_or(false) {
        return None;
    }
    // The last indexed batch must be where the index says; then only the tail after it is scanned
    // (it was fully validated before the segment was sealed).
    let last = *offsets.last()?;
    if last.pos as u64 >= log_len {
        return None;
    }
    let head = file
        .read_exact_at(last.pos as u64, crate::batch::BATCH_HEADER_LEN)
        .ok()?;
    let h = BatchHeader::parse(&head).ok()?;
    if h.base_offset != base + last.rel as i64 {
        return None;
    }
    // Recompute counters from the headers after the last entry (cheap: < interval bytes).
    let mut meta = SegmentMeta {
        offsets,
        times,
        ..SegmentMeta::empty_at(base)
    };
    let first = file.read_exact_at(0, crate::batch::BATCH_HEADER_LEN).ok()?;
    meta.first_timestamp = BatchHeader::parse(&first).ok().map(|h| h.base_timestamp);
    meta.max_timestamp = meta.times.last().map(|t| t.ts).unwrap_or(-1);
    let mut pos = last.pos as u64;
    while pos < log_len {
        let head = file
            .read_exact_at(pos, crate::batch::BATCH_HEADER_LEN)
            .ok()?;
        let h = BatchHeader::parse(&head).ok()?;
        meta.max_timestamp = meta.max_timestamp.max(h.max_timestamp);
        meta.next_offset = h.last_offset() + 1;
        meta.bytes_since_offset_entry += h.size as u64;
        meta.batches += 1;
        pos += h.size as u64;
    }
    if pos != log_len {
        return None;
    }
    let _ = interval;
    Some(meta)
}
