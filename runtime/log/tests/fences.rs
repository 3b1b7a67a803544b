//! Writers that outlive what they write to: a partition held after its topic was deleted,
//! the log after `close`, and maintenance beside a partition that an I/O failure poisoned.

mod common;

use common::*;
use sluice_log::sim::{SimStorage, TornWrites};
use sluice_log::{LogError, TopicConfig};

const HOUR: i64 = 3_600_000;

#[test]
fn a_partition_held_after_its_topic_was_deleted_refuses_appends() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("orders", 2, TopicConfig::default())
        .unwrap();
    // What a pipeline source holds: the partition itself, not the topic's name.
    let held = log.partition("orders", 1).unwrap();
    held.append(&mut batch(&values("before", 0..3), 0, T0), T0)
        .unwrap();
    log.delete_topic("orders").unwrap();

    let err = held
        .append(&mut batch(&values("after", 0..3), 0, T0), T0)
        .unwrap_err();
    assert!(
        matches!(err, LogError::TopicDeleted { ref topic, .. } if topic == "orders"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("topic `orders` was deleted"),
        "{err}"
    );
    assert!(!err.is_retriable());
    assert!(
        held.sync_to(2).is_err(),
        "no fsync promises for a deleted topic"
    );

    // A topic of the same name made afterwards is a new one: the old handle stays fenced,
    // and nothing it tried to write shows up in the new topic.
    log.create_topic("orders", 2, TopicConfig::default())
        .unwrap();
    assert!(held
        .append(&mut batch(&values("late", 0..1), 0, T0), T0)
        .is_err());
    let fresh = log.partition("orders", 1).unwrap();
    assert_eq!(fresh.end_offset(), 0);
    fresh
        .append(&mut batch(&values("new", 0..2), 0, T0), T0)
        .unwrap();
    log.close().unwrap();
    let reopened = open_sim(&sim.crash_image(TornWrites::LoseUnsynced));
    let got: Vec<String> = read_all(&reopened.partition("orders", 1).unwrap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, values("new", 0..2));
}

#[test]
fn close_refuses_every_writer_after_the_clean_shutdown_mark() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(&values("kept", 0..2), 0, T0), T0)
        .unwrap();
    log.close().unwrap();

    let err = p
        .append(&mut batch(&values("late", 0..2), 0, T0), T0)
        .unwrap_err();
    assert!(matches!(err, LogError::Closed(_)), "{err:?}");
    assert!(err.to_string().contains("the log is closed"), "{err}");
    assert!(matches!(
        log.create_topic("u", 1, TopicConfig::default()),
        Err(LogError::Closed(_))
    ));
    assert!(matches!(log.delete_topic("t"), Err(LogError::Closed(_))));
    assert!(matches!(log.maintain(T0), Err(LogError::Closed(_))));

    // The next open trusts the mark (no tail validation) and finds exactly what was there.
    let reopened = open_sim(&sim.crash_image(TornWrites::KeepAll));
    let got: Vec<String> = read_all(&reopened.partition("t", 0).unwrap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, values("kept", 0..2));
}

#[test]
fn maintenance_skips_a_poisoned_partition_and_keeps_the_others_healthy() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    let retention = [("retention.ms", "3600000"), ("segment.bytes", "600")];
    // Named so that the poisoned topic comes first in the log's (sorted) order.
    log.create_topic("a-poisoned", 1, config(&retention))
        .unwrap();
    log.create_topic("b-healthy", 1, config(&retention))
        .unwrap();
    log.create_topic("c-healthy", 1, config(&retention))
        .unwrap();
    for name in ["a-poisoned", "b-healthy", "c-healthy"] {
        let p = log.partition(name, 0).unwrap();
        for i in 0..10 {
            p.append(
                &mut batch(&values(&format!("b{i}"), 0..3), 0, T0 - 2 * HOUR),
                T0,
            )
            .unwrap();
        }
    }
    let poisoned = log.partition("a-poisoned", 0).unwrap();
    sim.fail_syncs(true);
    assert!(poisoned
        .append(&mut batch(&values("x", 0..1), 0, T0), T0)
        .is_err());
    sim.fail_syncs(false);
    assert!(poisoned.is_poisoned());

    let done = log.maintain(T0).unwrap();
    assert_eq!(done.failed.len(), 1, "{:?}", done.failed);
    assert_eq!(done.failed[0].topic, "a-poisoned");
    assert_eq!(done.failed[0].partition, 0);
    assert!(matches!(done.failed[0].error, LogError::Poisoned(_)));
    for name in ["b-healthy", "c-healthy"] {
        let p = log.partition(name, 0).unwrap();
        assert_eq!(
            p.log_start_offset(),
            30,
            "{name}: every old segment deleted"
        );
        p.append(&mut batch(&values("fresh", 0..1), 0, T0), T0)
            .unwrap();
    }
    assert!(done.totals.segments_deleted >= 2);
    // Again: the poisoned one is reported each time, the others go on.
    let again = log.maintain(T0).unwrap();
    assert_eq!(again.failed.len(), 1);
}
