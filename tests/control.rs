//! The control plane of the real binary, driven by curl: Kafka Connect's REST API on a
//! running `sluice run` (stop and resume from committed offsets, offsets, restarts, what
//! the pipeline file owns), and the REST listener's policy.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{binary, curl, rest_url, stop, KillOnDrop};

fn lines_out(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        {
            out.extend(
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    out
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_running_pipeline_is_steered_over_kafka_connects_rest_api() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let file = root.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime: {{ data_dir: {r}/data }}\nsources:\n  lines_in: {{ type: file, topic: lines, path: \"{r}/in/*.txt\" }}\n\
             sinks:\n  lines_out: {{ type: file, topics: [lines], path: {r}/out, roll_interval: 100ms }}\n",
            r = root.display()
        ),
    )
    .unwrap();
    let stdout = root.join("run.out");
    let run = KillOnDrop(
        Command::new(binary())
            .arg("run")
            .arg(&file)
            .args(["--rest-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(root.join("run.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = rest_url(&stdout);
    let out = root.join("out");
    std::fs::write(
        root.join("in/a.txt"),
        (0..100).map(|i| format!("a-{i}\n")).collect::<String>(),
    )
    .unwrap();
    wait_until("the first lines", || lines_out(&out).len() == 100);

    // The terminal's view of the same API.
    let table = support::run_ok(Command::new(binary()).args(["status", "--url", &url]));
    let row = table
        .lines()
        .find(|l| l.starts_with("lines_out"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["lines_out", "sink", "file", "RUNNING", "0:RUNNING"],
        "{table}"
    );
    let paused = support::run_ok(Command::new(binary()).args([
        "connectors",
        "pause",
        "lines_out",
        "--url",
        &url,
    ]));
    assert_eq!(paused.trim(), "lines_out: pausing");
    wait_until("the CLI's pause", || {
        curl("GET", &format!("{url}/connectors/lines_out/status")).1["tasks"][0]["state"]
            == "PAUSED"
    });
    support::run_ok(Command::new(binary()).args([
        "connectors",
        "resume",
        "lines_out",
        "--url",
        &url,
    ]));
    // Created from Kafka Connect's POST body in a file, shown, then deleted.
    let body = root.join("copy.json");
    std::fs::write(
        &body,
        serde_json::json!({"name": "lines_copy", "config": {
            "connector.class": "file", "topics": "lines",
            "path": root.join("copy").display().to_string(), "roll_interval": "100ms"}})
        .to_string(),
    )
    .unwrap();
    let made = support::run_ok(Command::new(binary()).args([
        "connectors",
        "create",
        body.to_str().unwrap(),
        "--url",
        &url,
    ]));
    assert_eq!(made.trim(), "lines_copy: created");
    let shown = support::run_ok(Command::new(binary()).args([
        "connectors",
        "config",
        "lines_copy",
        "--url",
        &url,
    ]));
    assert!(shown.contains("\"roll_interval\": \"100ms\""), "{shown}");
    wait_until("the created sink to copy the topic", || {
        lines_out(&root.join("copy")).len() == 100
    });
    let gone = support::run_ok(Command::new(binary()).args([
        "connectors",
        "delete",
        "lines_copy",
        "--url",
        &url,
    ]));
    assert_eq!(gone.trim(), "lines_copy: deleted");
    assert_eq!(curl("GET", &format!("{url}/connectors/lines_copy")).0, 404);
    let unknown = Command::new(binary())
        .args(["connectors", "pause", "nope", "--url", &url])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("404 Connector nope not found"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // Stopped: the source's tasks end after committing; its offsets can be read.
    let (code, body) = curl("PUT", &format!("{url}/connectors/lines_in/stop"));
    assert_eq!((code, body), (204, serde_json::Value::Null));
    let (_, status) = curl("GET", &format!("{url}/connectors/lines_in/status"));
    assert_eq!(status["connector"]["state"], "STOPPED", "{status}");
    assert_eq!(status["tasks"], serde_json::json!([]));
    let (code, offsets) = curl("GET", &format!("{url}/connectors/lines_in/offsets"));
    assert_eq!(code, 200);
    let first = &offsets["offsets"][0];
    // The file source names a file by its identity and counts bytes: 10 lines of 4, 90 of 5.
    assert!(
        first["partition"]["stream"]
            .as_str()
            .is_some_and(|s| s.starts_with("file:")),
        "{offsets}"
    );
    assert_eq!(
        first["offset"],
        serde_json::json!({"position": 490}),
        "{offsets}"
    );
    let (_, sink_offsets) = curl("GET", &format!("{url}/connectors/lines_out/offsets"));
    assert_eq!(
        sink_offsets["offsets"][0],
        serde_json::json!({"partition": {"kafka_topic": "lines", "kafka_partition": 0}, "offset": {"kafka_offset": 100}}),
        "{sink_offsets}"
    );
    // While it is stopped, new input waits.
    std::fs::write(
        root.join("in/b.txt"),
        (0..20).map(|i| format!("b-{i}\n")).collect::<String>(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(lines_out(&out).len(), 100, "a stopped source reads nothing");
    let (code, _) = curl("PUT", &format!("{url}/connectors/lines_in/resume"));
    assert_eq!(code, 202);
    wait_until("the lines written while stopped", || {
        lines_out(&out).len() == 120
    });
    let got = lines_out(&out);
    let unique: std::collections::BTreeSet<&String> = got.iter().collect();
    assert_eq!(
        unique.len(),
        120,
        "resumed from committed positions: nothing twice"
    );

    // The pipeline file owns the connectors' settings.
    let (code, body) = curl("PUT", &format!("{url}/connectors/lines_out/config"));
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("p.yaml"),
        "{body}"
    );
    let (code, body) = curl("DELETE", &format!("{url}/connectors/lines_out"));
    assert_eq!(
        (code, body["error_code"].clone()),
        (409, serde_json::json!(409))
    );
    let (code, body) = curl("GET", &format!("{url}/connectors/nope/status"));
    assert_eq!(
        (code, body["message"].clone()),
        (404, serde_json::json!("Connector nope not found"))
    );

    // A task restarted by hand runs again and picks up where it was.
    let (code, _) = curl(
        "POST",
        &format!("{url}/connectors/lines_out/tasks/0/restart"),
    );
    assert_eq!(code, 204);
    wait_until("the restarted task", || {
        curl("GET", &format!("{url}/connectors/lines_out/tasks/0/status")).1["state"] == "RUNNING"
    });
    std::fs::write(root.join("in/c.txt"), "c-0\n").unwrap();
    wait_until("a line after the restart", || lines_out(&out).len() == 121);

    // Offsets change only while stopped; reset, the source reads every file again.
    let (code, body) = curl("DELETE", &format!("{url}/connectors/lines_in/offsets"));
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("STOPPED state"),
        "{body}"
    );
    assert_eq!(
        curl("PUT", &format!("{url}/connectors/lines_in/stop")).0,
        204
    );
    let (code, body) = curl("DELETE", &format!("{url}/connectors/lines_in/offsets"));
    assert_eq!(
        (code, body["message"].clone()),
        (
            200,
            serde_json::json!("The offsets for this connector have been reset successfully")
        )
    );
    assert_eq!(
        curl("GET", &format!("{url}/connectors/lines_in/offsets")).1,
        serde_json::json!({"offsets": []})
    );
    assert_eq!(
        curl("PUT", &format!("{url}/connectors/lines_in/resume")).0,
        202
    );
    wait_until("every file read again after the reset", || {
        lines_out(&out).len() == 242
    });
    stop(run);
    assert_eq!(
        lines_out(&out).len(),
        242,
        "nothing written twice on the way out"
    );
}

#[test]
fn the_rest_listener_is_refused_beyond_loopback_without_auth_and_a_port_in_use_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let file = root.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime:\n  data_dir: {r}/data\n  rest: {{ listen: 0.0.0.0:18083 }}\nsources:\n  s: {{ type: file, topic: t, path: \"{r}/in/*\" }}\n\
             sinks:\n  k: {{ type: file, topics: [t], path: {r}/out }}\n",
            r = root.display()
        ),
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = Command::new(binary())
            .arg(command)
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("3:19") && err.contains("REST API on 0.0.0.0:18083"),
            "{command}: {err}"
        );
    }
    assert!(!root.join("data").exists(), "nothing was started");

    // A port already taken: `sluice run` says so and starts nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    std::fs::write(
        &file,
        format!(
            "runtime:\n  data_dir: {r}/data\nsources:\n  s: {{ type: file, topic: t, path: \"{r}/in/*\" }}\n\
             sinks:\n  k: {{ type: file, topics: [t], path: {r}/out }}\n",
            r = root.display()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("run")
        .arg(&file)
        .args(["--rest-listen", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the REST API cannot listen on {addr}")),
        "{err}"
    );
}
