//! The file sink: JSON lines (one record value per line), CSV (a header row, then one row
//! per record) or Avro object container files, exactly once with respect to the topic,
//! across crashes.
//!
//! Each partition is written to a hidden in-progress file; when it rolls (by size, by age, or
//! at shutdown) the file is fsynced and renamed, all at once, to
//! `<topic>-<partition>-<first offset>-<last offset>.jsonl` (or `.csv`, `.avro`). The names of the finished files
//! are the sink's own record of its position: on start it resumes after the highest last
//! offset and deletes in-progress files, whose records are read again. So no record appears
//! twice in the output and none is missing, whatever the moment of a crash.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SinkConnector, SinkRecord, SinkTask, SinkValueRun, TaskInfo,
    TopicPartition,
};
use sluice_connector_sdk::data::Payload;

use crate::avro_file::{ContainerWriter, BLOCK_BYTES};
use crate::csv_json::{write_row, CsvRows};

pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required(
            "path",
            FieldKind::String,
            "the folder to write files in (created if missing)",
        ),
        FieldSpec::optional(
            "roll_bytes",
            FieldKind::Integer {
                min: 1,
                max: i64::MAX,
            },
            Some(json!(64 * 1024 * 1024)),
            "finish a file once it holds this many bytes",
        ),
        FieldSpec::optional(
            "roll_interval",
            FieldKind::Duration,
            Some(json!("10s")),
            "finish a file once it is this old (its records become visible then)",
        ),
        FieldSpec::optional(
            "format",
            FieldKind::OneOf(vec!["json".into(), "csv".into(), "avro".into()]),
            Some(json!("json")),
            "`json`: each record's value on a line (`.jsonl` files); `csv`: values that are JSON objects become rows under a header row of their field names (`.csv` files; a record with other fields starts a new file; nested values are written as JSON); `avro`: Avro object container files (`.avro`) with the records' schema, which the topic's converter supplies (`value_format: avro`, `json` with `value_schemas_enable`, or the sink's `value_schema`); a record with another schema starts a new file",
        ),
    ])
}

pub struct FileSink {
    config: ConfigValues,
}

impl FileSink {
    pub fn new(config: ConfigValues) -> Self {
        FileSink { config }
    }
}

impl SinkConnector for FileSink {
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok((0..max_tasks.max(1)).map(|_| self.config.clone()).collect())
    }

    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>> {
        let dir = PathBuf::from(
            config
                .str("path")
                .ok_or_else(|| ConnectorError::fatal("`path` is missing"))?,
        );
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConnectorError::fatal(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Box::new(FileSinkTask {
            dir,
            roll_bytes: config.int("roll_bytes").unwrap_or(64 << 20) as u64,
            roll_interval: config
                .duration("roll_interval")
                .unwrap_or(Duration::from_secs(10)),
            format: match config.str("format") {
                Some("csv") => OutFormat::Csv,
                Some("avro") => OutFormat::Avro,
                _ => OutFormat::Json,
            },
            open: HashMap::new(),
            done: HashMap::new(),
            csv_rows: CsvRows::default(),
        }))
    }
}

struct InProgress {
    path: PathBuf,
    writer: BufWriter<File>,
    first: i64,
    last: i64,
    bytes: u64,
    /// Bytes handed to the kernel's writeback so far (see [`start_writeback`]).
    writeback_from: u64,
    started: Instant,
    /// `format: csv`: the header row of this file.
    columns: Vec<String>,
    /// `format: avro`: the schema of this file and its block writer.
    avro: Option<(Arc<str>, ContainerWriter)>,
}

/// What the files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutFormat {
    Json,
    Csv,
    Avro,
}

struct FileSinkTask {
    dir: PathBuf,
    roll_bytes: u64,
    roll_interval: Duration,
    format: OutFormat,
    open: HashMap<TopicPartition, InProgress>,
    /// Next offset after the last finished file, per partition.
    done: HashMap<TopicPartition, i64>,
    /// `format: csv`: the row being written, in buffers kept from record to record.
    csv_rows: CsvRows,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ConnectorError {
    // A full disk or a lost mount may clear up: let the runtime retry.
    ConnectorError::retriable(format!("{what} {}: {e}", path.display()))
}

fn extension(format: OutFormat) -> &'static str {
    match format {
        OutFormat::Json => ".jsonl",
        OutFormat::Csv => ".csv",
        OutFormat::Avro => ".avro",
    }
}

fn final_name(tp: &TopicPartition, first: i64, last: i64, format: OutFormat) -> String {
    format!(
        "{}-{}-{first:020}-{last:020}{}",
        tp.topic,
        tp.partition,
        extension(format)
    )
}

fn temp_prefix(tp: &TopicPartition) -> String {
    format!(".{}-{}-", tp.topic, tp.partition)
}

/// `(first, last)` of a finished file of this partition.
fn parse_final(tp: &TopicPartition, name: &str) -> Option<(i64, i64)> {
    // Any extension: a sink switched from json to csv resumes where it stopped.
    let rest = name.strip_prefix(&format!("{}-{}-", tp.topic, tp.partition))?;
    let rest = rest
        .strip_suffix(".jsonl")
        .or_else(|| rest.strip_suffix(".csv"))
        .or_else(|| rest.strip_suffix(".avro"))?;
    let (first, last) = rest.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

impl FileSinkTask {
    /// A new hidden in-progress file whose first record will be `first` (with the header row
    /// when writing CSV, the container header when writing Avro).
    fn create(
        &self,
        tp: &TopicPartition,
        first: i64,
        columns: Vec<String>,
        schema: Option<Arc<str>>,
    ) -> Result<InProgress> {
        let path = self
            .dir
            .join(format!("{}{:020}.inprogress", temp_prefix(tp), first));
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io("creating", &path, e))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        let mut bytes = 0;
        let mut avro = None;
        let header = match (self.format, schema) {
            (OutFormat::Csv, _) => {
                let mut header = Vec::new();
                write_row(columns.iter().map(|c| c.as_bytes()), &mut header);
                Some(header)
            }
            (OutFormat::Avro, Some(schema)) => {
                let (w, header) = ContainerWriter::new(&schema).map_err(|e| {
                    ConnectorError::bad_record(format!("the records' Avro schema: {e}"))
                })?;
                avro = Some((schema, w));
                Some(header)
            }
            _ => None,
        };
        if let Some(header) = header {
            writer
                .write_all(&header)
                .map_err(|e| io("writing", &path, e))?;
            bytes = header.len() as u64;
        }
        Ok(InProgress {
            path,
            writer,
            first,
            last: first - 1, // nothing written yet
            bytes,
            writeback_from: 0,
            started: Instant::now(),
            columns,
            avro,
        })
    }

    fn finish(&mut self, tp: &TopicPartition) -> Result<()> {
        match self.open.remove(tp) {
            Some(f) => self.finish_file(tp, f),
            None => Ok(()),
        }
    }

    /// Makes a file visible: flushed, fsynced, renamed, the folder fsynced.
    fn finish_file(&mut self, tp: &TopicPartition, mut f: InProgress) -> Result<()> {
        if f.last < f.first {
            // Created, but its first record never got written: nothing to publish.
            drop(f.writer);
            return std::fs::remove_file(&f.path).map_err(|e| io("removing", &f.path, e));
        }
        if let Some(block) = f.avro.as_mut().and_then(|(_, w)| w.take_block()) {
            f.writer
                .write_all(&block)
                .map_err(|e| io("writing", &f.path, e))?;
        }
        f.writer.flush().map_err(|e| io("writing", &f.path, e))?;
        f.writer
            .get_ref()
            .sync_data()
            .map_err(|e| io("fsync of", &f.path, e))?;
        let dest = self.dir.join(final_name(tp, f.first, f.last, self.format));
        std::fs::rename(&f.path, &dest).map_err(|e| io("publishing", &dest, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync of", &self.dir, e))?;
        self.done.insert(tp.clone(), f.last + 1);
        Ok(())
    }

    fn positions(&self) -> Vec<(TopicPartition, i64)> {
        let mut p: Vec<(TopicPartition, i64)> =
            self.done.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        p.sort();
        p
    }
}

impl FileSinkTask {
    /// Writes records of one partition to its in-progress file (`open`), rolling as needed.
    fn write_run<'r>(
        &mut self,
        tp: &TopicPartition,
        run: impl Iterator<Item = Incoming<'r>>,
        open: &mut Option<InProgress>,
    ) -> Result<()> {
        let mut rows = std::mem::take(&mut self.csv_rows);
        let written = self.write_run_with(tp, run, open, &mut rows);
        self.csv_rows = rows;
        written
    }

    fn write_run_with<'r>(
        &mut self,
        tp: &TopicPartition,
        run: impl Iterator<Item = Incoming<'r>>,
        open: &mut Option<InProgress>,
        rows: &mut CsvRows,
    ) -> Result<()> {
        let done = self.done.get(tp).copied();
        for r in run {
            let offset = r.offset();
            if done.is_some_and(|next| offset < next) {
                continue; // already in a finished file
            }
            if open.as_ref().is_some_and(|f| offset <= f.last) {
                // Already written: the runtime replays a batch one record at a time after a
                // bad record, and the records before it must not appear twice.
                continue;
            }
            // JSON values go to the file as they are (the pass-through path copies nothing
            // extra); CSV rows and Avro records are encoded first. Either way a bad record
            // is refused before anything of it is written.
            let where_ = || format!("{}-{} offset {offset}", tp.topic, tp.partition);
            let (line, schema) = match (self.format, r) {
                (OutFormat::Json, Incoming::Value(_, value)) => {
                    (Line::Json(value.unwrap_or(b"null")), None)
                }
                (OutFormat::Json, Incoming::Record(r)) => (Line::Json(json_value(r)?), None),
                (OutFormat::Csv, Incoming::Value(_, value)) => {
                    rows.row(value, where_)?;
                    (Line::Csv, None)
                }
                (OutFormat::Csv, Incoming::Record(r)) => {
                    let value = match &r.value {
                        Some(Payload::Raw(bytes)) => Some(&bytes[..]),
                        Some(Payload::Typed { .. }) => return Err(typed_value()),
                        None => None,
                    };
                    rows.row(value, where_)?;
                    (Line::Csv, None)
                }
                (OutFormat::Avro, Incoming::Record(r)) => {
                    let (value, schema) = avro_value(r)?;
                    (Line::Avro(value), Some(schema))
                }
                (OutFormat::Avro, Incoming::Value(..)) => {
                    return Err(ConnectorError::fatal(
                        "values without records reach only `format: json` and `format: csv`",
                    ))
                }
            };
            let csv = self.format == OutFormat::Csv;
            let same_schema = |f: &InProgress| match (&f.avro, &schema) {
                (Some((a, _)), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
                _ => true,
            };
            if let Some(f) =
                open.take_if(|f| (csv && !rows.same_columns(&f.columns)) || !same_schema(f))
            {
                // Other fields or another schema: a new file with its own header.
                self.finish_file(tp, f)?;
            }
            let f = match open {
                Some(f) => f,
                None => {
                    let columns = if csv { rows.columns() } else { Vec::new() };
                    open.insert(self.create(tp, offset, columns, schema)?)
                }
            };
            let written = match line {
                Line::Csv => f.writer.write_all(&rows.row).map(|_| rows.row.len()),
                Line::Json(value) => f
                    .writer
                    .write_all(value)
                    .and_then(|_| f.writer.write_all(b"\n"))
                    .map(|_| value.len() + 1),
                Line::Avro(value) => {
                    let Some((_, w)) = f.avro.as_mut() else {
                        return Err(ConnectorError::fatal("an Avro file without its writer"));
                    };
                    let before = w.pending();
                    w.append(&value).map_err(|e| {
                        ConnectorError::bad_record(format!(
                            "{}-{} offset {offset}: the value does not fit its Avro schema: {e}",
                            tp.topic, tp.partition
                        ))
                    })?;
                    let added = w.pending() - before;
                    match (w.pending() >= BLOCK_BYTES)
                        .then(|| w.take_block())
                        .flatten()
                    {
                        Some(block) => f.writer.write_all(&block).map(|_| added),
                        None => Ok(added),
                    }
                }
            }
            .map_err(|e| io("writing", &f.path, e))?;
            f.last = offset;
            f.bytes += written as u64;
            if f.bytes - f.writeback_from >= WRITEBACK_EVERY {
                start_writeback(f)?;
            }
            if f.bytes >= self.roll_bytes {
                if let Some(f) = open.take() {
                    self.finish_file(tp, f)?;
                }
            }
        }
        Ok(())
    }
}

impl SinkTask for FileSinkTask {
    fn open(&mut self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(|e| io("listing", &self.dir, e))?
            .filter_map(|e| {
                e.ok()
                    .and_then(|e| e.file_name().to_str().map(str::to_string))
            })
            .collect();
        let mut resume = Vec::new();
        for tp in partitions {
            // Unfinished files from before a crash: their records will be read again.
            for name in names.iter().filter(|n| n.starts_with(&temp_prefix(&tp))) {
                let path = self.dir.join(name);
                std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
            }
            if let Some(next) = names
                .iter()
                .filter_map(|n| parse_final(&tp, n))
                .map(|(_, last)| last + 1)
                .max()
            {
                self.done.insert(tp.clone(), next);
                resume.push((tp, next));
            }
        }
        Ok(resume)
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        // Records come grouped by partition: the maps are consulted once per run of records
        // of one partition, not once per record.
        let mut at = 0;
        while at < records.len() {
            let first = &records[at];
            let len = records[at..]
                .iter()
                .position(|r| r.partition != first.partition || *r.topic != *first.topic)
                .unwrap_or(records.len() - at);
            let tp = TopicPartition {
                topic: first.topic.to_string(),
                partition: first.partition,
            };
            let mut open = self.open.remove(&tp);
            let run = records[at..at + len].iter().map(Incoming::Record);
            let result = self.write_run(&tp, run, &mut open);
            // Put back even after an error: what was written stays written.
            if let Some(f) = open {
                self.open.insert(tp, f);
            }
            result?;
            at += len;
        }
        Ok(())
    }

    /// JSON lines and CSV rows need nothing but values and offsets.
    fn accepts_values(&self) -> bool {
        matches!(self.format, OutFormat::Json | OutFormat::Csv)
    }

    fn put_values(&mut self, runs: &[SinkValueRun]) -> Result<()> {
        for run in runs {
            let tp = TopicPartition {
                topic: run.topic.to_string(),
                partition: run.partition,
            };
            let mut open = self.open.remove(&tp);
            let values = run
                .values
                .iter()
                .enumerate()
                .map(|(i, (offset, _))| Incoming::Value(*offset, run.value(i)));
            let result = self.write_run(&tp, values, &mut open);
            // Put back even after an error: what was written stays written.
            if let Some(f) = open {
                self.open.insert(tp, f);
            }
            result?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        let due: Vec<TopicPartition> = self
            .open
            .iter()
            .filter(|(_, f)| f.started.elapsed() >= self.roll_interval)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.finish(&tp)?;
        }
        Ok(self.positions())
    }

    fn close(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        for tp in partitions {
            self.finish(&tp)?;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        let all: Vec<TopicPartition> = self.open.keys().cloned().collect();
        for tp in all {
            self.finish(&tp)?;
        }
        Ok(())
    }
}

/// Writeback of an in-progress file starts every this many bytes.
const WRITEBACK_EVERY: u64 = 2 << 20;

/// Asks the kernel to start writing what the file holds so far to disk, without waiting,
/// so that the fsync that publishes the file finds little left to do: the disk works while
/// the sink goes on (what RocksDB calls `bytes_per_sync`).
fn start_writeback(f: &mut InProgress) -> Result<()> {
    f.writer.flush().map_err(|e| io("writing", &f.path, e))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = f.writer.get_ref().as_raw_fd();
        let (from, len) = (f.writeback_from as i64, (f.bytes - f.writeback_from) as i64);
        // SAFETY: `fd` is an open file owned by `f.writer` for the duration of the call;
        // sync_file_range reads no memory of ours.
        let rc = unsafe { libc::sync_file_range(fd, from, len, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            return Err(io("writeback of", &f.path, std::io::Error::last_os_error()));
        }
    }
    f.writeback_from = f.bytes;
    Ok(())
}

/// A record as the sink receives it: whole, or (`put_values`) its offset and value only.
#[derive(Clone, Copy)]
enum Incoming<'a> {
    Record(&'a SinkRecord),
    Value(i64, Option<&'a [u8]>),
}

impl Incoming<'_> {
    fn offset(&self) -> i64 {
        match self {
            Incoming::Record(r) => r.offset,
            Incoming::Value(offset, _) => *offset,
        }
    }
}

/// What one record becomes in the file.
enum Line<'a> {
    /// The value's bytes (a newline follows).
    Json(&'a [u8]),
    /// The CSV row just made ([`CsvRows::row`]), newline included.
    Csv,
    /// A value to encode into the current Avro block.
    Avro(serde_json::Value),
}

/// A record's value (JSON text of its schema) and the schema, for `format: avro`.
fn avro_value(r: &SinkRecord) -> Result<(serde_json::Value, Arc<str>)> {
    let where_ = || format!("{}-{} offset {}", r.topic, r.partition, r.offset);
    let Some(schema) = r.value_schema.clone() else {
        return Err(ConnectorError::bad_record(format!(
            "`format: avro` needs the Avro schema of the value at {}: read the topic with `value_format: avro`, `json` with `value_schemas_enable: true`, or declare the sink's `value_schema`",
            where_()
        )));
    };
    match &r.value {
        Some(Payload::Raw(bytes)) => serde_json::from_slice(bytes)
            .map(|v| (v, schema))
            .map_err(|e| {
                ConnectorError::bad_record(format!("the value at {} is not JSON: {e}", where_()))
            }),
        Some(Payload::Typed { .. }) => Err(typed_value()),
        None => Err(ConnectorError::bad_record(format!(
            "`format: avro` has no record for a tombstone (null value) at {}; drop tombstones with a `filter` transform and the `record_is_tombstone` predicate",
            where_()
        ))),
    }
}

/// A record's value as written on a JSON line (a tombstone is `null`).
fn json_value(r: &SinkRecord) -> Result<&[u8]> {
    match &r.value {
        Some(Payload::Raw(bytes)) => Ok(bytes),
        Some(Payload::Typed { .. }) => Err(typed_value()),
        None => Ok(b"null"),
    }
}

fn typed_value() -> ConnectorError {
    ConnectorError::bad_record("the file sink writes encoded values; set a value_format")
}

#[cfg(test)]
mod tests;
