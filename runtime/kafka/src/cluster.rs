//! The cluster's topics and the clients the worker's loops use: topics created as the
//! pipeline file declares them, a producer per source task whose deliveries are checked
//! before positions are committed, and a consumer per sink task in the sink's group.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::settings::KafkaSettings;

/// How long an answer from the cluster is waited for before the call counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
#[error("Kafka cluster ({servers}): {what}: {message}")]
pub struct ClusterError {
    pub servers: String,
    pub what: String,
    pub message: String,
    /// Whether trying again can help (a broker away, a leader moving, a timeout).
    pub retriable: bool,
}

impl ClusterError {
    fn new(settings: &KafkaSettings, what: impl Into<String>, e: &KafkaError) -> ClusterError {
        let retriable = match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::Fatal,
            ) => false,
            _ => !matches!(e, KafkaError::ClientCreation(_)),
        };
        ClusterError {
            servers: settings.bootstrap_servers.clone(),
            what: what.into(),
            message: e.to_string(),
            retriable,
        }
    }

    fn other(
        settings: &KafkaSettings,
        what: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ClusterError {
            servers: settings.bootstrap_servers.clone(),
            what: what.into(),
            message: message.into(),
            retriable: true,
        }
    }
}

/// A topic as the pipeline file declares it.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// Kafka topic settings (`retention.ms`, `cleanup.policy`, …).
    pub config: Vec<(String, String)>,
}

/// The cluster of one deployment: its settings and an admin client.
pub struct Cluster {
    settings: KafkaSettings,
    admin: AdminClient<DefaultClientContext>,
}

impl Cluster {
    /// Connects (lazily, as librdkafka does) and checks that the cluster answers, so that a
    /// wrong address or password stops `sluice run` with a message instead of a hang.
    pub fn connect(settings: KafkaSettings) -> Result<Cluster, ClusterError> {
        let admin: AdminClient<DefaultClientContext> = settings
            .client_config()
            .create()
            .map_err(|e| ClusterError::new(&settings, "creating a client", &e))?;
        let cluster = Cluster { settings, admin };
        cluster
            .admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(15))
            .map_err(|e| {
                let mut err = ClusterError::new(&cluster.settings, "reading the cluster's metadata", &e);
                err.message.push_str(" (is `runtime.kafka.bootstrap_servers` right, and are `security` and the credentials the cluster's?)");
                err
            })?;
        Ok(cluster)
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The partitions of `topic`; `None` when the cluster has no such topic.
    pub fn partition_count(&self, topic: &str) -> Result<Option<u32>, ClusterError> {
        let metadata = self
            .admin
            .inner()
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|e| {
                ClusterError::new(&self.settings, format!("describing topic `{topic}`"), &e)
            })?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error() {
            None => Ok(Some(t.partitions().len() as u32)),
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                Ok(None)
            }
            Some(e) => Err(ClusterError::other(
                &self.settings,
                format!("describing topic `{topic}`"),
                RDKafkaErrorCode::from(e).to_string(),
            )),
        }
    }

    /// A client of consumer group `group` that never joins it: for its offsets.
    fn group_client(&self, group: &str) -> Result<BaseConsumer, ClusterError> {
        let mut c = self.settings.client_config();
        c.set("group.id", group).set("enable.auto.commit", "false");
        c.create()
            .map_err(|e| ClusterError::new(&self.settings, "creating a consumer", &e))
    }

    /// The committed next offsets of consumer group `group` on `topics`' partitions (those
    /// with one), read without joining the group.
    pub fn group_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, i32, i64)>, ClusterError> {
        let consumer = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            for p in 0..self.partition_count(topic)?.unwrap_or(0) {
                tpl.add_partition(topic, p as i32);
            }
        }
        let committed = consumer.committed_offsets(tpl, CALL_TIMEOUT).map_err(|e| {
            ClusterError::new(
                &self.settings,
                format!("reading group `{group}`'s offsets"),
                &e,
            )
        })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// How far consumer group `group` is behind on each partition of `topics`: the
    /// partition's end less the group's committed offset (its start when it has none).
    pub fn group_lag(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, i32, i64)>, ClusterError> {
        let committed: HashMap<(String, i32), i64> = self
            .group_offsets(group, topics)?
            .into_iter()
            .map(|(t, p, o)| ((t, p), o))
            .collect();
        let mut lag = Vec::new();
        for topic in topics {
            for p in 0..self.partition_count(topic)?.unwrap_or(0) as i32 {
                let (low, high) = self
                    .admin
                    .inner()
                    .fetch_watermarks(topic, p, CALL_TIMEOUT)
                    .map_err(|e| {
                        ClusterError::new(
                            &self.settings,
                            format!("reading the end of `{topic}`"),
                            &e,
                        )
                    })?;
                let from = committed.get(&(topic.clone(), p)).copied().unwrap_or(low);
                lag.push((topic.clone(), p, (high - from).max(0)));
            }
        }
        Ok(lag)
    }

    /// Sets consumer group `group`'s committed offsets (`None`: the partition's first
    /// record), as `kafka-consumer-groups --reset-offsets` does: only while the group has
    /// no members.
    pub fn set_group_offsets(
        &self,
        group: &str,
        offsets: &[(String, i32, Option<i64>)],
    ) -> Result<(), ClusterError> {
        let consumer = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            let offset = match offset {
                Some(o) => *o,
                None => {
                    consumer
                        .fetch_watermarks(topic, *partition, CALL_TIMEOUT)
                        .map_err(|e| {
                            ClusterError::new(
                                &self.settings,
                                format!("reading where `{topic}` partition {partition} starts"),
                                &e,
                            )
                        })?
                        .0
                }
            };
            tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))
                .map_err(|e| ClusterError::new(&self.settings, "setting offsets", &e))?;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress,
            )) => Err(ClusterError::other(
                &self.settings,
                format!("setting group `{group}`'s offsets"),
                "the group still has members: wait until every worker has stopped the connector"
                    .to_string(),
            )),
            Err(e) => Err(ClusterError::new(
                &self.settings,
                format!("setting group `{group}`'s offsets"),
                &e,
            )),
        }
    }

    /// Creates the topics that do not exist yet (the cluster's default replication factor);
    /// topics that exist are left as they are. Waits until each is visible in metadata.
    pub fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), ClusterError> {
        let mut missing = Vec::new();
        for t in topics {
            if self.partition_count(&t.name)?.is_none() {
                missing.push(t);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                let mut n =
                    NewTopic::new(&t.name, t.partitions as i32, TopicReplication::Fixed(-1));
                for (k, v) in &t.config {
                    n = n.set(k, v);
                }
                n
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
        let results = futures_executor::block_on(self.admin.create_topics(&new, &opts))
            .map_err(|e| ClusterError::new(&self.settings, "creating topics", &e))?;
        for r in results {
            if let Err((name, code)) = r {
                if code != RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(ClusterError {
                        servers: self.settings.bootstrap_servers.clone(),
                        what: format!("creating topic `{name}`"),
                        message: code.to_string(),
                        retriable: false,
                    });
                }
            }
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        for t in missing {
            while self.partition_count(&t.name)?.is_none() {
                if Instant::now() > deadline {
                    return Err(ClusterError::other(
                        &self.settings,
                        format!("creating topic `{}`", t.name),
                        "the topic did not appear in the cluster's metadata",
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Grows `topic` to at least `partitions` (never shrinks it).
    pub fn grow_topic(&self, topic: &str, partitions: u32) -> Result<(), ClusterError> {
        let now = self.partition_count(topic)?.unwrap_or(0);
        if now >= partitions {
            return Ok(());
        }
        let grow = [NewPartitions::new(topic, partitions as usize)];
        let opts = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
        let results = futures_executor::block_on(self.admin.create_partitions(&grow, &opts))
            .map_err(|e| {
                ClusterError::new(&self.settings, format!("growing topic `{topic}`"), &e)
            })?;
        for r in results {
            if let Err((_, code)) = r {
                // A topic created moments ago can show no partitions in the metadata of the
                // broker asked, while it has them: the refusal says so, and a look again
                // settles it.
                if code == RDKafkaErrorCode::InvalidPartitions
                    && self.partitions_reach(topic, partitions)?
                {
                    continue;
                }
                return Err(ClusterError::other(
                    &self.settings,
                    format!("growing topic `{topic}` to {partitions} partitions"),
                    code.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Whether `topic` shows at least `partitions` partitions within a few seconds.
    fn partitions_reach(&self, topic: &str, partitions: u32) -> Result<bool, ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.partition_count(topic)?.unwrap_or(0) >= partitions {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(false)
    }

    /// An idempotent producer (`acks=all`) whose failed deliveries are kept until
    /// [`TaskProducer::flush`] reports them.
    pub fn producer(&self, client_id: &str) -> Result<TaskProducer, ClusterError> {
        self.new_producer(client_id, None)
    }

    /// A transactional producer (KIP-618's pattern for sources): records and the positions
    /// that cover them are committed together. Initializing it fences any earlier producer
    /// with the same `transactional_id` (a zombie task) and aborts what it left open.
    pub fn transactional_producer(
        &self,
        client_id: &str,
        transactional_id: &str,
    ) -> Result<TaskProducer, ClusterError> {
        self.new_producer(client_id, Some(transactional_id))
    }

    fn new_producer(
        &self,
        client_id: &str,
        transactional_id: Option<&str>,
    ) -> Result<TaskProducer, ClusterError> {
        make_producer(&self.settings, client_id, transactional_id)
    }

    /// A consumer in `group` reading `topics` from their earliest records when the group has
    /// no position yet, committed positions only; partitions are handed out by the group's
    /// coordinator (cooperative-sticky: a rebalance moves only what must move).
    pub fn sink_consumer(
        &self,
        group: &str,
        client_id: &str,
        topics: &[String],
    ) -> Result<SinkConsumer, ClusterError> {
        let mut c = self.settings.client_config();
        c.set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        let consumer: BaseConsumer<SinkGroupContext> = c
            .create_with_context(SinkGroupContext::default())
            .map_err(|e| ClusterError::new(&self.settings, "creating a consumer", &e))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| {
            ClusterError::new(
                &self.settings,
                format!("subscribing to {}", names.join(", ")),
                &e,
            )
        })?;
        Ok(SinkConsumer {
            consumer,
            settings: self.settings.clone(),
            group: group.to_string(),
        })
    }
}

/// An idempotent producer (`acks=all`), transactional with `transactional_id` (initialized:
/// any earlier producer with that id is fenced).
pub(crate) fn make_producer(
    settings: &KafkaSettings,
    client_id: &str,
    transactional_id: Option<&str>,
) -> Result<TaskProducer, ClusterError> {
    let mut c = settings.client_config();
    c.set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    if let Some(id) = transactional_id {
        c.set("transactional.id", id);
    }
    let producer: ThreadedProducer<Deliveries> = c
        .create_with_context(Deliveries::default())
        .map_err(|e| ClusterError::new(settings, "creating a producer", &e))?;
    if let Some(id) = transactional_id {
        producer.init_transactions(CALL_TIMEOUT).map_err(|e| {
            ClusterError::new(settings, format!("initializing transactions as `{id}`"), &e)
        })?;
    }
    Ok(TaskProducer {
        producer,
        settings: settings.clone(),
        transactional: transactional_id.is_some(),
        in_transaction: AtomicBool::new(false),
    })
}

/// Failed deliveries of one producer, kept until its next flush.
#[derive(Default)]
pub struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if failed.is_none() {
                *failed = Some(format!("to {}-{}: {e}", m.topic(), m.partition()));
            }
        }
    }
}

/// One record for [`TaskProducer::send`].
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// `None`: the producer's partitioner decides (by key).
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// A source task's producer.
pub struct TaskProducer {
    producer: ThreadedProducer<Deliveries>,
    settings: KafkaSettings,
    transactional: bool,
    in_transaction: AtomicBool,
}

impl TaskProducer {
    /// Queues a record; waits while librdkafka's queue is full. Whether it arrived is known
    /// at the next [`TaskProducer::flush`].
    pub fn send(&self, r: &Outgoing<'_>) -> Result<(), ClusterError> {
        if self.transactional && !self.in_transaction.swap(true, Ordering::AcqRel) {
            self.producer
                .begin_transaction()
                .map_err(|e| ClusterError::new(&self.settings, "beginning a transaction", &e))?;
        }
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in r.headers {
            headers = headers.insert(Header { key: k, value: *v });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(r.topic)
            .timestamp(r.timestamp)
            .headers(headers);
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < CALL_TIMEOUT =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(ClusterError::new(
                        &self.settings,
                        format!("producing to `{}`", r.topic),
                        &e,
                    ))
                }
            }
        }
    }

    /// Whether records are sent in transactions ([`TaskProducer::commit_transaction`]).
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Commits what was sent since the last commit, all of it or nothing (a failure leaves
    /// the transaction to be aborted: the producer must not be used again).
    pub fn commit_transaction(&self) -> Result<(), ClusterError> {
        if !self.in_transaction.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.producer
            .commit_transaction(CALL_TIMEOUT)
            .map_err(|e| ClusterError::new(&self.settings, "committing a transaction", &e))
    }

    /// Waits until every queued record is acknowledged by all in-sync replicas; the first
    /// failed delivery since the last flush is an error (its records may or may not be in
    /// the topic: positions must not be committed past them).
    pub fn flush(&self) -> Result<(), ClusterError> {
        self.producer
            .flush(CALL_TIMEOUT)
            .map_err(|e| ClusterError::new(&self.settings, "waiting for acknowledgements", &e))?;
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            None => Ok(()),
            Some(m) => Err(ClusterError::other(&self.settings, "delivering records", m)),
        }
    }
}

/// A record read from the cluster.
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A sink consumer's side of its group's rebalances. A revocation is not carried out in
/// the callback: the partitions stay assigned (the group waits) until the task has
/// flushed, committed and closed them and calls [`SinkConsumer::release`]; so their next
/// holder starts after everything the task made durable, and commits with the current
/// generation still count.
#[derive(Default)]
struct SinkGroupContext {
    revoked: Mutex<Vec<(String, i32)>>,
    /// Set when the consumer is dropped: revocations are then carried out at once.
    closing: std::sync::atomic::AtomicBool,
}

impl ClientContext for SinkGroupContext {}

impl ConsumerContext for SinkGroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if let Err(e) = consumer.incremental_assign(tpl) {
                tracing::warn!(error = %e, "taking partitions the group assigned");
            }
            return;
        }
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = consumer.incremental_unassign(tpl);
            return;
        }
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.extend(
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition())),
        );
    }
}

/// A sink task's consumer in its group.
pub struct SinkConsumer {
    consumer: BaseConsumer<SinkGroupContext>,
    settings: KafkaSettings,
    group: String,
}

impl Drop for SinkConsumer {
    fn drop(&mut self) {
        self.consumer
            .context()
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl SinkConsumer {
    /// Partitions the group is taking away, waiting for [`SinkConsumer::release`].
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Hands revoked partitions back to the group (after they were committed and closed).
    pub fn release(&self, partitions: &[(String, i32)]) -> Result<(), ClusterError> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        self.consumer.incremental_unassign(&tpl).map_err(|e| {
            ClusterError::new(&self.settings, "handing partitions back to the group", &e)
        })
    }

    /// Records that arrived, up to about `max_bytes`, waiting at most `wait` for the first.
    /// Rebalances happen inside this call; see [`SinkConsumer::assignment`].
    pub fn read(&self, max_bytes: usize, wait: Duration) -> Result<Vec<Incoming>, ClusterError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut timeout = wait;
        while bytes < max_bytes {
            let Some(polled) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let m = match polled {
                Ok(m) => m,
                Err(e) => {
                    let err = ClusterError::new(&self.settings, "reading", &e);
                    if err.retriable {
                        tracing::warn!(group = %self.group, error = %err, "reading from the cluster");
                        continue;
                    }
                    return Err(err);
                }
            };
            let key = m.key().map(<[u8]>::to_vec);
            let value = m.payload().map(<[u8]>::to_vec);
            bytes += key.as_ref().map_or(0, Vec::len) + value.as_ref().map_or(0, Vec::len) + 64;
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Incoming {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(0),
                key,
                value,
                headers,
            });
        }
        Ok(out)
    }

    /// The partitions the group's coordinator gave this consumer.
    pub fn assignment(&self) -> Result<BTreeSet<(String, i32)>, ClusterError> {
        let tpl = self
            .consumer
            .assignment()
            .map_err(|e| ClusterError::new(&self.settings, "reading the assignment", &e))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect())
    }

    /// Commits next offsets to read, per partition, in the group (synchronously).
    pub fn commit(&self, positions: &HashMap<(String, i32), i64>) -> Result<(), ClusterError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(positions.len());
        for ((topic, partition), next) in positions {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| ClusterError::new(&self.settings, "committing", &e))?;
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => Ok(()),
            // The group moved the partitions meanwhile: their next holder starts from the
            // last commit (what was delivered since may be delivered again: at least once).
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::IllegalGeneration
                            | RDKafkaErrorCode::UnknownMemberId
                            | RDKafkaErrorCode::RebalanceInProgress
                    )
                ) =>
            {
                tracing::warn!(group = %self.group, error = %e, "a commit lost to a rebalance");
                Ok(())
            }
            Err(e) => Err(ClusterError::new(
                &self.settings,
                format!("committing in group `{}`", self.group),
                &e,
            )),
        }
    }

    /// The group's committed next offset of a partition, if any.
    pub fn committed(&self, topic: &str, partition: i32) -> Result<Option<i64>, ClusterError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let c = self
            .consumer
            .committed_offsets(tpl, CALL_TIMEOUT)
            .map_err(|e| ClusterError::new(&self.settings, "reading committed offsets", &e))?;
        Ok(c.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
    }
}
