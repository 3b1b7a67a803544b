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
    /// A Kafka Connect semantic type over a plain schema: Debezium's
    /// `io.debezium.time.MicroTimestamp` over `Long`, Connect's `Decimal` over `Decimal`. In
    /// Avro it is the inner schema with Confluent's `connect.name` / `connect.version` /
    /// `connect.parameters` properties (what Confluent's AvroConverter writes); in Connect's
    /// JSON envelope, the `name`, `version` and `parameters` of the inner schema.
    Named {
        name: String,
        version: Option<u32>,
        parameters: Vec<(String, String)>,
        schema: Box<Schema>,
    },
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
    /// A Connect semantic type over `schema`, without parameters.
    pub fn named(name: &str, version: Option<u32>, schema: Schema) -> Schema {
        Schema::Named {
            name: name.to_string(),
            version,
            parameters: Vec::new(),
            schema: Box::new(schema),
        }
    }

    /// `["null", self]` (an optional field's schema).
    pub fn optional(self) -> Schema {
        Schema::Union(vec![Schema::Null, self])
    }

    /// The Avro schema, as JSON. A named type (record, enum, fixed) that appears a second
    /// time is written as a reference to its name, as Avro requires (Debezium's `before` and
    /// `after` share one `Value` record).
    pub fn to_avro(&self) -> Json {
        self.to_avro_in(&mut Vec::new())
    }

    fn to_avro_in(&self, defined: &mut Vec<String>) -> Json {
        let mut reference = |name: &String| {
            if defined.contains(name) {
                Some(json!(name))
            } else {
                defined.push(name.clone());
                None
            }
        };
        match self {
            Schema::Record { name, .. }
            | Schema::Enum { name, .. }
            | Schema::Fixed { name, .. } => {
                if let Some(r) = reference(name) {
                    return r;
                }
            }
            _ => {}
        }
        match self {
            Schema::Null => json!("null"),
            Schema::Boolean => json!("boolean"),
            Schema::Int => json!("int"),
            Schema::Long => json!("long"),
            Schema::Float => json!("float"),
            Schema::Double => json!("double"),
            Schema::Bytes => json!("bytes"),
            Schema::String => json!("string"),
            Schema::Array(items) => json!({"type": "array", "items": items.to_avro_in(defined)}),
            Schema::Map(values) => json!({"type": "map", "values": values.to_avro_in(defined)}),
            Schema::Record { name, fields } => {
                let fields: Vec<Json> = fields
                    .iter()
                    .map(|f| {
                        let mut o = json!({"name": f.name, "type": f.schema.to_avro_in(defined)});
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
            Schema::Union(branches) => {
                Json::Array(branches.iter().map(|b| b.to_avro_in(defined)).collect())
            }
            Schema::TimestampMillis => json!({"type": "long", "logicalType": "timestamp-millis"}),
            Schema::Date => json!({"type": "int", "logicalType": "date"}),
            Schema::Decimal { precision, scale } => {
                json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
            }
            Schema::Uuid => json!({"type": "string", "logicalType": "uuid"}),
            Schema::Named {
                name,
                version,
                parameters,
                schema,
            } => {
                let mut o = match schema.to_avro_in(defined) {
                    Json::Object(o) => o,
                    other => {
                        let mut o = serde_json::Map::new();
                        o.insert("type".into(), other);
                        o
                    }
                };
                if let Some(v) = version {
                    o.insert("connect.version".into(), json!(v));
                }
                if !parameters.is_empty() {
                    let p: serde_json::Map<String, Json> = parameters
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect();
                    o.insert("connect.parameters".into(), Json::Object(p));
                }
                o.insert("connect.name".into(), json!(name));
                Json::Object(o)
            }
        }
    }

    /// Kafka Connect's schema of this one, as `JsonConverter` writes it in the `schema` half
    /// of its envelope (`schemas.enable=true`): records are structs with their name,
    /// `["null", T]` is `T` with `optional: true`, logical types carry Connect's names.
    /// A union of other branches has no Connect form and is written as an optional string.
    pub fn to_connect(&self) -> Json {
        let plain = |t: &str| json!({"type": t, "optional": false});
        match self {
            Schema::Null => json!({"type": "string", "optional": true}),
            Schema::Boolean => plain("boolean"),
            Schema::Int => plain("int32"),
            Schema::Long => plain("int64"),
            Schema::Float => plain("float"),
            Schema::Double => plain("double"),
            Schema::Bytes | Schema::Fixed { .. } => plain("bytes"),
            Schema::String | Schema::Enum { .. } | Schema::Uuid => plain("string"),
            Schema::Array(items) => {
                json!({"type": "array", "items": items.to_connect(), "optional": false})
            }
            Schema::Map(values) => json!({
                "type": "map", "keys": {"type": "string", "optional": false},
                "values": values.to_connect(), "optional": false
            }),
            Schema::Record { name, fields } => {
                let fields: Vec<Json> = fields
                    .iter()
                    .map(|f| {
                        let mut c = f.schema.to_connect();
                        c["field"] = json!(f.name);
                        c
                    })
                    .collect();
                json!({"type": "struct", "fields": fields, "optional": false, "name": name})
            }
            Schema::Union(branches) => match branches.as_slice() {
                [Schema::Null, other] | [other, Schema::Null] => {
                    let mut c = other.to_connect();
                    c["optional"] = json!(true);
                    c
                }
                _ => json!({"type": "string", "optional": true}),
            },
            Schema::TimestampMillis => json!({"type": "int64", "optional": false,
                "name": "org.apache.kafka.connect.data.Timestamp", "version": 1}),
            Schema::Date => json!({"type": "int32", "optional": false,
                "name": "org.apache.kafka.connect.data.Date", "version": 1}),
            Schema::Decimal { precision, scale } => json!({"type": "bytes", "optional": false,
                "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                "parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}}),
            Schema::Named {
                name,
                version,
                parameters,
                schema,
            } => {
                let mut c = schema.to_connect();
                c["name"] = json!(name);
                if let Some(v) = version {
                    c["version"] = json!(v);
                }
                if !parameters.is_empty() {
                    let p: serde_json::Map<String, Json> = parameters
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect();
                    c["parameters"] = Json::Object(p);
                }
                c
            }
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
    /// Field values in the schema's field order. Names are shared: a source that builds
    /// many records of one schema clones them without an allocation each.
    Record(Vec<(Arc<str>, Value)>),
    Enum(String),
    Fixed(Vec<u8>),
}

impl Value {
    /// Whether this value is one of `schema`'s (a union accepts a value of any branch).
    pub fn conforms_to(&self, schema: &Schema) -> bool {
        match (schema, self) {
            (Schema::Named { schema, .. }, v) => v.conforms_to(schema),
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
                        .all(|(f, (name, v))| *f.name == **name && v.conforms_to(&f.schema))
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
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Value::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value as Kafka Connect's `JsonConverter` writes it: bytes (and decimals) as
    /// base64, a float that is not a number as `null`; the rest as [`Value::to_json`].
    pub fn to_connect_json(&self) -> Json {
        match self {
            Value::Bytes(b) | Value::Fixed(b) => Json::String(base64_encode(b)),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_connect_json).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_connect_json()))
                    .collect(),
            ),
            Value::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_connect_json()))
                    .collect(),
            ),
            other => other.to_json(),
        }
    }

    /// [`Value::to_connect_json`] written as compact text to `out`, without a document tree.
    pub fn write_connect_json(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, s: &str) {
            // Most text needs no escaping: copied as it is. Else serde_json's escaping,
            // straight into the buffer.
            if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.reserve(s.len() + 2);
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
                return;
            }
            let _ = serde_json::to_writer(&mut *out, s);
        }
        fn object<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = (&'a str, &'a Value)>) {
            out.push(b'{');
            for (i, (k, v)) in members.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                text(out, k);
                out.push(b':');
                v.write_connect_json(out);
            }
            out.push(b'}');
        }
        fn float(out: &mut Vec<u8>, f: f64) {
            match serde_json::Number::from_f64(f) {
                Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Value::Long(l) => out.extend_from_slice(itoa::Buffer::new().format(*l).as_bytes()),
            Value::Float(f) => float(out, f64::from(*f)),
            Value::Double(d) => float(out, *d),
            Value::Bytes(b) | Value::Fixed(b) => {
                out.push(b'"');
                out.extend_from_slice(base64_encode(b).as_bytes());
                out.push(b'"');
            }
            Value::String(s) | Value::Enum(s) => text(out, s),
            Value::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_connect_json(out);
                }
                out.push(b']');
            }
            Value::Map(entries) => object(out, entries.iter().map(|(k, v)| (k.as_str(), v))),
            Value::Record(fields) => object(out, fields.iter().map(|(k, v)| (&**k, v))),
        }
    }

    /// A record field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(fields) => fields.iter().find(|(n, _)| &**n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Standard base64 with padding (RFC 4648), as Connect writes bytes in JSON.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
    fn a_named_type_seen_twice_is_a_reference_and_connect_names_are_kept() {
        let row = Schema::Record {
            name: "shop.public.orders.Value".into(),
            fields: vec![
                Field::new("id", Schema::Int),
                Field::optional(
                    "placed",
                    Schema::named("io.debezium.time.MicroTimestamp", Some(1), Schema::Long),
                ),
            ],
        };
        let envelope = Schema::Record {
            name: "shop.public.orders.Envelope".into(),
            fields: vec![
                Field::optional("before", row.clone()),
                Field::optional("after", row),
            ],
        };
        let avro = envelope.to_avro();
        assert_eq!(
            avro["fields"][1]["type"],
            json!(["null", "shop.public.orders.Value"])
        );
        assert_eq!(
            avro["fields"][0]["type"][1]["fields"][1]["type"][1],
            json!({"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTimestamp"})
        );
        let connect = envelope.to_connect();
        assert_eq!(connect["fields"][0]["optional"], json!(true));
        assert_eq!(connect["fields"][0]["field"], json!("before"));
        assert_eq!(
            connect["fields"][1]["fields"][1],
            json!({"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "placed"})
        );
        let decimal = Schema::Decimal {
            precision: 10,
            scale: 2,
        }
        .to_connect();
        assert_eq!(decimal["parameters"]["scale"], json!("2"));
    }

    #[test]
    fn connect_json_writes_bytes_as_base64() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(&[0x30, 0x39]), "MDk=");
        let v = Value::Record(vec![
            ("d".into(), Value::Bytes(vec![0x30, 0x39])),
            ("s".into(), Value::String("a \"q\"\n".into())),
            ("f".into(), Value::Double(f64::NAN)),
            (
                "a".into(),
                Value::Array(vec![Value::Long(-3), Value::Float(1.5), Value::Null]),
            ),
            (
                "m".into(),
                Value::Map(vec![("k".into(), Value::Boolean(true))]),
            ),
        ]);
        let tree = v.to_connect_json();
        assert_eq!(tree["d"], json!("MDk="));
        let mut text = Vec::new();
        v.write_connect_json(&mut text);
        assert_eq!(
            serde_json::from_slice::<Json>(&text).unwrap(),
            tree,
            "the same as the tree"
        );
        assert_eq!(String::from_utf8(text).unwrap(), tree.to_string());
    }

    proptest::proptest! {
        /// Text written without serde_json's escaper (the common case) is what it writes.
        #[test]
        fn connect_json_text_is_serde_json_text(s in "\\PC{0,20}|[\u{0}-\u{7f}]{0,20}") {
            let mut text = Vec::new();
            Value::String(s.clone()).write_connect_json(&mut text);
            proptest::prop_assert_eq!(String::from_utf8(text).unwrap(), serde_json::to_string(&s).unwrap());
        }
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
