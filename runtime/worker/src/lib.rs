//! # sluice-worker: pipelines
//!
//! **Owns:** the pipeline file (`sluice run pipelines.yaml`): loading it with positions,
//! `${env:…}`/`${file:…}` substitution (values kept secret), and strict validation into a
//! checked [`config::Pipeline`] that the runtime builds from — config, then pure
//! validation, then build.
//!
//! **Must not touch:** bytes on disk (the log), the wire protocol (the broker), connector
//! internals (they sit behind `sluice-connector-sdk`'s traits).
//!
//! ## Example
//! ```
//! use sluice_connector_sdk::registry::ConnectorRegistry;
//!
//! let mut registry = ConnectorRegistry::new();
//! sluice_connector_file::register(&mut registry).unwrap();
//! let yaml = "sources:\n  logs_in: { type: file, path: /in/*.log, topic: logs }\n\
//!             sinks:\n  logs_out: { type: file, path: /out, topics: [logs], format: csv }\n";
//! let pipeline = sluice_worker::config::parse_pipeline(yaml, &registry, &|_| None).unwrap();
//! assert_eq!(pipeline.sinks[0].topics, ["logs"]);
//!
//! // Mistakes are reported with line and column, all at once.
//! let errors = sluice_worker::config::parse_pipeline("sources: { s: { type: fiel } }", &registry, &|_| None)
//!     .unwrap_err();
//! assert_eq!(errors[0].message, "source `s` needs `topic`");
//! assert_eq!((errors[1].pos.line, errors[1].pos.col), (1, 23));
//! assert!(errors[1].message.ends_with("(did you mean `file`?)"));
//! ```
//!
//! ## Layout (the data path: source → converter/transforms → log → sink)
//! - [`yaml`]: a positioned YAML tree, substitutions.
//! - [`config`]: the pipeline's shape and its checks; golden fixtures in `tests/fixtures`.
//! - [`run`]: the tasks: source loops append to the log, sink loops read it; error policy,
//!   dead-letter topic, retries, offsets.
//! - [`convert`]: converters (`bytes`, `string`, `json` with or without an embedded schema,
//!   `avro` through the registry) and reader-schema resolution for sinks.
//! - [`transforms`]: single-message transforms and predicates.
//! - [`offsets`]: source positions in the compacted `__connect_offsets` topic.
//! - [`connector_store`]: connectors created over REST, in the compacted
//!   `__sluice_connectors` topic (their flat configs come through `config`'s
//!   `parse_flat_connector`, the same checks as the file's).
//! - [`partitioner`]: Kafka's murmur2 key partitioner.
//! - [`metrics`]: Prometheus counters per task and the state read at scrape time.
//! - [`plugins`]: connector plugins (dynamic libraries with the SDK's C ABI), loaded with
//!   `libloading` into the same registry as the built-in connectors.

pub mod config;
pub mod connect_schema;
pub mod connector_store;
pub mod convert;
pub mod metrics;
pub mod metrics_text;
pub mod offsets;
pub mod on_kafka;
pub mod partitioner;
pub mod plugins;
pub mod run;
pub mod show;
pub mod transforms;
pub mod yaml;
