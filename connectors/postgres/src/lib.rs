//! # sluice-connector-postgres: Postgres sink and sources
//!
//! **Owns:** how Sluice reads from and writes to PostgreSQL. Registered: the `postgres_cdc`
//! source ([`cdc`]: changes captured through logical replication, in Debezium's event
//! format, exactly once into the log) and the `postgres` sink (issue 11), which applies
//! records to existing tables exactly once.
//!
//! Layout, along the sink's data path (record → row → statement → commit):
//! - [`sink::settings`]: the sink's settings with Confluent's names in Sluice's spelling
//!   (`connection`, `table`, `insert_mode`, `pk_mode`, `pk_fields`, `delete_enabled`,
//!   `auto_create`, `auto_evolve`), typed and checked with no I/O;
//! - [`sink::task`]: records become JSON rows (the key's fields merged for
//!   `pk_mode: record_key`, topic/partition/offset for `kafka`), tombstones deletes; each
//!   flush is one transaction; a statement refused for its data is applied again record by
//!   record under savepoints so only the bad records go to the error policy;
//! - [`sink::sql`]: the target table from the catalog (columns, primary key) and the
//!   set-based statements (`jsonb_populate_record` over one `jsonb` array, the last change
//!   per key for upserts);
//! - [`offsets`]: the positions consumed, written in the rows' transaction, with an epoch
//!   that fences out a zombie task once its successor has started.
//!
//! Not built yet, each refused at validation with a message saying so: `auto_create`,
//! `auto_evolve`, `${source.*}` table names (Debezium change events), TLS to Postgres.
//! Also not yet: the sink's binary COPY fast path, and the `postgres_query` source (not
//! registered).
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
pub mod offsets;
pub mod sink;

use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};

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
        name: "postgres".into(),
        description: "applies records to Postgres tables exactly once (rows and positions in one transaction), inserting, upserting, updating or deleting by key".into(),
        config: sink::settings::spec(),
        origin: Origin::BuiltIn,
        factory: Factory::Sink(Box::new(|c| Ok(Box::new(sink::PostgresSink::new(c))))),
    })
}
