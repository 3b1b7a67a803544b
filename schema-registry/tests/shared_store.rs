//! Several registries on one shared store (as on a Kafka cluster's `_schemas`): a write
//! decided while another registry took over is decided again from what won, so no id is
//! handed out twice. The store here fences as Kafka's transactional producers do: taking
//! over writing makes every earlier writer's uncommitted records fail at commit.

use std::sync::{Arc, Mutex};

use sluice_schema_registry::registry::{Registry, SchemaRequest};
use sluice_schema_registry::store::{SchemaStore, StoreError, StoredRecord, WRITE_LOST};

#[derive(Default)]
struct Topic {
    records: Vec<StoredRecord>,
    /// The epoch of the writer that took over last.
    epoch: u64,
}

type Hook = Box<dyn FnOnce() + Send>;

/// One registry's handle on the shared topic.
struct Handle {
    topic: Arc<Mutex<Topic>>,
    epoch: Mutex<u64>,
    read_to: Mutex<usize>,
    pending: Mutex<Vec<StoredRecord>>,
    /// Runs (once) at this handle's next append: another registry writing meanwhile.
    on_append: Mutex<Option<Hook>>,
}

impl Handle {
    fn new(topic: &Arc<Mutex<Topic>>) -> Arc<Handle> {
        Arc::new(Handle {
            topic: topic.clone(),
            epoch: Mutex::new(0),
            read_to: Mutex::new(0),
            pending: Mutex::new(Vec::new()),
            on_append: Mutex::new(None),
        })
    }

    fn news(&self) -> Vec<StoredRecord> {
        let topic = self.topic.lock().unwrap();
        let mut read_to = self.read_to.lock().unwrap();
        let news = topic.records[*read_to..].to_vec();
        *read_to = topic.records.len();
        news
    }
}

impl SchemaStore for Handle {
    fn append(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let hook = self.on_append.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.pending
            .lock()
            .unwrap()
            .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        Ok(())
    }

    fn replay(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let topic = self.topic.lock().unwrap();
        *self.read_to.lock().unwrap() = topic.records.len();
        Ok(topic.records.clone())
    }

    fn begin_write(&self) -> Result<Vec<StoredRecord>, StoreError> {
        {
            let mut topic = self.topic.lock().unwrap();
            let mut mine = self.epoch.lock().unwrap();
            if *mine != topic.epoch || *mine == 0 {
                topic.epoch += 1;
                *mine = topic.epoch;
            }
        }
        Ok(self.news())
    }

    fn end_write(&self, commit: bool) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if !commit || pending.is_empty() {
            return Ok(());
        }
        let mut topic = self.topic.lock().unwrap();
        if *self.epoch.lock().unwrap() != topic.epoch {
            return Err(StoreError(format!("{WRITE_LOST}: fenced")));
        }
        topic.records.extend(pending);
        Ok(())
    }

    fn updates(&self) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(self.news())
    }

    fn is_shared(&self) -> bool {
        true
    }
}

fn schema(name: &str) -> SchemaRequest {
    SchemaRequest {
        schema: format!(
            r#"{{"type":"record","name":"{name}","fields":[{{"name":"f","type":"long"}}]}}"#
        ),
        ..Default::default()
    }
}

#[test]
fn a_write_that_lost_to_another_registry_is_decided_again_with_a_new_id() {
    let topic = Arc::new(Mutex::new(Topic::default()));
    let (store_a, store_b) = (Handle::new(&topic), Handle::new(&topic));
    let a = Registry::open(store_a.clone()).unwrap();
    let b = Arc::new(Registry::open(store_b.clone()).unwrap());
    // While `a` decides its first schema's id, `b` takes over and registers another.
    let b_writes = b.clone();
    let b_id = Arc::new(Mutex::new(None));
    let b_got = b_id.clone();
    *store_a.on_append.lock().unwrap() = Some(Box::new(move || {
        *b_got.lock().unwrap() = Some(b_writes.register("b-value", &schema("B")).unwrap());
    }));
    let (a_id, a_version) = a.register("a-value", &schema("A")).unwrap();
    let (b_id, _) = b_id.lock().unwrap().expect("b registered meanwhile");
    assert_ne!(a_id, b_id, "one id handed out twice");
    assert_eq!((b_id, a_id, a_version), (1, 2, 1));
    // Both registries end up with the same view; the topic holds one record per schema.
    b.refresh().unwrap();
    for r in [&a, &*b] {
        assert_eq!(r.subjects(false, None), vec!["a-value", "b-value"]);
        assert_eq!(r.schema_by_id(2).unwrap().0, a.schema_by_id(2).unwrap().0);
    }
    assert_eq!(topic.lock().unwrap().records.len(), 2);
    // The same schema registered through either gets the id it already has.
    assert_eq!(b.register("a-value", &schema("A")).unwrap(), (a_id, 1));
}

#[test]
fn a_refused_write_on_a_shared_store_leaves_nothing_behind() {
    let topic = Arc::new(Mutex::new(Topic::default()));
    let store = Handle::new(&topic);
    let r = Registry::open(store.clone()).unwrap();
    r.register("s-value", &schema("S")).unwrap();
    r.set_config(Some("s-value"), "FULL").unwrap();
    // An incompatible schema is refused; nothing of it is stored or shown.
    let incompatible = SchemaRequest {
        schema: r#"{"type":"record","name":"S","fields":[{"name":"f","type":"string"}]}"#.into(),
        ..Default::default()
    };
    assert!(r.register("s-value", &incompatible).is_err());
    assert_eq!(r.versions("s-value", false).unwrap(), vec![1]);
    assert_eq!(topic.lock().unwrap().records.len(), 2);
}
