//! Crash recovery on the simulated disk: torn writes, power loss, corrupt bytes, damaged
//! indexes, a full disk and failing fsyncs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use sluice_log::sim::{SimStorage, TornWrites};
use sluice_log::LogError;

fn segment_files(sim: &SimStorage, ext: &str) -> Vec<PathBuf> {
    sim.file_paths()
        .into_iter()
        .filter(|p| p.extension().map(|e| e == ext).unwrap_or(false))
        .collect()
}

#[test]
fn acknowledged_appends_survive_power_loss_with_fsync_on_append() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, config(&[("segment.bytes", "3000")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut acked = Vec::new();
    for i in 0..50 {
        let vals = values(&format!("b{i}"), 0..3);
        p.append(&mut batch(&vals, 0, T0), T0).unwrap();
        acked.extend(vals);
    }
    for seed in 0..20 {
        let crashed = sim.crash_image(TornWrites::Random(seed));
        let log = open_sim(&crashed);
        let got: Vec<String> = read_all(&log.partition("t", 0).unwrap())
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, acked, "seed {seed}");
    }
}

#[test]
fn without_fsync_power_loss_keeps_a_valid_prefix_and_appends_continue() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic(
        "t",
        1,
        config(&[("flush.messages", "-1"), ("segment.bytes", "1000")]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut all = Vec::new();
    for i in 0..40 {
        let vals = values(&format!("b{i}"), 0..2);
        p.append(&mut batch(&vals, 0, T0), T0).unwrap();
        all.extend(vals);
    }
    for seed in 0..20 {
        let crashed = sim.crash_image(TornWrites::Random(seed));
        let log = open_sim(&crashed);
        let p = log.partition("t", 0).unwrap();
        let got: Vec<(i64, String)> = read_all(&p);
        let vals: Vec<String> = got.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            &all[..vals.len()],
            &vals[..],
            "seed {seed}: recovered data must be a prefix"
        );
        // Sealed segments were fsynced when rolled: at least those survive.
        assert!(
            vals.len() >= 16,
            "seed {seed}: only {} records survived",
            vals.len()
        );
        let end = p.end_offset();
        let info = p
            .append(&mut batch(&values("after", 0..1), 0, T0), T0)
            .unwrap();
        assert_eq!(info.base_offset, end, "offsets continue after recovery");
    }
}

#[test]
fn a_corrupt_byte_in_the_active_segment_truncates_there_and_is_never_served() {
    let sim = SimStorage::new();
    {
        let log = open_sim(&sim);
        log.create_topic("t", 1, TopicConfig::default()).unwrap();
        let p = log.partition("t", 0).unwrap();
        for i in 0..10 {
            p.append(&mut batch(&values(&format!("b{i}"), 0..2), 0, T0), T0)
                .unwrap();
        }
        // No close(): a crash, so the tail is re-validated.
    }
    let log_file = segment_files(&sim, "log")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/t/0/"))
        .unwrap();
    let len = sim.read_file(&log_file).unwrap().len();
    // Damage a byte inside the 6th batch (each batch is the same size).
    let batch_size = len / 10;
    sim.corrupt(&log_file, batch_size * 5 + 70);
    let log = open_sim(&sim);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(
        p.end_offset(),
        10,
        "cut at the first corrupt batch: 5 batches of 2 remain"
    );
    assert_eq!(read_all(&p).len(), 10);
    assert_eq!(
        sim.read_file(&log_file).unwrap().len(),
        batch_size * 5,
        "the file itself was truncated"
    );
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt() {
    let sim = SimStorage::new();
    let cfg = [("segment.bytes", "1000"), ("index.interval.bytes", "100")];
    let expected = {
        let log = open_sim(&sim);
        log.create_topic("t", 1, config(&cfg)).unwrap();
        let p = log.partition("t", 0).unwrap();
        for i in 0..30 {
            p.append(&mut batch(&values(&format!("b{i}"), 0..3), 0, T0), T0)
                .unwrap();
        }
        log.close().unwrap();
        read_all(&p)
    };
    let indexes = segment_files(&sim, "index");
    assert!(indexes.len() >= 3);
    // Scramble one, delete another, truncate the time index of a third.
    let f = sim_open(&sim, &indexes[0]);
    f.write_at(&[0xFF; 16], 0).unwrap();
    sim.remove_file(&indexes[1]).unwrap();
    let ti = indexes[2].with_extension("timeindex");
    sim_open(&sim, &ti).truncate(5).unwrap();

    let log = open_sim(&sim);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(read_all(&p), expected);
    for (offset, value) in &expected {
        let r = p.read(*offset, 1).unwrap();
        let got = sluice_log::decode_record_set(&r.records).unwrap();
        assert!(got
            .iter()
            .any(|r| r.offset == *offset && r.value.as_deref() == Some(value.as_bytes())));
    }
    assert!(
        sim.exists(&indexes[1]),
        "the missing index was written again"
    );
}

fn sim_open(sim: &SimStorage, path: &Path) -> std::sync::Arc<dyn sluice_log::storage::StorageFile> {
    use sluice_log::storage::Storage;
    sim.open(path, false).unwrap()
}

trait SimExt {
    fn read_file(&self, p: &Path) -> std::io::Result<Vec<u8>>;
    fn remove_file(&self, p: &Path) -> std::io::Result<()>;
    fn exists(&self, p: &Path) -> bool;
}

impl SimExt for SimStorage {
    fn read_file(&self, p: &Path) -> std::io::Result<Vec<u8>> {
        sluice_log::storage::Storage::read_file(self, p)
    }
    fn remove_file(&self, p: &Path) -> std::io::Result<()> {
        sluice_log::storage::Storage::remove_file(self, p)
    }
    fn exists(&self, p: &Path) -> bool {
        sluice_log::storage::Storage::exists(self, p)
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_partial_batch() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(&values("ok", 0..5), 0, T0), T0)
        .unwrap();
    sim.set_capacity(sim.used_bytes() + 50);
    let err = p
        .append(&mut batch(&values("too-much", 0..20), 0, T0), T0)
        .unwrap_err();
    assert!(matches!(err, LogError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(err.is_retriable());
    assert_eq!(p.end_offset(), 5, "nothing of the failed append is visible");
    // Not after a restart either.
    for torn in [TornWrites::KeepAll, TornWrites::LoseUnsynced] {
        let crashed = sim.crash_image(torn);
        let log = open_sim(&crashed);
        assert_eq!(read_all(&log.partition("t", 0).unwrap()).len(), 5);
    }
    // Space comes back: appends continue where they left off.
    sim.set_capacity(0);
    assert_eq!(
        p.append(&mut batch(&values("later", 0..1), 0, T0), T0)
            .unwrap()
            .base_offset,
        5
    );
}

#[test]
fn a_failed_fsync_stops_the_partition_until_restart() {
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(&values("ok", 0..2), 0, T0), T0)
        .unwrap();
    sim.fail_syncs(true);
    assert!(p
        .append(&mut batch(&values("lost", 0..2), 0, T0), T0)
        .is_err());
    sim.fail_syncs(false);
    assert!(matches!(
        p.append(&mut batch(&values("x", 0..1), 0, T0), T0),
        Err(LogError::Poisoned(_))
    ));
    let crashed = sim.crash_image(TornWrites::LoseUnsynced);
    let log = open_sim(&crashed);
    let got: Vec<String> = read_all(&log.partition("t", 0).unwrap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, values("ok", 0..2));
}

#[test]
fn interrupted_topic_creation_and_compaction_leftovers_are_cleaned_on_open() {
    use sluice_log::storage::Storage;
    let sim = SimStorage::new();
    {
        let log = open_sim(&sim);
        log.create_topic("t", 1, TopicConfig::default()).unwrap();
    }
    sim.create_dir_all(Path::new("/data/topics/.half.creating/0"))
        .unwrap();
    sim.open(
        Path::new("/data/topics/t/0/00000000000000000000.cleaned"),
        true,
    )
    .unwrap();
    let log = open_sim(&sim);
    assert_eq!(log.topics().len(), 1);
    assert!(!Storage::exists(
        &sim,
        Path::new("/data/topics/.half.creating")
    ));
    assert!(!Storage::exists(
        &sim,
        Path::new("/data/topics/t/0/00000000000000000000.cleaned")
    ));
}

use sluice_log::TopicConfig;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of appends, any segment and index sizes, any crash point and torn tail:
    /// with fsync on append, everything acknowledged comes back in order, nothing else does,
    /// and every offset reads back its own record.
    #[test]
    fn crash_anywhere_loses_nothing_acknowledged(
        batches in proptest::collection::vec(1usize..6, 1..40),
        segment_bytes in 200u64..4000,
        interval in 0u64..600,
        crash_after in 0usize..40,
        seed in any::<u64>(),
        value_len in 0usize..120,
    ) {
        let sim = SimStorage::new();
        let log = open_sim(&sim);
        let cfg = config(&[("segment.bytes", &segment_bytes.to_string()), ("index.interval.bytes", &interval.to_string())]);
        log.create_topic("t", 1, cfg).unwrap();
        let p = log.partition("t", 0).unwrap();
        let mut acked = Vec::new();
        let mut image = None;
        for (i, n) in batches.iter().enumerate() {
            if i == crash_after {
                image = Some(sim.crash_image(TornWrites::Random(seed)));
            }
            let vals: Vec<String> = (0..*n).map(|j| format!("{i}-{j}-{}", "x".repeat(value_len))).collect();
            p.append(&mut batch(&vals, 0, T0 + i as i64), T0 + i as i64).unwrap();
            if image.is_none() {
                acked.extend(vals);
            }
        }
        let crashed = image.unwrap_or_else(|| sim.crash_image(TornWrites::Random(seed)));
        let log = open_sim(&crashed);
        let p = log.partition("t", 0).unwrap();
        let got = read_all(&p);
        let vals: Vec<String> = got.iter().map(|(_, v)| v.clone()).collect();
        prop_assert_eq!(&vals, &acked);
        for (offset, value) in &got {
            let r = p.read(*offset, 1).unwrap();
            let recs = sluice_log::decode_record_set(&r.records).unwrap();
            prop_assert!(recs.iter().any(|r| r.offset == *offset && r.value.as_deref() == Some(value.as_bytes())));
        }
    }
}

#[test]
fn bit_rot_in_a_sealed_segment_is_reported_on_read_not_served() {
    let sim = SimStorage::new();
    {
        let log = open_sim(&sim);
        log.create_topic("t", 1, config(&[("segment.bytes", "500")]))
            .unwrap();
        let p = log.partition("t", 0).unwrap();
        for i in 0..20 {
            p.append(&mut batch(&values(&format!("b{i}"), 0..2), 0, T0), T0)
                .unwrap();
        }
        log.close().unwrap();
    }
    let first = segment_files(&sim, "log").into_iter().min().unwrap();
    sim.corrupt(&first, 80); // inside the first batch's records, after a clean shutdown
    let log = open_sim(&sim);
    let p = log.partition("t", 0).unwrap();
    match p.read(0, 1 << 20) {
        Err(LogError::Corrupt { detail, .. }) => assert!(detail.contains("CRC32C"), "{detail}"),
        other => panic!("a corrupt batch must not be served: {other:?}"),
    }
    // Later segments are still readable.
    assert!(p.read(p.end_offset() - 1, 100).is_ok());
}

#[test]
fn group_commit_makes_every_synced_append_durable() {
    use sluice_log::SyncMode;
    let sim = SimStorage::new();
    let log = open_sim(&sim);
    log.create_topic("t", 1, config(&[("flush.messages", "-1")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (p, acked) = (&p, &acked);
            s.spawn(move || {
                for i in 0..25 {
                    let vals = values(&format!("t{t}-{i}"), 0..2);
                    let info = p
                        .append_with(&mut batch(&vals, 0, T0), T0, SyncMode::Deferred)
                        .unwrap();
                    assert!(!info.durable);
                    p.sync_to(info.last_offset).unwrap();
                    assert!(p.durable_end_offset() > info.last_offset);
                    acked.lock().unwrap().extend(vals);
                }
            });
        }
    });
    let crashed = sim.crash_image(TornWrites::LoseUnsynced);
    let log = open_sim(&crashed);
    let mut got: Vec<String> = read_all(&log.partition("t", 0).unwrap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut want = acked.into_inner().unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
