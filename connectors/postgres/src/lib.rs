//! # sluice-connector-postgres: Postgres sink and sources
//!
//! **Owns:** how Sluice reads from and writes to PostgreSQL. Registered: the `postgres_cdc`
//! source ([`cdc`]: changes captured through logical replication, in Debezium's event
//! format, exactly once into the log), the `postgres_query` source ([`query`]: Confluent's
//! JDBC source modes over a table or a query), and the `postgres` sink ([`sink`]), which
//! applies records and change events to tables exactly once.
//!
//! Layout of the sink, along its data path (record → change → row → COPY/statement →
//! commit):
//! - [`sink::settings`]: Confluent's names in Sluice's spelling (`connection`, `table`,
//!   `insert_mode`, `pk_mode`, `pk_fields`, `delete_enabled`, `auto_create`, `auto_evolve`,
//!   `batch_size`), typed and checked with no I/O;
//! - [`sink::record`]: what a record asks: a row, a delete, a truncate; Debezium change
//!   events applied as what they describe, unavailable TOASTed columns left out;
//! - [`sink::types`]: what the record's schema says (Connect's and Debezium's semantic
//!   names): column types for `auto_create`/`auto_evolve`, values converted for Postgres;
//! - [`sink::task`]: batches applied in one transaction with their positions; a batch
//!   refused for its data applied again record by record under savepoints;
//! - [`sink::copy`]: the fast path (COPY straight from the rows; a staging table and one
//!   set-based statement for upserts, updates and deletes); [`sink::sql`] the catalog and
//!   the statements of the short-run path (`jsonb_populate_record`);
//! - [`offsets`]: the positions consumed, written in the rows' transaction, with an epoch
//!   that fences out a zombie task once its successor has started.
//!
//! TLS to Postgres follows libpq's `sslmode` (`tls`). Not built yet: binary COPY.
//!
//! **Must not touch:** topics, the log, converters: the runtime does those through the SDK
//! traits. Plain SQL goes through `tokio-postgres`; the replication protocol and the
//! `pgoutput` decoder are our own ([`cdc::replication`], [`cdc::pgoutput`]).
//!
//! ```
//! use sluice_connector_postgres::sink::settings::TableTemplate;
//! let t = TableTemplate::parse("${topic}").unwrap();
//! assert_eq!(t.render("shop.public.orders", None, None), "shop_public_orders");
//! ```

pub mod cdc;
pub mod client;
pub mod offsets;
pub mod query;
pub mod sink;
pub mod tls;

use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};

/// Settings that do not check out, as the error that stops a task (the runtime validated
/// them already, so this is for settings changed behind its back).
pub(crate) fn settings_error(
    issues: &[sluice_connector_sdk::config::ConfigIssue],
) -> sluice_connector_sdk::connector::ConnectorError {
    sluice_connector_sdk::connector::ConnectorError::fatal(
        issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Adds `postgres` as a sink type and `postgres_cdc` as a source type.
pub fn register(registry: &mut ConnectorRegistry) -> Result<(), RegistryError> {
    registry.register(ConnectorType {
        name: "postgres_cdc".into(),
        description: "captures inserts, updates, deletes and truncates of Postgres tables through logical replication (pgoutput), after a consistent snapshot, as Debezium change events; the slot is confirmed only once events are in the log".into(),
        config: cdc::settings::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| Ok(Box::new(cdc::PostgresCdc::new(c))))),
    })?;
    registry.register(ConnectorType {
        name: "postgres_query".into(),
        description: "reads a table or a query again and again, handing over the rows past its watermark (Confluent's JDBC source modes: incrementing, timestamp, timestamp+incrementing, bulk); deletes are not seen".into(),
        config: query::settings::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| Ok(Box::new(query::PostgresQuery::new(c))))),
    })?;
    registry.register(ConnectorType {
        name: "postgres".into(),
        description: "applies records to Postgres tables exactly once (rows and positions in one transaction), inserting, upserting, updating or deleting by key".into(),
        config: sink::settings::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|c| Ok(Box::new(sink::PostgresSink::new(c))))),
    })
}
