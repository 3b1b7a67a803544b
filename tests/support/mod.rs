#![allow(dead_code)]
//! Helpers for end-to-end tests: run the real `sluice` binary on a temporary data directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary data directory, removed when dropped.
pub struct TempData(tempfile::TempDir);

impl TempData {
    pub fn new() -> Self {
        TempData(tempfile::tempdir().expect("temp dir"))
    }
    pub fn path(&self) -> PathBuf {
        self.0.path().join("data")
    }
}

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice"))
}

/// `sluice --data-dir <tmp>`, with quiet logs.
pub fn sluice(data: &TempData) -> Command {
    let mut c = Command::new(binary());
    c.arg("--data-dir").arg(data.path()).env("RUST_LOG", "warn");
    c
}

/// Runs to completion, asserts success, returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run sluice");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn run_with_input(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    out
}

/// Kills the child (SIGKILL) if the test ends early, so no process outlives it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the child to exit and returns its stdout; fails the test after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> String {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "child failed: {status}");
            return reader.join().expect("reader");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// `sluice run` helpers.

pub fn start(file: &Path) -> KillOnDrop {
    let child: Child = Command::new(binary())
        .args(["run"])
        .arg(file)
        .args(["--rest-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

pub fn stop(mut p: KillOnDrop) {
    sigint(p.0.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        p.0.try_wait().unwrap().is_some(),
        "sluice run did not stop on SIGINT"
    );
}

pub fn sigint(pid: u32) {
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
}

pub fn consume_topic(dir: &Path, topic: &str) -> Vec<String> {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["consume", topic, "--from-beginning", "--exit-at-end"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

// The REST API, through curl (a client users have).

/// Waits for `sluice run`'s "rest api on http://…" line in the file its stdout goes to.
pub fn rest_url(stdout_file: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(stdout_file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("rest api on ")) {
            let url = line["rest api on ".len()..].split_whitespace().next();
            return url.expect("an address after `rest api on`").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no `rest api on` line in {stdout_file:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl -X METHOD URL`: the status code and the body as JSON (`Null` when empty).
pub fn curl(method: &str, url: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    let code: u16 = code.trim().parse().expect("an HTTP status");
    let body = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {body}"))
    };
    (code, body)
}
