//! The form schemas are compared and stored in: the same schema, however it was written,
//! gets the same text and therefore the same global id.
//!
//! Names become full names (namespaces folded in, `namespace` attributes dropped), aliases
//! are qualified, `{"type":"int"}` becomes `"int"`, object keys are sorted and whitespace is
//! removed. Everything with meaning stays: defaults, docs, logical types and their
//! parameters, field `order`, custom properties (Confluent keeps them too, so a doc change is a
//! new version). `apache-avro`'s Parsing Canonical Form is not used for this: it drops
//! defaults, and it is wrong for logical types and `order`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

fn qualify(name: &str, namespace: Option<&str>) -> String {
    if name.contains('.') || PRIMITIVES.contains(&name) {
        return name.to_string();
    }
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

fn sorted(entries: BTreeMap<String, Value>) -> Value {
    let mut map = Map::new();
    for (k, v) in entries {
        map.insert(k, v);
    }
    Value::Object(map)
}

fn normalize(value: &Value, namespace: Option<&str>) -> Value {
    match value {
        Value::String(name) => Value::String(qualify(name, namespace)),
        Value::Array(branches) => {
            Value::Array(branches.iter().map(|b| normalize(b, namespace)).collect())
        }
        Value::Object(obj) => normalize_object(obj, namespace),
        other => other.clone(),
    }
}

fn normalize_object(obj: &Map<String, Value>, namespace: Option<&str>) -> Value {
    let kind = obj.get("type");
    let kind_str = kind.and_then(Value::as_str);
    if let Some(t) = kind_str {
        if obj.len() == 1 && PRIMITIVES.contains(&t) {
            return Value::String(t.to_string());
        }
    }
    let named = matches!(kind_str, Some("record" | "error" | "enum" | "fixed"));
    let mut out = BTreeMap::new();
    let mut inner_ns = namespace.map(str::to_string);
    if named {
        if let Some(name) = obj.get("name").and_then(Value::as_str) {
            let explicit_ns = obj.get("namespace").and_then(Value::as_str);
            let full = if name.contains('.') {
                name.to_string()
            } else {
                qualify(name, explicit_ns.or(namespace))
            };
            inner_ns = full.rsplit_once('.').map(|(ns, _)| ns.to_string());
            out.insert("name".to_string(), Value::String(full));
        }
    }
    for (key, v) in obj {
        let normalized = match key.as_str() {
            "name" if named => continue,
            "namespace" if named => continue,
            "type" => match v {
                Value::String(t)
                    if PRIMITIVES.contains(&t.as_str())
                        || matches!(
                            t.as_str(),
                            "record" | "error" | "enum" | "fixed" | "array" | "map"
                        ) =>
                {
                    v.clone()
                }
                other => normalize(other, inner_ns.as_deref()),
            },
            "fields" => match v {
                Value::Array(fields) => Value::Array(
                    fields
                        .iter()
                        .map(|f| match f {
                            Value::Object(field) => {
                                let mut fo = BTreeMap::new();
                                for (fk, fv) in field {
                                    let n = if fk == "type" {
                                        normalize(fv, inner_ns.as_deref())
                                    } else {
                                        fv.clone()
                                    };
                                    fo.insert(fk.clone(), n);
                                }
                                sorted(fo)
                            }
                            other => other.clone(),
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "values" => normalize(v, inner_ns.as_deref()),
            "aliases" if named => match v {
                Value::Array(aliases) => {
                    let ns = inner_ns.as_deref();
                    let mut qualified: Vec<String> = aliases
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|a| qualify(a, ns))
                        .collect();
                    qualified.sort();
                    Value::Array(qualified.into_iter().map(Value::String).collect())
                }
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(key.clone(), normalized);
    }
    sorted(out)
}

/// The canonical text of a schema given as JSON text (an error if it is not JSON).
pub fn canonical_text(schema: &str) -> Result<String, serde_json::Error> {
    let value: Value = serde_json::from_str(schema)?;
    Ok(serde_json::to_string(&normalize(&value, None)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_differences_vanish() {
        let a = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":{"type":"long"}},{"name":"tags","type":{"type":"array","items":"Tag"}}]}"#;
        let b = r#"{ "fields": [ {"type":"long","name":"id"}, {"name":"tags","type":{"items":"com.acme.Tag","type":"array"}} ],
                    "name":"com.acme.User", "type":"record" }"#;
        assert_eq!(canonical_text(a).unwrap(), canonical_text(b).unwrap());
        assert_eq!(
            canonical_text(r#"{"type":"string"}"#).unwrap(),
            r#""string""#
        );
    }

    #[test]
    fn meaning_stays() {
        let base =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}"#;
        let other_default =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":2}]}"#;
        assert_ne!(
            canonical_text(base).unwrap(),
            canonical_text(other_default).unwrap()
        );
        let date = r#"{"type":"int","logicalType":"date"}"#;
        assert_eq!(
            canonical_text(date).unwrap(),
            r#"{"logicalType":"date","type":"int"}"#
        );
        let ordered = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","order":"descending"}]}"#;
        assert!(canonical_text(ordered).unwrap().contains("descending"));
    }
}
