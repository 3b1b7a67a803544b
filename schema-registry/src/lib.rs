//! # sluice-schema-registry: schemas, subjects, versions, ids, and Avro compatibility
//!
//! **Owns:** the registry's rules: which schema evolutions are compatible under each of the
//! seven Confluent compatibility levels, written from the Avro specification (see [`compat`]
//! for where it departs from `apache-avro`'s own checker and why).
//!
//! **Must not touch:** the log's bytes or the Kafka protocol.
//!
//! Status: the compatibility engine and the levels are built and tested here; the HTTP API,
//! storage in a compacted topic and the wire-format helpers are not built yet.
//!
//! ## Layout
//! - [`compat`]: reader/writer compatibility with every incompatibility and its location.
//! - [`levels`]: NONE … FULL_TRANSITIVE and which versions each checks.
//!
//! ## Example
//! ```
//! use apache_avro::Schema;
//! use sluice_schema_registry::levels::{check, CompatibilityLevel};
//!
//! let v1 = Schema::parse_str(r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#)?;
//! let v2 = Schema::parse_str(r#"{"type":"record","name":"User","fields":[
//!     {"name":"id","type":"long"},{"name":"email","type":"string"}]}"#)?;
//! // A new field without a default: the new schema cannot read old data.
//! let failures = check(CompatibilityLevel::Backward, &v2, &[v1]);
//! assert_eq!(failures[0].incompatibility.kind.as_str(), "READER_FIELD_MISSING_DEFAULT_VALUE");
//! # Ok::<(), apache_avro::Error>(())
//! ```

pub mod api;
pub mod canonical;
pub mod compat;
pub mod levels;
pub mod registry;
pub mod store;
pub mod wire;
