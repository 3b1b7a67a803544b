//! The Confluent wire format, which Sluice uses for every Avro record in flight:
//! `0x00` (magic byte) | schema id (4 bytes, big-endian) | Avro binary datum (no container
//! header). Decoding can resolve the datum from its writer schema to a reader schema that
//! the consumer expects (Avro schema resolution), e.g. a sink one version behind.
//!
//! These helpers use `apache-avro`'s generic `Value` path: fine for tools and tests; the
//! pipelines' hot path gets a schema-compiled codec of its own.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

pub const MAGIC_BYTE: u8 = 0;
pub const HEADER_LEN: usize = 5;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("message of {0} bytes is shorter than the 5-byte Confluent header")]
    TooShort(usize),
    #[error("unknown magic byte {0:#04x}: not the Confluent wire format (0x00)")]
    BadMagic(u8),
    #[error("Avro encoding failed: {0}")]
    Encode(String),
    #[error("Avro decoding failed: {0}")]
    Decode(String),
}

/// Splits a message into its schema id and Avro payload.
pub fn split(message: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if message.len() < HEADER_LEN {
        return Err(WireError::TooShort(message.len()));
    }
    if message[0] != MAGIC_BYTE {
        return Err(WireError::BadMagic(message[0]));
    }
    let id = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    Ok((id, &message[HEADER_LEN..]))
}

/// Writes the 5-byte header for `schema_id`.
pub fn write_header(out: &mut Vec<u8>, schema_id: u32) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Encodes `value` with `schema` as a Confluent-framed message.
pub fn encode(schema_id: u32, schema: &Schema, value: Value) -> Result<Vec<u8>, WireError> {
    let writer = GenericDatumWriter::builder(schema)
        .build()
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let datum = writer
        .write_value_to_vec(value)
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    write_header(&mut out, schema_id);
    out.extend_from_slice(&datum);
    Ok(out)
}

/// Decodes a Confluent-framed message written with `writer`, optionally resolved to `reader`.
/// Returns the schema id and the value.
pub fn decode(
    message: &[u8],
    writer: &Schema,
    reader: Option<&Schema>,
) -> Result<(u32, Value), WireError> {
    let (id, mut payload) = split(message)?;
    let builder = GenericDatumReader::builder(writer);
    let datum_reader = match reader {
        Some(r) => builder.reader_schema(r).build(),
        None => builder.build(),
    }
    .map_err(|e| WireError::Decode(e.to_string()))?;
    let value = datum_reader
        .read_value(&mut payload)
        .map_err(|e| WireError::Decode(e.to_string()))?;
    Ok((id, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(s: &str) -> Schema {
        Schema::parse_str(s).unwrap()
    }

    #[test]
    fn round_trip_and_reader_schema_resolution() {
        let v1 = schema(r#"{"type":"record","name":"User","fields":[{"name":"id","type":"int"}]}"#);
        let v2 = schema(
            r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"email","type":"string","default":"none"}]}"#,
        );
        let msg = encode(7, &v1, Value::Record(vec![("id".into(), Value::Int(42))])).unwrap();
        assert_eq!(&msg[..5], &[0, 0, 0, 0, 7]);
        let (id, value) = decode(&msg, &v1, None).unwrap();
        assert_eq!(
            (id, value),
            (7, Value::Record(vec![("id".into(), Value::Int(42))]))
        );
        // A consumer on v2 reads v1 data: int promoted to long, the new field defaulted.
        let (_, value) = decode(&msg, &v1, Some(&v2)).unwrap();
        assert_eq!(
            value,
            Value::Record(vec![
                ("id".into(), Value::Long(42)),
                ("email".into(), Value::String("none".into()))
            ])
        );
    }

    #[test]
    fn bad_frames_are_clear_errors() {
        assert!(matches!(split(&[0, 0, 1]), Err(WireError::TooShort(3))));
        assert!(matches!(
            split(&[1, 0, 0, 0, 1, 2]),
            Err(WireError::BadMagic(1))
        ));
        let s = schema(r#""long""#);
        assert!(matches!(
            decode(&[0, 0, 0, 0, 1, 0xff], &s, None),
            Err(WireError::Decode(_))
        ));
    }
}
