//! The supervisor: a [`Worker`] holds the running connectors, each built in full (every
//! task created) before any starts, so a setup error leaves nothing running; it steers them
//! (pause, resume, stop, restart), reports their state and metrics, and swaps connectors on
//! a reload ([`super::reload`]).
//!
//! A connector owns its tasks' slots; a slot holds the task's controls and its driver's
//! thread. Stopping a connector (Kafka Connect's `PUT /connectors/{name}/stop`) ends its
//! drivers after their loops commit; resuming it starts new ones from committed positions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sluice_connector_sdk::config::ConfigValues;
use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_log::Log;
use sluice_schema_registry::registry::Registry;

use super::control::Want;
use super::reload::ReloadStatus;
use super::status::{ConnectorStatus, Observer, Role, State};
use super::unit::{lock, Builder, Instance, Origin, Unit};
use super::WorkerError;
use crate::config::{ConnectorPlan, FlatError, Pipeline};
use crate::connector_store::ConnectorStore;
use crate::metrics::{Scrape, WorkerMetrics};

/// What a worker is started with beside its pipeline.
#[derive(Clone, Default)]
pub struct WorkerOptions {
    /// The registry the `avro` format registers and looks up schemas in (opened on the
    /// log's `__schemas` when `None` and a connector needs it).
    pub schemas: Option<Arc<Registry>>,
    /// Hears of retries, restarts and failures (the binary prints them).
    pub observer: Option<Observer>,
    /// Where tasks count; `None`: no metrics.
    pub metrics: Option<Arc<WorkerMetrics>>,
    /// The Kafka cluster the pipelines run on (`runtime.kafka`); `None`: the embedded log.
    pub kafka: Option<Arc<crate::on_kafka::KafkaRuntime>>,
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("Connector {0} not found")]
    UnknownConnector(String),
    #[error("Task {1} of connector {0} not found")]
    UnknownTask(String, u32),
    #[error("connector {connector}: {message}")]
    Refused { connector: String, message: String },
    /// The request itself is wrong (Kafka Connect's 400).
    #[error("{0}")]
    BadRequest(String),
    #[error("Connector {0} already exists")]
    Exists(String),
    /// Defined in the pipeline file: change it there.
    #[error("Connector {0} is defined in the pipeline file: edit the file to change it")]
    InFile(String),
    /// A flat config that does not validate (Kafka Connect's 400), each problem with its key.
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<FlatError>),
}

/// Kafka Connect's words for an invalid config, with Sluice's messages.
fn invalid_message(errors: &[FlatError]) -> String {
    let mut m = format!(
        "Connector configuration is invalid and contains the following {} error(s):",
        errors.len()
    );
    for e in errors {
        m.push('\n');
        m.push_str(&e.to_string());
    }
    m.push_str("\nYou can also find the above list of errors at the endpoint `/connector-plugins/{connectorType}/config/validate`");
    m
}

/// Running connectors and their tasks.
pub struct Worker {
    pub(super) units: RwLock<BTreeMap<String, Arc<Unit>>>,
    pub(super) builder: Builder,
    pub(super) reload: Mutex<ReloadStatus>,
    /// Connectors created over REST.
    pub(super) store: ConnectorStore,
    /// Config changes (REST and reloads) one at a time.
    pub(super) config_lock: Mutex<()>,
    restore_problems: Vec<String>,
    /// On a cluster: REST connectors another worker created that this one could not build,
    /// with the config that failed (tried again when it changes).
    pub(super) follow_failures: Mutex<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    /// Set by [`Worker::stop`]: the worker is going away.
    pub(super) stopping: std::sync::atomic::AtomicBool,
    /// On a cluster: this worker's id, and the task states it last wrote to `<group>-status`.
    pub(super) shared_status: Mutex<SharedStatus>,
}

/// What [`Worker::share_status`] last wrote.
#[derive(Default)]
pub(super) struct SharedStatus {
    pub(super) worker_id: Option<String>,
    pub(super) written: BTreeMap<(String, u32), (State, Option<String>)>,
}

impl Worker {
    /// Creates the topics the pipeline needs, builds every connector and task, then starts
    /// them; then builds and starts the connectors stored from the REST API (those that
    /// cannot be are named by [`Worker::restore_problems`]).
    pub fn start(
        pipeline: &Pipeline,
        registry: &ConnectorRegistry,
        log: &Log,
        options: WorkerOptions,
    ) -> Result<Worker, WorkerError> {
        let WorkerOptions {
            schemas,
            observer,
            metrics,
            kafka,
        } = options;
        let builder = Builder::new(log, schemas, observer, metrics, kafka.clone())?;
        builder.prepare(pipeline)?;
        // Everything is built before anything starts.
        let mut built = Vec::new();
        for (plans, role) in [
            (&pipeline.sources, Role::Source),
            (&pipeline.sinks, Role::Sink),
        ] {
            for plan in plans {
                built.push(builder.build(plan, role, Origin::File, registry)?);
            }
        }
        // On a cluster, the group decides which worker runs which source task: the worker
        // joins it before any task starts.
        if let Some(k) = &kafka {
            k.join().map_err(|e| WorkerError::Cluster(e.to_string()))?;
        }
        let store = match &kafka {
            Some(k) => ConnectorStore::on_cluster(k.configs.clone())
                .map_err(|e| WorkerError::Cluster(e.to_string()))?,
            None => ConnectorStore::open(log)?,
        };
        let mut worker = Worker {
            units: RwLock::new(BTreeMap::new()),
            store,
            builder,
            reload: Mutex::new(ReloadStatus::started(pipeline)),
            config_lock: Mutex::new(()),
            restore_problems: Vec::new(),
            follow_failures: Mutex::new(BTreeMap::new()),
            stopping: Default::default(),
            shared_status: Default::default(),
        };
        for (unit, bodies) in built {
            // A connector paused or stopped before the restart comes back so.
            let was = match worker.store.file_state(&unit.plan.name).as_deref() {
                Some("PAUSED") => State::Paused,
                Some("STOPPED") => State::Stopped,
                _ => State::Running,
            };
            let name = unit.plan.name.clone();
            if let Err(e) = worker.install((unit, bodies), Some(was)) {
                // Whatever started is stopped again before the error is returned.
                if let Some(unit) = worker.read_units().get(&name) {
                    unit.exit_drivers(Instant::now() + Duration::from_secs(10));
                }
                worker.stop(Duration::from_secs(10));
                return Err(e);
            }
        }
        // A connector no longer in the file forgets the state it had.
        for gone in worker.store.file_states_except(&worker.connectors()) {
            worker
                .store
                .put_file_state(&gone, None)
                .map_err(|e| WorkerError::Cluster(e.to_string()))?;
        }
        worker.restore_problems = worker.restore(registry);
        Ok(worker)
    }

    /// The stored REST connectors that could not be started again, and why.
    pub fn restore_problems(&self) -> &[String] {
        &self.restore_problems
    }

    pub(super) fn read_units(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Unit>>> {
        self.units.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write_units(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Unit>>> {
        self.units.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn unit(&self, name: &str) -> Result<Arc<Unit>, ControlError> {
        self.read_units()
            .get(name)
            .cloned()
            .ok_or_else(|| ControlError::UnknownConnector(name.to_string()))
    }

    /// The connectors' names, in order.
    pub fn connectors(&self) -> Vec<String> {
        self.read_units().keys().cloned().collect()
    }

    /// A connector's plan (what the pipeline file says of it).
    pub fn plan(&self, name: &str) -> Result<ConnectorPlan, ControlError> {
        Ok(self.unit(name)?.plan.clone())
    }

    /// A connector's tasks: id, settings, and (sinks) partitions.
    pub fn task_configs(&self, name: &str) -> Result<Vec<(u32, ConfigValues)>, ControlError> {
        Ok(self
            .unit(name)?
            .slots
            .iter()
            .map(|s| (s.control.id, s.config.clone()))
            .collect())
    }

    pub fn status(&self, name: &str) -> Result<ConnectorStatus, ControlError> {
        Ok(self.status_of(&self.unit(name)?))
    }

    pub fn statuses(&self) -> Vec<ConnectorStatus> {
        let units: Vec<Arc<Unit>> = self.read_units().values().cloned().collect();
        units.iter().map(|u| self.status_of(u)).collect()
    }

    /// The first task that is failed or restarting, with its trace.
    pub fn first_failure(&self) -> Option<(String, String)> {
        self.read_units().values().find_map(|u| {
            u.slots.iter().find_map(|s| {
                let st = s.control.status();
                matches!(st.state, State::Failed | State::Restarting).then(|| {
                    (
                        u.task_label(st.id),
                        st.trace.unwrap_or_else(|| st.state.to_string()),
                    )
                })
            })
        })
    }

    /// Pauses a connector's tasks: nothing is read or polled until resumed (what was
    /// written is committed first). Idempotent.
    pub fn pause(&self, name: &str) -> Result<(), ControlError> {
        // A state change is a config change: never beside a reconfiguration of the same
        // connector, whose old tasks may be stopping.
        let _one_change_at_a_time = lock(&self.config_lock);
        let unit = self.unit(name)?;
        if unit.state() == State::Stopped {
            return Ok(()); // Kafka Connect leaves a stopped connector stopped
        }
        self.persist_target_state(&unit, State::Paused)?;
        self.apply_state(&unit, State::Paused, Duration::ZERO)
            .map(|_| ())
    }

    /// Resumes a paused connector, or starts a stopped one's tasks again from committed
    /// positions. Idempotent.
    pub fn resume(&self, name: &str) -> Result<(), ControlError> {
        // A state change is a config change: never beside a reconfiguration of the same
        // connector, whose old tasks may be stopping.
        let _one_change_at_a_time = lock(&self.config_lock);
        let unit = self.unit(name)?;
        self.persist_target_state(&unit, State::Running)?;
        self.apply_state(&unit, State::Running, Duration::ZERO)
            .map(|_| ())
    }

    /// Stops a connector's tasks (each commits what it wrote or delivered first); the
    /// connector stays, STOPPED, with no tasks. Idempotent.
    pub fn stop_connector(&self, name: &str, grace: Duration) -> Result<Vec<String>, ControlError> {
        // A state change is a config change: never beside a reconfiguration of the same
        // connector, whose old tasks may be stopping.
        let _one_change_at_a_time = lock(&self.config_lock);
        let unit = self.unit(name)?;
        self.persist_target_state(&unit, State::Stopped)?;
        self.apply_state(&unit, State::Stopped, grace)
    }

    /// Brings a connector's tasks to `want` (RUNNING, PAUSED or STOPPED), without storing
    /// it; returns the tasks that did not stop within `grace` (STOPPED).
    pub(super) fn apply_state(
        &self,
        unit: &Arc<Unit>,
        want: State,
        grace: Duration,
    ) -> Result<Vec<String>, ControlError> {
        let was = std::mem::replace(&mut *lock(&unit.state), want);
        if want == State::Stopped {
            return Ok(unit.exit_drivers(Instant::now() + grace));
        }
        for s in &unit.slots {
            if want == State::Paused {
                s.control.pause();
            } else {
                s.control.resume();
            }
        }
        if was == State::Stopped {
            for s in &unit.slots {
                s.control.rearm();
            }
            unit.start_drivers(Vec::new())
                .map_err(|e| ControlError::Refused {
                    connector: unit.plan.name.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(Vec::new())
    }

    /// Restarts a task: a running one stops (committing) and starts again; a failed one
    /// starts again with its restart count afresh.
    pub fn restart_task(&self, name: &str, id: u32) -> Result<(), ControlError> {
        let unit = self.unit(name)?;
        let slot = unit
            .slots
            .iter()
            .find(|s| s.control.id == id)
            .ok_or_else(|| ControlError::UnknownTask(name.to_string(), id))?;
        if unit.state() == State::Stopped {
            return Err(ControlError::Refused {
                connector: name.to_string(),
                message: "the connector is stopped: resume it to start its tasks".into(),
            });
        }
        // On a cluster, the worker running the task restarts it (every worker reads the
        // request from `<group>-configs`, this one too).
        if self.store.is_shared() {
            return self.ask_restart(name, Some(id), false);
        }
        slot.control.request(Want::Restart);
        Ok(())
    }

    /// Restarts the tasks of a connector that `only_failed` selects (all of them, or those
    /// FAILED); returns their ids. A Sluice connector has no thread of its own beside its
    /// tasks, so restarting the connector alone changes nothing that runs.
    pub fn restart_tasks(&self, name: &str, only_failed: bool) -> Result<Vec<u32>, ControlError> {
        let unit = self.unit(name)?;
        if unit.state() == State::Stopped {
            return Ok(Vec::new());
        }
        let mut restarted = Vec::new();
        if self.store.is_shared() {
            // The tasks as the workers running them said (see `status`).
            for st in self.status_of(&unit).tasks {
                if !only_failed || st.state == State::Failed {
                    restarted.push(st.id);
                }
            }
            self.ask_restart(name, None, only_failed)?;
            return Ok(restarted);
        }
        for s in &unit.slots {
            let st = s.control.status();
            if !only_failed || st.state == State::Failed {
                s.control.request(Want::Restart);
                restarted.push(st.id);
            }
        }
        Ok(restarted)
    }

    fn ask_restart(
        &self,
        name: &str,
        task: Option<u32>,
        only_failed: bool,
    ) -> Result<(), ControlError> {
        self.store
            .ask_restart(sluice_kafka::ConfigChange::Restart {
                name: name.to_string(),
                task,
                only_failed,
            })
            .map_err(|e| ControlError::Refused {
                connector: name.to_string(),
                message: format!("cannot ask for the restart: {e}"),
            })
    }

    /// A connector's committed positions in Kafka Connect's shape (KIP-875): a source's per
    /// stream (`{"stream": …}` → its offset), a sink's per partition (`kafka_topic`,
    /// `kafka_partition` → `kafka_offset`, the next offset to deliver).
    pub fn offsets(
        &self,
        name: &str,
    ) -> Result<Vec<(serde_json::Value, serde_json::Value)>, ControlError> {
        use serde_json::json;
        let unit = self.unit(name)?;
        let positions = match (&unit.instance, &unit.kafka) {
            (Instance::Source { .. }, Some(k)) => k
                .offsets
                .positions(name)
                .map_err(|e| ControlError::Refused {
                    connector: name.to_string(),
                    message: e.to_string(),
                })?
                .into_iter()
                .map(
                    |(stream, offset)| sluice_connector_sdk::connector::SourcePosition {
                        stream: stream.into(),
                        offset,
                    },
                )
                .collect(),
            (Instance::Source { offsets, .. }, None) => offsets.positions(name),
            (Instance::Sink { .. }, _) => Vec::new(),
        };
        Ok(match &unit.instance {
            Instance::Source { .. } => positions
                .into_iter()
                .map(|p| {
                    let offset = match p.offset {
                        o @ serde_json::Value::Object(_) => o,
                        o => json!({ "position": o }),
                    };
                    (json!({ "stream": &*p.stream }), offset)
                })
                .collect(),
            Instance::Sink { .. } if unit.kafka.is_some() => {
                let k = unit.kafka.as_ref().expect("matched above");
                k.cluster
                    .group_offsets(&format!("connect-{name}"), &unit.plan.topics)
                    .map_err(|e| ControlError::Refused {
                        connector: name.to_string(),
                        message: e.to_string(),
                    })?
                    .into_iter()
                    .map(|(topic, partition, offset)| {
                        (
                            json!({ "kafka_topic": topic, "kafka_partition": partition }),
                            json!({ "kafka_offset": offset }),
                        )
                    })
                    .collect()
            }
            Instance::Sink { .. } => unit
                .slots
                .iter()
                .flat_map(|s| s.partitions.iter())
                .filter_map(|tp| {
                    let c = unit.log.committed_offset(
                        &format!("connect-{name}"),
                        &tp.topic,
                        tp.partition,
                    )?;
                    Some((
                        json!({ "kafka_topic": tp.topic, "kafka_partition": tp.partition }),
                        json!({ "kafka_offset": c.offset }),
                    ))
                })
                .collect(),
        })
    }

    /// The metrics in Prometheus' text format: the tasks' counters, and their states, the
    /// sinks' lag, the log's partitions and consumer groups' lag read now. `None` when the
    /// worker was started without metrics.
    pub fn metrics_text(&self) -> Option<String> {
        let metrics = self.builder.metrics.as_ref()?;
        let scrape = Scrape::new(metrics.pipeline());
        let log = &self.builder.log;
        for unit in self.read_units().values() {
            scrape.states(&unit.status());
            if let Instance::Sink { .. } = unit.instance {
                let group = format!("connect-{}", unit.plan.name);
                // On a cluster, the group's lag as the cluster has it.
                if let Some(k) = &self.builder.kafka {
                    match k.cluster.group_lag(&group, &unit.plan.topics) {
                        Ok(lags) => {
                            for (topic, partition, lag) in lags {
                                scrape.sink_lag(&unit.plan.name, &topic, partition, lag);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(sink = %unit.plan.name, error = %e, "reading the sink's lag")
                        }
                    }
                    continue;
                }
                for tp in unit.slots.iter().flat_map(|s| s.partitions.iter()) {
                    let Ok(p) = log.partition(&tp.topic, tp.partition) else {
                        continue;
                    };
                    let committed = log
                        .committed_offset(&group, &tp.topic, tp.partition)
                        .map_or(p.log_start_offset(), |c| c.offset);
                    scrape.sink_lag(
                        &unit.plan.name,
                        &tp.topic,
                        tp.partition,
                        (p.end_offset() - committed).max(0),
                    );
                }
            }
        }
        for topic in log.topics() {
            for p in &topic.partitions {
                let s = p.stats();
                scrape.partition(
                    p.topic(),
                    p.id() as i32,
                    s.log_start_offset,
                    s.end_offset,
                    s.size_bytes,
                    s.segments,
                );
            }
        }
        for group in log.groups() {
            for (topic, partition, c) in log.group_offsets(&group) {
                if let Ok(p) = log.partition(&topic, partition as i32) {
                    scrape.group_lag(
                        &group,
                        &topic,
                        partition as i32,
                        (p.end_offset() - c.offset).max(0),
                    );
                }
            }
        }
        scrape.reloads(&lock(&self.reload).counts);
        metrics.render(&scrape).ok()
    }

    /// Changes a stopped connector's committed positions (KIP-875): each `(partition,
    /// offset)` as `GET …/offsets` shows them, a `null` offset resetting that partition;
    /// `None`: reset them all. Returns what Kafka Connect says when it is done.
    pub fn alter_offsets(
        &self,
        name: &str,
        changes: Option<Vec<(serde_json::Value, serde_json::Value)>>,
    ) -> Result<String, ControlError> {
        use serde_json::Value as Json;
        let unit = self.unit(name)?;
        if unit.state() != State::Stopped {
            return Err(ControlError::BadRequest(format!(
                "Connectors must be in the STOPPED state before their offsets can be modified. \
                 This can be done for the specified connector by issuing a 'PUT' request to the \
                 '/connectors/{name}/stop' endpoint"
            )));
        }
        let bad = |what: &str| ControlError::BadRequest(what.to_string());
        let store = |e: &dyn std::fmt::Display| ControlError::Refused {
            connector: name.to_string(),
            message: format!("cannot store the offsets: {e}"),
        };
        let kafka = unit.kafka.as_ref();
        let done = if changes.is_none() {
            "The offsets for this connector have been reset successfully"
        } else {
            "The offsets for this connector have been altered successfully"
        };
        match &unit.instance {
            Instance::Source { offsets, .. } => {
                let changes: Vec<(String, Option<Json>)> = match (changes, kafka) {
                    (None, Some(k)) => k
                        .offsets
                        .positions(name)
                        .map_err(|e| store(&e))?
                        .into_iter()
                        .map(|(stream, _)| (stream, None))
                        .collect(),
                    (None, None) => offsets
                        .positions(name)
                        .into_iter()
                        .map(|p| (p.stream.to_string(), None))
                        .collect(),
                    (Some(list), _) => list
                        .into_iter()
                        .map(|(partition, offset)| {
                            let stream = partition["stream"]
                                .as_str()
                                .ok_or_else(|| bad("a source partition is {\"stream\": \"…\"}, as GET …/offsets shows it"))?
                                .to_string();
                            let offset = match offset {
                                Json::Null => None,
                                Json::Object(mut o) if o.len() == 1 && o.contains_key("position") => o.remove("position"),
                                o @ Json::Object(_) => Some(o),
                                other => return Err(bad(&format!("an offset is an object or null, not {other}"))),
                            };
                            Ok((stream, offset))
                        })
                        .collect::<Result<_, _>>()?,
                };
                match kafka {
                    Some(k) => k.offsets.commit(name, &changes).map_err(|e| store(&e))?,
                    None => offsets.alter(name, &changes).map_err(|e| store(&e))?,
                }
            }
            Instance::Sink { .. } => {
                let group = format!("connect-{name}");
                let log = &self.builder.log;
                let mine: Vec<&sluice_connector_sdk::connector::TopicPartition> = unit
                    .slots
                    .iter()
                    .flat_map(|s| s.partitions.iter())
                    .collect();
                let list: Vec<(String, i32, Option<i64>)> = match changes {
                    // On a cluster, every partition of the sink's topics (the group splits them).
                    None if kafka.is_some() => {
                        let k = kafka.expect("matched");
                        let mut all = Vec::new();
                        for topic in &unit.plan.topics {
                            let n = k.cluster.partition_count(topic).map_err(|e| store(&e))?.unwrap_or(0);
                            all.extend((0..n as i32).map(|p| (topic.clone(), p, None)));
                        }
                        all
                    }
                    None => mine.iter().map(|tp| (tp.topic.clone(), tp.partition, None)).collect(),
                    Some(list) => list
                        .into_iter()
                        .map(|(p, o)| {
                            let topic = p["kafka_topic"].as_str().ok_or_else(|| bad("a sink partition needs `kafka_topic`"))?;
                            let partition = p["kafka_partition"].as_i64().ok_or_else(|| bad("a sink partition needs `kafka_partition`"))? as i32;
                            let offset = match &o {
                                Json::Null => None,
                                o => Some(o["kafka_offset"].as_i64().filter(|n| *n >= 0).ok_or_else(|| bad("a sink offset is {\"kafka_offset\": N} with N >= 0, or null"))?),
                            };
                            Ok((topic.to_string(), partition, offset))
                        })
                        .collect::<Result<_, _>>()?,
                };
                if let Some(k) = kafka {
                    for (topic, partition, _) in &list {
                        let n = k
                            .cluster
                            .partition_count(topic)
                            .map_err(|e| store(&e))?
                            .unwrap_or(0);
                        if *partition < 0 || *partition as u32 >= n {
                            return Err(bad(&format!(
                                "{topic}-{partition}: the cluster has no such partition (`{topic}` has {n})"
                            )));
                        }
                    }
                    k.cluster
                        .set_group_offsets(&group, &list)
                        .map_err(|e| store(&e))?;
                    return Ok(done.to_string());
                }
                let mut commits = Vec::new();
                for (topic, partition, offset) in list {
                    let p = log
                        .partition(&topic, partition)
                        .map_err(|e| bad(&format!("{topic}-{partition}: {e}")))?;
                    commits.push(sluice_log::OffsetCommit {
                        topic,
                        partition,
                        // A reset starts the partition over from its first record.
                        offset: offset.unwrap_or(p.log_start_offset()),
                        leader_epoch: -1,
                        metadata: String::new(),
                    });
                }
                log.commit_offsets(&group, &commits)
                    .map_err(|e| store(&e))?;
            }
        }
        Ok(done.to_string())
    }

    /// Asks every task to stop, waits up to `grace`, and returns the tasks still running then.
    pub fn stop(&self, grace: Duration) -> Vec<String> {
        let deadline = Instant::now() + grace;
        // No change from another worker is applied from here on.
        {
            let _no_change_under_way = lock(&self.config_lock);
            self.stopping
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let units = self.read_units();
        for unit in units.values() {
            for slot in &unit.slots {
                slot.control.request(Want::Exit);
            }
        }
        units
            .values()
            .flat_map(|u| u.exit_drivers(deadline))
            .collect()
    }
}
