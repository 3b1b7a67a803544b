//! One registry of connector types, shared by built-in connectors and plugins, which refuses
//! a type registered twice (the second one is reported with both origins, and the first one
//! keeps working).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value as Json};

use crate::config::{ConfigIssue, ConfigSpec, ConfigValues};
use crate::connector::{Result, SinkConnector, SourceConnector};

/// Where a connector type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    /// A plugin library, with its own name and version.
    Plugin {
        library: PathBuf,
        plugin: String,
        version: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built in"),
            Origin::Plugin {
                library,
                plugin,
                version,
            } => write!(f, "plugin {plugin} {version} ({})", library.display()),
        }
    }
}

pub type SourceFactory =
    Box<dyn Fn(ConfigValues) -> Result<Box<dyn SourceConnector>> + Send + Sync>;
pub type SinkFactory = Box<dyn Fn(ConfigValues) -> Result<Box<dyn SinkConnector>> + Send + Sync>;

/// How to make a connector of some type.
pub enum Factory {
    Source(SourceFactory),
    Sink(SinkFactory),
}

/// A connector type: its name in YAML (`type: file`), its settings and how to build it.
pub struct ConnectorType {
    pub name: String,
    pub description: String,
    pub config: ConfigSpec,
    pub origin: Origin,
    pub factory: Factory,
}

impl fmt::Debug for ConnectorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorType")
            .field("name", &self.name)
            .field("kind", &if self.is_source() { "source" } else { "sink" })
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl ConnectorType {
    pub fn is_source(&self) -> bool {
        matches!(self.factory, Factory::Source(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("{kind} connector type `{name}` from {new} is already provided by {existing}; the second one is ignored")]
    Duplicate {
        kind: &'static str,
        name: String,
        existing: String,
        new: String,
    },
    #[error("no {kind} connector type `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Unknown {
        kind: &'static str,
        name: String,
        suggestion: Option<String>,
    },
}

/// Source and sink types by name (a source and a sink may share a name, like `file`).
#[derive(Default)]
pub struct ConnectorRegistry {
    sources: BTreeMap<String, ConnectorType>,
    sinks: BTreeMap<String, ConnectorType>,
}

impl ConnectorRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, t: ConnectorType) -> std::result::Result<(), RegistryError> {
        let (kind, table) = if t.is_source() {
            ("source", &mut self.sources)
        } else {
            ("sink", &mut self.sinks)
        };
        if let Some(existing) = table.get(&t.name) {
            return Err(RegistryError::Duplicate {
                kind,
                name: t.name.clone(),
                existing: existing.origin.to_string(),
                new: t.origin.to_string(),
            });
        }
        table.insert(t.name.clone(), t);
        Ok(())
    }

    fn find<'a>(
        table: &'a BTreeMap<String, ConnectorType>,
        kind: &'static str,
        name: &str,
    ) -> std::result::Result<&'a ConnectorType, RegistryError> {
        table.get(name).ok_or_else(|| RegistryError::Unknown {
            kind,
            name: name.to_string(),
            suggestion: crate::config::did_you_mean(name, table.keys().map(String::as_str)),
        })
    }

    pub fn source(&self, name: &str) -> std::result::Result<&ConnectorType, RegistryError> {
        Self::find(&self.sources, "source", name)
    }

    pub fn sink(&self, name: &str) -> std::result::Result<&ConnectorType, RegistryError> {
        Self::find(&self.sinks, "sink", name)
    }

    pub fn sources(&self) -> impl Iterator<Item = &ConnectorType> {
        self.sources.values()
    }

    pub fn sinks(&self) -> impl Iterator<Item = &ConnectorType> {
        self.sinks.values()
    }

    /// Validates a connector's settings against its type's spec (no I/O).
    pub fn validate(
        t: &ConnectorType,
        settings: &Map<String, Json>,
    ) -> std::result::Result<ConfigValues, Vec<ConfigIssue>> {
        t.config.validate(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FieldKind, FieldSpec};
    use crate::connector::{SourcePosition, SourceRecord, SourceTask, TaskInfo};
    use crate::data::Payload;
    use serde_json::json;
    use std::time::Duration;

    /// A counting source, to show the traits in use.
    struct Counter {
        limit: u64,
    }

    struct CounterTask {
        next: u64,
        limit: u64,
        released: Vec<u64>,
    }

    impl SourceConnector for Counter {
        fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
            let spec = ConfigSpec::new(vec![FieldSpec::required(
                "limit",
                FieldKind::Integer {
                    min: 0,
                    max: i64::MAX,
                },
                "",
            )]);
            let values = spec
                .validate(json!({"limit": self.limit}).as_object().unwrap())
                .map_err(|e| crate::connector::ConnectorError::fatal(format!("{e:?}")))?;
            Ok(vec![values])
        }
        fn create_task(
            &self,
            _info: TaskInfo,
            config: ConfigValues,
        ) -> Result<Box<dyn SourceTask>> {
            Ok(Box::new(CounterTask {
                next: 0,
                limit: config.int("limit").unwrap_or(0) as u64,
                released: vec![],
            }))
        }
    }

    impl SourceTask for CounterTask {
        fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
            self.next = committed
                .iter()
                .filter_map(|p| p.offset.as_u64())
                .max()
                .map(|o| o + 1)
                .unwrap_or(0);
            Ok(())
        }
        fn poll(&mut self, max_records: usize, _timeout: Duration) -> Result<Vec<SourceRecord>> {
            let mut out = Vec::new();
            while self.next < self.limit && out.len() < max_records {
                out.push(SourceRecord {
                    topic: None,
                    partition: None,
                    key: None,
                    value: Some(Payload::Raw(self.next.to_string().into())),
                    headers: vec![],
                    timestamp: None,
                    position: SourcePosition {
                        stream: "counter".into(),
                        offset: json!(self.next),
                    },
                });
                self.next += 1;
            }
            Ok(out)
        }
        fn committed(&mut self, positions: Vec<SourcePosition>) -> Result<()> {
            self.released
                .extend(positions.iter().filter_map(|p| p.offset.as_u64()));
            Ok(())
        }
        fn stop(&mut self) -> Result<()> {
            Ok(())
        }
    }

    fn counter_type(origin: Origin) -> ConnectorType {
        ConnectorType {
            name: "counter".into(),
            description: "counts".into(),
            config: ConfigSpec::new(vec![FieldSpec::required(
                "limit",
                FieldKind::Integer {
                    min: 0,
                    max: i64::MAX,
                },
                "how far",
            )]),
            origin,
            factory: Factory::Source(Box::new(|c| {
                Ok(Box::new(Counter {
                    limit: c.int("limit").unwrap_or(0) as u64,
                }))
            })),
        }
    }

    #[test]
    fn a_type_registered_twice_is_refused_naming_both() {
        let mut r = ConnectorRegistry::new();
        r.register(counter_type(Origin::BuiltIn)).unwrap();
        let plugin = Origin::Plugin {
            library: "/plugins/libcounter.so".into(),
            plugin: "counters".into(),
            version: "1.2.0".into(),
        };
        let err = r.register(counter_type(plugin)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "source connector type `counter` from plugin counters 1.2.0 (/plugins/libcounter.so) is already provided by built in; the second one is ignored"
        );
        assert_eq!(r.source("counter").unwrap().origin, Origin::BuiltIn);
        assert_eq!(
            r.source("countr").unwrap_err().to_string(),
            "no source connector type `countr` (did you mean `counter`?)"
        );
        assert!(
            r.sink("counter").is_err(),
            "sources and sinks are separate namespaces"
        );
    }

    #[test]
    fn a_source_resumes_after_its_committed_position() {
        let mut r = ConnectorRegistry::new();
        r.register(counter_type(Origin::BuiltIn)).unwrap();
        let t = r.source("counter").unwrap();
        let config =
            ConnectorRegistry::validate(t, json!({"limit": 10}).as_object().unwrap()).unwrap();
        let Factory::Source(make) = &t.factory else {
            panic!("a source")
        };
        let connector = make(config).unwrap();
        let task_config = connector.task_configs(1).unwrap().remove(0);
        let info = TaskInfo {
            connector: "c".into(),
            task: 0,
            tasks: 1,
        };
        let mut task = connector.create_task(info, task_config).unwrap();
        task.start(vec![SourcePosition {
            stream: "counter".into(),
            offset: json!(6),
        }])
        .unwrap();
        let batch = task.poll(100, Duration::ZERO).unwrap();
        let values: Vec<&Payload> = batch.iter().filter_map(|r| r.value.as_ref()).collect();
        assert_eq!(
            values,
            vec![
                &Payload::Raw(bytes::Bytes::from_static(b"7")),
                &Payload::Raw(bytes::Bytes::from_static(b"8")),
                &Payload::Raw(bytes::Bytes::from_static(b"9"))
            ]
        );
        task.committed(batch.into_iter().map(|r| r.position).collect())
            .unwrap();
        task.stop().unwrap();
    }
}
