//! The `postgres` sink: settings ([`settings`]), records read as rows ([`record`],
//! [`row`]), the target table and the statements that apply rows to it ([`sql`], [`copy`]),
//! and the task ([`task`]) that applies each flush in one transaction with its positions
//! (`write`: a full batch is written on the sink's runtime while the task reads the next).

pub mod copy;
pub mod record;
pub mod row;
pub mod settings;
pub mod sql;
pub mod task;
pub mod types;
mod write;

use sluice_connector_sdk::config::ConfigValues;
use sluice_connector_sdk::connector::{Result, SinkConnector, SinkTask, TaskInfo};

/// The `postgres` sink connector.
pub struct PostgresSink {
    config: ConfigValues,
}

impl PostgresSink {
    pub fn new(config: ConfigValues) -> PostgresSink {
        PostgresSink { config }
    }
}

impl SinkConnector for PostgresSink {
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.config.clone(); max_tasks.max(1) as usize])
    }

    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>> {
        let settings = settings::SinkSettings::from_config(&config)
            .map_err(|issues| crate::settings_error(&issues))?;
        Ok(Box::new(task::PostgresSinkTask::new(info, settings)?))
    }
}
