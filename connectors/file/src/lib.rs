//! # sluice-connector-file: the built-in file source and sink
//!
//! **Owns:** reading files into records ([`source`]: follow a glob, lines, JSON lines or
//! CSV, resume per file by fingerprint) and writing records into files ([`sink`]: JSON lines,
//! CSV or Avro object container files ([`avro_file`]), exactly once across crashes through
//! atomic renames); CSV lines ↔ JSON objects without a tree per line ([`csv_json`]).
//!
//! **Must not touch:** topics, offsets storage, converters: the runtime does those through
//! the SDK traits.
//!
//! ```
//! use sluice_connector_sdk::registry::ConnectorRegistry;
//!
//! let mut registry = ConnectorRegistry::new();
//! sluice_connector_file::register(&mut registry).unwrap();
//! let sink = registry.sink("file").unwrap();
//! assert!(sink.config.describe().contains("roll_interval"));
//! ```

use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};

pub mod avro_file;
pub mod csv_json;
pub mod sink;
pub mod source;

/// Adds `file` as a source and a sink type.
pub fn register(registry: &mut ConnectorRegistry) -> Result<(), RegistryError> {
    registry.register(ConnectorType {
        name: "file".into(),
        description: "follows files matched by a glob; one record per line".into(),
        config: source::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| Ok(Box::new(source::FileSource::new(c))))),
    })?;
    registry.register(ConnectorType {
        name: "file".into(),
        description: "writes JSON lines, CSV or Avro container files, exactly once".into(),
        config: sink::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|c| Ok(Box::new(sink::FileSink::new(c))))),
    })
}
