//! Hot reload for `sluice run`: on SIGHUP, and when the pipeline file's text changes
//! (looked at every second unless `--no-watch`), the file is validated and handed to the
//! worker, which restarts only the connectors that changed. An invalid file or a connector
//! that cannot be built keeps the last good configuration running; every attempt is printed
//! and kept for `GET /reload`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_worker::config::{parse_pipeline, ConfigErrors, Pipeline};
use sluice_worker::run::reload::{ReloadAttempt, ReloadResult};
use sluice_worker::run::Worker;
use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

const WATCH_EVERY: Duration = Duration::from_secs(1);
/// A changed file is read again after this pause until two reads agree: an editor or a
/// `cp` that truncates and then writes must not get its half-written text applied.
const SETTLE: Duration = Duration::from_millis(200);

/// What a reload would need a restart for: settings outside the connectors.
pub fn runtime_changes(old: &Pipeline, new: &Pipeline) -> Vec<String> {
    let mut changed = Vec::new();
    if old.data_dir != new.data_dir {
        changed.push("runtime.data_dir".to_string());
    }
    if old.broker != new.broker {
        changed.push("runtime.broker".to_string());
    }
    if old.registry.as_ref().map(|r| r.listen) != new.registry.as_ref().map(|r| r.listen) {
        changed.push("runtime.registry".to_string());
    }
    if old.rest.as_ref().map(|r| r.listen) != new.rest.as_ref().map(|r| r.listen) {
        changed.push("runtime.rest".to_string());
    }
    if old.plugin_path != new.plugin_path {
        changed.push("plugin_path".to_string());
    }
    for (name, t) in &new.topics {
        if old.topics.get(name).map(|o| format!("{o:?}")) != Some(format!("{t:?}"))
            && old.topics.contains_key(name)
        {
            changed.push(format!("topics.{name}"));
        }
    }
    changed
}

fn print(file: &std::path::Path, a: &ReloadAttempt) {
    let list = |what: &str, names: &[String]| {
        (!names.is_empty()).then(|| format!("{what}: {}", names.join(", ")))
    };
    let parts: Vec<String> = [
        list("added", &a.added),
        list("changed", &a.changed),
        list("removed", &a.removed),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut text = match a.result {
        ReloadResult::Applied => format!(
            "reload of {}: applied ({})\n",
            file.display(),
            parts.join("; ")
        ),
        ReloadResult::Unchanged => format!("reload of {}: no connector changed\n", file.display()),
        ReloadResult::Invalid => format!(
            "reload of {} rejected; the running pipeline is unchanged:\n",
            file.display()
        ),
        ReloadResult::Failed => format!(
            "reload of {} failed; the running pipeline is unchanged:\n",
            file.display()
        ),
    };
    for e in &a.errors {
        match (&e.file, e.line, e.column) {
            (Some(f), Some(l), Some(c)) => {
                text.push_str(&format!("  {f}:{l}:{c}: {}\n", e.message))
            }
            _ => text.push_str(&format!("  {}\n", e.message)),
        }
    }
    if !a.needs_restart.is_empty() {
        text.push_str(&format!(
            "  not applied until sluice run is started again: {}\n",
            a.needs_restart.join(", ")
        ));
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// Serializes reloads with shutdown: the worker is never stopped halfway through one.
pub type ReloadGate = Arc<Mutex<()>>;

/// What the reload loop works on.
pub struct Reloader {
    pub file: PathBuf,
    pub worker: Arc<Worker>,
    pub registry: Arc<ConnectorRegistry>,
    /// The pipeline running now (for what a reload cannot apply).
    pub active: Pipeline,
    /// The file's text when the running pipeline was read (changes are looked for from it).
    pub started_from: String,
    /// Whether to look at the file's text every second (SIGHUP reloads either way).
    pub watch: bool,
    pub gate: ReloadGate,
}

/// Runs until `stop`: reloads the file on SIGHUP (`hangup`) and, when watching, on a change
/// of its text.
pub async fn reload_loop(r: Reloader, mut hangup: Signal, stop: CancellationToken) {
    let Reloader {
        file,
        worker,
        registry,
        active,
        started_from,
        watch,
        gate,
    } = r;
    // Not the file as it is now: a change written since the pipeline was read (the process
    // already said it runs) would be taken for the running text and never applied.
    let mut last_text = started_from;
    let active = Arc::new(Mutex::new(active));
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = hangup.recv() => true,
            _ = tokio::time::sleep(WATCH_EVERY), if watch => false,
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                if forced {
                    eprintln!("reload of {}: cannot read it: {e}", file.display());
                }
                continue;
            }
        };
        if !forced && text == last_text {
            continue;
        }
        let text = if forced {
            text
        } else {
            settled(&file, text).await
        };
        last_text = text.clone();
        let (file, worker, registry, active, gate) = (
            file.clone(),
            worker.clone(),
            registry.clone(),
            active.clone(),
            gate.clone(),
        );
        let applied = tokio::task::spawn_blocking(move || {
            let _serialized = gate.lock().unwrap_or_else(|e| e.into_inner());
            let env = |name: &str| std::env::var(name).ok();
            // The text compared is the text applied: no second read that could differ.
            let parsed = parse_pipeline(&text, &registry, &env).map_err(|errors| ConfigErrors {
                file: file.clone(),
                errors,
            });
            let attempt = match parsed {
                Err(errors) => worker.reload_rejected(&errors),
                Ok(new) => {
                    let mut active = active.lock().unwrap_or_else(|e| e.into_inner());
                    let needs_restart = runtime_changes(&active, &new);
                    let attempt = worker.reload(&new, &registry, needs_restart);
                    if attempt.result == ReloadResult::Applied {
                        *active = new;
                    }
                    attempt
                }
            };
            print(&file, &attempt);
        })
        .await;
        if let Err(e) = applied {
            eprintln!("reload: {e}");
        }
    }
}

/// Reads `file` again every [`SETTLE`] until the text stops changing (or cannot be read,
/// when the last text read stands).
async fn settled(file: &std::path::Path, mut text: String) -> String {
    loop {
        tokio::time::sleep(SETTLE).await;
        match std::fs::read_to_string(file) {
            Ok(again) if again == text => return text,
            Ok(again) => text = again,
            Err(_) => return text,
        }
    }
}
