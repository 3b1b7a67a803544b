//! The supervisor: every connector and its tasks are built before any starts (so a setup
//! error leaves nothing running), then each task gets a driver thread that runs its loop,
//! catches a panic as a failure, starts the task again per the connector's `restart`
//! policy, and obeys its controls: pause, resume, restart, stop.
//!
//! A connector owns its tasks' slots; a slot holds the task's controls and its driver's
//! thread. Stopping a connector (Kafka Connect's `PUT /connectors/{name}/stop`) ends its
//! drivers after their loops commit; resuming it starts new ones from committed positions.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_connector_sdk::config::ConfigValues;
use sluice_connector_sdk::connector::{
    SinkConnector, SinkTask, SourceConnector, SourceTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::registry::{ConnectorRegistry, Factory};
use sluice_log::{Log, TopicConfig};
use sluice_schema_registry::registry::Registry;

use super::control::{TaskControl, Want};
use super::sink::sink_loop;
use super::source::source_loop;
use super::status::{ConnectorStatus, Event, Observer, Role, Stage, State, TaskError};
use super::{
    connector_err, ensure_topic, sink_decoder, source_encoder, Converters, Ctx, WorkerError,
};
use crate::config::{ConnectorPlan, Format, Pipeline};
use crate::convert::AvroIn;
use crate::metrics::{Scrape, WorkerMetrics};
use crate::offsets::SourceOffsets;

/// A task that has run this long without failing starts its restart count afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

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
}

enum Instance {
    Source {
        connector: Mutex<Box<dyn SourceConnector>>,
        offsets: Arc<SourceOffsets>,
    },
    Sink {
        connector: Mutex<Box<dyn SinkConnector>>,
    },
}

enum TaskBody {
    Source(Box<dyn SourceTask>),
    Sink(Box<dyn SinkTask>),
}

struct Slot {
    control: Arc<TaskControl>,
    config: ConfigValues,
    /// A sink task's partitions.
    partitions: Vec<TopicPartition>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Unit {
    plan: ConnectorPlan,
    instance: Instance,
    converters: Arc<Converters>,
    transforms: Arc<Vec<super::Transform>>,
    tasks_in_all: u32,
    log: Log,
    observer: Option<Observer>,
    metrics: Option<Arc<WorkerMetrics>>,
    /// RUNNING, PAUSED or STOPPED: what was asked of the connector.
    state: Mutex<State>,
    slots: Vec<Arc<Slot>>,
}

impl Unit {
    fn task_label(&self, id: u32) -> String {
        format!("{}/{id}", self.plan.name)
    }

    fn create_task(&self, slot: &Slot) -> Result<TaskBody, TaskError> {
        let info = TaskInfo {
            connector: self.plan.name.clone(),
            task: slot.control.id,
            tasks: self.tasks_in_all,
        };
        let config = slot.config.clone();
        let created = match &self.instance {
            Instance::Source { connector, .. } => lock(connector)
                .create_task(info, config)
                .map(TaskBody::Source),
            Instance::Sink { connector } => lock(connector)
                .create_task(info, config)
                .map(TaskBody::Sink),
        };
        created.map_err(|e| TaskError::new(Stage::Start, format!("creating the task: {e}")))
    }

    /// One run of the task's loop, until it stops or fails.
    fn run(&self, slot: &Slot, body: TaskBody) -> Result<(), TaskError> {
        let ctx = Ctx {
            name: self.plan.name.clone(),
            task: self.task_label(slot.control.id),
            log: self.log.clone(),
            control: slot.control.clone(),
            observer: self.observer.clone(),
            errors: self.plan.errors.clone(),
            converters: self.converters.clone(),
            transforms: self.transforms.clone(),
            failure: Default::default(),
            metrics: self
                .metrics
                .as_ref()
                .map(|m| m.task(&self.plan.name, slot.control.id, self.plan_role())),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| match (body, &self.instance) {
            (TaskBody::Source(task), Instance::Source { offsets, .. }) => {
                source_loop(&ctx, task, &self.plan.topics[0], offsets)
            }
            (TaskBody::Sink(task), Instance::Sink { .. }) => {
                sink_loop(&ctx, task, slot.partitions.clone())
            }
            _ => ctx.fail(Stage::Start, "a task of the wrong kind for its connector"),
        }));
        if let Err(payload) = ran {
            let e = TaskError::from_panic(payload.as_ref());
            if let Some(m) = &ctx.metrics {
                m.error(e.stage.as_str());
            }
            return Err(e);
        }
        match ctx.failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn tell(&self, event: Event) {
        if let Some(o) = &self.observer {
            o(&event);
        }
    }

    /// A task's driver: runs the loop, restarts it per the policy, obeys requests.
    fn drive(self: &Arc<Unit>, slot: &Arc<Slot>, mut first: Option<TaskBody>) {
        let control = &slot.control;
        let policy = self.plan.restart;
        let label = self.task_label(control.id);
        let mut attempt = 0u32;
        loop {
            if control.begin_run() == Want::Exit {
                break;
            }
            let started = Instant::now();
            let result = match first.take() {
                Some(body) => Ok(body),
                None => self.create_task(slot),
            }
            .and_then(|body| self.run(slot, body));
            match control.want() {
                Want::Exit => break,
                Want::Restart => {
                    self.count_restart(control.id);
                    attempt = 0;
                    continue;
                }
                Want::Run => {}
            }
            let Err(error) = result else {
                break; // the loop returns by itself only when asked to stop
            };
            if started.elapsed() >= HEALTHY_AFTER {
                attempt = 0;
            }
            let wait = if error.restartable && attempt < policy.max_attempts {
                attempt += 1;
                let backoff = policy
                    .initial_backoff
                    .saturating_mul(1u32 << (attempt - 1).min(20))
                    .min(policy.max_backoff);
                control.set(State::Restarting, Some(error.trace()));
                self.tell(Event::Restarting {
                    task: label.clone(),
                    error,
                    attempt,
                    max_attempts: policy.max_attempts,
                    backoff,
                });
                Some(backoff)
            } else {
                control.set(State::Failed, Some(error.trace()));
                self.tell(Event::Failed {
                    task: label.clone(),
                    error,
                });
                None
            };
            match control.wait_for_request(wait) {
                Want::Exit => break,
                Want::Restart => attempt = 0,
                Want::Run => {}
            }
            self.count_restart(control.id);
        }
        control.set(State::Unassigned, None);
    }

    fn state(&self) -> State {
        *lock(&self.state)
    }

    fn count_restart(&self, task: u32) {
        self.slots
            .iter()
            .find(|s| s.control.id == task)
            .inspect(|s| s.control.count_restart());
        if let Some(m) = &self.metrics {
            m.count_restart(&self.plan.name, task);
        }
    }

    /// Starts a driver for each slot that has none running (`first`: tasks already built).
    fn start_drivers(
        self: &Arc<Unit>,
        mut first: Vec<Option<TaskBody>>,
    ) -> Result<(), WorkerError> {
        for (i, slot) in self.slots.iter().enumerate() {
            let mut thread = lock(&slot.thread);
            if thread.as_ref().is_some_and(|t| !t.is_finished()) {
                continue;
            }
            if let Some(done) = thread.take() {
                let _ = done.join();
            }
            let body = first.get_mut(i).and_then(Option::take);
            let (unit, s) = (self.clone(), slot.clone());
            let kind = match self.plan_role() {
                Role::Source => "src",
                Role::Sink => "sink",
            };
            let handle = std::thread::Builder::new()
                .name(format!("{kind}-{}", self.task_label(slot.control.id)))
                .spawn(move || unit.drive(&s, body))
                .map_err(|e| connector_err(&self.plan, format!("starting a task thread: {e}")))?;
            *thread = Some(handle);
        }
        Ok(())
    }

    fn plan_role(&self) -> Role {
        match self.instance {
            Instance::Source { .. } => Role::Source,
            Instance::Sink { .. } => Role::Sink,
        }
    }

    /// Asks every driver to leave and waits for them until `deadline`; names the tasks
    /// still running then.
    fn exit_drivers(&self, deadline: Instant) -> Vec<String> {
        for slot in &self.slots {
            slot.control.request(Want::Exit);
        }
        let mut left = Vec::new();
        for slot in &self.slots {
            let mut thread = lock(&slot.thread);
            let Some(handle) = thread.take() else {
                continue;
            };
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                left.push(self.task_label(slot.control.id));
                *thread = Some(handle);
            }
        }
        left
    }

    fn status(&self) -> ConnectorStatus {
        let state = self.state();
        ConnectorStatus {
            name: self.plan.name.clone(),
            role: self.plan_role(),
            type_name: self.plan.type_name.clone(),
            state,
            tasks: if state == State::Stopped {
                Vec::new() // a stopped connector has no tasks, as in Kafka Connect
            } else {
                self.slots.iter().map(|s| s.control.status()).collect()
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Running connectors and their tasks.
pub struct Worker {
    units: BTreeMap<String, Arc<Unit>>,
    log: Log,
    metrics: Option<Arc<WorkerMetrics>>,
}

impl Worker {
    /// Creates the topics the pipeline needs, builds every connector and task, then starts
    /// them.
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
        } = options;
        let needs_schemas = pipeline
            .sources
            .iter()
            .chain(&pipeline.sinks)
            .any(|p| p.value_format == Format::Avro || p.key_format == Format::Avro);
        let schemas = match (schemas, needs_schemas) {
            (Some(s), _) => Some(s),
            (None, true) => {
                let store = sluice_schema_registry::store::LogStore::open(log)
                    .map_err(|e| WorkerError::Schemas(e.to_string()))?;
                Some(Arc::new(
                    Registry::open(Arc::new(store))
                        .map_err(|e| WorkerError::Schemas(e.to_string()))?,
                ))
            }
            (None, false) => None,
        };
        let avro_in = schemas.as_ref().map(|r| Arc::new(AvroIn::new(r.clone())));
        for (name, (partitions, config)) in &pipeline.topics {
            ensure_topic(log, name, *partitions, config.clone())?;
        }
        for plan in pipeline.sources.iter().chain(&pipeline.sinks) {
            for t in plan
                .topics
                .iter()
                .chain(plan.errors.dead_letter_topic.iter())
            {
                ensure_topic(log, t, 1, TopicConfig::default())?;
            }
        }
        let offsets = Arc::new(SourceOffsets::open(log)?);
        // Everything is built before anything starts.
        let mut built: Vec<(Arc<Unit>, Vec<Option<TaskBody>>)> = Vec::new();
        for plan in &pipeline.sources {
            let t = registry
                .source(&plan.type_name)
                .map_err(|e| connector_err(plan, e))?;
            let Factory::Source(make) = &t.factory else {
                return Err(connector_err(
                    plan,
                    format!("`{}` is not a source type", plan.type_name),
                ));
            };
            let connector = make(plan.settings.clone()).map_err(|e| connector_err(plan, e))?;
            let configs = connector
                .task_configs(plan.tasks)
                .map_err(|e| connector_err(plan, e))?;
            let converters = Arc::new(Converters::Source {
                key: source_encoder(plan, "key", schemas.as_deref())?,
                value: source_encoder(plan, "value", schemas.as_deref())?,
            });
            let tasks_in_all = configs.len() as u32;
            let slots: Vec<Arc<Slot>> = configs
                .into_iter()
                .enumerate()
                .map(|(i, config)| new_slot(i as u32, config, Vec::new()))
                .collect();
            let unit = Arc::new(Unit {
                plan: plan.clone(),
                instance: Instance::Source {
                    connector: Mutex::new(connector),
                    offsets: offsets.clone(),
                },
                converters,
                transforms: Arc::new(plan.transforms.clone()),
                tasks_in_all,
                log: log.clone(),
                observer: observer.clone(),
                metrics: metrics.clone(),
                state: Mutex::new(State::Running),
                slots,
            });
            let bodies = build_tasks(&unit)?;
            built.push((unit, bodies));
        }
        for plan in &pipeline.sinks {
            let t = registry
                .sink(&plan.type_name)
                .map_err(|e| connector_err(plan, e))?;
            let Factory::Sink(make) = &t.factory else {
                return Err(connector_err(
                    plan,
                    format!("`{}` is not a sink type", plan.type_name),
                ));
            };
            let connector = make(plan.settings.clone()).map_err(|e| connector_err(plan, e))?;
            let configs = connector
                .task_configs(plan.tasks)
                .map_err(|e| connector_err(plan, e))?;
            let mut all = Vec::new();
            for topic in &plan.topics {
                let n = log.topic(topic)?.partitions.len();
                all.extend((0..n as i32).map(|p| TopicPartition {
                    topic: topic.clone(),
                    partition: p,
                }));
            }
            let tasks = configs.len().max(1);
            let converters = Arc::new(Converters::Sink {
                key: sink_decoder(plan, "key", &avro_in)?,
                value: sink_decoder(plan, "value", &avro_in)?,
            });
            // Partitions round robin over the tasks; a task with none is not started.
            let slots: Vec<Arc<Slot>> = configs
                .into_iter()
                .enumerate()
                .filter_map(|(i, config)| {
                    let mine: Vec<TopicPartition> = all
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| j % tasks == i)
                        .map(|(_, tp)| tp.clone())
                        .collect();
                    (!mine.is_empty()).then(|| new_slot(i as u32, config, mine))
                })
                .collect();
            let unit = Arc::new(Unit {
                plan: plan.clone(),
                instance: Instance::Sink {
                    connector: Mutex::new(connector),
                },
                converters,
                transforms: Arc::new(plan.transforms.clone()),
                tasks_in_all: tasks as u32,
                log: log.clone(),
                observer: observer.clone(),
                metrics: metrics.clone(),
                state: Mutex::new(State::Running),
                slots,
            });
            let bodies = build_tasks(&unit)?;
            built.push((unit, bodies));
        }
        let mut worker = Worker {
            units: BTreeMap::new(),
            log: log.clone(),
            metrics,
        };
        for (unit, bodies) in built {
            if let Err(e) = unit.start_drivers(bodies) {
                // Whatever started is stopped again before the error is returned.
                unit.exit_drivers(Instant::now() + Duration::from_secs(10));
                worker.stop(Duration::from_secs(10));
                return Err(e);
            }
            worker.units.insert(unit.plan.name.clone(), unit);
        }
        Ok(worker)
    }

    fn unit(&self, name: &str) -> Result<&Arc<Unit>, ControlError> {
        self.units
            .get(name)
            .ok_or_else(|| ControlError::UnknownConnector(name.to_string()))
    }

    /// The connectors' names, in order.
    pub fn connectors(&self) -> Vec<String> {
        self.units.keys().cloned().collect()
    }

    /// A connector's plan (what the pipeline file says of it).
    pub fn plan(&self, name: &str) -> Result<&ConnectorPlan, ControlError> {
        Ok(&self.unit(name)?.plan)
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
        Ok(self.unit(name)?.status())
    }

    pub fn statuses(&self) -> Vec<ConnectorStatus> {
        self.units.values().map(|u| u.status()).collect()
    }

    /// The first task that is failed or restarting, with its trace.
    pub fn first_failure(&self) -> Option<(String, String)> {
        self.units.values().find_map(|u| {
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
        let unit = self.unit(name)?;
        let mut state = lock(&unit.state);
        if *state == State::Stopped {
            return Ok(()); // Kafka Connect leaves a stopped connector stopped
        }
        *state = State::Paused;
        for s in &unit.slots {
            s.control.pause();
        }
        Ok(())
    }

    /// Resumes a paused connector, or starts a stopped one's tasks again from committed
    /// positions. Idempotent.
    pub fn resume(&self, name: &str) -> Result<(), ControlError> {
        let unit = self.unit(name)?;
        let was = std::mem::replace(&mut *lock(&unit.state), State::Running);
        for s in &unit.slots {
            s.control.resume();
        }
        if was == State::Stopped {
            for s in &unit.slots {
                s.control.rearm();
            }
            unit.start_drivers(Vec::new())
                .map_err(|e| ControlError::Refused {
                    connector: name.to_string(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Stops a connector's tasks (each commits what it wrote or delivered first); the
    /// connector stays, STOPPED, with no tasks. Idempotent.
    pub fn stop_connector(&self, name: &str, grace: Duration) -> Result<Vec<String>, ControlError> {
        let unit = self.unit(name)?;
        *lock(&unit.state) = State::Stopped;
        Ok(unit.exit_drivers(Instant::now() + grace))
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
        for s in &unit.slots {
            let st = s.control.status();
            if !only_failed || st.state == State::Failed {
                s.control.request(Want::Restart);
                restarted.push(st.id);
            }
        }
        Ok(restarted)
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
        Ok(match &unit.instance {
            Instance::Source { offsets, .. } => offsets
                .positions(name)
                .into_iter()
                .map(|p| {
                    let offset = match p.offset {
                        o @ serde_json::Value::Object(_) => o,
                        o => json!({ "position": o }),
                    };
                    (json!({ "stream": &*p.stream }), offset)
                })
                .collect(),
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
        let metrics = self.metrics.as_ref()?;
        let scrape = Scrape::new(metrics.pipeline());
        for unit in self.units.values() {
            scrape.states(&unit.status());
            if let Instance::Sink { .. } = unit.instance {
                let group = format!("connect-{}", unit.plan.name);
                for tp in unit.slots.iter().flat_map(|s| s.partitions.iter()) {
                    let Ok(p) = self.log.partition(&tp.topic, tp.partition) else {
                        continue;
                    };
                    let committed = self
                        .log
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
        for topic in self.log.topics() {
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
        for group in self.log.groups() {
            for (topic, partition, c) in self.log.group_offsets(&group) {
                if let Ok(p) = self.log.partition(&topic, partition as i32) {
                    scrape.group_lag(
                        &group,
                        &topic,
                        partition as i32,
                        (p.end_offset() - c.offset).max(0),
                    );
                }
            }
        }
        metrics.render(&scrape).ok()
    }

    /// Asks every task to stop, waits up to `grace`, and returns the tasks still running then.
    pub fn stop(&self, grace: Duration) -> Vec<String> {
        let deadline = Instant::now() + grace;
        for unit in self.units.values() {
            for slot in &unit.slots {
                slot.control.request(Want::Exit);
            }
        }
        self.units
            .values()
            .flat_map(|u| u.exit_drivers(deadline))
            .collect()
    }
}

fn new_slot(id: u32, config: ConfigValues, partitions: Vec<TopicPartition>) -> Arc<Slot> {
    Arc::new(Slot {
        control: Arc::new(TaskControl::new(id, false)),
        config,
        partitions,
        thread: Mutex::new(None),
    })
}

/// Builds each slot's first task, before any starts.
fn build_tasks(unit: &Arc<Unit>) -> Result<Vec<Option<TaskBody>>, WorkerError> {
    unit.slots
        .iter()
        .map(|s| {
            unit.create_task(s)
                .map(Some)
                .map_err(|e| connector_err(&unit.plan, e.message))
        })
        .collect()
}
