//! Schemas stored by another registry with invalid defaults (Confluent did not validate
//! defaults before 8.0.4) must still be readable and usable as compatibility baselines, while
//! new schemas with invalid defaults are refused.

use std::sync::{Arc, Mutex};

use sluice_schema_registry::registry::{Registry, RegistryError, SchemaRequest, VersionSpec};
use sluice_schema_registry::store::{SchemaStore, StoreError, StoredRecord};

#[derive(Default)]
struct MemoryStore(Mutex<Vec<StoredRecord>>);

impl SchemaStore for MemoryStore {
    fn append(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap()
            .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        Ok(())
    }
    fn replay(&self) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

const INVALID_DEFAULT: &str =
    r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string","default":null}]}"#;

#[test]
fn legacy_schema_with_an_invalid_default_is_read_leniently() {
    let store = Arc::new(MemoryStore::default());
    let key = br#"{"keytype":"SCHEMA","subject":"legacy-value","version":1}"#;
    let value = serde_json::json!({"subject": "legacy-value", "version": 1, "id": 10, "schema": INVALID_DEFAULT, "deleted": false});
    store
        .append(key, Some(value.to_string().as_bytes()))
        .unwrap();
    let registry = Registry::open(store.clone()).unwrap();

    let v = registry
        .version("legacy-value", VersionSpec::Latest, false)
        .unwrap();
    assert_eq!((v.id, v.version), (10, 1));
    assert_eq!(registry.schema_by_id(10).unwrap().0, INVALID_DEFAULT);

    // A compatible evolution is checked against the legacy schema (parsed without its bad default).
    let next = SchemaRequest {
        schema: r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#.into(),
        ..Default::default()
    };
    assert_eq!(
        registry.register("legacy-value", &next).unwrap(),
        (11, 2),
        "ids continue after the imported one"
    );
    // An incompatible one is still refused.
    let bad = SchemaRequest {
        schema: r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#.into(),
        ..Default::default()
    };
    assert!(matches!(
        registry.register("legacy-value", &bad),
        Err(RegistryError::Incompatible { .. })
    ));
    // New schemas are parsed strictly.
    let new_invalid = SchemaRequest {
        schema: INVALID_DEFAULT.into(),
        ..Default::default()
    };
    assert!(matches!(
        registry.register("fresh-value", &new_invalid),
        Err(RegistryError::InvalidSchema(_))
    ));
}
