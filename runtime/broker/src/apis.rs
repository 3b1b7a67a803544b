//! The APIs and versions this broker implements: exactly what it advertises in ApiVersions.
//! Every floor includes what librdkafka 2.0.2 (Debian's kcat) checks for its feature
//! detection; no version above a range is accepted.

use kafka_protocol::messages::ApiKey;

/// `(api, min, max)` for every API served.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 2),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The version range served for `key`, if it is served at all.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fit_the_codec_and_old_librdkafka() {
        for (key, lo, hi) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(
                valid.min <= *lo && *hi <= valid.max,
                "{key:?} {lo}..{hi} outside the codec's {valid:?}"
            );
        }
        // librdkafka 2.0.2 feature detection needs these versions inside our ranges.
        for (key, v) in [
            (ApiKey::Produce, 3),
            (ApiKey::Fetch, 4),
            (ApiKey::FindCoordinator, 0),
            (ApiKey::JoinGroup, 0),
            (ApiKey::SyncGroup, 0),
            (ApiKey::Heartbeat, 0),
            (ApiKey::LeaveGroup, 0),
            (ApiKey::OffsetCommit, 2),
            (ApiKey::OffsetFetch, 1),
            (ApiKey::ListOffsets, 1),
            (ApiKey::InitProducerId, 0),
        ] {
            let (lo, hi) = range(key).unwrap();
            assert!(lo <= v && v <= hi, "{key:?} must include v{v}");
        }
    }
}
