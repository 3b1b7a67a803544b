//! Kafka Connect's JSON schemas (the `schema` half of `JsonConverter`'s
//! `{"schema": …, "payload": …}` envelope with `schemas.enable=true`) to and from Avro, with
//! the mapping Confluent's `AvroData` uses: `struct` ↔ record, `optional` ↔ a union with
//! `null` (default `null`), `int8`/`int16`/`int32` → `int`, `int64` ↔ `long`, the
//! `Timestamp` and `Date` logical names ↔ `timestamp-millis` and `date`, enums → `string`.
//!
//! For sinks reading Connect's JSON, the Avro form also keeps what a typed sink needs:
//! other semantic names (Debezium's `io.debezium.time.MicroTimestamp`, …) as `connect.name`
//! with their `connect.parameters`, Connect's `Decimal` and `Time` the same way, and
//! `"sluice.bytes": "base64"` on bytes (Connect's JSON writes bytes as base64, where Sluice's
//! Avro-to-JSON writes code points 0–255).
//!
//! Not mapped (an error says so): maps with non-string keys, unions other than
//! `["null", T]`.

use apache_avro::schema::{Name, Schema};
use serde_json::{json, Map, Value as Json};

const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
const DATE: &str = "org.apache.kafka.connect.data.Date";
const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const TIME: &str = "org.apache.kafka.connect.data.Time";

/// The Connect schema of an Avro schema.
pub fn from_avro(schema: &Schema) -> Result<Json, String> {
    from_avro_in(schema, &mut Vec::new())
}

fn named(n: &Name) -> String {
    n.fullname(None)
}

fn from_avro_in(schema: &Schema, seen: &mut Vec<String>) -> Result<Json, String> {
    let plain = |t: &str| Ok(json!({"type": t, "optional": false}));
    match schema {
        Schema::Boolean => plain("boolean"),
        Schema::Int => plain("int32"),
        Schema::Long => plain("int64"),
        Schema::Float => plain("float"),
        Schema::Double => plain("double"),
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => plain("string"),
        Schema::Bytes | Schema::Fixed(_) => plain("bytes"),
        Schema::TimestampMillis => {
            Ok(json!({"type": "int64", "optional": false, "name": TIMESTAMP, "version": 1}))
        }
        Schema::Date => Ok(json!({"type": "int32", "optional": false, "name": DATE, "version": 1})),
        Schema::Array(a) => Ok(json!({
            "type": "array", "optional": false, "items": from_avro_in(&a.items, seen)?
        })),
        Schema::Map(m) => Ok(json!({
            "type": "map", "optional": false,
            "keys": {"type": "string", "optional": false},
            "values": from_avro_in(&m.types, seen)?
        })),
        Schema::Union(u) => {
            let branches = u.variants();
            match branches {
                [Schema::Null, other] | [other, Schema::Null] => {
                    let mut inner = from_avro_in(other, seen)?;
                    inner["optional"] = json!(true);
                    Ok(inner)
                }
                _ => Err(format!(
                    "a union of {} branches has no Connect schema (only [\"null\", T] does)",
                    branches.len()
                )),
            }
        }
        Schema::Record(r) => {
            let name = named(&r.name);
            if seen.contains(&name) {
                return Err(format!("the recursive type {name} has no Connect schema"));
            }
            seen.push(name.clone());
            let mut fields = Vec::new();
            for f in &r.fields {
                let mut field = from_avro_in(&f.schema, seen)?;
                field["field"] = json!(f.name);
                fields.push(field);
            }
            seen.pop();
            Ok(json!({"type": "struct", "optional": false, "name": name, "fields": fields}))
        }
        other => Err(format!(
            "the Avro type {:?} has no Connect schema",
            other.canonical_form()
        )),
    }
}

/// The Avro schema (JSON) of a Connect schema.
pub fn to_avro(connect: &Json) -> Result<Json, String> {
    let mut anonymous = 0;
    to_avro_in(connect, "", &mut anonymous)
}

fn to_avro_in(connect: &Json, path: &str, anonymous: &mut u32) -> Result<Json, String> {
    let at = if path.is_empty() { "/" } else { path };
    let Json::Object(c) = connect else {
        return Err(format!(
            "{at}: a Connect schema is an object, found {connect}"
        ));
    };
    let kind = c.get("type").and_then(Json::as_str).unwrap_or("");
    let name = c.get("name").and_then(Json::as_str);
    let mut base = match (kind, name) {
        ("int64", Some(TIMESTAMP)) => json!({"type": "long", "logicalType": "timestamp-millis"}),
        ("int32", Some(DATE)) => json!({"type": "int", "logicalType": "date"}),
        ("bytes", Some(DECIMAL)) | ("int32", Some(TIME)) => json!({"type": kind_avro(kind)}),
        (_, Some(n)) if n.starts_with("org.apache.kafka.connect.data.") && kind != "struct" => {
            return Err(format!(
                "{at}: the Connect logical type {n} is not supported"
            ))
        }
        ("boolean", _) => json!("boolean"),
        ("int8" | "int16" | "int32", _) => json!("int"),
        ("int64", _) => json!("long"),
        ("float", _) => json!("float"),
        ("double", _) => json!("double"),
        ("string", _) => json!("string"),
        ("bytes", _) => json!({"type": "bytes", "sluice.bytes": "base64"}),
        ("array", _) => {
            let items = c
                .get("items")
                .ok_or(format!("{at}: an array needs `items`"))?;
            json!({"type": "array", "items": to_avro_in(items, &format!("{path}/items"), anonymous)?})
        }
        ("map", _) => {
            let keys = c
                .get("keys")
                .and_then(|k| k.get("type"))
                .and_then(Json::as_str);
            if keys != Some("string") {
                return Err(format!("{at}: only maps with string keys are supported"));
            }
            let values = c
                .get("values")
                .ok_or(format!("{at}: a map needs `values`"))?;
            json!({"type": "map", "values": to_avro_in(values, &format!("{path}/values"), anonymous)?})
        }
        ("struct", _) => {
            let record_name = match name {
                Some(n) => n.to_string(),
                None => {
                    // What Confluent's AvroData calls structs without a name.
                    *anonymous += 1;
                    format!("ConnectDefault{anonymous}")
                }
            };
            let fields = c
                .get("fields")
                .and_then(Json::as_array)
                .ok_or(format!("{at}: a struct needs `fields`"))?;
            let mut out = Vec::new();
            for f in fields {
                let field_name = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or(format!("{at}: each field needs `field` (its name)"))?;
                let schema = to_avro_in(f, &format!("{path}/{field_name}"), anonymous)?;
                let mut field = Map::new();
                field.insert("name".into(), json!(field_name));
                let optional = schema.is_array(); // optional fields come back as unions
                field.insert("type".into(), schema);
                if optional {
                    field.insert("default".into(), Json::Null);
                }
                out.push(Json::Object(field));
            }
            json!({"type": "record", "name": record_name, "fields": out})
        }
        (other, _) => return Err(format!("{at}: unknown Connect type `{other}`")),
    };
    // A semantic name a typed sink reads (Debezium's, Connect's Decimal and Time), kept
    // where Avro allows properties.
    if let (Some(n), false) = (name, matches!(kind, "struct" | "array" | "map")) {
        if base.is_string() {
            base = json!({"type": base});
        }
        if let Some(o) = base.as_object_mut() {
            if !o.contains_key("logicalType") {
                o.insert("connect.name".into(), json!(n));
                if let Some(p) = c.get("parameters") {
                    o.insert("connect.parameters".into(), p.clone());
                }
                if kind == "bytes" {
                    o.insert("sluice.bytes".into(), json!("base64"));
                }
            }
        }
    }
    if c.get("optional").and_then(Json::as_bool) == Some(true) {
        Ok(json!(["null", base]))
    } else {
        Ok(base)
    }
}

fn kind_avro(connect: &str) -> &'static str {
    match connect {
        "bytes" => "bytes",
        "int64" => "long",
        _ => "int",
    }
}

/// Parses an Avro schema from its JSON form.
pub fn parse(avro: &Json) -> Result<Schema, String> {
    Schema::parse(avro).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_struct_to_avro_and_back() {
        let connect = json!({
            "type": "struct", "name": "shop.Order", "optional": false,
            "fields": [
                {"field": "id", "type": "int64", "optional": false},
                {"field": "qty", "type": "int16", "optional": false},
                {"field": "note", "type": "string", "optional": true},
                {"field": "at", "type": "int64", "optional": false, "name": TIMESTAMP, "version": 1},
                {"field": "tags", "type": "array", "optional": false, "items": {"type": "string", "optional": false}},
                {"field": "attrs", "type": "map", "optional": true,
                 "keys": {"type": "string", "optional": false}, "values": {"type": "double", "optional": false}},
                {"field": "line", "type": "struct", "optional": false,
                 "fields": [{"field": "sku", "type": "string", "optional": false}]}
            ]
        });
        let avro = to_avro(&connect).unwrap();
        assert_eq!(avro["fields"][1]["type"], json!("int"));
        assert_eq!(avro["fields"][2]["type"], json!(["null", "string"]));
        assert_eq!(avro["fields"][2]["default"], Json::Null);
        assert_eq!(
            avro["fields"][3]["type"]["logicalType"],
            json!("timestamp-millis")
        );
        assert_eq!(avro["fields"][6]["type"]["name"], json!("ConnectDefault1"));
        let parsed = parse(&avro).unwrap();
        let back = from_avro(&parsed).unwrap();
        assert_eq!(back["name"], json!("shop.Order"));
        assert_eq!(back["fields"][2]["optional"], json!(true));
        assert_eq!(back["fields"][3]["name"], json!(TIMESTAMP));
        assert_eq!(back["fields"][5]["values"]["type"], json!("double"));
    }

    #[test]
    fn semantic_names_and_base64_bytes_are_kept_for_typed_sinks() {
        let connect = json!({"type": "struct", "name": "v", "fields": [
            {"field": "price", "type": "bytes", "optional": true, "name": DECIMAL, "version": 1,
             "parameters": {"scale": "2", "connect.decimal.precision": "10"}},
            {"field": "at", "type": "int64", "optional": false, "name": "io.debezium.time.MicroTimestamp", "version": 1},
            {"field": "raw", "type": "bytes", "optional": false}
        ]});
        let avro = to_avro(&connect).unwrap();
        assert_eq!(
            avro["fields"][0]["type"],
            json!(["null", {"type": "bytes", "connect.name": DECIMAL,
                "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}, "sluice.bytes": "base64"}])
        );
        assert_eq!(
            avro["fields"][1]["type"],
            json!({"type": "long", "connect.name": "io.debezium.time.MicroTimestamp"})
        );
        assert_eq!(
            avro["fields"][2]["type"],
            json!({"type": "bytes", "sluice.bytes": "base64"})
        );
        parse(&avro).unwrap();
    }

    #[test]
    fn unmapped_types_say_where() {
        let err = to_avro(&json!({"type": "struct", "fields": [
            {"field": "m", "type": "map", "keys": {"type": "int32"}, "values": {"type": "string"}}
        ]}))
        .unwrap_err();
        assert!(err.starts_with("/m: only maps with string keys"), "{err}");
        let err =
            to_avro(&json!({"type": "string", "name": "org.apache.kafka.connect.data.Decimal"}))
                .unwrap_err();
        assert!(err.contains("Decimal is not supported"), "{err}");
        let union = parse(&json!(["int", "string"])).unwrap();
        assert!(from_avro(&union)
            .unwrap_err()
            .contains("union of 2 branches"));
    }
}
