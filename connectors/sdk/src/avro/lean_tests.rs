//! The lean path against the general one: for any JSON text (fitting the schema or not), the
//! same Avro bytes or the same error; for any datum, the same JSON text.

use proptest::prelude::*;
use serde_json::{json, Value as Json};

use super::*;

const SCHEMA: &str = r#"{"type": "record", "name": "Everything", "fields": [
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long", "default": 7},
    {"name": "f", "type": "float", "default": 1.5},
    {"name": "d", "type": "double"},
    {"name": "s", "type": "string", "default": "x"},
    {"name": "b", "type": "bytes", "default": ""},
    {"name": "fx", "type": {"type": "fixed", "name": "Three", "size": 3}, "default": "abc"},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}, "default": "RED"},
    {"name": "a", "type": {"type": "array", "items": "int"}, "default": []},
    {"name": "m", "type": {"type": "map", "values": "string"}, "default": {}},
    {"name": "on", "type": ["null", "string"], "default": null},
    {"name": "num", "type": ["int", "long", "double", "string"], "default": 0},
    {"name": "two", "type": ["null", {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]},
                               {"type": "record", "name": "B", "fields": [{"name": "y", "type": "string"}]}], "default": null},
    {"name": "next", "type": ["null", "Everything"], "default": null},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}, "default": 0}
]}"#;

fn compiled() -> Compiled {
    Compiled::new(Schema::parse_str(SCHEMA).unwrap())
}

fn general_encode(c: &Compiled, text: &[u8]) -> Result<Vec<u8>, JsonToAvroError> {
    let v: Json =
        serde_json::from_slice(text).map_err(|e| JsonToAvroError::NotJson(e.to_string()))?;
    let mut out = Vec::new();
    c.encode(&v, &mut out)
        .map_err(JsonToAvroError::DoesNotFit)?;
    Ok(out)
}

fn lean_encode(c: &Compiled, text: &[u8]) -> Result<Vec<u8>, JsonToAvroError> {
    let mut out = b"prefix".to_vec();
    let r = c.encode_json(text, &mut out);
    match r {
        Ok(()) => Ok(out[6..].to_vec()),
        Err(e) => {
            assert_eq!(out, b"prefix", "nothing left behind on an error");
            Err(e)
        }
    }
}

fn check(c: &Compiled, text: &[u8]) {
    let lean = lean_encode(c, text);
    assert_eq!(
        lean,
        general_encode(c, text),
        "{}",
        String::from_utf8_lossy(text)
    );
    if let Ok(datum) = lean {
        let mut out = Vec::new();
        c.write_json(&datum, &mut out).unwrap();
        let general = serde_json::to_vec(&c.decode(&datum).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&general)
        );
    }
}

fn full_value() -> Json {
    json!({"i": -3, "l": 1u64 << 40, "f": 0.1, "d": 2.5e300, "s": "h\u{e9}llo \"q\" \\ \n\t\u{1}",
           "b": "\u{0}\u{ff}a", "fx": "\u{1}\u{fe}z", "e": "GREEN", "a": [1, -2, 3], "m": {"k": "v", "\u{2603}": ""},
           "on": "yes", "num": 1.25, "two": {"y": "b-branch"}, "next": {"i": 1, "d": 0}, "ts": 1_700_000_000_000u64})
}

#[test]
fn known_values_match_the_general_path() {
    let c = compiled();
    for v in [
        full_value(),
        json!({"i": 1, "d": 1}),
        json!({"d": 1, "i": 1}),
        json!({"i": 1, "d": 1, "i": 2}),
        json!({"i": 1, "d": 1, "unknown": {"deep": [1, 2, {"x": null}]}}),
        json!({"i": 1, "d": 1, "num": 3_000_000_000u64}),
        json!({"i": 1, "d": 1, "num": "s"}),
        json!({"i": 1, "d": 1, "two": {"x": 5}}),
        json!({"i": 1, "d": 1, "two": {"x": "not an int"}}),
        json!({"i": 1.0, "d": 1}),
        json!({"i": 1, "d": "x"}),
        json!({"i": 1}),
        json!({"i": 1, "d": 1, "fx": "ab"}),
        json!({"i": 1, "d": 1, "e": "BLUE"}),
        json!({"i": 1, "d": 1, "a": []}),
        json!({"i": 1, "d": 1, "m": {}}),
        json!({"i": 1, "d": 1, "next": {"i": 2, "d": 2, "next": {"i": 3, "d": 3}}}),
        json!([1, 2]),
        json!(null),
    ] {
        check(&c, v.to_string().as_bytes());
    }
    for text in [
        &br#"{"i": 1, "d": 1, "m": {"k": "a", "k": "b"}}"#[..],
        br#"{"i": 1, "d": 1} trailing"#,
        br#"{"i": 1, "d": "#,
        b"",
        br#"{"i": 1, "d": 1e400}"#,
        br#"{"i": 2147483648, "d": 0}"#,
        br#"{"i": -2147483648, "d": -0.0}"#,
        br#"{"i": 1, "d": 900719925474099.2}"#,
        br#"{"i": 1, "d": 900719925474099.3}"#,
        br#"{"i": 1, "d": 0.1000000000000000000001}"#,
        br#"{"i": 1, "d": 1.0000000000000000000001}"#,
    ] {
        check(&c, text);
    }
}

/// JSON values, mostly objects keyed by the schema's field names, with values of any type.
fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        (-1e6f64..1e6).prop_map(Json::from),
        (0i32..10).prop_map(Json::from),
        "[a-z\u{e9}\u{ff}\u{2603}\"\\\\\n\u{1}\u{7f}]{0,24}".prop_map(Json::from),
        prop_oneof![Just("RED"), Just("GREEN"), Just("abc"), Just("ab")].prop_map(Json::from),
    ];
    let keys = prop_oneof![
        Just("i"),
        Just("l"),
        Just("f"),
        Just("d"),
        Just("s"),
        Just("b"),
        Just("fx"),
        Just("e"),
        Just("a"),
        Just("m"),
        Just("on"),
        Just("num"),
        Just("two"),
        Just("next"),
        Just("ts"),
        Just("x"),
        Just("y"),
        Just("zz")
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|entries| {
                Json::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_json_gives_the_general_paths_bytes_or_error(v in json_value()) {
        let c = compiled();
        check(&c, v.to_string().as_bytes());
        // The same value with every required field present, so that most cases fit.
        if let Json::Object(mut o) = v {
            o.entry("i").or_insert(json!(1));
            o.entry("d").or_insert(json!(2));
            check(&c, Json::Object(o).to_string().as_bytes());
        }
    }

    /// Objects whose first keys come in the schema's order (the in-line loop) and whose
    /// others do not (repeated, unknown, out of order, missing): the fields end up in the
    /// schema's order, as the general path has them.
    #[test]
    fn objects_leaving_the_schemas_order_match_the_general_path(
        in_order in 0usize..16,
        values in prop::collection::vec(json_value(), 16),
        rest in prop::collection::vec(("[a-z]{1,4}|i|l|f|d|s|e|on|ts", json_value()), 0..4),
        spaced in any::<bool>(),
    ) {
        let c = compiled();
        let names = ["i", "l", "f", "d", "s", "b", "fx", "e", "a", "m", "on", "num", "two", "next", "ts"];
        let good = full_value();
        let mut text = String::from("{");
        for (n, name) in names.iter().take(in_order).enumerate() {
            // Mostly values that fit, so that the in-line loop goes on.
            let v = if n % 3 == 2 { values[n].clone() } else { good[name].clone() };
            if n > 0 {
                text.push(',');
            }
            text += &format!("{}{}:{}", serde_json::to_string(name).unwrap(), if spaced && n == 1 { " " } else { "" }, v);
        }
        for (k, v) in &rest {
            if text.len() > 1 {
                text.push(',');
            }
            text += &format!("{}:{}", serde_json::to_string(k).unwrap(), v);
        }
        text.push('}');
        check(&c, text.as_bytes());
        // Every value fitting, with some fields missing (their defaults) or repeated.
        let mut fitting = String::from("{");
        for (n, name) in names.iter().take(in_order).enumerate() {
            if n > 0 {
                fitting.push(',');
            }
            fitting += &format!("{}:{}", serde_json::to_string(name).unwrap(), good[name]);
        }
        for (k, _) in &rest {
            if let Some(v) = good.get(k) {
                if fitting.len() > 1 {
                    fitting.push(',');
                }
                fitting += &format!("{}:{}", serde_json::to_string(k).unwrap(), v);
            }
        }
        fitting.push('}');
        check(&c, fitting.as_bytes());
    }

    #[test]
    fn number_texts_read_as_serde_json_reads_them(
        n in "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?",
        ws in "[ \t\n]{0,2}",
    ) {
        let c = compiled();
        for field in ["i", "l", "f", "d", "num"] {
            let text = format!(r#"{{"i": 1, "d": 2,{ws}"{field}":{ws}{n}{ws}}}"#);
            check(&c, text.as_bytes());
        }
    }

    /// Short decimals, which the lean path divides itself (significands near 2^53 included).
    #[test]
    fn short_decimals_read_as_serde_json_reads_them(
        n in "-?(0|[1-9][0-9]{0,15})\\.[0-9]{1,23}",
    ) {
        let c = compiled();
        for field in ["f", "d", "num"] {
            check(&c, format!(r#"{{"i": 1, "d": 2, "{field}": {n}}}"#).as_bytes());
        }
    }

    #[test]
    fn any_bytes_decode_as_the_general_path_decodes(datum in prop::collection::vec(any::<u8>(), 0..64)) {
        let c = compiled();
        let mut out = Vec::new();
        let lean = c.write_json(&datum, &mut out).map(|()| out);
        let general = c.decode(&datum).map(|v| serde_json::to_vec(&v).unwrap());
        prop_assert_eq!(lean, general);
    }
}
proptest! {
    #[test]
    fn short_copies_are_copies(
        prefix in prop::collection::vec(any::<u8>(), 0..5),
        s in prop::collection::vec(any::<u8>(), 0..70),
    ) {
        let mut fast = prefix.clone();
        extend_short(&mut fast, &s);
        let mut slow = prefix;
        slow.extend_from_slice(&s);
        prop_assert_eq!(fast, slow);
    }

    /// Strings that need a look of their own (to be escaped, or checked as UTF-8) are found
    /// whatever their length and wherever the byte is.
    #[test]
    fn strings_needing_a_look_are_found(
        s in prop::collection::vec(prop_oneof![60 => 0x20u8..0x7f, 1 => any::<u8>()], 0..70),
    ) {
        let want = s.iter().any(|&b| !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\');
        prop_assert_eq!(to_json::any_needs_look(&s), want);
    }
}
