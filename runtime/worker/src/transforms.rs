//! Single-record transforms with the semantics Kafka Connect users know from its SMTs, on
//! JSON records: insert, replace (include/exclude/rename), mask, cast, value-to-key, extract,
//! flatten, hoist, timestamp router, regex router and filter, each optionally gated by a
//! predicate (topic name matches, has header key, record is tombstone) and its negation.
//!
//! ```yaml
//! transforms:
//!   - { type: replace_field, exclude: [password], renames: { uid: user_id } }
//!   - { type: insert_field, static_field: origin, static_value: web }
//!   - { type: filter, predicate: { type: record_is_tombstone } }
//! ```

use serde_json::{json, Map, Value as Json};
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};

/// A record's key as transforms see it, the same on both sides: JSON when it parses as
/// JSON, else its text as a JSON string (so a plain string key is never dropped).
pub fn key_to_json(key: &Option<sluice_connector_sdk::data::Payload>) -> Option<Json> {
    use sluice_connector_sdk::data::Payload;
    match key {
        Some(Payload::Raw(b)) => Some(
            serde_json::from_slice(b)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(b).into_owned())),
        ),
        Some(Payload::Typed { value, .. }) => Some(crate::convert::value_to_json(value)),
        None => None,
    }
}

/// A transformed key back to bytes: a JSON string as its text, anything else as JSON.
pub fn key_from_json(key: Json) -> sluice_connector_sdk::data::Payload {
    use sluice_connector_sdk::data::Payload;
    match key {
        Json::String(s) => Payload::Raw(s.into()),
        other => Payload::Raw(other.to_string().into()),
    }
}

/// A record as transforms see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TRecord {
    pub topic: String,
    pub key: Option<Json>,
    pub value: Option<Json>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: i64,
}

#[derive(Debug, Clone)]
pub enum Predicate {
    TopicNameMatches(regex::Regex),
    HasHeaderKey(String),
    RecordIsTombstone,
}

impl Predicate {
    fn test(&self, r: &TRecord) -> bool {
        match self {
            Predicate::TopicNameMatches(re) => re.is_match(&r.topic),
            Predicate::HasHeaderKey(k) => r.headers.iter().any(|(h, _)| h == k),
            Predicate::RecordIsTombstone => r.value.is_none(),
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    InsertField {
        static_field: Option<(String, Json)>,
        topic_field: Option<String>,
        timestamp_field: Option<String>,
    },
    ReplaceField {
        include: Vec<String>,
        exclude: Vec<String>,
        renames: Vec<(String, String)>,
    },
    MaskField {
        fields: Vec<String>,
        replacement: Option<String>,
    },
    Cast {
        casts: Vec<(String, String)>,
    },
    ValueToKey {
        fields: Vec<String>,
    },
    ExtractField {
        field: String,
        on_key: bool,
    },
    Flatten {
        delimiter: String,
    },
    HoistField {
        field: String,
        on_key: bool,
    },
    TimestampRouter {
        topic_format: String,
        timestamp_format: String,
    },
    RegexRouter {
        regex: regex::Regex,
        replacement: String,
    },
    Filter,
}

/// One configured transform.
#[derive(Debug, Clone)]
pub struct Transform {
    pub name: String,
    kind: Kind,
    predicate: Option<Predicate>,
    negate: bool,
}

const CASTS: [&str; 8] = [
    "int8", "int16", "int32", "int64", "float32", "float64", "boolean", "string",
];

/// The transform types and their settings, for validation and docs.
pub fn spec(type_name: &str) -> Option<ConfigSpec> {
    let s = |name: &str, doc: &str| FieldSpec::optional(name, FieldKind::String, None, doc);
    let list = |name: &str, doc: &str| {
        FieldSpec::optional(
            name,
            FieldKind::List(Box::new(FieldKind::String)),
            None,
            doc,
        )
    };
    let which = FieldSpec::optional(
        "on",
        FieldKind::OneOf(vec!["value".into(), "key".into()]),
        Some(json!("value")),
        "apply to the value or the key",
    );
    Some(ConfigSpec::new(match type_name {
        "insert_field" => vec![
            s("static_field", "field to add with `static_value`"),
            s("static_value", "the value of `static_field`"),
            s("topic_field", "field to add holding the topic name"),
            s(
                "timestamp_field",
                "field to add holding the record timestamp (ms)",
            ),
        ],
        "replace_field" => vec![
            list("include", "keep only these fields"),
            list("exclude", "drop these fields"),
            list("renames", "`from:to` pairs"),
        ],
        "mask_field" => vec![
            FieldSpec::required(
                "fields",
                FieldKind::List(Box::new(FieldKind::String)),
                "fields to mask",
            ),
            s(
                "replacement",
                "the masked value (default: the type's empty value)",
            ),
        ],
        "cast" => vec![FieldSpec::required(
            "spec",
            FieldKind::List(Box::new(FieldKind::String)),
            "`field:type` pairs; types int8..int64, float32, float64, boolean, string",
        )],
        "value_to_key" => vec![FieldSpec::required(
            "fields",
            FieldKind::List(Box::new(FieldKind::String)),
            "value fields that make the key",
        )],
        "extract_field" => vec![
            FieldSpec::required(
                "field",
                FieldKind::String,
                "the field to keep as the whole value",
            ),
            which,
        ],
        "flatten" => vec![FieldSpec::optional(
            "delimiter",
            FieldKind::String,
            Some(json!(".")),
            "joins nested field names",
        )],
        "hoist_field" => vec![
            FieldSpec::required("field", FieldKind::String, "the field to wrap the value in"),
            which,
        ],
        "timestamp_router" => vec![
            FieldSpec::optional(
                "topic_format",
                FieldKind::String,
                Some(json!("${topic}-${timestamp}")),
                "the new topic",
            ),
            FieldSpec::optional(
                "timestamp_format",
                FieldKind::String,
                Some(json!("yyyyMMdd")),
                "yyyy, MM, dd, HH, mm, ss",
            ),
        ],
        "regex_router" => vec![
            FieldSpec::required(
                "regex",
                FieldKind::String,
                "matched against the whole topic name",
            ),
            FieldSpec::required(
                "replacement",
                FieldKind::String,
                "the new topic ($1… for groups)",
            ),
        ],
        "filter" => vec![],
        _ => return None,
    }))
}

pub const TYPES: [&str; 11] = [
    "insert_field",
    "replace_field",
    "mask_field",
    "cast",
    "value_to_key",
    "extract_field",
    "flatten",
    "hoist_field",
    "timestamp_router",
    "regex_router",
    "filter",
];

fn pairs(items: Vec<String>, what: &str) -> Result<Vec<(String, String)>, String> {
    items
        .into_iter()
        .map(|p| {
            p.split_once(':')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .ok_or_else(|| format!("`{p}` in `{what}` is not `a:b`"))
        })
        .collect()
}

impl Transform {
    /// Builds a checked transform (settings already validated against [`spec`]).
    pub fn build(
        name: &str,
        type_name: &str,
        c: &ConfigValues,
        predicate: Option<Predicate>,
        negate: bool,
    ) -> Result<Transform, String> {
        let on_key = c.str("on") == Some("key");
        let kind = match type_name {
            "insert_field" => {
                let static_field = match (c.str("static_field"), c.get("static_value")) {
                    (Some(f), Some(v)) => Some((f.to_string(), v.clone())),
                    (None, None) => None,
                    _ => return Err("`static_field` and `static_value` go together".into()),
                };
                Kind::InsertField {
                    static_field,
                    topic_field: c.str("topic_field").map(str::to_string),
                    timestamp_field: c.str("timestamp_field").map(str::to_string),
                }
            }
            "replace_field" => Kind::ReplaceField {
                include: c.strings("include"),
                exclude: c.strings("exclude"),
                renames: pairs(c.strings("renames"), "renames")?,
            },
            "mask_field" => Kind::MaskField {
                fields: c.strings("fields"),
                replacement: c.str("replacement").map(str::to_string),
            },
            "cast" => {
                let casts = pairs(c.strings("spec"), "spec")?;
                if let Some((_, t)) = casts.iter().find(|(_, t)| !CASTS.contains(&t.as_str())) {
                    return Err(format!(
                        "cannot cast to `{t}`: use one of {}",
                        CASTS.join(", ")
                    ));
                }
                Kind::Cast { casts }
            }
            "value_to_key" => Kind::ValueToKey {
                fields: c.strings("fields"),
            },
            "extract_field" => Kind::ExtractField {
                field: c.str("field").unwrap_or_default().to_string(),
                on_key,
            },
            "flatten" => Kind::Flatten {
                delimiter: c.str("delimiter").unwrap_or(".").to_string(),
            },
            "hoist_field" => Kind::HoistField {
                field: c.str("field").unwrap_or_default().to_string(),
                on_key,
            },
            "timestamp_router" => Kind::TimestampRouter {
                topic_format: c
                    .str("topic_format")
                    .unwrap_or("${topic}-${timestamp}")
                    .to_string(),
                timestamp_format: c.str("timestamp_format").unwrap_or("yyyyMMdd").to_string(),
            },
            "regex_router" => Kind::RegexRouter {
                regex: regex::Regex::new(&format!("^(?:{})$", c.str("regex").unwrap_or_default()))
                    .map_err(|e| format!("invalid `regex`: {e}"))?,
                replacement: c.str("replacement").unwrap_or_default().to_string(),
            },
            "filter" => Kind::Filter,
            other => return Err(format!("unknown transform type `{other}`")),
        };
        Ok(Transform {
            name: name.to_string(),
            kind,
            predicate,
            negate,
        })
    }

    /// Applies the transform; `None` drops the record.
    pub fn apply(&self, mut r: TRecord) -> Result<Option<TRecord>, String> {
        if let Some(p) = &self.predicate {
            if p.test(&r) == self.negate {
                return Ok(Some(r));
            }
        }
        match &self.kind {
            Kind::Filter => return Ok(None),
            Kind::InsertField {
                static_field,
                topic_field,
                timestamp_field,
            } => {
                if let Some(Json::Object(obj)) = &mut r.value {
                    if let Some((f, v)) = static_field {
                        obj.insert(f.clone(), v.clone());
                    }
                    if let Some(f) = topic_field {
                        obj.insert(f.clone(), json!(r.topic));
                    }
                    if let Some(f) = timestamp_field {
                        obj.insert(f.clone(), json!(r.timestamp));
                    }
                }
            }
            Kind::ReplaceField {
                include,
                exclude,
                renames,
            } => {
                if let Some(Json::Object(obj)) = &mut r.value {
                    let mut out = Map::new();
                    for (k, v) in std::mem::take(obj) {
                        if (!include.is_empty() && !include.contains(&k)) || exclude.contains(&k) {
                            continue;
                        }
                        let name = renames
                            .iter()
                            .find(|(from, _)| *from == k)
                            .map(|(_, to)| to.clone())
                            .unwrap_or(k);
                        out.insert(name, v);
                    }
                    *obj = out;
                }
            }
            Kind::MaskField {
                fields,
                replacement,
            } => {
                if let Some(Json::Object(obj)) = &mut r.value {
                    for f in fields {
                        if let Some(v) = obj.get_mut(f) {
                            *v = match (replacement, &*v) {
                                (Some(rep), Json::Number(_)) => rep
                                    .parse::<f64>()
                                    .ok()
                                    .and_then(serde_json::Number::from_f64)
                                    .map(Json::Number)
                                    .unwrap_or(json!(0)),
                                (Some(rep), _) => json!(rep),
                                (None, Json::String(_)) => json!(""),
                                (None, Json::Number(_)) => json!(0),
                                (None, Json::Bool(_)) => json!(false),
                                (None, Json::Array(_)) => json!([]),
                                (None, Json::Object(_)) => json!({}),
                                (None, Json::Null) => Json::Null,
                            };
                        }
                    }
                }
            }
            Kind::Cast { casts } => {
                if let Some(Json::Object(obj)) = &mut r.value {
                    for (f, t) in casts {
                        if let Some(v) = obj.get_mut(f) {
                            *v = cast(v, t).map_err(|e| format!("cast of `{f}`: {e}"))?;
                        }
                    }
                }
            }
            Kind::ValueToKey { fields } => {
                let obj = match &r.value {
                    Some(Json::Object(o)) => o,
                    _ => return Err("value_to_key needs the value to be an object".into()),
                };
                let mut key = Map::new();
                for f in fields {
                    key.insert(
                        f.clone(),
                        obj.get(f)
                            .cloned()
                            .ok_or_else(|| format!("value_to_key: the value has no field `{f}`"))?,
                    );
                }
                r.key = Some(Json::Object(key));
            }
            Kind::ExtractField { field, on_key } => {
                let target = if *on_key { &mut r.key } else { &mut r.value };
                if let Some(Json::Object(obj)) = target {
                    *target = obj.remove(field).filter(|v| !v.is_null());
                }
            }
            Kind::Flatten { delimiter } => {
                if let Some(Json::Object(obj)) = &mut r.value {
                    let mut out = Map::new();
                    flatten("", std::mem::take(obj), delimiter, &mut out);
                    *obj = out;
                }
            }
            Kind::HoistField { field, on_key } => {
                let target = if *on_key { &mut r.key } else { &mut r.value };
                if let Some(v) = target.take() {
                    *target = Some(json!({ field.clone(): v }));
                }
            }
            Kind::TimestampRouter {
                topic_format,
                timestamp_format,
            } => {
                let ts = format_timestamp(r.timestamp, timestamp_format);
                r.topic = topic_format
                    .replace("${topic}", &r.topic)
                    .replace("${timestamp}", &ts);
            }
            Kind::RegexRouter { regex, replacement } => {
                if regex.is_match(&r.topic) {
                    r.topic = regex.replace(&r.topic, replacement.as_str()).into_owned();
                }
            }
        }
        Ok(Some(r))
    }
}

fn flatten(prefix: &str, obj: Map<String, Json>, delimiter: &str, out: &mut Map<String, Json>) {
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}{delimiter}{k}")
        };
        match v {
            Json::Object(inner) => flatten(&name, inner, delimiter, out),
            other => {
                out.insert(name, other);
            }
        }
    }
}

fn cast(v: &Json, to: &str) -> Result<Json, String> {
    let as_f64 = || match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        Json::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    };
    let int = |bits: u32| -> Result<Json, String> {
        let f = as_f64().ok_or_else(|| format!("{v} is not a number"))?;
        let i = f.trunc() as i64;
        let (min, max) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
        if bits < 64 && (i < min || i > max) {
            return Err(format!("{v} does not fit in int{bits}"));
        }
        Ok(json!(i))
    };
    match to {
        "int8" => int(8),
        "int16" => int(16),
        "int32" => int(32),
        "int64" => int(64),
        "float32" | "float64" => as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| format!("{v} is not a number")),
        "boolean" => match v {
            Json::Bool(b) => Ok(json!(b)),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(json!(true)),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(json!(false)),
            Json::Number(n) => Ok(json!(n.as_f64() != Some(0.0))),
            _ => Err(format!("{v} is not a boolean")),
        },
        "string" => Ok(match v {
            Json::String(s) => json!(s),
            other => json!(other.to_string()),
        }),
        other => Err(format!("unknown type {other}")),
    }
}

/// `yyyy`, `MM`, `dd`, `HH`, `mm`, `ss` of a UTC timestamp in milliseconds.
fn format_timestamp(ms: i64, format: &str) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format
        .replace("yyyy", &format!("{y:04}"))
        .replace("MM", &format!("{m:02}"))
        .replace("dd", &format!("{d:02}"))
        .replace("HH", &format!("{:02}", rem / 3600))
        .replace("mm", &format!("{:02}", rem % 3600 / 60))
        .replace("ss", &format!("{:02}", rem % 60))
}

/// Applies a chain; `None` when a transform dropped the record.
pub fn apply_all(chain: &[Transform], mut r: TRecord) -> Result<Option<TRecord>, String> {
    for t in chain {
        match t
            .apply(r)
            .map_err(|e| format!("transform `{}`: {e}", t.name))?
        {
            Some(next) => r = next,
            None => return Ok(None),
        }
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(type_name: &str, settings: Json) -> Transform {
        let c = spec(type_name)
            .unwrap()
            .validate(settings.as_object().unwrap())
            .unwrap();
        Transform::build(type_name, type_name, &c, None, false).unwrap()
    }

    fn rec(value: Json) -> TRecord {
        TRecord {
            topic: "orders".into(),
            key: None,
            value: Some(value),
            headers: vec![],
            timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn field_transforms() {
        let r = rec(
            json!({"id": 1, "password": "x", "uid": 7, "card": "4111", "qty": "3", "addr": {"city": "Oslo", "geo": {"lat": 1}}}),
        );
        let chain = vec![
            build(
                "replace_field",
                json!({"exclude": ["password"], "renames": ["uid:user_id"]}),
            ),
            build("mask_field", json!({"fields": ["card"]})),
            build("cast", json!({"spec": ["qty:int32"]})),
            build(
                "insert_field",
                json!({"static_field": "origin", "static_value": "web", "topic_field": "topic"}),
            ),
            build("flatten", json!({"delimiter": "_"})),
            build("value_to_key", json!({"fields": ["id"]})),
        ];
        let out = apply_all(&chain, r).unwrap().unwrap();
        assert_eq!(out.key, Some(json!({"id": 1})));
        assert_eq!(
            out.value,
            Some(
                json!({"id": 1, "user_id": 7, "card": "", "qty": 3, "addr_city": "Oslo", "addr_geo_lat": 1, "origin": "web", "topic": "orders"})
            )
        );
    }

    #[test]
    fn extract_hoist_routers_filter_and_predicates() {
        let extracted = build("extract_field", json!({"field": "after"}))
            .apply(rec(json!({"after": {"id": 1}, "before": null})))
            .unwrap()
            .unwrap();
        assert_eq!(extracted.value, Some(json!({"id": 1})));
        let hoisted = build("hoist_field", json!({"field": "payload"}))
            .apply(rec(json!(5)))
            .unwrap()
            .unwrap();
        assert_eq!(hoisted.value, Some(json!({"payload": 5})));
        let routed = build("timestamp_router", json!({}))
            .apply(rec(json!({})))
            .unwrap()
            .unwrap();
        assert_eq!(routed.topic, "orders-20231114");
        let re = build(
            "regex_router",
            json!({"regex": "(.*)ers", "replacement": "$1-archive"}),
        )
        .apply(rec(json!({})))
        .unwrap()
        .unwrap();
        assert_eq!(re.topic, "ord-archive");

        let c = spec("filter").unwrap().validate(&Map::new()).unwrap();
        let drop_tombstones =
            Transform::build("f", "filter", &c, Some(Predicate::RecordIsTombstone), false).unwrap();
        let mut tomb = rec(json!(null));
        tomb.value = None;
        assert_eq!(drop_tombstones.apply(tomb.clone()).unwrap(), None);
        assert!(drop_tombstones.apply(rec(json!({}))).unwrap().is_some());
        let keep_only_orders = Transform::build(
            "f",
            "filter",
            &c,
            Some(Predicate::TopicNameMatches(
                regex::Regex::new("^orders$").unwrap(),
            )),
            true,
        )
        .unwrap();
        assert!(
            keep_only_orders.apply(rec(json!({}))).unwrap().is_some(),
            "negated: orders pass"
        );
        let mut other = rec(json!({}));
        other.topic = "audit".into();
        assert_eq!(keep_only_orders.apply(other).unwrap(), None);
        let with_header = Transform::build(
            "f",
            "filter",
            &c,
            Some(Predicate::HasHeaderKey("debug".into())),
            false,
        )
        .unwrap();
        let mut h = rec(json!({}));
        h.headers.push(("debug".into(), vec![]));
        assert_eq!(with_header.apply(h).unwrap(), None);
    }

    #[test]
    fn bad_data_is_an_error_with_the_transform_name() {
        let chain = vec![build("cast", json!({"spec": ["n:int8"]}))];
        let err = apply_all(&chain, rec(json!({"n": 300}))).unwrap_err();
        assert_eq!(
            err,
            "transform `cast`: cast of `n`: 300 does not fit in int8"
        );
    }
}
