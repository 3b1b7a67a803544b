//! The schema registry's store on the cluster: the compacted topic `_schemas` (one
//! partition), in the record format of Confluent Schema Registry's `_schemas` (keys
//! `{"keytype":"SCHEMA","subject":…,"version":…}`, `CONFIG`, `MODE`; values as Confluent
//! writes them), so that every worker's registry reads the same subjects and ids.
//!
//! One writer at a time, elected by Kafka: writes go through a transactional producer
//! whose `transactional.id` every Sluice registry on the topic shares. Initializing it
//! fences the previous writer (Kafka's zombie fencing), and a writer reads the topic to its
//! end after it took over and before it decides a write; a writer that was fenced meanwhile
//! finds out at commit ([`WRITE_LOST`]) and decides the write again from the records that
//! won. So two workers registering at once never hand out one id twice. Reads (and a
//! background refresh) consume the topic with `read_committed`.

use std::sync::Mutex;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use sluice_schema_registry::store::{SchemaStore, StoreError, StoredRecord, WRITE_LOST};

use crate::cluster::{Cluster, Deliveries, TopicSpec, CALL_TIMEOUT};
use crate::reader::TopicReader;
use crate::settings::KafkaSettings;

/// Confluent Schema Registry's topic.
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// [`SchemaStore`] on the cluster's `_schemas`.
pub struct KafkaSchemaStore {
    topic: String,
    settings: KafkaSettings,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The transactional producer, once this registry took over writing.
    producer: Option<ThreadedProducer<Deliveries>>,
    in_transaction: bool,
    /// Reads what every registry committed, from where this one got to.
    reader: TopicReader,
}

fn store_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!(
        "{what} `{SCHEMAS_TOPIC}` on the Kafka cluster: {e}"
    ))
}

impl KafkaSchemaStore {
    pub fn open(cluster: &Cluster) -> Result<KafkaSchemaStore, StoreError> {
        cluster
            .ensure_topics(&[TopicSpec {
                name: SCHEMAS_TOPIC.into(),
                partitions: 1,
                config: vec![("cleanup.policy".into(), "compact".into())],
            }])
            .map_err(|e| StoreError(e.to_string()))?;
        let settings = cluster.settings().clone();
        let reader = reader(&settings)?;
        Ok(KafkaSchemaStore {
            topic: SCHEMAS_TOPIC.into(),
            settings,
            inner: Mutex::new(Inner {
                producer: None,
                in_transaction: false,
                reader,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes over writing: a transactional producer, initialized (which fences any other).
    fn writer(&self, inner: &mut Inner) -> Result<(), StoreError> {
        if inner.producer.is_some() {
            return Ok(());
        }
        let mut c = self.settings.client_config();
        c.set(
            "transactional.id",
            format!("sluice-schema-registry:{}", self.topic),
        )
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transaction.timeout.ms", "60000");
        let producer: ThreadedProducer<Deliveries> = c
            .create_with_context(Deliveries::default())
            .map_err(|e| store_err("writing", e))?;
        producer
            .init_transactions(CALL_TIMEOUT)
            .map_err(|e| store_err("taking over writing", e))?;
        inner.producer = Some(producer);
        Ok(())
    }
}

fn reader(settings: &KafkaSettings) -> Result<TopicReader, StoreError> {
    TopicReader::open(settings, SCHEMAS_TOPIC, "sluice-schema-registry-reader")
        .map_err(|e| store_err("reading", e))
}

fn read(reader: &TopicReader, to_end: bool) -> Result<Vec<StoredRecord>, StoreError> {
    reader.read(to_end).map_err(|e| store_err("reading", e))
}

/// The key as Confluent's registry writes it: its fields, then `"magic"` (1 for a schema,
/// 0 for a config or mode), in that order. Compaction goes by the key's bytes, so a key
/// written here must be byte for byte the one a Confluent registry writes for the same
/// thing, or each would keep the other's old value alive.
fn with_magic(key: &[u8]) -> Vec<u8> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(key)
    else {
        return key.to_vec();
    };
    if fields.contains_key("magic") || !key.ends_with(b"}") {
        return key.to_vec();
    }
    let magic = if fields.get("keytype").and_then(|k| k.as_str()) == Some("SCHEMA") {
        1
    } else {
        0
    };
    let mut out = key[..key.len() - 1].to_vec();
    out.extend_from_slice(format!(",\"magic\":{magic}}}").as_bytes());
    out
}

impl SchemaStore for KafkaSchemaStore {
    fn append(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let key = &with_magic(key);
        let mut inner = self.lock();
        self.writer(&mut inner)?;
        let producer = inner.producer.as_ref().expect("set by writer()");
        if !inner.in_transaction {
            producer
                .begin_transaction()
                .map_err(|e| store_err("writing", e))?;
        }
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).partition(0).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        let sent = producer
            .send(record)
            .map_err(|(e, _)| store_err("writing", e));
        inner.in_transaction = true;
        sent
    }

    fn replay(&self) -> Result<Vec<StoredRecord>, StoreError> {
        // From the beginning, with a reader that then goes on from where this one ends.
        let fresh = reader(&self.settings)?;
        let records = read(&fresh, true)?;
        self.lock().reader = fresh;
        Ok(records)
    }

    fn begin_write(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let mut inner = self.lock();
        self.writer(&mut inner)?;
        read(&inner.reader, true)
    }

    fn end_write(&self, commit: bool) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.in_transaction {
            return Ok(());
        }
        inner.in_transaction = false;
        let producer = inner
            .producer
            .as_ref()
            .expect("a transaction has a producer");
        let ended = if commit {
            producer.commit_transaction(CALL_TIMEOUT)
        } else {
            producer.abort_transaction(CALL_TIMEOUT)
        };
        match ended {
            Ok(()) => Ok(()),
            Err(e) => {
                // The producer is done for: the next write takes over again. Whatever the
                // error says (Kafka words a fencing several ways), the write is decided again
                // from what the topic holds: if it was committed after all, deciding it again
                // finds it there.
                inner.producer = None;
                tracing::info!(error = %e, "a write to `_schemas` did not commit; deciding it again");
                Err(StoreError(format!("{WRITE_LOST}: {e}")))
            }
        }
    }

    fn updates(&self) -> Result<Vec<StoredRecord>, StoreError> {
        read(&self.lock().reader, false)
    }

    fn is_shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::with_magic;

    #[test]
    fn keys_are_written_as_confluent_writes_them() {
        assert_eq!(
            with_magic(br#"{"keytype":"SCHEMA","subject":"orders-value","version":2}"#),
            br#"{"keytype":"SCHEMA","subject":"orders-value","version":2,"magic":1}"#
        );
        assert_eq!(
            with_magic(br#"{"keytype":"CONFIG","subject":null}"#),
            br#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(
            with_magic(br#"{"keytype":"MODE","subject":"s","magic":0}"#),
            br#"{"keytype":"MODE","subject":"s","magic":0}"#
        );
    }
}
