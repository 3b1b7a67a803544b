//! Request bodies from records' values: a batch as one JSON array (`json_array`), as JSON
//! lines (`ndjson`), or one record's raw bytes per request (`single`); then compressed with
//! gzip or zstd, with the `Content-Encoding` that says so.
//!
//! A value that is not JSON cannot go into a `json_array` or `ndjson` body: [`BatchBody::push`]
//! refuses it (the record goes to the task's error policy) and the body is unchanged, so one
//! bad record never spoils the request of its neighbours.

use std::io::{self, Write as _};
use std::ops::Range;

use bytes::Bytes;

/// How a batch of values becomes a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `[v1,v2,…]`, `Content-Type: application/json`.
    JsonArray,
    /// `v1\nv2\n…`, `Content-Type: application/x-ndjson`; a value spread over lines is
    /// compacted onto one.
    Ndjson,
    /// One record per request, its value's bytes as they are.
    Single,
}

impl BodyFormat {
    /// Reads the `format` setting.
    pub fn parse(text: &str) -> Option<BodyFormat> {
        match text {
            "json_array" => Some(BodyFormat::JsonArray),
            "ndjson" => Some(BodyFormat::Ndjson),
            "single" => Some(BodyFormat::Single),
            _ => None,
        }
    }

    /// The `Content-Type` a body of this format is sent with, unless the user sets one.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::JsonArray => "application/json",
            BodyFormat::Ndjson => "application/x-ndjson",
            BodyFormat::Single => "application/octet-stream",
        }
    }
}

/// A value that a JSON body cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the value is not JSON ({reason}); a `{format}` body holds JSON values only (use `format: single` to send bytes as they are)")]
pub struct NotJson {
    pub reason: String,
    pub format: &'static str,
}

/// The body of one request, built record by record.
#[derive(Debug)]
pub struct BatchBody {
    format: BodyFormat,
    bytes: Vec<u8>,
    records: usize,
}

impl BatchBody {
    pub fn new(format: BodyFormat) -> BatchBody {
        BatchBody {
            format,
            bytes: Vec::new(),
            records: 0,
        }
    }

    /// Adds one value. For the JSON formats the value must be one JSON text; if it is not,
    /// the body is left as it was. Returns where the value's bytes lie in the body (without
    /// the array's separator or the line's newline), so a refused batch can be split.
    pub fn push(&mut self, value: &[u8]) -> Result<Range<usize>, NotJson> {
        match self.format {
            BodyFormat::Single => Ok(self.append(value)),
            BodyFormat::JsonArray => {
                check_json(value, "json_array")?;
                Ok(self.append(trim(value)))
            }
            BodyFormat::Ndjson => {
                check_json(value, "ndjson")?;
                let value = trim(value);
                if !value.contains(&b'\n') && !value.contains(&b'\r') {
                    return Ok(self.append(value));
                }
                // A value spread over lines (rare): compacted onto one.
                let mut line = Vec::with_capacity(value.len());
                if !sluice_connector_sdk::json::write_compact(value, &mut line) {
                    line.clear();
                    let tree: serde_json::Value =
                        serde_json::from_slice(value).map_err(|e| NotJson {
                            reason: e.to_string(),
                            format: "ndjson",
                        })?;
                    // Serializing a tree cannot fail, and writes no newline.
                    let _ = serde_json::to_writer(&mut line, &tree);
                }
                Ok(self.append(&line))
            }
        }
    }

    /// Appends a value already in its body form (checked, and on one line for `ndjson`),
    /// with the format's separator: how [`BatchBody::push`] ends, and how a split batch is
    /// rebuilt from its parent's spans without checking them again.
    pub(crate) fn append(&mut self, value: &[u8]) -> Range<usize> {
        if self.format == BodyFormat::JsonArray {
            self.bytes.push(if self.records == 0 { b'[' } else { b',' });
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        let span = start..self.bytes.len();
        if self.format == BodyFormat::Ndjson {
            self.bytes.push(b'\n');
        }
        self.records += 1;
        span
    }

    /// How many values the body holds.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The body's size so far, in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len() + usize::from(self.format == BodyFormat::JsonArray)
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The finished body. An empty `json_array` batch is `[]`.
    pub fn finish(mut self) -> Vec<u8> {
        if self.format == BodyFormat::JsonArray {
            if self.records == 0 {
                self.bytes.push(b'[');
            }
            self.bytes.push(b']');
        }
        self.bytes
    }
}

fn check_json(value: &[u8], format: &'static str) -> Result<(), NotJson> {
    match sluice_connector_sdk::json::is_valid(value) {
        Some(true) => Ok(()),
        // The fast scanner is sure, or unsure: serde_json has the last word and the message.
        _ => serde_json::from_slice::<serde::de::IgnoredAny>(value)
            .map(|_| ())
            .map_err(|e| NotJson {
                reason: e.to_string(),
                format,
            }),
    }
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The `compression` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn parse(text: &str) -> Option<Compression> {
        match text {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// The body as sent; without compression, the same bytes (no copy).
    pub fn apply(self, body: &Bytes) -> io::Result<Bytes> {
        match self {
            Compression::None => Ok(body.clone()),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4 + 64),
                    flate2::Compression::fast(),
                );
                encoder.write_all(body)?;
                encoder.finish().map(Bytes::from)
            }
            Compression::Zstd => zstd::bulk::compress(body, 3).map(Bytes::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn json_array_and_ndjson_bodies() {
        let mut array = BatchBody::new(BodyFormat::JsonArray);
        assert_eq!(array.len(), 1);
        array.push(br#" {"a":1} "#).unwrap();
        array.push(b"2").unwrap();
        assert_eq!(array.records(), 2);
        assert_eq!(array.len(), br#"[{"a":1},2]"#.len());
        assert_eq!(array.finish(), br#"[{"a":1},2]"#);
        assert_eq!(BatchBody::new(BodyFormat::JsonArray).finish(), b"[]");

        let mut lines = BatchBody::new(BodyFormat::Ndjson);
        lines.push(b"{\n  \"a\": [1,\n 2]\n}\n").unwrap();
        lines.push(br#""x\ny""#).unwrap();
        lines.push(b"{\"s\":\"\\u00e9\",\n\"n\":1.50}").unwrap();
        let text = String::from_utf8(lines.finish()).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert_eq!(rows[0], r#"{"a":[1,2]}"#);
        assert_eq!(rows[1], r#""x\ny""#);
        for row in rows {
            serde_json::from_str::<serde::de::IgnoredAny>(row).unwrap();
        }
    }

    #[test]
    fn a_value_that_is_not_json_is_refused_and_changes_nothing() {
        let mut array = BatchBody::new(BodyFormat::JsonArray);
        array.push(b"1").unwrap();
        let error = array.push(b"{oops").unwrap_err();
        assert!(error.to_string().contains("not JSON"), "{error}");
        assert!(error.to_string().contains("format: single"), "{error}");
        array.push(b"").unwrap_err();
        assert_eq!(array.records(), 1);
        assert_eq!(array.finish(), b"[1]");
        let mut lines = BatchBody::new(BodyFormat::Ndjson);
        lines.push(b"\xff").unwrap_err();
        assert!(lines.is_empty());
    }

    #[test]
    fn single_bodies_keep_bytes_as_they_are() {
        let mut single = BatchBody::new(BodyFormat::Single);
        single.push(b"\x00not json\n").unwrap();
        assert_eq!(single.finish(), b"\x00not json\n");
    }

    #[test]
    fn compression_round_trips() {
        let body = Bytes::from(br#"[{"a":1},{"a":2}]"#.repeat(100));
        let gzip = Compression::Gzip.apply(&body).unwrap();
        assert!(gzip.len() < body.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let zstd = Compression::Zstd.apply(&body).unwrap();
        assert_eq!(zstd::stream::decode_all(&zstd[..]).unwrap(), body);
        assert_eq!(Compression::None.apply(&body).unwrap(), body);
        assert_eq!(Compression::Zstd.content_encoding(), Some("zstd"));
        assert_eq!(Compression::parse("brotli"), None);
    }
}
