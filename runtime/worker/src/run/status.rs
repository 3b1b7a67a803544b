//! What a task and a connector report: states named as Kafka Connect names them, and a
//! task's failure as a typed error with the stage it happened in.

use std::fmt;

/// A connector's or a task's state, with Kafka Connect's names (`STOPPED` is a connector's
/// only: a stopped connector has no tasks running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Stopped,
    Failed,
    Restarting,
}

impl State {
    /// The name Kafka Connect's REST API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Stopped => "STOPPED",
            State::Failed => "FAILED",
            State::Restarting => "RESTARTING",
        }
    }

    /// The state Kafka Connect's name names.
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub const ALL: [State; 6] = [
        State::Unassigned,
        State::Running,
        State::Paused,
        State::Stopped,
        State::Failed,
        State::Restarting,
    ];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in a task's life a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `start` of a source, `open` of a sink.
    Start,
    /// A source's `poll`.
    Poll,
    /// A source's records appended to the log (or a router's topic looked up).
    Append,
    /// Source positions or sink offsets committed.
    Commit,
    /// A sink reading the log.
    Read,
    /// A record through a converter.
    Convert,
    /// A record through the transforms.
    Transform,
    /// A sink's `put`.
    Put,
    /// A sink's `flush`.
    Flush,
    /// A record written to the dead-letter topic.
    DeadLetter,
    /// The task's code panicked.
    Panic,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Poll => "poll",
            Stage::Append => "append",
            Stage::Commit => "commit",
            Stage::Read => "read",
            Stage::Convert => "converter",
            Stage::Transform => "transform",
            Stage::Put => "put",
            Stage::Flush => "flush",
            Stage::DeadLetter => "dead-letter",
            Stage::Panic => "panic",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task stopped running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub stage: Stage,
    pub message: String,
    /// Whether starting the task again can help: not for a record the error policy refuses
    /// (it would be read again) nor for a topic deleted under the task.
    pub restartable: bool,
}

impl TaskError {
    pub fn new(stage: Stage, message: impl fmt::Display) -> TaskError {
        TaskError {
            stage,
            message: message.to_string(),
            restartable: true,
        }
    }

    /// A failure a restart would only repeat.
    pub fn permanent(stage: Stage, message: impl fmt::Display) -> TaskError {
        TaskError {
            restartable: false,
            ..TaskError::new(stage, message)
        }
    }

    /// A failure of the log: permanent when the topic was deleted.
    pub fn from_log(stage: Stage, context: impl fmt::Display, e: &sluice_log::LogError) -> Self {
        let message = format!("{context}: {e}");
        match e {
            sluice_log::LogError::TopicDeleted { .. } => TaskError::permanent(stage, message),
            _ => TaskError::new(stage, message),
        }
    }

    /// The text of a panic's payload.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> TaskError {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_string());
        TaskError::new(Stage::Panic, format!("the task panicked: {text}"))
    }

    /// The `trace` the REST API shows: the stage, then the message.
    pub fn trace(&self) -> String {
        format!("{} failed: {}", self.stage, self.message)
    }
}

/// One task's state, as `GET /connectors/{name}/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    /// The last failure, while FAILED or RESTARTING.
    pub trace: Option<String>,
    /// Restarts since the task was built (automatic and asked for).
    pub restarts: u64,
    /// On a Kafka cluster, the worker running the task when it is not this one (its REST
    /// address, Kafka Connect's `worker_id`).
    pub worker_id: Option<String>,
}

/// Whether a connector reads (a sink) or writes (a source) the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Source,
    Sink,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Sink => "sink",
        }
    }
}

/// A connector's state and its tasks'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStatus {
    pub name: String,
    pub role: Role,
    pub type_name: String,
    pub state: State,
    pub tasks: Vec<TaskStatus>,
}

/// What the supervisor tells the binary (which decides what to print).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// An operation failed with a retriable error and is being retried.
    Retrying {
        task: String,
        what: String,
        error: String,
        for_secs: u64,
    },
    /// The operation succeeded after `failures` retries.
    Recovered {
        task: String,
        what: String,
        failures: u32,
    },
    /// The task failed and is started again after `backoff`.
    Restarting {
        task: String,
        error: TaskError,
        attempt: u32,
        max_attempts: u32,
        backoff: std::time::Duration,
    },
    /// The task failed and stays FAILED until restarted by hand.
    Failed { task: String, error: TaskError },
}

/// Receives [`Event`]s, from any task's thread.
pub type Observer = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_deleted_topics_and_traces_read_as_a_user_expects() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        let e = TaskError::from_panic(p.as_ref());
        assert_eq!(e.message, "the task panicked: boom 7");
        assert!(e.restartable);
        assert_eq!(e.trace(), "panic failed: the task panicked: boom 7");
        let deleted = sluice_log::LogError::TopicDeleted {
            topic: "t".into(),
            what: "append",
        };
        assert!(!TaskError::from_log(Stage::Append, "appending to t-0", &deleted).restartable);
        assert_eq!(State::Restarting.to_string(), "RESTARTING");
    }
}
