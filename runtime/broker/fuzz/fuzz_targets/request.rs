//! Feeds arbitrary bytes to the broker's request path (header, body decoders, handlers),
//! exactly as a connection would after reading a frame. Run: `cargo fuzz run request`.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sluice_broker::{answer_frame, BrokerConfig, BrokerState};
use sluice_log::{Log, LogOptions, TopicConfig};

fn state() -> Arc<BrokerState> {
    static STATE: OnceLock<(Arc<BrokerState>, tempfile::TempDir)> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = Log::open(dir.path(), LogOptions { read_only: false, maintenance_interval: None }).expect("log");
            log.create_topic("t", 2, TopicConfig::default()).expect("topic");
            (BrokerState::new(log, BrokerConfig::default(), 9092).expect("state"), dir)
        })
        .0
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
    let request = answer_frame(state(), bytes::Bytes::copy_from_slice(data));
    // A request that parks for good (a follower's SyncGroup) ends at the (virtual) timeout.
    let _ = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(3600), request).await });
});
