//! Listeners never open up by accident: the real binary, every command that opens one.
//!
//! Nothing here binds anything but loopback: a refused listener is refused before it binds,
//! and the one that opens in these tests is on 127.0.0.1.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn pipeline_file(dir: &std::path::Path, runtime: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let input = dir.join("in");
    let output = dir.join("out");
    std::fs::create_dir_all(&input).unwrap();
    let text = format!(
        "runtime:\n  data_dir: {}\n{runtime}\nsources:\n  lines_in: {{ type: file, topic: lines, path: {}/*.txt }}\nsinks:\n  lines_out: {{ type: file, topics: [lines], path: {} }}\n",
        data.display(),
        input.display(),
        output.display()
    );
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

fn run_and_fail(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run sluice");
    assert!(!out.status.success(), "{cmd:?} should have been refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sluice_run_refuses_an_open_registry_and_an_unauthenticated_kafka_listener() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline_file(
        dir.path(),
        "  registry: { listen: 0.0.0.0:18081 }\n  broker: { listen: 0.0.0.0:19092 }",
    );
    for command in ["run", "validate"] {
        let err = run_and_fail(Command::new(binary()).arg(command).arg(&file));
        assert!(
            err.contains(
                "3:23: refusing to open the schema registry on 0.0.0.0:18081 without authentication"
            ),
            "{command}: {err}"
        );
        assert!(err.contains("configure `auth`"), "{command}: {err}");
        assert!(
            err.contains("4:21: refusing to open the Kafka listener on 0.0.0.0:19092"),
            "{command}: {err}"
        );
        assert!(err.contains("unauthenticated: true"), "{command}: {err}");
        assert!(err.contains("4:21: the Kafka listener would listen on the wildcard address"));
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing was started, not even the data directory"
    );
}

#[test]
fn sluice_broker_and_sluice_registry_refuse_before_touching_the_data_directory() {
    let data = TempData::new();
    let err = run_and_fail(sluice(&data).args(["broker", "--listen", "0.0.0.0:0"]));
    assert!(
        err.contains("refusing to open the Kafka listener on 0.0.0.0:0 without authentication")
            && err.contains("--allow-unauthenticated"),
        "{err}"
    );
    // Opting in is not enough on a wildcard: clients need an address to connect to.
    let err = run_and_fail(sluice(&data).args([
        "broker",
        "--listen",
        "0.0.0.0:0",
        "--allow-unauthenticated",
    ]));
    assert!(
        err.contains("wildcard address 0.0.0.0:0") && err.contains("--advertised-listener"),
        "{err}"
    );
    let err = run_and_fail(sluice(&data).args([
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--advertised-listener",
        "nohost",
    ]));
    assert!(
        err.contains("advertised listener `nohost` must be HOST:PORT"),
        "{err}"
    );
    let err = run_and_fail(sluice(&data).args(["registry", "--listen", "0.0.0.0:0"]));
    assert!(
        err.contains("refusing to open the schema registry on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    let err = run_and_fail(sluice(&data).args([
        "broker",
        "--max-request-bytes",
        "104857600",
        "--queued-max-request-bytes",
        "67108864",
    ]));
    assert!(
        err.contains("does not fit the request memory budget"),
        "{err}"
    );
    assert!(!data.path().exists(), "the data directory was not created");
}

/// One HTTP/1.1 request on a fresh connection; returns the status code and the body.
fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn the_registry_of_sluice_run_takes_credentials_from_the_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline_file(
        dir.path(),
        "  registry:\n    listen: 127.0.0.1:0\n    auth: { basic: [{ username: ops, password: \"${env:REGISTRY_PASSWORD}\" }] }",
    );
    let mut child = KillOnDrop(
        Command::new(binary())
            .arg("run")
            .arg(&file)
            .args(["--rest-listen", "127.0.0.1:0"])
            .env("REGISTRY_PASSWORD", "s3cret-pw")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut port = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        assert!(
            !line.contains("s3cret-pw"),
            "a password was printed: {line}"
        );
        if let Some(rest) = line.strip_prefix("schema registry on http://127.0.0.1:") {
            assert!(line.ends_with("(auth: on)"), "{line}");
            port = rest.split_whitespace().next().and_then(|p| p.parse().ok());
            break;
        }
    }
    let port: u16 = port.expect("the registry's address on stdout");
    let (status, body) = http(port, "PUT", "/mode", None, r#"{"mode":"IMPORT"}"#);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("40101"), "{body}");
    // ops:s3cret-pw
    let basic = "Basic b3BzOnMzY3JldC1wdw==";
    let (status, body) = http(port, "GET", "/mode", Some(basic), "");
    assert_eq!((status, body.as_str()), (200, r#"{"mode":"READWRITE"}"#));
    let (status, _) = http(port, "GET", "/mode", Some("Basic b3BzOndyb25n"), "");
    assert_eq!(status, 401, "a wrong password is refused");
    stop(child);
}
