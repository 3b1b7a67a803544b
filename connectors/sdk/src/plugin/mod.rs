//! The plugin ABI: how a connector built as a dynamic library talks to Sluice.
//!
//! A Rust plugin author never sees this: implement [`crate::connector`]'s traits, register
//! the types in a function, and call [`crate::export_plugin!`] once. This module documents
//! what that macro exports, so that a plugin can also be written in C (or any language that
//! can export C functions); `sluice-worker`'s loader is the other side.
//!
//! ## Version 1
//!
//! Everything is `extern "C"`, `#[repr(C)]`, little-endian, on the platform's C ABI.
//!
//! **Symbols.** The library exports two functions:
//! - `uint32_t sluice_plugin_abi_version(void)`: must return [`ABI_VERSION`]. The loader
//!   calls it before anything else and refuses a library built for another version.
//! - `const SluicePluginV1 *sluice_plugin_v1(void)`: the function table ([`PluginV1`]),
//!   valid as long as the library is loaded.
//!
//! **Buffers.** Input data is lent for the duration of a call as a [`Slice`] (pointer and
//! length). Output data is a [`Buf`] the plugin allocates; the host hands it back to the
//! plugin's `free_buf` when done, from any thread. Every allocation is freed on the side that
//! made it.
//!
//! **Errors.** Every call that can fail returns a status ([`STATUS_OK`], [`STATUS_RETRIABLE`],
//! [`STATUS_BAD_RECORD`], [`STATUS_FATAL`], [`STATUS_PANIC`]) and, on failure, may fill `err`
//! with a UTF-8 message (a [`Buf`]). A panic must never unwind across the boundary: the Rust
//! glue catches it and returns [`STATUS_PANIC`]; the host then fails that task, and every
//! other connector keeps running.
//!
//! **Handles.** `connector_new` and `task_new` return opaque pointers that the host passes
//! back and finally releases with `connector_free` / `task_free`. The host calls one task
//! from one thread at a time, though not always the same thread.
//!
//! **Control data is JSON** (UTF-8):
//! - `describe()` → `{"abi": 1, "name": "…", "version": "…", "connectors": [{"name": "…",
//!   "kind": "source" | "sink", "description": "…", "config": {"fields": [FieldSpec…]}}]}`
//!   where each field is `{"name", "kind", "required", "default", "doc"}` and `kind` is as
//!   [`crate::config::FieldKind`] documents. The host validates YAML settings against it.
//! - `connector_new(kind, type, config)`: `kind` is [`KIND_SOURCE`] or [`KIND_SINK`],
//!   `config` the validated settings as an object (secrets included).
//! - `connector_task_configs` → an array of settings objects, one per task.
//! - `task_new(connector, info, config)`: `info` is `{"connector", "task", "tasks"}`.
//! - Source positions (`source_start`, `source_committed`): `[{"stream", "offset"}]`.
//! - Partitions (`sink_open`, `sink_close`): `[{"topic", "partition"}]`; positions returned
//!   by `sink_open` and `sink_flush`: `[{"topic", "partition", "offset"}]` (next offset).
//!
//! **Records are binary**, in batches ([`wire`] encodes and decodes them; its docs give the
//! layout): `source_poll` returns a batch of source records, `sink_put` receives a batch of
//! sink records. Typed values cross as their JSON text.
//!
//! ## Async I/O in a plugin
//! No async runtime crosses the boundary: the host calls `poll`/`put` on a blocking thread
//! of its own. A plugin that needs async I/O (an HTTP client, a database driver) builds its
//! own runtime when its task is created — e.g. a tokio current-thread runtime — and blocks
//! on it inside `poll`/`put`; it drops the runtime in `stop`.

pub mod export;
pub mod wire;

use std::ffi::c_void;

/// The ABI version this SDK speaks; bumped on any incompatible change.
pub const ABI_VERSION: u32 = 1;

/// The symbol returning the ABI version.
pub const VERSION_SYMBOL: &[u8] = b"sluice_plugin_abi_version";
/// The symbol returning the function table.
pub const TABLE_SYMBOL: &[u8] = b"sluice_plugin_v1";

pub const STATUS_OK: i32 = 0;
/// Transient; the host retries with backoff.
pub const STATUS_RETRIABLE: i32 = 1;
/// This record (or batch) cannot be handled; the host applies the error policy.
pub const STATUS_BAD_RECORD: i32 = 2;
/// The task cannot go on.
pub const STATUS_FATAL: i32 = 3;
/// The plugin panicked; the message says where. The task is failed.
pub const STATUS_PANIC: i32 = 4;

pub const KIND_SOURCE: u32 = 0;
pub const KIND_SINK: u32 = 1;

/// Bytes lent for the duration of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub ptr: *const u8,
    pub len: usize,
}

impl Slice {
    pub fn of(bytes: &[u8]) -> Slice {
        Slice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a` (or `len` is 0).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller, as documented.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes the plugin allocated and hands over; the host returns them to `free_buf`.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    pub ptr: *mut u8,
    pub len: usize,
    /// Whatever the allocator needs to free it (for Rust: the `Vec`'s capacity).
    pub cap: usize,
}

impl Buf {
    pub const EMPTY: Buf = Buf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Hands a `Vec` over (freed by [`Buf::into_vec`] on the plugin's side).
    pub fn from_vec(v: Vec<u8>) -> Buf {
        let mut v = std::mem::ManuallyDrop::new(v);
        Buf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// # Safety
    /// `self` must come from [`Buf::from_vec`] in this same library, not freed before.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the parts are those of a Vec<u8> this library leaked, as documented.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes (or be null).
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// An opaque handle to a connector or task made by the plugin.
pub type Handle = *mut c_void;

/// The function table of ABI version 1. Every function returning `i32` returns a status and
/// fills `err` on failure; outputs go to `out` only on success.
#[repr(C)]
pub struct PluginV1 {
    /// The plugin's description (JSON, see the module docs).
    pub describe: extern "C" fn() -> Buf,
    /// Frees a buffer this plugin returned.
    pub free_buf: extern "C" fn(Buf),
    pub connector_new: extern "C" fn(
        kind: u32,
        type_name: Slice,
        config: Slice,
        out: *mut Handle,
        err: *mut Buf,
    ) -> i32,
    pub connector_task_configs:
        extern "C" fn(connector: Handle, max_tasks: u32, out: *mut Buf, err: *mut Buf) -> i32,
    pub connector_free: extern "C" fn(connector: Handle),
    pub task_new: extern "C" fn(
        connector: Handle,
        info: Slice,
        config: Slice,
        out: *mut Handle,
        err: *mut Buf,
    ) -> i32,
    pub task_stop: extern "C" fn(task: Handle, err: *mut Buf) -> i32,
    pub task_free: extern "C" fn(task: Handle),
    pub source_start: extern "C" fn(task: Handle, committed: Slice, err: *mut Buf) -> i32,
    pub source_poll: extern "C" fn(
        task: Handle,
        max_records: u32,
        timeout_ms: u64,
        out: *mut Buf,
        err: *mut Buf,
    ) -> i32,
    pub source_committed: extern "C" fn(task: Handle, positions: Slice, err: *mut Buf) -> i32,
    pub sink_open:
        extern "C" fn(task: Handle, partitions: Slice, out: *mut Buf, err: *mut Buf) -> i32,
    pub sink_put: extern "C" fn(task: Handle, records: Slice, err: *mut Buf) -> i32,
    pub sink_flush: extern "C" fn(task: Handle, out: *mut Buf, err: *mut Buf) -> i32,
    pub sink_close: extern "C" fn(task: Handle, partitions: Slice, err: *mut Buf) -> i32,
}

/// Exports a plugin: the two ABI symbols, over the connector types `register` adds.
///
/// ```ignore
/// fn register(registry: &mut ConnectorRegistry) -> Result<(), RegistryError> {
///     registry.register(ConnectorType { name: "sequence".into(), /* … */ })
/// }
/// sluice_connector_sdk::export_plugin!(name: "my-plugin", version: env!("CARGO_PKG_VERSION"), register: register);
/// ```
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, version: $version:expr, register: $register:path $(,)?) => {
        /// The plugin ABI version (Sluice checks it before anything else).
        #[no_mangle]
        pub extern "C" fn sluice_plugin_abi_version() -> u32 {
            $crate::plugin::ABI_VERSION
        }

        /// The plugin's function table.
        #[no_mangle]
        pub extern "C" fn sluice_plugin_v1() -> *const $crate::plugin::PluginV1 {
            $crate::plugin::export::table($name, $version, $register)
        }
    };
}
