//! Avro object container files (Avro specification, "Object Container Files"): a header with
//! the schema and a sync marker, then blocks of records. Records are encoded by the SDK's
//! schema-compiled codec straight into the block, so no generic `Value` is built per record;
//! `apache-avro`'s reader reads the files back in the tests.

use std::hash::{BuildHasher, Hasher};

use serde_json::Value as Json;
use sluice_connector_sdk::avro::{put_long, Compiled};

/// Blocks of about this many bytes (Avro's own writers default to 16–64 KiB).
pub const BLOCK_BYTES: usize = 64 * 1024;

pub struct ContainerWriter {
    codec: Compiled,
    sync: [u8; 16],
    block: Vec<u8>,
    count: i64,
}

impl ContainerWriter {
    /// A writer for `schema` (Avro JSON text) and the file header to write first.
    pub fn new(schema: &str) -> Result<(ContainerWriter, Vec<u8>), String> {
        let parsed = apache_avro::Schema::parse_str(schema).map_err(|e| e.to_string())?;
        let mut sync = [0u8; 16];
        // A marker that is unlikely to occur in the data; std's hasher keys are random.
        for half in sync.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(schema.as_bytes());
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        let mut header = b"Obj\x01".to_vec();
        put_long(&mut header, 2); // metadata: a map of two entries
        for (key, value) in [("avro.schema", schema.as_bytes()), ("avro.codec", b"null")] {
            put_long(&mut header, key.len() as i64);
            header.extend_from_slice(key.as_bytes());
            put_long(&mut header, value.len() as i64);
            header.extend_from_slice(value);
        }
        put_long(&mut header, 0);
        header.extend_from_slice(&sync);
        Ok((
            ContainerWriter {
                codec: Compiled::new(parsed),
                sync,
                block: Vec::with_capacity(BLOCK_BYTES + 4096),
                count: 0,
            },
            header,
        ))
    }

    /// Encodes one record into the current block; on error nothing of it is kept.
    pub fn append(&mut self, value: &Json) -> Result<(), String> {
        let before = self.block.len();
        if let Err(e) = self.codec.encode(value, &mut self.block) {
            self.block.truncate(before);
            return Err(e);
        }
        self.count += 1;
        Ok(())
    }

    /// Bytes buffered in the current block.
    pub fn pending(&self) -> usize {
        self.block.len()
    }

    /// The current block, framed (count, size, data, sync marker), ready to write; `None`
    /// when it is empty.
    pub fn take_block(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(self.block.len() + 36);
        put_long(&mut out, self.count);
        put_long(&mut out, self.block.len() as i64);
        out.extend_from_slice(&self.block);
        out.extend_from_slice(&self.sync);
        self.block.clear();
        self.count = 0;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apache_avro_reads_what_we_write() {
        let schema = r#"{"type":"record","name":"Order","fields":[
            {"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#;
        let (mut w, mut file) = ContainerWriter::new(schema).unwrap();
        for i in 0..1000 {
            w.append(
                &json!({"id": i, "note": if i % 2 == 0 { json!(null) } else { json!("odd") }}),
            )
            .unwrap();
            if w.pending() > 1000 {
                file.extend(w.take_block().unwrap());
            }
        }
        assert!(w.append(&json!({"id": "x"})).is_err());
        file.extend(w.take_block().unwrap());
        assert!(w.take_block().is_none());
        let reader = apache_avro::Reader::new(&file[..]).unwrap();
        let values: Vec<apache_avro::types::Value> = reader.map(|v| v.unwrap()).collect();
        assert_eq!(values.len(), 1000, "the refused record left nothing behind");
        assert_eq!(
            values[999],
            apache_avro::types::Value::Record(vec![
                ("id".into(), apache_avro::types::Value::Long(999)),
                (
                    "note".into(),
                    apache_avro::types::Value::Union(
                        1,
                        Box::new(apache_avro::types::Value::String("odd".into()))
                    )
                ),
            ])
        );
    }
}
