//! The registry itself: subjects, versions, global ids, configs and modes, with Confluent's
//! rules (what a register does, what soft and hard deletes do, which errors come back).
//!
//! Every change is first written to the [`SchemaStore`] and then applied to the in-memory
//! state by the same function that replays the store on start, so the state is always what
//! the log says. Writes are serialised; reads take a read lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::canonical::canonical_text;
use crate::levels::{check_resolved, CompatibilityLevel, Direction, Resolved};
use crate::store::{SchemaStore, StoreError};

/// Errors with Confluent's `error_code`s; the HTTP status is the code's first three digits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Subject '{0}' Version {1} was soft deleted. Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted(String, u32),
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, u32),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotFound(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", details.join(", "))]
    Incompatible {
        subject: String,
        details: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel(String),
    #[error("Invalid mode. Valid values are READWRITE, READONLY and IMPORT.")]
    InvalidMode(String),
    #[error("Operation not permitted: {0}")]
    NotPermitted(String),
    #[error("One or more references exist to the schema {{subject={0}, version={1}}}")]
    Referenced(String, u32),
    #[error("The specified subject '{0}' is not valid.")]
    InvalidSubject(String),
    #[error("Schema id {0} is already used by a different schema")]
    ImportIdMismatch(u32),
    #[error("Error in the backend data store: {0}")]
    Store(#[from] StoreError),
}

impl RegistryError {
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound(_) => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted(..) => 40406,
            RegistryError::VersionNotSoftDeleted(..) => 40407,
            RegistryError::SubjectConfigNotFound(_) => 40408,
            RegistryError::SubjectModeNotFound(_) => 40409,
            // Confluent answered 409 until 8.0.3 and most clients expect it.
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel(_) => 42203,
            RegistryError::InvalidMode(_) => 42204,
            RegistryError::NotPermitted(_) => 42205,
            RegistryError::Referenced(..) => 42206,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::ImportIdMismatch(_) => 42207,
            RegistryError::Store(_) => 50001,
        }
    }

    pub fn http_status(&self) -> u16 {
        let code = self.error_code();
        if code < 1000 {
            code as u16
        } else {
            (code / 100) as u16
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A named type from another subject (Confluent schema references).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// The body of register, lookup and compatibility requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// IMPORT mode only: keep the id (and version) the schema had in another registry.
    #[serde(default)]
    pub id: Option<u32>,
    #[serde(default)]
    pub version: Option<u32>,
}

/// Registry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
    Import,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::ReadWrite),
            "READONLY" | "READONLY_OVERRIDE" => Ok(Mode::ReadOnly),
            "IMPORT" => Ok(Mode::Import),
            _ => Err(RegistryError::InvalidMode(s.to_string())),
        }
    }
}

/// A version of a subject, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    pub schema_type: String,
    pub references: Vec<Reference>,
    pub deleted: bool,
}

/// The outcome of a compatibility test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibilityReport {
    pub is_compatible: bool,
    pub messages: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "keytype")]
enum Key {
    #[serde(rename = "SCHEMA")]
    Schema { subject: String, version: u32 },
    #[serde(rename = "CONFIG")]
    Config { subject: Option<String> },
    #[serde(rename = "MODE")]
    Mode { subject: Option<String> },
    /// Written by a Confluent registry when it becomes the writer; says nothing of state.
    #[serde(rename = "NOOP")]
    Noop {},
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaValue {
    subject: String,
    version: u32,
    id: u32,
    schema: String,
    #[serde(default = "avro")]
    schema_type: String,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    deleted: bool,
}

fn avro() -> String {
    "AVRO".into()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigValue {
    compatibility_level: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModeValue {
    mode: String,
}

struct StoredSchema {
    text: String,
    schema_type: String,
    references: Vec<Reference>,
}

#[derive(Default)]
struct State {
    schemas: BTreeMap<u32, StoredSchema>,
    /// Canonical text + references → id: one id per distinct schema, across subjects.
    ids: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, (u32, bool)>>,
    configs: HashMap<Option<String>, CompatibilityLevel>,
    modes: HashMap<Option<String>, Mode>,
    max_id: u32,
}

fn dedup_key(canonical: &str, references: &[Reference]) -> String {
    let refs: Vec<String> = references
        .iter()
        .map(|r| format!("{}={}@{}", r.name, r.subject, r.version))
        .collect();
    format!("{canonical}\u{0}{}", refs.join(","))
}

impl State {
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = serde_json::from_slice::<Key>(key) else {
            tracing::warn!("skipping an unreadable registry record key");
            return;
        };
        match key {
            Key::Schema { subject, version } => {
                match value.and_then(|v| serde_json::from_slice::<SchemaValue>(v).ok()) {
                    Some(v) => {
                        self.max_id = self.max_id.max(v.id);
                        let dedup = dedup_key(&v.schema, &v.references);
                        self.ids.entry(dedup).or_insert(v.id);
                        self.schemas.entry(v.id).or_insert(StoredSchema {
                            text: v.schema,
                            schema_type: v.schema_type,
                            references: v.references,
                        });
                        self.subjects
                            .entry(subject)
                            .or_default()
                            .insert(version, (v.id, v.deleted));
                    }
                    None => {
                        if let Some(versions) = self.subjects.get_mut(&subject) {
                            versions.remove(&version);
                            if versions.is_empty() {
                                self.subjects.remove(&subject);
                                // Hard-deleting the last version drops the subject's config and mode too.
                                self.configs.remove(&Some(subject.clone()));
                                self.modes.remove(&Some(subject));
                            }
                        }
                    }
                }
            }
            Key::Config { subject } => {
                match value.and_then(|v| serde_json::from_slice::<ConfigValue>(v).ok()) {
                    Some(c) => {
                        if let Ok(level) = c.compatibility_level.parse() {
                            self.configs.insert(subject, level);
                        }
                    }
                    None => {
                        self.configs.remove(&subject);
                    }
                }
            }
            Key::Mode { subject } => {
                match value.and_then(|v| serde_json::from_slice::<ModeValue>(v).ok()) {
                    Some(m) => {
                        if let Ok(mode) = Mode::parse(&m.mode) {
                            self.modes.insert(subject, mode);
                        }
                    }
                    None => {
                        self.modes.remove(&subject);
                    }
                }
            }
            Key::Noop {} => {}
        }
    }

    fn live_versions(&self, subject: &str) -> Vec<(u32, u32)> {
        self.subjects
            .get(subject)
            .map(|v| {
                v.iter()
                    .filter(|(_, (_, deleted))| !deleted)
                    .map(|(ver, (id, _))| (*ver, *id))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn level(&self, subject: &str) -> CompatibilityLevel {
        self.configs
            .get(&Some(subject.to_string()))
            .or_else(|| self.configs.get(&None))
            .copied()
            .unwrap_or_default()
    }

    fn mode(&self, subject: &str) -> Mode {
        self.modes
            .get(&Some(subject.to_string()))
            .or_else(|| self.modes.get(&None))
            .copied()
            .unwrap_or(Mode::ReadWrite)
    }

    /// Texts of every schema `references` point to, depth first, for the parser.
    fn reference_texts(
        &self,
        references: &[Reference],
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 {
            return Err(RegistryError::InvalidSchema(
                "schema references nest too deeply (or form a cycle)".into(),
            ));
        }
        for r in references {
            let versions = self.subjects.get(&r.subject).ok_or_else(|| {
                RegistryError::InvalidSchema(format!(
                    "reference `{}` names subject `{}`, which does not exist",
                    r.name, r.subject
                ))
            })?;
            let id = if r.version == -1 {
                versions
                    .iter()
                    .rev()
                    .find(|(_, (_, d))| !d)
                    .map(|(_, (id, _))| *id)
            } else {
                u32::try_from(r.version)
                    .ok()
                    .and_then(|v| versions.get(&v))
                    .map(|(id, _)| *id)
            }
            .ok_or_else(|| {
                RegistryError::InvalidSchema(format!(
                    "reference `{}`: subject `{}` has no version {}",
                    r.name, r.subject, r.version
                ))
            })?;
            let stored = self.stored(id)?;
            self.reference_texts(&stored.references, out, depth + 1)?;
            if !out.contains(&stored.text) {
                out.push(stored.text.clone());
            }
        }
        Ok(())
    }

    fn parse(&self, text: &str, references: &[Reference]) -> Result<Resolved> {
        let mut texts = Vec::new();
        self.reference_texts(references, &mut texts, 0)?;
        let (schema, referenced) = if texts.is_empty() {
            (
                Schema::parse_str(text).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?,
                Vec::new(),
            )
        } else {
            Schema::parse_str_with_list(text, &texts)
                .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?
        };
        Ok(Resolved { schema, referenced })
    }

    /// Stored schemas are parsed leniently: a schema registered elsewhere with an invalid
    /// default must still be readable, so defaults that do not parse are dropped.
    fn parse_stored(&self, id: u32) -> Option<Resolved> {
        let stored = self.schemas.get(&id)?;
        if let Ok(r) = self.parse(&stored.text, &stored.references) {
            return Some(r);
        }
        let mut value: serde_json::Value = serde_json::from_str(&stored.text).ok()?;
        strip_defaults(&mut value);
        self.parse(&value.to_string(), &stored.references).ok()
    }

    /// The schema behind an id a subject's version names. Every such id is stored before a
    /// version names it (`apply` keeps that order), so a miss is a damaged state, reported
    /// as such rather than a panic.
    fn stored(&self, id: u32) -> Result<&StoredSchema> {
        self.schemas.get(&id).ok_or_else(|| {
            RegistryError::Store(StoreError(format!(
                "a subject version names schema id {id}, which is not stored"
            )))
        })
    }

    fn version_view(
        &self,
        subject: &str,
        version: u32,
        id: u32,
        deleted: bool,
    ) -> Result<SubjectVersion> {
        let stored = self.stored(id)?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version,
            id,
            schema: stored.text.clone(),
            schema_type: stored.schema_type.clone(),
            references: stored.references.clone(),
            deleted,
        })
    }
}

fn strip_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("name") && map.contains_key("type") && !map.contains_key("fields") {
                map.remove("default");
            }
            for child in map.values_mut() {
                strip_defaults(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// A version selector in a path: a number, `latest` or `-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    pub fn parse(s: &str) -> Result<VersionSpec> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

/// Subject names: any non-empty text without control characters, at most 255 bytes.
fn validate_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(RegistryError::InvalidSubject(subject.to_string()));
    }
    Ok(())
}

pub struct Registry {
    state: RwLock<State>,
    store: Arc<dyn SchemaStore>,
    write: Mutex<()>,
    /// Records appended so far (a refused write that appended some rebuilds the state).
    appended: std::sync::atomic::AtomicU64,
    /// The API's requests, counted by the router over this registry.
    requests: crate::metrics::RequestMetrics,
}

fn describe(direction: Direction, version: u32, inc: &crate::compat::Incompatibility) -> String {
    let who = match direction {
        Direction::NewReadsOld => {
            format!("the new schema cannot read data written with version {version}")
        }
        Direction::OldReadsNew => {
            format!("version {version} cannot read data written with the new schema")
        }
    };
    format!(
        "{{errorType:'{}', location:'{}', description:'{who}: {}'}}",
        inc.kind.as_str(),
        inc.location,
        inc.message
    )
}

impl Registry {
    /// Rebuilds the registry from its store.
    pub fn open(store: Arc<dyn SchemaStore>) -> Result<Registry> {
        let mut state = State::default();
        for (key, value) in store.replay()? {
            state.apply(&key, value.as_deref());
        }
        tracing::info!(
            schemas = state.schemas.len(),
            subjects = state.subjects.len(),
            "schema registry loaded"
        );
        Ok(Registry {
            state: RwLock::new(state),
            store,
            write: Mutex::new(()),
            appended: Default::default(),
            requests: Default::default(),
        })
    }

    /// The API's request counters (register them where `/metrics` is served).
    pub fn request_metrics(&self) -> &crate::metrics::RequestMetrics {
        &self.requests
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one write: with the records other registries stored applied first, its own
    /// records made durable together at the end; decided again (up to a few times) when
    /// another registry sharing the store took over writing meanwhile.
    fn writing<T>(&self, op: impl Fn() -> Result<T>) -> Result<T> {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempts = 0;
        loop {
            let news = self.store.begin_write()?;
            self.apply_all(news);
            let appended_before = self.appended.load(std::sync::atomic::Ordering::Relaxed);
            let out = op();
            let appended =
                self.appended.load(std::sync::atomic::Ordering::Relaxed) != appended_before;
            match self.store.end_write(out.is_ok()) {
                Ok(()) => {
                    if out.is_err() && appended && self.store.is_shared() {
                        // Nothing of a refused write was kept; what it applied goes.
                        self.rebuild()?;
                    }
                    return out;
                }
                Err(e) => {
                    // What the write applied was not stored: the state is read again.
                    self.rebuild()?;
                    attempts += 1;
                    if !e.0.starts_with(crate::store::WRITE_LOST) || attempts >= 10 {
                        return Err(e.into());
                    }
                    tracing::info!("another registry wrote meanwhile; deciding the write again");
                    // Writers that keep taking over from each other would go on for ever:
                    // each waits a different while before it tries again.
                    std::thread::sleep(std::time::Duration::from_millis(
                        20 + (std::process::id() as u64 * 7919 + attempts as u64 * 104_729) % 200,
                    ));
                }
            }
        }
    }

    fn apply_all(&self, records: Vec<crate::store::StoredRecord>) {
        if records.is_empty() {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        for (key, value) in records {
            state.apply(&key, value.as_deref());
        }
    }

    /// The state read again from the store.
    fn rebuild(&self) -> Result<()> {
        let mut state = State::default();
        for (key, value) in self.store.replay()? {
            state.apply(&key, value.as_deref());
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }

    /// Applies what other registries sharing the store wrote (a background task calls this
    /// on a shared store, so that reads here see their writes).
    pub fn refresh(&self) -> Result<()> {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let news = self.store.updates()?;
        self.apply_all(news);
        Ok(())
    }

    /// Writes a record, then applies it: the state only ever shows what is stored.
    fn commit(&self, key: &Key, value: Option<Vec<u8>>) -> Result<()> {
        let key = serde_json::to_vec(key).map_err(|e| StoreError(e.to_string()))?;
        self.store.append(&key, value.as_deref())?;
        self.appended
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(&key, value.as_deref());
        Ok(())
    }

    fn check_writable(&self, subject: Option<&str>) -> Result<()> {
        let state = self.read();
        let mode = subject
            .map(|s| state.mode(s))
            .unwrap_or_else(|| state.modes.get(&None).copied().unwrap_or(Mode::ReadWrite));
        if mode == Mode::ReadOnly {
            return Err(RegistryError::NotPermitted(
                "the registry (or subject) is in READONLY mode".into(),
            ));
        }
        Ok(())
    }

    fn schema_type(req: &SchemaRequest) -> Result<String> {
        let t = req
            .schema_type
            .clone()
            .unwrap_or_else(avro)
            .to_ascii_uppercase();
        if t != "AVRO" {
            return Err(RegistryError::InvalidSchema(format!(
                "schema type {t} is not supported; this registry serves AVRO"
            )));
        }
        Ok(t)
    }

    /// Registers a schema under a subject; an identical live schema returns its id.
    pub fn register(&self, subject: &str, req: &SchemaRequest) -> Result<(u32, u32)> {
        validate_subject(subject)?;
        let schema_type = Self::schema_type(req)?;
        self.writing(|| self.register_now(subject, req, schema_type.clone()))
    }

    fn register_now(
        &self,
        subject: &str,
        req: &SchemaRequest,
        schema_type: String,
    ) -> Result<(u32, u32)> {
        self.check_writable(Some(subject))?;
        let (key, value, id, version) = {
            let state = self.read();
            let new = state.parse(&req.schema, &req.references)?;
            let canonical = canonical_text(&req.schema)
                .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
            let dedup = dedup_key(&canonical, &req.references);
            let existing_id = state.ids.get(&dedup).copied();
            if let Some(id) = existing_id {
                if let Some((version, _)) = state
                    .live_versions(subject)
                    .into_iter()
                    .find(|(_, i)| *i == id)
                {
                    return Ok((id, version));
                }
            }
            let level = state.level(subject);
            if state.mode(subject) != Mode::Import {
                let live = state.live_versions(subject);
                let previous: Vec<(u32, Resolved)> = live
                    .iter()
                    .rev()
                    .filter_map(|(v, id)| state.parse_stored(*id).map(|r| (*v, r)))
                    .collect();
                let refs: Vec<&Resolved> = previous.iter().map(|(_, r)| r).collect();
                let failures = check_resolved(level, &new, &refs);
                if !failures.is_empty() {
                    let mut details: Vec<String> = failures
                        .iter()
                        .map(|f| {
                            describe(
                                f.direction,
                                previous[f.previous_index].0,
                                &f.incompatibility,
                            )
                        })
                        .collect();
                    let old = previous[failures[0].previous_index].0;
                    details.push(format!("{{oldSchemaVersion: {old}}}"));
                    details.push(format!("{{compatibility: '{level}'}}"));
                    return Err(RegistryError::Incompatible {
                        subject: subject.to_string(),
                        details,
                    });
                }
            }
            let importing = state.mode(subject) == Mode::Import;
            if (req.id.is_some() || req.version.is_some()) && !importing {
                return Err(RegistryError::NotPermitted(
                    "an explicit id or version is only accepted in IMPORT mode".into(),
                ));
            }
            if let Some(wanted) = req.id {
                if existing_id.is_some_and(|e| e != wanted)
                    || state
                        .schemas
                        .get(&wanted)
                        .is_some_and(|s| dedup_key(&s.text, &s.references) != dedup)
                {
                    return Err(RegistryError::ImportIdMismatch(wanted));
                }
            }
            let id = req.id.or(existing_id).unwrap_or(state.max_id + 1);
            let next_version = state
                .subjects
                .get(subject)
                .and_then(|v| v.keys().next_back().copied())
                .unwrap_or(0)
                + 1;
            let version = match req.version {
                Some(v)
                    if state
                        .subjects
                        .get(subject)
                        .is_some_and(|vs| vs.contains_key(&v)) =>
                {
                    return Err(RegistryError::NotPermitted(format!(
                        "subject `{subject}` already has a version {v}"
                    )));
                }
                Some(v) => v,
                None => next_version,
            };
            let value = SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema: canonical,
                schema_type,
                references: req.references.clone(),
                deleted: false,
            };
            let value = serde_json::to_vec(&value).map_err(|e| StoreError(e.to_string()))?;
            (
                Key::Schema {
                    subject: subject.to_string(),
                    version,
                },
                value,
                id,
                version,
            )
        };
        self.commit(&key, Some(value))?;
        tracing::info!(subject, version, id, "registered schema");
        Ok((id, version))
    }

    /// Is this schema registered under the subject? (`POST /subjects/{subject}`)
    pub fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        include_deleted: bool,
    ) -> Result<SubjectVersion> {
        Self::schema_type(req)?;
        let state = self.read();
        let versions = state
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.into()))?;
        state.parse(&req.schema, &req.references)?;
        let canonical =
            canonical_text(&req.schema).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        let id = state
            .ids
            .get(&dedup_key(&canonical, &req.references))
            .copied();
        let found = versions
            .iter()
            .rev()
            .find(|(_, (vid, deleted))| Some(*vid) == id && (include_deleted || !deleted));
        match found {
            Some((version, (id, deleted))) => state.version_view(subject, *version, *id, *deleted),
            None => Err(RegistryError::SchemaNotFound(String::new())),
        }
    }

    pub fn subjects(&self, include_deleted: bool, prefix: Option<&str>) -> Vec<String> {
        let state = self.read();
        state
            .subjects
            .iter()
            .filter(|(s, versions)| {
                prefix.map(|p| s.starts_with(p)).unwrap_or(true)
                    && (include_deleted || versions.values().any(|(_, d)| !d))
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    pub fn versions(&self, subject: &str, include_deleted: bool) -> Result<Vec<u32>> {
        let state = self.read();
        let versions = state
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.into()))?;
        let out: Vec<u32> = versions
            .iter()
            .filter(|(_, (_, d))| include_deleted || !d)
            .map(|(v, _)| *v)
            .collect();
        if out.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        Ok(out)
    }

    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        include_deleted: bool,
    ) -> Result<SubjectVersion> {
        let state = self.read();
        let versions = state
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.into()))?;
        if !include_deleted && versions.values().all(|(_, d)| *d) {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        let found = match spec {
            VersionSpec::Latest => versions
                .iter()
                .rev()
                .find(|(_, (_, d))| include_deleted || !d),
            VersionSpec::Number(n) => versions
                .get_key_value(&n)
                .filter(|(_, (_, d))| include_deleted || !d),
        };
        let (version, (id, deleted)) = found.ok_or_else(|| {
            RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            })
        })?;
        state.version_view(subject, *version, *id, *deleted)
    }

    /// The schema behind a global id, with its type and references.
    pub fn schema_by_id(&self, id: u32) -> Result<(String, String, Vec<Reference>)> {
        let state = self.read();
        let s = state
            .schemas
            .get(&id)
            .ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))?;
        Ok((s.text.clone(), s.schema_type.clone(), s.references.clone()))
    }

    /// Every (subject, version) using a global id.
    pub fn versions_of_id(&self, id: u32, include_deleted: bool) -> Result<Vec<(String, u32)>> {
        let state = self.read();
        if !state.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaNotFound(id.to_string()));
        }
        Ok(state
            .subjects
            .iter()
            .flat_map(|(s, versions)| {
                versions
                    .iter()
                    .filter(move |(_, (vid, d))| *vid == id && (include_deleted || !d))
                    .map(move |(v, _)| (s.clone(), *v))
            })
            .collect())
    }

    /// Ids of schemas whose references point at this subject version.
    pub fn referenced_by(&self, subject: &str, spec: VersionSpec) -> Result<Vec<u32>> {
        let version = self.version(subject, spec, false)?.version;
        let state = self.read();
        Ok(state
            .schemas
            .iter()
            .filter(|(_, s)| {
                s.references.iter().any(|r| {
                    r.subject == subject && (r.version == version as i64 || r.version == -1)
                })
            })
            .map(|(id, _)| *id)
            .collect())
    }

    pub fn delete_version(&self, subject: &str, spec: VersionSpec, permanent: bool) -> Result<u32> {
        self.writing(|| self.delete_version_now(subject, spec, permanent))
    }

    fn delete_version_now(&self, subject: &str, spec: VersionSpec, permanent: bool) -> Result<u32> {
        self.check_writable(Some(subject))?;
        // A numbered version is looked up with the deleted ones so that deleting it twice
        // answers "already soft-deleted" (40406), as Confluent's does, not "not found";
        // "latest" means the latest live version unless the delete is permanent.
        let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
        let current = self.version(subject, spec, include_deleted)?;
        if !self
            .referenced_by(subject, VersionSpec::Number(current.version))
            .unwrap_or_default()
            .is_empty()
        {
            return Err(RegistryError::Referenced(subject.into(), current.version));
        }
        let key = Key::Schema {
            subject: subject.to_string(),
            version: current.version,
        };
        if permanent {
            if !current.deleted {
                return Err(RegistryError::VersionNotSoftDeleted(
                    subject.into(),
                    current.version,
                ));
            }
            self.commit(&key, None)?;
        } else {
            if current.deleted {
                return Err(RegistryError::VersionSoftDeleted(
                    subject.into(),
                    current.version,
                ));
            }
            self.commit(&key, Some(self.deleted_value(&current)?))?;
        }
        Ok(current.version)
    }

    fn deleted_value(&self, v: &SubjectVersion) -> Result<Vec<u8>> {
        let value = SchemaValue {
            subject: v.subject.clone(),
            version: v.version,
            id: v.id,
            schema: v.schema.clone(),
            schema_type: v.schema_type.clone(),
            references: v.references.clone(),
            deleted: true,
        };
        serde_json::to_vec(&value).map_err(|e| StoreError(e.to_string()).into())
    }

    pub fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        self.writing(|| self.delete_subject_now(subject, permanent))
    }

    fn delete_subject_now(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        self.check_writable(Some(subject))?;
        let all: Vec<(u32, u32, bool)> = {
            let state = self.read();
            let versions = state
                .subjects
                .get(subject)
                .ok_or_else(|| RegistryError::SubjectNotFound(subject.into()))?;
            versions.iter().map(|(v, (id, d))| (*v, *id, *d)).collect()
        };
        let live: Vec<u32> = all
            .iter()
            .filter(|(_, _, d)| !d)
            .map(|(v, _, _)| *v)
            .collect();
        for (v, _, _) in &all {
            let referrers = self
                .referenced_by(subject, VersionSpec::Number(*v))
                .unwrap_or_default();
            let state = self.read();
            let from_elsewhere = referrers.iter().any(|id| {
                state
                    .subjects
                    .iter()
                    .any(|(s, vs)| s != subject && vs.values().any(|(vid, _)| vid == id))
            });
            if from_elsewhere {
                return Err(RegistryError::Referenced(subject.into(), *v));
            }
        }
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.into()));
            }
            for (v, _, _) in &all {
                self.commit(
                    &Key::Schema {
                        subject: subject.to_string(),
                        version: *v,
                    },
                    None,
                )?;
            }
            return Ok(all.iter().map(|(v, _, _)| *v).collect());
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.into()));
        }
        for v in &live {
            let current = self.version(subject, VersionSpec::Number(*v), true)?;
            self.commit(
                &Key::Schema {
                    subject: subject.to_string(),
                    version: *v,
                },
                Some(self.deleted_value(&current)?),
            )?;
        }
        Ok(live)
    }

    /// Tests a schema against one version (or, with `None`, against what the level checks).
    pub fn test_compatibility(
        &self,
        subject: &str,
        spec: Option<VersionSpec>,
        req: &SchemaRequest,
    ) -> Result<CompatibilityReport> {
        Self::schema_type(req)?;
        let state = self.read();
        let new = state.parse(&req.schema, &req.references)?;
        let level = state.level(subject);
        let live = state.live_versions(subject);
        let targets: Vec<(u32, u32)> = match spec {
            None => live.iter().rev().copied().collect(),
            Some(VersionSpec::Latest) => live.last().copied().into_iter().collect(),
            Some(VersionSpec::Number(n)) => {
                let entry = state
                    .subjects
                    .get(subject)
                    .and_then(|v| v.get(&n))
                    .filter(|(_, d)| !d);
                match entry {
                    Some((id, _)) => vec![(n, *id)],
                    None => return Err(RegistryError::VersionNotFound(n.to_string())),
                }
            }
        };
        let previous: Vec<(u32, Resolved)> = targets
            .iter()
            .filter_map(|(v, id)| state.parse_stored(*id).map(|r| (*v, r)))
            .collect();
        let refs: Vec<&Resolved> = previous.iter().map(|(_, r)| r).collect();
        // One named version is checked in the level's direction alone (as Confluent does).
        let level_for_check = match (spec, level) {
            (Some(_), CompatibilityLevel::BackwardTransitive) => CompatibilityLevel::Backward,
            (Some(_), CompatibilityLevel::ForwardTransitive) => CompatibilityLevel::Forward,
            (Some(_), CompatibilityLevel::FullTransitive) => CompatibilityLevel::Full,
            (_, l) => l,
        };
        let failures = check_resolved(level_for_check, &new, &refs);
        let messages = failures
            .iter()
            .map(|f| {
                describe(
                    f.direction,
                    previous[f.previous_index].0,
                    &f.incompatibility,
                )
            })
            .collect();
        Ok(CompatibilityReport {
            is_compatible: failures.is_empty(),
            messages,
        })
    }

    /// The global level, or a subject's own (`None` if it has none and `fallback` is off).
    pub fn config(&self, subject: Option<&str>, fallback: bool) -> Result<CompatibilityLevel> {
        let state = self.read();
        match subject {
            None => Ok(state.configs.get(&None).copied().unwrap_or_default()),
            Some(s) => match state.configs.get(&Some(s.to_string())) {
                Some(l) => Ok(*l),
                None if fallback => Ok(state.configs.get(&None).copied().unwrap_or_default()),
                None => Err(RegistryError::SubjectConfigNotFound(s.into())),
            },
        }
    }

    pub fn set_config(&self, subject: Option<&str>, level: &str) -> Result<CompatibilityLevel> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        let level: CompatibilityLevel = level
            .parse()
            .map_err(|_| RegistryError::InvalidCompatibilityLevel(level.into()))?;
        self.writing(|| {
            self.check_writable(subject)?;
            let value = serde_json::to_vec(&ConfigValue {
                compatibility_level: level.as_str().into(),
            })
            .map_err(|e| StoreError(e.to_string()))?;
            self.commit(
                &Key::Config {
                    subject: subject.map(str::to_string),
                },
                Some(value),
            )?;
            Ok(level)
        })
    }

    pub fn delete_config(&self, subject: Option<&str>) -> Result<CompatibilityLevel> {
        self.writing(|| self.delete_config_now(subject))
    }

    fn delete_config_now(&self, subject: Option<&str>) -> Result<CompatibilityLevel> {
        self.check_writable(subject)?;
        let old = {
            let state = self.read();
            match subject {
                None => state.configs.get(&None).copied().unwrap_or_default(),
                Some(s) => *state
                    .configs
                    .get(&Some(s.to_string()))
                    .ok_or_else(|| RegistryError::SubjectNotFound(s.into()))?,
            }
        };
        self.commit(
            &Key::Config {
                subject: subject.map(str::to_string),
            },
            None,
        )?;
        Ok(old)
    }

    pub fn mode(&self, subject: Option<&str>, fallback: bool) -> Result<Mode> {
        let state = self.read();
        match subject {
            None => Ok(state.modes.get(&None).copied().unwrap_or(Mode::ReadWrite)),
            Some(s) => match state.modes.get(&Some(s.to_string())) {
                Some(m) => Ok(*m),
                None if fallback => Ok(state.modes.get(&None).copied().unwrap_or(Mode::ReadWrite)),
                None => Err(RegistryError::SubjectModeNotFound(s.into())),
            },
        }
    }

    pub fn set_mode(&self, subject: Option<&str>, mode: &str, force: bool) -> Result<Mode> {
        let mode = Mode::parse(mode)?;
        self.writing(|| self.set_mode_now(subject, mode, force))
    }

    fn set_mode_now(&self, subject: Option<&str>, mode: Mode, force: bool) -> Result<Mode> {
        if mode == Mode::Import && !force {
            let state = self.read();
            let has_schemas = match subject {
                None => !state.subjects.is_empty(),
                Some(s) => state.subjects.contains_key(s),
            };
            if has_schemas {
                return Err(RegistryError::NotPermitted(
                    "cannot switch to IMPORT mode while schemas exist (use force=true)".into(),
                ));
            }
        }
        let value = serde_json::to_vec(&ModeValue {
            mode: mode.as_str().into(),
        })
        .map_err(|e| StoreError(e.to_string()))?;
        self.commit(
            &Key::Mode {
                subject: subject.map(str::to_string),
            },
            Some(value),
        )?;
        Ok(mode)
    }
}
