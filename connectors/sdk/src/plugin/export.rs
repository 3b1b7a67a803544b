//! The plugin's side of the ABI: the function table [`crate::export_plugin!`] exports, over
//! the connector types the plugin registers. Every entry point catches panics (a panic never
//! unwinds into the host) and turns errors into status codes with messages.
//!
//! The SDK is linked into each plugin library, so the state here (the registry of the
//! plugin's types) is per library.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{json, Map, Value as Json};

use super::wire;
use super::{
    Buf, Handle, PluginV1, Slice, KIND_SINK, KIND_SOURCE, STATUS_BAD_RECORD, STATUS_FATAL,
    STATUS_OK, STATUS_PANIC, STATUS_RETRIABLE,
};
use crate::config::ConfigValues;
use crate::connector::{
    ConnectorError, ErrorKind, SinkConnector, SinkTask, SourceConnector, SourceTask, TaskInfo,
};
use crate::registry::{ConnectorRegistry, Factory, RegistryError};

/// What a plugin registered, described once.
struct Exported {
    registry: Result<ConnectorRegistry, String>,
    description: Vec<u8>,
}

static STATE: OnceLock<Exported> = OnceLock::new();

/// The function table, registering the plugin's types on first use. Called by the symbol
/// [`crate::export_plugin!`] defines.
pub fn table(
    name: &str,
    version: &str,
    register: fn(&mut ConnectorRegistry) -> Result<(), RegistryError>,
) -> *const PluginV1 {
    STATE.get_or_init(|| {
        let registry = match catch_unwind(|| {
            let mut r = ConnectorRegistry::new();
            register(&mut r).map(|_| r)
        }) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("registering its connector types failed: {e}")),
            Err(panic) => Err(format!(
                "registering its connector types panicked: {}",
                panic_message(&*panic)
            )),
        };
        let connectors: Vec<Json> = match &registry {
            Ok(r) => r
                .sources()
                .map(|t| (t, "source"))
                .chain(r.sinks().map(|t| (t, "sink")))
                .map(|(t, kind)| {
                    json!({"name": t.name, "kind": kind, "description": t.description, "config": t.config})
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut description = json!({
            "abi": super::ABI_VERSION,
            "name": name,
            "version": version,
            "connectors": connectors,
        });
        if let Err(e) = &registry {
            description["error"] = json!(e);
        }
        Exported {
            registry,
            description: description.to_string().into_bytes(),
        }
    });
    &TABLE
}

static TABLE: PluginV1 = PluginV1 {
    describe,
    free_buf,
    connector_new,
    connector_task_configs,
    connector_free,
    task_new,
    task_stop,
    task_free,
    source_start,
    source_poll,
    source_committed,
    sink_open,
    sink_put,
    sink_flush,
    sink_close,
};

enum ConnectorBox {
    Source(Box<dyn SourceConnector>),
    Sink(Box<dyn SinkConnector>),
}

enum TaskBox {
    Source(Box<dyn SourceTask>),
    /// With the buffer `put` copies batches into, reused once the sink has dropped the
    /// records of the batch before (no fresh pages per batch).
    Sink(Box<dyn SinkTask>, BytesMut),
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `f`, catching panics; the status, with the message in `err` on failure.
fn guarded(err: *mut Buf, f: impl FnOnce() -> Result<(), ConnectorError>) -> i32 {
    let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(e)) => (
            match e.kind {
                ErrorKind::Retriable => STATUS_RETRIABLE,
                ErrorKind::BadRecord => STATUS_BAD_RECORD,
                ErrorKind::Fatal => STATUS_FATAL,
            },
            e.message,
        ),
        Err(panic) => (
            STATUS_PANIC,
            format!("the plugin panicked: {}", panic_message(&*panic)),
        ),
    };
    if !err.is_null() {
        // SAFETY: the host passes a valid pointer to a Buf it owns (ABI contract).
        unsafe { *err = Buf::from_vec(message.into_bytes()) };
    }
    status
}

fn put_out(out: *mut Buf, bytes: Vec<u8>) -> Result<(), ConnectorError> {
    if out.is_null() {
        return Err(ConnectorError::fatal("the host passed no output buffer"));
    }
    // SAFETY: the host passes a valid pointer to a Buf it owns (ABI contract).
    unsafe { *out = Buf::from_vec(bytes) };
    Ok(())
}

fn control<T>(r: Result<T, wire::WireError>) -> Result<T, ConnectorError> {
    r.map_err(|e| ConnectorError::fatal(e.to_string()))
}

/// `{"values": {...}, "secrets": [...]}` as settings.
fn settings(bytes: &[u8]) -> Result<ConfigValues, ConnectorError> {
    let v: Json = serde_json::from_slice(bytes)
        .map_err(|e| ConnectorError::fatal(format!("settings are not JSON: {e}")))?;
    let values: Map<String, Json> = v
        .get("values")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let secrets: Vec<String> = v
        .get("secrets")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(ConfigValues::from_parts(values, secrets))
}

/// Settings as they cross the boundary.
pub fn settings_json(c: &ConfigValues) -> Vec<u8> {
    json!({"values": c.to_map_with_secrets(), "secrets": c.secret_keys()})
        .to_string()
        .into_bytes()
}

/// # Safety (for every `*_of` below)
/// Handles come from this library's `connector_new`/`task_new` and are not yet freed.
fn connector_of<'a>(h: Handle) -> Result<&'a mut ConnectorBox, ConnectorError> {
    if h.is_null() {
        return Err(ConnectorError::fatal("null connector handle"));
    }
    // SAFETY: see above (ABI contract).
    Ok(unsafe { &mut *(h as *mut ConnectorBox) })
}

fn task_of<'a>(h: Handle) -> Result<&'a mut TaskBox, ConnectorError> {
    if h.is_null() {
        return Err(ConnectorError::fatal("null task handle"));
    }
    // SAFETY: see above (ABI contract).
    Ok(unsafe { &mut *(h as *mut TaskBox) })
}

fn source_task<'a>(h: Handle) -> Result<&'a mut Box<dyn SourceTask>, ConnectorError> {
    match task_of(h)? {
        TaskBox::Source(t) => Ok(t),
        TaskBox::Sink(..) => Err(ConnectorError::fatal("a sink task called as a source")),
    }
}

fn sink_task<'a>(h: Handle) -> Result<&'a mut Box<dyn SinkTask>, ConnectorError> {
    match task_of(h)? {
        TaskBox::Sink(t, _) => Ok(t),
        TaskBox::Source(_) => Err(ConnectorError::fatal("a source task called as a sink")),
    }
}

fn input<'a>(s: Slice) -> &'a [u8] {
    // SAFETY: the host lends `len` readable bytes for the duration of the call (ABI contract).
    unsafe { s.as_bytes() }
}

extern "C" fn describe() -> Buf {
    match STATE.get() {
        Some(s) => Buf::from_vec(s.description.clone()),
        None => Buf::EMPTY,
    }
}

/// Large record buffers the host gave back, for the next polls: memory already faulted in
/// instead of fresh pages for every batch.
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const SPARE_MIN: usize = 64 * 1024;
const SPARE_MAX: usize = 4;

fn spare_buffer() -> Vec<u8> {
    SPARE
        .lock()
        .map(|mut s| s.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

extern "C" fn free_buf(buf: Buf) {
    // SAFETY: every Buf this library hands out comes from Buf::from_vec (ABI contract).
    let v = unsafe { buf.into_vec() };
    if v.capacity() >= SPARE_MIN {
        if let Ok(mut spare) = SPARE.lock() {
            if spare.len() < SPARE_MAX {
                spare.push(v);
            }
        }
    }
}

extern "C" fn connector_new(
    kind: u32,
    type_name: Slice,
    config: Slice,
    out: *mut Handle,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let state = STATE
            .get()
            .ok_or_else(|| ConnectorError::fatal("the plugin table was not initialised"))?;
        let registry = state.registry.as_ref().map_err(ConnectorError::fatal)?;
        let name = std::str::from_utf8(input(type_name))
            .map_err(|_| ConnectorError::fatal("connector type name is not UTF-8"))?;
        let values = settings(input(config))?;
        let found = match kind {
            KIND_SOURCE => registry.source(name),
            KIND_SINK => registry.sink(name),
            other => return Err(ConnectorError::fatal(format!("unknown kind {other}"))),
        }
        .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let made = match &found.factory {
            Factory::Source(make) => ConnectorBox::Source(make(values)?),
            Factory::Sink(make) => ConnectorBox::Sink(make(values)?),
        };
        if out.is_null() {
            return Err(ConnectorError::fatal("the host passed no output handle"));
        }
        // SAFETY: the host passes a valid pointer for the handle (ABI contract).
        unsafe { *out = Box::into_raw(Box::new(made)) as *mut c_void };
        Ok(())
    })
}

extern "C" fn connector_task_configs(
    connector: Handle,
    max_tasks: u32,
    out: *mut Buf,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let configs = match connector_of(connector)? {
            ConnectorBox::Source(c) => c.task_configs(max_tasks)?,
            ConnectorBox::Sink(c) => c.task_configs(max_tasks)?,
        };
        let all: Vec<Json> = configs
            .iter()
            .map(|c| serde_json::from_slice(&settings_json(c)).unwrap_or(Json::Null))
            .collect();
        put_out(out, Json::Array(all).to_string().into_bytes())
    })
}

extern "C" fn connector_free(connector: Handle) {
    if connector.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: the handle came from connector_new and is freed once (ABI contract).
        drop(unsafe { Box::from_raw(connector as *mut ConnectorBox) });
    });
}

extern "C" fn task_new(
    connector: Handle,
    info: Slice,
    config: Slice,
    out: *mut Handle,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let info: Json = serde_json::from_slice(input(info))
            .map_err(|e| ConnectorError::fatal(format!("task info is not JSON: {e}")))?;
        let info = TaskInfo {
            connector: info["connector"].as_str().unwrap_or_default().to_string(),
            task: info["task"].as_u64().unwrap_or(0) as u32,
            tasks: info["tasks"].as_u64().unwrap_or(1) as u32,
        };
        let values = settings(input(config))?;
        let task = match connector_of(connector)? {
            ConnectorBox::Source(c) => TaskBox::Source(c.create_task(info, values)?),
            ConnectorBox::Sink(c) => TaskBox::Sink(c.create_task(info, values)?, BytesMut::new()),
        };
        if out.is_null() {
            return Err(ConnectorError::fatal("the host passed no output handle"));
        }
        // SAFETY: the host passes a valid pointer for the handle (ABI contract).
        unsafe { *out = Box::into_raw(Box::new(task)) as *mut c_void };
        Ok(())
    })
}

extern "C" fn task_stop(task: Handle, err: *mut Buf) -> i32 {
    guarded(err, || match task_of(task)? {
        TaskBox::Source(t) => t.stop(),
        TaskBox::Sink(t, _) => t.stop(),
    })
}

extern "C" fn task_free(task: Handle) {
    if task.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: the handle came from task_new and is freed once (ABI contract).
        drop(unsafe { Box::from_raw(task as *mut TaskBox) });
    });
}

extern "C" fn source_start(task: Handle, committed: Slice, err: *mut Buf) -> i32 {
    guarded(err, || {
        let positions = control(wire::positions_from_json(input(committed)))?;
        source_task(task)?.start(positions)
    })
}

extern "C" fn source_poll(
    task: Handle,
    max_records: u32,
    timeout_ms: u64,
    out: *mut Buf,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let records =
            source_task(task)?.poll(max_records as usize, Duration::from_millis(timeout_ms))?;
        let mut batch = spare_buffer();
        wire::encode_source_into(&records, &mut batch);
        put_out(out, batch)
    })
}

extern "C" fn source_committed(task: Handle, positions: Slice, err: *mut Buf) -> i32 {
    guarded(err, || {
        let positions = control(wire::positions_from_json(input(positions)))?;
        source_task(task)?.committed(positions)
    })
}

extern "C" fn sink_open(task: Handle, partitions: Slice, out: *mut Buf, err: *mut Buf) -> i32 {
    guarded(err, || {
        let partitions = control(wire::partitions_from_json(input(partitions)))?;
        let own = sink_task(task)?.open(partitions)?;
        put_out(out, wire::offsets_json(&own))
    })
}

extern "C" fn sink_put(task: Handle, records: Slice, err: *mut Buf) -> i32 {
    guarded(err, || {
        let TaskBox::Sink(sink, buffer) = task_of(task)? else {
            return Err(ConnectorError::fatal("a source task called as a sink"));
        };
        // Lent for the call only: one copy of the batch, then the records are slices of it.
        let input = input(records);
        buffer.clear();
        buffer.reserve(input.len());
        buffer.extend_from_slice(input);
        let batch = buffer.split().freeze();
        let records =
            wire::decode_sink(&batch).map_err(|e| ConnectorError::fatal(e.to_string()))?;
        sink.put(&records)
    })
}

extern "C" fn sink_flush(task: Handle, out: *mut Buf, err: *mut Buf) -> i32 {
    guarded(err, || {
        let durable = sink_task(task)?.flush()?;
        put_out(out, wire::offsets_json(&durable))
    })
}

extern "C" fn sink_close(task: Handle, partitions: Slice, err: *mut Buf) -> i32 {
    guarded(err, || {
        let partitions = control(wire::partitions_from_json(input(partitions)))?;
        sink_task(task)?.close(partitions)
    })
}
