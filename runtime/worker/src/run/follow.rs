//! On a Kafka cluster: what the other workers of the deployment asked. Every worker writes
//! REST-created connectors and the states asked of connectors to `<group>-configs`, and
//! every worker follows that topic: [`Worker::follow_configs`] reads what is new and brings
//! this worker's connectors in line with it (builds, replaces or removes REST connectors;
//! pauses, resumes or stops any connector). The topic's order is the order of the changes,
//! so all workers end the same.
//!
//! The same goes for where each source task runs: [`Worker::share_status`] writes the
//! states of the tasks running here to `<group>-status`, and a status asked of any worker
//! shows each task as the worker running it said.
//!
//! A read goes to the topic's end while no change of this worker is under way (the config
//! lock): what this worker wrote and was acknowledged is always in what it reads, so a
//! follower never undoes a newer change of its own with an older one of another worker.

use std::sync::Arc;
use std::time::Duration;

use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_kafka::{ConfigChange, TaskState};

use super::status::{ConnectorStatus, Role, State};
use super::supervisor::Worker;
use super::unit::{lock, Origin, Unit};
use crate::connector_store::StoredConnector;

/// How long a connector asked to stop by another worker gets to stop here.
const STOP_GRACE: Duration = Duration::from_secs(30);

fn state_of(word: &str) -> State {
    match word {
        "PAUSED" => State::Paused,
        "STOPPED" => State::Stopped,
        _ => State::Running,
    }
}

impl Worker {
    /// On a cluster, reads what the deployment's workers wrote to `<group>-configs` since
    /// the last call and applies it here; a no-op on the embedded log. Returns what could
    /// not be applied (each said once per config, and logged).
    pub fn follow_configs(&self, registry: &ConnectorRegistry) -> Result<Vec<String>, String> {
        if !self.store.is_shared() {
            return Ok(Vec::new());
        }
        let _one_change_at_a_time = lock(&self.config_lock);
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Vec::new());
        }
        let Some((wanted, file_states, restarts)) =
            self.store.follow().map_err(|e| e.to_string())?
        else {
            return Ok(Vec::new());
        };
        let mut problems = Vec::new();
        let local = self.store.all();
        for name in local.keys().filter(|n| !wanted.contains_key(*n)) {
            tracing::info!(connector = %name, "deleted by another worker of the deployment");
            self.store.note(name, None);
            if let Err(e) = self.remove_rest(name) {
                problems.push(e.to_string());
            }
        }
        for (name, stored) in &wanted {
            match local.get(name) {
                Some(here) if here.config == stored.config => {
                    if here.target_state != stored.target_state {
                        self.follow_state(name, &stored.target_state, &mut problems);
                        self.store.note(name, Some(stored));
                    }
                }
                _ => {
                    if let Some(p) = self.follow_connector(name, stored, registry) {
                        problems.push(p);
                    }
                }
            }
        }
        let file_units: Vec<String> = self
            .read_units()
            .values()
            .filter(|u| u.origin == Origin::File)
            .map(|u| u.plan.name.clone())
            .collect();
        for name in file_units {
            let want = file_states.get(&name).map_or("RUNNING", String::as_str);
            if self.store.file_state(&name).as_deref().unwrap_or("RUNNING") != want {
                self.follow_state(&name, want, &mut problems);
                self.store
                    .note_file_state(&name, (want != "RUNNING").then_some(want));
            }
        }
        for restart in restarts {
            self.follow_restart(restart);
        }
        for p in &problems {
            tracing::warn!(problem = %p, "a change made on another worker was not applied here");
        }
        Ok(problems)
    }

    /// Restarts the tasks a restart asked on some worker names, among those running here.
    fn follow_restart(&self, restart: ConfigChange) {
        let ConfigChange::Restart {
            name,
            task,
            only_failed,
        } = restart
        else {
            return;
        };
        let Ok(unit) = self.unit(&name) else {
            return;
        };
        if unit.state() == State::Stopped {
            return;
        }
        for slot in &unit.slots {
            let st = slot.control.status();
            let here = st.state != State::Unassigned;
            let asked =
                task.is_none_or(|t| t == st.id) && (!only_failed || st.state == State::Failed);
            if here && asked {
                tracing::info!(connector = %name, task = st.id, "restart asked on a worker of the deployment");
                slot.control.request(super::control::Want::Restart);
            }
        }
    }

    /// Builds (or rebuilds) a REST connector another worker created or reconfigured.
    fn follow_connector(
        &self,
        name: &str,
        stored: &StoredConnector,
        registry: &ConnectorRegistry,
    ) -> Option<String> {
        if lock(&self.follow_failures).get(name) == Some(&stored.config) {
            return None; // said already; tried again when the config changes
        }
        if self
            .read_units()
            .get(name)
            .is_some_and(|u| u.origin == Origin::File)
        {
            lock(&self.follow_failures).insert(name.to_string(), stored.config.clone());
            return Some(format!(
                "connector `{name}` was created over the REST API on another worker and is in this worker's pipeline file: the file's runs here"
            ));
        }
        tracing::info!(connector = %name, "created or reconfigured by another worker of the deployment");
        let built = self.build_rest(name, &stored.config, registry);
        let done = built.and_then(|b| self.replace_rest(name, b, state_of(&stored.target_state)));
        match done {
            Ok(()) => {
                lock(&self.follow_failures).remove(name);
                self.store.note(name, Some(stored));
                None
            }
            Err(e) => {
                lock(&self.follow_failures).insert(name.to_string(), stored.config.clone());
                Some(format!(
                    "connector `{name}` (created over the REST API on another worker) does not run here: {e}"
                ))
            }
        }
    }

    /// Brings a connector to the state another worker asked of it.
    fn follow_state(&self, name: &str, word: &str, problems: &mut Vec<String>) {
        let Ok(unit) = self.unit(name) else {
            return;
        };
        let want = state_of(word);
        if unit.state() == want {
            return;
        }
        tracing::info!(connector = %name, state = %word, "state asked by another worker of the deployment");
        match self.apply_state(&unit, want, STOP_GRACE) {
            Ok(left) if left.is_empty() => {}
            Ok(left) => problems.push(format!(
                "connector `{name}`: these tasks did not stop within {} s: {}",
                STOP_GRACE.as_secs(),
                left.join(", ")
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
}

impl Worker {
    /// On a cluster, writes to `<group>-status` the state of each source task running here
    /// that changed since the last call, and reads what the other workers wrote (a no-op on
    /// the embedded log). `worker_id` is this worker's REST address.
    pub fn share_status(&self, worker_id: &str) -> Result<(), String> {
        let Some(k) = &self.builder.kafka else {
            return Ok(());
        };
        let units: Vec<Arc<Unit>> = self
            .read_units()
            .values()
            .filter(|u| u.plan_role() == Role::Source)
            .cloned()
            .collect();
        {
            let mut shared = lock(&self.shared_status);
            shared.worker_id = Some(worker_id.to_string());
            for unit in units {
                for slot in &unit.slots {
                    let st = slot.control.status();
                    if st.state == State::Unassigned || unit.state() == State::Stopped {
                        continue; // the worker that runs it says how it is
                    }
                    let key = (unit.plan.name.clone(), st.id);
                    let now = (st.state, st.trace.clone());
                    if shared.written.get(&key) == Some(&now) {
                        continue;
                    }
                    let written = k.status.write(
                        &unit.plan.name,
                        st.id,
                        &TaskState {
                            state: st.state.as_str().to_string(),
                            trace: st.trace,
                            worker_id: worker_id.to_string(),
                        },
                    );
                    written.map_err(|e| e.to_string())?;
                    shared.written.insert(key, now);
                }
            }
        }
        k.status.refresh().map_err(|e| e.to_string())
    }

    /// A connector's status, with each source task this worker does not run shown as the
    /// worker that runs it last said (on a cluster).
    pub(super) fn status_of(&self, unit: &Arc<Unit>) -> ConnectorStatus {
        let mut status = unit.status();
        let (Some(k), Role::Source) = (&self.builder.kafka, unit.plan_role()) else {
            return status;
        };
        let me = lock(&self.shared_status).worker_id.clone();
        for t in &mut status.tasks {
            if t.state != State::Unassigned {
                continue;
            }
            let Some(there) = k.status.task(&unit.plan.name, t.id) else {
                continue;
            };
            if Some(&there.worker_id) == me.as_ref() {
                continue; // what this worker said before it stopped running the task
            }
            if let Some(state) = State::parse(&there.state) {
                t.state = state;
                t.trace = there.trace;
                t.worker_id = Some(there.worker_id);
            }
        }
        status
    }
}
