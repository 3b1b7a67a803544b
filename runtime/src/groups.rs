//! `sluice groups list|describe`: committed offsets and lag, as `kafka-consumer-groups` shows.

use std::path::Path;

use anyhow::{bail, Result};

use crate::topics::open_read_only;

pub fn list(data_dir: &Path) -> Result<()> {
    if !data_dir.exists() {
        return Ok(());
    }
    for g in open_read_only(data_dir)?.groups() {
        println!("{g}");
    }
    Ok(())
}

pub fn describe(data_dir: &Path, group: &str) -> Result<()> {
    let log = open_read_only(data_dir)?;
    let offsets = log.group_offsets(group);
    if offsets.is_empty() {
        bail!("consumer group `{group}` has no committed offsets");
    }
    println!("GROUP\tTOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tMETADATA");
    for (topic, partition, c) in offsets {
        let end = log
            .partition(&topic, partition as i32)
            .map(|p| p.end_offset())
            .ok();
        let (end_s, lag) = match end {
            Some(e) => (e.to_string(), (e - c.offset).max(0).to_string()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{group}\t{topic}\t{partition}\t{}\t{end_s}\t{lag}\t{}",
            c.offset, c.metadata
        );
    }
    Ok(())
}
