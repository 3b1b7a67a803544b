//! The `postgres_query` source's settings: Confluent's JDBC source names in Sluice's
//! snake_case (`mode`, `table` / `query`, `incrementing_column`, `timestamp_column`,
//! `poll_interval`, `batch_max_rows`, `timestamp_delay`), checked with no I/O.

use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigIssue, ConfigSpec, ConfigValues, FieldKind, FieldSpec};

use crate::sink::settings::{issue, parse_connection, strings};

/// The settings of `type: postgres_query`.
pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("connection", FieldKind::Secret, "libpq key/value (`host=127.0.0.1 dbname=shop user=sluice password=…`) or a postgres:// URL"),
        FieldSpec::required("mode", strings(&["incrementing", "timestamp", "timestamp+incrementing", "bulk"]), "incrementing: new rows by a strictly increasing column; timestamp: new and changed rows by a timestamp column; timestamp+incrementing: both, the most reliable; bulk: the whole result at every poll. Deletes are never seen: use postgres_cdc for them"),
        FieldSpec::optional("table", FieldKind::String, None, "the table read (`schema.table` or `table`); or give `query`"),
        FieldSpec::optional("query", FieldKind::String, None, "a SELECT read instead of a table; Sluice wraps it (`SELECT * FROM (query) AS q WHERE …`), so it may have its own WHERE"),
        FieldSpec::optional("incrementing_column", FieldKind::String, None, "a strictly increasing integer column (a serial or identity key)"),
        FieldSpec::optional("timestamp_column", FieldKind::String, None, "a timestamp column set on every insert and update"),
        FieldSpec::optional("poll_interval", FieldKind::Duration, Some(json!("5s")), "how often the table is read once caught up"),
        FieldSpec::optional("batch_max_rows", FieldKind::Integer { min: 1, max: 1_000_000 }, Some(json!(1000)), "rows read per query at most"),
        FieldSpec::optional("timestamp_delay", FieldKind::Duration, Some(json!(0)), "rows newer than this are left for a later poll: set it above your longest transaction when rows are written by transactions that start long before they insert (their timestamps are their start times)"),
        FieldSpec::optional("key_columns", FieldKind::List(Box::new(FieldKind::String)), None, "columns that make the record key (a struct); default: no key"),
    ])
    .with_check(|c| QuerySettings::from_config(c).err().unwrap_or_default())
    .with_own_schemas()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Incrementing,
    Timestamp,
    TimestampIncrementing,
    Bulk,
}

/// What is read: a table (whose rows' transaction ids guard against rows committed out of
/// order), or a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Table(String),
    Query(String),
}

/// The settings, typed and checked.
#[derive(Clone)]
pub struct QuerySettings {
    pub connection: crate::tls::PgConnection,
    pub mode: Mode,
    pub read: Read,
    pub incrementing_column: Option<String>,
    pub timestamp_column: Option<String>,
    pub poll_interval: Duration,
    pub batch_max_rows: usize,
    pub timestamp_delay: Duration,
    pub key_columns: Vec<String>,
}

impl std::fmt::Debug for QuerySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySettings")
            .field("connection", &self.connection)
            .field("mode", &self.mode)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl QuerySettings {
    /// Every problem at once.
    pub fn from_config(c: &ConfigValues) -> Result<QuerySettings, Vec<ConfigIssue>> {
        let mut issues: Vec<ConfigIssue> = Vec::new();
        let connection = parse_connection(c, &mut issues);
        let mode = match c.str("mode") {
            Some("incrementing") => Mode::Incrementing,
            Some("timestamp") => Mode::Timestamp,
            Some("timestamp+incrementing") => Mode::TimestampIncrementing,
            _ => Mode::Bulk,
        };
        let nonempty = |k: &str| {
            c.str(k)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let read = match (nonempty("table"), nonempty("query")) {
            (Some(t), None) => Some(Read::Table(t)),
            (None, Some(q)) => Some(Read::Query(q.trim_end_matches(';').to_string())),
            (Some(_), Some(_)) => {
                issues.push(issue("query", "give `table` or `query`, not both"));
                None
            }
            (None, None) => {
                issues.push(issue("table", "give the `table` to read, or a `query`"));
                None
            }
        };
        let incrementing_column = nonempty("incrementing_column");
        let timestamp_column = nonempty("timestamp_column");
        let needs_id = matches!(mode, Mode::Incrementing | Mode::TimestampIncrementing);
        let needs_ts = matches!(mode, Mode::Timestamp | Mode::TimestampIncrementing);
        if needs_id && incrementing_column.is_none() {
            issues.push(issue(
                "incrementing_column",
                "this mode needs the strictly increasing column that orders new rows",
            ));
        }
        if needs_ts && timestamp_column.is_none() {
            issues.push(issue(
                "timestamp_column",
                "this mode needs the timestamp column set on every insert and update",
            ));
        }
        if !needs_id && incrementing_column.is_some() {
            issues.push(issue(
                "incrementing_column",
                "has no effect in this mode (use timestamp+incrementing)",
            ));
        }
        if !needs_ts && timestamp_column.is_some() {
            issues.push(issue(
                "timestamp_column",
                "has no effect in this mode (use timestamp or timestamp+incrementing)",
            ));
        }
        let (Some(connection), Some(read), true) = (connection, read, issues.is_empty()) else {
            return Err(issues);
        };
        Ok(QuerySettings {
            connection,
            mode,
            read,
            incrementing_column,
            timestamp_column,
            poll_interval: c
                .duration("poll_interval")
                .unwrap_or(Duration::from_secs(5)),
            batch_max_rows: c.int("batch_max_rows").unwrap_or(1000).max(1) as usize,
            timestamp_delay: c.duration("timestamp_delay").unwrap_or_default(),
            key_columns: c.strings("key_columns"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn check(settings: Json) -> Result<QuerySettings, String> {
        let values = spec()
            .validate(settings.as_object().unwrap())
            .map_err(|i| {
                i.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        QuerySettings::from_config(&values).map_err(|i| {
            i.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn modes_need_their_columns() {
        let s = check(json!({"connection": "host=h dbname=d", "mode": "timestamp+incrementing",
            "table": "public.orders", "incrementing_column": "id", "timestamp_column": "updated_at"}))
        .unwrap();
        assert_eq!(s.mode, Mode::TimestampIncrementing);
        assert_eq!(s.read, Read::Table("public.orders".into()));
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        let e = check(json!({"connection": "host=h dbname=d", "mode": "incrementing", "table": "t", "query": "SELECT 1"}))
            .unwrap_err();
        assert!(e.contains("`table` or `query`, not both"), "{e}");
        assert!(e.contains("`incrementing_column`: this mode needs"), "{e}");
        let e = check(
            json!({"connection": "host=h dbname=d", "mode": "bulk", "timestamp_column": "t"}),
        )
        .unwrap_err();
        assert!(e.contains("give the `table` to read"), "{e}");
        assert!(e.contains("`timestamp_column`: has no effect"), "{e}");
        let q = check(json!({"connection": "host=h dbname=d", "mode": "bulk", "query": "SELECT * FROM t WHERE a > 1;"}))
            .unwrap();
        assert_eq!(q.read, Read::Query("SELECT * FROM t WHERE a > 1".into()));
    }
}
