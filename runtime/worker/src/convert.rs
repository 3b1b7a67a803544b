//! Converters: a connector's payloads to the bytes stored on a topic (`bytes`, `string`,
//! `json`), and stored bytes back to payloads for sinks. Raw payloads are checked, never
//! re-encoded: `bytes` passes them through untouched (the fast path), `string` checks UTF-8,
//! `json` checks that they parse. The `avro` format is not built yet.

use sluice_connector_sdk::data::{Payload, Value};
use sluice_log::batch::{split_record_set, Compression};
use sluice_log::OwnedRecord;

use crate::config::Format;

/// A typed value as JSON.
pub fn value_to_json(v: &Value) -> serde_json::Value {
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

/// What the `avro` format writes with: the schema's id in the registry and its codec.
pub struct AvroOut {
    pub schema_id: u32,
    pub codec: crate::avro::Compiled,
}

impl AvroOut {
    fn encode(&self, json: &serde_json::Value) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64);
        sluice_schema_registry::wire::write_header(&mut out, self.schema_id);
        self.codec.encode(json, &mut out)?;
        Ok(out)
    }
}

/// The bytes to store for a payload, or why it cannot be stored in this format. Raw payloads
/// are moved, never copied (except into Avro, which re-encodes them).
pub fn encode(
    format: Format,
    payload: Option<Payload>,
    avro: Option<&AvroOut>,
) -> Result<Option<Vec<u8>>, EncodeError> {
    let Some(payload) = payload else {
        return Ok(None);
    };
    let fail = |message: String, original: Option<Vec<u8>>| Err(EncodeError { message, original });
    match (format, payload) {
        (Format::Avro, payload) => {
            let Some(avro) = avro else {
                return fail("the avro format needs a schema".into(), raw_of(&payload));
            };
            let json = match &payload {
                Payload::Raw(b) => serde_json::from_slice::<serde_json::Value>(b)
                    .map_err(|e| format!("not valid JSON: {e}")),
                Payload::Typed { value, .. } => Ok(value_to_json(value)),
            };
            match json.and_then(|j| avro.encode(&j)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(message) => fail(
                    format!("does not fit the Avro schema: {message}"),
                    raw_of(&payload),
                ),
            }
        }
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
        (f, p) => fail(
            format!("a typed value cannot be written in the {f:?} format; use json"),
            raw_of(&p),
        ),
    }
}

/// What the `avro` format reads with: schemas by id from the registry, compiled once.
pub struct AvroIn {
    pub registry: std::sync::Arc<sluice_schema_registry::registry::Registry>,
    pub cache:
        std::sync::Mutex<std::collections::HashMap<u32, std::sync::Arc<crate::avro::Compiled>>>,
}

impl AvroIn {
    /// Confluent-framed Avro to JSON text.
    pub fn to_json(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let (id, datum) = sluice_schema_registry::wire::split(bytes).map_err(|e| e.to_string())?;
        let codec = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&id) {
                Some(c) => c.clone(),
                None => {
                    let (text, _, _) = self.registry.schema_by_id(id).map_err(|e| e.to_string())?;
                    let schema = apache_avro::Schema::parse_str(&text)
                        .map_err(|e| format!("schema {id}: {e}"))?;
                    let c = std::sync::Arc::new(crate::avro::Compiled::new(schema));
                    cache.insert(id, c.clone());
                    c
                }
            }
        };
        Ok(codec.decode(datum)?.to_string().into_bytes())
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
            encode(Format::Json, raw(r#"{"a": 1}"#), None).unwrap(),
            Some(br#"{"a": 1}"#.to_vec()),
            "bytes kept as they came"
        );
        let err = encode(Format::Json, raw("{oops"), None).unwrap_err();
        assert!(err.message.starts_with("not valid JSON"));
        assert_eq!(
            err.original,
            Some(b"{oops".to_vec()),
            "the bytes come back for the dead-letter topic"
        );
        assert!(encode(Format::String, Some(Payload::Raw(vec![0xff])), None).is_err());
        assert_eq!(
            encode(Format::Bytes, Some(Payload::Raw(vec![0xff])), None).unwrap(),
            Some(vec![0xff])
        );
        assert_eq!(encode(Format::Json, None, None).unwrap(), None);
    }
}
