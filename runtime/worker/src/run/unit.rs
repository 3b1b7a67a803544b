//! A connector as the supervisor runs it: its instance, converters and task slots, and the
//! driver each task's thread runs (loop, panic caught as a failure, restarts per the
//! connector's `restart` policy, requests obeyed); and the [`Builder`] that makes units from
//! plans, all of a pipeline's before any starts.

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
    connector_err, ensure_topic, sink_decoder, source_encoder, Ctx, Sides, SinkCtx, SourceCtx,
    WorkerError,
};
use crate::config::{ConnectorPlan, Pipeline, Side};
use crate::convert::{AvroIn, Decoder, Encoder};
use crate::metrics::WorkerMetrics;
use crate::offsets::SourceOffsets;
use crate::on_kafka::KafkaRuntime;

/// A task that has run this long without failing starts its restart count afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

pub(super) enum Instance {
    Source {
        connector: Mutex<Box<dyn SourceConnector>>,
        offsets: Arc<SourceOffsets>,
        encoders: Arc<Sides<Encoder>>,
        /// The one topic it writes.
        topic: String,
    },
    Sink {
        connector: Mutex<Box<dyn SinkConnector>>,
        decoders: Arc<Sides<Decoder>>,
    },
}

pub(super) enum TaskBody {
    Source(Box<dyn SourceTask>),
    Sink(Box<dyn SinkTask>),
}

pub(super) struct Slot {
    pub(super) control: Arc<TaskControl>,
    pub(super) config: ConfigValues,
    /// A sink task's partitions.
    pub(super) partitions: Vec<TopicPartition>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
}

/// Where a connector was defined: what may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The pipeline file: reloads change it; REST may steer it but not reconfigure it.
    File,
    /// Created over the REST API and stored in `__sluice_connectors`.
    Rest,
}

pub(super) struct Unit {
    pub(super) plan: ConnectorPlan,
    pub(super) origin: Origin,
    pub(super) instance: Instance,
    pub(super) transforms: Arc<Vec<super::Transform>>,
    pub(super) tasks_in_all: u32,
    pub(super) log: Log,
    pub(super) kafka: Option<Arc<KafkaRuntime>>,
    pub(super) observer: Option<Observer>,
    pub(super) metrics: Option<Arc<WorkerMetrics>>,
    /// RUNNING, PAUSED or STOPPED: what was asked of the connector.
    pub(super) state: Mutex<State>,
    pub(super) slots: Vec<Arc<Slot>>,
}

impl Unit {
    pub(super) fn task_label(&self, id: u32) -> String {
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
            Instance::Sink { connector, .. } => lock(connector)
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
            kafka: self.kafka.clone(),
            control: slot.control.clone(),
            observer: self.observer.clone(),
            errors: self.plan.errors.clone(),
            transforms: self.transforms.clone(),
            failure: Default::default(),
            metrics: self
                .metrics
                .as_ref()
                .map(|m| m.task(&self.plan.name, slot.control.id, self.plan_role())),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| match (body, &self.instance) {
            (
                TaskBody::Source(task),
                Instance::Source {
                    offsets,
                    encoders,
                    topic,
                    ..
                },
            ) => source_loop(
                &SourceCtx {
                    base: &ctx,
                    encoders,
                    topic,
                    lease: self.lease(slot).map(|(_, l)| l),
                    exactly_once: self.plan.exactly_once.is_some(),
                },
                task,
                offsets,
            ),
            (TaskBody::Sink(task), Instance::Sink { decoders, .. }) => sink_loop(
                &SinkCtx {
                    base: &ctx,
                    decoders,
                    topics: &self.plan.topics,
                },
                task,
                slot.partitions.clone(),
            ),
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
            let lease = self.lease(slot);
            if let Some((leases, lease)) = &lease {
                if !self.wait_for_lease(control, leases, lease) {
                    break;
                }
            }
            if control.begin_run() == Want::Exit {
                break;
            }
            let started = Instant::now();
            let result = match first.take() {
                Some(body) => Ok(body),
                None => self.create_task(slot),
            }
            .and_then(|body| self.run(slot, body));
            if let Some((leases, lease)) = &lease {
                leases.set_running(lease, false);
            }
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
                if lease.is_some() && !control.should_stop() {
                    continue; // the lease moved to another worker: wait for it again
                }
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

    /// A source task's lease on a Kafka cluster.
    fn lease(&self, slot: &Slot) -> Option<(&sluice_kafka::Leases, sluice_kafka::Lease)> {
        match (&self.kafka, &self.instance) {
            (Some(k), Instance::Source { .. }) => k.lease(&self.plan.name, slot.control.id),
            _ => None,
        }
    }

    /// Waits, UNASSIGNED, until this worker holds the task's lease; `false` when the task
    /// is asked to exit meanwhile. The lease is marked running before this returns `true`.
    fn wait_for_lease(
        &self,
        control: &TaskControl,
        leases: &sluice_kafka::Leases,
        lease: &sluice_kafka::Lease,
    ) -> bool {
        let mut told = false;
        loop {
            if leases.holds(lease) {
                leases.set_running(lease, true);
                // Taken again at once if the lease went in between (the revocation waits
                // for `running` to clear, so it cannot be missed).
                if leases.holds(lease) {
                    return true;
                }
                leases.set_running(lease, false);
            }
            if !told {
                control.set(
                    State::Unassigned,
                    Some(
                        "waiting for the deployment's group to assign this task to this worker"
                            .into(),
                    ),
                );
                told = true;
            }
            match control.wait_for_request(Some(Duration::from_millis(100))) {
                Want::Exit => return false,
                Want::Restart | Want::Run => {}
            }
        }
    }

    pub(super) fn state(&self) -> State {
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
    pub(super) fn start_drivers(
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

    pub(super) fn plan_role(&self) -> Role {
        match self.instance {
            Instance::Source { .. } => Role::Source,
            Instance::Sink { .. } => Role::Sink,
        }
    }

    /// Asks every driver to leave and waits for them until `deadline`; names the tasks
    /// still running then.
    pub(super) fn exit_drivers(&self, deadline: Instant) -> Vec<String> {
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

    pub(super) fn status(&self) -> ConnectorStatus {
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// Makes units from plans, with what every connector of a worker shares.
pub(super) struct Builder {
    pub(super) log: Log,
    pub(super) kafka: Option<Arc<KafkaRuntime>>,
    offsets: Arc<SourceOffsets>,
    /// Opened on the log's `__schemas` the first time a connector needs Avro.
    schemas: Mutex<Option<Arc<Registry>>>,
    observer: Option<Observer>,
    pub(super) metrics: Option<Arc<WorkerMetrics>>,
}

impl Builder {
    pub(super) fn new(
        log: &Log,
        schemas: Option<Arc<Registry>>,
        observer: Option<Observer>,
        metrics: Option<Arc<WorkerMetrics>>,
        kafka: Option<Arc<KafkaRuntime>>,
    ) -> Result<Builder, WorkerError> {
        Ok(Builder {
            log: log.clone(),
            kafka,
            offsets: Arc::new(SourceOffsets::open(log)?),
            schemas: Mutex::new(schemas),
            observer,
            metrics,
        })
    }

    /// The topics a pipeline declares or its connectors use, created if missing, and the
    /// schema registry if a connector needs Avro.
    pub(super) fn prepare(&self, pipeline: &Pipeline) -> Result<(), WorkerError> {
        for (name, (partitions, config)) in &pipeline.topics {
            match &self.kafka {
                Some(k) => k
                    .ensure_topic(name, *partitions, config)
                    .map_err(|e| WorkerError::Cluster(e.to_string()))?,
                None => ensure_topic(&self.log, name, *partitions, config.clone())?,
            }
        }
        for plan in pipeline.sources.iter().chain(&pipeline.sinks) {
            self.prepare_connector(plan)?;
        }
        Ok(())
    }

    /// The topics one connector uses (one partition when created here), and the schema
    /// registry if it needs Avro.
    pub(super) fn prepare_connector(&self, plan: &ConnectorPlan) -> Result<(), WorkerError> {
        let needs_schemas = plan.uses_avro();
        let mut schemas = lock(&self.schemas);
        if needs_schemas && schemas.is_none() {
            let store = sluice_schema_registry::store::LogStore::open(&self.log)
                .map_err(|e| WorkerError::Schemas(e.to_string()))?;
            *schemas = Some(Arc::new(
                Registry::open(Arc::new(store)).map_err(|e| WorkerError::Schemas(e.to_string()))?,
            ));
        }
        for t in plan
            .topics
            .iter()
            .chain(plan.errors.dead_letter_topic.iter())
        {
            match &self.kafka {
                Some(k) => k
                    .ensure_topic(t, 1, &TopicConfig::default())
                    .map_err(|e| connector_err(plan, e))?,
                None => ensure_topic(&self.log, t, 1, TopicConfig::default())?,
            }
        }
        Ok(())
    }

    /// A connector with every task created, not started.
    pub(super) fn build(
        &self,
        plan: &ConnectorPlan,
        role: Role,
        origin: Origin,
        registry: &ConnectorRegistry,
    ) -> Result<(Arc<Unit>, Vec<Option<TaskBody>>), WorkerError> {
        let schemas = lock(&self.schemas).clone();
        let (instance, slots, tasks_in_all) = match role {
            Role::Source => {
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
                let topic = plan.topics.first().cloned().ok_or_else(|| {
                    connector_err(plan, "a source needs the topic it writes (`topic`)")
                })?;
                let own_schemas = t.config.own_schemas;
                let encoders = Sides {
                    key: source_encoder(plan, &topic, Side::Key, schemas.as_ref(), own_schemas)?,
                    value: source_encoder(
                        plan,
                        &topic,
                        Side::Value,
                        schemas.as_ref(),
                        own_schemas,
                    )?,
                };
                let tasks_in_all = configs.len() as u32;
                // On a cluster, the deployment's group learns of the tasks before any runs.
                if let Some(k) = &self.kafka {
                    k.offer(&plan.name, tasks_in_all)
                        .map_err(|e| connector_err(plan, e))?;
                }
                let slots: Vec<Arc<Slot>> = configs
                    .into_iter()
                    .enumerate()
                    .map(|(i, config)| new_slot(i as u32, config, Vec::new()))
                    .collect();
                let instance = Instance::Source {
                    connector: Mutex::new(connector),
                    offsets: self.offsets.clone(),
                    encoders: Arc::new(encoders),
                    topic,
                };
                (instance, slots, tasks_in_all)
            }
            Role::Sink => {
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
                // On a cluster, every task is a consumer in the sink's group, which splits
                // the partitions among the tasks of every worker.
                for topic in plan.topics.iter().filter(|_| self.kafka.is_none()) {
                    let n = self.log.topic(topic)?.partitions.len();
                    all.extend((0..n as i32).map(|p| TopicPartition {
                        topic: topic.clone(),
                        partition: p,
                    }));
                }
                let tasks = configs.len().max(1);
                let avro_in = schemas.as_ref().map(|r| Arc::new(AvroIn::new(r.clone())));
                let decoders = Sides {
                    key: sink_decoder(plan, Side::Key, &avro_in)?,
                    value: sink_decoder(plan, Side::Value, &avro_in)?,
                };
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
                        let runs = !mine.is_empty() || self.kafka.is_some();
                        runs.then(|| new_slot(i as u32, config, mine))
                    })
                    .collect();
                let instance = Instance::Sink {
                    connector: Mutex::new(connector),
                    decoders: Arc::new(decoders),
                };
                (instance, slots, tasks as u32)
            }
        };
        let unit = Arc::new(Unit {
            plan: plan.clone(),
            origin,
            instance,
            transforms: Arc::new(plan.transforms.clone()),
            tasks_in_all,
            log: self.log.clone(),
            kafka: self.kafka.clone(),
            observer: self.observer.clone(),
            metrics: self.metrics.clone(),
            state: Mutex::new(State::Running),
            slots,
        });
        let bodies = build_tasks(&unit)?;
        Ok((unit, bodies))
    }
}
