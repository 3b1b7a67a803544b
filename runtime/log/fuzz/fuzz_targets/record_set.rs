//! Feeds arbitrary bytes to the decoders that see producer input: record-set splitting and
//! validation, record decoding, and the whole append path on a simulated disk.
//! Run: `cargo fuzz run record_set`.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sluice_log::sim::SimStorage;
use sluice_log::{Log, LogOptions, Partition, TopicConfig};

fn partition() -> &'static Arc<Partition> {
    static PARTITION: OnceLock<(Log, Arc<Partition>)> = OnceLock::new();
    &PARTITION
        .get_or_init(|| {
            let opts = LogOptions { read_only: false, maintenance_interval: None };
            let log = Log::open_on(Arc::new(SimStorage::new()), "/d", opts).expect("open");
            let cfg = TopicConfig::from_pairs([("cleanup.policy", "compact"), ("flush.messages", "-1")]).expect("config");
            log.create_topic("t", 1, cfg).expect("topic");
            let p = log.partition("t", 0).expect("partition");
            (log, p)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = sluice_log::batch::split_record_set(data) {
        for (start, h) in batches {
            let _ = sluice_log::record::decode_records(&data[start..start + h.size], &h);
        }
    }
    let _ = sluice_log::decode_record_set(data);
    let p = partition();
    let mut bytes = data.to_vec();
    if let Ok(info) = p.append(&mut bytes, 0) {
        // What was accepted reads back, whole and valid.
        let read = p.read(info.base_offset, usize::MAX).expect("read back what was accepted");
        assert_eq!(&read.records[..bytes.len()], &bytes[..]);
    }
});
