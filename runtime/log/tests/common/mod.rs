#![allow(dead_code)]
//! Helpers shared by the log's integration tests.

use std::sync::Arc;

use sluice_log::sim::SimStorage;
use sluice_log::{
    decode_record_set, BatchBuilder, Log, LogOptions, Partition, Record, TopicConfig,
};

pub const T0: i64 = 1_700_000_000_000;

pub fn opts() -> LogOptions {
    LogOptions {
        read_only: false,
        maintenance_interval: None,
    }
}

pub fn open_sim(sim: &SimStorage) -> Log {
    Log::open_on(Arc::new(sim.clone()), "/data", opts()).expect("open log")
}

pub fn config(pairs: &[(&str, &str)]) -> TopicConfig {
    TopicConfig::from_pairs(pairs.iter().copied()).expect("valid config")
}

/// A batch of values with keys `k<i % keys>` (or no keys when `keys == 0`).
pub fn batch(values: &[String], keys: usize, ts: i64) -> Vec<u8> {
    let key_strings: Vec<String> = (0..values.len())
        .map(|i| format!("k{}", i % keys.max(1)))
        .collect();
    let mut b = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        let key = if keys == 0 {
            None
        } else {
            Some(key_strings[i].as_bytes())
        };
        b.push(&Record {
            key,
            value: Some(v.as_bytes()),
            timestamp: ts + i as i64,
            headers: vec![],
        });
    }
    b.build()
}

pub fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Every record of a partition from its log start: `(offset, value)`.
pub fn read_all(p: &Partition) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    loop {
        let r = p.read(offset, 64 * 1024).expect("read");
        if r.records.is_empty() {
            break;
        }
        for rec in decode_record_set(&r.records).expect("valid batches") {
            if rec.offset >= offset {
                out.push((
                    rec.offset,
                    String::from_utf8(rec.value.unwrap_or_default()).unwrap(),
                ));
            }
            offset = offset.max(rec.offset + 1);
        }
        let last = sluice_log::batch::split_record_set(&r.records)
            .unwrap()
            .last()
            .unwrap()
            .1
            .last_offset();
        offset = offset.max(last + 1);
    }
    out
}
