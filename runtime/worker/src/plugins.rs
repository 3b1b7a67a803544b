//! Connector plugins: dynamic libraries that export the SDK's C ABI
//! (`sluice_connector_sdk::plugin`), loaded with `libloading` from plugin folders and
//! registered beside the built-in types, so that a plugin connector is validated, converted,
//! transformed, retried and committed exactly like a built-in one.
//!
//! Loading checks, in order, and reports each failure with the file's path while the other
//! libraries load on: that the file is a library; that it exports the ABI version symbol and
//! speaks [`ABI_VERSION`]; that it exports the table; that its description parses; that no
//! other plugin (or built-in) already provides one of its types.
//!
//! Calls into a plugin go through [`PluginTask`]: errors come back as values with their kind;
//! a panic caught on the plugin's side fails that task (further calls are refused), and the
//! other connectors keep running.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use sluice_connector_sdk::config::{ConfigSpec, ConfigValues};
use sluice_connector_sdk::connector::{
    ConnectorError, Polled, Result, SinkConnector, SinkRecord, SinkTask, SourceConnector,
    SourcePosition, SourceRecord, SourceTask, TaskInfo, TopicPartition,
};
use sluice_connector_sdk::plugin::export::settings_json;
use sluice_connector_sdk::plugin::{
    wire, Buf, Handle, PluginV1, Slice, ABI_VERSION, KIND_SINK, KIND_SOURCE, STATUS_BAD_RECORD,
    STATUS_OK, STATUS_PANIC, STATUS_RETRIABLE, TABLE_SYMBOL, VERSION_SYMBOL,
};
use sluice_connector_sdk::registry::{ConnectorRegistry, ConnectorType, Factory, Origin};
use sluice_connector_sdk::Bytes;

/// The environment variable with more plugin folders (colon-separated).
pub const PLUGIN_PATH_ENV: &str = "SLUICE_PLUGIN_PATH";

/// Why a library was not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    #[error("{path}: not a loadable library: {message}")]
    NotALibrary { path: PathBuf, message: String },
    #[error("{path}: not a Sluice plugin: it does not export `{symbol}`")]
    MissingSymbol { path: PathBuf, symbol: String },
    #[error("{path}: built for plugin ABI version {found}, this Sluice speaks version {expected}; rebuild it against this Sluice's connector SDK")]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: its description is not valid: {message}")]
    BadDescription { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Registration { path: PathBuf, message: String },
}

/// A loaded plugin library. Kept alive (in an `Arc`) by every connector, task and buffer
/// that came from it, so it is unloaded only when nothing of it is left.
pub struct LoadedPlugin {
    table: *const PluginV1,
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    // Last: dropped after everything above.
    _library: libloading::Library,
}

// SAFETY: the table is immutable static data of the library, which stays loaded as long as
// this value lives; the ABI requires its functions to be callable from any thread (one call
// per task at a time, which `PluginTask` guarantees by `&mut self`).
unsafe impl Send for LoadedPlugin {}
unsafe impl Sync for LoadedPlugin {}

/// One connector type a plugin provides.
#[derive(Debug, Clone)]
pub struct PluginConnectorInfo {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub config: ConfigSpec,
}

/// What `sluice plugins list` shows of a loaded plugin.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub connectors: Vec<PluginConnectorInfo>,
}

/// The outcome of loading every plugin folder.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<PluginInfo>,
    pub failed: Vec<PluginError>,
}

/// Plugin folders: the pipeline's `plugin_path`, then those in `SLUICE_PLUGIN_PATH`.
pub fn plugin_dirs(from_file: &[PathBuf], env_value: Option<String>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = from_file.to_vec();
    if let Some(v) = env_value {
        dirs.extend(v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    dirs
}

fn is_library_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    )
}

/// Loads every library in `dirs` into `registry`; failures are reported, not fatal.
pub fn load_dirs(dirs: &[PathBuf], registry: &mut ConnectorRegistry) -> LoadReport {
    let mut report = LoadReport::default();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                report.failed.push(PluginError::NotALibrary {
                    path: dir.clone(),
                    message: format!("cannot read the plugin folder: {e}"),
                });
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_library_name(p))
            .collect();
        paths.sort();
        for path in paths {
            match load_library(&path, registry) {
                Ok(info) => report.loaded.push(info),
                Err(e) => report.failed.push(e),
            }
        }
    }
    report
}

/// Loads one library and registers its connector types (all or none).
pub fn load_library(
    path: &Path,
    registry: &mut ConnectorRegistry,
) -> std::result::Result<PluginInfo, PluginError> {
    let path = path.to_path_buf();
    // SAFETY: loading a library runs its initialisers; plugin folders are trusted code, like
    // Kafka Connect's plugin.path.
    let library =
        unsafe { libloading::Library::new(&path) }.map_err(|e| PluginError::NotALibrary {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let missing = |symbol: &[u8]| PluginError::MissingSymbol {
        path: path.clone(),
        symbol: String::from_utf8_lossy(symbol).into_owned(),
    };
    // The version first: nothing else is called in a library built for another ABI.
    let version = {
        // SAFETY: the symbol's type is fixed by the ABI (`uint32_t (*)(void)`).
        let f = unsafe { library.get::<extern "C" fn() -> u32>(VERSION_SYMBOL) }
            .map_err(|_| missing(VERSION_SYMBOL))?;
        f()
    };
    if version != ABI_VERSION {
        return Err(PluginError::AbiMismatch {
            path,
            found: version,
            expected: ABI_VERSION,
        });
    }
    let table = {
        // SAFETY: the symbol's type is fixed by ABI version 1, checked just above.
        let f = unsafe { library.get::<extern "C" fn() -> *const PluginV1>(TABLE_SYMBOL) }
            .map_err(|_| missing(TABLE_SYMBOL))?;
        f()
    };
    if table.is_null() {
        return Err(PluginError::BadDescription {
            path,
            message: "its function table is null".into(),
        });
    }
    let bad = |message: String| PluginError::BadDescription {
        path: path.clone(),
        message,
    };
    // SAFETY: a non-null table from a library of our ABI version, alive while `library` is.
    let describe = unsafe { &*table }.describe;
    let free_buf = unsafe { &*table }.free_buf;
    let raw = describe();
    // SAFETY: `describe` returns a Buf of `len` bytes, freed just after by `free_buf`.
    let description: std::result::Result<Json, _> =
        serde_json::from_slice(unsafe { raw.as_bytes() });
    free_buf(raw);
    let description = description.map_err(|e| bad(format!("not JSON: {e}")))?;
    if let Some(e) = description.get("error").and_then(Json::as_str) {
        return Err(PluginError::Registration {
            path,
            message: e.to_string(),
        });
    }
    let name = description["name"]
        .as_str()
        .ok_or_else(|| bad("no `name`".into()))?
        .to_string();
    let version = description["version"].as_str().unwrap_or("").to_string();
    let mut connectors = Vec::new();
    for c in description["connectors"].as_array().into_iter().flatten() {
        let config: ConfigSpec = serde_json::from_value(c["config"].clone())
            .map_err(|e| bad(format!("the settings of `{}`: {e}", c["name"])))?;
        let kind = c["kind"].as_str().unwrap_or("").to_string();
        if kind != "source" && kind != "sink" {
            return Err(bad(format!(
                "connector `{}` has kind `{kind}`; expected source or sink",
                c["name"]
            )));
        }
        connectors.push(PluginConnectorInfo {
            name: c["name"]
                .as_str()
                .ok_or_else(|| bad("a connector without `name`".into()))?
                .to_string(),
            kind,
            description: c["description"].as_str().unwrap_or("").to_string(),
            config,
        });
    }
    let plugin = Arc::new(LoadedPlugin {
        table,
        path: path.clone(),
        name: name.clone(),
        version: version.clone(),
        _library: library,
    });
    // All or none: a clash with a type already registered refuses the whole library.
    for c in &connectors {
        let taken = if c.kind == "source" {
            registry.source(&c.name).ok()
        } else {
            registry.sink(&c.name).ok()
        };
        if let Some(existing) = taken {
            return Err(PluginError::Registration {
                path,
                message: format!(
                    "{} connector type `{}` is already provided by {}; this plugin is not loaded",
                    c.kind, c.name, existing.origin
                ),
            });
        }
    }
    for c in &connectors {
        let origin = Origin::Plugin {
            library: path.clone(),
            plugin: name.clone(),
            version: version.clone(),
        };
        let (p, type_name) = (plugin.clone(), c.name.clone());
        let factory = if c.kind == "source" {
            Factory::Source(Box::new(move |config| {
                Ok(
                    Box::new(PluginConnector::new(&p, KIND_SOURCE, &type_name, &config)?)
                        as Box<dyn SourceConnector>,
                )
            }))
        } else {
            Factory::Sink(Box::new(move |config| {
                Ok(
                    Box::new(PluginConnector::new(&p, KIND_SINK, &type_name, &config)?)
                        as Box<dyn SinkConnector>,
                )
            }))
        };
        registry
            .register(ConnectorType {
                name: c.name.clone(),
                description: c.description.clone(),
                config: c.config.clone(),
                origin,
                factory,
            })
            .map_err(|e| PluginError::Registration {
                path: path.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(PluginInfo {
        path,
        name,
        version,
        connectors,
    })
}

impl LoadedPlugin {
    fn table(&self) -> &PluginV1 {
        // SAFETY: checked non-null at load; valid while the library (owned by self) is loaded.
        unsafe { &*self.table }
    }

    /// Copies a plugin buffer out and frees it on the plugin's side.
    fn take(&self, buf: Buf) -> Vec<u8> {
        // SAFETY: a Buf the plugin returned: `len` readable bytes until freed.
        let out = unsafe { buf.as_bytes() }.to_vec();
        (self.table().free_buf)(buf);
        out
    }

    /// A plugin buffer as shared bytes, freed on the plugin's side once the last slice of it
    /// is dropped (records are slices of it: no copy).
    fn share(self: &Arc<Self>, buf: Buf) -> Bytes {
        Bytes::from_owner(PluginBuf {
            buf: Some(buf),
            plugin: self.clone(),
        })
    }

    /// The status of a call as a result, with the plugin's message.
    fn check(&self, what: &str, status: i32, err: Buf) -> Result<()> {
        if status == STATUS_OK {
            if !err.ptr.is_null() {
                (self.table().free_buf)(err);
            }
            return Ok(());
        }
        let message = String::from_utf8_lossy(&self.take(err)).into_owned();
        let message = format!("plugin {} ({what}): {message}", self.name);
        Err(match status {
            STATUS_RETRIABLE => ConnectorError::retriable(message),
            STATUS_BAD_RECORD => ConnectorError::bad_record(message),
            STATUS_PANIC => ConnectorError::fatal(format!(
                "{message}; only this task fails (other connectors go on)"
            )),
            _ => ConnectorError::fatal(message),
        })
    }
}

/// A buffer from a plugin behind shared `Bytes`.
struct PluginBuf {
    buf: Option<Buf>,
    plugin: Arc<LoadedPlugin>,
}

// SAFETY: the buffer is plain memory the plugin allocated; the ABI lets it be read and freed
// from any thread.
unsafe impl Send for PluginBuf {}

impl AsRef<[u8]> for PluginBuf {
    fn as_ref(&self) -> &[u8] {
        match &self.buf {
            // SAFETY: valid until freed in drop.
            Some(b) => unsafe { b.as_bytes() },
            None => &[],
        }
    }
}

impl Drop for PluginBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            (self.plugin.table().free_buf)(b);
        }
    }
}

/// A connector made by a plugin.
pub struct PluginConnector {
    plugin: Arc<LoadedPlugin>,
    handle: Handle,
}

// SAFETY: the handle is only used through `&self`/`&mut self` of this owner; the ABI lets
// connector handles be used from any thread.
unsafe impl Send for PluginConnector {}

impl PluginConnector {
    fn new(
        plugin: &Arc<LoadedPlugin>,
        kind: u32,
        type_name: &str,
        config: &ConfigValues,
    ) -> Result<Self> {
        let settings = settings_json(config);
        let mut handle: Handle = std::ptr::null_mut::<c_void>();
        let mut err = Buf::EMPTY;
        let status = (plugin.table().connector_new)(
            kind,
            Slice::of(type_name.as_bytes()),
            Slice::of(&settings),
            &mut handle,
            &mut err,
        );
        plugin.check("creating the connector", status, err)?;
        Ok(PluginConnector {
            plugin: plugin.clone(),
            handle,
        })
    }

    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>> {
        let (mut out, mut err) = (Buf::EMPTY, Buf::EMPTY);
        let status = (self.plugin.table().connector_task_configs)(
            self.handle,
            max_tasks,
            &mut out,
            &mut err,
        );
        self.plugin.check("task_configs", status, err)?;
        let all: Vec<Json> = serde_json::from_slice(&self.plugin.take(out))
            .map_err(|e| ConnectorError::fatal(format!("task configs are not JSON: {e}")))?;
        Ok(all
            .into_iter()
            .map(|c| {
                let values = c["values"].as_object().cloned().unwrap_or_default();
                let secrets = c["secrets"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                ConfigValues::from_parts(values, secrets)
            })
            .collect())
    }

    fn create(&self, info: TaskInfo, config: ConfigValues) -> Result<PluginTask> {
        let info = json!({"connector": info.connector, "task": info.task, "tasks": info.tasks})
            .to_string();
        let settings = settings_json(&config);
        let mut handle: Handle = std::ptr::null_mut::<c_void>();
        let mut err = Buf::EMPTY;
        let status = (self.plugin.table().task_new)(
            self.handle,
            Slice::of(info.as_bytes()),
            Slice::of(&settings),
            &mut handle,
            &mut err,
        );
        self.plugin.check("creating a task", status, err)?;
        Ok(PluginTask {
            plugin: self.plugin.clone(),
            handle,
            failed: None,
            encoded: Vec::new(),
        })
    }
}

impl Drop for PluginConnector {
    fn drop(&mut self) {
        (self.plugin.table().connector_free)(self.handle);
    }
}

impl SourceConnector for PluginConnector {
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>> {
        PluginConnector::task_configs(self, max_tasks)
    }
    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(self.create(info, config)?))
    }
}

impl SinkConnector for PluginConnector {
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>> {
        PluginConnector::task_configs(self, max_tasks)
    }
    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>> {
        Ok(Box::new(self.create(info, config)?))
    }
}

/// A task made by a plugin. After a panic it refuses further calls: its state is unknown.
pub struct PluginTask {
    plugin: Arc<LoadedPlugin>,
    handle: Handle,
    failed: Option<String>,
    /// `put`'s encoding buffer, kept between calls.
    encoded: Vec<u8>,
}

// SAFETY: as for PluginConnector; `&mut self` on every call keeps one call at a time.
unsafe impl Send for PluginTask {}

impl PluginTask {
    fn call(
        &mut self,
        what: &str,
        f: impl FnOnce(&PluginV1, Handle, *mut Buf) -> i32,
    ) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(ConnectorError::fatal(format!(
                "plugin {}: the task failed earlier ({why}); not calling it again",
                self.plugin.name
            )));
        }
        let mut err = Buf::EMPTY;
        let status = f(self.plugin.table(), self.handle, &mut err);
        let result = self.plugin.check(what, status, err);
        if status == STATUS_PANIC {
            if let Err(e) = &result {
                self.failed = Some(e.message.clone());
            }
        }
        result
    }

    fn call_out(
        &mut self,
        what: &str,
        f: impl FnOnce(&PluginV1, Handle, *mut Buf, *mut Buf) -> i32,
    ) -> Result<Buf> {
        let mut out = Buf::EMPTY;
        let out_ptr: *mut Buf = &mut out;
        self.call(what, |t, h, err| f(t, h, out_ptr, err))?;
        Ok(out)
    }
}

impl Drop for PluginTask {
    fn drop(&mut self) {
        (self.plugin.table().task_free)(self.handle);
    }
}

fn control_err(e: wire::WireError) -> ConnectorError {
    ConnectorError::fatal(e.to_string())
}

impl SourceTask for PluginTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        let json = wire::positions_json(&committed);
        self.call("start", |t, h, err| {
            (t.source_start)(h, Slice::of(&json), err)
        })
    }

    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        match self.poll_batch(max_records, timeout)? {
            Polled::Records(r) => Ok(r),
            Polled::Values(runs) => Ok(runs
                .into_iter()
                .flat_map(sluice_connector_sdk::connector::ValueRun::into_records)
                .collect()),
            Polled::Encoded(batch) => wire::decode_source(&batch).map_err(control_err),
        }
    }

    /// The plugin's batch as it came: the runtime reads it in place.
    fn poll_batch(&mut self, max_records: usize, timeout: Duration) -> Result<Polled> {
        let out = self.call_out("poll", |t, h, out, err| {
            (t.source_poll)(h, max_records as u32, timeout.as_millis() as u64, out, err)
        })?;
        Ok(Polled::Encoded(self.plugin.share(out)))
    }

    fn committed(&mut self, positions: Vec<SourcePosition>) -> Result<()> {
        let json = wire::positions_json(&positions);
        self.call("committed", |t, h, err| {
            (t.source_committed)(h, Slice::of(&json), err)
        })
    }

    fn stop(&mut self) -> Result<()> {
        self.call("stop", |t, h, err| (t.task_stop)(h, err))
    }
}

impl SinkTask for PluginTask {
    fn open(&mut self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, i64)>> {
        let json = wire::partitions_json(&partitions);
        let out = self.call_out("open", |t, h, out, err| {
            (t.sink_open)(h, Slice::of(&json), out, err)
        })?;
        wire::offsets_from_json(&self.plugin.take(out)).map_err(control_err)
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        // One encoding buffer per task, reused: no fresh pages per batch.
        let mut batch = std::mem::take(&mut self.encoded);
        wire::encode_sink_into(records, &mut batch);
        let result = self.call("put", |t, h, err| (t.sink_put)(h, Slice::of(&batch), err));
        self.encoded = batch;
        result
    }

    fn accepts_encoded(&self) -> bool {
        true
    }

    fn put_encoded(&mut self, batch: &[u8]) -> Result<()> {
        self.call("put", |t, h, err| (t.sink_put)(h, Slice::of(batch), err))
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, i64)>> {
        let out = self.call_out("flush", |t, h, out, err| (t.sink_flush)(h, out, err))?;
        wire::offsets_from_json(&self.plugin.take(out)).map_err(control_err)
    }

    fn close(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        let json = wire::partitions_json(&partitions);
        self.call("close", |t, h, err| {
            (t.sink_close)(h, Slice::of(&json), err)
        })
    }

    fn stop(&mut self) -> Result<()> {
        self.call("stop", |t, h, err| (t.task_stop)(h, err))
    }
}

/// Reads `plugin_path` from a pipeline file without validating the rest (which needs the
/// plugins' types first). Errors are left to the full validation.
pub fn plugin_path_in(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let Ok(root) = crate::yaml::load(text, env) else {
        return Vec::new();
    };
    let Some(entries) = root.as_map() else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|(k, _)| k.as_str() == Some("plugin_path"))
        .flat_map(|(_, v)| match v.to_json() {
            Json::Array(items) => items
                .into_iter()
                .filter_map(|i| i.as_str().map(PathBuf::from))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect()
}
