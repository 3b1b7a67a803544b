//! What a record asks of its table: a row, a delete or a truncate, and which table.
//!
//! Plain records are rows: the value's fields, with the key's fields for
//! `pk_mode: record_key` or the record's topic/partition/offset for `kafka`; a tombstone
//! deletes by key. A change event in Debezium's envelope (from `postgres_cdc` or from
//! Debezium itself) is applied as what it describes: `c`, `r` and `u` write `after`, `d`
//! deletes the row `before` names (or the key), `t` truncates. Its `source.schema` and
//! `source.table` fill `${source.schema}` / `${source.table}` in the table name.
//!
//! With `${source.*}` in the table name a tombstone is skipped: it names no table, and the
//! `d` event before it has done the delete.
//!
//! Columns a change event marks as unavailable (Postgres did not send an unchanged TOASTed
//! value: named in the `sluice.unavailable` header, or Debezium's placeholder text) are
//! left out of the row, so the statement leaves them as they are in the target.

use std::sync::Arc;

use serde_json::Value as Json;
use sluice_connector_sdk::connector::SinkRecord;
use sluice_connector_sdk::data::{Payload, Value};

use super::row::Row;
use super::settings::{PkMode, SinkSettings};
use super::types::{RecordSchema, Shape};
use crate::cdc::event::UNAVAILABLE_HEADER;

/// Debezium's default `unavailable.value.placeholder` for text columns.
pub const DEBEZIUM_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// What a record asks of its table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Written by insert, upsert or update; `unavailable` columns are left as they are.
    Row { row: Row, unavailable: Vec<String> },
    /// A tombstone or a `d` event: the key's columns.
    Delete(Row),
    /// A `t` event.
    Truncate,
    /// Nothing to do (a delete or truncate while `delete_enabled` is false).
    Skip,
}

/// A record understood: its change, its table, and the shapes its schemas give (for
/// creating and widening tables).
#[derive(Debug, Clone)]
pub struct Understood {
    pub change: Change,
    pub table: String,
    pub row_shape: Option<Arc<Shape>>,
    pub key_shape: Option<Arc<Shape>>,
}

/// A payload read as a row when it is an object (the common case, read straight into a
/// [`Row`]); else as the JSON value it is.
fn row_of_payload(p: &Payload) -> Result<Result<Row, Json>, String> {
    match p {
        Payload::Raw(b) => Row::parse(b).map_err(|e| format!("not JSON: {e}")),
        Payload::Typed {
            value: Value::Record(fields),
            ..
        } => Ok(Ok(fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect())),
        Payload::Typed { value, .. } => Ok(Err(value.to_json())),
    }
}

/// The schemas seen last (a topic's records mostly share one), parsed once.
#[derive(Default)]
pub struct SchemaCache {
    last: Vec<(Arc<str>, Arc<RecordSchema>)>,
}

impl SchemaCache {
    pub fn get(&mut self, text: &Arc<str>) -> Result<Arc<RecordSchema>, String> {
        if let Some((_, s)) = self
            .last
            .iter()
            .find(|(t, _)| Arc::ptr_eq(t, text) || **t == **text)
        {
            return Ok(s.clone());
        }
        let parsed = Arc::new(RecordSchema::parse(text)?);
        if self.last.len() >= 16 {
            self.last.remove(0);
        }
        self.last.push((text.clone(), parsed.clone()));
        Ok(parsed)
    }
}

/// Whether a value is a change event in Debezium's envelope.
fn is_change_event(v: &Row) -> bool {
    v.get("op").is_some_and(Json::is_string)
        && v.get("source").is_some_and(Json::is_object)
        && (v.contains_key("after") || v.contains_key("before"))
}

/// The columns of `header` (a JSON array of names), if the record has it.
fn unavailable_of(r: &SinkRecord) -> Vec<String> {
    r.headers
        .iter()
        .find(|(k, _)| k == UNAVAILABLE_HEADER)
        .and_then(|(_, v)| serde_json::from_slice::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

/// Understands `r` under `s`, or says why it cannot be applied.
pub fn understand(
    s: &SinkSettings,
    r: &SinkRecord,
    schemas: &mut SchemaCache,
) -> Result<Understood, String> {
    let value_schema = r
        .value_schema
        .as_ref()
        .map(|t| schemas.get(t))
        .transpose()?;
    let key_schema = r.key_schema.as_ref().map(|t| schemas.get(t)).transpose()?;
    let key_shape = key_schema.as_ref().map(|k| k.row.clone());
    let key_fields = || -> Result<Row, String> {
        let key = r
            .key
            .as_ref()
            .ok_or("the record has no key (pk_mode: record_key)")?;
        let mut m = match row_of_payload(key)? {
            Ok(m) => match s.pk_fields.is_empty() {
                true => m,
                false => s
                    .pk_fields
                    .iter()
                    .filter_map(|f| m.get(f).map(|v| (f.clone(), v.clone())))
                    .collect(),
            },
            Err(other) if s.pk_fields.len() == 1 => {
                Row::from_iter([(s.pk_fields[0].clone(), other)])
            }
            _ => {
                return Err(
                    "the key is not a JSON object (name its column with one `pk_fields` entry)"
                        .into(),
                )
            }
        };
        if let Some(shape) = &key_shape {
            shape.convert(&mut m)?;
        }
        Ok(m)
    };
    let topic_table = || s.table.render(&r.topic, None, None);
    let Some(value) = &r.value else {
        if s.table.uses_source() {
            // A tombstone names no source table; the `d` event before it did the delete.
            return Ok(Understood {
                change: Change::Skip,
                table: topic_table(),
                row_shape: None,
                key_shape,
            });
        }
        if s.delete_enabled {
            return Ok(Understood {
                change: Change::Delete(key_fields()?),
                table: topic_table(),
                row_shape: None,
                key_shape,
            });
        }
        return Err("a tombstone (no value) and `delete_enabled` is false".into());
    };
    let Ok(mut value) = row_of_payload(value)? else {
        return Err("the value is not a JSON object: a row needs named fields".into());
    };
    if is_change_event(&value) {
        let key_shape_of_event = key_shape.clone();
        return change_event(s, r, value, value_schema, key_shape_of_event, key_fields);
    }
    if let Some(schema) = &value_schema {
        schema.row.convert(&mut value)?;
    }
    add_key(s, r, &mut value, &key_fields)?;
    Ok(Understood {
        change: Change::Row {
            row: value,
            unavailable: Vec::new(),
        },
        table: topic_table(),
        row_shape: value_schema.map(|v| v.row.clone()),
        key_shape,
    })
}

fn add_key(
    s: &SinkSettings,
    r: &SinkRecord,
    row: &mut Row,
    key_fields: &dyn Fn() -> Result<Row, String>,
) -> Result<(), String> {
    match s.pk_mode {
        PkMode::RecordKey => row.extend(key_fields()?),
        PkMode::Kafka => {
            let names = kafka_columns(s);
            row.insert(names[0].clone(), Json::from(&*r.topic));
            row.insert(names[1].clone(), Json::from(r.partition));
            row.insert(names[2].clone(), Json::from(r.offset));
        }
        PkMode::None | PkMode::RecordValue => {}
    }
    Ok(())
}

/// The columns `pk_mode: kafka` writes the record's coordinates to.
pub fn kafka_columns(s: &SinkSettings) -> Vec<String> {
    if s.pk_fields.len() == 3 {
        s.pk_fields.clone()
    } else {
        ["__connect_topic", "__connect_partition", "__connect_offset"]
            .map(String::from)
            .to_vec()
    }
}

fn change_event(
    s: &SinkSettings,
    r: &SinkRecord,
    mut value: Row,
    schema: Option<Arc<RecordSchema>>,
    key_shape: Option<Arc<Shape>>,
    key_fields: impl Fn() -> Result<Row, String>,
) -> Result<Understood, String> {
    let op = value
        .get("op")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let source = value.get("source").cloned().unwrap_or(Json::Null);
    let text = |k: &str| source.get(k).and_then(Json::as_str).map(str::to_string);
    let table = s.table.render(
        &r.topic,
        text("schema").as_deref(),
        text("table").as_deref(),
    );
    let row_shape = schema.as_ref().map(|v| v.row.clone());
    let understood = |change| Understood {
        change,
        table: table.clone(),
        row_shape: row_shape.clone(),
        key_shape: key_shape.clone(),
    };
    let row_of = |v: Json, what: &str| -> Result<Row, String> {
        let Json::Object(map) = v else {
            return Err(format!("a change event with op `{op}` has no `{what}` row"));
        };
        let mut row = Row::from(map);
        if let Some(shape) = &row_shape {
            shape.convert(&mut row)?;
        }
        Ok(row)
    };
    match op.as_str() {
        "c" | "r" | "u" => {
            let mut row = row_of(value.remove("after").unwrap_or(Json::Null), "after")?;
            let mut unavailable = unavailable_of(r);
            for (column, v) in &row {
                if v.as_str() == Some(DEBEZIUM_PLACEHOLDER) && !unavailable.contains(column) {
                    unavailable.push(column.clone());
                }
            }
            for column in &unavailable {
                row.remove(column);
            }
            unavailable.sort();
            add_key(s, r, &mut row, &key_fields)?;
            Ok(understood(Change::Row { row, unavailable }))
        }
        "d" if !s.delete_enabled => Ok(understood(Change::Skip)),
        "d" => {
            let key = match s.pk_mode {
                PkMode::RecordKey => key_fields()?,
                _ => row_of(value.remove("before").unwrap_or(Json::Null), "before")?,
            };
            Ok(understood(Change::Delete(key)))
        }
        "t" if s.delete_enabled => Ok(understood(Change::Truncate)),
        "t" | "m" => Ok(understood(Change::Skip)),
        other => Err(format!(
            "a change event with op `{other}`: known are c, r, u, d, t"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::settings::checked;
    use serde_json::json;

    fn record(key: Json, value: Option<Json>, headers: Vec<(String, Vec<u8>)>) -> SinkRecord {
        SinkRecord {
            topic: Arc::from("shop.public.orders"),
            partition: 0,
            offset: 7,
            timestamp: 0,
            key: Some(Payload::Raw(key.to_string().into())),
            value: value.map(|v| Payload::Raw(v.to_string().into())),
            headers,
            key_schema: None,
            value_schema: None,
        }
    }

    fn settings(extra: Json) -> SinkSettings {
        let mut base = json!({"connection": "host=127.0.0.1 dbname=r", "table": "${source.schema}_${source.table}",
            "insert_mode": "upsert", "pk_mode": "record_key", "delete_enabled": true});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        checked(base).unwrap()
    }

    fn event(op: &str, before: Json, after: Json) -> Json {
        json!({"before": before, "after": after, "op": op, "ts_ms": 1,
               "source": {"schema": "public", "table": "orders", "lsn": 1}})
    }

    #[test]
    fn change_events_become_what_they_describe() {
        let s = settings(json!({}));
        let mut cache = SchemaCache::default();
        let u = understand(
            &s,
            &record(
                json!({"id": 1}),
                Some(event(
                    "u",
                    Json::Null,
                    json!({"id": 1, "note": "x", "big": null}),
                )),
                vec![(UNAVAILABLE_HEADER.into(), br#"["big"]"#.to_vec())],
            ),
            &mut cache,
        )
        .unwrap();
        assert_eq!(u.table, "public_orders");
        assert_eq!(
            u.change,
            Change::Row {
                row: json!({"id": 1, "note": "x"})
                    .as_object()
                    .unwrap()
                    .clone()
                    .into(),
                unavailable: vec!["big".into()]
            }
        );
        let placeholder = understand(
            &s,
            &record(
                json!({"id": 2}),
                Some(event(
                    "c",
                    Json::Null,
                    json!({"id": 2, "t": DEBEZIUM_PLACEHOLDER}),
                )),
                vec![],
            ),
            &mut cache,
        )
        .unwrap();
        assert!(
            matches!(placeholder.change, Change::Row { ref unavailable, .. } if unavailable == &["t"])
        );
        let d = understand(
            &s,
            &record(
                json!({"id": 3}),
                Some(event("d", json!({"id": 3}), Json::Null)),
                vec![],
            ),
            &mut cache,
        )
        .unwrap();
        assert_eq!(
            d.change,
            Change::Delete(json!({"id": 3}).as_object().unwrap().clone().into())
        );
        let t = understand(
            &s,
            &record(
                json!(null),
                Some(event("t", Json::Null, Json::Null)),
                vec![],
            ),
            &mut cache,
        )
        .unwrap();
        assert_eq!(t.change, Change::Truncate);
        let no_deletes = settings(json!({"delete_enabled": false}));
        let d = understand(
            &no_deletes,
            &record(
                json!({"id": 3}),
                Some(event("d", json!({"id": 3}), Json::Null)),
                vec![],
            ),
            &mut cache,
        )
        .unwrap();
        assert_eq!(d.change, Change::Skip);
        let e = understand(
            &s,
            &record(
                json!({"id": 1}),
                Some(event("x", Json::Null, Json::Null)),
                vec![],
            ),
            &mut cache,
        )
        .unwrap_err();
        assert!(e.contains("op `x`"), "{e}");
        let e = understand(
            &s,
            &record(
                json!({"id": 1}),
                Some(event("c", Json::Null, Json::Null)),
                vec![],
            ),
            &mut cache,
        )
        .unwrap_err();
        assert!(e.contains("no `after` row"), "{e}");
    }

    #[test]
    fn plain_records_are_rows_and_tombstones_deletes() {
        let s = settings(json!({"table": "${topic}"}));
        let mut cache = SchemaCache::default();
        let u = understand(
            &s,
            &record(json!({"id": 5}), Some(json!({"n": 1, "op": "c"})), vec![]),
            &mut cache,
        )
        .unwrap();
        assert_eq!(u.table, "shop_public_orders");
        assert_eq!(
            u.change,
            Change::Row {
                row: json!({"id": 5, "n": 1, "op": "c"})
                    .as_object()
                    .unwrap()
                    .clone()
                    .into(),
                unavailable: vec![]
            }
        );
        let d = understand(&s, &record(json!({"id": 5}), None, vec![]), &mut cache).unwrap();
        assert_eq!(
            d.change,
            Change::Delete(json!({"id": 5}).as_object().unwrap().clone().into())
        );
        // Tables named by the change events' source: a tombstone has none, and is skipped.
        let by_source = settings(json!({}));
        let t = understand(
            &by_source,
            &record(json!({"id": 5}), None, vec![]),
            &mut cache,
        )
        .unwrap();
        assert_eq!(t.change, Change::Skip);
    }
}
