//! The file sink: JSON lines (one record value per line), exactly once with respect to the
//! topic, across crashes.
//!
//! Each partition is written to a hidden in-progress file; when it rolls (by size, by age, or
//! at shutdown) the file is fsynced and renamed, all at once, to
//! `<topic>-<partition>-<first offset>-<last offset>.jsonl`. The names of the finished files
//! are the sink's own record of its position: on start it resumes after the highest last
//! offset and deletes in-progress files, whose records are read again. So no record appears
//! twice in the output and none is missing, whatever the moment of a crash.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SinkConnector, SinkRecord, SinkTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::data::Payload;

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
            open: HashMap::new(),
            done: HashMap::new(),
        }))
    }
}

struct InProgress {
    path: PathBuf,
    writer: BufWriter<File>,
    first: i64,
    last: i64,
    bytes: u64,
    started: Instant,
}

struct FileSinkTask {
    dir: PathBuf,
    roll_bytes: u64,
    roll_interval: Duration,
    open: HashMap<TopicPartition, InProgress>,
    /// Next offset after the last finished file, per partition.
    done: HashMap<TopicPartition, i64>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ConnectorError {
    // A full disk or a lost mount may clear up: let the runtime retry.
    ConnectorError::retriable(format!("{what} {}: {e}", path.display()))
}

fn final_name(tp: &TopicPartition, first: i64, last: i64) -> String {
    format!("{}-{}-{first:020}-{last:020}.jsonl", tp.topic, tp.partition)
}

fn temp_prefix(tp: &TopicPartition) -> String {
    format!(".{}-{}-", tp.topic, tp.partition)
}

/// `(first, last)` of a finished file of this partition.
fn parse_final(tp: &TopicPartition, name: &str) -> Option<(i64, i64)> {
    let rest = name
        .strip_prefix(&format!("{}-{}-", tp.topic, tp.partition))?
        .strip_suffix(".jsonl")?;
    let (first, last) = rest.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

impl FileSinkTask {
    fn finish(&mut self, tp: &TopicPartition) -> Result<()> {
        let Some(mut f) = self.open.remove(tp) else {
            return Ok(());
        };
        f.writer.flush().map_err(|e| io("writing", &f.path, e))?;
        f.writer
            .get_ref()
            .sync_data()
            .map_err(|e| io("fsync of", &f.path, e))?;
        let dest = self.dir.join(final_name(tp, f.first, f.last));
        std::fs::rename(&f.path, &dest).map_err(|e| io("publishing", &dest, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync of", &self.dir, e))?;
        self.done.insert(tp.clone(), f.last + 1);
        Ok(())
    }

    fn positions(&self) -> Vec<(TopicPartition, i64)> {
        self.done.iter().map(|(tp, o)| (tp.clone(), *o)).collect()
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
        let mut tp = TopicPartition {
            topic: String::new(),
            partition: -1,
        };
        for r in records {
            // Records come grouped by partition: a new key only when the partition changes.
            if tp.partition != r.partition || tp.topic != r.topic {
                tp = TopicPartition {
                    topic: r.topic.clone(),
                    partition: r.partition,
                };
            }
            if self.done.get(&tp).is_some_and(|next| r.offset < *next) {
                continue; // already in a finished file
            }
            if !self.open.contains_key(&tp) {
                let path =
                    self.dir
                        .join(format!("{}{:020}.inprogress", temp_prefix(&tp), r.offset));
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(|e| io("creating", &path, e))?;
                let started = Instant::now();
                self.open.insert(
                    tp.clone(),
                    InProgress {
                        path,
                        writer: BufWriter::with_capacity(1 << 20, file),
                        first: r.offset,
                        last: r.offset,
                        bytes: 0,
                        started,
                    },
                );
            }
            let f = self
                .open
                .get_mut(&tp)
                .ok_or_else(|| ConnectorError::fatal("lost an open file"))?;
            let written = match &r.value {
                Some(Payload::Raw(bytes)) => f
                    .writer
                    .write_all(bytes)
                    .and_then(|_| f.writer.write_all(b"\n"))
                    .map(|_| bytes.len() + 1),
                Some(Payload::Typed { .. }) => {
                    return Err(ConnectorError::bad_record(
                        "the file sink writes encoded values; set a value_format",
                    ))
                }
                None => f.writer.write_all(b"null\n").map(|_| 5),
            }
            .map_err(|e| io("writing", &f.path, e))?;
            f.last = r.offset;
            f.bytes += written as u64;
            if f.bytes >= self.roll_bytes {
                self.finish(&tp)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, v: &str) -> SinkRecord {
        SinkRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp: 0,
            key: None,
            value: Some(Payload::Raw(v.as_bytes().to_vec())),
            headers: vec![],
        }
    }

    fn task(dir: &Path, roll_bytes: u64) -> FileSinkTask {
        FileSinkTask {
            dir: dir.to_path_buf(),
            roll_bytes,
            roll_interval: Duration::from_secs(3600),
            open: HashMap::new(),
            done: HashMap::new(),
        }
    }

    fn output(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".jsonl"))
            .collect();
        names.sort();
        names
            .iter()
            .flat_map(|n| {
                std::fs::read_to_string(dir.join(n))
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_crash_before_finishing_a_file_repeats_nothing_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let mut t = task(dir.path(), 20);
        assert!(t.open(vec![tp.clone()]).unwrap().is_empty());
        let first: Vec<SinkRecord> = (0..6).map(|i| rec(i, &format!(r#"{{"n":{i}}}"#))).collect();
        t.put(&first).unwrap();
        let done = t.flush().unwrap();
        assert!(!done.is_empty(), "rolled by size: {done:?}");
        let durable = done[0].1;
        drop(t); // a crash: the in-progress file is left behind

        let mut t = task(dir.path(), 20);
        let resume = t.open(vec![tp.clone()]).unwrap();
        assert_eq!(
            resume,
            vec![(tp.clone(), durable)],
            "resumes after the last finished file"
        );
        // The runtime replays from there (and, at worst, a little before: those are skipped).
        let replay: Vec<SinkRecord> = (durable - 1..8)
            .map(|i| rec(i, &format!(r#"{{"n":{i}}}"#)))
            .collect();
        t.put(&replay).unwrap();
        t.stop().unwrap();
        let lines = output(dir.path());
        let expected: Vec<String> = (0..8).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        assert_eq!(lines, expected, "every record exactly once, in order");
        assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".inprogress")));
    }
}
