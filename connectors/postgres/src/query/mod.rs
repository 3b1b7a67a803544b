//! The `postgres_query` source: Confluent's JDBC source modes over a table or a query
//! (settings in [`settings`], the reading task in [`task`]). Deletes are never seen: for
//! those, and for every change in commit order, use `postgres_cdc`.

pub mod settings;
pub mod task;

use sluice_connector_sdk::config::ConfigValues;
use sluice_connector_sdk::connector::{Result, SourceConnector, SourceTask, TaskInfo};

/// The `postgres_query` source connector: one task (a table is read in one order).
pub struct PostgresQuery {
    config: ConfigValues,
}

impl PostgresQuery {
    pub fn new(config: ConfigValues) -> PostgresQuery {
        PostgresQuery { config }
    }
}

impl SourceConnector for PostgresQuery {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.config.clone()])
    }

    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let settings = settings::QuerySettings::from_config(&config)
            .map_err(|issues| crate::settings_error(&issues))?;
        Ok(Box::new(task::QueryTask::new(info, settings)?))
    }
}
