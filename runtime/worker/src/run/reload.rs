//! Hot reload: a new checked pipeline is compared with the running one connector by
//! connector (by each entry's fingerprint); the connectors that were added or changed are
//! built in full first, and only if all of them build are the changed and removed ones
//! stopped (each commits what it wrote or delivered) and the new ones started from the
//! committed positions. Unchanged connectors keep their tasks, positions and counters. An
//! invalid file, or a connector that cannot be built, leaves everything as it was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_connector_sdk::registry::ConnectorRegistry;

use super::status::{Role, State};
use super::supervisor::Worker;
use super::unit::{lock, Origin};
use crate::config::{ConfigErrors, Pipeline};

/// How long a connector being replaced gets to stop.
const REPLACE_GRACE: Duration = Duration::from_secs(30);

/// How a reload attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The changes are running.
    Applied,
    /// The file is unchanged for every connector: nothing was touched.
    Unchanged,
    /// The file did not validate: the last good configuration keeps running.
    Invalid,
    /// A connector could not be built: the last good configuration keeps running.
    Failed,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Invalid => "invalid",
            ReloadResult::Failed => "failed",
        }
    }
}

/// One problem a reload met, where it stands when it has a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadProblem {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// One attempt at reloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAttempt {
    pub at_ms: i64,
    pub result: ReloadResult,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub errors: Vec<ReloadProblem>,
    /// Settings outside the connectors (`runtime`, `plugin_path`) that changed: they take
    /// effect only when `sluice run` is started again.
    pub needs_restart: Vec<String>,
}

/// The active configuration and the last reload, as `GET /reload` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// A hash of every connector's fingerprint: equal hashes, equal connectors.
    pub active_hash: String,
    pub active_since_ms: i64,
    pub last: Option<ReloadAttempt>,
    /// Attempts so far, by result, for `sluice_config_reloads_total`.
    pub counts: BTreeMap<&'static str, u64>,
}

/// A hash of the connectors of a pipeline, as 16 hex digits.
pub fn pipeline_hash(p: &Pipeline) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for plan in p.sources.iter().chain(&p.sinks) {
        (&plan.name, plan.fingerprint).hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

impl ReloadStatus {
    pub(super) fn started(p: &Pipeline) -> ReloadStatus {
        ReloadStatus {
            active_hash: pipeline_hash(p),
            active_since_ms: sluice_log::now_ms(),
            last: None,
            counts: BTreeMap::new(),
        }
    }

    fn record(&mut self, attempt: ReloadAttempt) {
        *self.counts.entry(attempt.result.as_str()).or_default() += 1;
        self.last = Some(attempt);
    }
}

fn attempt(result: ReloadResult) -> ReloadAttempt {
    ReloadAttempt {
        at_ms: sluice_log::now_ms(),
        result,
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
        errors: Vec::new(),
        needs_restart: Vec::new(),
    }
}

impl Worker {
    pub fn reload_status(&self) -> ReloadStatus {
        lock(&self.reload).clone()
    }

    /// Records a reload refused because the file does not validate.
    pub fn reload_rejected(&self, errors: &ConfigErrors) -> ReloadAttempt {
        let mut a = attempt(ReloadResult::Invalid);
        a.errors = errors
            .errors
            .iter()
            .map(|e| ReloadProblem {
                file: Some(errors.file.display().to_string()),
                line: Some(e.pos.line),
                column: Some(e.pos.col),
                message: e.message.clone(),
            })
            .collect();
        lock(&self.reload).record(a.clone());
        a
    }

    /// Applies `new` (already checked): restarts what changed, from committed positions.
    /// `needs_restart` names settings outside the connectors that changed (reported, not
    /// applied).
    pub fn reload(
        &self,
        new: &Pipeline,
        registry: &ConnectorRegistry,
        needs_restart: Vec<String>,
    ) -> ReloadAttempt {
        let _one_change_at_a_time = lock(&self.config_lock);
        let mut a = attempt(ReloadResult::Applied);
        a.needs_restart = needs_restart;
        let wanted: Vec<(&crate::config::ConnectorPlan, Role)> = new
            .sources
            .iter()
            .map(|p| (p, Role::Source))
            .chain(new.sinks.iter().map(|p| (p, Role::Sink)))
            .collect();
        // Connectors created over REST are not the file's: a reload neither changes nor
        // removes them, and a file connector may not take one's name.
        let mut from_rest = Vec::new();
        let running: BTreeMap<String, (u64, Role)> = self
            .read_units()
            .iter()
            .filter(|(n, u)| {
                if u.origin == Origin::Rest {
                    from_rest.push((*n).clone());
                }
                u.origin == Origin::File
            })
            .map(|(n, u)| (n.clone(), (u.plan.fingerprint, u.plan_role())))
            .collect();
        for (plan, _) in &wanted {
            if from_rest.contains(&plan.name) {
                a.errors.push(ReloadProblem {
                    file: None,
                    line: None,
                    column: None,
                    message: format!(
                        "connector `{}` in the file has the name of a connector created over the REST API: rename it, or delete that one (DELETE /connectors/{})",
                        plan.name, plan.name
                    ),
                });
            }
        }
        if !a.errors.is_empty() {
            a.result = ReloadResult::Failed;
            lock(&self.reload).record(a.clone());
            return a;
        }
        let mut to_build = Vec::new();
        for (plan, role) in &wanted {
            match running.get(&plan.name) {
                None => {
                    a.added.push(plan.name.clone());
                    to_build.push((*plan, *role));
                }
                Some((fingerprint, was)) if *fingerprint != plan.fingerprint || was != role => {
                    a.changed.push(plan.name.clone());
                    to_build.push((*plan, *role));
                }
                Some(_) => {}
            }
        }
        a.removed = running
            .keys()
            .filter(|n| !wanted.iter().any(|(p, _)| &p.name == *n))
            .cloned()
            .collect();
        if a.added.is_empty() && a.changed.is_empty() && a.removed.is_empty() {
            a.result = ReloadResult::Unchanged;
            lock(&self.reload).record(a.clone());
            return a;
        }
        // Build everything new first; any failure leaves the running pipeline as it is.
        let mut built = Vec::new();
        let prepared = self.builder.prepare(new);
        if let Err(e) = prepared {
            a.errors.push(ReloadProblem {
                file: None,
                line: None,
                column: None,
                message: e.to_string(),
            });
        } else {
            for (plan, role) in &to_build {
                match self.builder.build(plan, *role, Origin::File, registry) {
                    Ok(b) => built.push(b),
                    Err(e) => a.errors.push(ReloadProblem {
                        file: None,
                        line: None,
                        column: None,
                        message: e.to_string(),
                    }),
                }
            }
        }
        if !a.errors.is_empty() {
            a.result = ReloadResult::Failed;
            lock(&self.reload).record(a.clone());
            return a;
        }
        // Stop what is replaced or removed (each task commits on its way out), then start.
        let deadline = Instant::now() + REPLACE_GRACE;
        let mut asked: BTreeMap<String, State> = BTreeMap::new();
        // A changed connector stays listed while its old tasks stop (the new one takes its
        // place in `install`): a client asking in between never sees it vanish.
        for name in a.changed.iter().chain(&a.removed) {
            let old = if a.removed.contains(name) {
                self.write_units().remove(name)
            } else {
                self.read_units().get(name).cloned()
            };
            if let Some(old) = old {
                asked.insert(name.clone(), old.state());
                let left = old.exit_drivers(deadline);
                if !left.is_empty() {
                    a.errors.push(ReloadProblem {
                        file: None,
                        line: None,
                        column: None,
                        message: format!(
                            "these tasks did not stop within {} s and were left running: {}",
                            REPLACE_GRACE.as_secs(),
                            left.join(", ")
                        ),
                    });
                }
            }
        }
        for name in &a.removed {
            // A connector that left the file forgets the state asked of it.
            if let Err(e) = self.store.put_file_state(name, None) {
                tracing::warn!(connector = %name, error = %e, "cannot forget the state of a removed connector");
            }
        }
        for (unit, bodies) in built {
            // A changed connector keeps what was asked of it: paused stays paused, stopped
            // stays stopped.
            let was = asked.get(&unit.plan.name).copied();
            if let Err(e) = self.install((unit, bodies), was) {
                a.errors.push(ReloadProblem {
                    file: None,
                    line: None,
                    column: None,
                    message: e.to_string(),
                });
                a.result = ReloadResult::Failed;
            }
        }
        let mut status = lock(&self.reload);
        if a.result == ReloadResult::Applied {
            status.active_hash = pipeline_hash(new);
            status.active_since_ms = a.at_ms;
        }
        status.record(a.clone());
        a
    }
}
