//! Hot reload of the real binary while data flows: one connector's settings change ten
//! times (the others are never restarted), a broken edit keeps the last good pipeline, and
//! across it all no line is lost or written twice by the exactly-once file sinks.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{binary, curl, rest_url, stop, KillOnDrop};

fn pipeline(root: &Path, b_roll: &str) -> String {
    format!(
        "runtime: {{ data_dir: {r}/data }}\nsources:\n  a_in: {{ type: file, topic: a, path: \"{r}/in/a-*.txt\" }}\n  b_in: {{ type: file, topic: b, path: \"{r}/in/b-*.txt\" }}\n\
         sinks:\n  a_out: {{ type: file, topics: [a], path: {r}/out-a, roll_interval: 100ms }}\n  b_out: {{ type: file, topics: [b], path: {r}/out-b, roll_interval: {b_roll} }}\n",
        r = root.display()
    )
}

/// Every line of the finished output files, counted.
fn delivered(dir: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "jsonl") {
                for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                    *seen.entry(l.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ten_reloads_while_data_flows_restart_only_what_changed_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let file = root.join("p.yaml");
    std::fs::write(&file, pipeline(&root, "100ms")).unwrap();
    let stdout = root.join("run.out");
    let stderr = root.join("run.err");
    let run = KillOnDrop(
        Command::new(binary())
            .arg("run")
            .arg(&file)
            .args(["--rest-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = rest_url(&stdout);

    // A writer drops a new file of 20 lines for each pipeline every 50 ms until told to stop.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, inbox) = (writing.clone(), root.join("in"));
        std::thread::spawn(move || {
            let mut n = 0usize;
            while writing.load(Ordering::Relaxed) {
                for side in ["a", "b"] {
                    let text: String = (0..20).map(|i| format!("{side}-{n}-{i}\n")).collect();
                    let staged = inbox.join(format!(".{side}-{n}"));
                    std::fs::write(&staged, text).unwrap();
                    std::fs::rename(&staged, inbox.join(format!("{side}-{n:05}.txt"))).unwrap();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        })
    };

    let reload = || curl("GET", &format!("{url}/reload")).1;
    let applied = |r: &serde_json::Value| r["attempts"]["applied"].as_u64().unwrap_or(0);
    for i in 1..=10u64 {
        let roll = if i % 2 == 1 { "150ms" } else { "100ms" };
        std::fs::write(&file, pipeline(&root, roll)).unwrap();
        wait_until("the reload to be applied", Duration::from_secs(20), || {
            applied(&reload()) == i
        });
        let last = reload()["last_attempt"].clone();
        assert_eq!(
            last["changed"],
            serde_json::json!(["b_out"]),
            "only the edited connector: {last}"
        );
        assert_eq!(last["added"], serde_json::json!([]));
        assert_eq!(last["removed"], serde_json::json!([]));
        if i == 5 {
            // A broken edit: refused with its place in the file, the last good one runs on.
            std::fs::write(
                &file,
                format!("{}  c_out: {{ type: fiel }}\n", pipeline(&root, roll)),
            )
            .unwrap();
            wait_until(
                "the broken edit to be refused",
                Duration::from_secs(20),
                || reload()["attempts"]["invalid"].as_u64() == Some(1),
            );
            let refused = reload()["last_attempt"].clone();
            assert_eq!(refused["result"], "invalid");
            let errors = refused["errors"].as_array().unwrap();
            assert!(
                errors.iter().any(|e| e["line"] == 8
                    && e["column"] == 18
                    && e["message"]
                        .as_str()
                        .unwrap()
                        .contains("did you mean `file`")),
                "{refused}"
            );
            let before = delivered(&root.join("out-b")).len();
            wait_until(
                "lines still flowing after the broken edit",
                Duration::from_secs(20),
                || delivered(&root.join("out-b")).len() > before,
            );
        }
    }
    let (_, status) = curl("GET", &format!("{url}/connectors?expand=status"));
    for c in ["a_in", "a_out", "b_in", "b_out"] {
        assert_eq!(
            status[c]["status"]["tasks"][0]["state"], "RUNNING",
            "{status}"
        );
    }
    writing.store(false, Ordering::Relaxed);
    let files = writer.join().unwrap();
    let expected = files * 20;
    for side in ["a", "b"] {
        let out = root.join(format!("out-{side}"));
        wait_until(
            &format!("every {side} line"),
            Duration::from_secs(30),
            || delivered(&out).len() == expected,
        );
        let seen = delivered(&out);
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "written twice: {twice:?}");
        for n in 0..files {
            for i in 0..20 {
                assert!(
                    seen.contains_key(&format!("{side}-{n}-{i}")),
                    "lost {side}-{n}-{i}"
                );
            }
        }
    }
    stop(run);
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(
        log.matches("reload of").count(),
        11,
        "ten applied, one refused: {log}"
    );
    assert!(!log.contains("FAILED"), "{log}");
}
