//! `sluice bench registry`: what registering costs (with and without fsync), and look-up
//! throughput and latency of the HTTP API under load from `wrk` on loopback.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sluice_log::{Log, LogOptions};
use sluice_schema_registry::api::router;
use sluice_schema_registry::registry::{Registry, SchemaRequest};
use sluice_schema_registry::store::LogStore;

use crate::cli::RegistryBenchArgs;

/// Version `v` of subject `s`: each version adds an optional field, a compatible evolution.
fn schema(s: usize, v: usize) -> String {
    let mut fields = vec![r#"{"name":"id","type":"long"}"#.to_string()];
    for i in 1..v {
        fields.push(format!(
            r#"{{"name":"f{i}","type":["null","string"],"default":null}}"#
        ));
    }
    format!(
        r#"{{"type":"record","name":"Rec{s}","namespace":"bench","fields":[{}]}}"#,
        fields.join(",")
    )
}

/// Registers every version; returns the mean time per registration in ms.
fn register_all(
    args: &RegistryBenchArgs,
    dir: &std::path::Path,
    durable: bool,
) -> Result<(f64, Arc<Registry>, Log)> {
    let log = Log::open(
        dir,
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )?;
    let registry = Arc::new(Registry::open(Arc::new(LogStore::open_with(
        &log, durable,
    )?))?);
    let start = Instant::now();
    for v in 1..=args.versions {
        for s in 0..args.subjects {
            let req = SchemaRequest {
                schema: schema(s, v),
                ..Default::default()
            };
            registry.register(&format!("subject-{s}-value"), &req)?;
        }
    }
    let per = start.elapsed().as_secs_f64() * 1000.0 / (args.subjects * args.versions) as f64;
    Ok((per, registry, log))
}

pub(crate) struct WrkResult {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn parse_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        return v.parse::<f64>().ok().map(|v| v / 1000.0);
    }
    if let Some(v) = s.strip_suffix("ms") {
        return v.parse().ok();
    }
    s.strip_suffix('s')
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v * 1000.0)
}

fn wrk(url: &str, script: &std::path::Path, args: &RegistryBenchArgs) -> Result<WrkResult> {
    wrk_with(url, script, args.connections, args.seconds)
}

/// `wrk -t1 -c<connections> -d<seconds>s --latency -s <script> <url>`, parsed; an error when
/// wrk fails or sees a non-2xx answer.
pub(crate) fn wrk_with(
    url: &str,
    script: &std::path::Path,
    connections: u32,
    seconds: u64,
) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk failed or saw errors:\n{text}");
    }
    let line_value = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
    };
    Ok(WrkResult {
        requests_per_sec: line_value("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: line_value("50%")
            .and_then(|v| parse_ms(&v))
            .unwrap_or(f64::NAN),
        p99_ms: line_value("99%")
            .and_then(|v| parse_ms(&v))
            .unwrap_or(f64::NAN),
    })
}

pub fn run(args: RegistryBenchArgs) -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!(
            "sluice bench registry loads the API with wrk: install it first (apt-get install wrk)"
        );
    }
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-registry-")
        .tempdir_in(&args.dir)?;
    let total = args.subjects * args.versions;
    println!("sluice bench registry: {total} versions across {} subjects, then wrk -t1 -c{} for {} s per look-up", args.subjects, args.connections, args.seconds);
    let (no_fsync, _, _) = register_all(&args, &work.path().join("no-fsync"), false)?;
    let (with_fsync, registry, log) = register_all(&args, &work.path().join("fsync"), true)?;
    println!("register, mean per version:  {no_fsync:.3} ms without fsync, {with_fsync:.3} ms with an fsync per version");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = router(registry);
    runtime.spawn(async move { axum::serve(listener, app).await });

    let ids_script = work.path().join("ids.lua");
    let mut f = std::fs::File::create(&ids_script)?;
    writeln!(f, "math.randomseed(42)\nrequest = function()\n  return wrk.format(\"GET\", \"/schemas/ids/\" .. math.random(1, {total}))\nend")?;
    let lookup_script = work.path().join("lookup.lua");
    let mut f = std::fs::File::create(&lookup_script)?;
    let body = serde_json::json!({"schema": schema(7, 5)})
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    writeln!(
        f,
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/vnd.schemaregistry.v1+json\"\nwrk.body = \"{body}\"\nrequest = function()\n  return wrk.format(nil, \"/subjects/subject-7-value\")\nend"
    )?;
    let by_id = wrk(&base, &ids_script, &args)?;
    let lookup = wrk(&base, &lookup_script, &args)?;
    println!(
        "{:<36} {:>12} {:>9} {:>9}",
        "", "requests/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<36} {:>12.0} {:>9.3} {:>9.3}",
        "GET /schemas/ids/{id}", by_id.requests_per_sec, by_id.p50_ms, by_id.p99_ms
    );
    println!(
        "{:<36} {:>12.0} {:>9.3} {:>9.3}",
        "POST /subjects/{s} (look-up)", lookup.requests_per_sec, lookup.p50_ms, lookup.p99_ms
    );
    drop(runtime);
    log.close()?;
    Ok(())
}
