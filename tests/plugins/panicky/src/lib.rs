//! Test fixture: source `panicky` hands out `good_polls` batches of one record, then panics
//! in `poll`. The end-to-end tests check that the panic fails only this task.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{
    Result, SourceConnector, SourcePosition, SourceRecord, SourceTask, TaskInfo,
};
use sluice_connector_sdk::data::Payload;
use sluice_connector_sdk::registry::{
    ConnectorRegistry, ConnectorType, Factory, Origin, RegistryError,
};
use sluice_connector_sdk::Bytes;

fn register(registry: &mut ConnectorRegistry) -> std::result::Result<(), RegistryError> {
    registry.register(ConnectorType {
        name: "panicky".into(),
        description: "panics in poll after `good_polls` polls".into(),
        config: ConfigSpec::new(vec![FieldSpec::optional(
            "good_polls",
            FieldKind::Integer { min: 0, max: 1000 },
            Some(json!(0)),
            "polls that return a record before the panic",
        )]),
        origin: Origin::BuiltIn,
        factory: Factory::Source(Box::new(|c| {
            Ok(Box::new(Panicky(c)) as Box<dyn SourceConnector>)
        })),
    })
}

sluice_connector_sdk::export_plugin!(name: "panicky", version: "0.0.1", register: register);

struct Panicky(ConfigValues);

impl SourceConnector for Panicky {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.0.clone()])
    }
    fn create_task(&self, _info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(PanickyTask {
            left: config.int("good_polls").unwrap_or(0),
        }))
    }
}

struct PanickyTask {
    left: i64,
}

impl SourceTask for PanickyTask {
    fn start(&mut self, _committed: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }
    fn poll(&mut self, _max: usize, _timeout: Duration) -> Result<Vec<SourceRecord>> {
        if self.left == 0 {
            panic!("deliberate panic in poll");
        }
        self.left -= 1;
        Ok(vec![SourceRecord {
            topic: None,
            partition: None,
            key: None,
            value: Some(Payload::Raw(Bytes::from_static(b"{\"ok\": true}"))),
            headers: Vec::new(),
            timestamp: None,
            position: SourcePosition {
                stream: Arc::from("panicky"),
                offset: json!(self.left),
            },
        }])
    }
    fn committed(&mut self, _positions: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}
