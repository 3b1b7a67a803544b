//! Converters: a connector's payloads to the bytes stored on a topic (`bytes`, `string`,
//! `json`), and stored bytes back to payloads for sinks. Raw payloads are checked, never
//! re-encoded: `bytes` passes them through untouched (the fast path), `string` checks UTF-8,
//! `json` checks that they parse. The `avro` format is not built yet.

use sluice_connector_sdk::data::{Payload, Value};
use sluice_log::batch::{split_record_set, Compression};
use sluice_log::OwnedRecord;

use crate::config::Format;

fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Long(l) => J::from(*l),
        Value::Float(f) => serde_json::Number::from_f64(*f as f64)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Double(d) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Bytes(b) | Value::Fixed(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::String(s) | Value::Enum(s) => J::String(s.clone()),
        Value::Array(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) | Value::Record(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// Why a payload cannot be stored, with the payload's bytes (for the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    pub message: String,
    pub original: Option<Vec<u8>>,
}

fn raw_of(p: &Payload) -> Option<Vec<u8>> {
    match p {
        Payload::Raw(b) => Some(b.clone()),
        Payload::Typed { value, .. } => Some(value_to_json(value).to_string().into_bytes()),
    }
}

/// The bytes to store for a payload, or why it cannot be stored in this format. Raw payloads
/// are moved, never copied.
pub fn encode(format: Format, payload: Option<Payload>) -> Result<Option<Vec<u8>>, EncodeError> {
    let Some(payload) = payload else {
        return Ok(None);
    };
    let fail = |message: String, original: Option<Vec<u8>>| Err(EncodeError { message, original });
    match (format, payload) {
        (Format::Bytes, Payload::Raw(b)) => Ok(Some(b)),
        (Format::String, Payload::Raw(b)) => match std::str::from_utf8(&b) {
            Ok(_) => Ok(Some(b)),
            Err(e) => fail(format!("not valid UTF-8 text: {e}"), Some(b)),
        },
        (Format::Json, Payload::Raw(b)) => {
            match serde_json::from_slice::<serde::de::IgnoredAny>(&b) {
                Ok(_) => Ok(Some(b)),
                Err(e) => fail(format!("not valid JSON: {e}"), Some(b)),
            }
        }
        (Format::Json, Payload::Typed { value, .. }) => {
            Ok(Some(value_to_json(&value).to_string().into_bytes()))
        }
        (
            Format::String,
            Payload::Typed {
                value: Value::String(s),
                ..
            },
        ) => Ok(Some(s.into_bytes())),
        (
            Format::Bytes,
            Payload::Typed {
                value: Value::Bytes(b),
                ..
            },
        ) => Ok(Some(b)),
        (Format::Avro, p) => fail("the avro format is not built yet".into(), raw_of(&p)),
        (f, p) => fail(
            format!("a typed value cannot be written in the {f:?} format; use json"),
            raw_of(&p),
        ),
    }
}

/// Decodes stored batches, compressed ones too, skipping control batches.
pub fn decode_batches(bytes: &[u8]) -> Result<Vec<OwnedRecord>, String> {
    let mut out = Vec::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    for (start, h) in split_record_set(bytes).map_err(|e| e.to_string())? {
        let batch = &bytes[start..start + h.size];
        let codec = h.compression().map_err(|e| e.to_string())?;
        if codec == Compression::None {
            out.extend(sluice_log::decode_record_set(batch).map_err(|e| e.to_string())?);
            continue;
        }
        let mut buf = bytes::Bytes::copy_from_slice(batch);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
            .map_err(|e| format!("cannot decompress a {} batch: {e}", codec.name()))?;
        out.extend(set.records.into_iter().filter(|r| !r.control).map(|r| {
            OwnedRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(|k| k.to_vec()),
                value: r.value.map(|v| v.to_vec()),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.to_vec())))
                    .collect(),
            }
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_check_without_reencoding() {
        let raw = |s: &str| Some(Payload::Raw(s.as_bytes().to_vec()));
        assert_eq!(
            encode(Format::Json, raw(r#"{"a": 1}"#)).unwrap(),
            Some(br#"{"a": 1}"#.to_vec()),
            "bytes kept as they came"
        );
        let err = encode(Format::Json, raw("{oops")).unwrap_err();
        assert!(err.message.starts_with("not valid JSON"));
        assert_eq!(
            err.original,
            Some(b"{oops".to_vec()),
            "the bytes come back for the dead-letter topic"
        );
        assert!(encode(Format::String, Some(Payload::Raw(vec![0xff]))).is_err());
        assert_eq!(
            encode(Format::Bytes, Some(Payload::Raw(vec![0xff]))).unwrap(),
            Some(vec![0xff])
        );
        assert_eq!(encode(Format::Json, None).unwrap(), None);
    }
}
