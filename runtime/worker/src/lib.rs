//! # sluice-worker: pipelines
//!
//! **Owns:** the pipeline file (`sluice run pipelines.yaml`): loading it with positions,
//! `${env:…}`/`${file:…}` substitution (values kept secret), and strict validation into a
//! checked [`config::Pipeline`] that the runtime will build from — config, then pure
//! validation, then build.
//!
//! **Must not touch:** bytes on disk (the log), the wire protocol (the broker), connector
//! internals (they sit behind `sluice-connector-sdk`'s traits).
//!
//! ## Status
//! Built: the file format and its validation, with errors that name file, line and column
//! and suggest near-miss names. Not built yet: the connector runtime (tasks, converters,
//! transforms, error policies, offsets), the built-in connectors, `sluice run`.
//!
//! ## Layout
//! - [`yaml`]: a positioned YAML tree, substitutions.
//! - [`config`]: the pipeline's shape and its checks; golden fixtures in `tests/fixtures`.

pub mod avro;
pub mod config;
pub mod convert;
pub mod offsets;
pub mod partitioner;
pub mod run;
pub mod transforms;
pub mod yaml;
