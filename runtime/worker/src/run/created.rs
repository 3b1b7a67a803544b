//! Connectors created, reconfigured and deleted over the REST API (`POST /connectors`,
//! `PUT`/`PATCH …/config`, `DELETE`). A flat config is checked by the file's code
//! ([`crate::config::parse_flat_connector`]), the connector is built in full, its config is
//! stored durably in `__sluice_connectors`, and only then is an old version stopped (it
//! commits) and the new one started from the committed positions. A restart of the worker
//! builds every stored connector again, in the state last asked of it.
//!
//! Connectors of the pipeline file are not changed here (409: edit the file), and a reload
//! of the file leaves these alone.
//!
//! On a Kafka cluster the config goes to `<group>-configs`, which every worker of the
//! deployment follows ([`Worker::follow_configs`] in `follow.rs`): a connector created on
//! one worker is built on all of them, and the group decides where its tasks run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use sluice_connector_sdk::registry::ConnectorRegistry;

use super::status::{Role, State};
use super::supervisor::{ControlError, Worker};
use super::unit::{lock, Origin, TaskBody, Unit};
use super::WorkerError;
use crate::config::{parse_flat_connector, ConnectorPlan};
use crate::connector_store::StoredConnector;

/// How long the old version of a reconfigured or deleted connector gets to stop.
const REPLACE_GRACE: Duration = Duration::from_secs(30);

impl Worker {
    /// Where a connector was defined.
    pub fn origin(&self, name: &str) -> Result<Origin, ControlError> {
        Ok(self.unit(name)?.origin)
    }

    /// The flat config a connector was created with over REST, as it was given.
    pub fn stored_config(&self, name: &str) -> Option<Map<String, Json>> {
        self.store.get(name).map(|s| s.config)
    }

    fn sources_except(&self, name: &str) -> Vec<ConnectorPlan> {
        self.read_units()
            .values()
            .filter(|u| u.plan_role() == Role::Source && u.plan.name != name)
            .map(|u| u.plan.clone())
            .collect()
    }

    /// Creates (`create_only`) or creates-or-replaces a connector from Kafka Connect's flat
    /// config; `initial` is the state a new connector starts in (KIP-980). Returns whether
    /// it was created. Nothing changes unless the config is valid and the connector builds.
    pub fn put_connector(
        &self,
        name: &str,
        config: Map<String, Json>,
        registry: &ConnectorRegistry,
        create_only: bool,
        initial: State,
    ) -> Result<bool, ControlError> {
        let _one_change_at_a_time = lock(&self.config_lock);
        // On a cluster, decided on everything any worker wrote (another worker's connector
        // that this one has not built yet exists all the same).
        let on_cluster = self
            .store
            .begin_write(name)
            .map_err(|e| ControlError::Refused {
                connector: name.to_string(),
                message: e.to_string(),
            })?;
        let existing = self.read_units().get(name).cloned();
        match &existing {
            _ if create_only && on_cluster == Some(true) => {
                return Err(ControlError::Exists(name.to_string()))
            }
            Some(_) if create_only => return Err(ControlError::Exists(name.to_string())),
            Some(u) if u.origin == Origin::File => {
                return Err(ControlError::InFile(name.to_string()))
            }
            _ => {}
        }
        let built = self.build_rest(name, &config, registry)?;
        let state = existing.as_ref().map_or(initial, |u| u.state());
        let stored = StoredConnector {
            config,
            target_state: state.to_string(),
        };
        self.store
            .put(name, Some(&stored))
            .map_err(|e| ControlError::Refused {
                connector: name.to_string(),
                message: format!("cannot store the connector's config: {e}"),
            })?;
        self.replace_rest(name, built, state)?;
        Ok(existing.is_none())
    }

    /// Checks a flat config and builds the connector, started by nothing yet.
    pub(super) fn build_rest(
        &self,
        name: &str,
        config: &Map<String, Json>,
        registry: &ConnectorRegistry,
    ) -> Result<(Arc<Unit>, Vec<Option<TaskBody>>), ControlError> {
        let (plan, role) = parse_flat_connector(name, config, registry, &self.sources_except(name))
            .map_err(ControlError::Invalid)?;
        let refused = |e: WorkerError| ControlError::Refused {
            connector: name.to_string(),
            message: e.to_string(),
        };
        self.builder.prepare_connector(&plan).map_err(refused)?;
        self.builder
            .build(&plan, role, Origin::Rest, registry)
            .map_err(refused)
    }

    /// Stops the old version of a REST connector, if any (it commits), and starts `built`
    /// in `state`.
    pub(super) fn replace_rest(
        &self,
        name: &str,
        built: (Arc<Unit>, Vec<Option<TaskBody>>),
        state: State,
    ) -> Result<(), ControlError> {
        let mut left = Vec::new();
        // The old connector stays listed until the new one replaces it in `install`.
        let old = self.read_units().get(name).cloned();
        if let Some(old) = old {
            left = old.exit_drivers(Instant::now() + REPLACE_GRACE);
        }
        let started = self.install(built, Some(state));
        if !left.is_empty() {
            return Err(ControlError::Refused {
                connector: name.to_string(),
                message: format!(
                    "the new config is stored and running, but these tasks of the old one did not stop within {} s: {}",
                    REPLACE_GRACE.as_secs(),
                    left.join(", ")
                ),
            });
        }
        started.map_err(|e| ControlError::Refused {
            connector: name.to_string(),
            message: e.to_string(),
        })
    }

    /// `PATCH …/config` (KIP-477): the stored config with `patch` merged in (a `null`
    /// value removes that key), checked and applied as a `PUT`.
    pub fn patch_connector(
        &self,
        name: &str,
        patch: Map<String, Json>,
        registry: &ConnectorRegistry,
    ) -> Result<(), ControlError> {
        let unit = self.unit(name)?;
        if unit.origin == Origin::File {
            return Err(ControlError::InFile(name.to_string()));
        }
        let mut config = self.store.get(name).map(|s| s.config).unwrap_or_default();
        for (k, v) in patch {
            if v.is_null() {
                config.remove(&k);
            } else {
                config.insert(k, v);
            }
        }
        self.put_connector(name, config, registry, false, State::Running)
            .map(|_| ())
    }

    /// Deletes a connector created over REST: its tasks stop (committing), its config is
    /// forgotten (a tombstone); its committed positions stay, as Kafka Connect keeps them.
    pub fn delete_connector(&self, name: &str) -> Result<(), ControlError> {
        let _one_change_at_a_time = lock(&self.config_lock);
        let unit = self.unit(name)?;
        if unit.origin == Origin::File {
            return Err(ControlError::InFile(name.to_string()));
        }
        self.store
            .put(name, None)
            .map_err(|e| ControlError::Refused {
                connector: name.to_string(),
                message: format!("cannot store the deletion: {e}"),
            })?;
        self.remove_rest(name)
    }

    /// Takes a REST connector out: its tasks stop (committing) within [`REPLACE_GRACE`].
    pub(super) fn remove_rest(&self, name: &str) -> Result<(), ControlError> {
        let left = self
            .write_units()
            .remove(name)
            .map(|u| u.exit_drivers(Instant::now() + REPLACE_GRACE))
            .unwrap_or_default();
        if !left.is_empty() {
            return Err(ControlError::Refused {
                connector: name.to_string(),
                message: format!(
                    "deleted, but these tasks did not stop within {} s: {}",
                    REPLACE_GRACE.as_secs(),
                    left.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Remembers the state asked of a connector, so that a restart brings it back paused or
    /// stopped: a REST connector's with its config, a file connector's on its own.
    pub(super) fn persist_target_state(
        &self,
        unit: &Unit,
        state: State,
    ) -> Result<(), ControlError> {
        if unit.origin == Origin::File {
            let kept = (state != State::Running).then(|| state.to_string());
            return self
                .store
                .put_file_state(&unit.plan.name, kept.as_deref())
                .map_err(|e| ControlError::Refused {
                    connector: unit.plan.name.clone(),
                    message: format!("cannot store the connector's state: {e}"),
                });
        }
        let Some(mut stored) = self.store.get(&unit.plan.name) else {
            return Ok(());
        };
        if stored.target_state == state.to_string() {
            return Ok(());
        }
        stored.target_state = state.to_string();
        self.store
            .put(&unit.plan.name, Some(&stored))
            .map_err(|e| ControlError::Refused {
                connector: unit.plan.name.clone(),
                message: format!("cannot store the connector's state: {e}"),
            })
    }

    /// Puts a built connector in place and starts it, unless `was` says it was paused
    /// (it starts paused) or stopped (its tasks are not started).
    pub(super) fn install(
        &self,
        (unit, bodies): (Arc<Unit>, Vec<Option<TaskBody>>),
        was: Option<State>,
    ) -> Result<(), WorkerError> {
        if was == Some(State::Paused) {
            *lock(&unit.state) = State::Paused;
            for s in &unit.slots {
                s.control.pause();
            }
        }
        let started = if was == Some(State::Stopped) {
            *lock(&unit.state) = State::Stopped;
            Ok(())
        } else {
            unit.start_drivers(bodies)
        };
        self.write_units().insert(unit.plan.name.clone(), unit);
        started
    }

    /// Builds and starts the connectors stored in `__sluice_connectors`; returns what
    /// could not be brought back, and why (each stays stored: fix the cause and restart).
    pub(super) fn restore(&self, registry: &ConnectorRegistry) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, stored) in self.store.all() {
            if self.read_units().contains_key(&name) {
                problems.push(format!(
                    "connector `{name}` was created over the REST API and is also in the pipeline file: the file's runs (delete one of them)"
                ));
                continue;
            }
            let plan =
                parse_flat_connector(&name, &stored.config, registry, &self.sources_except(&name));
            let (plan, role) = match plan {
                Ok(p) => p,
                Err(errors) => {
                    let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    problems.push(format!(
                        "connector `{name}` (created over the REST API) is no longer valid: {}",
                        why.join("; ")
                    ));
                    continue;
                }
            };
            let built = self
                .builder
                .prepare_connector(&plan)
                .and_then(|()| self.builder.build(&plan, role, Origin::Rest, registry));
            let state = match stored.target_state.as_str() {
                "PAUSED" => State::Paused,
                "STOPPED" => State::Stopped,
                _ => State::Running,
            };
            if let Err(e) = built.and_then(|b| self.install(b, Some(state))) {
                problems.push(format!(
                    "connector `{name}` (created over the REST API) did not start: {e}"
                ));
            }
        }
        problems
    }
}
