//! # An example connector plugin
//!
//! Two connector types, in ordinary safe Rust against the SDK's traits, exported by one
//! `export_plugin!` line at the bottom:
//! - source `sequence`: records `{"n": 0, "message": "…"}`, `{"n": 1, …}`, … up to `count`
//!   (or forever), resuming after the last committed `n`;
//! - sink `jsonl`: appends each value as a line to one file, fsynced on flush (at least
//!   once: after a crash, records after the last flush are written again).
//!
//! Build it with `cargo build --release -p sluice-example-plugin`, put
//! `target/release/libsluice_example_plugin.so` in a plugin folder, and name the types in a
//! pipeline file (see `docs/plugins.md`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SinkConnector, SinkRecord, SinkTask, SourceConnector, SourcePosition,
    SourceRecord, SourceTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};
use sluice_connector_sdk::Bytes;

/// Registers `sequence` and `jsonl` (what the plugin exports, and what a host links in).
pub fn register(registry: &mut ConnectorRegistry) -> std::result::Result<(), RegistryError> {
    registry.register(ConnectorType {
        name: "sequence".into(),
        description: "numbered JSON records, up to `count`".into(),
        config: ConfigSpec::new(vec![
            FieldSpec::optional(
                "count",
                FieldKind::Integer {
                    min: 0,
                    max: i64::MAX,
                },
                Some(json!(0)),
                "how many records in all (0: no end)",
            ),
            FieldSpec::optional(
                "message",
                FieldKind::String,
                Some(json!("hello")),
                "the text in every record",
            ),
            FieldSpec::optional(
                "pad",
                FieldKind::Integer {
                    min: 0,
                    max: 1 << 20,
                },
                Some(json!(0)),
                "bytes of padding in each record (to make records of a given size)",
            ),
        ]),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| {
            Ok(Box::new(Sequence(c)) as Box<dyn SourceConnector>)
        })),
    })?;
    registry.register(ConnectorType {
        name: "jsonl".into(),
        description: "appends record values as lines to a file".into(),
        config: ConfigSpec::new(vec![FieldSpec::required(
            "file",
            FieldKind::String,
            "the file to append to (created if missing)",
        )]),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|c| {
            Ok(Box::new(Jsonl(c)) as Box<dyn SinkConnector>)
        })),
    })
}

sluice_connector_sdk::export_plugin!(
    name: "sluice-example-plugin",
    version: env!("CARGO_PKG_VERSION"),
    register: register,
);

struct Sequence(ConfigValues);

impl SourceConnector for Sequence {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.0.clone()]) // one numbered stream: one task
    }

    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let message = config.str("message").unwrap_or("hello").to_string();
        let pad = "x".repeat(config.int("pad").unwrap_or(0) as usize);
        Ok(Box::new(SequenceTask {
            next: 0,
            count: config.int("count").unwrap_or(0) as u64,
            message,
            pad,
            stream: Arc::from("sequence"),
        }))
    }
}

struct SequenceTask {
    next: u64,
    count: u64,
    message: String,
    pad: String,
    stream: Arc<str>,
}

impl SourceTask for SequenceTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        if let Some(n) = committed.iter().find_map(|p| p.offset.as_u64()) {
            self.next = n;
        }
        Ok(())
    }

    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        let end = if self.count == 0 {
            self.next + max_records as u64
        } else {
            self.count.min(self.next + max_records as u64)
        };
        if self.next >= end {
            std::thread::sleep(timeout.min(Duration::from_millis(50))); // done: nothing new
            return Ok(Vec::new());
        }
        let records = (self.next..end)
            .map(|n| {
                let value = if self.pad.is_empty() {
                    json!({"n": n, "message": self.message})
                } else {
                    json!({"n": n, "message": self.message, "pad": self.pad})
                };
                SourceRecord {
                    topic: None,
                    partition: None,
                    key: None,
                    value: Some(Payload::Raw(Bytes::from(value.to_string()))),
                    headers: Vec::new(),
                    timestamp: None,
                    // The position after this record: where to resume.
                    position: SourcePosition {
                        stream: self.stream.clone(),
                        offset: json!(n + 1),
                    },
                }
            })
            .collect();
        self.next = end;
        Ok(records)
    }

    fn committed(&mut self, _positions: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

struct Jsonl(ConfigValues);

impl SinkConnector for Jsonl {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.0.clone()]) // one file: one task
    }

    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>> {
        let path = config
            .str("file")
            .ok_or_else(|| ConnectorError::fatal("`file` is missing"))?
            .to_string();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ConnectorError::fatal(format!("cannot open {path}: {e}")))?;
        Ok(Box::new(JsonlTask {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            next: Vec::new(),
        }))
    }
}

struct JsonlTask {
    path: String,
    out: BufWriter<File>,
    /// Next offset per partition, once written.
    next: Vec<(TopicPartition, i64)>,
}

impl SinkTask for JsonlTask {
    fn open(&mut self, _partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        Ok(Vec::new()) // resume from the group's committed offsets
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        for r in records {
            let value: &[u8] = match &r.value {
                Some(Payload::Raw(b)) => b,
                Some(Payload::Typed { .. }) => {
                    return Err(ConnectorError::bad_record("jsonl writes encoded values"))
                }
                None => b"null",
            };
            self.out
                .write_all(value)
                .and_then(|_| self.out.write_all(b"\n"))
                .map_err(|e| ConnectorError::retriable(format!("writing {}: {e}", self.path)))?;
            match self
                .next
                .iter_mut()
                .find(|(tp, _)| tp.partition == r.partition && *tp.topic == *r.topic)
            {
                Some((_, next)) => *next = r.offset + 1,
                None => self.next.push((
                    TopicPartition {
                        topic: r.topic.to_string(),
                        partition: r.partition,
                    },
                    r.offset + 1,
                )),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        self.out
            .flush()
            .and_then(|_| self.out.get_ref().sync_data())
            .map_err(|e| ConnectorError::retriable(format!("flushing {}: {e}", self.path)))?;
        Ok(self.next.clone())
    }

    fn close(&mut self, _partitions: Vec<TopicPartition>) -> Result<()> {
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.flush().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_counts_and_resumes() {
        let mut registry = ConnectorRegistry::new();
        register(&mut registry).unwrap();
        let t = registry.source("sequence").unwrap();
        let values =
            ConnectorRegistry::validate(t, json!({"count": 5}).as_object().unwrap()).unwrap();
        let Factory::Source(make) = &t.factory else {
            panic!()
        };
        let c = make(values.clone()).unwrap();
        let mut task = c
            .create_task(
                TaskInfo {
                    connector: "s".into(),
                    task: 0,
                    tasks: 1,
                },
                values,
            )
            .unwrap();
        task.start(vec![SourcePosition {
            stream: Arc::from("sequence"),
            offset: json!(3),
        }])
        .unwrap();
        let got = task.poll(100, Duration::ZERO).unwrap();
        assert_eq!(got.len(), 2, "3 and 4, then the count is reached");
        let Some(Payload::Raw(v)) = &got[1].value else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(v).unwrap();
        assert_eq!(v, json!({"n": 4, "message": "hello"}));
        assert!(task.poll(100, Duration::ZERO).unwrap().is_empty());
    }
}
