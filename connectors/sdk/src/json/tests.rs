//! The scanner against serde_json, the reference for every verdict.
use super::*;
use proptest::prelude::*;

fn nested_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn serde_says(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

#[test]
fn compact_texts_leave_repeats_and_escapes_to_serde_json() {
    for (text, written) in [
        (
            &br#"{"a":1,"b":{"a":2},"c":[{"a":3}]}"#[..],
            Some(&br#"{"a":1,"b":{"a":2},"c":[{"a":3}]}"#[..]),
        ),
        (br#"{"a":1,"b":2,"a":3}"#, None),
        (br#"{"a":{"x":1,"x":2}}"#, None),
        (br#"["\u00e9"]"#, None),
        (br#"[1,]"#, None),
        (br#"[1] x"#, None),
        (b"-0", Some(b"-0.0")),
        (b"1E2", Some(b"100.0")),
        (b"123456789012345678901", None),
    ] {
        let mut out = Vec::new();
        let done = write_compact(text, &mut out);
        assert_eq!(
            done.then_some(&out[..]),
            written,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn envelopes_come_apart_only_when_they_are_envelopes() {
    type Parts<'a> = Option<(&'a [u8], &'a [u8])>;
    let cases: [(&[u8], Parts); 8] = [
        (
            br#"{"schema":null,"payload":{"a":1}}"#,
            Some((b"null", br#"{"a":1}"#)),
        ),
        (
            br#" { "payload" : [1, 2] , "schema" : {"type":"int32"} } "#,
            Some((br#"{"type":"int32"}"#, b"[1, 2]")),
        ),
        (br#"{"schema":null}"#, None),
        (br#"{"schema":null,"payload":1,"x":2}"#, None),
        (br#"{"schema":null,"schema":1}"#, None),
        (br#"{"schema":null,"payload":1} x"#, None),
        (br#"{"schema":nul,"payload":1}"#, None),
        (br#"[{"schema":null,"payload":1}]"#, None),
    ];
    for (text, parts) in cases {
        assert_eq!(
            envelope_parts(text),
            parts,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn payloads_follow_a_known_schema_only_in_sluices_own_spelling() {
    let schema = br#"{"type":"int32"}"#;
    let cases: [(&[u8], Option<&[u8]>); 7] = [
        (br#"{"schema":{"type":"int32"},"payload":7}"#, Some(b"7")),
        (
            b"{\"schema\":{\"type\":\"int32\"},\"payload\":[1]} \n",
            Some(b"[1]"),
        ),
        (
            br#"{"schema":{"type":"int32"},"payload":{"a":1}}"#,
            Some(br#"{"a":1}"#),
        ),
        (br#"{"schema":{"type":"int64"},"payload":7}"#, None),
        (br#"{"schema": {"type":"int32"},"payload":7}"#, None),
        (b"{\"schema\":{\"type\":\"int32\"},\"payload\":7}\x0c", None),
        (br#"{"schema":{"type":"int32"},"payload":7"#, None),
    ];
    for (text, payload) in cases {
        assert_eq!(
            payload_after_schema(text, schema),
            payload,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn known_texts_agree_with_serde_json() {
    for t in [
        &br#"{"a": [1, -2.5e+3, true, false, null, "x\u00e9"], "b": {}}"#[..],
        b"  0 ",
        b"-0",
        b"01",
        b"1.",
        b".5",
        b"1e",
        b"[1,]",
        b"{\"a\":1,}",
        b"{\"a\" 1}",
        b"\"tab\there\"",
        b"\"\xff\"",
        b"\"caf\xc3\xa9\"",
        b"tru",
        b"nulll",
        b"[] []",
        b"{\"a\":1]",
        b"[\"a\"}",
        b"{\"a\" \"b\"}",
        b"{\"a\":}",
        b"[1 2]",
        b"{,}",
        b"[,1]",
        b"{\"a\":1,}",
        b"{1:2}",
        b"",
        b"\"esc \\\" \\u12\"",
        b"123456789012345678901234567890",
        b"1e99999",
    ] {
        if let Some(v) = is_valid(t) {
            assert_eq!(v, serde_says(t), "{}", String::from_utf8_lossy(t));
        }
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert_eq!(
        is_valid(deep.as_bytes()),
        None,
        "deep nesting is serde_json's call"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn random_texts_agree_with_serde_json(t in "[\\[\\]{}\":,0-9.eE+\\- \\ta-z\\\\\u{e9}\u{1}]{0,40}") {
        if let Some(v) = is_valid(t.as_bytes()) {
            prop_assert_eq!(v, serde_says(t.as_bytes()), "{}", t);
        }
    }

    #[test]
    fn plain_texts_agree_with_serde_json(t in "[\\[\\]{}\":,0-9a-z ]{0,200}") {
        if let Some(v) = is_valid(t.as_bytes()) {
            prop_assert_eq!(v, serde_says(t.as_bytes()), "{}", t);
        }
    }

    /// Texts across 64-byte words and past the index's size, whole and cut anywhere:
    /// the quote index and the byte scan agree.
    #[test]
    fn the_quote_index_agrees_with_the_scan(
        v in prop::collection::vec("[a-z \u{e9}]{0,150}", 0..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = serde_json::to_vec(&v).unwrap();
        let cut = cut.index(text.len() + 1);
        for t in [&text[..], &text[..cut]] {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                let (mut wide, mut narrow) = ([0u64; QUOTE_WORDS], [0u64; QUOTE_WORDS]);
                // SAFETY: AVX2 was detected; SSE2 is baseline.
                let (a, b) = unsafe {
                    (index_quotes_avx2(t, &mut wide), index_quotes_sse2(t, &mut narrow))
                };
                prop_assert_eq!((a, wide), (b, narrow));
            }
            let mut indexed = Scanner::new(t);
            prop_assert_eq!(indexed.plain, t.len() <= QUOTE_WORDS * 64);
            let mut scanned = Scanner::new(t);
            scanned.plain = false;
            let (a, b) = (indexed.skip_value(0), scanned.skip_value(0));
            prop_assert_eq!(a, b);
            if a.is_ok() {
                prop_assert_eq!(indexed.at, scanned.at);
            }
        }
    }

    /// Nested documents, whole and with one byte removed, doubled or replaced by a
    /// structural one: the plain-text loop agrees with serde_json.
    #[test]
    fn nested_documents_agree_with_serde_json(
        doc in nested_json(),
        at in any::<prop::sample::Index>(),
        change in 0u8..3,
        other in prop::sample::select(&b"{}[],:\" 1tn-"[..]),
    ) {
        let text = serde_json::to_vec(&doc).unwrap();
        prop_assert_eq!(is_valid(&text), Some(true));
        let at = at.index(text.len());
        let mut changed = text.clone();
        match change {
            0 => changed.insert(at, text[at]),
            1 => { changed.remove(at); }
            _ => changed[at] = other,
        }
        if let Some(v) = is_valid(&changed) {
            prop_assert_eq!(v, serde_says(&changed), "{}", String::from_utf8_lossy(&changed));
        }
    }

    #[test]
    fn json_values_are_valid(v in prop::collection::vec(("\\PC{0,12}", any::<i64>(), any::<f64>(), any::<bool>()), 0..6)) {
        let text = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(is_valid(&text).unwrap_or(true), true);
    }

    /// The one-pass reader of common numbers agrees with the grammar's scan: it takes the
    /// same text or leaves it to the scan, and its digits are the text's.
    #[test]
    fn short_numbers_agree_with_the_scan(
        n in "-?[0-9]{0,20}(\\.[0-9]{0,20})?([eE][+-]?[0-9]{0,3})?",
        after in prop::sample::select(&b",}] x.e"[..]),
    ) {
        let mut text = n.clone().into_bytes();
        text.push(after);
        let mut short = Scanner::new(&text);
        let mut scan = Scanner::new(&text);
        let scanned = scan.number();
        match short.short_number() {
            None => prop_assert_eq!(short.at, 0),
            Some(got) => {
                let (t, float) = scanned.expect("a short number is a number");
                prop_assert_eq!(short.at, scan.at);
                prop_assert_eq!(got.fraction.is_some(), float);
                prop_assert_eq!(got.negative, t.starts_with(b"-"));
                let digits: String = std::str::from_utf8(t).unwrap().chars().filter(char::is_ascii_digit).collect();
                prop_assert_eq!(got.significand, digits.parse::<u64>().unwrap());
                prop_assert_eq!(got.fraction.unwrap_or(0) as usize, t.iter().skip_while(|c| **c != b'.').skip(1).count());
            }
        }
    }

    /// The compact writer gives serde_json's text for any value, however it was laid out.
    #[test]
    fn compact_texts_are_serde_jsons(doc in nested_json(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
        // What serde_json reads back (its float parsing is not always the writer's inverse).
        let want = serde_json::from_str::<serde_json::Value>(&text).unwrap().to_string();
        let mut out = b"prefix".to_vec();
        let written = write_compact(text.as_bytes(), &mut out);
        // The values have no escapes and no repeated keys: all of them are written here.
        prop_assert!(written, "{}", text);
        prop_assert_eq!(String::from_utf8_lossy(&out[6..]), want);
    }

    /// Texts of any shape: whatever the compact writer writes is serde_json's text of it.
    #[test]
    fn compact_writes_only_what_serde_json_would(
        t in "[\\[\\]{}\":,0-9.eE+\\- \\ta-z\\\\\u{e9}\u{1}]{0,40}",
        n in "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
    ) {
        for text in [t.clone(), format!("[{n}, {{\"k\": {n}}}]"), n.clone()] {
            let mut out = Vec::new();
            if write_compact(text.as_bytes(), &mut out) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("serde_json accepts it");
                prop_assert_eq!(String::from_utf8_lossy(&out), v.to_string(), "{}", text);
            } else {
                prop_assert!(out.is_empty());
            }
        }
    }

    /// Object texts of any shape: whatever cells are read are serde_json's `Value`s as a
    /// table writer takes them (a string's contents, nothing for null, `to_string()` else).
    #[test]
    fn object_cells_are_serde_jsons_cells(
        t in "\\{[\\[\\]{}\":,0-9.eE+\\- a-z\\\\\u{e9}\u{1}]{0,40}",
        doc in nested_json(),
    ) {
        let object = serde_json::json!({"k": doc, "n": null, "s": "x,y"}).to_string();
        for (generated, text) in [(false, t.clone()), (true, object)] {
            let (mut cells, mut members) = (b"prefix".to_vec(), Vec::new());
            if object_cells(text.as_bytes(), &mut cells, &mut members) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("serde_json accepts it");
                let o = v.as_object().expect("an object");
                prop_assert_eq!(o.len(), members.len(), "{}", text);
                for ((k, v), m) in o.iter().zip(&members) {
                    prop_assert_eq!(k.as_bytes(), &text.as_bytes()[m.key.0 as usize..m.key.1 as usize]);
                    let want = match v {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    prop_assert_eq!(String::from_utf8_lossy(&cells[m.cell.0 as usize..m.cell.1 as usize]), want, "{}", text);
                }
            } else {
                prop_assert_eq!(&cells, b"prefix");
                prop_assert!(members.is_empty());
                // The generated values have no escapes, repeats or big numbers: all are read.
                prop_assert!(!generated, "{}", text);
            }
        }
    }
}
