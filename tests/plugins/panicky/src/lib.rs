//! Test fixtures for the plugin boundary's error paths:
//! - source `panicky` hands out `good_polls` batches of one record, then panics in `poll`
//!   (a panic fails only its task); with `panicking_tasks: N` only the first N tasks the
//!   connector creates panic (a task restarted after that recovers);
//! - source `mixed` emits `count` records `{"n": i}`, every third one marked bad with the
//!   SDK's `SOURCE_ERROR_HEADER` (bad input goes to the error policy, not dropped);
//! - sink `picky` appends values to `file` but refuses any value containing `bad` as a bad
//!   record (the runtime must retry the batch record by record so only those meet the
//!   error policy).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SinkConnector, SinkRecord, SinkTask, SourceConnector, SourcePosition,
    SourceRecord, SourceTask, TaskInfo, TopicPartition, SOURCE_ERROR_HEADER,
};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};
use sluice_connector_sdk::Bytes;

fn register(registry: &mut ConnectorRegistry) -> std::result::Result<(), RegistryError> {
    register_more(registry)?;
    registry.register(ConnectorType {
        name: "panicky".into(),
        description: "panics in poll after `good_polls` polls".into(),
        config: ConfigSpec::new(vec![
            FieldSpec::optional(
                "good_polls",
                FieldKind::Integer { min: 0, max: 1000 },
                Some(json!(0)),
                "polls that return a record before the panic",
            ),
            FieldSpec::optional(
                "panicking_tasks",
                FieldKind::Integer {
                    min: 0,
                    max: 1_000_000,
                },
                Some(json!(1_000_000)),
                "how many of the tasks the connector creates panic (later ones do not)",
            ),
        ]),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| {
            Ok(Box::new(Panicky(c, AtomicI64::new(0))) as Box<dyn SourceConnector>)
        })),
    })
}

sluice_connector_sdk::export_plugin!(name: "panicky", version: "0.0.1", register: register);

fn register_more(registry: &mut ConnectorRegistry) -> std::result::Result<(), RegistryError> {
    registry.register(ConnectorType {
        name: "mixed".into(),
        description: "every third record is marked bad".into(),
        config: ConfigSpec::new(vec![FieldSpec::required(
            "count",
            FieldKind::Integer {
                min: 1,
                max: 1_000_000,
            },
            "records in all",
        )]),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| {
            Ok(Box::new(Mixed(c)) as Box<dyn SourceConnector>)
        })),
    })?;
    registry.register(ConnectorType {
        name: "picky".into(),
        description: "refuses values containing `bad`".into(),
        config: ConfigSpec::new(vec![FieldSpec::required(
            "file",
            FieldKind::String,
            "where accepted values go",
        )]),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|c| {
            Ok(Box::new(Picky(c)) as Box<dyn SinkConnector>)
        })),
    })
}

struct Mixed(ConfigValues);

impl SourceConnector for Mixed {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.0.clone()])
    }
    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(MixedTask {
            next: 0,
            count: config.int("count").unwrap_or(1) as u64,
        }))
    }
}

struct MixedTask {
    next: u64,
    count: u64,
}

impl SourceTask for MixedTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        if let Some(n) = committed.iter().find_map(|p| p.offset.as_u64()) {
            self.next = n;
        }
        Ok(())
    }
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        let end = self.count.min(self.next + max as u64);
        if self.next >= end {
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return Ok(Vec::new());
        }
        let stream: Arc<str> = Arc::from("mixed");
        let records = (self.next..end)
            .map(|n| {
                let bad = n % 3 == 2;
                SourceRecord {
                    topic: None,
                    partition: None,
                    key: None,
                    value: Some(Payload::Raw(Bytes::from(if bad {
                        format!("not json {n}")
                    } else {
                        format!("{{\"n\": {n}}}")
                    }))),
                    headers: if bad {
                        vec![(
                            SOURCE_ERROR_HEADER.to_string(),
                            b"unreadable input".to_vec(),
                        )]
                    } else {
                        Vec::new()
                    },
                    timestamp: None,
                    position: SourcePosition {
                        stream: stream.clone(),
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

struct Picky(ConfigValues);

impl SinkConnector for Picky {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.0.clone()])
    }
    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>> {
        Ok(Box::new(PickyTask {
            file: config.str("file").unwrap_or("picky.out").to_string(),
            written: Vec::new(),
        }))
    }
}

struct PickyTask {
    file: String,
    written: Vec<(TopicPartition, i64)>,
}

impl SinkTask for PickyTask {
    fn open(&mut self, _partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        Ok(Vec::new())
    }
    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        // All or nothing per call: the runtime retries record by record after a bad one.
        let mut lines = String::new();
        for r in records {
            let Some(Payload::Raw(v)) = &r.value else {
                continue;
            };
            let text = String::from_utf8_lossy(v);
            if text.contains("bad") {
                return Err(ConnectorError::bad_record(format!("refused: {text}")));
            }
            lines.push_str(&text);
            lines.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        std::io::Write::write_all(&mut f, lines.as_bytes())
            .map_err(|e| ConnectorError::retriable(e.to_string()))?;
        if let Some(r) = records.last() {
            let tp = TopicPartition {
                topic: r.topic.to_string(),
                partition: r.partition,
            };
            self.written.retain(|(t, _)| *t != tp);
            self.written.push((tp, r.offset + 1));
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        Ok(self.written.clone())
    }
    fn close(&mut self, _partitions: Vec<TopicPartition>) -> Result<()> {
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The settings, and how many tasks were created so far.
struct Panicky(ConfigValues, AtomicI64);

impl SourceConnector for Panicky {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.0.clone()])
    }
    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let created = self.1.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(PanickyTask {
            left: config.int("good_polls").unwrap_or(0),
            panics: created < config.int("panicking_tasks").unwrap_or(i64::MAX),
        }))
    }
}

struct PanickyTask {
    left: i64,
    panics: bool,
}

impl SourceTask for PanickyTask {
    fn start(&mut self, _committed: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }
    fn poll(&mut self, _max: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        if self.left == 0 && self.panics {
            panic!("deliberate panic in poll");
        }
        if self.left == 0 {
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return Ok(Vec::new());
        }
        self.left -= 1;
        Ok(vec![SourceRecord {
            topic: None,
            partition: None,
            key: None,
            value: Some(Payload::Raw(Bytes::from_static(b"{\"ok\": true}"))),
            headers: Vec::new(),
            timestamp: None,
            position: SourcePosition {
                stream: Arc::from("panicky"),
                offset: json!(self.left),
            },
        }])
    }
    fn committed(&mut self, _positions: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}
