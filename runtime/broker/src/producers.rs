//! Idempotent producers: producer ids, epochs, and per partition the sequence numbers of the
//! last five batches of each producer, so that a retried batch gets its original offset back
//! instead of being stored twice, and a gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! The table lives in memory: after a broker restart, a producer's next batch starts its
//! sequence tracking afresh (retries across a restart are not de-duplicated yet).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::codes;

/// Batches remembered per producer and partition, as in Kafka.
const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Store it.
    Append,
    /// Already stored at this base offset: answer with it and store nothing.
    Duplicate(i64),
    /// Refuse with this error code.
    Refuse(i16),
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    /// `(first sequence, last sequence, base offset)`, oldest first.
    recent: VecDeque<(i32, i32, i64)>,
}

/// The producers writing one partition. Hold its lock across check, append and record.
#[derive(Debug, Default)]
pub struct PartitionProducers {
    by_id: HashMap<i64, ProducerEntry>,
}

impl PartitionProducers {
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SequenceCheck {
        let Some(entry) = self.by_id.get(&producer_id) else {
            return SequenceCheck::Append;
        };
        if epoch < entry.epoch {
            return SequenceCheck::Refuse(codes::INVALID_PRODUCER_EPOCH);
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        if let Some(&(_, _, offset)) = entry
            .recent
            .iter()
            .find(|(f, l, _)| *f == first_seq && *l == last_seq)
        {
            return SequenceCheck::Duplicate(offset);
        }
        let expected = entry
            .recent
            .back()
            .map(|(_, last, _)| if *last == i32::MAX { 0 } else { last + 1 })
            .unwrap_or(0);
        if first_seq == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
        }
    }

    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        base_offset: i64,
    ) {
        let entry = self.by_id.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.recent.clear();
        }
        entry.recent.push_back((first_seq, last_seq, base_offset));
        while entry.recent.len() > REMEMBERED_BATCHES {
            entry.recent.pop_front();
        }
    }
}

type SharedTable = Arc<Mutex<PartitionProducers>>;

/// Every partition's producer table, and producer id allocation.
pub struct Producers {
    next_id: AtomicI64,
    partitions: Mutex<HashMap<(String, i32), SharedTable>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Producers {
    pub fn new() -> Self {
        // Ids from earlier runs must not be handed out again: start past anything a previous
        // run could have allocated (milliseconds since the epoch, times 1000).
        Producers {
            next_id: AtomicI64::new(sluice_log::now_ms() * 1000),
            partitions: Mutex::new(HashMap::new()),
        }
    }

    pub fn allocate_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::AcqRel)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Arc<Mutex<PartitionProducers>> {
        lock(&self.partitions)
            .entry((topic.to_string(), partition))
            .or_default()
            .clone()
    }
}

impl Default for Producers {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_get_their_offset_and_gaps_are_refused() {
        let mut p = PartitionProducers::default();
        assert_eq!(p.check(7, 0, 0, 4), SequenceCheck::Append);
        p.record(7, 0, 0, 4, 100);
        assert_eq!(p.check(7, 0, 5, 9), SequenceCheck::Append);
        p.record(7, 0, 5, 9, 105);
        assert_eq!(p.check(7, 0, 0, 4), SequenceCheck::Duplicate(100));
        assert_eq!(p.check(7, 0, 5, 9), SequenceCheck::Duplicate(105));
        assert_eq!(
            p.check(7, 0, 12, 14),
            SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(p.check(7, 0, 10, 14), SequenceCheck::Append);
        // A fenced (older) epoch, and a new epoch that must restart at 0.
        p.record(7, 1, 0, 0, 200);
        assert_eq!(
            p.check(7, 0, 10, 14),
            SequenceCheck::Refuse(codes::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            p.check(7, 2, 3, 3),
            SequenceCheck::Refuse(codes::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(p.check(7, 2, 0, 3), SequenceCheck::Append);
    }
}
