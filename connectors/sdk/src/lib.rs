//! # sluice-connector-sdk: what every connector implements
//!
//! **Owns:** the contract between the runtime and connectors, built in or loaded from a
//! plugin: the source and sink traits ([`connector`]), the records and typed data that cross
//! them ([`data`]: schemas that map one to one onto Avro, so the registry can govern every
//! topic), connector settings declared once for validation and docs ([`config`]), and the one
//! registry of connector types shared by built-ins and plugins ([`registry`]), and a fast
//! JSON ↔ Avro binary codec for records in flight (`avro`, behind the `avro` feature: a
//! streaming path from JSON text to Avro and back with no document tree, and the general
//! path it defers to), which the runtime's converters and connectors that write Avro files
//! share, and a fast JSON scanner for checking records ([`json`]).
//!
//! **Must not touch:** the log, the broker, converters, transforms, threads or async
//! runtimes: the runtime drives connectors; connectors only produce and consume records.
//!
//! ## Status
//! The contract is built and driven by the runtime (`sluice-worker`, `sluice run`); the
//! built-in file connectors implement it, and [`plugin`] exports it from dynamic libraries.
//!
//! ## Across a C ABI
//! Every trait method is synchronous, takes and returns owned data, and reports failure as
//! a [`connector::ConnectorError`] value (retriable, bad record, fatal). Nothing borrowed and
//! nothing async crosses the interface, so [`export_plugin!`] exports the same calls as
//! `extern "C"` functions over opaque handles, with records in one binary encoding
//! ([`plugin::wire`]): the runtime owns the threads and calls `poll`/`put` on a blocking
//! thread. A connector that needs async I/O keeps its own small runtime inside its task and
//! blocks on it; a panic is caught on the plugin's side and returned as an error that fails
//! only its task. Records cross in batches, encoded once: the runtime reads a plugin source's
//! batch in place ([`connector::Polled::Encoded`]) and hands a plugin sink batches encoded
//! straight from the log ([`connector::SinkTask::put_encoded`]). The [`plugin`] module
//! documents the ABI for authors in other languages.
//!
//! ## Batches, not records
//! Records move in batches. Where nothing needs a record object per record, none is made:
//! a source may hand over runs of plain values as slices of one buffer
//! ([`connector::Polled::Values`], the file source's lines), and a sink that uses only values
//! and offsets may take runs of values read in place from the log
//! ([`connector::SinkTask::put_values`], the file sink's JSON lines). Connectors that need
//! whole records implement only `poll` and `put`; the defaults convert.
//!
//! Made for what comes next: a Postgres CDC source (snapshot then stream; positions are
//! LSNs; schema changes mid-stream are new [`data::Schema`]s), a webhook source (records
//! arrive from callers who are answered in [`connector::SourceTask::committed`], once their
//! records are durable), a Postgres sink that stores its position in its own transaction
//! ([`connector::SinkTask::open`] returns it; it overrides group offsets), an HTTP sink with
//! retries ([`connector::ErrorKind::Retriable`]).
//!
//! ## Example
//! ```
//! use serde_json::json;
//! use sluice_connector_sdk::config::{ConfigSpec, FieldKind, FieldSpec};
//!
//! let spec = ConfigSpec::new(vec![
//!     FieldSpec::required("path", FieldKind::String, "files to read (a glob)"),
//!     FieldSpec::optional("format", FieldKind::OneOf(vec!["lines".into(), "json".into()]), Some(json!("lines")), "how to read lines"),
//! ]);
//! let issues = spec.validate(json!({"pth": "/in/*.log"}).as_object().unwrap()).unwrap_err();
//! assert_eq!(issues[0].to_string(), "`pth`: unknown setting (did you mean `path`?)");
//! ```

#[cfg(feature = "avro")]
pub mod avro;
pub mod config;
pub mod connector;
pub mod data;
pub mod json;
pub mod plugin;
pub mod registry;

/// Raw keys and values are shared byte buffers: a source can hand out slices of what it
/// read, and a sink gets slices of what the log returned, without a copy per record.
pub use bytes::Bytes;
