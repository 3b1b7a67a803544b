//! The log as a whole: a data directory of topics, each of N partitions.
//!
//! ```text
//! <data-dir>/
//!   .lock                     flock held by the one writing process (holds its pid)
//!   .clean_shutdown           present only between a clean close and the next open
//!   topics/<topic>/topic.json name, id, partition count, config overrides
//!   topics/<topic>/<p>/       segments of partition p: <base>.log .index .timeindex
//! ```
//! Creating a topic builds it under a hidden name and renames it into place; deleting renames
//! it away first: a crash never leaves half a topic visible.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::error::{LogError, Result};
use crate::groups::GroupState;
use crate::partition::{lock, Fence, MaintenanceReport, OpenOptions, Partition};
use crate::segment;
use crate::storage::{FsStorage, Storage};

pub(crate) const TOPICS_DIR: &str = "topics";
const CLEAN_MARKER: &str = ".clean_shutdown";
pub(crate) const MAX_PARTITIONS: u32 = 100_000;
/// How often the background thread checks `flush.ms` deadlines.
const FLUSH_TICK: Duration = Duration::from_millis(5);

/// Milliseconds since the Unix epoch, the unit of Kafka timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 249 {
        return bad(&format!(
            "it is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not allowed");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "character {c:?} is not allowed; use ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// How to open a log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Read-only opens take no lock, change nothing on disk, and see new data via `refresh`.
    pub read_only: bool,
    /// Run retention and compaction in the background this often (`None`: only when
    /// [`Log::maintain`] is called). Kafka's `log.retention.check.interval.ms` is 5 minutes.
    pub maintenance_interval: Option<Duration>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            read_only: false,
            maintenance_interval: Some(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TopicFile {
    pub(crate) name: String,
    pub(crate) topic_id: String,
    pub(crate) partitions: u32,
    pub(crate) created_ms: i64,
    pub(crate) config: BTreeMap<String, String>,
}

/// What [`Log::maintain`] did across the log, and the partitions it had to skip.
#[derive(Debug, Default)]
pub struct LogMaintenance {
    pub totals: MaintenanceReport,
    pub failed: Vec<MaintenanceFailure>,
}

/// A partition that retention or compaction could not handle this time.
#[derive(Debug)]
pub struct MaintenanceFailure {
    pub topic: String,
    pub partition: u32,
    pub error: LogError,
}

/// A topic and its open partitions.
pub struct Topic {
    pub name: String,
    /// Kafka topic id (UUID bytes), stable for the topic's life.
    pub id: [u8; 16],
    pub created_ms: i64,
    pub config: Arc<TopicConfig>,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }

    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub(crate) struct LogInner {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub read_only: bool,
    pub topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion.
    pub(crate) admin: Mutex<()>,
    pub groups: GroupState,
    closed: AtomicBool,
    _lock_file: Option<File>,
    /// Every fsync of a file or directory, timed (see [`Log::register_metrics`]).
    fsync_seconds: prometheus_client::metrics::histogram::Histogram,
}

/// A handle to an open log; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Log {
    pub(crate) inner: Arc<LogInner>,
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut id);
    }
    if id == [0u8; 16] {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        id = nanos.to_be_bytes();
    }
    id[6] = (id[6] & 0x0f) | 0x40; // UUID version 4
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

fn parse_hex_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(id)
}

fn take_dir_lock(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        // The holder writes its pid just after taking the lock: give it a moment.
        let mut holder = None;
        for _ in 0..20 {
            holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if holder.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        return Err(LogError::DataDirLocked {
            dir: dir.to_path_buf(),
            holder,
        });
    }
    let _ = f.set_len(0);
    let _ = write!(f, "{}", std::process::id());
    Ok(f)
}

impl Log {
    /// Opens (creating if needed) the log in `dir` on the real file system, for writing.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        if options.read_only {
            if !dir.is_dir() {
                return Err(LogError::NoDataDir(dir));
            }
            return Self::open_with(Arc::new(FsStorage), dir, options, None);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let lock_file = take_dir_lock(&dir)?;
        Self::open_with(Arc::new(FsStorage), dir, options, Some(lock_file))
    }

    /// Opens the log on any storage (tests use [`crate::sim::SimStorage`]); takes no lock.
    pub fn open_on(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<Log> {
        Self::open_with(storage, dir.as_ref().to_path_buf(), options, None)
    }

    fn open_with(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        options: LogOptions,
        lock_file: Option<File>,
    ) -> Result<Log> {
        let fsync_seconds = prometheus_client::metrics::histogram::Histogram::new(
            // 50 µs (a page-cache-only device) to ~1.6 s (a disk under pressure).
            prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16),
        );
        let storage: Arc<dyn Storage> =
            Arc::new(crate::storage::Timed::new(storage, fsync_seconds.clone()));
        let read_only = options.read_only;
        let topics_dir = dir.join(TOPICS_DIR);
        let marker = dir.join(CLEAN_MARKER);
        let clean_shutdown = storage.exists(&marker);
        if !read_only {
            storage
                .create_dir_all(&topics_dir)
                .map_err(|e| LogError::io(format!("creating {}", topics_dir.display()), e))?;
            if clean_shutdown {
                storage
                    .remove_file(&marker)
                    .map_err(|e| LogError::io(format!("removing {}", marker.display()), e))?;
                storage
                    .sync_dir(&dir)
                    .map_err(|e| LogError::io(format!("syncing {}", dir.display()), e))?;
            } else {
                tracing::info!(dir = %dir.display(), "no clean-shutdown marker: validating the tail of every partition");
            }
        }
        let started = Instant::now();
        let mut topics = BTreeMap::new();
        let names = if storage.is_dir(&topics_dir) {
            storage
                .list_dir(&topics_dir)
                .map_err(|e| LogError::io(format!("listing {}", topics_dir.display()), e))?
        } else {
            Vec::new()
        };
        for name in names {
            let path = topics_dir.join(&name);
            if name.starts_with('.') {
                // A topic creation or deletion that a crash interrupted.
                if !read_only {
                    tracing::info!(path = %path.display(), "removing an interrupted topic creation or deletion");
                    let _ = storage.remove_dir_all(&path);
                }
                continue;
            }
            let topic = Self::load_topic(&storage, &path, read_only, clean_shutdown)?;
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        tracing::debug!(
            topics = topics.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log opened"
        );
        let inner = Arc::new(LogInner {
            dir,
            storage,
            read_only,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            groups: GroupState::default(),
            closed: AtomicBool::new(false),
            _lock_file: lock_file,
            fsync_seconds,
        });
        let log = Log { inner };
        log.load_group_offsets()?;
        if !read_only {
            spawn_background(Arc::downgrade(&log.inner), options.maintenance_interval);
        }
        Ok(log)
    }

    fn load_topic(
        storage: &Arc<dyn Storage>,
        path: &Path,
        read_only: bool,
        clean: bool,
    ) -> Result<Topic> {
        let meta_path = path.join("topic.json");
        let corrupt = |detail: String| LogError::Corrupt {
            path: meta_path.clone(),
            detail,
        };
        let bytes = storage
            .read_file(&meta_path)
            .map_err(|e| LogError::io(format!("reading {}", meta_path.display()), e))?;
        let file: TopicFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let config =
            TopicConfig::from_pairs(file.config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| corrupt(e.to_string()))?;
        let id = parse_hex_id(&file.topic_id)
            .ok_or_else(|| corrupt("topic_id is not 32 hex digits".into()))?;
        let config = Arc::new(config);
        let mut partitions = Vec::with_capacity(file.partitions as usize);
        for p in 0..file.partitions {
            let opts = OpenOptions {
                read_only,
                clean_shutdown: clean,
            };
            let part = Partition::open(
                storage.clone(),
                path.join(p.to_string()),
                &file.name,
                p,
                config.clone(),
                opts,
            )?;
            partitions.push(Arc::new(part));
        }
        Ok(Topic {
            name: file.name,
            id,
            created_ms: file.created_ms,
            config,
            partitions,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Adds the log's own metrics to `registry`: `sluice_log_fsync_duration_seconds`, every
    /// fsync of a segment, index, state file or directory since the log opened.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "sluice_log_fsync_duration_seconds",
            "How long each fsync of the log's files and directories took",
            self.inner.fsync_seconds.clone(),
        );
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    pub(crate) fn check_writable(&self, what: &'static str) -> Result<()> {
        if self.inner.read_only {
            Err(LogError::ReadOnly(what))
        } else if self.inner.closed.load(Ordering::Acquire) {
            Err(LogError::Closed(what))
        } else {
            Ok(())
        }
    }

    /// Creates a topic with `partitions` partitions. Names starting with `__` are reserved.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<Topic>> {
        if name.starts_with("__") {
            return Err(LogError::InvalidTopicName {
                name: name.into(),
                reason: "names starting with `__` are reserved for Sluice's internal topics".into(),
            });
        }
        self.create_topic_inner(name, partitions, config)
    }

    /// Creates an internal topic (name starting with `__`) for another part of Sluice, such
    /// as the schema registry's `__schemas`; an existing one is returned as it is.
    pub fn ensure_internal_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        if !name.starts_with("__") {
            return Err(LogError::InvalidTopicName {
                name: name.into(),
                reason: "internal topic names start with `__`".into(),
            });
        }
        match self.topic(name) {
            Ok(t) => Ok(t),
            Err(LogError::UnknownTopic(_)) => match self.create_topic_inner(name, 1, config) {
                Err(LogError::TopicExists(_)) => self.topic(name),
                other => other,
            },
            Err(e) => Err(e),
        }
    }

    pub(crate) fn create_topic_inner(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<Topic>> {
        self.check_writable("creating a topic")?;
        validate_topic_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(LogError::InvalidPartitionCount(partitions as i64));
        }
        config.validate()?;
        let storage = &self.inner.storage;
        let _admin = lock(&self.inner.admin);
        self.check_writable("creating a topic")?;
        if self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
        {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let topics_dir = self.inner.dir.join(TOPICS_DIR);
        let tmp = topics_dir.join(format!(".{name}.creating"));
        let dest = topics_dir.join(name);
        let io = |what: &str, e| LogError::io(format!("{what} topic `{name}`"), e);
        if storage.exists(&tmp) {
            let _ = storage.remove_dir_all(&tmp);
        }
        storage
            .create_dir_all(&tmp)
            .map_err(|e| io("creating", e))?;
        let id = random_id();
        let file = TopicFile {
            name: name.to_string(),
            topic_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            partitions,
            created_ms: now_ms(),
            config: config.overrides.clone(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| io("serialising", std::io::Error::other(e)))?;
        storage
            .write_atomic(&tmp.join("topic.json"), &json)
            .map_err(|e| io("writing", e))?;
        for p in 0..partitions {
            let pdir = tmp.join(p.to_string());
            storage
                .create_dir_all(&pdir)
                .map_err(|e| io("creating", e))?;
            storage
                .open(&pdir.join(segment::file_name(0, "log")), true)
                .map_err(|e| io("creating", e))?;
            storage.sync_dir(&pdir).map_err(|e| io("syncing", e))?;
        }
        storage.sync_dir(&tmp).map_err(|e| io("syncing", e))?;
        storage
            .rename(&tmp, &dest)
            .map_err(|e| io("publishing", e))?;
        storage
            .sync_dir(&topics_dir)
            .map_err(|e| io("syncing", e))?;
        let topic = Arc::new(Self::load_topic(storage, &dest, false, true)?);
        self.inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic, its data and the group offsets committed for it.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_writable("deleting a topic")?;
        let storage = &self.inner.storage;
        let _admin = lock(&self.inner.admin);
        self.check_writable("deleting a topic")?;
        let removed = self
            .inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let Some(removed) = removed else {
            return Err(LogError::UnknownTopic(name.to_string()));
        };
        // Whoever still holds one of its partitions (a pipeline's source) gets a clear error
        // from now on instead of appending to files about to be removed.
        for p in &removed.partitions {
            p.fence(Fence::Deleted);
        }
        let topics_dir = self.inner.dir.join(TOPICS_DIR);
        let gone = topics_dir.join(format!(".{name}.deleting-{}", now_ms()));
        let io = |what: &str, e| LogError::io(format!("{what} topic `{name}`"), e);
        storage
            .rename(&topics_dir.join(name), &gone)
            .map_err(|e| io("deleting", e))?;
        storage
            .sync_dir(&topics_dir)
            .map_err(|e| io("deleting", e))?;
        storage
            .remove_dir_all(&gone)
            .map_err(|e| io("removing files of", e))?;
        drop(_admin);
        self.forget_topic_offsets(name)?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// All topics, internal ones included, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        let t = self.topic(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .cloned()
            .ok_or(LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: t.partitions.len() as u32,
            })
    }

    /// Runs retention and compaction on every partition now. A partition that fails (a
    /// poisoned one after a failed fsync, a damaged segment) is skipped and named in
    /// [`LogMaintenance::failed`]; every other partition is still maintained.
    pub fn maintain(&self, now_ms: i64) -> Result<LogMaintenance> {
        self.check_writable("maintenance")?;
        let mut out = LogMaintenance::default();
        for topic in self.topics() {
            for p in &topic.partitions {
                match p.maintain(now_ms) {
                    Ok(r) => {
                        out.totals.segments_deleted += r.segments_deleted;
                        out.totals.bytes_deleted += r.bytes_deleted;
                        out.totals.records_compacted_away += r.records_compacted_away;
                    }
                    Err(error) => out.failed.push(MaintenanceFailure {
                        topic: topic.name.clone(),
                        partition: p.id(),
                        error,
                    }),
                }
            }
        }
        Ok(out)
    }

    /// Fsyncs every partition.
    pub fn flush(&self) -> Result<()> {
        for topic in self.topics() {
            for p in &topic.partitions {
                p.flush()?;
            }
        }
        Ok(())
    }

    /// Read-only opens: picks up topics, batches and segments written by another process.
    pub fn refresh(&self) -> Result<()> {
        for topic in self.topics() {
            for p in &topic.partitions {
                p.refresh()?;
            }
        }
        Ok(())
    }

    /// Flushes everything, writes indexes and the clean-shutdown marker: the next open trusts
    /// the indexes instead of re-validating the partitions' tails.
    ///
    /// Writers are refused from the moment this starts (appends to any partition, topic
    /// creation and deletion, maintenance), so that nothing lands after the clean-shutdown
    /// mark that the next open would trust without checking.
    pub fn close(&self) -> Result<()> {
        if self.inner.read_only || self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Wait for a topic creation or deletion in progress; later ones see `closed`.
        let _admin = lock(&self.inner.admin);
        for topic in self.topics() {
            for p in &topic.partitions {
                p.close()?;
            }
        }
        let marker = self.inner.dir.join(CLEAN_MARKER);
        self.inner
            .storage
            .write_atomic(&marker, b"")
            .map_err(|e| LogError::io("writing the clean-shutdown marker", e))?;
        Ok(())
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        // The last handle going away without close() is treated as a crash: the next open
        // re-validates. That keeps a panic from writing a marker over a half-done state.
        self.closed.store(true, Ordering::Release);
    }
}

/// One thread per open log: `flush.ms` deadlines, and retention/compaction on an interval.
fn spawn_background(log: Weak<LogInner>, maintenance: Option<Duration>) {
    let spawned = std::thread::Builder::new().name("sluice-log-bg".into()).spawn(move || {
        let mut last_maintenance = Instant::now();
        loop {
            std::thread::sleep(FLUSH_TICK);
            let Some(inner) = log.upgrade() else { return };
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            let handle = Log { inner };
            for topic in handle.topics() {
                if topic.config.flush_ms.is_none() {
                    continue;
                }
                for p in &topic.partitions {
                    if let Err(e) = p.flush_if_due() {
                        tracing::error!(topic = %topic.name, partition = p.id(), error = %e, "timed flush failed");
                    }
                }
            }
            if let Some(every) = maintenance {
                if last_maintenance.elapsed() >= every {
                    last_maintenance = Instant::now();
                    match handle.maintain(now_ms()) {
                        Ok(done) => {
                            for f in &done.failed {
                                tracing::error!(topic = %f.topic, partition = f.partition, error = %f.error, "log maintenance skipped a partition");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "log maintenance failed"),
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the log's background thread: flush.ms and retention will not run");
    }
}
