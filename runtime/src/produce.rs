//! `sluice produce TOPIC`: one record per line of standard input.
//!
//! Lines are gathered into batches while more input is already buffered, and a batch is
//! appended as soon as standard input would block, so an interactive producer sees each line
//! stored at once and a piped one gets large batches.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sluice_log::{now_ms, BatchBuilder, Log, Record};

use crate::cli::ProduceArgs;
use crate::topics::open_writable;
use sluice_worker::partitioner::partition_for_key;

/// Upper bound for one batch, below the default `max.message.bytes`.
const TARGET_BATCH_BYTES: usize = 256 * 1024;

struct Producer<'a> {
    log: &'a Log,
    topic: String,
    pending: Vec<BatchBuilder>,
    max_batch: usize,
    print_offsets: bool,
    out: std::io::StdoutLock<'static>,
    produced: u64,
}

impl Producer<'_> {
    fn flush_partition(&mut self, p: usize) -> Result<()> {
        if self.pending[p].is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending[p]);
        let count = batch.len() as u64;
        let part = self.log.partition(&self.topic, p as i32)?;
        let info = part.append(&mut batch.build(), now_ms())?;
        self.produced += count;
        if self.print_offsets {
            writeln!(self.out, "{p}\t{}\t{}", info.base_offset, info.last_offset)?;
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        for p in 0..self.pending.len() {
            self.flush_partition(p)?;
        }
        Ok(())
    }
}

pub fn run(data_dir: &Path, args: ProduceArgs) -> Result<()> {
    let log = open_writable(data_dir)?;
    let topic = log
        .topic(&args.topic)
        .with_context(|| format!("create it first with `sluice topics create {}`", args.topic))?;
    let partitions = topic.partitions.len() as u32;
    if let Some(p) = args.partition {
        log.partition(&args.topic, p)?;
    }
    let max_batch = usize::try_from(topic.config.max_message_bytes)
        .unwrap_or(usize::MAX)
        .min(TARGET_BATCH_BYTES);
    let mut producer = Producer {
        log: &log,
        topic: args.topic.clone(),
        pending: (0..partitions).map(|_| BatchBuilder::new()).collect(),
        max_batch,
        print_offsets: args.print_offsets,
        out: std::io::stdout().lock(),
        produced: 0,
    };
    let result = produce_lines(&mut producer, &args, partitions);
    // Store what was read before an error too: those lines were accepted.
    let flushed = producer.flush_all();
    let produced = producer.produced;
    drop(producer);
    let maintained = log
        .maintain(now_ms())
        .context("running retention after producing")?;
    for f in &maintained.failed {
        eprintln!(
            "warning: retention skipped {}-{}: {}",
            f.topic, f.partition, f.error
        );
    }
    log.close()?;
    result
        .and(flushed)
        .map_err(|e| anyhow::anyhow!("{e:#} ({produced} records were stored before the error)"))
}

fn produce_lines(producer: &mut Producer<'_>, args: &ProduceArgs, partitions: u32) -> Result<()> {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut line = Vec::with_capacity(256);
    let mut sticky = 0u32;
    let mut line_no = 0u64;
    let mut sep_buf = [0u8; 4];
    let separator = args
        .key_separator
        .map(|c| c.encode_utf8(&mut sep_buf).as_bytes().to_vec());
    loop {
        if input.buffer().is_empty() {
            // About to block on input: store what we have first.
            producer.flush_all()?;
            sticky = (sticky + 1) % partitions;
        }
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading standard input")?
            == 0
        {
            return Ok(());
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value): (Option<&[u8]>, &[u8]) = match &separator {
            Some(sep) => match line.windows(sep.len()).position(|w| w == &sep[..]) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None => bail!(
                    "line {line_no} has no key separator {:?}",
                    args.key_separator.unwrap_or(' ')
                ),
            },
            None => (None, &line[..]),
        };
        let p = match (args.partition, key) {
            (Some(p), _) => p as u32,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => sticky,
        } as usize;
        let record = Record {
            key,
            value: Some(value),
            timestamp: now_ms(),
            headers: vec![],
        };
        let approx = value.len() + key.map(|k| k.len()).unwrap_or(0) + 32;
        if !producer.pending[p].is_empty()
            && producer.pending[p].size_estimate() + approx > producer.max_batch
        {
            producer.flush_partition(p)?;
        }
        producer.pending[p].push(&record);
        if producer.pending[p].size_estimate() > producer.max_batch {
            // A single line larger than the limit: the log refuses it with a clear error.
            producer
                .flush_partition(p)
                .with_context(|| format!("line {line_no} is too large"))?;
        }
    }
}
