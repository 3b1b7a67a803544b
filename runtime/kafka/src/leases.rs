//! Which worker runs which source task. Each source connector has a topic
//! `<group>-tasks.<connector>` with one partition per task, and every worker of a
//! deployment joins the consumer group `<group>` subscribed to all such topics (a pattern):
//! the cluster's group coordinator hands the partitions out among the live workers
//! (cooperative-sticky), and a worker runs the tasks whose partitions it holds. A worker
//! that dies loses its partitions when its session times out, and the survivors get them.
//! No coordination code of ours: the assignor is Kafka's.
//!
//! A connector added later (a reload of the file, or over the REST API on any worker)
//! creates its topic; every member sees it at its next metadata refresh (within
//! [`METADATA_REFRESH`]) and the group hands its partitions out, moving nothing else.
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
use crate::settings::KafkaSettings;

/// How long a revocation waits for the revoked tasks to stop.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(20);

/// How often a member looks for new connectors' topics.
pub const METADATA_REFRESH: Duration = Duration::from_secs(3);

/// One source task's lease: a partition of its connector's tasks topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lease {
    pub topic: String,
    pub partition: i32,
}

impl Lease {
    /// Task `task` of source connector `connector` in the deployment `settings` names.
    pub fn of(settings: &KafkaSettings, connector: &str, task: u32) -> Lease {
        Lease {
            topic: tasks_topic(settings, connector),
            partition: task as i32,
        }
    }
}

/// `<group>-tasks.<connector>`: the connector's name as it is when Kafka allows it, or
/// else its allowed characters and a hash of the name (two names never share a topic).
pub fn tasks_topic(settings: &KafkaSettings, connector: &str) -> String {
    let prefix = format!("{}-tasks.", settings.group);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !connector.is_empty()
        && connector.chars().all(allowed)
        && prefix.len() + connector.len() <= 249
    {
        return format!("{prefix}{connector}");
    }
    let kept: String = connector
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(249usize.saturating_sub(prefix.len() + 9).min(40))
        .collect();
    // FNV-1a: stable across builds and machines, unlike the std hasher.
    let hash = connector.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{prefix}{kept}-{hash:08x}")
}

/// The pattern every member subscribes to (librdkafka's `^` prefix: a regex).
fn tasks_pattern(settings: &KafkaSettings) -> String {
    format!("^{}-tasks\\..+", settings.group.replace('.', "\\."))
}

/// Creates the tasks topic of a source connector with `tasks` partitions, or grows it.
pub fn offer(cluster: &Cluster, connector: &str, tasks: u32) -> Result<(), ClusterError> {
    let topic = tasks_topic(cluster.settings(), connector);
    let partitions = tasks.max(1);
    cluster.ensure_topics(&[TopicSpec {
        name: topic.clone(),
        partitions,
        config: vec![],
    }])?;
    cluster.grow_topic(&topic, partitions)
}

#[derive(Default)]
struct State {
    /// Partitions this worker holds.
    held: Mutex<BTreeSet<Lease>>,
    /// Leases whose tasks run here right now.
    running: Mutex<BTreeSet<Lease>>,
}

fn leases_of(tpl: &rdkafka::TopicPartitionList) -> Vec<Lease> {
    tpl.elements()
        .iter()
        .map(|e| Lease {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

struct LeaseContext {
    state: Arc<State>,
}

impl ClientContext for LeaseContext {}

impl ConsumerContext for LeaseContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked = match rebalance {
            Rebalance::Revoke(tpl) => leases_of(tpl),
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
            let assigned = leases_of(tpl);
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
    /// Joins the group (the connectors' tasks topics are [`offer`]ed first).
    pub fn join(cluster: &Cluster, client_id: &str) -> Result<Leases, ClusterError> {
        let settings = cluster.settings().clone();
        let pattern = tasks_pattern(&settings);
        let state = Arc::new(State::default());
        let mut c = settings.client_config();
        c.set("group.id", &settings.group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set(
                "topic.metadata.refresh.interval.ms",
                METADATA_REFRESH.as_millis().to_string(),
            );
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
        consumer.subscribe(&[&pattern]).map_err(|e| ClusterError {
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

    /// Whether this worker holds `lease` now.
    pub fn holds(&self, lease: &Lease) -> bool {
        lock(&self.state.held).contains(lease)
    }

    /// The task of `lease` started or stopped here (a revocation waits for the stop).
    pub fn set_running(&self, lease: &Lease, running: bool) {
        let mut r = lock(&self.state.running);
        if running {
            r.insert(lease.clone());
        } else {
            r.remove(lease);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(group: &str) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: "127.0.0.1:9092".into(),
            security: None,
            group: group.into(),
        }
    }

    #[test]
    fn a_connector_names_its_tasks_topic() {
        let s = settings("sluice-shop");
        assert_eq!(tasks_topic(&s, "orders_in"), "sluice-shop-tasks.orders_in");
        let odd = tasks_topic(&s, "orders in/eu");
        assert!(odd.starts_with("sluice-shop-tasks.orders_in_eu-"), "{odd}");
        assert_ne!(odd, tasks_topic(&s, "orders in eu"));
        let long = tasks_topic(&s, &"x".repeat(300));
        assert!(long.len() <= 249, "{}", long.len());
        assert_eq!(Lease::of(&s, "a", 2).partition, 2);
    }

    #[test]
    fn the_pattern_matches_only_the_deployments_tasks_topics() {
        assert_eq!(tasks_pattern(&settings("a.b")), r"^a\.b-tasks\..+");
    }
}
