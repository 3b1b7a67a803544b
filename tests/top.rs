//! `sluice top` against a real `sluice run` whose pipeline is busy: `--once` prints the
//! connectors with their rates, and the live view, driven in tmux (send-keys,
//! capture-pane), filters, pauses and resumes the selected connector and quits.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{binary, curl, rest_url, stop, KillOnDrop};

/// A tmux server of our own (its own socket), killed at the end.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "top"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    shown: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the screen:\n{}",
            shown()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The row of `name` on a screen or in a table.
fn row<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|l| {
        l.trim_start_matches("> ")
            .trim_start()
            .starts_with(&format!("{name} "))
    })
}

fn state(url: &str, name: &str) -> String {
    let (_, s) = curl("GET", &format!("{url}/connectors/{name}/status"));
    s["connector"]["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn top_shows_rates_and_steers_connectors_from_the_keyboard() {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`tmux` is missing: install Debian's `tmux` package (scripts/test.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let file = root.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime: {{ data_dir: {r}/data }}\nsources:\n  lines_in: {{ type: file, topic: lines, path: \"{r}/in/*.txt\", poll_interval: 20ms }}\n\
             sinks:\n  lines_out: {{ type: file, topics: [lines], path: {r}/out, roll_interval: 200ms }}\n",
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
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = rest_url(&stdout);
    // Busy all along: a file of 500 lines every 50 ms.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, inbox) = (writing.clone(), root.join("in"));
        std::thread::spawn(move || {
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                let staged = inbox.join(format!(".{n}"));
                let mut f = std::fs::File::create(&staged).unwrap();
                for i in 0..500 {
                    writeln!(f, "line {n} {i}").unwrap();
                }
                drop(f);
                std::fs::rename(&staged, inbox.join(format!("{n:05}.txt"))).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // --once: a table with both connectors, the source moving records.
    let out = Command::new(binary())
        .args(["top", "--once", "--interval", "700", "--url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("CONNECTOR"), "{table}");
    let source = row(&table, "lines_in").unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = source.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["source", "file", "RUNNING"], "{table}");
    let out_per_sec: f64 = cols[6].trim_end_matches('k').parse().unwrap();
    assert!(out_per_sec > 0.0, "the source moves records: {table}");
    assert!(
        row(&table, "lines_out").is_some_and(|r| r.contains("sink") && r.contains("RUNNING")),
        "{table}"
    );

    // The live view in tmux.
    let tmux = Tmux {
        socket: format!("sluice-test-{}", std::process::id()),
    };
    let top = format!("{} top --interval 300 --url {url}", binary().display());
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "30",
            &top,
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let pane = || tmux.pane();
    wait_until(
        "both connectors on screen",
        Duration::from_secs(20),
        || {
            let p = pane();
            row(&p, "lines_in").is_some() && row(&p, "lines_out").is_some()
        },
        pane,
    );
    // Filter to the sink: the source leaves the screen and the sink is selected.
    tmux.keys(&["/", "out", "Enter"]);
    wait_until(
        "the filter",
        Duration::from_secs(10),
        || {
            let p = pane();
            row(&p, "lines_in").is_none() && p.contains("filter: out")
        },
        pane,
    );
    // Pause it with `p`: the API and the screen say PAUSED; resume with `r`.
    tmux.keys(&["p"]);
    wait_until(
        "the sink paused",
        Duration::from_secs(10),
        || state(&url, "lines_out") == "PAUSED",
        pane,
    );
    wait_until(
        "PAUSED on screen",
        Duration::from_secs(10),
        || row(&pane(), "lines_out").is_some_and(|r| r.contains("PAUSED")),
        pane,
    );
    assert!(pane().contains("lines_out: pausing"));
    tmux.keys(&["r"]);
    wait_until(
        "the sink running again",
        Duration::from_secs(10),
        || state(&url, "lines_out") == "RUNNING",
        pane,
    );
    wait_until(
        "RUNNING on screen",
        Duration::from_secs(10),
        || row(&pane(), "lines_out").is_some_and(|r| r.contains("RUNNING")),
        pane,
    );
    assert_eq!(
        state(&url, "lines_in"),
        "RUNNING",
        "only the selected connector was steered"
    );
    tmux.keys(&["q"]);
    wait_until(
        "top to quit on `q`",
        Duration::from_secs(10),
        || !tmux.alive(),
        pane,
    );

    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    stop(run);
}

#[test]
fn tap_follows_a_topic_with_avro_values_decoded_by_their_schema() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let schema = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime: {{ data_dir: {d}/data }}\ntopics: {{ users: {{}} }}\nsources:\n  users_in:\n    type: file\n    topic: users\n\
             \x20   path: {d}/in/*.json\n    poll_interval: 50ms\n    value_format: avro\n    value_schema: '{schema}'\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let run = support::start(&file);
    // The topic exists once the pipeline runs; tap then waits for what comes next.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tap = loop {
        let child = Command::new(binary())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["tap", "users", "--max-messages", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        std::thread::sleep(Duration::from_millis(300));
        if child.0.try_wait().unwrap().is_none() {
            break child; // following
        }
        assert!(
            Instant::now() < deadline,
            "sluice tap never started following"
        );
    };
    std::fs::write(
        dir.join("in/u.json"),
        "{\"id\": 1, \"name\": \"ada\"}\n{\"id\": 2, \"name\": \"bob\"}\n",
    )
    .unwrap();
    let stdout = tap.0.stdout.take().unwrap();
    let lines: Vec<serde_json::Value> = std::io::BufReader::new(stdout)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(
        tap.0.wait().unwrap().success(),
        "tap exits after --max-messages"
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["value"],
        serde_json::json!({"id": 1, "name": "ada"}),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["value"]["name"], "bob");
    assert_eq!(
        (lines[0]["topic"].as_str(), lines[0]["offset"].as_i64()),
        (Some("users"), Some(0))
    );
    assert!(
        lines[0]["value_schema_id"].as_u64().is_some(),
        "{}",
        lines[0]
    );
    assert!(lines[0]["timestamp"].as_i64().unwrap() > 0);
    stop(run);
}
