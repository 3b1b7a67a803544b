//! End-to-end tests of the `sluice` binary's topic, produce and consume commands.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use support::{run_ok, run_with_input, sluice, TempData};

#[test]
fn topics_create_list_describe_delete() {
    let data = TempData::new();
    let out = run_ok(sluice(&data).args([
        "topics",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=3600000",
        "--config",
        "cleanup.policy=compact,delete",
    ]));
    assert_eq!(out.trim(), "Created topic orders.");
    run_ok(sluice(&data).args(["topics", "create", "audit"]));
    assert_eq!(
        run_ok(sluice(&data).args(["topics", "list"])),
        "audit\norders\n"
    );
    let described = run_ok(sluice(&data).args(["topics", "describe", "orders"]));
    assert!(described.contains("PartitionCount: 3"), "{described}");
    assert!(
        described.contains("\tretention.ms=3600000\n"),
        "{described}"
    );
    assert!(
        described.contains("\tcleanup.policy=compact,delete\n"),
        "{described}"
    );
    assert!(
        described.contains("\tsegment.bytes=1073741824 (default)"),
        "{described}"
    );
    assert_eq!(described.matches("Partition: ").count(), 3);
    run_ok(sluice(&data).args(["topics", "delete", "audit"]));
    assert_eq!(run_ok(sluice(&data).args(["topics", "list"])), "orders\n");
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let data = TempData::new();
    run_ok(sluice(&data).args(["topics", "create", "t"]));
    let cases: &[(&[&str], &str)] = &[
        (&["topics", "create", "t"], "topic `t` already exists"),
        (
            &["topics", "create", "bad name"],
            "invalid topic name `bad name`",
        ),
        (
            &["topics", "create", "x", "--partitions", "0"],
            "invalid partition count 0",
        ),
        (
            &["topics", "create", "x", "--config", "retention.msx=5"],
            "did you mean `retention.ms`?",
        ),
        (
            &["topics", "create", "x", "--config", "segment.bytes=lots"],
            "expected an integer >= 14",
        ),
        (
            &["topics", "create", "x", "--config", "novalue"],
            "expected key=value",
        ),
        (
            &["topics", "describe", "missing"],
            "topic `missing` does not exist",
        ),
        (
            &["topics", "delete", "missing"],
            "topic `missing` does not exist",
        ),
        (
            &["consume", "t", "--partition", "3", "--from-beginning"],
            "topic `t` has no partition 3",
        ),
        (
            &["consume", "t", "--partition", "0", "--offset", "5"],
            "offset 5 is out of range for t-0: the log holds offsets 0..0",
        ),
        (&["produce", "missing"], "sluice topics create missing"),
    ];
    for (args, expected) in cases {
        let out = sluice(&data)
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr:?}"
        );
    }
    assert_eq!(
        run_ok(sluice(&data).args(["topics", "list"])),
        "t\n",
        "nothing was created"
    );
    // A line without the key separator stops the producer and says which line.
    let out = run_with_input(
        sluice(&data).args(["produce", "t", "--key-separator", ":"]),
        "a:1\nno separator\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2 has no key separator"),
        "{out:?}"
    );
}

#[test]
fn produced_lines_come_back_in_order_with_keys_on_stable_partitions() {
    let data = TempData::new();
    run_ok(sluice(&data).args(["topics", "create", "events", "--partitions", "4"]));
    let mut input = String::new();
    for i in 0..20_000 {
        input.push_str(&format!("user-{}:event-{i}\n", i % 50));
    }
    let out = run_with_input(
        sluice(&data).args(["produce", "events", "--key-separator", ":"]),
        &input,
    );
    assert!(out.status.success(), "{out:?}");
    let printed = run_ok(sluice(&data).args([
        "consume",
        "events",
        "--from-beginning",
        "--exit-at-end",
        "--print-key",
    ]));
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 20_000);
    // Per key, events keep their order; every event is there once.
    let mut last_per_key = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        let (key, value) = line.split_once('\t').unwrap();
        let n: usize = value.strip_prefix("event-").unwrap().parse().unwrap();
        assert!(seen.insert(n), "event {n} twice");
        if let Some(prev) = last_per_key.insert(key.to_string(), n) {
            assert!(prev < n, "key {key}: {prev} before {n}");
        }
    }
    // Each key lives on exactly one partition, the same one Kafka's partitioner would pick.
    let mut partition_of = std::collections::HashMap::new();
    for p in 0..4 {
        let out = run_ok(sluice(&data).args([
            "consume",
            "events",
            "--partition",
            &p.to_string(),
            "--from-beginning",
            "--exit-at-end",
            "--print-key",
        ]));
        for line in out.lines() {
            let key = line.split_once('\t').unwrap().0.to_string();
            assert_eq!(*partition_of.entry(key).or_insert(p), p);
        }
    }
    assert_eq!(partition_of.len(), 50);
}

#[test]
fn consume_from_an_offset_and_stop_after_n() {
    let data = TempData::new();
    run_ok(sluice(&data).args(["topics", "create", "t"]));
    let input: String = (0..100).map(|i| format!("v{i}\n")).collect();
    assert!(run_with_input(sluice(&data).args(["produce", "t"]), &input)
        .status
        .success());
    let out = run_ok(sluice(&data).args([
        "consume",
        "t",
        "--partition",
        "0",
        "--offset",
        "42",
        "--max-messages",
        "3",
    ]));
    assert_eq!(out, "v42\nv43\nv44\n");
    let out = run_ok(sluice(&data).args(["consume", "t", "--from-beginning", "--exit-at-end"]));
    assert_eq!(out.lines().count(), 100);
    // Without --from-beginning a consumer starts at the end: nothing to print.
    assert_eq!(
        run_ok(sluice(&data).args(["consume", "t", "--exit-at-end"])),
        ""
    );
}

#[test]
fn a_consumer_follows_a_producer_in_another_process() {
    let data = TempData::new();
    run_ok(sluice(&data).args(["topics", "create", "live", "--partitions", "2"]));
    let consumer = sluice(&data)
        .args(["consume", "live", "--max-messages", "500"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = support::KillOnDrop(consumer);
    std::thread::sleep(Duration::from_millis(300));
    let mut producer = sluice(&data)
        .args(["produce", "live"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = producer.stdin.as_mut().unwrap();
        for i in 0..500 {
            writeln!(stdin, "live-{i}").unwrap();
            if i % 100 == 0 {
                stdin.flush().unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    drop(producer.stdin.take());
    assert!(producer.wait().unwrap().success());
    let out = support::wait_with_timeout(&mut guard.0, Duration::from_secs(30));
    let mut got: Vec<String> = out.lines().map(String::from).collect();
    got.sort();
    let mut want: Vec<String> = (0..500).map(|i| format!("live-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn one_writer_per_data_directory() {
    use std::io::{BufRead, Write};
    let data = TempData::new();
    run_ok(sluice(&data).args(["topics", "create", "t"]));
    let producer = sluice(&data)
        .args(["produce", "t", "--print-offsets"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = support::KillOnDrop(producer);
    let pid = guard.0.id();
    // Once it has stored a line, it holds the lock (no other writer contends meanwhile: a
    // second writer trying too early would make the producer itself give up).
    let mut stdin = guard.0.stdin.take().unwrap();
    writeln!(stdin, "first").unwrap();
    stdin.flush().unwrap();
    let mut stdout = std::io::BufReader::new(guard.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "the producer stored its first line");
    let out = sluice(&data)
        .args(["topics", "create", "u"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        refused.contains(&format!("in use by another sluice process (pid {pid})")),
        "{refused}"
    );
    // Readers still work beside the writer.
    assert_eq!(run_ok(sluice(&data).args(["topics", "list"])), "t\n");
    drop(stdin);
    assert!(guard.0.wait().unwrap().success());
}

#[test]
fn retention_deletes_old_segments_when_producing() {
    let data = TempData::new();
    run_ok(sluice(&data).args([
        "topics",
        "create",
        "short",
        "--config",
        "retention.ms=1000",
        "--config",
        "segment.bytes=2000",
    ]));
    let old: String = (0..200).map(|i| format!("old-{i}\n")).collect();
    assert!(
        run_with_input(sluice(&data).args(["produce", "short"]), &old)
            .status
            .success()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        run_with_input(sluice(&data).args(["produce", "short"]), "new-0\n")
            .status
            .success()
    );
    let out = run_ok(sluice(&data).args(["consume", "short", "--from-beginning", "--exit-at-end"]));
    assert_eq!(out, "new-0\n");
    let described = run_ok(sluice(&data).args(["topics", "describe", "short"]));
    assert!(
        described.contains("LogStartOffset: 200\tEndOffset: 201"),
        "{described}"
    );
}
