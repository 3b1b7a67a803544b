//! `sluice tap TOPIC`: the records of a topic as they arrive, one JSON object per line,
//! keys and values decoded with their schema (Confluent-framed Avro through the built-in
//! registry, JSON as JSON, other text as a string, other bytes as hex), with headers,
//! offsets and timestamps: for watching what a running pipeline writes.
//!
//! Reads the data directory read-only, like `sluice consume`, so it runs beside `sluice run`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use serde_json::{json, Value};
use sluice_log::Log;
use sluice_worker::convert::AvroIn;

use crate::cli::TapArgs;
use crate::consume::{follow, Follow};

/// Avro schemas by id, from the log's `__schemas` (read again when an id is new: the
/// pipeline may have registered it after the tap started).
#[derive(Default)]
struct Schemas {
    avro: Option<AvroIn>,
}

impl Schemas {
    fn open(log: &Log) -> Option<AvroIn> {
        log.topic("__schemas").ok()?;
        let store = sluice_schema_registry::store::LogStore::open(log).ok()?;
        let registry = sluice_schema_registry::registry::Registry::open(Arc::new(store)).ok()?;
        Some(AvroIn::new(Arc::new(registry)))
    }

    /// The JSON of a Confluent-framed Avro datum and its schema id; `None` when these bytes
    /// are not one (or its schema is unknown).
    fn decode(&mut self, log: &Log, bytes: &[u8]) -> Option<(Value, u32)> {
        let (id, _) = sluice_schema_registry::wire::split(bytes).ok()?;
        if let Some(Ok((v, _))) = self.avro.as_ref().map(|a| a.decode(bytes)) {
            return Some((v, id));
        }
        let _ = log.refresh();
        self.avro = Schemas::open(log);
        let (v, _) = self.avro.as_ref()?.decode(bytes).ok()?;
        Some((v, id))
    }
}

/// A key or value as JSON, and the id of the Avro schema it was written with.
fn shown(schemas: &mut Schemas, log: &Log, bytes: Option<&[u8]>) -> (Value, Option<u32>) {
    sluice_worker::show::show(bytes, |b| schemas.decode(log, b))
}

pub fn run(data_dir: &Path, args: TapArgs) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::LineWriter::new(stdout.lock());
    let what = Follow {
        topic: &args.topic,
        partition: args.partition,
        offset: None,
        from_beginning: args.from_beginning,
        exit_at_end: args.exit_at_end,
    };
    let mut schemas = Schemas::default();
    let mut printed = 0u64;
    let result = follow(data_dir, &what, &mut out, |log, partition, r, out| {
        let (key, key_schema) = shown(&mut schemas, log, r.key.as_deref());
        let (value, value_schema) = shown(&mut schemas, log, r.value.as_deref());
        let headers = sluice_worker::show::headers(&r.headers);
        let mut line = json!({
            "topic": args.topic,
            "partition": partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": key,
            "value": value,
            "headers": headers,
        });
        if let Some(id) = key_schema {
            line["key_schema_id"] = json!(id);
        }
        if let Some(id) = value_schema {
            line["value_schema_id"] = json!(id);
        }
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        printed += 1;
        Ok(args.max_messages != Some(printed))
    });
    match result {
        // `sluice tap … | head` is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}
