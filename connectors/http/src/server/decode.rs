//! A webhook body into record values (`json`, `json_array`, `ndjson`, `raw`), or the reason
//! it is refused with a 400. Pure, so every shape of bad input is unit tested.

use bytes::Bytes;
use serde_json::Value as Json;

/// How a body becomes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One JSON document: one record, the body as it came.
    Json,
    /// A JSON array: one record per element.
    JsonArray,
    /// One JSON document per line (empty lines skipped).
    Ndjson,
    /// Any bytes: one record.
    Raw,
}

impl BodyKind {
    pub fn parse(text: &str) -> Option<BodyKind> {
        Some(match text {
            "json" => BodyKind::Json,
            "json_array" => BodyKind::JsonArray,
            "ndjson" => BodyKind::Ndjson,
            "raw" => BodyKind::Raw,
            _ => return None,
        })
    }

    pub fn is_json(self) -> bool {
        self != BodyKind::Raw
    }
}

/// One record of a body: its value, and the parsed document for `key_from: pointer:…`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Bytes,
    pub doc: Option<Json>,
}

/// Why a body was refused; the message goes back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not an array (body: json_array)")]
    NotArray,
    #[error("line {line} of the body is not JSON: {message}")]
    BadLine { line: usize, message: String },
}

/// The records of `body`.
pub fn decode(kind: BodyKind, body: Bytes) -> Result<Vec<Decoded>, DecodeError> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    match kind {
        BodyKind::Raw => Ok(vec![Decoded {
            value: body,
            doc: None,
        }]),
        BodyKind::Json => {
            if blank {
                return Err(DecodeError::Empty);
            }
            let doc: Json =
                serde_json::from_slice(&body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
            Ok(vec![Decoded {
                value: body,
                doc: Some(doc),
            }])
        }
        BodyKind::JsonArray => {
            if blank {
                return Err(DecodeError::Empty);
            }
            let doc: Json =
                serde_json::from_slice(&body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
            let Json::Array(items) = doc else {
                return Err(DecodeError::NotArray);
            };
            Ok(items
                .into_iter()
                .map(|item| Decoded {
                    value: Bytes::from(serde_json::to_vec(&item).unwrap_or_default()),
                    doc: Some(item),
                })
                .collect())
        }
        BodyKind::Ndjson => {
            let mut records = Vec::new();
            let mut start = 0;
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                let end = start + line.len();
                let span = (start, end);
                start = end + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let doc: Json = serde_json::from_slice(line).map_err(|e| DecodeError::BadLine {
                    line: i + 1,
                    message: e.to_string(),
                })?;
                let trimmed = line.strip_suffix(b"\r").map_or(span.1, |_| span.1 - 1);
                records.push(Decoded {
                    value: body.slice(span.0..trimmed),
                    doc: Some(doc),
                });
            }
            if records.is_empty() {
                return Err(DecodeError::Empty);
            }
            Ok(records)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(kind: BodyKind, body: &'static [u8]) -> Result<Vec<String>, String> {
        decode(kind, Bytes::from_static(body))
            .map(|v| {
                v.iter()
                    .map(|d| String::from_utf8_lossy(&d.value).into_owned())
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_makes_its_records() {
        assert_eq!(
            values(BodyKind::Json, br#"{"a": 1}"#).unwrap(),
            vec![r#"{"a": 1}"#]
        );
        assert_eq!(
            values(BodyKind::JsonArray, br#"[{"b":2,"a":1}, 3]"#).unwrap(),
            vec![r#"{"b":2,"a":1}"#, "3"],
            "elements keep their key order"
        );
        assert_eq!(
            values(BodyKind::JsonArray, b"[]").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            values(BodyKind::Ndjson, b"{\"a\":1}\r\n\n{\"a\":2}\n").unwrap(),
            vec![r#"{"a":1}"#, r#"{"a":2}"#]
        );
        assert_eq!(values(BodyKind::Raw, b"\x00\xff").unwrap().len(), 1);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert_eq!(
            values(BodyKind::Json, b"  ").unwrap_err(),
            "the body is empty"
        );
        assert!(values(BodyKind::Json, b"{nope")
            .unwrap_err()
            .starts_with("the body is not JSON: "));
        assert_eq!(
            values(BodyKind::JsonArray, b"{}").unwrap_err(),
            "the body is JSON but not an array (body: json_array)"
        );
        assert!(values(BodyKind::Ndjson, b"{\"a\":1}\n{bad\n")
            .unwrap_err()
            .starts_with("line 2 of the body is not JSON"));
        assert_eq!(
            values(BodyKind::Ndjson, b"\n\n").unwrap_err(),
            "the body is empty"
        );
    }
}
