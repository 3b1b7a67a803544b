//! `sluice run` end to end: files in, topic, files out; bad lines to the dead-letter topic;
//! validation errors with positions; and `kill -9` in the middle of a large transfer, again
//! and again, with nothing missing and no topic record written twice.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{binary, consume_topic, start, stop, KillOnDrop};

fn pipeline(dir: &Path, extra_source: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"
runtime:
  data_dir: {dir}/data
sources:
  lines_in:
    type: file
    topic: events
    value_format: json
    path: {dir}/in/*.json
    poll_interval: 50ms
{extra_source}
sinks:
  lines_out:
    type: file
    topics: [events]
    value_format: json
    path: {dir}/out
    roll_interval: 200ms
    roll_bytes: 200000
"#,
        dir = dir.display()
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, yaml).unwrap();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    path
}

fn output_lines(dir: &Path) -> Vec<String> {
    let out = dir.join("out");
    let Ok(entries) = std::fs::read_dir(&out) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(out.join(n))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_for_lines(dir: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = output_lines(dir);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lines_flow_from_files_to_files_and_bad_lines_go_to_the_dead_letter_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = pipeline(
        dir,
        "    errors: { tolerance: all, dead_letter_topic: events-dlq }",
    );
    let mut input: Vec<String> = (0..500)
        .map(|i| format!(r#"{{"n":{i},"name":"user-{i}"}}"#))
        .collect();
    let mut text = input.join("\n");
    text.push_str("\n{not json\n{\"n\":500}\n");
    std::fs::write(dir.join("in/a.json"), text).unwrap();
    input.push(r#"{"n":500}"#.into());
    let run = start(&file);
    let got = wait_for_lines(dir, input.len(), Duration::from_secs(30));
    // A file appearing later is picked up too.
    std::fs::write(dir.join("in/b.json"), "{\"late\":true}\n").unwrap();
    let got_late = wait_for_lines(dir, input.len() + 1, Duration::from_secs(30));
    stop(run);
    assert_eq!(got, input);
    assert_eq!(
        got_late.last().map(String::as_str),
        Some(r#"{"late":true}"#)
    );
    assert_eq!(
        consume_topic(dir, "events-dlq"),
        vec!["{not json".to_string()]
    );
}

#[test]
fn a_bad_line_stops_the_task_without_tolerance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = pipeline(dir, "");
    std::fs::write(dir.join("in/a.json"), "{\"ok\":1}\n{broken\n{\"ok\":2}\n").unwrap();
    let out = Command::new(binary())
        .arg("run")
        .arg(&file)
        .args(["--rest-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = KillOnDrop(out);
    let got = wait_for_lines(dir, 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    support::sigint(run.0.id());
    let output = std::mem::replace(&mut run.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lines_in/0 FAILED") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
    assert_eq!(
        got,
        vec![r#"{"ok":1}"#.to_string()],
        "nothing after the bad line"
    );
}

#[test]
fn validation_errors_name_line_and_column_and_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.yaml");
    std::fs::write(&file, "sources:\n  s:\n    type: file\n    topic: t\n    pth: /in\nsinks:\n  k: { type: file, topics: [t], path: /out }\n").unwrap();
    for cmd in ["validate", "run"] {
        let out = Command::new(binary()).arg(cmd).arg(&file).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{}:5:5: source `s` (type `file`): `pth`: unknown setting (did you mean `path`?)",
                file.display()
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(":2:3: source `s` (type `file`): `path`: missing required setting"),
            "{stderr}"
        );
    }
    assert!(!tmp.path().join("data").exists(), "nothing was started");
}

#[test]
fn sigkill_in_the_middle_of_a_transfer_loses_nothing_and_writes_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = pipeline(dir, "");
    let total = 60_000;
    let input: Vec<String> = (0..total)
        .map(|i| format!(r#"{{"n":{i},"payload":"{}"}}"#, "x".repeat(40)))
        .collect();
    std::fs::write(dir.join("in/big.json"), input.join("\n") + "\n").unwrap();
    for round in 0..4u64 {
        let mut run = start(&file);
        std::thread::sleep(Duration::from_millis(300 + round * 170));
        run.0.kill().unwrap(); // SIGKILL
        run.0.wait().unwrap();
    }
    let run = start(&file);
    let topic_len = {
        // Wait for the source to finish, then for the sink to catch up with the topic.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = output_lines(dir);
            if got.len() >= total || Instant::now() > deadline {
                break got.len();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    stop(run);
    let output = output_lines(dir);
    let topic = consume_topic(dir, "events");
    assert!(topic_len >= total);
    assert_eq!(
        output, topic,
        "the sink wrote every topic record exactly once, in order"
    );
    let seen: std::collections::HashSet<&String> = output.iter().collect();
    let missing = input.iter().filter(|l| !seen.contains(l)).count();
    assert_eq!(missing, 0, "every input line reached the output");
}

#[test]
fn every_example_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = Command::new(binary())
                .arg("validate")
                .arg(&path)
                .env("HOOK_SECRET", "the secret configs/webhook.yaml reads")
                .env("PGPASSWORD", "example-password")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no example configs found in {}", dir.display());
}

#[test]
fn json_lines_travel_as_avro_and_an_incompatible_schema_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = |schema: &str| {
        format!(
            r#"
runtime: {{ data_dir: {d}/data }}
sources:
  users_in:
    type: file
    topic: users
    path: {d}/in/*.json
    poll_interval: 50ms
    value_format: avro
    value_schema: '{schema}'
    errors: {{ tolerance: all, dead_letter_topic: users-dlq }}
sinks:
  users_out: {{ type: file, topics: [users], value_format: avro, path: {d}/out, roll_interval: 200ms }}
"#,
            d = dir.display()
        )
    };
    let v1 = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"},{"name":"email","type":["null","string"],"default":null}]}"#;
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml(v1)).unwrap();
    std::fs::write(dir.join("in/u.json"), "{\"id\": 1, \"name\": \"ada\"}\n{\"id\": \"two\", \"name\": \"bob\"}\n{\"id\": 3, \"name\": \"cy\", \"email\": \"cy@x\"}\n").unwrap();
    let run = start(&file);
    let got = wait_for_lines(dir, 2, Duration::from_secs(30));
    stop(run);
    assert_eq!(
        got,
        vec![
            r#"{"id":1,"name":"ada","email":null}"#.to_string(),
            r#"{"id":3,"name":"cy","email":"cy@x"}"#.to_string()
        ]
    );
    assert_eq!(
        consume_topic(dir, "users-dlq"),
        vec![r#"{"id": "two", "name": "bob"}"#.to_string()],
        "the record that did not fit the schema"
    );
    // On the topic: Confluent wire format (magic byte 0, then the schema id).
    let raw = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "consume",
            "users",
            "--from-beginning",
            "--exit-at-end",
            "--max-messages",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(raw.stdout[0], 0, "magic byte");

    // A new field without a default cannot read old data: the registry refuses, and the
    // connector says so before anything starts.
    let v2 = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
    std::fs::write(&file, yaml(v2)).unwrap();
    let out = Command::new(binary())
        .arg("run")
        .arg(&file)
        .args(["--rest-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("users_in")
            && stderr.contains("users-value")
            && stderr.contains("incompatible")
            && stderr.contains("age"),
        "{stderr}"
    );
}

#[test]
fn transforms_shape_records_on_both_sides_and_bad_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = format!(
        r#"
runtime: {{ data_dir: {d}/data }}
sources:
  users_in:
    type: file
    topic: users
    path: {d}/in/*.json
    poll_interval: 50ms
    value_format: json
    transforms:
      - {{ type: replace_field, exclude: [password], renames: ["uid:user_id"] }}
      - {{ type: insert_field, static_field: origin, static_value: web }}
sinks:
  users_out:
    type: file
    topics: [users]
    value_format: json
    path: {d}/out
    roll_interval: 200ms
    transforms:
      - {{ type: hoist_field, field: user }}
"#,
        d = dir.display()
    );
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let file = dir.join("p.yaml");
    std::fs::write(&file, &yaml).unwrap();
    std::fs::write(
        dir.join("in/u.json"),
        "{\"uid\": 1, \"password\": \"hunter2\"}\n",
    )
    .unwrap();
    let run = start(&file);
    let got = wait_for_lines(dir, 1, Duration::from_secs(30));
    stop(run);
    assert_eq!(
        got,
        vec![r#"{"user":{"user_id":1,"origin":"web"}}"#.to_string()]
    );
    assert_eq!(
        consume_topic(dir, "users"),
        vec![r#"{"user_id":1,"origin":"web"}"#.to_string()],
        "the topic holds the source-side shape"
    );

    let bad = yaml.replace(
        "type: hoist_field, field: user",
        "type: hoist_feild, field: user",
    );
    std::fs::write(&file, bad).unwrap();
    let out = Command::new(binary())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown transform type `hoist_feild` (did you mean `hoist_field`?)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn csv_files_become_json_records_and_malformed_lines_go_to_the_dead_letter_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = format!(
        r#"
runtime: {{ data_dir: {d}/data }}
sources:
  csv_in:
    type: file
    topic: people
    path: {d}/in/*.csv
    format: csv
    poll_interval: 50ms
    value_format: json
    errors: {{ tolerance: all, dead_letter_topic: people-dlq }}
sinks:
  people_out: {{ type: file, topics: [people], value_format: json, path: {d}/out, roll_interval: 200ms }}
  people_csv: {{ type: file, topics: [people], value_format: json, format: csv, path: {d}/csv_out }}
"#,
        d = dir.display()
    );
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    std::fs::write(
        dir.join("in/people.csv"),
        "id,name\n1,ada\n2\n3,\"grace, h\"\n",
    )
    .unwrap();
    let run = start(&file);
    let got = wait_for_lines(dir, 2, Duration::from_secs(30));
    stop(run);
    assert_eq!(
        got,
        vec![
            r#"{"id":"1","name":"ada"}"#.to_string(),
            r#"{"id":"3","name":"grace, h"}"#.to_string()
        ]
    );
    assert_eq!(consume_topic(dir, "people-dlq"), vec!["2".to_string()]);
    // The second sink wrote the same records back as CSV (its file finished at shutdown).
    let csv: Vec<String> = std::fs::read_dir(dir.join("csv_out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(csv, vec!["id,name\n1,ada\n3,\"grace, h\"\n".to_string()]);
}
