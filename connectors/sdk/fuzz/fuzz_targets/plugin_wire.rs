//! Record batches and control data from a plugin are outside bytes: decoding any of them
//! must return an error or records, never crash or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_connector_sdk::plugin::wire;
use sluice_connector_sdk::Bytes;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(records) = wire::decode_source(&bytes) {
        // What decodes survives a round trip unchanged (nothing invented or lost).
        let again = Bytes::from(wire::encode_source(&records));
        assert_eq!(wire::decode_source(&again).ok(), Some(records));
    }
    let _ = wire::decode_sink(&bytes);
    let _ = wire::positions_from_json(data);
    let _ = wire::partitions_from_json(data);
    let _ = wire::offsets_from_json(data);
});
