//! Arbitrary bytes as requests, without a socket: every frame is answered or refused with a
//! reason, never a panic or a hang. (The cargo-fuzz target in `fuzz/` does the same,
//! coverage-guided.)

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_broker::{answer_frame, BrokerConfig, BrokerState};
use sluice_log::{Log, LogOptions, TopicConfig};

fn state() -> (Arc<BrokerState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )
    .unwrap();
    log.create_topic("t", 2, TopicConfig::default()).unwrap();
    (
        BrokerState::new(log, BrokerConfig::default(), 9092).unwrap(),
        dir,
    )
}

fn run(state: Arc<BrokerState>, frame: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    // Paused time: long-polls and rebalance waits in fuzzed requests finish at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    // A request that parks for good (a follower's SyncGroup) ends at the timeout.
    rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(3600),
            answer_frame(state, Bytes::from(frame)),
        )
        .await
    })
    .unwrap_or(Err("parked".into()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn garbage_after_a_valid_api_key_and_version_never_panics(
        key in prop::sample::select(sluice_broker::SUPPORTED_APIS.to_vec()),
        version_offset in 0i16..16,
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (state, _dir) = state();
        let (api, lo, hi) = key;
        let version = lo + version_offset % (hi - lo + 1);
        let mut frame = Vec::new();
        frame.extend_from_slice(&(api as i16).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&1234i32.to_be_bytes());
        frame.extend_from_slice(&body);
        if let Ok(Some(resp)) = run(state, frame) {
            prop_assert_eq!(&resp[4..8], &1234i32.to_be_bytes()[..], "answers carry the correlation id");
        }
    }

    #[test]
    fn fully_random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..120)) {
        let (state, _dir) = state();
        let _ = run(state, frame);
    }
}
