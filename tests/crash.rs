//! `kill -9` in the middle of appends, again and again: every acknowledged record survives,
//! nothing is duplicated, nothing corrupt is served.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{run_ok, sluice, KillOnDrop, TempData};

#[test]
fn sigkill_mid_append_loses_no_acknowledged_record() {
    let data = TempData::new();
    // Small segments so that kills also land around segment rolls.
    run_ok(sluice(&data).args([
        "topics",
        "create",
        "t",
        "--config",
        "segment.bytes=65536",
        "--config",
        "flush.messages=1",
    ]));
    let mut next_line = 0u64;
    let mut total_acked = 0u64;
    for round in 0..8u64 {
        let child = sluice(&data)
            .args(["produce", "t", "--print-offsets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn producer");
        let mut producer = KillOnDrop(child);
        let mut stdin = producer.0.stdin.take().unwrap();
        let stdout = producer.0.stdout.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_writer = stop.clone();
        let first = next_line;
        let writer = std::thread::spawn(move || {
            let mut n = first;
            while !stop_writer.load(Ordering::Relaxed) {
                let mut chunk = String::new();
                for _ in 0..50 {
                    chunk.push_str(&format!("line-{n}\n"));
                    n += 1;
                }
                if stdin.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
        });
        let acks = std::thread::spawn(move || {
            let mut max_acked: Option<i64> = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let last: i64 = line.split('\t').nth(2).unwrap().parse().unwrap();
                max_acked = Some(max_acked.map_or(last, |m| m.max(last)));
            }
            max_acked
        });
        std::thread::sleep(Duration::from_millis(150 + (round * 97) % 400));
        producer.0.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
        producer.0.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let max_acked = acks.join().unwrap();
        writer.join().unwrap();

        let out = run_ok(sluice(&data).args(["consume", "t", "--from-beginning", "--exit-at-end"]));
        let lines: Vec<&str> = out.lines().collect();
        for (offset, line) in lines.iter().enumerate() {
            assert_eq!(
                *line,
                format!("line-{offset}"),
                "round {round}: offset {offset} holds the wrong record"
            );
        }
        let stored = lines.len() as u64;
        if let Some(max) = max_acked {
            assert!(
                stored as i64 > max,
                "round {round}: offset {max} was acknowledged but only {stored} records survived"
            );
            total_acked = max as u64 + 1;
        }
        next_line = stored;
    }
    assert!(
        total_acked > 1000,
        "the producer should have acknowledged plenty before the kills: {total_acked}"
    );
    let described = run_ok(sluice(&data).args(["topics", "describe", "t"]));
    let segments: usize = described
        .split("Segments: ")
        .nth(1)
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(segments > 1, "kills should span segment rolls: {described}");
}
