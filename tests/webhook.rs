//! The `http_server` webhook source of the real binary, called over plain sockets: a 2xx
//! only for calls whose records are in the log (checked across `kill -9`), bad calls
//! refused with 401, 413, 400, 404 and 405 writing nothing, a flood past `rate_limit`
//! answered 429 with `Retry-After` at once, and with the log's appends held up (the
//! `SLUICE_TEST_HOLD_APPENDS` hook) every caller answered 503 within a second while the
//! process's memory stays flat.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::{binary, KillOnDrop, TempData};

const SECRET: &str = "it's a secret to everybody";

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One HTTP/1.1 call on a fresh connection.
fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: application/json\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no answer: {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn signed(id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("X-Hub-Signature-256", signature(body)),
        ("X-Request-Id", id.to_string()),
        ("X-GitHub-Event", "push".to_string()),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_pipeline(file: &Path, log: &Path, hold: Option<&Path>) -> KillOnDrop {
    let mut c = Command::new(binary());
    c.arg("run")
        .arg(file)
        .args(["--rest-listen", "127.0.0.1:0", "--no-watch"])
        .env("RUST_LOG", "warn")
        .env("HOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(h) = hold {
        c.env("SLUICE_TEST_HOLD_APPENDS", h);
    }
    KillOnDrop(c.spawn().unwrap())
}

/// Waits until the listener on `port` answers anything.
fn wait_listening(port: u16, run: &mut KillOnDrop, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(port, "POST", "/", &[], b"").is_err() {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "sluice run exited: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(headers, key, value)` of each record of `topic`.
fn records(data: &TempData, topic: &str) -> Vec<(Value, String, Value)> {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "consume",
            topic,
            "--from-beginning",
            "--exit-at-end",
            "--print-headers",
            "--print-key",
        ])
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
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let h = serde_json::from_str(parts.next().unwrap()).unwrap();
            let k = parts.next().unwrap().to_string();
            let v = serde_json::from_str(parts.next().unwrap()).unwrap();
            (h, k, v)
        })
        .collect()
}

#[test]
fn only_durable_calls_get_a_2xx_bad_calls_write_nothing_and_kill_9_loses_no_acknowledged_call() {
    let data = TempData::new();
    let root = data.path().parent().unwrap().to_path_buf();
    let port = free_port();
    let file = root.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime: {{ data_dir: {d} }}\ntopics: {{ events: {{}} }}\nsources:\n  github:\n    type: http_server\n    topic: events\n\
             \x20   listen: 127.0.0.1:{port}\n    path: /hooks/{{source}}\n    body: json\n\
             \x20   auth: {{ hmac_sha256: {{ header: X-Hub-Signature-256, secret: \"${{env:HOOK_SECRET}}\" }} }}\n\
             \x20   max_body: 4KiB\n    key_from: header:X-Request-Id\n    record_headers: [path:source, header:X-GitHub-Event]\n",
            d = data.path().display()
        ),
    )
    .unwrap();
    let log = root.join("run.err");
    let mut run = run_pipeline(&file, &log, None);
    wait_listening(port, &mut run, &log);

    // Bad calls: each refused with what was wrong, none writes anything.
    let body = br#"{"action":"opened"}"#;
    let unsigned = call(port, "POST", "/hooks/github", &[], body).unwrap();
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
    assert!(
        unsigned
            .body
            .contains("X-Hub-Signature-256 header is missing"),
        "{}",
        unsigned.body
    );
    let forged = call(port, "POST", "/hooks/github", &signed("x", b"other"), body).unwrap();
    assert_eq!(forged.status, 401);
    assert!(forged.body.contains("does not match"), "{}", forged.body);
    let big = vec![b' '; 5000];
    let too_large = call(port, "POST", "/hooks/github", &signed("x", &big), &big).unwrap();
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    let not_json = b"{\"action\":";
    let bad = call(
        port,
        "POST",
        "/hooks/github",
        &signed("x", not_json),
        not_json,
    )
    .unwrap();
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("the body is not JSON"), "{}", bad.body);
    assert_eq!(
        call(port, "POST", "/elsewhere", &signed("x", body), body)
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        call(port, "GET", "/hooks/github", &[], b"").unwrap().status,
        405
    );
    // A good call: 200 once in the log, with its key and headers.
    let good = call(
        port,
        "POST",
        "/hooks/github",
        &signed("delivery-1", body),
        body,
    )
    .unwrap();
    assert_eq!((good.status, good.body.as_str()), (200, r#"{"records":1}"#));
    let stored = records(&data, "events");
    assert_eq!(stored.len(), 1, "only the good call wrote: {stored:?}");
    assert_eq!(stored[0].1, "delivery-1");
    assert_eq!(stored[0].0["source"], "github");
    assert_eq!(stored[0].0["X-GitHub-Event"], "push");
    assert_eq!(stored[0].2, serde_json::json!({"action": "opened"}));

    // Load from four callers, then kill -9 in the middle of it.
    let answered: Arc<Mutex<Vec<(String, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let going = Arc::new(AtomicBool::new(true));
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let (answered, going) = (answered.clone(), going.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while going.load(Ordering::Relaxed) {
                    let id = format!("c{t}-{i}");
                    let body = format!("{{\"id\":\"{id}\"}}");
                    if let Ok(r) = call(
                        port,
                        "POST",
                        "/hooks/load",
                        &signed(&id, body.as_bytes()),
                        body.as_bytes(),
                    ) {
                        answered.lock().unwrap().push((id, r.status));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| *s == 200)
        .count()
        < 200
    {
        assert!(Instant::now() < deadline, "the callers got too few answers");
        std::thread::sleep(Duration::from_millis(10));
    }
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    going.store(false, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let acknowledged: Vec<&String> = answered
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(id, _)| id)
        .collect();
    assert!(
        answered.iter().all(|(_, s)| *s == 200 || *s == 503),
        "only 200 or 503: {answered:?}"
    );

    // Every call that got its 200 is in the topic; a restart serves again.
    let mut run = run_pipeline(&file, &log, None);
    wait_listening(port, &mut run, &log);
    let stored: std::collections::HashSet<String> = records(&data, "events")
        .into_iter()
        .map(|(_, k, _)| k)
        .collect();
    let lost: Vec<&&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(**id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged calls lost, such as {:?}",
        lost.len(),
        lost.first()
    );
    let again = call(
        port,
        "POST",
        "/hooks/github",
        &signed("delivery-2", body),
        body,
    )
    .unwrap();
    assert_eq!(again.status, 200);
    support::stop(run);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn floods_get_429_past_the_rate_limit_and_503_when_the_log_is_held_up_at_once_with_flat_memory() {
    let data = TempData::new();
    let root = data.path().parent().unwrap().to_path_buf();
    let (limited, held) = (free_port(), free_port());
    let file = root.join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "runtime: {{ data_dir: {d} }}\ntopics: {{ a: {{}}, b: {{}} }}\nsources:\n\
             \x20 limited: {{ type: http_server, topic: a, listen: \"127.0.0.1:{limited}\", rate_limit: {{ requests: 20, per: 60s }} }}\n\
             \x20 held: {{ type: http_server, topic: b, listen: \"127.0.0.1:{held}\", max_pending: 10, ack_timeout: 800ms }}\n",
            d = data.path().display()
        ),
    )
    .unwrap();
    let log = root.join("run.err");
    let hold = root.join("hold-appends");
    let mut run = run_pipeline(&file, &log, Some(&hold));
    wait_listening(held, &mut run, &log);
    wait_listening(limited, &mut run, &log); // one call of the 20

    // Past the rate limit: 429 with Retry-After, at once.
    let mut statuses = BTreeMap::new();
    for i in 0..60 {
        let started = Instant::now();
        let r = call(
            limited,
            "POST",
            "/",
            &[],
            format!("{{\"n\":{i}}}").as_bytes(),
        )
        .unwrap();
        *statuses.entry(r.status).or_insert(0) += 1;
        if r.status == 429 {
            assert!(
                started.elapsed() < Duration::from_millis(250),
                "a 429 took {:?}",
                started.elapsed()
            );
            let wait: u64 = r.headers["retry-after"].parse().unwrap();
            assert!((1..=10).contains(&wait), "Retry-After {wait}");
        }
    }
    // The burst of 20, one of it used to wait for the listener (a token comes back every
    // 3 s: a slow machine may see one more).
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert!((19..=20).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.get(&429).copied(), Some(60 - ok), "{statuses:?}");

    // The log's appends held up: every caller gets 503 within a second, memory stays flat.
    std::fs::write(&hold, b"").unwrap();
    let pid = run.0.id();
    let before = rss_kib(pid);
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let answers = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let flood_until = Instant::now() + Duration::from_secs(3);
    let callers: Vec<_> = (0..8)
        .map(|t| {
            let (slowest, answers) = (slowest.clone(), answers.clone());
            std::thread::spawn(move || {
                let body = format!("{{\"t\":{t},\"pad\":\"{}\"}}", "x".repeat(1000));
                while Instant::now() < flood_until {
                    let started = Instant::now();
                    let r = call(held, "POST", "/", &[], body.as_bytes()).unwrap();
                    let took = started.elapsed();
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                    *answers.lock().unwrap().entry(r.status).or_insert(0) += 1;
                    if r.status == 503 {
                        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    let after = rss_kib(pid);
    let answers = answers.lock().unwrap().clone();
    let slowest = *slowest.lock().unwrap();
    eprintln!(
        "held-up log: answers {answers:?}, slowest {slowest:?}, rss {before} KiB -> {after} KiB"
    );
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        vec![503],
        "only 503 while held: {answers:?}"
    );
    assert!(answers[&503] > 100, "{answers:?}");
    assert!(
        slowest < Duration::from_millis(1000),
        "a caller waited {slowest:?}"
    );
    assert!(
        after < before + 20 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );

    // Released: calls are taken again.
    std::fs::remove_file(&hold).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(held, "POST", "/", &[], b"{\"after\":true}").unwrap();
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the hold: {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    support::stop(run);
}
