//! The `postgres_cdc` source: Postgres changes captured through logical replication
//! (`pgoutput`), in Debezium's event format.
//!
//! Layout, along the data path (WAL → message → event → record):
//! - [`settings`]: Debezium's settings in snake_case, checked with no I/O;
//! - [`setup`]: what is checked before anything starts (reachable, password, `wal_level`,
//!   REPLICATION, the tables and their replica identity), the publication, the slot;
//! - [`replication`]: our replication connection (startup, SCRAM, CopyBoth, status updates);
//! - [`pgoutput`]: the decoder of the logical decoding messages (fuzzed);
//! - [`types`]: column types as Debezium maps them, values from Postgres' text output;
//! - [`event`]: the envelope (`before`, `after`, `source`, `op`, `ts_ms`) and its schemas;
//! - [`snapshot`]: the tables' rows read by COPY inside the slot's exported snapshot;
//! - [`stream`]: transactions into records, positions, and what may be confirmed;
//! - [`task`]: the source task: a capture thread feeding `poll` through a bounded channel,
//!   `committed` confirming LSNs to the slot only once the events are in the log.
//!
//! ## Positions
//! Every record carries its position in the slot's stream (`postgres_cdc:<slot>`):
//! `{"lsn": <commit LSN>, "seq": <n-th event of the transaction>}`, and the last event of a
//! transaction also `"end": <end LSN>`. Snapshot reads carry
//! `{"snapshot_lsn": …, "done": [tables read], "table": …, "last": bool}`. A restart resumes
//! after the last committed position: the server sends the transaction again and the events
//! already committed are skipped; those appended but not yet committed when the process died
//! are dropped by the runtime, which reads back what each partition holds
//! ([`task::CdcTask`]'s `position_order`). The slot is confirmed only up to transactions
//! whose every event is committed.
//!
//! ```
//! use sluice_connector_postgres::cdc::lsn::Lsn;
//! let l: Lsn = "16/B374D848".parse().unwrap();
//! assert_eq!(l.to_string(), "16/B374D848");
//! ```

pub mod event;
pub mod lsn;
pub mod pgoutput;
pub mod replication;
pub mod settings;
pub mod setup;
pub mod snapshot;
pub mod stream;
pub mod task;
pub mod types;

use sluice_connector_sdk::config::ConfigValues;
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SourceConnector, SourceTask, TaskInfo,
};

pub use replication::ServerError;

/// What can go wrong capturing changes, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdcError {
    #[error("settings: {0}")]
    Config(String),
    #[error("cannot reach Postgres at {0}; is the server running and listening there?")]
    Unreachable(String),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("Postgres refused: {0}")]
    Server(ServerError),
    #[error("the connection to Postgres was lost: {0}")]
    Lost(String),
    #[error("unexpected bytes from Postgres: {0}")]
    Protocol(String),
    /// The database is not set up for capture; the message says what to change.
    #[error("{0}")]
    Setup(String),
    /// Transient, with a message for the log (a slot still held by a previous session).
    #[error("{0}")]
    Busy(String),
}

impl CdcError {
    pub fn from_server(e: ServerError) -> CdcError {
        match e.code.as_str() {
            "28P01" | "28000" => CdcError::Auth(e.to_string()),
            _ => CdcError::Server(e),
        }
    }

    /// Whether trying again later can help.
    pub fn is_retriable(&self) -> bool {
        match self {
            CdcError::Unreachable(_) | CdcError::Lost(_) | CdcError::Busy(_) => true,
            CdcError::Server(e) => crate::client::retry_can_help(&e.code),
            _ => false,
        }
    }

    pub fn to_connector(&self) -> ConnectorError {
        if self.is_retriable() {
            ConnectorError::retriable(self.to_string())
        } else {
            ConnectorError::fatal(self.to_string())
        }
    }
}

impl From<crate::client::OpenError> for CdcError {
    fn from(e: crate::client::OpenError) -> CdcError {
        match (e.tls_problem(), e) {
            (Some(tls), _) => CdcError::Config(tls),
            (None, crate::client::OpenError::Postgres(e)) => CdcError::from(e),
            (None, e) => CdcError::Config(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for CdcError {
    fn from(e: tokio_postgres::Error) -> CdcError {
        if let Some(db) = e.as_db_error() {
            return CdcError::from_server(ServerError {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            });
        }
        if e.is_closed() {
            return CdcError::Lost(e.to_string());
        }
        let text = e.to_string();
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        match source {
            Some(s) if text.contains("connect") || s.contains("refused") => {
                CdcError::Unreachable(s)
            }
            Some(s) if s.contains("password") => CdcError::Auth(s),
            Some(s) => CdcError::Lost(format!("{text}: {s}")),
            None => CdcError::Lost(text),
        }
    }
}

/// The connector: one task (a slot is read by one connection).
pub struct PostgresCdc {
    config: ConfigValues,
}

impl PostgresCdc {
    pub fn new(config: ConfigValues) -> PostgresCdc {
        PostgresCdc { config }
    }
}

impl SourceConnector for PostgresCdc {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.config.clone()])
    }

    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let settings = settings::CdcSettings::from_config(&config)
            .map_err(|issues| crate::settings_error(&issues))?;
        Ok(Box::new(task::CdcTask::new(info, settings)))
    }
}
