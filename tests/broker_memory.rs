//! The broker's memory for requests is bounded however clients behave: 300 connections each
//! declaring a 100 MiB frame and sending it slowly (the real binary, on loopback) keep its
//! peak RSS under the request budget, while an ordinary client is still served promptly.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const BUDGET: u64 = 256 * 1024 * 1024;
const DECLARED: u32 = 100 * 1024 * 1024;
const FLOODERS: usize = 300;
const FLOOD_FOR: Duration = Duration::from_secs(12);

fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// ApiVersions v0 on a fresh connection: how long until the answer came back.
fn api_versions_round_trip(port: u16, correlation_id: i32) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let client_id = b"ordinary-client";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut reply = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(
        i32::from_be_bytes(reply[0..4].try_into().unwrap()),
        correlation_id
    );
    started.elapsed()
}

#[test]
fn slow_giant_frames_stay_within_the_request_budget_while_others_are_served() {
    let data = TempData::new();
    let mut broker = KillOnDrop(
        sluice(&data)
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--queued-max-request-bytes",
                &BUDGET.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(broker.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let baseline = peak_rss_bytes(broker.0.id());

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                if s.write_all(&(DECLARED as i32).to_be_bytes()).is_err() {
                    return;
                }
                let chunk = vec![0u8; 1024 * 1024];
                let mut left = DECLARED as usize;
                while left > 0 && !stop.load(Ordering::Acquire) {
                    // A write that times out (the broker is not reading this connection) is
                    // retried; one that fails for good ends this flooder.
                    match s.write(&chunk[..left.min(chunk.len())]) {
                        Ok(n) => {
                            left -= n;
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while started.elapsed() < FLOOD_FOR {
        calls += 1;
        slowest = slowest.max(api_versions_round_trip(port, calls));
        std::thread::sleep(Duration::from_millis(200));
    }
    let peak = peak_rss_bytes(broker.0.id());
    stop.store(true, Ordering::Release);
    for f in flooders {
        let _ = f.join();
    }
    let sent_mib = sent.load(Ordering::Relaxed) / (1024 * 1024);
    // The flood really pushed more than the budget at the broker (into its sockets).
    assert!(
        sent_mib * 1024 * 1024 > BUDGET,
        "the flood sent only {sent_mib} MiB"
    );
    assert!(
        peak < BUDGET,
        "peak RSS {} MiB (baseline {} MiB) exceeds the request budget of {} MiB",
        peak >> 20,
        baseline >> 20,
        BUDGET >> 20
    );
    assert!(
        slowest < Duration::from_secs(2),
        "an ordinary request waited {slowest:?} during the flood ({calls} calls)"
    );
    // Still healthy afterwards.
    api_versions_round_trip(port, 1_000_000);
    eprintln!(
        "flood: {sent_mib} MiB sent by {FLOODERS} connections; broker peak RSS {} MiB (baseline {} MiB, budget {} MiB); slowest ordinary request {slowest:?} of {calls}",
        peak >> 20,
        baseline >> 20,
        BUDGET >> 20
    );
    let _ = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status();
}
