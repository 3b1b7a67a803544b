//! Where each task runs, for every worker to answer: the compacted topic `<group>-status`
//! (one partition) in Kafka Connect's layout for its `status.storage.topic`: key
//! `status-task-<connector>-<task>`, value `{"state":…,"trace":…,"worker_id":…,
//! "generation":…}`. A worker writes the state of each task it runs when it changes; every
//! worker reads the topic, so `GET /connectors/<name>/status` on a worker that does not run
//! a task shows where it runs and how it is (Connect's answer), not `UNASSIGNED`.
//!
//! A worker that stops running a task writes nothing: the worker that takes it over writes
//! its own state, which is newer in the topic's order.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value as Json};

use crate::cluster::{Cluster, ClusterError, Outgoing, TaskProducer};
use crate::reader::{open_state_topic, TopicReader};

/// A task's state as a worker wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub state: String,
    pub trace: Option<String>,
    pub worker_id: String,
}

/// The deployment's status topic: this worker's writes, and everyone's as read so far.
pub struct StatusTopic {
    topic: String,
    producer: TaskProducer,
    reader: Mutex<TopicReader>,
    table: Mutex<HashMap<String, TaskState>>,
}

fn task_key(connector: &str, task: u32) -> String {
    format!("status-task-{connector}-{task}")
}

impl StatusTopic {
    pub fn open(cluster: &Cluster) -> Result<StatusTopic, ClusterError> {
        let settings = cluster.settings();
        let topic = format!("{}-status", settings.group);
        let reader = open_state_topic(cluster, &topic, "status")?;
        Ok(StatusTopic {
            producer: cluster.producer("sluice-status")?,
            reader: Mutex::new(reader),
            table: Mutex::new(HashMap::new()),
            topic,
        })
    }

    /// Writes a task's state (delivered in the background: a state is advice, and the
    /// next change writes again).
    pub fn write(&self, connector: &str, task: u32, state: &TaskState) -> Result<(), ClusterError> {
        let key = task_key(connector, task);
        let value = json!({
            "state": state.state,
            "trace": state.trace,
            "worker_id": state.worker_id,
            "generation": 0,
        })
        .to_string();
        self.producer.send(&Outgoing {
            topic: &self.topic,
            partition: Some(0),
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            timestamp: crate::offsets::now_ms(),
            headers: &[],
        })
    }

    /// Takes in what arrived since the last call (no waiting).
    pub fn refresh(&self) -> Result<(), ClusterError> {
        let records = {
            let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            reader.read(false).map_err(|e| ClusterError {
                servers: String::new(),
                what: format!("reading `{}`", self.topic),
                message: e.to_string(),
                retriable: true,
            })?
        };
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for (key, value) in records {
            let Ok(key) = String::from_utf8(key) else {
                continue;
            };
            match value.and_then(|v| parse(&v)) {
                Some(s) => table.insert(key, s),
                None => table.remove(&key),
            };
        }
        Ok(())
    }

    /// The last state written for a task, by any worker.
    pub fn task(&self, connector: &str, task: u32) -> Option<TaskState> {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&task_key(connector, task))
            .cloned()
    }
}

fn parse(value: &[u8]) -> Option<TaskState> {
    let v: Json = serde_json::from_slice(value).ok()?;
    Some(TaskState {
        state: v.get("state")?.as_str()?.to_string(),
        trace: v.get("trace").and_then(Json::as_str).map(str::to_string),
        worker_id: v.get("worker_id")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_status_records_are_read() {
        assert_eq!(
            parse(
                br#"{"state":"RUNNING","trace":null,"worker_id":"10.0.0.1:8083","generation":3}"#
            ),
            Some(TaskState {
                state: "RUNNING".into(),
                trace: None,
                worker_id: "10.0.0.1:8083".into()
            })
        );
        assert_eq!(parse(b"{}"), None);
        assert_eq!(task_key("orders", 2), "status-task-orders-2");
    }
}
