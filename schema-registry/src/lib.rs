//! # sluice-schema-registry: schemas, subjects, versions, ids, and Avro compatibility
//!
//! **Owns:** the registry's rules (subjects, versions, global ids, soft and hard deletes,
//! configs, modes) and which schema evolutions are compatible under each of the seven
//! Confluent compatibility levels, written from the Avro specification (see [`compat`] for
//! where it departs from `apache-avro`'s own checker and why); the Confluent v1 REST API
//! over them; the Confluent wire format.
//!
//! **Must not touch:** the log's bytes (it stores its records through `sluice-log`'s API in
//! the internal topic `__schemas`) or the Kafka protocol.
//!
//! ## Layout
//! - [`compat`]: reader/writer compatibility with every incompatibility and its location.
//! - [`levels`]: NONE … FULL_TRANSITIVE and which versions each checks.
//! - [`canonical`]: the normalized text that decides "same schema, same id".
//! - [`registry`]: the state and its operations; [`store`]: records in `__schemas`.
//! - [`api`]: the axum router (optionally behind basic/bearer authentication).
//! - [`metrics`]: requests by route and status (Prometheus).
//! - [`serve`]: the listener, opened under the one listener policy of every command.
//! - [`wire`]: Confluent framing, encode/decode with reader-schema resolution.
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
pub mod metrics;
pub mod registry;
pub mod serve;
pub mod store;
pub mod wire;
