//! `/metrics` of the real binary scraped by a real Prometheus server (Debian's `prometheus`
//! package, started here on loopback): a PromQL query of the records-out counter equals the
//! records delivered, and `promtool check metrics` accepts the exposition.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{binary, rest_url, stop, KillOnDrop};

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is missing: install Debian's `prometheus` package (scripts/test.sh does)"
    );
}

fn get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-f", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (Prometheus cannot be told to pick one and say which).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lines_delivered(out: &Path) -> usize {
    std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn prometheus_scrapes_the_records_delivered_and_promtool_accepts_the_exposition() {
    need("prometheus");
    need("promtool");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let file = root.join("shop.yaml");
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
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = rest_url(&stdout);
    let target = url.trim_start_matches("http://").to_string();
    std::fs::write(
        root.join("in/a.txt"),
        (0..777).map(|i| format!("line-{i}\n")).collect::<String>(),
    )
    .unwrap();
    wait_until("the lines to be delivered", Duration::from_secs(30), || {
        lines_delivered(&root.join("out")) == 777
    });

    // promtool reads the exposition as Prometheus does.
    let exposition = get(&format!("{url}/metrics"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let port = free_port();
    std::fs::write(
        root.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: sluice\n    static_configs: [{{ targets: ['{target}'] }}]\n"
        ),
    )
    .unwrap();
    let prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                root.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args([
                "-s",
                "-G",
                &format!("http://127.0.0.1:{port}/api/v1/query"),
                "--data-urlencode",
            ])
            .arg(format!("query={q}"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let value = |v: &serde_json::Value| -> Option<f64> {
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let delivered =
        r#"sluice_task_records_out_total{job="sluice",pipeline="shop",connector="lines_out"}"#;
    wait_until(
        "Prometheus to scrape the records out",
        Duration::from_secs(60),
        || value(&query(delivered)) == Some(777.0),
    );
    let appended = value(&query(
        r#"sum(sluice_task_records_out_total{connector="lines_in"})"#,
    ));
    assert_eq!(appended, Some(777.0));
    let running = value(&query(
        r#"sluice_task_state{connector="lines_out",state="RUNNING"}"#,
    ));
    assert_eq!(running, Some(1.0));
    let end = value(&query(
        r#"sluice_log_end_offset{topic="lines",partition="0"}"#,
    ));
    assert_eq!(end, Some(777.0));
    drop(prometheus);
    stop(run);
}
