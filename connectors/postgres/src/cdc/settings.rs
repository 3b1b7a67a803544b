//! The `postgres_cdc` source's settings: Debezium's names in Sluice's snake_case
//! (`snapshot_mode`, `tombstones_on_delete`, `skipped_operations`, `decimal_handling`,
//! `heartbeat_interval`, `message_key_columns`), typed and checked with no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{
    ConfigIssue, ConfigSpec, ConfigValues, FieldKind, FieldSpec, TopicsWritten,
};

use super::types::DecimalHandling;
use crate::sink::settings::{issue, parse_connection, strings};

/// The settings of `type: postgres_cdc`.
pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("connection", FieldKind::Secret, "libpq key/value (`host=127.0.0.1 dbname=shop user=sluice password=…`) or a postgres:// URL; the user needs the REPLICATION attribute"),
        FieldSpec::required("tables", FieldKind::List(Box::new(FieldKind::String)), "the tables captured, as schema.table; `*` and `?` match any text and any one character (`public.*`)"),
        FieldSpec::required("topic_prefix", FieldKind::String, "topics are <topic_prefix>.<schema>.<table> (Debezium's topic.prefix)"),
        FieldSpec::optional("slot", FieldKind::String, None, "the logical replication slot, created if missing (default: sluice_<topic_prefix>)"),
        FieldSpec::optional("publication", FieldKind::String, None, "the publication, created for `tables` if missing (default: sluice_<topic_prefix>)"),
        FieldSpec::optional("snapshot_mode", strings(&["initial", "no_data", "initial_only", "when_needed", "always"]), Some(json!("initial")), "initial: the tables' rows first, then changes; no_data: changes only; initial_only: the rows and no changes; when_needed: a snapshot whenever there is no usable position; always: a snapshot at every start"),
        FieldSpec::optional("tombstones_on_delete", FieldKind::Boolean, Some(json!(true)), "a record with the deleted row's key and no value after each delete (for compacted topics)"),
        FieldSpec::optional("skipped_operations", FieldKind::String, Some(json!("t")), "operations not emitted, comma-separated: c (insert), u (update), d (delete), t (truncate); `none` emits all"),
        FieldSpec::optional("decimal_handling", strings(&["precise", "double", "string"]), Some(json!("precise")), "numeric columns as Connect's Decimal (precise), a double, or text"),
        FieldSpec::optional("heartbeat_interval", FieldKind::Duration, Some(json!(0)), "how often a heartbeat is written to the connector's own topic (sluice-heartbeat.<topic_prefix>) and confirmed to the slot while the captured tables are idle; 0: never (the slot is still confirmed on the server's keepalives)"),
        FieldSpec::optional("message_key_columns", FieldKind::String, None, "keys other than the primary key, as Debezium writes them: `public.orders:customer_id,id;public.items:sku`"),
        FieldSpec::optional("status_interval", FieldKind::Duration, Some(json!("10s")), "how often the slot's position is confirmed to the server"),
    ])
    .with_check(|c| CdcSettings::from_config(c).err().unwrap_or_default())
    .with_source_topics(|c| {
        let prefix = c.str("topic_prefix").unwrap_or_default();
        TopicsWritten {
            own: heartbeat_topic(prefix),
            prefixes: vec![format!("{prefix}.")],
        }
    })
    .with_own_schemas()
}

/// Where heartbeats go: the connector's own topic.
pub fn heartbeat_topic(prefix: &str) -> String {
    format!("sluice-heartbeat.{prefix}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    Initial,
    NoData,
    InitialOnly,
    WhenNeeded,
    Always,
}

/// A `tables` entry: a schema and a table pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    pub schema: String,
    pub table: String,
}

impl TablePattern {
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        glob(&self.schema, schema) && glob(&self.table, table)
    }

    pub fn is_literal(&self) -> bool {
        !(self.schema.contains(['*', '?']) || self.table.contains(['*', '?']))
    }
}

impl std::fmt::Display for TablePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// `*` and `?` wildcards.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The typed settings.
#[derive(Clone)]
pub struct CdcSettings {
    pub connection: crate::tls::PgConnection,
    pub tables: Vec<TablePattern>,
    pub topic_prefix: String,
    pub slot: String,
    pub publication: String,
    pub snapshot_mode: SnapshotMode,
    pub tombstones_on_delete: bool,
    /// `c`, `u`, `d`, `t`.
    pub skipped: Vec<char>,
    pub decimals: DecimalHandling,
    pub heartbeat_interval: Option<Duration>,
    /// schema.table → key columns.
    pub key_columns: BTreeMap<String, Vec<String>>,
    pub status_interval: Duration,
}

impl std::fmt::Debug for CdcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection holds the password: only where it goes is shown.
        f.debug_struct("CdcSettings")
            .field("hosts", &self.connection.get_hosts())
            .field("dbname", &self.connection.get_dbname())
            .field("tables", &self.tables)
            .field("topic_prefix", &self.topic_prefix)
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .finish_non_exhaustive()
    }
}

/// Postgres' rule for slot names: lower-case letters, digits and `_`, at most 63.
fn valid_slot(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn default_name(prefix: &str) -> String {
    let mut name: String = format!("sluice_{prefix}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(63);
    name
}

impl CdcSettings {
    /// Every problem at once.
    pub fn from_config(c: &ConfigValues) -> Result<CdcSettings, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let connection = parse_connection(c, &mut issues);
        let mut tables = Vec::new();
        let listed = c.strings("tables");
        if listed.is_empty() {
            issues.push(issue(
                "tables",
                "names no table (add `schema.table` entries)",
            ));
        }
        for entry in listed {
            match entry.split_once('.') {
                Some((schema, table)) if !schema.is_empty() && !table.is_empty() => {
                    tables.push(TablePattern {
                        schema: schema.to_string(),
                        table: table.to_string(),
                    })
                }
                _ => issues.push(issue(
                    "tables",
                    format!("`{entry}` is not schema.table (write `public.{entry}`)"),
                )),
            }
        }
        let topic_prefix = c.str("topic_prefix").unwrap_or_default().to_string();
        if topic_prefix.is_empty()
            || !topic_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        {
            issues.push(issue(
                "topic_prefix",
                format!("`{topic_prefix}` is not usable in topic names (letters, digits, `.`, `_`, `-`)"),
            ));
        }
        let slot = c
            .str("slot")
            .map(str::to_string)
            .unwrap_or_else(|| default_name(&topic_prefix));
        if !valid_slot(&slot) {
            issues.push(issue(
                "slot",
                format!("`{slot}` is not a slot name Postgres takes (lower-case letters, digits and `_`, at most 63)"),
            ));
        }
        let publication = c
            .str("publication")
            .map(str::to_string)
            .unwrap_or_else(|| default_name(&topic_prefix));
        if publication.is_empty() || publication.len() > 63 {
            issues.push(issue("publication", "must be 1 to 63 characters"));
        }
        let snapshot_mode = match c.str("snapshot_mode") {
            Some("no_data") => SnapshotMode::NoData,
            Some("initial_only") => SnapshotMode::InitialOnly,
            Some("when_needed") => SnapshotMode::WhenNeeded,
            Some("always") => SnapshotMode::Always,
            _ => SnapshotMode::Initial,
        };
        let mut skipped = Vec::new();
        for op in c.str("skipped_operations").unwrap_or("t").split(',') {
            match op.trim() {
                "none" | "" => {}
                o @ ("c" | "u" | "d" | "t") => skipped.extend(o.chars()),
                other => issues.push(issue(
                    "skipped_operations",
                    format!("`{other}` is not an operation (c, u, d, t or none)"),
                )),
            }
        }
        let decimals = match c.str("decimal_handling") {
            Some("double") => DecimalHandling::Double,
            Some("string") => DecimalHandling::String,
            _ => DecimalHandling::Precise,
        };
        let heartbeat_interval = c.duration("heartbeat_interval").filter(|d| !d.is_zero());
        let mut key_columns = BTreeMap::new();
        if let Some(text) = c.str("message_key_columns") {
            for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                match part.split_once(':') {
                    Some((table, cols)) if table.contains('.') && !cols.trim().is_empty() => {
                        key_columns.insert(
                            table.trim().to_string(),
                            cols.split(',').map(|c| c.trim().to_string()).collect(),
                        );
                    }
                    _ => issues.push(issue(
                        "message_key_columns",
                        format!("`{part}` is not schema.table:column[,column…]"),
                    )),
                }
            }
        }
        let status_interval = c
            .duration("status_interval")
            .unwrap_or(Duration::from_secs(10))
            .max(Duration::from_millis(100));
        let (Some(connection), true) = (connection, issues.is_empty()) else {
            return Err(issues);
        };
        Ok(CdcSettings {
            connection,
            tables,
            topic_prefix,
            slot,
            publication,
            snapshot_mode,
            tombstones_on_delete: c.bool("tombstones_on_delete").unwrap_or(true),
            skipped,
            decimals,
            heartbeat_interval,
            key_columns,
            status_interval,
        })
    }

    pub fn captures(&self, schema: &str, table: &str) -> bool {
        self.tables.iter().any(|t| t.matches(schema, table))
    }

    pub fn skips(&self, op: char) -> bool {
        self.skipped.contains(&op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_sdk::config::ConfigSpec;

    fn checked(v: serde_json::Value) -> Result<CdcSettings, Vec<String>> {
        let spec: ConfigSpec = spec();
        let values = spec
            .validate(v.as_object().unwrap())
            .map_err(|i| i.iter().map(|i| i.to_string()).collect::<Vec<_>>())?;
        CdcSettings::from_config(&values).map_err(|i| i.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn the_issues_example_is_typed() {
        let s = checked(json!({
            "connection": "host=127.0.0.1 port=5432 dbname=shop user=sluice password=pw",
            "tables": ["public.orders", "public.customers"],
            "topic_prefix": "shop",
            "slot": "sluice_shop",
            "publication": "sluice_shop",
            "snapshot_mode": "initial",
        }))
        .unwrap();
        assert_eq!(s.tables.len(), 2);
        assert!(s.captures("public", "orders") && !s.captures("public", "other"));
        assert_eq!(s.skipped, vec!['t']);
        assert!(s.tombstones_on_delete);
        assert_eq!(s.heartbeat_interval, None);
        let defaults = checked(json!({
            "connection": "host=h dbname=d", "tables": ["public.*"], "topic_prefix": "Shop-1"
        }))
        .unwrap();
        assert_eq!(defaults.slot, "sluice_shop_1");
        assert!(defaults.captures("public", "anything"));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = checked(json!({
            "connection": "host=h dbname=d", "tables": ["orders"], "topic_prefix": "shop",
            "slot": "Bad-Slot", "skipped_operations": "x", "snapshot_mode": "never",
            "message_key_columns": "orders"
        }))
        .unwrap_err()
        .join("\n");
        assert!(
            e.contains("snapshot_mode") && e.contains("\"never\""),
            "{e}"
        );
        let e = checked(json!({
            "connection": "host=h dbname=d", "tables": ["orders"], "topic_prefix": "shop",
            "slot": "Bad-Slot", "skipped_operations": "x", "message_key_columns": "orders"
        }))
        .unwrap_err()
        .join("\n");
        assert!(e.contains("`orders` is not schema.table"), "{e}");
        assert!(e.contains("`Bad-Slot` is not a slot name"), "{e}");
        assert!(e.contains("`x` is not an operation"), "{e}");
        assert!(e.contains("`orders` is not schema.table:column"), "{e}");
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("ord*", "orders"));
        assert!(glob("o?ders", "orders"));
        assert!(!glob("ord*s", "ordering"));
        assert!(glob("*_log", "audit_log"));
    }
}
