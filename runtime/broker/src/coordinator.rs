//! The group coordinator for Kafka's classic consumer-group protocol.
//!
//! The broker is only a rendezvous: members join with the assignors they support, the
//! coordinator picks a protocol every member supports and a leader, the leader computes the
//! assignment with the client's own assignor and hands it back in SyncGroup, and the
//! coordinator passes each member its share. Heartbeats tell members when to rejoin;
//! members that stop heartbeating are expired after their session timeout.
//!
//! ```text
//!   Empty ──join──▶ PreparingRebalance ──all joined / deadline──▶ CompletingRebalance
//!     ▲                   ▲    ▲                                        │ leader's SyncGroup
//!     └── last member ────┘    └──── join, leave, expiry ◀── Stable ◀───┘
//! ```
//!
//! Each time a group settles (Stable) or empties, a snapshot of its membership (generation,
//! protocol, leader, members and their assignments) is written to the log's
//! `__consumer_offsets` by a background thread, and groups are rebuilt from it on start: after
//! a broker restart, members keep heartbeating in their generation without a rebalance.
//! Committed offsets are stored there too, synchronously, by OffsetCommit.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_log::Log;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::codes;

const EXPIRY_TICK: Duration = Duration::from_millis(200);
const PENDING_MEMBER_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a member sends when it joins.
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without a member id gets MEMBER_ID_REQUIRED and an id.
    pub require_member_id: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberInfo>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    initial_hold: Option<InitialHold>,
    /// Changed in a way worth persisting since the last snapshot.
    dirty: bool,
}

/// Consumers started together should share the first assignment: without a wait, the first
/// to join gets every partition, and a rebalance moments later hands half of them to the
/// second, which re-reads what the first had not committed. Kafka delays the first
/// rebalance of an empty group by `group.initial.rebalance.delay.ms`, again by as much each
/// time a new member joins meanwhile, never past the longest rebalance timeout.
#[derive(Debug, Clone, Copy)]
struct InitialHold {
    until: Instant,
    limit: Instant,
}

/// A group as stored in the log.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredGroup {
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: Vec<StoredMember>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMember {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
}

impl Group {
    fn snapshot(&self) -> Option<Vec<u8>> {
        if self.state != GroupState::Stable && self.state != GroupState::Empty {
            return None;
        }
        let stored = StoredGroup {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), b.to_vec()))
                        .collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        };
        serde_json::to_vec(&stored).ok()
    }

    fn restore(bytes: &[u8]) -> Option<Group> {
        let stored: StoredGroup = serde_json::from_slice(bytes).ok()?;
        let mut g = Group::new();
        g.generation = stored.generation;
        g.protocol_type = stored.protocol_type;
        g.protocol = stored.protocol;
        g.leader = stored.leader;
        let now = Instant::now();
        for m in stored.members {
            g.members.insert(
                m.id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocols: m
                        .protocols
                        .into_iter()
                        .map(|(n, b)| (n, Bytes::from(b)))
                        .collect(),
                    assignment: Bytes::from(m.assignment),
                    // Sessions restart with the broker: members have their full timeout to return.
                    last_seen: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        Some(g)
    }

    fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_hold: None,
            dirty: false,
        }
    }

    fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
    }

    /// FENCED_INSTANCE_ID when a static member's id does not match the one registered.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        match instance.and_then(|i| self.static_member(i)) {
            Some(registered) => registered != member_id,
            None => false,
        }
    }

    fn prepare_rebalance(&mut self) {
        if self.state != GroupState::PreparingRebalance {
            tracing::debug!(generation = self.generation, "group rebalancing");
        }
        self.state = GroupState::PreparingRebalance;
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.rebalance_deadline
            .get_or_insert(Instant::now() + longest);
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync_waiter.take() {
                let _ = tx.send(SyncOutcome {
                    error: codes::REBALANCE_IN_PROGRESS,
                    ..Default::default()
                });
            }
        }
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase: drops members that did not rejoin, picks protocol and leader,
    /// answers every parked JoinGroup.
    fn complete_join(&mut self) {
        self.rebalance_deadline = None;
        self.initial_hold = None;
        self.members.retain(|id, m| {
            let keep = m.join_waiter.is_some();
            if !keep {
                tracing::info!(member = %id, "member did not rejoin in time: removed from group");
            }
            keep
        });
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.dirty = true;
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        let protocol = self.members[&leader]
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
        self.protocol = protocol.clone();
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        let everyone: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == protocol.as_ref())
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), meta)
            })
            .collect();
        tracing::info!(generation = self.generation, members = everyone.len(), leader = %leader, protocol = ?protocol, "group rebalanced");
        let now = Instant::now();
        for (id, m) in self.members.iter_mut() {
            m.last_seen = now;
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinOutcome {
                    error: codes::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    fn remove_member(&mut self, id: &str) -> bool {
        let Some(mut m) = self.members.remove(id) else {
            return false;
        };
        if let Some(tx) = m.join_waiter.take() {
            let _ = tx.send(JoinOutcome {
                error: codes::UNKNOWN_MEMBER_ID,
                member_id: id.to_string(),
                ..Default::default()
            });
        }
        if let Some(tx) = m.sync_waiter.take() {
            let _ = tx.send(SyncOutcome {
                error: codes::UNKNOWN_MEMBER_ID,
                ..Default::default()
            });
        }
        if self.members.is_empty() {
            self.generation += 1;
            self.state = GroupState::Empty;
            self.leader = None;
            self.protocol = None;
            self.rebalance_deadline = None;
            self.initial_hold = None;
            self.dirty = true;
        } else {
            self.prepare_rebalance();
            if self.all_joined() && self.initial_hold.is_none() {
                self.complete_join();
            }
        }
        true
    }
}

pub struct Coordinator {
    log: Log,
    groups: Mutex<HashMap<String, Group>>,
    min_session: Duration,
    max_session: Duration,
    initial_rebalance_delay: Duration,
    next_member: AtomicU64,
    persister: Arc<Persister>,
}

/// Stores one group's snapshot (`None`: forget the group). The log's
/// `store_group_metadata` in the broker; tests pass a slow or crashing one.
type GroupWriter = dyn Fn(&str, Option<&[u8]>) -> Result<(), sluice_log::LogError> + Send + Sync;

/// Snapshots waiting to be written, latest per group; a background thread writes them so that
/// no request waits for the disk while holding the coordinator's lock.
///
/// Write order is explicit: every write goes through [`Persister::write_pending`], which
/// takes the queue and writes it while holding `writing`. So a batch taken earlier (an older
/// snapshot of a group) is always written before a batch taken later, whichever of the
/// background thread and shutdown's `persist_now` takes it, and the last write of a group
/// is always its latest snapshot.
struct Persister {
    pending: Mutex<HashMap<String, Option<Vec<u8>>>>,
    wake: Condvar,
    writing: Mutex<()>,
    write: Box<GroupWriter>,
}

impl Persister {
    fn new(write: Box<GroupWriter>) -> Persister {
        Persister {
            pending: Mutex::new(HashMap::new()),
            wake: Condvar::new(),
            writing: Mutex::new(()),
            write,
        }
    }

    /// A persister that stores nothing (a read-only log).
    fn none() -> Arc<Persister> {
        Arc::new(Persister::new(Box::new(|_, _| Ok(()))))
    }

    fn spawn(write: Box<GroupWriter>) -> Arc<Persister> {
        let persister = Arc::new(Persister::new(write));
        let weak: Weak<Persister> = Arc::downgrade(&persister);
        let spawned = std::thread::Builder::new()
            .name("sluice-groups".into())
            .spawn(move || loop {
                let Some(p) = weak.upgrade() else { return };
                {
                    let guard = p.pending.lock().unwrap_or_else(|e| e.into_inner());
                    if guard.is_empty() {
                        let _ = p.wake.wait_timeout(guard, Duration::from_millis(200));
                    }
                }
                p.write_pending();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the group persister: membership will not survive restarts");
        }
        persister
    }

    fn push(&self, group: &str, snapshot: Option<Vec<u8>>) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_string(), snapshot);
        self.wake.notify_one();
    }

    /// Writes everything queued, one writer at a time (see the type's docs).
    fn write_pending(&self) {
        let _one_writer = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (group, snapshot) in batch {
            if let Err(e) = (self.write)(&group, snapshot.as_deref()) {
                tracing::error!(group = %group, error = %e, "could not persist group membership");
            }
        }
    }
}

fn join_error(error: i16, member_id: &str) -> JoinOutcome {
    JoinOutcome {
        error,
        member_id: member_id.to_string(),
        generation: -1,
        ..Default::default()
    }
}

impl Coordinator {
    pub fn new(
        log: Log,
        min_session: Duration,
        max_session: Duration,
        initial_rebalance_delay: Duration,
    ) -> Self {
        let mut groups = HashMap::new();
        for (id, bytes) in log.group_metadata() {
            match Group::restore(&bytes) {
                Some(g) if !g.members.is_empty() => {
                    tracing::info!(group = %id, generation = g.generation, members = g.members.len(), "restored group");
                    groups.insert(id, g);
                }
                Some(_) => {}
                None => {
                    tracing::warn!(group = %id, "stored group membership is unreadable: members will rejoin")
                }
            }
        }
        let persister = if log.is_read_only() {
            Persister::none()
        } else {
            let writer = log.clone();
            Persister::spawn(Box::new(move |group, snapshot| {
                writer.store_group_metadata(group, snapshot)
            }))
        };
        Coordinator {
            log,
            groups: Mutex::new(groups),
            min_session,
            max_session,
            initial_rebalance_delay,
            next_member: AtomicU64::new(0),
            persister,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes every queued snapshot now, after any write in progress (shutdown: nothing the
    /// persister holds is lost, and nothing older is written after it).
    pub fn persist_now(&self) {
        self.persister.write_pending();
    }

    /// Queues snapshots of groups that changed (called with the lock held; writes happen later).
    fn persist_dirty(&self, groups: &mut HashMap<String, Group>) {
        for (id, g) in groups.iter_mut().filter(|(_, g)| g.dirty) {
            g.dirty = false;
            if let Some(snapshot) = g.snapshot() {
                self.persister.push(id, Some(snapshot));
            }
        }
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.fetch_add(1, Ordering::AcqRel);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let client = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!("{client}-{:016x}{:04x}", nanos as u64, n & 0xffff)
    }

    pub async fn join(&self, req: JoinRequest) -> JoinOutcome {
        if req.group_id.is_empty() {
            return join_error(codes::INVALID_GROUP_ID, &req.member_id);
        }
        if req.session_timeout < self.min_session || req.session_timeout > self.max_session {
            return join_error(codes::INVALID_SESSION_TIMEOUT, &req.member_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return join_error(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
        }
        let (tx, rx) = oneshot::channel();
        let member_id;
        {
            let mut groups = self.lock();
            let g = groups
                .entry(req.group_id.clone())
                .or_insert_with(Group::new);
            if !g.members.is_empty() {
                let same_type = g.protocol_type.as_deref() == Some(req.protocol_type.as_str());
                let common = req.protocols.iter().any(|(name, _)| {
                    g.members
                        .iter()
                        .filter(|(id, _)| **id != req.member_id)
                        .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
                });
                if !same_type || !common {
                    return join_error(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
                }
            }
            member_id = if req.member_id.is_empty() {
                let id = self.new_member_id(&req.client_id);
                if let Some(old) = req.instance_id.as_deref().and_then(|i| g.static_member(i)) {
                    // A static member restarted: its new id replaces (fences) the old one.
                    if let Some(mut m) = g.members.remove(&old) {
                        if let Some(t) = m.join_waiter.take() {
                            let _ = t.send(join_error(codes::FENCED_INSTANCE_ID, &old));
                        }
                        if let Some(t) = m.sync_waiter.take() {
                            let _ = t.send(SyncOutcome {
                                error: codes::FENCED_INSTANCE_ID,
                                ..Default::default()
                            });
                        }
                        if g.leader.as_deref() == Some(old.as_str()) {
                            g.leader = Some(id.clone());
                        }
                    }
                } else if req.require_member_id {
                    g.pending.insert(id.clone(), Instant::now());
                    return JoinOutcome {
                        error: codes::MEMBER_ID_REQUIRED,
                        member_id: id,
                        generation: -1,
                        ..Default::default()
                    };
                }
                id
            } else if g.members.contains_key(&req.member_id)
                || g.pending.remove(&req.member_id).is_some()
            {
                if g.fenced(&req.member_id, req.instance_id.as_deref()) {
                    return join_error(codes::FENCED_INSTANCE_ID, &req.member_id);
                }
                req.member_id.clone()
            } else {
                return join_error(codes::UNKNOWN_MEMBER_ID, &req.member_id);
            };
            g.protocol_type = Some(req.protocol_type.clone());
            let now = Instant::now();
            let delay = self.initial_rebalance_delay;
            if g.state == GroupState::Empty && g.members.is_empty() && !delay.is_zero() {
                g.initial_hold = Some(InitialHold {
                    until: now + delay,
                    limit: now + delay.max(req.rebalance_timeout),
                });
            } else if let Some(hold) = g.initial_hold.as_mut() {
                if !g.members.contains_key(&member_id) {
                    hold.until = (now + delay).min(hold.limit);
                }
            }
            let member = g
                .members
                .entry(member_id.clone())
                .or_insert_with(|| Member {
                    instance_id: req.instance_id.clone(),
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                    session_timeout: req.session_timeout,
                    rebalance_timeout: req.rebalance_timeout,
                    protocols: Vec::new(),
                    assignment: Bytes::new(),
                    last_seen: Instant::now(),
                    join_waiter: None,
                    sync_waiter: None,
                });
            member.protocols = req.protocols;
            member.session_timeout = req.session_timeout;
            member.rebalance_timeout = req.rebalance_timeout;
            member.last_seen = Instant::now();
            if let Some(old) = member.join_waiter.replace(tx) {
                let _ = old.send(join_error(codes::UNKNOWN_MEMBER_ID, &member_id));
            }
            g.prepare_rebalance();
            if g.all_joined() && g.initial_hold.is_none() {
                g.complete_join();
            }
            self.persist_dirty(&mut groups);
        }
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => join_error(codes::UNKNOWN_MEMBER_ID, &member_id),
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let error = |error| SyncOutcome {
            error,
            ..Default::default()
        };
        let rx = {
            let mut groups = self.lock();
            let Some(g) = groups.get_mut(group_id) else {
                return error(codes::UNKNOWN_MEMBER_ID);
            };
            if g.fenced(member_id, instance_id) {
                return error(codes::FENCED_INSTANCE_ID);
            }
            if !g.members.contains_key(member_id) {
                return error(codes::UNKNOWN_MEMBER_ID);
            }
            if generation != g.generation {
                return error(codes::ILLEGAL_GENERATION);
            }
            let (ptype, proto) = (g.protocol_type.clone(), g.protocol.clone());
            let done = |assignment: Bytes| SyncOutcome {
                error: codes::NONE,
                protocol_type: ptype.clone(),
                protocol: proto.clone(),
                assignment,
            };
            match g.state {
                GroupState::Empty | GroupState::PreparingRebalance => {
                    return error(codes::REBALANCE_IN_PROGRESS)
                }
                GroupState::Stable => return done(g.members[member_id].assignment.clone()),
                GroupState::CompletingRebalance => {}
            }
            if g.leader.as_deref() == Some(member_id) {
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = given.remove(id).unwrap_or_default();
                    m.last_seen = Instant::now();
                }
                g.state = GroupState::Stable;
                g.dirty = true;
                for m in g.members.values_mut() {
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(done(m.assignment.clone()));
                    }
                }
                let mine = done(g.members[member_id].assignment.clone());
                self.persist_dirty(&mut groups);
                return mine;
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(member_id) {
                m.sync_waiter = Some(tx);
                m.last_seen = Instant::now();
            }
            rx
        };
        rx.await
            .unwrap_or_else(|_| error(codes::REBALANCE_IN_PROGRESS))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        if g.fenced(member_id, instance_id) {
            return codes::FENCED_INSTANCE_ID;
        }
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        m.last_seen = Instant::now();
        match state {
            GroupState::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
            _ if generation != current => codes::ILLEGAL_GENERATION,
            _ => codes::NONE,
        }
    }

    /// Removes members; returns an error code per `(member id, instance id)`.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return vec![codes::UNKNOWN_MEMBER_ID; members.len()];
        };
        let errors = members
            .iter()
            .map(|(id, instance)| {
                let id = match (id.is_empty(), instance) {
                    (true, Some(i)) => g.static_member(i).unwrap_or_default(),
                    _ => id.clone(),
                };
                if g.fenced(&id, instance.as_deref()) {
                    codes::FENCED_INSTANCE_ID
                } else if g.remove_member(&id) {
                    tracing::info!(group = group_id, member = %id, "member left the group");
                    codes::NONE
                } else {
                    codes::UNKNOWN_MEMBER_ID
                }
            })
            .collect();
        self.persist_dirty(&mut groups);
        errors
    }

    /// May this member commit offsets now? Commits outside a group (generation -1, no member
    /// id) are always allowed, as for Kafka's simple consumers.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if group_id.is_empty() {
            return codes::INVALID_GROUP_ID;
        }
        if generation < 0 && member_id.is_empty() {
            return codes::NONE;
        }
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        if g.fenced(member_id, instance_id) {
            return codes::FENCED_INSTANCE_ID;
        }
        if !g.members.contains_key(member_id) {
            return codes::UNKNOWN_MEMBER_ID;
        }
        if generation != g.generation {
            return codes::ILLEGAL_GENERATION;
        }
        if g.state == GroupState::PreparingRebalance {
            return codes::REBALANCE_IN_PROGRESS;
        }
        codes::NONE
    }

    /// Every group known to the coordinator or with committed offsets: `(id, state, protocol type)`.
    pub fn list(&self) -> Vec<(String, GroupState, String)> {
        let groups = self.lock();
        let mut out: Vec<(String, GroupState, String)> = groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.state,
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .collect();
        for id in self.log.groups() {
            if !groups.contains_key(&id) {
                out.push((id, GroupState::Empty, "consumer".to_string()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupInfo> {
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return (!self.log.group_offsets(group_id).is_empty()).then(|| GroupInfo {
                state: GroupState::Empty,
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let members = g
            .members
            .iter()
            .map(|(id, m)| MemberInfo {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == g.protocol.as_ref())
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some(GroupInfo {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            members,
        })
    }

    /// DeleteGroups: forgets a group with no members, its stored membership and committed
    /// offsets. A group with members is refused (NON_EMPTY_GROUP), an unknown one is
    /// GROUP_ID_NOT_FOUND. Blocking: the offsets' tombstones are written before it returns.
    pub fn delete(&self, group_id: &str) -> Result<(), i16> {
        {
            let mut groups = self.lock();
            match groups.get(group_id) {
                Some(g) if !g.members.is_empty() => return Err(codes::NON_EMPTY_GROUP),
                None if self.log.group_offsets(group_id).is_empty() => {
                    return Err(codes::GROUP_ID_NOT_FOUND)
                }
                _ => {}
            }
            groups.remove(group_id);
            self.persister.push(group_id, None);
        }
        self.log.delete_group(group_id).map_err(|e| {
            tracing::error!(group = group_id, error = %e, "deleting the group's offsets failed");
            codes::from_log_error(&e)
        })
    }

    /// Expires members whose session ran out and ends join phases whose deadline passed.
    pub fn expire(&self, now: Instant) {
        let mut groups = self.lock();
        for (group_id, g) in groups.iter_mut() {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group_id, member = %id, "member session expired");
                g.remove_member(&id);
            }
            if g.initial_hold.is_some_and(|h| now >= h.until) {
                g.initial_hold = None;
            }
            if g.state == GroupState::PreparingRebalance && g.initial_hold.is_none() {
                let deadline_passed = g.rebalance_deadline.map(|d| now >= d).unwrap_or(true);
                if g.all_joined() || deadline_passed {
                    g.complete_join();
                }
            }
            g.pending
                .retain(|_, issued| now.duration_since(*issued) < PENDING_MEMBER_TTL);
        }
        self.persist_dirty(&mut groups);
        groups.retain(|_, g| {
            !(g.state == GroupState::Empty && g.members.is_empty() && g.pending.is_empty())
        });
    }

    /// Runs [`Coordinator::expire`] until cancelled.
    pub async fn run_expiry(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.expire(Instant::now()),
            }
        }
    }
}

#[cfg(test)]
mod persist_order_tests {
    use super::*;
    use sluice_log::sim::{SimStorage, TornWrites};
    use sluice_log::LogOptions;
    use std::sync::mpsc;

    fn options() -> LogOptions {
        LogOptions {
            read_only: false,
            maintenance_interval: None,
        }
    }

    /// The background thread takes an older snapshot and is slow to write it (a slow disk)
    /// while shutdown's `persist_now` writes a newer one. After a crash following each write,
    /// the stored group must never go back to an older snapshot, and must end at the newest.
    #[test]
    fn group_state_is_written_in_order_across_the_thread_and_persist_now() {
        let sim = SimStorage::new();
        let log = Log::open_on(Arc::new(sim.clone()), "/data", options()).unwrap();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let started_tx = Mutex::new(started_tx);
        let seen_after_crash: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let seen = seen_after_crash.clone();
        let writer_log = log.clone();
        let crash_sim = sim.clone();
        let persister = Persister::spawn(Box::new(move |group, snapshot| {
            if snapshot == Some(b"generation-1".as_slice()) {
                let _ = started_tx.lock().unwrap().send(());
                // The disk is slow for this write: a newer snapshot is queued meanwhile.
                std::thread::sleep(Duration::from_millis(300));
            }
            writer_log.store_group_metadata(group, snapshot)?;
            // A crash right after this write: what would a restart find?
            let image = crash_sim.crash_image(TornWrites::LoseUnsynced);
            let restarted = Log::open_on(Arc::new(image), "/data", options()).unwrap();
            let stored = restarted
                .group_metadata()
                .into_iter()
                .find(|(g, _)| g == "g")
                .map(|(_, m)| m)
                .unwrap_or_default();
            seen.lock().unwrap().push(stored);
            Ok(())
        }));
        persister.push("g", Some(b"generation-1".to_vec()));
        started_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the background thread took the first snapshot");
        persister.push("g", Some(b"generation-2".to_vec()));
        persister.write_pending(); // what shutdown's persist_now does
        let seen = seen_after_crash.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![b"generation-1".to_vec(), b"generation-2".to_vec()],
            "each crash point restores a snapshot no older than the one before"
        );
        let final_state = log.group_metadata();
        assert_eq!(
            final_state,
            vec![("g".to_string(), b"generation-2".to_vec())]
        );
    }
}

#[cfg(test)]
#[path = "coordinator_initial_delay_tests.rs"]
mod initial_delay_tests;
