//! Records shown to people (`sluice tap`, the dashboard's message browser): keys and values
//! decoded with their schema where they have one (Confluent-framed Avro), JSON as JSON, other
//! UTF-8 text as a string, other bytes as `{"hex": …}`; headers as text.

use serde_json::{json, Map, Value};

/// A key or value as JSON, and the id of the Avro schema it was written with. `avro` decodes
/// a Confluent-framed datum to JSON and its schema id, or says it cannot.
pub fn show(
    bytes: Option<&[u8]>,
    avro: impl FnOnce(&[u8]) -> Option<(Value, u32)>,
) -> (Value, Option<u32>) {
    let Some(b) = bytes else {
        return (Value::Null, None);
    };
    if b.first() == Some(&0) && b.len() >= 5 {
        if let Some((v, id)) = avro(b) {
            return (v, Some(id));
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(b) {
        return (v, None);
    }
    match std::str::from_utf8(b) {
        Ok(text) => (Value::String(text.to_string()), None),
        Err(_) => (json!({ "hex": hex(b) }), None),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

/// Headers as a JSON object of text (a null value stays null).
pub fn headers(headers: &[(Vec<u8>, Option<Vec<u8>>)]) -> Map<String, Value> {
    headers
        .iter()
        .map(|(k, v)| {
            let text = String::from_utf8_lossy(k).into_owned();
            let v = v.as_deref().map_or(Value::Null, |v| {
                Value::String(String::from_utf8_lossy(v).into_owned())
            });
            (text, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_bytes_shows_as_people_read_it() {
        let none = |_: &[u8]| None;
        assert_eq!(show(None, none), (Value::Null, None));
        assert_eq!(show(Some(b"{\"a\":1}"), none), (json!({"a": 1}), None));
        assert_eq!(show(Some(b"plain"), none), (json!("plain"), None));
        assert_eq!(
            show(Some(&[0xff, 0x00]), none),
            (json!({"hex": "ff00"}), None)
        );
        let framed = [0u8, 0, 0, 0, 7, 0xfe];
        assert_eq!(
            show(Some(&framed), |_| Some((json!({"n": 1}), 7))),
            (json!({"n": 1}), Some(7))
        );
        // Not decodable and not UTF-8: hex. (Control characters alone are valid UTF-8 text.)
        assert_eq!(show(Some(&framed), none).0, json!({"hex": "0000000007fe"}));
        assert_eq!(
            show(Some(&[0, 0, 0, 0, 7, 2]), none).0,
            json!("\0\0\0\0\u{7}\u{2}")
        );
        let h = headers(&[(b"k".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)]);
        assert_eq!(Value::Object(h), json!({"k": "v", "n": null}));
    }
}
