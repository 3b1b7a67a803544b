//! Log compaction (`cleanup.policy=compact`): keep the latest record per key.
//!
//! A pass builds a map of the latest offset of every key over the whole partition, then
//! rewrites each sealed segment (never the active one) keeping only records that are the
//! latest for their key. Tombstones (null values) are kept until `delete.retention.ms` after
//! their timestamp, so that consumers that are behind still see the delete. Records keep their
//! offsets; batches keep their headers (base offset, last offset delta, producer fields), so
//! consumers and idempotent producers see the same offsets before and after.
//!
//! A cleaned segment is written to `<base>.cleaned`, fsynced and renamed over the `.log`: a
//! crash leaves either the old or the new segment, and a stray `.cleaned` file is deleted on
//! open. Compressed batches are kept whole for now (their records are not examined).

use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::{rebuild_with_records, BatchHeader, Compression};
use crate::error::{LogError, Result};
use crate::partition::{lock, MaintenanceReport, Partition};
use crate::record::decode_records;
use crate::segment::{scan, Segment, SegmentMeta};

fn plain(h: &BatchHeader) -> bool {
    !h.is_control() && h.compression() == Ok(Compression::None)
}

impl Partition {
    pub(crate) fn compact(&self, now_ms: i64, report: &mut MaintenanceReport) -> Result<()> {
        let mut state = lock(&self.maintenance);
        self.check_fence("compaction")?;
        let segs = self.segments();
        let Some(active) = segs.last() else {
            return Ok(());
        };
        if segs.len() < 2
            || (state.cleaned_up_to == Some(active.base_offset) && !state.tombstones_pending)
        {
            return Ok(());
        }
        let invalid = |source| LogError::InvalidBatch {
            topic: self.topic.clone(),
            partition: self.id,
            source,
        };

        let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
        for seg in segs.iter() {
            seg.for_each_batch(|_, h, bytes| {
                if plain(h) {
                    for r in decode_records(bytes, h).map_err(invalid)? {
                        if let Some(k) = r.key {
                            latest.insert(k.to_vec(), r.offset);
                        }
                    }
                }
                Ok::<_, LogError>(())
            })
            .map_err(|e| io_or(e, seg))?;
        }

        let horizon = now_ms.saturating_sub(self.config().delete_retention_ms);
        let mut tombstones_left = false;
        for (i, seg) in segs[..segs.len() - 1].iter().enumerate() {
            let mut out = Vec::with_capacity(seg.len() as usize);
            let mut removed = 0u64;
            seg.for_each_batch(|_, h, bytes| {
                if !plain(h) {
                    out.extend_from_slice(bytes);
                    return Ok(());
                }
                let records = decode_records(bytes, h).map_err(invalid)?;
                let keep: Vec<&[u8]> = records
                    .iter()
                    .filter(|r| match r.key {
                        None => true,
                        Some(k) => {
                            let is_latest = latest.get(k) == Some(&r.offset);
                            let expired_tombstone = r.value.is_none() && r.timestamp < horizon;
                            if is_latest && !expired_tombstone && r.value.is_none() {
                                tombstones_left = true;
                            }
                            is_latest && !expired_tombstone
                        }
                    })
                    .map(|r| r.raw)
                    .collect();
                removed += (records.len() - keep.len()) as u64;
                if keep.len() == records.len() {
                    out.extend_from_slice(bytes);
                } else if !keep.is_empty() {
                    out.extend_from_slice(&rebuild_with_records(h, &keep));
                }
                Ok::<_, LogError>(())
            })
            .map_err(|e| io_or(e, seg))?;
            if removed == 0 {
                continue;
            }
            self.swap_in_cleaned(seg, out, i == 0)?;
            report.records_compacted_away += removed;
        }
        state.cleaned_up_to = Some(active.base_offset);
        state.tombstones_pending = tombstones_left;
        Ok(())
    }

    fn swap_in_cleaned(&self, seg: &Segment, bytes: Vec<u8>, is_first: bool) -> Result<()> {
        let storage = self.storage.as_ref();
        let path = &seg.log_path;
        let io = |what: &str, e| LogError::io(format!("{what} {}", path.display()), e);
        if bytes.is_empty() && !is_first {
            self.replace_segment(seg.base_offset, None);
            for p in [path.clone(), seg.index_path(), seg.time_index_path()] {
                let _ = storage.remove_file(&p);
            }
            return Ok(());
        }
        let cleaned = path.with_extension("cleaned");
        let f = storage
            .open(&cleaned, true)
            .map_err(|e| io("creating cleaned copy of", e))?;
        f.truncate(0)
            .and_then(|_| f.write_at(&bytes, 0))
            .and_then(|_| f.sync_data())
            .map_err(|e| io("writing cleaned copy of", e))?;
        drop(f);
        storage
            .rename(&cleaned, path)
            .map_err(|e| io("replacing", e))?;
        storage
            .sync_dir(&self.dir)
            .map_err(|e| io("syncing folder of", e))?;
        let file = storage.open(path, false).map_err(|e| io("reopening", e))?;
        let r = scan(
            file.as_ref(),
            seg.base_offset,
            0,
            SegmentMeta::empty_at(seg.base_offset),
            self.config().index_interval_bytes,
        )
        .map_err(|e| io("scanning", e))?;
        let new = Segment::new(seg.base_offset, path.clone(), file, r.valid_len, r.meta);
        new.persist_indexes(storage)
            .map_err(|e| io("writing indexes of", e))?;
        self.replace_segment(seg.base_offset, Some(Arc::new(new)));
        Ok(())
    }
}

fn io_or(e: LogError, seg: &Segment) -> LogError {
    match e {
        LogError::Io { context, source } if context.is_empty() => {
            LogError::io(format!("reading {}", seg.log_path.display()), source)
        }
        other => other,
    }
}

impl From<std::io::Error> for LogError {
    fn from(source: std::io::Error) -> Self {
        LogError::io(String::new(), source)
    }
}
