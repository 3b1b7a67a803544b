//! Typed data: schemas that map one to one onto Avro, and values of those schemas, so the
//! schema registry can govern every topic. A payload is either typed or raw bytes (the
//! pass-through fast path, which no converter decodes).

use std::sync::Arc;

use serde_json::{json, Value as Json};

/// A schema; every variant has exactly one Avro form ([`Schema::to_avro`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(Box<Schema>),
    /// Map with string keys.
    Map(Box<Schema>),
    Record {
        name: String,
        fields: Vec<Field>,
    },
    Enum {
        name: String,
        symbols: Vec<String>,
    },
    Fixed {
        name: String,
        size: usize,
    },
    Union(Vec<Schema>),
    /// Avro `long` with logical type `timestamp-millis`.
    TimestampMillis,
    /// Avro `int` with logical type `date`.
    Date,
    /// Avro `bytes` with logical type `decimal`.
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// Avro `string` with logical type `uuid`.
    Uuid,
}

/// A field of a record schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub schema: Schema,
    /// The Avro default, as JSON (`None`: no default).
    pub default: Option<Json>,
    pub doc: Option<String>,
}

impl Field {
    pub fn new(name: impl Into<String>, schema: Schema) -> Self {
        Field {
            name: name.into(),
            schema,
            default: None,
            doc: None,
        }
    }

    /// An optional field: `["null", schema]` with default `null`.
    pub fn optional(name: impl Into<String>, schema: Schema) -> Self {
        Field {
            name: name.into(),
            schema: Schema::Union(vec![Schema::Null, schema]),
            default: Some(Json::Null),
            doc: None,
        }
    }
}

impl Schema {
    /// The Avro schema, as JSON.
    pub fn to_avro(&self) -> Json {
        match self {
            Schema::Null => json!("null"),
            Schema::Boolean => json!("boolean"),
            Schema::Int => json!("int"),
            Schema::Long => json!("long"),
            Schema::Float => json!("float"),
            Schema::Double => json!("double"),
            Schema::Bytes => json!("bytes"),
            Schema::String => json!("string"),
            Schema::Array(items) => json!({"type": "array", "items": items.to_avro()}),
            Schema::Map(values) => json!({"type": "map", "values": values.to_avro()}),
            Schema::Record { name, fields } => {
                let fields: Vec<Json> = fields
                    .iter()
                    .map(|f| {
                        let mut o = json!({"name": f.name, "type": f.schema.to_avro()});
                        if let Some(d) = &f.default {
                            o["default"] = d.clone();
                        }
                        if let Some(doc) = &f.doc {
                            o["doc"] = json!(doc);
                        }
                        o
                    })
                    .collect();
                json!({"type": "record", "name": name, "fields": fields})
            }
            Schema::Enum { name, symbols } => {
                json!({"type": "enum", "name": name, "symbols": symbols})
            }
            Schema::Fixed { name, size } => json!({"type": "fixed", "name": name, "size": size}),
            Schema::Union(branches) => Json::Array(branches.iter().map(Schema::to_avro).collect()),
            Schema::TimestampMillis => json!({"type": "long", "logicalType": "timestamp-millis"}),
            Schema::Date => json!({"type": "int", "logicalType": "date"}),
            Schema::Decimal { precision, scale } => {
                json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
            }
            Schema::Uuid => json!({"type": "string", "logicalType": "uuid"}),
        }
    }
}

/// A value of some [`Schema`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(Vec<u8>),
    String(String),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    /// Field values in the schema's field order.
    Record(Vec<(String, Value)>),
    Enum(String),
    Fixed(Vec<u8>),
}

impl Value {
    /// Whether this value is one of `schema`'s (a union accepts a value of any branch).
    pub fn conforms_to(&self, schema: &Schema) -> bool {
        match (schema, self) {
            (Schema::Union(branches), v) => branches.iter().any(|b| v.conforms_to(b)),
            (Schema::Null, Value::Null)
            | (Schema::Boolean, Value::Boolean(_))
            | (Schema::Int | Schema::Date, Value::Int(_))
            | (Schema::Long | Schema::TimestampMillis, Value::Long(_))
            | (Schema::Float, Value::Float(_))
            | (Schema::Double, Value::Double(_))
            | (Schema::Bytes | Schema::Decimal { .. }, Value::Bytes(_))
            | (Schema::String | Schema::Uuid, Value::String(_)) => true,
            (Schema::Array(items), Value::Array(vs)) => vs.iter().all(|v| v.conforms_to(items)),
            (Schema::Map(values), Value::Map(entries)) => {
                entries.iter().all(|(_, v)| v.conforms_to(values))
            }
            (Schema::Record { fields, .. }, Value::Record(values)) => {
                fields.len() == values.len()
                    && fields
                        .iter()
                        .zip(values)
                        .all(|(f, (name, v))| &f.name == name && v.conforms_to(&f.schema))
            }
            (Schema::Enum { symbols, .. }, Value::Enum(s)) => symbols.contains(s),
            (Schema::Fixed { size, .. }, Value::Fixed(b)) => b.len() == *size,
            _ => false,
        }
    }

    /// The value as JSON: records and maps become objects, bytes and fixed become strings
    /// of code points 0–255 (the mapping Sluice's Avro codec reads back), enums strings.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Boolean(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Long(l) => Json::from(*l),
            Value::Float(f) => serde_json::Number::from_f64(*f as f64)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Bytes(b) | Value::Fixed(b) => {
                Json::String(b.iter().map(|c| *c as char).collect())
            }
            Value::String(s) | Value::Enum(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) | Value::Record(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A record field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A key or value as a connector hands it over or receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Bytes the runtime passes through without decoding (the `bytes` converter). A shared
    /// buffer: `Bytes::from(vec)` takes a `Vec` without copying, and slices of one read
    /// buffer cost no allocation per record.
    Raw(bytes::Bytes),
    /// A value with its schema (shared: a batch usually has one schema).
    Typed { schema: Arc<Schema>, value: Value },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Schema {
        Schema::Record {
            name: "Order".into(),
            fields: vec![
                Field::new("id", Schema::Long),
                Field::new("placed", Schema::TimestampMillis),
                Field::optional("note", Schema::String),
                Field::new(
                    "lines",
                    Schema::Array(Box::new(Schema::Map(Box::new(Schema::Int)))),
                ),
            ],
        }
    }

    #[test]
    fn avro_form() {
        let avro = order().to_avro();
        assert_eq!(
            avro["fields"][1]["type"],
            json!({"type": "long", "logicalType": "timestamp-millis"})
        );
        assert_eq!(
            avro["fields"][2],
            json!({"name": "note", "type": ["null", "string"], "default": null})
        );
        assert_eq!(avro["fields"][3]["type"]["items"]["values"], json!("int"));
    }

    #[test]
    fn values_conform_or_not() {
        let good = Value::Record(vec![
            ("id".into(), Value::Long(1)),
            ("placed".into(), Value::Long(1_700_000_000_000)),
            ("note".into(), Value::Null),
            (
                "lines".into(),
                Value::Array(vec![Value::Map(vec![("qty".into(), Value::Int(2))])]),
            ),
        ]);
        assert!(good.conforms_to(&order()));
        assert_eq!(good.field("id"), Some(&Value::Long(1)));
        let mut bad = good.clone();
        if let Value::Record(fields) = &mut bad {
            fields[0].1 = Value::String("1".into());
        }
        assert!(!bad.conforms_to(&order()));
    }
}
