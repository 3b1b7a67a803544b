//! Change events in Debezium's envelope: per table a key schema (`<topic>.Key`, the key
//! columns) and an envelope schema (`<topic>.Envelope`: `before`, `after`, `source`,
//! `transaction`, `op`, `ts_ms`, `ts_us`, `ts_ns`), and the records built from rows.
//!
//! Every column is optional in the `Value` schema, so that adding a column is a compatible
//! change under the registry's default BACKWARD level. An unchanged TOASTed value that
//! Postgres did not send is null in `after` and named in the record header
//! [`UNAVAILABLE_HEADER`] (a JSON array of column names): a sink that honours the header
//! leaves those columns as they are, and no placeholder text can pass for data.

use std::sync::Arc;

use sluice_connector_sdk::connector::{SourcePosition, SourceRecord};
use sluice_connector_sdk::data::{Field, Payload, Schema, Value};

use super::types::{ColumnType, DecimalHandling};

/// The header that names the columns whose values Postgres did not send (unchanged
/// TOASTed values under REPLICA IDENTITY DEFAULT).
pub const UNAVAILABLE_HEADER: &str = "sluice.unavailable";

/// The version written in `source.version`.
pub const VERSION: &str = concat!("sluice-", env!("CARGO_PKG_VERSION"));

/// The envelope's and the `source` block's field names, shared by every event.
struct Names {
    envelope: [Arc<str>; 8],
    source: [Arc<str>; 14],
}

static NAMES: std::sync::LazyLock<Names> = std::sync::LazyLock::new(|| Names {
    envelope: [
        "before",
        "after",
        "source",
        "transaction",
        "op",
        "ts_ms",
        "ts_us",
        "ts_ns",
    ]
    .map(Arc::from),
    source: [
        "version",
        "connector",
        "name",
        "ts_ms",
        "snapshot",
        "db",
        "sequence",
        "ts_us",
        "ts_ns",
        "schema",
        "table",
        "txId",
        "lsn",
        "xmin",
    ]
    .map(Arc::from),
});

/// The `source` block's schema (Debezium's `io.debezium.connector.postgresql.Source`).
fn source_schema() -> Schema {
    let snapshot = Schema::Named {
        name: "io.debezium.data.Enum".into(),
        version: Some(1),
        parameters: vec![(
            "allowed".into(),
            "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
                .into(),
        )],
        schema: Box::new(Schema::String),
    };
    let mut snapshot_field = Field::optional("snapshot", snapshot);
    snapshot_field.default = Some(serde_json::json!("false"));
    // Avro wants a union's default to fit its first branch.
    if let Schema::Union(b) = &mut snapshot_field.schema {
        b.reverse();
    }
    Schema::Record {
        name: "io.debezium.connector.postgresql.Source".into(),
        fields: vec![
            Field::new("version", Schema::String),
            Field::new("connector", Schema::String),
            Field::new("name", Schema::String),
            Field::new("ts_ms", Schema::Long),
            snapshot_field,
            Field::new("db", Schema::String),
            Field::optional("sequence", Schema::String),
            Field::optional("ts_us", Schema::Long),
            Field::optional("ts_ns", Schema::Long),
            Field::new("schema", Schema::String),
            Field::new("table", Schema::String),
            Field::optional("txId", Schema::Long),
            Field::optional("lsn", Schema::Long),
            Field::optional("xmin", Schema::Long),
        ],
    }
}

fn transaction_schema() -> Schema {
    Schema::Record {
        name: "event.block".into(),
        fields: vec![
            Field::new("id", Schema::String),
            Field::new("total_order", Schema::Long),
            Field::new("data_collection_order", Schema::Long),
        ],
    }
}

/// What kind of change an event is (`op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

/// Where an event comes from, for its `source` block.
#[derive(Debug, Clone)]
pub struct SourceInfo<'a> {
    /// `topic_prefix` (Debezium's logical name).
    pub name: &'a str,
    pub db: &'a str,
    /// Commit time (events) or snapshot time (reads), in microseconds since the epoch.
    pub ts_us: i64,
    /// `true`, `first`, `last`, … for snapshot reads; `false` otherwise.
    pub snapshot: &'a str,
    pub tx_id: Option<u32>,
    pub lsn: Option<u64>,
    /// `[last commit LSN, this event's LSN]`, as Debezium writes it.
    pub sequence: Option<String>,
}

/// One table's event schemas and how rows become records; built again when a Relation
/// message changes the table's columns.
#[derive(Debug)]
pub struct TableEvents {
    pub topic: String,
    pub schema_name: String,
    pub table: String,
    pub columns: Vec<ColumnType>,
    /// The columns' field names (shared by every event's rows).
    names: Vec<Arc<str>>,
    /// Indexes of the key columns.
    pub key: Vec<usize>,
    key_schema: Option<Arc<Schema>>,
    envelope_schema: Arc<Schema>,
    decimals: DecimalHandling,
}

impl TableEvents {
    /// `key_override`: `message_key_columns` for this table (column names), else the
    /// columns the replica identity marks.
    pub fn new(
        topic_prefix: &str,
        schema_name: &str,
        table: &str,
        columns: Vec<ColumnType>,
        key_override: Option<&[String]>,
        decimals: DecimalHandling,
    ) -> Result<TableEvents, String> {
        let topic = format!("{topic_prefix}.{schema_name}.{table}");
        let key: Vec<usize> = match key_override {
            Some(names) => names
                .iter()
                .map(|n| {
                    columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                        format!("`message_key_columns` names `{n}`, which {schema_name}.{table} does not have")
                    })
                })
                .collect::<Result<_, _>>()?,
            None => (0..columns.len()).filter(|&i| columns[i].key).collect(),
        };
        let avro_name = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let base = avro_name(&topic);
        let key_schema = (!key.is_empty()).then(|| {
            Arc::new(Schema::Record {
                name: format!("{base}.Key"),
                fields: key
                    .iter()
                    .map(|&i| {
                        Field::new(field_name(&columns[i].name), columns[i].pg.schema(decimals))
                    })
                    .collect(),
            })
        });
        let row = Schema::Record {
            name: format!("{base}.Value"),
            fields: columns
                .iter()
                .map(|c| Field::optional(field_name(&c.name), c.pg.schema(decimals)))
                .collect(),
        };
        let envelope_schema = Arc::new(Schema::Named {
            name: format!("{base}.Envelope"),
            version: Some(2),
            parameters: Vec::new(),
            schema: Box::new(Schema::Record {
                name: format!("{base}.Envelope"),
                fields: vec![
                    Field::optional("before", row.clone()),
                    Field::optional("after", row),
                    Field::new("source", source_schema()),
                    Field::optional("transaction", transaction_schema()),
                    Field::new("op", Schema::String),
                    Field::optional("ts_ms", Schema::Long),
                    Field::optional("ts_us", Schema::Long),
                    Field::optional("ts_ns", Schema::Long),
                ],
            }),
        });
        let names = columns
            .iter()
            .map(|c| Arc::from(field_name(&c.name)))
            .collect();
        Ok(TableEvents {
            topic,
            schema_name: schema_name.to_string(),
            table: table.to_string(),
            columns,
            names,
            key,
            key_schema,
            envelope_schema,
            decimals,
        })
    }

    pub fn decimals(&self) -> DecimalHandling {
        self.decimals
    }

    /// The key of a row (`None`: the table has no key columns).
    pub fn key_of(&self, row: &[Value]) -> Option<Payload> {
        let schema = self.key_schema.as_ref()?;
        Some(Payload::Typed {
            schema: schema.clone(),
            value: Value::Record(
                self.key
                    .iter()
                    .map(|&i| {
                        let v = row.get(i).cloned().unwrap_or(Value::Null);
                        (self.names[i].clone(), v)
                    })
                    .collect(),
            ),
        })
    }

    fn row(&self, values: Option<Vec<Value>>) -> Value {
        match values {
            None => Value::Null,
            Some(v) => Value::Record(self.names.iter().cloned().zip(v).collect()),
        }
    }

    /// The record of one change. `before`/`after` are rows in column order.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        op: Op,
        key: Option<Payload>,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        source: &SourceInfo<'_>,
        now_us: i64,
        unavailable: &[String],
        position: SourcePosition,
    ) -> SourceRecord {
        let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Long);
        let [version, connector, name, ts_ms, snapshot, db, sequence, ts_us, ts_ns, schema, table, tx_id, lsn, xmin] =
            NAMES.source.clone();
        let source_block = Value::Record(vec![
            (version, Value::String(VERSION.into())),
            (connector, Value::String("postgresql".into())),
            (name, Value::String(source.name.into())),
            (ts_ms, Value::Long(source.ts_us.div_euclid(1000))),
            (snapshot, Value::String(source.snapshot.into())),
            (db, Value::String(source.db.into())),
            (
                sequence,
                source.sequence.clone().map_or(Value::Null, Value::String),
            ),
            (ts_us, Value::Long(source.ts_us)),
            (ts_ns, Value::Long(source.ts_us.saturating_mul(1000))),
            (schema, Value::String(self.schema_name.clone())),
            (table, Value::String(self.table.clone())),
            (tx_id, opt(source.tx_id.map(i64::from))),
            (lsn, opt(source.lsn.map(|l| l as i64))),
            (xmin, Value::Null),
        ]);
        let [before_n, after_n, source_n, transaction_n, op_n, ts_ms_n, ts_us_n, ts_ns_n] =
            NAMES.envelope.clone();
        let value = Value::Record(vec![
            (before_n, self.row(before)),
            (after_n, self.row(after)),
            (source_n, source_block),
            (transaction_n, Value::Null),
            (op_n, Value::String(op.code().into())),
            (ts_ms_n, Value::Long(now_us.div_euclid(1000))),
            (ts_us_n, Value::Long(now_us)),
            (ts_ns_n, Value::Long(now_us.saturating_mul(1000))),
        ]);
        let mut headers = Vec::new();
        if !unavailable.is_empty() {
            headers.push((
                UNAVAILABLE_HEADER.to_string(),
                serde_json::to_vec(unavailable).unwrap_or_default(),
            ));
        }
        SourceRecord {
            topic: Some(self.topic.clone()),
            partition: None,
            key,
            value: Some(Payload::Typed {
                schema: self.envelope_schema.clone(),
                value,
            }),
            headers,
            timestamp: Some(source.ts_us.div_euclid(1000)),
            position,
        }
    }

    /// The tombstone after a delete: the same key, no value.
    pub fn tombstone(
        &self,
        key: Option<Payload>,
        ts_ms: i64,
        position: SourcePosition,
    ) -> SourceRecord {
        SourceRecord {
            topic: Some(self.topic.clone()),
            partition: None,
            key,
            value: None,
            headers: Vec::new(),
            timestamp: Some(ts_ms),
            position,
        }
    }
}

/// A column name as an Avro field name (letters, digits and `_`, not starting with a digit).
pub fn field_name(column: &str) -> String {
    let mut name: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::types::PgType;

    fn orders() -> TableEvents {
        TableEvents::new(
            "shop",
            "public",
            "orders",
            vec![
                ColumnType {
                    name: "id".into(),
                    pg: PgType::Int4,
                    key: true,
                },
                ColumnType {
                    name: "total".into(),
                    pg: PgType::Numeric(Some((10, 2))),
                    key: false,
                },
            ],
            None,
            DecimalHandling::Precise,
        )
        .unwrap()
    }

    #[test]
    fn an_insert_is_debeziums_envelope_in_avro_and_connect_json() {
        let t = orders();
        let row = vec![Value::Int(7), Value::Bytes(vec![0x30, 0x39])];
        let source = SourceInfo {
            name: "shop",
            db: "shop",
            ts_us: 1_000_000,
            snapshot: "false",
            tx_id: Some(5),
            lsn: Some(100),
            sequence: Some("[\"90\",\"100\"]".into()),
        };
        let position = SourcePosition {
            stream: Arc::from("s"),
            offset: serde_json::json!({}),
        };
        let r = t.record(
            Op::Create,
            t.key_of(&row),
            None,
            Some(row),
            &source,
            2_000_000,
            &[],
            position,
        );
        assert_eq!(r.topic.as_deref(), Some("shop.public.orders"));
        let Some(Payload::Typed { schema, value }) = &r.value else {
            panic!("typed")
        };
        assert!(value.conforms_to(schema), "the event fits its schema");
        let json = value.to_connect_json();
        assert_eq!(json["op"], "c");
        assert_eq!(json["after"], serde_json::json!({"id": 7, "total": "MDk="}));
        assert_eq!(json["before"], serde_json::Value::Null);
        assert_eq!(json["source"]["lsn"], 100);
        assert_eq!(json["source"]["ts_ms"], 1000);
        assert_eq!(json["ts_ms"], 2000);
        let Some(Payload::Typed {
            schema: ks,
            value: kv,
        }) = &r.key
        else {
            panic!("a key")
        };
        assert_eq!(kv.to_connect_json(), serde_json::json!({"id": 7}));
        assert_eq!(ks.to_connect()["name"], "shop.public.orders.Key");
        // The Avro form parses (the Value record is defined once and referenced once).
        let avro = schema.to_avro().to_string();
        apache_avro::Schema::parse_str(&avro).unwrap();
        let connect = schema.to_connect();
        assert_eq!(connect["name"], "shop.public.orders.Envelope");
        assert_eq!(connect["fields"][1]["name"], "shop.public.orders.Value");
    }

    #[test]
    fn key_columns_can_be_chosen() {
        let t = TableEvents::new(
            "p",
            "s",
            "t",
            vec![ColumnType {
                name: "a".into(),
                pg: PgType::Text,
                key: false,
            }],
            Some(&["b".to_string()]),
            DecimalHandling::Precise,
        );
        assert!(t.unwrap_err().contains("`b`"));
    }
}
