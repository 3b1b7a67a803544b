//! Append, read, indexes, rolling, timestamps, long-poll, topics and configs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sluice_log::sim::SimStorage;
use sluice_log::{decode_record_set, Log, LogError, LogOptions, TopicConfig};

#[test]
fn offsets_are_assigned_and_reads_return_the_containing_batch() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("orders", 2, TopicConfig::default())
        .unwrap();
    let p = log.partition("orders", 1).unwrap();
    let a = p.append(&mut batch(&values("a", 0..3), 0, T0), T0).unwrap();
    let b = p.append(&mut batch(&values("b", 0..2), 0, T0), T0).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert!(a.durable, "flush.messages=1 is the default");
    assert_eq!(p.end_offset(), 5);

    // Offset 1 lives in the first batch: the whole batch comes back, as Kafka's Fetch does.
    let r = p.read(1, 1).unwrap();
    let recs = decode_record_set(&r.records).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "at least one whole batch"
    );
    assert_eq!(r.high_watermark, 5);
    let r = p.read(3, 1 << 20).unwrap();
    assert_eq!(
        decode_record_set(&r.records).unwrap()[0].value.as_deref(),
        Some(&b"b-0"[..])
    );
    assert!(
        p.read(5, 100).unwrap().records.is_empty(),
        "the end offset is a valid, empty read"
    );
    match p.read(6, 100) {
        Err(LogError::OffsetOutOfRange {
            offset: 6,
            log_start: 0,
            log_end: 5,
            ..
        }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        p.read(-1, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn every_offset_is_found_across_rolled_segments_with_sparse_indexes() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    let cfg = config(&[
        ("segment.bytes", "800"),
        ("index.interval.bytes", "300"),
        ("flush.messages", "-1"),
    ]);
    log.create_topic("t", 1, cfg).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut expected = Vec::new();
    for i in 0..60 {
        let vals = values(&format!("b{i}"), 0..(1 + i % 4));
        p.append(&mut batch(&vals, 0, T0 + i as i64 * 10), T0)
            .unwrap();
        expected.extend(vals);
    }
    assert!(
        p.stats().segments > 5,
        "small segment.bytes must roll: {:?}",
        p.stats()
    );
    for (offset, value) in expected.iter().enumerate() {
        let r = p.read(offset as i64, 1).unwrap();
        let rec = decode_record_set(&r.records)
            .unwrap()
            .into_iter()
            .find(|r| r.offset == offset as i64)
            .unwrap();
        assert_eq!(
            rec.value.as_deref(),
            Some(value.as_bytes()),
            "offset {offset}"
        );
    }
    let all: Vec<String> = read_all(&p).into_iter().map(|(_, v)| v).collect();
    assert_eq!(all, expected);
    // Sealed segments have their indexes on disk.
    let index_files = sim
        .file_paths()
        .iter()
        .filter(|p| p.extension().map(|e| e == "index").unwrap_or(false))
        .count();
    assert!(index_files >= p.stats().segments - 1);
}

#[test]
fn rolls_by_age() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, config(&[("segment.ms", "1000")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(&values("a", 0..1), 0, T0), T0).unwrap();
    p.append(&mut batch(&values("b", 0..1), 0, T0 + 10), T0 + 10)
        .unwrap();
    assert_eq!(p.stats().segments, 1);
    p.append(&mut batch(&values("c", 0..1), 0, T0 + 2000), T0 + 2000)
        .unwrap();
    assert_eq!(p.stats().segments, 2);
}

#[test]
fn lookup_by_timestamp_finds_the_first_record_at_or_after() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic(
        "t",
        1,
        config(&[("segment.bytes", "1500"), ("index.interval.bytes", "200")]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..40 {
        // Each batch: 3 records at T0 + 100*i + {0,1,2}.
        p.append(
            &mut batch(&values(&format!("x{i}"), 0..3), 0, T0 + 100 * i),
            T0,
        )
        .unwrap();
    }
    assert_eq!(p.offset_for_timestamp(T0).unwrap(), Some((0, T0)));
    assert_eq!(
        p.offset_for_timestamp(T0 + 1001).unwrap(),
        Some((31, T0 + 1001))
    );
    assert_eq!(
        p.offset_for_timestamp(T0 + 1050).unwrap(),
        Some((33, T0 + 1100))
    );
    assert_eq!(
        p.offset_for_timestamp(T0 + 3902).unwrap(),
        Some((119, T0 + 3902))
    );
    assert_eq!(p.offset_for_timestamp(T0 + 5000).unwrap(), None);
}

#[test]
fn invalid_input_gets_typed_errors_and_changes_nothing() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    for bad in ["", "a b", "über", ".", "..", &"x".repeat(250)] {
        assert!(
            matches!(
                log.create_topic(bad, 1, TopicConfig::default()),
                Err(LogError::InvalidTopicName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        log.create_topic("__mine", 1, TopicConfig::default()),
        Err(LogError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        log.create_topic("ok", 0, TopicConfig::default()),
        Err(LogError::InvalidPartitionCount(0))
    ));
    log.create_topic("ok.name-1_x", 2, TopicConfig::default())
        .unwrap();
    assert!(matches!(
        log.create_topic("ok.name-1_x", 2, TopicConfig::default()),
        Err(LogError::TopicExists(_))
    ));
    assert!(matches!(
        log.partition("ok.name-1_x", 2),
        Err(LogError::UnknownPartition { partitions: 2, .. })
    ));
    assert!(matches!(
        log.partition("nope", 0),
        Err(LogError::UnknownTopic(_))
    ));

    let p = log.partition("ok.name-1_x", 0).unwrap();
    let mut corrupt = batch(&values("v", 0..3), 0, T0);
    let n = corrupt.len();
    corrupt[n - 2] ^= 1;
    let err = p.append(&mut corrupt, T0).unwrap_err();
    assert!(err.to_string().contains("CRC32C mismatch"), "{err}");
    let good = batch(&values("v", 0..3), 0, T0);
    let mut two = good.clone();
    two.extend_from_slice(&good[..good.len() - 5]);
    assert!(
        matches!(p.append(&mut two, T0), Err(LogError::InvalidBatch { .. })),
        "a truncated second batch fails the whole set"
    );
    assert_eq!(p.end_offset(), 0, "nothing was appended");

    log.create_topic("small", 1, config(&[("max.message.bytes", "100")]))
        .unwrap();
    let small = log.partition("small", 0).unwrap();
    assert!(matches!(
        small.append(&mut batch(&values("big", 0..20), 0, T0), T0),
        Err(LogError::BatchTooLarge { .. })
    ));

    log.create_topic("compacted", 1, config(&[("cleanup.policy", "compact")]))
        .unwrap();
    let c = log.partition("compacted", 0).unwrap();
    assert!(matches!(
        c.append(&mut batch(&values("v", 0..2), 0, T0), T0),
        Err(LogError::NullKeyOnCompactedTopic(_))
    ));
    c.append(&mut batch(&values("v", 0..2), 1, T0), T0).unwrap();
}

#[test]
fn topics_and_their_configs_survive_reopen_and_delete_is_clean() {
    let sim = SimStorage::new();
    {
        let log = open_sim(&sim);
        log.create_topic(
            "keep",
            3,
            config(&[
                ("retention.ms", "1000"),
                ("cleanup.policy", "compact,delete"),
            ]),
        )
        .unwrap();
        log.create_topic("drop", 1, TopicConfig::default()).unwrap();
        log.partition("drop", 0)
            .unwrap()
            .append(&mut batch(&values("x", 0..2), 0, T0), T0)
            .unwrap();
        log.delete_topic("drop").unwrap();
        assert!(matches!(
            log.delete_topic("drop"),
            Err(LogError::UnknownTopic(_))
        ));
        log.close().unwrap();
    }
    let log = open_sim(&sim);
    let names: Vec<String> = log.topics().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, vec!["keep".to_string()]);
    let t = log.topic("keep").unwrap();
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.config.retention_ms, 1000);
    assert!(t.config.is_override("cleanup.policy"));
    assert!(
        !sim.file_paths()
            .iter()
            .any(|p| p.to_string_lossy().contains("drop")),
        "deleted topic left files"
    );
    // The topic can be created again, empty.
    log.create_topic("drop", 1, TopicConfig::default()).unwrap();
    assert_eq!(log.partition("drop", 0).unwrap().end_offset(), 0);
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    match Log::open(dir.path(), opts()) {
        Err(LogError::DataDirLocked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
        other => panic!("expected DataDirLocked, got {:?}", other.err()),
    }
    // A read-only open works beside the writer and sees its data after refresh.
    log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let ro = Log::open(
        dir.path(),
        LogOptions {
            read_only: true,
            maintenance_interval: None,
        },
    )
    .unwrap();
    let rp = ro.partition("t", 0).unwrap();
    assert_eq!(rp.end_offset(), 0);
    log.partition("t", 0)
        .unwrap()
        .append(&mut batch(&values("v", 0..4), 0, T0), T0)
        .unwrap();
    ro.refresh().unwrap();
    assert_eq!(rp.end_offset(), 4);
    assert_eq!(read_all(&rp).len(), 4);
    assert!(matches!(
        rp.append(&mut batch(&values("v", 0..1), 0, T0), T0),
        Err(LogError::ReadOnly(_))
    ));
    log.close().unwrap();
    drop(log);
    Log::open(dir.path(), opts()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_append_and_times_out_otherwise() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();

    let started = Instant::now();
    assert_eq!(p.wait_for(0, Duration::from_millis(100)).await, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "nothing to wait for: the full timeout passes"
    );

    let writer = p.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        writer
            .append(&mut batch(&values("late", 0..2), 0, T0), T0)
            .unwrap();
    });
    let started = Instant::now();
    let end = p.wait_for(0, Duration::from_secs(10)).await;
    assert_eq!(end, 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the append, not the timeout"
    );
    handle.join().unwrap();
}

#[test]
fn readers_run_beside_the_writer_and_never_see_a_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let cfg = config(&[("segment.bytes", "20000"), ("flush.messages", "-1")]);
    log.create_topic("t", 1, cfg).unwrap();
    let p = log.partition("t", 0).unwrap();
    let total = 3000;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                let mut next = 0i64;
                while next < total {
                    let r = p.read(next, 4096).unwrap();
                    for rec in decode_record_set(&r.records).unwrap() {
                        if rec.offset >= next {
                            assert_eq!(
                                rec.value.unwrap(),
                                format!("v-{}", rec.offset).into_bytes()
                            );
                            assert_eq!(rec.offset, next, "no gaps");
                            next += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let mut offset = 0;
    while offset < total {
        let vals: Vec<String> = (offset..offset + 10).map(|i| format!("v-{i}")).collect();
        p.append(&mut batch(&vals, 0, T0), T0).unwrap();
        offset += 10;
    }
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn every_fsync_is_timed_into_the_logs_histogram() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    let mut registry = prometheus_client::registry::Registry::default();
    log.register_metrics(&mut registry);
    let count = |registry: &prometheus_client::registry::Registry| -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("sluice_log_fsync_duration_seconds_count "))
            .expect("the histogram is exported")
            .parse()
            .unwrap()
    };
    log.create_topic("orders", 1, TopicConfig::default())
        .unwrap();
    let before = count(&registry);
    let p = log.partition("orders", 0).unwrap();
    for i in 0..3 {
        p.append(&mut batch(&values("a", i..i + 1), 0, T0), T0)
            .unwrap();
    }
    // flush.messages=1 (the default): one fsync per append.
    assert_eq!(count(&registry) - before, 3);
}
