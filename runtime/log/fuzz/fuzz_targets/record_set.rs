//! Feeds arbitrary bytes to the decoders that see producer input: record-set splitting and
//! validation, record decoding, and the whole append path on a simulated disk.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_log::sim::SimStorage;
use sluice_log::{Log, LogOptions, TopicConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = sluice_log::batch::split_record_set(data) {
        for (start, h) in batches {
            let _ = sluice_log::record::decode_records(&data[start..start + h.size], &h);
        }
    }
    let _ = sluice_log::decode_record_set(data);
    let opts = LogOptions { read_only: false, maintenance_interval: None };
    let log = Log::open_on(Arc::new(SimStorage::new()), "/d", opts).expect("open");
    let cfg = TopicConfig::from_pairs([("cleanup.policy", "compact")]).expect("config");
    log.create_topic("t", 1, cfg).expect("topic");
    let p = log.partition("t", 0).expect("partition");
    let mut bytes = data.to_vec();
    if p.append(&mut bytes, 0).is_ok() {
        let read = p.read(0, usize::MAX).expect("read back what was accepted");
        assert_eq!(read.records.len(), data.len());
    }
});
