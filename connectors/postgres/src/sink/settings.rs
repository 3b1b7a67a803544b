//! The `postgres` sink's settings: Confluent's JDBC sink names in Sluice's snake_case
//! (`insert_mode`, `pk_mode`, `pk_fields`, `delete_enabled`, `auto_create`,
//! `auto_evolve`), and the rules that tie them together, checked with no I/O.

use serde_json::{json, Value as Json};
use sluice_connector_sdk::config::{ConfigIssue, ConfigSpec, ConfigValues, FieldKind, FieldSpec};

pub(crate) fn strings(options: &[&str]) -> FieldKind {
    FieldKind::OneOf(options.iter().map(|o| o.to_string()).collect())
}

pub(crate) fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: Some(key.to_string()),
        message: message.into(),
    }
}

/// The settings of `type: postgres`.
pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("connection", FieldKind::Secret, "libpq key/value (`host=127.0.0.1 dbname=replica user=sluice password=…`) or a postgres:// URL; sslmode honoured"),
        FieldSpec::optional("table", FieldKind::String, Some(json!("${topic}")), "the target table: a template with ${topic} (dots become `_`), ${source.schema} and ${source.table}; a literal `.` separates schema and table"),
        FieldSpec::optional("insert_mode", strings(&["insert", "upsert", "update"]), Some(json!("insert")), "`insert`: new rows; `upsert`: insert or update by primary key; `update`: update existing rows only"),
        FieldSpec::optional("pk_mode", strings(&["none", "kafka", "record_key", "record_value"]), Some(json!("none")), "where the primary key comes from: nowhere, the record's topic/partition/offset, its key, or fields of its value"),
        FieldSpec::optional("pk_fields", FieldKind::List(Box::new(FieldKind::String)), None, "the primary key's columns (default: every field of the key; for `kafka`: __connect_topic, __connect_partition, __connect_offset)"),
        FieldSpec::optional("delete_enabled", FieldKind::Boolean, Some(json!(false)), "a tombstone (a record without a value) deletes its row; needs `pk_mode: record_key`"),
        FieldSpec::optional("auto_create", FieldKind::Boolean, Some(json!(false)), "CREATE TABLE from the record schema when the table is missing"),
        FieldSpec::optional("auto_evolve", FieldKind::Boolean, Some(json!(false)), "ALTER TABLE ADD COLUMN for new optional fields; never drops or retypes a column"),
        FieldSpec::optional("batch_size", FieldKind::Integer { min: 1, max: 1_000_000 }, Some(json!(10_000)), "records written in one transaction once this many are pending (Confluent's batch.size); fewer wait up to `batch_linger` for more"),
        FieldSpec::optional("batch_linger", FieldKind::Duration, Some(json!("100ms")), "how long records may wait for a fuller batch; each transaction costs round trips and a commit"),
    ])
    .with_check(|c| SinkSettings::from_config(c).err().unwrap_or_default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    Insert,
    Upsert,
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkMode {
    None,
    Kafka,
    RecordKey,
    RecordValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Topic,
    SourceSchema,
    SourceTable,
}

/// The `table` setting, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTemplate {
    parts: Vec<Part>,
}

/// A `table` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableTemplateError {
    #[error(
        "unknown placeholder `${{{0}}}` (known: ${{topic}}, ${{source.schema}}, ${{source.table}})"
    )]
    Unknown(String),
    #[error("`${{` is never closed with `}}`")]
    Unclosed,
    #[error("the table name is empty")]
    Empty,
}

impl TableTemplate {
    pub fn parse(text: &str) -> Result<TableTemplate, TableTemplateError> {
        if text.trim().is_empty() {
            return Err(TableTemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or(TableTemplateError::Unclosed)?;
            parts.push(match &after[..end] {
                "topic" => Part::Topic,
                "source.schema" => Part::SourceSchema,
                "source.table" => Part::SourceTable,
                other => return Err(TableTemplateError::Unknown(other.to_string())),
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(TableTemplate { parts })
    }

    /// Whether the name needs a change event's `source` block.
    pub fn uses_source(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::SourceSchema | Part::SourceTable))
    }

    /// The table for a record of `topic` (and, for change events, the source's schema and
    /// table). Placeholder values never add a schema separator: their dots become `_`.
    pub fn render(&self, topic: &str, schema: Option<&str>, table: Option<&str>) -> String {
        let clean = |s: &str| s.replace('.', "_");
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(t) => t.clone(),
                Part::Topic => clean(topic),
                Part::SourceSchema => clean(schema.unwrap_or("public")),
                Part::SourceTable => clean(table.unwrap_or(topic)),
            })
            .collect()
    }
}

/// The sink's settings, typed and checked.
#[derive(Clone)]
pub struct SinkSettings {
    pub connection: crate::tls::PgConnection,
    pub table: TableTemplate,
    pub insert_mode: InsertMode,
    pub pk_mode: PkMode,
    pub pk_fields: Vec<String>,
    pub delete_enabled: bool,
    pub auto_create: bool,
    pub auto_evolve: bool,
    pub batch_size: usize,
    pub batch_linger: std::time::Duration,
}

impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-postgres' Config redacts the password itself; the rest is plain.
        f.debug_struct("SinkSettings")
            .field("connection", &self.connection)
            .field("table", &self.table)
            .field("insert_mode", &self.insert_mode)
            .field("pk_mode", &self.pk_mode)
            .field("pk_fields", &self.pk_fields)
            .field("delete_enabled", &self.delete_enabled)
            .field("auto_create", &self.auto_create)
            .field("auto_evolve", &self.auto_evolve)
            .field("batch_size", &self.batch_size)
            .field("batch_linger", &self.batch_linger)
            .finish()
    }
}

impl SinkSettings {
    /// Every problem at once.
    pub fn from_config(c: &ConfigValues) -> Result<SinkSettings, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let connection = parse_connection(c, &mut issues);
        let table = TableTemplate::parse(c.str("table").unwrap_or("${topic}"))
            .map_err(|e| issues.push(issue("table", e.to_string())))
            .ok();
        let insert_mode = match c.str("insert_mode") {
            Some("upsert") => InsertMode::Upsert,
            Some("update") => InsertMode::Update,
            _ => InsertMode::Insert,
        };
        let pk_mode = match c.str("pk_mode") {
            Some("kafka") => PkMode::Kafka,
            Some("record_key") => PkMode::RecordKey,
            Some("record_value") => PkMode::RecordValue,
            _ => PkMode::None,
        };
        let pk_fields = c.strings("pk_fields");
        let delete_enabled = c.bool("delete_enabled").unwrap_or(false);
        if insert_mode != InsertMode::Insert && pk_mode == PkMode::None {
            issues.push(issue(
                "insert_mode",
                "`upsert` and `update` find rows by primary key: set `pk_mode` (record_key, record_value or kafka)",
            ));
        }
        if delete_enabled && pk_mode != PkMode::RecordKey {
            issues.push(issue(
                "delete_enabled",
                "a tombstone names its row by the record key: needs `pk_mode: record_key`",
            ));
        }
        if pk_mode == PkMode::None && !pk_fields.is_empty() {
            issues.push(issue("pk_fields", "has no effect with `pk_mode: none`"));
        }
        if pk_mode == PkMode::Kafka && !pk_fields.is_empty() && pk_fields.len() != 3 {
            issues.push(issue(
                "pk_fields",
                "with `pk_mode: kafka` names three columns: topic, partition and offset",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &pk_fields {
            if f.is_empty() {
                issues.push(issue("pk_fields", "a column name is empty"));
            } else if !seen.insert(f) {
                issues.push(issue("pk_fields", format!("`{f}` is named twice")));
            }
        }
        let (Some(connection), Some(table), true) = (connection, table, issues.is_empty()) else {
            return Err(issues);
        };
        Ok(SinkSettings {
            connection,
            table,
            insert_mode,
            pk_mode,
            pk_fields,
            delete_enabled,
            auto_create: c.bool("auto_create").unwrap_or(false),
            auto_evolve: c.bool("auto_evolve").unwrap_or(false),
            batch_size: c.int("batch_size").unwrap_or(10_000).max(1) as usize,
            batch_linger: c
                .duration("batch_linger")
                .unwrap_or(std::time::Duration::from_millis(100)),
        })
    }
}

/// The `connection` setting (libpq key/value or a postgres:// URL), checked with no I/O;
/// its problems are added to `issues`.
pub(crate) fn parse_connection(
    c: &ConfigValues,
    issues: &mut Vec<ConfigIssue>,
) -> Option<crate::tls::PgConnection> {
    let connection = crate::tls::PgConnection::parse(c.str("connection").unwrap_or_default())
        .map_err(|e| {
            issues.push(issue(
                "connection",
                format!("not a libpq connection string or postgres:// URL: {e}"),
            ))
        })
        .ok()?;
    if connection.get_hosts().is_empty() {
        issues.push(issue("connection", "names no host (add `host=…`)"));
    }
    if connection.get_dbname().is_none() {
        issues.push(issue("connection", "names no database (add `dbname=…`)"));
    }
    Some(connection)
}

/// A value for tests and examples: the spec's defaults over `settings`.
pub fn checked(settings: Json) -> Result<SinkSettings, Vec<String>> {
    let object = settings.as_object().cloned().unwrap_or_default();
    let values = spec()
        .validate(&object)
        .map_err(|issues| issues.iter().map(|i| i.to_string()).collect::<Vec<_>>())?;
    SinkSettings::from_config(&values).map_err(|i| i.iter().map(|i| i.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_example_is_typed() {
        let s = checked(json!({
            "connection": "host=127.0.0.1 port=5433 dbname=replica user=sluice password=s3cret",
            "table": "orders",
            "insert_mode": "upsert",
            "pk_mode": "record_key",
            "pk_fields": ["id"],
            "delete_enabled": true,
        }))
        .unwrap();
        assert_eq!(
            (s.insert_mode, s.pk_mode),
            (InsertMode::Upsert, PkMode::RecordKey)
        );
        assert_eq!(s.connection.get_ports(), &[5433]);
        assert_eq!(s.connection.get_dbname(), Some("replica"));
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "the password never in Debug"
        );
        let url =
            checked(json!({"connection": "postgres://u:pw@127.0.0.1:5432/db?sslmode=disable"}))
                .unwrap();
        assert_eq!(url.connection.get_user(), Some("u"));
    }

    #[test]
    fn settings_that_contradict_each_other_are_named() {
        let errors = checked(json!({
            "connection": "host=127.0.0.1 dbname=d",
            "insert_mode": "upsert",
            "delete_enabled": true,
            "pk_fields": ["id", "id"],
        }))
        .unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("`insert_mode`: `upsert` and `update` find rows by primary key"),
            "{all}"
        );
        assert!(
            all.contains("`delete_enabled`: a tombstone names its row by the record key"),
            "{all}"
        );
        assert!(
            all.contains("`pk_fields`: has no effect with `pk_mode: none`"),
            "{all}"
        );
        assert!(all.contains("`id` is named twice"), "{all}");
        let errors = checked(json!({"connection": "host=127.0.0.1 port=x dbname=d"})).unwrap_err();
        assert!(
            errors[0].contains("`connection`: not a libpq connection string"),
            "{errors:?}"
        );
        let errors = checked(json!({"connection": "user=u"}))
            .unwrap_err()
            .join("\n");
        assert!(
            errors.contains("names no host") && errors.contains("names no database"),
            "{errors}"
        );
        let errors =
            checked(json!({"connection": "host=h dbname=d", "table": "${topik}"})).unwrap_err();
        assert!(
            errors[0].contains("unknown placeholder `${topik}`"),
            "{errors:?}"
        );
    }

    #[test]
    fn table_names_come_from_the_topic_or_the_change_events_source() {
        let t = TableTemplate::parse("${topic}").unwrap();
        assert_eq!(
            t.render("shop.public.orders", None, None),
            "shop_public_orders"
        );
        assert!(!t.uses_source());
        let t = TableTemplate::parse("replica.${source.table}").unwrap();
        assert!(t.uses_source());
        assert_eq!(
            t.render("shop.public.orders", Some("public"), Some("orders")),
            "replica.orders"
        );
        let t = TableTemplate::parse("${source.schema}_${source.table}").unwrap();
        assert_eq!(
            t.render("t", Some("sales"), Some("line.items")),
            "sales_line_items"
        );
        assert_eq!(TableTemplate::parse(" "), Err(TableTemplateError::Empty));
        assert_eq!(
            TableTemplate::parse("a_${topic"),
            Err(TableTemplateError::Unclosed)
        );
    }
}
