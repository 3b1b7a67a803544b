//! Kafka's DeleteRecords (`kafka-delete-records`, AdminClient's deleteRecords): a partition's
//! start offset moved forward on request, so that records before it are no longer served.
//!
//! The new start is the truth, kept in `<partition>/log-start-offset` (replaced atomically
//! before the call returns); segments wholly below it are removed afterwards, and a segment
//! that straddles it stays until retention takes it. Reads below the start are out of range,
//! as on Kafka; the start never moves back.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::{LogError, Result};
use crate::partition::{lock, Partition};
use crate::storage::Storage;

const LOG_START_FILE: &str = "log-start-offset";

/// The start offset a DeleteRecords stored for the partition in `dir` (0 when none did).
pub(crate) fn stored_log_start(storage: &dyn Storage, dir: &Path) -> Result<i64> {
    let path = dir.join(LOG_START_FILE);
    if !storage.exists(&path) {
        return Ok(0);
    }
    let bytes = storage
        .read_file(&path)
        .map_err(|e| LogError::io(format!("reading {}", path.display()), e))?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .ok_or_else(|| LogError::Corrupt {
            path,
            detail: "not an offset".into(),
        })
}

impl Partition {
    /// Makes `before` the partition's first offset (`-1`: its end, deleting everything).
    /// Returns the new start. An offset past the end is out of range; one at or below the
    /// current start changes nothing.
    pub fn delete_records_before(&self, before: i64) -> Result<i64> {
        self.check_writable("deleting records")?;
        let _m = lock(&self.maintenance);
        self.check_fence("deleting records")?;
        let end = self.end_offset();
        let start = self.log_start_offset();
        let target = if before == -1 { end } else { before };
        if target < 0 || target > end {
            return Err(LogError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.id,
                offset: before,
                log_start: start,
                log_end: end,
            });
        }
        if target <= start {
            return Ok(start);
        }
        let path = self.dir.join(LOG_START_FILE);
        self.storage
            .write_atomic(&path, target.to_string().as_bytes())
            .map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
        self.log_start.fetch_max(target, Ordering::AcqRel);
        // Whole segments below the new start are of no use now; never the active one.
        let segs = self.segments();
        let doomed: Vec<_> = segs
            .windows(2)
            .filter(|w| w[1].base_offset <= target)
            .map(|w| w[0].clone())
            .collect();
        if !doomed.is_empty() {
            self.update_segments(|v| {
                v.retain(|s| !doomed.iter().any(|d| d.base_offset == s.base_offset))
            });
            for seg in &doomed {
                for path in [
                    seg.log_path.clone(),
                    seg.index_path(),
                    seg.time_index_path(),
                ] {
                    let _ = self.storage.remove_file(&path);
                }
            }
        }
        tracing::info!(topic = %self.topic, partition = self.id, start = target, segments_removed = doomed.len(), "deleted records");
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::sim::{SimStorage, TornWrites};
    use crate::{BatchBuilder, Log, LogError, LogOptions, Record, TopicConfig};

    fn options() -> LogOptions {
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        }
    }

    fn append(log: &Log, n: usize) {
        let p = log.partition("t", 0).unwrap();
        for i in 0..n {
            let value = format!("v{i}");
            let mut b = BatchBuilder::new();
            b.push(&Record {
                key: None,
                value: Some(value.as_bytes()),
                timestamp: 1,
                headers: vec![],
            });
            p.append(&mut b.build(), 1).unwrap();
        }
    }

    #[test]
    fn the_start_moves_forward_durably_and_reads_below_it_are_out_of_range() {
        let sim = SimStorage::new();
        let log = Log::open_on(Arc::new(sim.clone()), "/data", options()).unwrap();
        // Small segments: the deletion removes whole ones below the new start.
        let config = TopicConfig::from_pairs([("segment.bytes", "1024")]).unwrap();
        log.create_topic("t", 1, config).unwrap();
        append(&log, 200);
        let p = log.partition("t", 0).unwrap();
        let segments_before = p.segments().len();
        assert!(segments_before > 3);
        assert!(matches!(
            p.delete_records_before(201),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(p.delete_records_before(150).unwrap(), 150);
        assert_eq!(p.log_start_offset(), 150);
        assert!(
            p.segments().len() < segments_before,
            "whole segments below 150 removed"
        );
        assert!(matches!(
            p.read(149, 1 << 20),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(!p.read(150, 1 << 20).unwrap().records.is_empty());
        assert_eq!(p.delete_records_before(10).unwrap(), 150, "never back");
        let image = sim.crash_image(TornWrites::LoseUnsynced);
        let reopened = Log::open_on(Arc::new(image), "/data", options()).unwrap();
        let p = reopened.partition("t", 0).unwrap();
        assert_eq!(p.log_start_offset(), 150, "the start survives a crash");
        assert_eq!(
            p.delete_records_before(-1).unwrap(),
            200,
            "-1: up to the end"
        );
    }
}
