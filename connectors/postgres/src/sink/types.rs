//! What a record's schema says about its fields, for the `postgres` sink: the Postgres type
//! a column gets when the sink creates or widens a table (`auto_create`, `auto_evolve`), and
//! how a field's JSON becomes text Postgres reads as that type.
//!
//! The schema is the Avro schema the runtime hands with each record (from the registry for
//! `avro`, from Connect's envelope for `json` with `schemas_enable`). Connect's and
//! Debezium's semantic names (`connect.name`) and Avro's logical types decide: a
//! `MicroTimestamp` is microseconds since the epoch and becomes a `timestamp`, a Connect
//! `Decimal` is a big-endian two's complement with its scale and becomes `numeric`.
//!
//! | schema | column | value written |
//! |---|---|---|
//! | boolean, int, long, float, double, string | boolean, integer, bigint, real, double precision, text | as is |
//! | bytes, fixed | bytea | `\x…` hex |
//! | Connect `Decimal`, Avro `decimal` | numeric(p,s) (numeric without a precision) | decimal text |
//! | Debezium `VariableScaleDecimal` | numeric | decimal text |
//! | Debezium `Date`, Connect `Date`, Avro `date` | date | `YYYY-MM-DD` |
//! | Debezium `Time`/`MicroTime`/`NanoTime`, Connect `Time`, Avro `time-*` | time | `HH:MM:SS.ffffff` |
//! | Debezium `Timestamp`/`MicroTimestamp`/`NanoTimestamp`, Connect `Timestamp`, Avro `timestamp-*` | timestamp | ISO 8601 without zone |
//! | Debezium `ZonedTimestamp` / `ZonedTime` | timestamptz / timetz | as is (ISO 8601, UTC) |
//! | Debezium `MicroDuration` | interval | microseconds |
//! | Debezium `Json` | jsonb | the parsed document |
//! | Debezium `Uuid`, Avro `uuid` | uuid | as is |
//! | Debezium `Enum`, Avro enum | text | as is |
//! | array of T | T[] (jsonb when T is not a scalar) | element by element |
//! | record, map | jsonb | as is |

use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value as Json};

use crate::cdc::types::{civil_from_days, format_time};

/// Units of a time or timestamp count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    fn to_micros(self, n: i64) -> i64 {
        match self {
            Unit::Millis => n.saturating_mul(1000),
            Unit::Micros => n,
            Unit::Nanos => n.div_euclid(1000),
        }
    }
}

/// A field's type, as far as the sink cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    /// `base64`: Connect's JSON writes bytes as base64; Sluice's Avro-to-JSON as the code
    /// points 0–255.
    Bytes {
        base64: bool,
    },
    Decimal {
        precision: Option<u32>,
        scale: u32,
        base64: bool,
    },
    VariableDecimal {
        base64: bool,
    },
    Date,
    Time(Unit),
    Timestamp(Unit),
    ZonedTimestamp,
    ZonedTime,
    DurationMicros,
    Json,
    Uuid,
    Array(Box<Kind>),
    /// Records and maps: stored as `jsonb`.
    Document,
}

/// A field and whether it may be null.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldType {
    pub name: String,
    pub kind: Kind,
    pub optional: bool,
}

/// The fields of a row-shaped record (a plain record, or a change event's `after`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shape {
    pub fields: Vec<FieldType>,
    /// The fields whose JSON is not already what Postgres reads.
    converted: Vec<(String, Kind)>,
}

impl Shape {
    fn new(fields: Vec<FieldType>) -> Shape {
        let converted = fields
            .iter()
            .filter(|f| needs_conversion(&f.kind))
            .map(|f| (f.name.clone(), f.kind.clone()))
            .collect();
        Shape { fields, converted }
    }

    pub fn field(&self, name: &str) -> Option<&FieldType> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Rewrites the fields of `row` that Postgres would misread (epoch counts, encoded
    /// decimals and bytes, JSON held as text) into the text it reads.
    pub fn convert(&self, row: &mut super::row::Row) -> Result<(), String> {
        for (name, kind) in &self.converted {
            if let Some(v) = row.get_mut(name) {
                let taken = std::mem::take(v);
                *v = convert(kind, taken).map_err(|e| format!("field `{name}`: {e}"))?;
            }
        }
        Ok(())
    }
}

/// What a record's value schema says: the row's shape, and whether it is a change event's
/// envelope (`before`, `after`, `source`, `op`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSchema {
    pub row: Arc<Shape>,
    pub change_event: bool,
}

fn needs_conversion(kind: &Kind) -> bool {
    match kind {
        Kind::Boolean
        | Kind::Int
        | Kind::Long
        | Kind::Float
        | Kind::Double
        | Kind::String
        | Kind::ZonedTimestamp
        | Kind::ZonedTime
        | Kind::Uuid
        | Kind::Document => false,
        Kind::Array(inner) => needs_conversion(inner),
        _ => true,
    }
}

/// Named types seen so far (Avro writes a named type once, then refers to it by name).
struct Names(Vec<(String, Json)>);

impl Names {
    fn collect(j: &Json, namespace: Option<&str>, out: &mut Names) {
        match j {
            Json::Array(items) => items.iter().for_each(|i| Names::collect(i, namespace, out)),
            Json::Object(o) => {
                let ns = o.get("namespace").and_then(Json::as_str).or(namespace);
                if let (Some(kind), Some(name)) = (
                    o.get("type").and_then(Json::as_str),
                    o.get("name").and_then(Json::as_str),
                ) {
                    if matches!(kind, "record" | "enum" | "fixed") {
                        out.0.push((name.to_string(), j.clone()));
                        if let Some(ns) = ns.filter(|_| !name.contains('.')) {
                            out.0.push((format!("{ns}.{name}"), j.clone()));
                        }
                    }
                }
                for (k, v) in o {
                    if matches!(k.as_str(), "type" | "fields" | "items" | "values") {
                        Names::collect(v, ns, out);
                    }
                }
                if let Some(Json::Array(fields)) = o.get("fields") {
                    for f in fields {
                        if let Some(t) = f.get("type") {
                            Names::collect(t, ns, out);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn get(&self, name: &str) -> Option<&Json> {
        let short = name.rsplit('.').next().unwrap_or(name);
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| self.0.iter().find(|(n, _)| n == short))
            .map(|(_, j)| j)
    }
}

/// The kind of an Avro schema node, and whether it admits null.
fn kind_of(j: &Json, names: &Names, depth: usize) -> (Kind, bool) {
    if depth > 32 {
        return (Kind::Document, true);
    }
    match j {
        Json::String(t) => (primitive(t, names, depth), false),
        Json::Array(branches) => {
            let real: Vec<&Json> = branches.iter().filter(|b| *b != "null").collect();
            let optional = real.len() < branches.len();
            match real.as_slice() {
                [one] => (kind_of(one, names, depth + 1).0, optional),
                _ => (Kind::Document, optional),
            }
        }
        Json::Object(o) => {
            let text = |k: &str| o.get(k).and_then(Json::as_str);
            let number = |k: &str| {
                o.get(k).and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
            };
            let parameter = |k: &str| {
                o.get("connect.parameters")
                    .and_then(|p| p.get(k))
                    .and_then(|v| {
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
            };
            let base64 = text("sluice.bytes") == Some("base64");
            let kind = match (text("connect.name"), text("logicalType")) {
                (Some("org.apache.kafka.connect.data.Decimal"), _) => Kind::Decimal {
                    precision: parameter("connect.decimal.precision")
                        .or(number("precision"))
                        .map(|p| p as u32),
                    scale: parameter("scale").or(number("scale")).unwrap_or(0) as u32,
                    base64,
                },
                (Some("io.debezium.data.VariableScaleDecimal"), _) => {
                    let inner = o
                        .get("fields")
                        .and_then(Json::as_array)
                        .and_then(|f| f.iter().find(|f| f["name"] == "value"))
                        .and_then(|f| f.get("type"))
                        .and_then(|t| t.get("sluice.bytes"))
                        .and_then(Json::as_str);
                    Kind::VariableDecimal {
                        base64: base64 || inner == Some("base64"),
                    }
                }
                (Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date"), _)
                | (_, Some("date")) => Kind::Date,
                (Some("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time"), _)
                | (_, Some("time-millis")) => Kind::Time(Unit::Millis),
                (Some("io.debezium.time.MicroTime"), _) | (_, Some("time-micros")) => {
                    Kind::Time(Unit::Micros)
                }
                (Some("io.debezium.time.NanoTime"), _) => Kind::Time(Unit::Nanos),
                (
                    Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp"),
                    _,
                )
                | (_, Some("timestamp-millis" | "local-timestamp-millis")) => {
                    Kind::Timestamp(Unit::Millis)
                }
                (Some("io.debezium.time.MicroTimestamp"), _)
                | (_, Some("timestamp-micros" | "local-timestamp-micros")) => {
                    Kind::Timestamp(Unit::Micros)
                }
                (Some("io.debezium.time.NanoTimestamp"), _)
                | (_, Some("timestamp-nanos" | "local-timestamp-nanos")) => {
                    Kind::Timestamp(Unit::Nanos)
                }
                (Some("io.debezium.time.ZonedTimestamp"), _) => Kind::ZonedTimestamp,
                (Some("io.debezium.time.ZonedTime"), _) => Kind::ZonedTime,
                (Some("io.debezium.time.MicroDuration"), _) => Kind::DurationMicros,
                (Some("io.debezium.data.Json"), _) => Kind::Json,
                (Some("io.debezium.data.Uuid"), _) | (_, Some("uuid")) => Kind::Uuid,
                (_, Some("decimal")) => Kind::Decimal {
                    precision: number("precision").map(|p| p as u32),
                    scale: number("scale").unwrap_or(0) as u32,
                    base64,
                },
                _ => match o.get("type") {
                    Some(Json::String(t)) if t == "array" => {
                        let items = o.get("items").unwrap_or(&Json::Null);
                        Kind::Array(Box::new(kind_of(items, names, depth + 1).0))
                    }
                    Some(Json::String(t)) if t == "record" || t == "map" => Kind::Document,
                    Some(Json::String(t)) if t == "enum" => Kind::String,
                    Some(Json::String(t)) if t == "fixed" => Kind::Bytes { base64 },
                    Some(Json::String(t)) if t == "bytes" => Kind::Bytes { base64 },
                    Some(inner) => return kind_of(inner, names, depth + 1),
                    None => Kind::Document,
                },
            };
            (kind, false)
        }
        _ => (Kind::Document, true),
    }
}

fn primitive(t: &str, names: &Names, depth: usize) -> Kind {
    match t {
        "boolean" => Kind::Boolean,
        "int" => Kind::Int,
        "long" => Kind::Long,
        "float" => Kind::Float,
        "double" => Kind::Double,
        "string" => Kind::String,
        "bytes" => Kind::Bytes { base64: false },
        "null" => Kind::Document,
        named => match names.get(named) {
            Some(j) => kind_of(&j.clone(), names, depth + 1).0,
            None => Kind::Document,
        },
    }
}

/// The record node a schema node stands for (following a union's one non-null branch and
/// references by name).
fn record_of<'a>(j: &'a Json, names: &'a Names, depth: usize) -> Option<&'a Map<String, Json>> {
    if depth > 32 {
        return None;
    }
    match j {
        Json::Object(o) if o.get("type").and_then(Json::as_str) == Some("record") => Some(o),
        Json::Object(o) => record_of(o.get("type")?, names, depth + 1),
        Json::Array(branches) => branches.iter().find_map(|b| record_of(b, names, depth + 1)),
        Json::String(name) => record_of(names.get(name)?, names, depth + 1),
        _ => None,
    }
}

fn shape_of(record: &Map<String, Json>, names: &Names) -> Shape {
    let fields = record
        .get("fields")
        .and_then(Json::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?.to_string();
                    let (kind, optional) = kind_of(f.get("type")?, names, 0);
                    Some(FieldType {
                        name,
                        kind,
                        optional,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Shape::new(fields)
}

impl RecordSchema {
    /// Reads an Avro schema's JSON text; a schema that is not a record gives an empty shape
    /// (its records cannot be rows anyway, and say so when they arrive).
    pub fn parse(text: &str) -> Result<RecordSchema, String> {
        let j: Json = serde_json::from_str(text)
            .map_err(|e| format!("the record schema is not JSON: {e}"))?;
        let mut names = Names(Vec::new());
        Names::collect(&j, None, &mut names);
        let Some(root) = record_of(&j, &names, 0) else {
            return Ok(RecordSchema {
                row: Arc::new(Shape::default()),
                change_event: false,
            });
        };
        let field = |n: &str| {
            root.get("fields")
                .and_then(Json::as_array)
                .and_then(|f| f.iter().find(|f| f["name"] == n))
        };
        let change_event = field("op").is_some()
            && field("source").is_some()
            && (field("after").is_some() || field("before").is_some());
        let row = if change_event {
            field("after")
                .or(field("before"))
                .and_then(|f| f.get("type"))
                .and_then(|t| record_of(t, &names, 0))
                .map(|r| shape_of(r, &names))
                .unwrap_or_default()
        } else {
            shape_of(root, &names)
        };
        Ok(RecordSchema {
            row: Arc::new(row),
            change_event,
        })
    }
}

/// The column type a field gets in `CREATE TABLE` / `ALTER TABLE … ADD COLUMN`.
pub fn column_type(kind: &Kind) -> String {
    match kind {
        Kind::Boolean => "boolean".into(),
        Kind::Int => "integer".into(),
        Kind::Long => "bigint".into(),
        Kind::Float => "real".into(),
        Kind::Double => "double precision".into(),
        Kind::String => "text".into(),
        Kind::Bytes { .. } => "bytea".into(),
        Kind::Decimal {
            precision: Some(p),
            scale,
            ..
        } if *p > 0 && *p <= 1000 && scale <= p => format!("numeric({p},{scale})"),
        Kind::Decimal { .. } | Kind::VariableDecimal { .. } => "numeric".into(),
        Kind::Date => "date".into(),
        Kind::Time(Unit::Millis) => "time(3)".into(),
        Kind::Time(_) => "time".into(),
        Kind::Timestamp(Unit::Millis) => "timestamp(3)".into(),
        Kind::Timestamp(_) => "timestamp".into(),
        Kind::ZonedTimestamp => "timestamptz".into(),
        Kind::ZonedTime => "timetz".into(),
        Kind::DurationMicros => "interval".into(),
        Kind::Json | Kind::Document => "jsonb".into(),
        Kind::Uuid => "uuid".into(),
        Kind::Array(inner) => match &**inner {
            Kind::Array(_) | Kind::Document | Kind::Json => "jsonb".into(),
            scalar => format!("{}[]", column_type(scalar)),
        },
    }
}

fn bytes_of(text: &str, base64: bool) -> Result<Vec<u8>, String> {
    if base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("not base64: {e}"));
    }
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .map_err(|_| "a byte string holds a character past U+00FF".to_string())
        })
        .collect()
}

/// A big-endian two's complement integer as decimal text with `scale` digits after the
/// point.
pub fn decimal_text(bytes: &[u8], scale: u32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = bytes.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by 10 (numbers here are a few dozen bytes at most).
    let mut digits = Vec::new();
    let mut n: Vec<u8> = magnitude.into_iter().skip_while(|b| *b == 0).collect();
    while !n.is_empty() {
        let mut rest = 0u32;
        for b in n.iter_mut() {
            let cur = (rest << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rest = cur % 10;
        }
        digits.push(b'0' + rest as u8);
        let zeros = n.iter().take_while(|b| **b == 0).count();
        n.drain(..zeros);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    let scale = scale as usize;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    let point = digits.len() - scale;
    text.push_str(std::str::from_utf8(&digits[..point]).unwrap_or("0"));
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(&digits[point..]).unwrap_or("0"));
    }
    text
}

fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn timestamp_text(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let time = format_time(rest);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} {time} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02} {time}")
    }
}

fn whole(v: &Json) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("expected a whole number, found {v}"))
}

/// One value into what Postgres reads for its column.
pub fn convert(kind: &Kind, v: Json) -> Result<Json, String> {
    if v.is_null() {
        return Ok(v);
    }
    Ok(match kind {
        Kind::Bytes { base64 } => match &v {
            Json::String(s) => {
                let bytes = bytes_of(s, *base64)?;
                let mut hex = String::with_capacity(2 + bytes.len() * 2);
                hex.push_str("\\x");
                for b in bytes {
                    hex.push_str(&format!("{b:02x}"));
                }
                Json::String(hex)
            }
            _ => v,
        },
        Kind::Decimal { scale, base64, .. } => match &v {
            Json::String(s) => Json::String(decimal_text(&bytes_of(s, *base64)?, *scale)),
            _ => v, // already a number (decimal_handling double or string upstream)
        },
        Kind::VariableDecimal { base64 } => match (&v.get("scale"), &v.get("value")) {
            (Some(scale), Some(Json::String(value))) => {
                let scale = u32::try_from(whole(scale)?)
                    .map_err(|_| "a negative decimal scale".to_string())?;
                Json::String(decimal_text(&bytes_of(value, *base64)?, scale))
            }
            _ => v,
        },
        Kind::Date => Json::String(date_text(whole(&v)?)),
        Kind::Time(unit) => Json::String(format_time(
            unit.to_micros(whole(&v)?).rem_euclid(86_400_000_000),
        )),
        Kind::Timestamp(unit) => Json::String(timestamp_text(unit.to_micros(whole(&v)?))),
        Kind::DurationMicros => Json::String(format!("{} microseconds", whole(&v)?)),
        Kind::Json => match &v {
            Json::String(s) => serde_json::from_str(s).unwrap_or(v),
            _ => v,
        },
        Kind::Array(inner) => match v {
            Json::Array(items) => Json::Array(
                items
                    .into_iter()
                    .map(|i| convert(inner, i))
                    .collect::<Result<_, _>>()?,
            ),
            other => other,
        },
        _ => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `j` (an object) converted as `shape` converts a row.
    fn converted(shape: &Shape, j: Json) -> Result<Json, String> {
        let Json::Object(map) = j else {
            panic!("not an object: {j}")
        };
        let mut row = super::super::row::Row::from(map);
        shape.convert(&mut row)?;
        Ok(row.to_json())
    }
    use serde_json::json;

    #[test]
    fn decimals_from_twos_complement() {
        assert_eq!(decimal_text(&[0x30, 0x39], 2), "123.45");
        assert_eq!(decimal_text(&[0xcf, 0xc7], 2), "-123.45");
        assert_eq!(decimal_text(&[0x05], 3), "0.005");
        assert_eq!(decimal_text(&[], 0), "0");
        assert_eq!(decimal_text(&[0x00, 0x00], 1), "0.0");
        assert_eq!(decimal_text(&[0xff], 0), "-1");
        assert_eq!(decimal_text(&[0x80], 0), "-128");
        // Past i128: 2^128 = 340282366920938463463374607431768211456.
        let mut big = vec![0x01];
        big.extend([0u8; 16]);
        assert_eq!(
            decimal_text(&big, 0),
            "340282366920938463463374607431768211456"
        );
    }

    #[test]
    fn debeziums_avro_schema_gives_columns_and_conversions() {
        // The shape of what postgres_cdc registers: the envelope, `after` by reference.
        let value = json!({"type": "record", "name": "Envelope", "namespace": "shop.public.t", "fields": [
            {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
                {"name": "id", "type": "int"},
                {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2,
                    "connect.name": "org.apache.kafka.connect.data.Decimal", "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}}]},
                {"name": "at", "type": ["null", {"type": "long", "connect.name": "io.debezium.time.MicroTimestamp", "connect.version": 1}]},
                {"name": "day", "type": ["null", {"type": "int", "connect.name": "io.debezium.time.Date"}]},
                {"name": "doc", "type": ["null", {"type": "string", "connect.name": "io.debezium.data.Json"}]},
                {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}]},
                {"name": "raw", "type": ["null", "bytes"]},
                {"name": "n", "type": ["null", {"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
                    "connect.name": "io.debezium.data.VariableScaleDecimal",
                    "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}]}]}
            ]}], "default": null},
            {"name": "after", "type": ["null", "Value"], "default": null},
            {"name": "source", "type": {"type": "record", "name": "Source", "fields": []}},
            {"name": "op", "type": "string"}
        ]});
        let s = RecordSchema::parse(&value.to_string()).unwrap();
        assert!(s.change_event);
        let types: Vec<(String, String, bool)> = s
            .row
            .fields
            .iter()
            .map(|f| (f.name.clone(), column_type(&f.kind), f.optional))
            .collect();
        assert_eq!(
            types,
            [
                ("id", "integer", false),
                ("price", "numeric(10,2)", true),
                ("at", "timestamp", true),
                ("day", "date", true),
                ("doc", "jsonb", true),
                ("tags", "text[]", true),
                ("raw", "bytea", true),
                ("n", "numeric", true),
            ]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c))
        );
        let row = json!({
            "id": 1, "price": "\u{30}\u{39}", "at": 86_400_000_001i64, "day": 19000,
            "doc": "{\"a\":[1]}", "tags": ["x", null], "raw": "\u{0}\u{ff}",
            "n": {"scale": 3, "value": "\u{ff}"}
        });
        let row = converted(&s.row, row).unwrap();
        assert_eq!(
            row,
            json!({"id": 1, "price": "123.45", "at": "1970-01-02 00:00:00.000001", "day": "2022-01-08",
                   "doc": {"a": [1]}, "tags": ["x", null], "raw": "\\x00ff", "n": "-0.001"})
        );
    }

    #[test]
    fn connects_json_envelope_marks_base64_bytes() {
        let value = json!({"type": "record", "name": "r", "fields": [
            {"name": "b", "type": {"type": "bytes", "sluice.bytes": "base64"}},
            {"name": "d", "type": {"type": "bytes", "connect.name": "org.apache.kafka.connect.data.Decimal",
                "connect.parameters": {"scale": "1"}, "sluice.bytes": "base64"}},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}
        ]});
        let s = RecordSchema::parse(&value.to_string()).unwrap();
        assert!(!s.change_event);
        let row = json!({"b": "AP8=", "d": "AQ==", "t": -1});
        let row = converted(&s.row, row).unwrap();
        assert_eq!(
            row,
            json!({"b": "\\x00ff", "d": "0.1", "t": "1969-12-31 23:59:59.999"})
        );
        let bad = json!({"b": "not base64!"});
        let e = converted(&s.row, bad).unwrap_err();
        assert!(e.contains("field `b`: not base64"), "{e}");
    }

    /// `n` with `scale` digits after the point, as Postgres writes a numeric.
    fn reference(n: i128, scale: u32) -> String {
        let digits = n.unsigned_abs().to_string();
        let scale = scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, frac) = padded.split_at(padded.len() - scale);
        let sign = if n < 0 { "-" } else { "" };
        if scale == 0 {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{frac}")
        }
    }

    proptest::proptest! {
        #[test]
        fn decimals_read_as_written(n: i128, scale in 0u32..40, trim in 0usize..16) {
            // Big-endian two's complement, with redundant sign bytes trimmed as Java writes it.
            let bytes = n.to_be_bytes();
            let fill = if n < 0 { 0xff } else { 0x00 };
            let mut start = 0;
            while start < trim.min(15) && bytes[start] == fill && (bytes[start + 1] & 0x80 == fill & 0x80) {
                start += 1;
            }
            proptest::prop_assert_eq!(decimal_text(&bytes[start..], scale), reference(n, scale));
        }

        #[test]
        fn any_schema_text_parses_or_says_why(text in ".{0,200}") {
            // Outside input (a registry's schema): never a panic.
            let _ = RecordSchema::parse(&text);
        }

        #[test]
        fn any_value_converts_or_says_why(seconds: i64, text in ".{0,40}") {
            for kind in [Kind::Date, Kind::Time(Unit::Nanos), Kind::Timestamp(Unit::Millis),
                         Kind::Decimal { precision: None, scale: 3, base64: true },
                         Kind::Bytes { base64: false }, Kind::DurationMicros] {
                let _ = convert(&kind, serde_json::json!(seconds));
                let _ = convert(&kind, serde_json::json!(text.clone()));
            }
        }
    }
}
