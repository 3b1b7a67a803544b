//! # sluice-connector-postgres: Postgres sink and sources (in progress)
//!
//! **Owns:** how Sluice reads from and writes to PostgreSQL. Built so far, for the
//! `postgres` sink of issue 11:
//! - [`sink::settings`]: the sink's settings with Confluent's names in Sluice's spelling
//!   (`connection`, `table`, `insert_mode`, `pk_mode`, `pk_fields`, `delete_enabled`,
//!   `auto_create`, `auto_evolve`), typed and checked with no I/O;
//! - [`offsets`]: exactly once into the target database: the positions a sink consumed,
//!   kept in a table of Sluice's beside the rows and written in the same transaction, with
//!   an epoch that fences out a zombie task once its successor has started.
//!
//! Not built yet (and not registered, so a pipeline naming `postgres`, `postgres_cdc` or
//! `postgres_query` gets the registry's "no … connector type" error): the sink's task
//! (binary COPY into a staging table, set-based upsert and delete), the `postgres_cdc`
//! source of issue 10 and the `postgres_query` source.
//!
//! **Must not touch:** topics, the log, converters: the runtime does those through the SDK
//! traits. Plain SQL goes through `tokio-postgres`.
//!
//! ```
//! use sluice_connector_postgres::sink::settings::TableTemplate;
//! let t = TableTemplate::parse("${topic}").unwrap();
//! assert_eq!(t.render("shop.public.orders", None, None), "shop_public_orders");
//! ```

pub mod offsets;
pub mod sink;
