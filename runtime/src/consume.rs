//! `sluice consume TOPIC`: prints records, one per line, optionally following new ones.
//!
//! Opens the data directory read-only, so it runs beside a producer; while following it looks
//! for new data every 100 ms.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_log::LogError;

use crate::cli::ConsumeArgs;
use crate::topics::open_read_only;

const FETCH_BYTES: usize = 1 << 20;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub fn run(data_dir: &Path, args: ConsumeArgs) -> Result<()> {
    match consume(data_dir, &args) {
        // `sluice consume ... | head` is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .map(|e| e.kind() == ErrorKind::BrokenPipe)
                .unwrap_or(false) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Where and how far to read.
pub struct Follow<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub from_beginning: bool,
    pub exit_at_end: bool,
}

/// Calls `each` with every record of `what.topic` in order per partition, following new ones
/// unless `exit_at_end`; `each` returns `false` to stop. `stdout` is flushed whenever the
/// reader has caught up.
pub fn follow(
    data_dir: &Path,
    what: &Follow<'_>,
    out: &mut dyn Write,
    mut each: impl FnMut(
        &sluice_log::Log,
        i32,
        &sluice_worker::convert::ReadRecord,
        &mut dyn Write,
    ) -> Result<bool>,
) -> Result<()> {
    let log = open_read_only(data_dir)?;
    let topic = log.topic(what.topic)?;
    let parts: Vec<_> = match what.partition {
        Some(p) => vec![log.partition(what.topic, p)?],
        None => topic.partitions.clone(),
    };
    let mut positions = Vec::with_capacity(parts.len());
    for p in &parts {
        let pos = match what.offset {
            Some(o) => {
                if o < p.log_start_offset() || o > p.end_offset() {
                    return Err(LogError::OffsetOutOfRange {
                        topic: what.topic.to_string(),
                        partition: p.id(),
                        offset: o,
                        log_start: p.log_start_offset(),
                        log_end: p.end_offset(),
                    }
                    .into());
                }
                o
            }
            None if what.from_beginning => p.log_start_offset(),
            None => p.end_offset(),
        };
        positions.push(pos);
    }
    loop {
        let mut progressed = false;
        for (p, pos) in parts.iter().zip(positions.iter_mut()) {
            if *pos >= p.end_offset() {
                continue;
            }
            let read = match p.read(*pos, FETCH_BYTES) {
                Ok(r) => r,
                Err(LogError::OffsetOutOfRange { log_start, .. }) if *pos < log_start => {
                    tracing::warn!(
                        partition = p.id(),
                        from = *pos,
                        to = log_start,
                        "records were deleted by retention; skipping ahead"
                    );
                    *pos = log_start;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let read_buffer = sluice_connector_sdk::Bytes::from(read.records);
            let records = sluice_worker::convert::decode_batches(&read_buffer)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("decoding {}-{} at offset {}", what.topic, p.id(), pos))?;
            if let Some(last) = sluice_log::batch::split_verified(&read_buffer)
                .ok()
                .and_then(|b| b.last().map(|(_, h)| h.last_offset()))
            {
                for r in records.iter().filter(|r| r.offset >= *pos) {
                    if !each(&log, p.id() as i32, r, out)? {
                        out.flush()?;
                        return Ok(());
                    }
                }
                *pos = last + 1;
                progressed = true;
            } else {
                // The rest of the log was compacted away: nothing more below the end offset.
                *pos = p.end_offset();
            }
        }
        if !progressed {
            out.flush()?;
            if what.exit_at_end {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
            log.refresh()?;
        }
    }
}

fn consume(data_dir: &Path, args: &ConsumeArgs) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let what = Follow {
        topic: &args.topic,
        partition: args.partition,
        offset: args.offset,
        from_beginning: args.from_beginning,
        exit_at_end: args.exit_at_end,
    };
    follow(data_dir, &what, &mut out, |_, _, r, out| {
        if args.print_headers {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| {
                    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    (
                        text(k),
                        v.as_deref()
                            .map_or(serde_json::Value::Null, |v| text(v).into()),
                    )
                })
                .collect();
            serde_json::to_writer(&mut *out, &headers)?;
            out.write_all(args.key_separator.as_bytes())?;
        }
        if args.print_key {
            match &r.key {
                Some(k) => out.write_all(k)?,
                None => out.write_all(b"null")?,
            }
            out.write_all(args.key_separator.as_bytes())?;
        }
        match &r.value {
            Some(v) => out.write_all(v)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b"\n")?;
        printed += 1;
        Ok(args.max_messages != Some(printed))
    })
}
