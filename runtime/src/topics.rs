//! `sluice topics create|list|describe|delete`.

use std::path::Path;

use anyhow::{Context, Result};
use sluice_log::{Log, LogOptions, TopicConfig};

use crate::cli::CreateArgs;

/// A writable open for admin commands: no background maintenance in a short-lived process.
pub fn open_writable(data_dir: &Path) -> Result<Log> {
    Log::open(
        data_dir,
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        },
    )
    .with_context(|| format!("opening data directory {}", data_dir.display()))
}

/// A read-only open that fails clearly when there is no data directory yet.
pub fn open_read_only(data_dir: &Path) -> Result<Log> {
    Log::open(
        data_dir,
        LogOptions {
            read_only: true,
            maintenance_interval: None,
        },
    )
    .with_context(|| format!("opening data directory {}", data_dir.display()))
}

pub fn create(data_dir: &Path, args: CreateArgs) -> Result<()> {
    let config = TopicConfig::from_assignments(&args.configs)?;
    let log = open_writable(data_dir)?;
    log.create_topic(&args.name, args.partitions, config)?;
    log.close()?;
    println!("Created topic {}.", args.name);
    Ok(())
}

pub fn list(data_dir: &Path) -> Result<()> {
    if !data_dir.exists() {
        return Ok(());
    }
    let log = open_read_only(data_dir)?;
    for t in log.topics() {
        println!("{}", t.name);
    }
    Ok(())
}

pub fn describe(data_dir: &Path, name: &str) -> Result<()> {
    let log = open_read_only(data_dir)?;
    let t = log.topic(name)?;
    println!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tInternal: {}",
        t.name,
        t.id_hex(),
        t.partitions.len(),
        t.is_internal()
    );
    println!("Configs:");
    for (k, v) in t.config.entries() {
        let source = if t.config.is_override(&k) {
            ""
        } else {
            " (default)"
        };
        println!("\t{k}={v}{source}");
    }
    for p in &t.partitions {
        let s = p.stats();
        println!(
            "\tPartition: {}\tLogStartOffset: {}\tEndOffset: {}\tSegments: {}\tSizeBytes: {}",
            p.id(),
            s.log_start_offset,
            s.end_offset,
            s.segments,
            s.size_bytes
        );
    }
    Ok(())
}

pub fn delete(data_dir: &Path, name: &str) -> Result<()> {
    let log = open_writable(data_dir)?;
    log.delete_topic(name)?;
    log.close()?;
    Ok(())
}
