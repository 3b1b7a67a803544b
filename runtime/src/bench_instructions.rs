//! `sluice bench pipeline --instructions`: what a record costs in instructions, which do
//! not move with the machine the way wall-clock figures do. Each run (bytes, json, avro, envelope, csv) is
//! this binary's `bench pipeline --once` under `valgrind --tool=callgrind`, at two input
//! sizes; the difference divided by the difference in records is the cost of one record
//! with start-up left out (the totals, start-up included, are printed beside it).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cli::PipelineBenchArgs;

/// Instructions callgrind counted for one `--once` run of `format` over `records` lines.
fn count(
    args: &PipelineBenchArgs,
    format: &str,
    records: usize,
    input: &std::path::Path,
) -> Result<u64> {
    let me = std::env::current_exe().context("finding this binary")?;
    let out = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--dump-instr=no",
        ])
        .arg(&me)
        .args(["bench", "pipeline", "--once", "--runs", format, "--records"])
        .arg(records.to_string())
        .arg("--input")
        .arg(input)
        .arg("--dir")
        .arg(&args.dir)
        .env("RUST_LOG", "error")
        .output()
        .context("running valgrind (install Debian's `valgrind` package)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("the {format} run under callgrind failed:\n{stderr}");
    }
    // "==1234== Collected : 123456789"
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no instruction count in callgrind's output:\n{stderr}"))
}

pub fn run(args: &PipelineBenchArgs) -> Result<()> {
    let large = args.records.clamp(2_000, 100_000);
    let small = large / 4;
    let work = tempfile::Builder::new()
        .prefix(".sluice-bench-instructions-")
        .tempdir_in(&args.dir)?;
    let (small_input, large_input) = (
        work.path().join("small.jsonl"),
        work.path().join("large.jsonl"),
    );
    crate::bench_pipeline::write_input(&small_input, small)?;
    crate::bench_pipeline::write_input(&large_input, large)?;
    println!(
        "sluice bench pipeline --instructions: callgrind, runs of {small} and {large} JSON lines of ~200 B, file -> topic -> file"
    );
    println!(
        "{:<40} {:>16} {:>22}",
        "", "instructions/record", "total/record (start-up in)"
    );
    for (format, label) in crate::bench_pipeline::chosen_runs(&args.runs)? {
        let a = count(args, format, small, &small_input)?;
        let b = count(args, format, large, &large_input)?;
        let per_record = b.saturating_sub(a) as f64 / (large - small) as f64;
        println!(
            "{label:<40} {per_record:>16.0} {:>22.0}",
            b as f64 / large as f64
        );
    }
    Ok(())
}
