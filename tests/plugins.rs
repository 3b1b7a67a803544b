//! Connector plugins end to end: the example plugin and a panicking fixture are built as
//! real `cdylib`s, libraries that must be refused are made too (another ABI version, a
//! missing symbol, a file that is not a library, a type another plugin already provides),
//! and the real `sluice` binary lists them, validates pipeline files against the settings
//! plugins export, and runs pipelines through them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{binary, consume_topic, stop, KillOnDrop};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn lib_name(crate_name: &str) -> String {
    format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Builds the example plugin and the panicking fixture once, in a target folder of their own
/// (the outer `cargo test` may hold the main one).
fn built_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target").join("plugin-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "-q",
                "-p",
                "sluice-example-plugin",
                "-p",
                "sluice-test-plugin-panicky",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("run cargo build for the plugins");
        assert!(status.success(), "building the plugins failed");
        target.join("debug")
    })
}

/// A library made by rustc straight from `source` (no SDK): for the libraries the loader
/// must refuse.
fn rustc_cdylib(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(lib_name(name));
    let status = Command::new("rustc")
        .args(["--crate-type", "cdylib", "--edition", "2021", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc failed for {name}");
    std::fs::remove_file(src).unwrap();
    out
}

fn plugin_dir(root: &Path, libs: &[&str]) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for lib in libs {
        std::fs::copy(built_plugins().join(lib_name(lib)), dir.join(lib_name(lib))).unwrap();
    }
    dir
}

fn start_logged(file: &Path, log: &Path, plugin_env: Option<&Path>) -> KillOnDrop {
    let mut cmd = Command::new(binary());
    cmd.arg("run")
        .arg(file)
        .args(["--rest-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .env_remove("SLUICE_PLUGIN_PATH")
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(dir) = plugin_env {
        cmd.env("SLUICE_PLUGIN_PATH", dir);
    }
    KillOnDrop(cmd.spawn().unwrap())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn plugins_list_shows_types_and_settings_and_names_every_library_it_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = plugin_dir(tmp.path(), &["sluice_example_plugin"]);
    // The same plugin again under another name: its types are taken.
    std::fs::copy(
        dir.join(lib_name("sluice_example_plugin")),
        dir.join(lib_name("zz_copy_of_example")),
    )
    .unwrap();
    rustc_cdylib(
        &dir,
        "wrong_abi",
        "#[no_mangle] pub extern \"C\" fn sluice_plugin_abi_version() -> u32 { 999 }",
    );
    rustc_cdylib(
        &dir,
        "no_symbols",
        "#[no_mangle] pub extern \"C\" fn something_else() -> u32 { 1 }",
    );
    std::fs::write(dir.join(lib_name("not_a_library")), "just text").unwrap();
    std::fs::write(dir.join("README.txt"), "not a library name: ignored").unwrap();

    let out = Command::new(binary())
        .args(["plugins", "list", "--plugin-path"])
        .arg(&dir)
        .env_remove("SLUICE_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "sluice-example-plugin 0.1.0",
        "source `sequence`",
        "sink `jsonl`",
        "count: an integer from 0",
        "file: a string (required)",
        "wrong_abi",
        "built for plugin ABI version 999, this Sluice speaks version 1",
        "does not export `sluice_plugin_abi_version`",
        "not a loadable library",
        "zz_copy_of_example",
        "is already provided by plugin sluice-example-plugin 0.1.0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(text.matches("NOT LOADED").count(), 4, "{text}");
    assert!(!text.contains("README"), "{text}");
}

#[test]
fn a_pipeline_runs_through_plugin_connectors_and_resumes_from_committed_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = plugin_dir(root, &["sluice_example_plugin"]);
    let yaml = |count: &str| {
        format!(
            r#"
runtime: {{ data_dir: {r}/data }}
plugin_path: [{dir}]
sources:
  numbers:
    type: sequence          # from the plugin
    topic: numbers
    count: {count}
    message: hi
    value_format: json
    transforms:
      - {{ type: insert_field, static_field: origin, static_value: plugin }}
sinks:
  plugin_out:
    type: jsonl             # from the plugin
    topics: [numbers]
    file: {r}/out.jsonl
  builtin_out:
    type: file              # built in, reading the same topic
    topics: [numbers]
    path: {r}/files
    roll_interval: 200ms
"#,
            r = root.display(),
            dir = dir.display()
        )
    };
    let file = root.join("p.yaml");

    // The plugin's own settings are validated like a built-in's, with line and column.
    std::fs::write(&file, yaml("-3")).unwrap();
    let out = Command::new(binary())
        .arg("validate")
        .arg(&file)
        .env_remove("SLUICE_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":8:") && stderr.contains("`count`") && stderr.contains("sequence"),
        "{stderr}"
    );

    std::fs::write(&file, yaml("500")).unwrap();
    let log = root.join("run.log");
    let run = start_logged(&file, &log, None);
    wait_until(
        "500 lines from the plugin sink",
        Duration::from_secs(60),
        || lines(&root.join("out.jsonl")).len() >= 500,
    );
    stop(run);
    let got = lines(&root.join("out.jsonl"));
    assert_eq!(got.len(), 500);
    for (i, line) in got.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["n"], i as u64, "in order, none missing");
        assert_eq!(v["origin"], "plugin", "the source's transform ran");
    }
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("plugin sluice-example-plugin 0.1.0"),
        "{stderr}"
    );

    // Restarted: the source resumes after its committed position, the sink after its
    // committed offset; nothing is produced or written again.
    let run = start_logged(&file, &log, None);
    std::thread::sleep(Duration::from_secs(2));
    stop(run);
    assert_eq!(consume_topic(root, "numbers").len(), 500);
    assert_eq!(lines(&root.join("out.jsonl")).len(), 500);
}

#[test]
fn a_panicking_plugin_task_is_restarted_then_fails_alone_and_one_that_recovers_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = plugin_dir(
        root,
        &["sluice_example_plugin", "sluice_test_plugin_panicky"],
    );
    let yaml = format!(
        r#"
runtime: {{ data_dir: {r}/data }}
sources:
  fragile:
    type: panicky
    topic: fragile
    good_polls: 2
    restart: {{ max_attempts: 2, initial_backoff: 50ms, max_backoff: 100ms }}
  recovering:
    type: panicky
    topic: recovering
    good_polls: 2
    panicking_tasks: 2
    restart: {{ max_attempts: 5, initial_backoff: 50ms, max_backoff: 100ms }}
  numbers:
    type: sequence
    topic: numbers
    count: 300
sinks:
  plugin_out:
    type: jsonl
    topics: [numbers]
    file: {r}/out.jsonl
"#,
        r = root.display()
    );
    let file = root.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let log = root.join("run.log");
    // The folder comes from the environment this time.
    let mut run = start_logged(&file, &log, Some(&dir));
    wait_until(
        "the failure to be reported",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("FAILED")
        },
    );
    wait_until(
        "the other pipeline to finish",
        Duration::from_secs(60),
        || lines(&root.join("out.jsonl")).len() >= 300,
    );
    wait_until(
        "the recovering task's records",
        Duration::from_secs(30),
        || consume_topic(root, "recovering").len() >= 6,
    );
    assert!(
        run.0.try_wait().unwrap().is_none(),
        "sluice run is still running after the panics"
    );
    // The REST API tells the same story, and restarts the failed task by hand.
    let url = support::rest_url(&log.with_extension("out"));
    let (code, status) = support::curl("GET", &format!("{url}/connectors/fragile/status"));
    assert_eq!(code, 200);
    assert_eq!(status["tasks"][0]["state"], "FAILED", "{status}");
    assert!(
        status["tasks"][0]["trace"]
            .as_str()
            .is_some_and(|t| t.contains("deliberate panic in poll")),
        "{status}"
    );
    assert_eq!(status["connector"]["state"], "RUNNING", "{status}");
    let (_, status) = support::curl("GET", &format!("{url}/connectors/recovering/status"));
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert!(status["tasks"][0].get("trace").is_none(), "{status}");
    let (code, body) = support::curl(
        "POST",
        &format!("{url}/connectors/fragile/restart?includeTasks=true&onlyFailed=true"),
    );
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["tasks"][0]["state"], "RESTARTING", "{body}");
    wait_until(
        "the restarted task's records and its failing again",
        Duration::from_secs(30),
        || consume_topic(root, "fragile").len() >= 12,
    );
    wait_until("the task to fail again", Duration::from_secs(30), || {
        support::curl("GET", &format!("{url}/connectors/fragile/status")).1["tasks"][0]["state"]
            == "FAILED"
    });
    stop(run);
    let stderr = std::fs::read_to_string(&log).unwrap();
    let of = |task: &str, what: &str| {
        stderr
            .lines()
            .filter(|l| l.contains(&format!("task {task} ")) && l.contains(what))
            .count()
    };
    assert_eq!(of("fragile/0", "restarting in"), 4, "{stderr}");
    assert_eq!(of("fragile/0", "FAILED"), 2, "{stderr}");
    assert!(
        stderr.contains("connector fragile task fragile/0 FAILED")
            && stderr.contains("the plugin panicked: deliberate panic in poll"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(attempt 2 of 2)"),
        "each restart is counted: {stderr}"
    );
    assert_eq!(of("recovering/0", "restarting in"), 2, "{stderr}");
    assert_eq!(of("recovering/0", "FAILED"), 0, "{stderr}");
    assert_eq!(
        consume_topic(root, "fragile").len(),
        12,
        "what each run produced before its panic is kept: 3 runs, then 3 more after the restart by hand"
    );
    assert_eq!(
        consume_topic(root, "recovering").len(),
        6,
        "the third task does not panic and keeps running"
    );
}

/// The `n` of a `sequence` record.
fn number(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["n"].as_u64().unwrap()
}

#[test]
fn sigkill_with_plugin_connectors_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = plugin_dir(root, &["sluice_example_plugin"]);
    let total = 1_000_000u64;
    let yaml = format!(
        r#"
runtime: {{ data_dir: {r}/data }}
plugin_path: [{dir}]
sources:
  numbers: {{ type: sequence, topic: numbers, count: {total} }}
sinks:
  files: {{ type: file, topics: [numbers], path: {r}/out, roll_interval: 200ms, roll_bytes: 4000000 }}
"#,
        r = root.display(),
        dir = dir.display()
    );
    let file = root.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let log = root.join("run.log");
    let mut stored_after_kill = Vec::new();
    for round in 0..4u64 {
        let mut run = start_logged(&file, &log, None);
        std::thread::sleep(Duration::from_millis(150 + round * 100));
        run.0.kill().unwrap(); // SIGKILL
        run.0.wait().unwrap();
        stored_after_kill.push(consume_topic(root, "numbers").len() as u64);
    }
    assert!(
        stored_after_kill[0] < total,
        "the first kill came in the middle of the transfer: {stored_after_kill:?}"
    );
    let run = start_logged(&file, &log, None);
    let out = root.join("out");
    let read_output = || -> Vec<u64> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        names.sort();
        names
            .iter()
            .flat_map(|p| lines(p))
            .map(|l| number(&l))
            .collect()
    };
    wait_until(
        "every number in the output",
        Duration::from_secs(90),
        || {
            let got = read_output();
            let distinct: std::collections::HashSet<u64> = got.iter().copied().collect();
            distinct.len() as u64 >= total
        },
    );
    stop(run);
    let got = read_output();
    let distinct: std::collections::HashSet<u64> = got.iter().copied().collect();
    assert_eq!(distinct.len() as u64, total, "none missing");
    assert!(distinct.iter().all(|n| *n < total));
    // Exactly once with respect to the topic: the output is the topic, record for record.
    let topic: Vec<u64> = consume_topic(root, "numbers")
        .iter()
        .map(|l| number(l))
        .collect();
    assert_eq!(
        got, topic,
        "the sink wrote every topic record once, in order"
    );
}

#[test]
fn bad_records_from_and_to_plugins_meet_the_error_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = plugin_dir(root, &["sluice_test_plugin_panicky"]);
    std::fs::create_dir_all(root.join("in")).unwrap();
    let yaml = format!(
        r#"
runtime: {{ data_dir: {r}/data }}
plugin_path: [{dir}]
sources:
  mixed_in:                 # a plugin source whose every third record is unreadable
    type: mixed
    topic: mixed
    count: 30
    errors: {{ tolerance: all, dead_letter_topic: mixed-dlq }}
  words_in:
    type: file
    path: {r}/in/*.txt
    topic: words
    poll_interval: 50ms
sinks:
  picky_out:                # a plugin sink that refuses values containing "bad"
    type: picky
    topics: [words]
    file: {r}/picky.out
    errors: {{ tolerance: all, dead_letter_topic: words-dlq }}
"#,
        r = root.display(),
        dir = dir.display()
    );
    let file = root.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let words: Vec<String> = (0..40)
        .map(|i| {
            if i % 7 == 3 {
                format!("bad {i}")
            } else {
                format!("good {i}")
            }
        })
        .collect();
    std::fs::write(root.join("in/w.txt"), words.join("\n") + "\n").unwrap();
    let log = root.join("run.log");
    let run = start_logged(&file, &log, None);
    let good: Vec<String> = words
        .iter()
        .filter(|w| !w.contains("bad"))
        .cloned()
        .collect();
    wait_until("the picky sink's output", Duration::from_secs(30), || {
        lines(&root.join("picky.out")).len() >= good.len()
    });
    wait_until("the source's records", Duration::from_secs(30), || {
        consume_topic(root, "mixed").len() >= 20
    });
    std::thread::sleep(Duration::from_millis(500));
    stop(run);
    assert_eq!(
        lines(&root.join("picky.out")),
        good,
        "every good record, once, in order"
    );
    let refused: Vec<String> = words
        .iter()
        .filter(|w| w.contains("bad"))
        .cloned()
        .collect();
    assert_eq!(
        consume_topic(root, "words-dlq"),
        refused,
        "only the bad ones"
    );
    assert_eq!(consume_topic(root, "mixed").len(), 20);
    let dlq = consume_topic(root, "mixed-dlq");
    assert_eq!(dlq.len(), 10, "{dlq:?}");
    assert!(dlq.iter().all(|v| v.starts_with("not json")), "{dlq:?}");
}
