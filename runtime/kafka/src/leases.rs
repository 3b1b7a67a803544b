//! Which worker runs which source task. Every worker of a deployment joins the consumer
//! group `<group>` on the topic `<group>-tasks`, which has one partition per source task
//! of the pipeline file: the cluster's group coordinator hands the partitions out among
//! the live workers (cooperative-sticky), and a worker runs the tasks whose partitions it
//! holds. A worker that dies loses its partitions when its session times out, and the
//! survivors get them. No coordination code of ours: the assignor is Kafka's.
//!
//! On a revocation the worker waits (up to [`HANDOVER_WAIT`]) until the revoked tasks have
//! stopped and committed, so that the next holder starts where they stopped.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::cluster::{Cluster, ClusterError, TopicSpec};

/// How long a revocation waits for the revoked tasks to stop.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct State {
    /// Partitions (task indexes) this worker holds.
    held: Mutex<BTreeSet<i32>>,
    /// Task indexes running here right now.
    running: Mutex<BTreeSet<i32>>,
}

struct LeaseContext {
    state: Arc<State>,
}

impl ClientContext for LeaseContext {}

impl ConsumerContext for LeaseContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked: Vec<i32> = match rebalance {
            Rebalance::Revoke(tpl) => tpl.elements().iter().map(|e| e.partition()).collect(),
            _ => return,
        };
        {
            let mut held = lock(&self.state.held);
            for p in &revoked {
                held.remove(p);
            }
        }
        tracing::info!(tasks = ?revoked, "source tasks revoked from this worker");
        let deadline = Instant::now() + HANDOVER_WAIT;
        while revoked
            .iter()
            .any(|p| lock(&self.state.running).contains(p))
        {
            if Instant::now() > deadline {
                tracing::warn!(tasks = ?revoked, "revoked source tasks did not stop in time");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if !assigned.is_empty() {
                tracing::info!(tasks = ?assigned, "source tasks assigned to this worker");
            }
            lock(&self.state.held).extend(assigned);
        }
    }
}

/// This worker's membership in its deployment's group.
pub struct Leases {
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Leases {
    /// Joins the group, with `tasks` source tasks in the pipeline file (the tasks topic is
    /// grown to that many partitions).
    pub fn join(cluster: &Cluster, tasks: u32, client_id: &str) -> Result<Leases, ClusterError> {
        let settings = cluster.settings().clone();
        let topic = settings.tasks_topic();
        let partitions = tasks.max(1);
        cluster.ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions,
            config: vec![],
        }])?;
        cluster.grow_topic(&topic, partitions)?;
        let state = Arc::new(State::default());
        let mut c = settings.client_config();
        c.set("group.id", &settings.group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000");
        let consumer: BaseConsumer<LeaseContext> = c
            .create_with_context(LeaseContext {
                state: state.clone(),
            })
            .map_err(|e| ClusterError {
                servers: settings.bootstrap_servers.clone(),
                what: format!("joining group `{}`", settings.group),
                message: e.to_string(),
                retriable: false,
            })?;
        consumer.subscribe(&[&topic]).map_err(|e| ClusterError {
            servers: settings.bootstrap_servers.clone(),
            what: format!("joining group `{}`", settings.group),
            message: e.to_string(),
            retriable: true,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafka-leases".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // The topic has no records: polling serves the group's callbacks.
                        let _ = consumer.poll(Duration::from_millis(100));
                    }
                    // Leaving the group hands the tasks over at once, not after the session.
                    consumer.unsubscribe();
                    let _ = consumer.poll(Duration::from_millis(100));
                })
                .map_err(|e| ClusterError {
                    servers: settings.bootstrap_servers.clone(),
                    what: "starting the group's thread".into(),
                    message: e.to_string(),
                    retriable: false,
                })?
        };
        Ok(Leases {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether this worker holds source task `index` now.
    pub fn holds(&self, index: u32) -> bool {
        lock(&self.state.held).contains(&(index as i32))
    }

    /// Task `index` started or stopped here (a revocation waits for the stop).
    pub fn set_running(&self, index: u32, running: bool) {
        let mut r = lock(&self.state.running);
        if running {
            r.insert(index as i32);
        } else {
            r.remove(&(index as i32));
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
