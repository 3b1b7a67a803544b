//! Retention by age and size, compaction with tombstones, and consumer-group offsets.

mod common;

use common::*;
use sluice_log::sim::{SimStorage, TornWrites};
use sluice_log::{LogError, OffsetCommit, TopicConfig, OFFSETS_TOPIC};

const HOUR: i64 = 3_600_000;

#[test]
fn retention_by_age_deletes_old_segments_and_moves_the_log_start() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic(
        "t",
        1,
        config(&[
            ("retention.ms", &HOUR.to_string()),
            ("segment.bytes", "600"),
        ]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..20 {
        // Records two hours old, then fresh ones.
        let ts = if i < 10 { T0 - 2 * HOUR } else { T0 };
        p.append(&mut batch(&values(&format!("b{i}"), 0..3), 0, ts), T0)
            .unwrap();
    }
    let before = p.stats();
    let report = p.maintain(T0).unwrap();
    assert!(report.segments_deleted > 0);
    let after = p.stats();
    assert!(
        after.log_start_offset > 0 && after.log_start_offset <= 30,
        "{after:?}"
    );
    assert_eq!(after.end_offset, before.end_offset);
    let remaining = read_all(&p);
    assert_eq!(remaining.first().unwrap().0, after.log_start_offset);
    assert!(remaining.iter().all(|(o, _)| *o >= after.log_start_offset));
    assert!(
        remaining.iter().any(|(_, v)| v == "b10-0"),
        "fresh records are kept"
    );
    assert!(matches!(
        p.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    // Once everything is old, even the active segment goes (it is rolled first).
    p.maintain(T0 + 3 * HOUR).unwrap();
    assert_eq!(p.log_start_offset(), 60);
    assert!(read_all(&p).is_empty());
    assert_eq!(
        p.append(&mut batch(&values("new", 0..1), 0, T0), T0)
            .unwrap()
            .base_offset,
        60
    );

    // The new log start survives a restart.
    let log = open_sim(&sim.crash_image(TornWrites::LoseUnsynced));
    assert_eq!(log.partition("t", 0).unwrap().log_start_offset(), 60);
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic(
        "t",
        1,
        config(&[("retention.bytes", "2000"), ("segment.bytes", "500")]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..40 {
        p.append(&mut batch(&values(&format!("b{i}"), 0..2), 0, T0), T0)
            .unwrap();
    }
    p.maintain(T0).unwrap();
    let stats = p.stats();
    assert!(stats.size_bytes <= 2000 + 500, "{stats:?}");
    let last = read_all(&p).last().unwrap().1.clone();
    assert_eq!(last, "b39-1");
}

#[test]
fn compaction_keeps_the_latest_value_per_key_at_its_offset() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic(
        "c",
        1,
        config(&[("cleanup.policy", "compact"), ("segment.bytes", "800")]),
    )
    .unwrap();
    let p = log.partition("c", 0).unwrap();
    // 5 keys written 20 times each: k0..k4 cycle.
    for round in 0..20 {
        let vals: Vec<String> = (0..5).map(|k| format!("k{k}-r{round}")).collect();
        p.append(&mut batch(&vals, 5, T0), T0).unwrap();
    }
    let before = read_all(&p);
    assert_eq!(before.len(), 100);
    let report = p.maintain(T0).unwrap();
    assert!(report.records_compacted_away > 50, "{report:?}");
    let after = read_all(&p);
    // Every key's latest value is there, at its original offset.
    for k in 0..5 {
        let latest = before
            .iter()
            .rev()
            .find(|(_, v)| v.starts_with(&format!("k{k}-")))
            .unwrap();
        assert!(after.contains(latest), "lost latest {latest:?}");
    }
    // Offsets only grow and all kept records are from the original log.
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(after.iter().all(|r| before.contains(r)));
    // The active segment is never compacted; sealed ones hold at most one record per key.
    assert!(after.len() < 40, "{} records left", after.len());
    assert_eq!(
        p.end_offset(),
        100,
        "compaction never changes the end offset"
    );
    // Appends continue at the same offsets, and a restart sees the compacted log.
    assert_eq!(
        p.append(&mut batch(&values("k9", 0..1), 1, T0), T0)
            .unwrap()
            .base_offset,
        100
    );
    let log = open_sim(&sim.crash_image(TornWrites::LoseUnsynced));
    let reopened = read_all(&log.partition("c", 0).unwrap());
    assert_eq!(&reopened[..after.len()], &after[..]);
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    use sluice_log::{BatchBuilder, Record};
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    let cfg = config(&[
        ("cleanup.policy", "compact"),
        ("segment.bytes", "300"),
        ("delete.retention.ms", &HOUR.to_string()),
    ]);
    log.create_topic("c", 1, cfg).unwrap();
    let p = log.partition("c", 0).unwrap();
    let put = |key: &str, value: Option<&str>| {
        let mut b = BatchBuilder::new();
        b.push(&Record {
            key: Some(key.as_bytes()),
            value: value.map(str::as_bytes),
            timestamp: T0,
            headers: vec![],
        });
        p.append(&mut b.build(), T0).unwrap();
    };
    put("a", Some("1"));
    put("b", Some("1"));
    put("a", None); // delete a
    for i in 0..10 {
        put("filler", Some(&format!("{i}"))); // push the tombstone out of the active segment
    }
    let keys_after = |p: &sluice_log::Partition| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut off = p.log_start_offset();
        while off < p.end_offset() {
            let r = p.read(off, 1 << 20).unwrap();
            for rec in sluice_log::decode_record_set(&r.records).unwrap() {
                out.push((rec.key.unwrap(), rec.value));
                off = rec.offset + 1;
            }
        }
        out
    };
    p.maintain(T0 + 1000).unwrap();
    let live = keys_after(&p);
    assert!(
        live.contains(&(b"a".to_vec(), None)),
        "tombstone kept within delete.retention.ms: {live:?}"
    );
    assert!(
        !live.contains(&(b"a".to_vec(), Some(b"1".to_vec()))),
        "the deleted value is gone"
    );
    assert!(live.contains(&(b"b".to_vec(), Some(b"1".to_vec()))));
    p.maintain(T0 + 2 * HOUR).unwrap();
    let live = keys_after(&p);
    assert!(
        !live.iter().any(|(k, _)| k == b"a"),
        "tombstone removed after delete.retention.ms: {live:?}"
    );
    assert!(live.contains(&(b"b".to_vec(), Some(b"1".to_vec()))));
}

#[test]
fn group_offsets_commit_fetch_and_survive_crashes() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("orders", 2, TopicConfig::default())
        .unwrap();
    log.create_topic("other", 1, TopicConfig::default())
        .unwrap();
    let commit = |topic: &str, partition: i32, offset: i64, md: &str| OffsetCommit {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 0,
        metadata: md.into(),
    };
    log.commit_offsets(
        "g1",
        &[commit("orders", 0, 10, "m0"), commit("orders", 1, 20, "")],
    )
    .unwrap();
    log.commit_offsets("g1", &[commit("orders", 0, 15, "m1")])
        .unwrap();
    log.commit_offsets("g2", &[commit("other", 0, 3, "")])
        .unwrap();
    assert_eq!(log.committed_offset("g1", "orders", 0).unwrap().offset, 15);
    assert_eq!(
        log.committed_offset("g1", "orders", 0).unwrap().metadata,
        "m1"
    );
    assert!(log.committed_offset("g1", "other", 0).is_none());
    assert!(matches!(
        log.commit_offsets("g1", &[commit("orders", 5, 1, "")]),
        Err(LogError::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.commit_offsets("g1", &[commit("nope", 0, 1, "")]),
        Err(LogError::UnknownTopic(_))
    ));
    assert_eq!(log.groups(), vec!["g1".to_string(), "g2".to_string()]);
    assert!(log
        .topic(OFFSETS_TOPIC)
        .unwrap()
        .config
        .cleanup_policy
        .compacts());

    // A crash right after the commits returned: all of them are there.
    let log2 = open_sim(&sim.crash_image(TornWrites::LoseUnsynced));
    assert_eq!(log2.committed_offset("g1", "orders", 0).unwrap().offset, 15);
    assert_eq!(log2.committed_offset("g1", "orders", 1).unwrap().offset, 20);
    assert_eq!(log2.committed_offset("g2", "other", 0).unwrap().offset, 3);

    // Deleting a topic forgets the offsets committed for it, durably.
    log.delete_topic("other").unwrap();
    assert!(log.committed_offset("g2", "other", 0).is_none());
    log.delete_group("g1").unwrap();
    assert!(log.groups().is_empty());
    let log3 = open_sim(&sim.crash_image(TornWrites::LoseUnsynced));
    assert!(log3.groups().is_empty(), "{:?}", log3.groups());
}

#[test]
fn the_offsets_topic_compacts_down_to_one_record_per_partition() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("orders", 1, TopicConfig::default())
        .unwrap();
    // Force small segments on the internal topic's data by committing many times.
    for i in 0..400 {
        let c = OffsetCommit {
            topic: "orders".into(),
            partition: 0,
            offset: i,
            leader_epoch: -1,
            metadata: "x".repeat(100_000),
        };
        log.commit_offsets("g", &[c]).unwrap();
    }
    let p = log.partition(OFFSETS_TOPIC, 0).unwrap();
    let before = p.stats();
    assert!(before.segments > 1, "{before:?}");
    log.maintain(sluice_log::now_ms()).unwrap();
    let after = p.stats();
    assert!(
        after.size_bytes < before.size_bytes / 2,
        "{before:?} -> {after:?}"
    );
    let log2 = open_sim(&sim.crash_image(TornWrites::LoseUnsynced));
    assert_eq!(log2.committed_offset("g", "orders", 0).unwrap().offset, 399);
}
