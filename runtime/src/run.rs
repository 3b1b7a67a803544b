//! `sluice run FILE`: validate the pipeline file, open the log, start the connectors (and the
//! Kafka listener and schema registry when `runtime:` asks for them), run until SIGINT or
//! SIGTERM, then stop within a time limit, naming anything that did not stop.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice_connector_sdk::registry::ConnectorRegistry;
use sluice_log::{Log, LogOptions};
use sluice_worker::config::load_pipeline;
use sluice_worker::metrics::WorkerMetrics;
use sluice_worker::plugins;
use sluice_worker::run::{Event, Observer, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Every connector type built into this binary.
pub fn builtin_connectors() -> Result<ConnectorRegistry> {
    let mut registry = ConnectorRegistry::new();
    sluice_connector_file::register(&mut registry)?;
    sluice_connector_http::register(&mut registry)?;
    sluice_connector_postgres::register(&mut registry)?;
    Ok(registry)
}

/// The built-in connectors plus the plugins in the folders `file` names in `plugin_path`
/// and in `SLUICE_PLUGIN_PATH`. A library that fails to load is reported on stderr and
/// skipped: the pipelines that do not need it still run.
pub fn connectors_for(file: &Path) -> Result<ConnectorRegistry> {
    let mut registry = builtin_connectors()?;
    let env = |name: &str| std::env::var(name).ok();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let dirs = plugins::plugin_dirs(
        &plugins::plugin_path_in(&text, &env),
        std::env::var(plugins::PLUGIN_PATH_ENV).ok(),
    );
    let report = plugins::load_dirs(&dirs, &mut registry);
    for p in &report.loaded {
        let types: Vec<&str> = p.connectors.iter().map(|c| c.name.as_str()).collect();
        eprintln!(
            "plugin {} {} ({}): {}",
            p.name,
            p.version,
            p.path.display(),
            types.join(", ")
        );
    }
    for e in &report.failed {
        eprintln!("plugin not loaded: {e}");
        tracing::warn!(error = %e, "plugin not loaded");
    }
    Ok(registry)
}

/// Tells the terminal what the supervisor reports: retries, restarts, failures. Each line
/// goes out in one write, so that a panic message printed by another thread (a plugin's own
/// copy of the standard library has its own stderr lock) cannot cut into it.
fn print_events() -> Observer {
    Arc::new(|event: &Event| {
        let connector_of = |task: &str| task.rsplit_once('/').map_or(task, |(c, _)| c).to_string();
        let line = match event {
            Event::Retrying {
                task,
                what,
                error,
                for_secs,
            } => format!(
                "connector {} task {task}: {what} failed, retrying for up to {for_secs} s: {error}\n",
                connector_of(task)
            ),
            Event::Recovered {
                task,
                what,
                failures,
            } => format!(
                "connector {} task {task} recovered: {what} succeeded after {failures} retries\n",
                connector_of(task)
            ),
            Event::Restarting {
                task,
                error,
                attempt,
                max_attempts,
                backoff,
            } => format!(
                "connector {} task {task} failed in {}: {}; restarting in {:.1} s (attempt {attempt} of {max_attempts})\n",
                connector_of(task),
                error.stage,
                error.message,
                backoff.as_secs_f64()
            ),
            Event::Failed { task, error } => format!(
                "connector {} task {task} FAILED in {}: {}\n",
                connector_of(task),
                error.stage,
                error.message
            ),
            _ => return,
        };
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    })
}

pub fn run(file: &Path, rest_listen: Option<std::net::SocketAddr>, watch: bool) -> Result<()> {
    let registry = Arc::new(connectors_for(file)?);
    let env = |name: &str| std::env::var(name).ok();
    // The text the reload loop compares with: read before the pipeline is built, so that a
    // change written once the process says it runs is never taken for the running text.
    let started_from = std::fs::read_to_string(file).unwrap_or_default();
    let pipeline = match load_pipeline(file, &registry, &env) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            bail!(
                "{} has {} error(s); nothing was started",
                file.display(),
                errors.errors.len()
            );
        }
    };
    let log = Log::open(&pipeline.data_dir, LogOptions::default())
        .with_context(|| format!("opening data directory {}", pipeline.data_dir.display()))?;
    let pipeline_name = file
        .file_stem()
        .map_or("pipeline".into(), |s| s.to_string_lossy().into_owned());
    // One registry of metrics for the whole process: the tasks', the log's, the broker's
    // and the schema registry's, all on the REST API's `/metrics`.
    let mut metrics = WorkerMetrics::new(&pipeline_name);
    log.register_metrics(metrics.registry_mut());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listeners = CancellationToken::new();
    if let Some(plan) = &pipeline.broker {
        let config = sluice_broker::BrokerConfig {
            listen: plan.listen,
            advertised: plan.advertised.clone(),
            allow_unauthenticated: plan.unauthenticated,
            ..Default::default()
        };
        let broker = runtime.block_on(sluice_broker::Broker::open(log.clone(), config))?;
        broker.state().metrics.register(metrics.registry_mut());
        if let Some(w) = broker.warning() {
            eprintln!("warning: {w}");
            tracing::warn!("{w}");
        }
        println!("kafka listener on {}", broker.local_addr());
        runtime.spawn(broker.serve(listeners.clone()));
    }
    // On a Kafka cluster the pipelines' topics, source positions and sink groups are the
    // cluster's; a cluster that does not answer stops `sluice run` here.
    let kafka = match &pipeline.kafka {
        Some(settings) => {
            let k = sluice_worker::on_kafka::KafkaRuntime::connect(settings.clone())?;
            println!(
                "on the Kafka cluster at {} as group {}",
                settings.bootstrap_servers, settings.group
            );
            Some(Arc::new(k))
        }
        None => None,
    };
    // One registry for the HTTP API and the pipelines' `avro` format alike.
    let schemas = if pipeline.registry.is_some()
        || pipeline
            .sources
            .iter()
            .chain(&pipeline.sinks)
            .any(|p| p.uses_avro())
    {
        // On a cluster, every worker's registry is on the cluster's `_schemas`, and reads
        // here follow what the others write.
        let store: Arc<dyn sluice_schema_registry::store::SchemaStore> = match &kafka {
            Some(k) => Arc::new(sluice_kafka::KafkaSchemaStore::open(&k.cluster)?),
            None => Arc::new(sluice_schema_registry::store::LogStore::open(&log)?),
        };
        let registry = Arc::new(sluice_schema_registry::registry::Registry::open(store)?);
        if kafka.is_some() {
            let follower = Arc::downgrade(&registry);
            std::thread::Builder::new()
                .name("schemas-follower".into())
                .spawn(move || {
                    while let Some(registry) = follower.upgrade() {
                        if let Err(e) = registry.refresh() {
                            tracing::warn!(error = %e, "reading other workers' schema changes");
                        }
                        drop(registry);
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                })?;
        }
        if pipeline.registry.is_some() {
            registry.request_metrics().register(metrics.registry_mut());
        }
        Some(registry)
    } else {
        None
    };
    if let (Some(plan), Some(reg)) = (&pipeline.registry, &schemas) {
        let listener = runtime.block_on(sluice_schema_registry::serve::RegistryListener::bind(
            plan.listen,
            reg.clone(),
            plan.auth.clone(),
        ))?;
        println!(
            "schema registry on http://{} (auth: {})",
            listener.local_addr(),
            if listener.is_authenticated() {
                "on"
            } else {
                "off"
            }
        );
        let stop = listeners.clone();
        runtime.spawn(listener.serve(async move { stop.cancelled().await }));
    }
    // The REST listener is bound before any connector starts, so that a port in use stops
    // `sluice run` before it has done anything.
    let rest = match pipeline.rest.clone() {
        Some(mut plan) => {
            if let Some(addr) = rest_listen {
                plan.listen = addr;
            }
            Some(runtime.block_on(sluice_rest::serve::RestListener::bind(
                plan.listen,
                plan.auth,
            ))?)
        }
        None => None,
    };
    let on_cluster = kafka.is_some();
    // Kafka Connect's `worker_id`: the REST address, else this host and process.
    let worker_id = rest
        .as_ref()
        .map(|l| l.local_addr().to_string())
        .unwrap_or_else(|| format!("sluice-{}", std::process::id()));
    let worker = Arc::new(Worker::start(
        &pipeline,
        &registry,
        &log,
        WorkerOptions {
            schemas: schemas.clone(),
            observer: Some(print_events()),
            metrics: Some(Arc::new(metrics)),
            kafka,
        },
    )?);
    for problem in worker.restore_problems() {
        eprintln!("warning: {problem}");
    }
    // On a cluster, connectors created over REST and the states asked of connectors on any
    // worker are applied here too, and task states are shared.
    if on_cluster {
        let follower = Arc::downgrade(&worker);
        let registry = registry.clone();
        std::thread::Builder::new()
            .name("configs-follower".into())
            .spawn(move || {
                while let Some(worker) = follower.upgrade() {
                    if let Err(e) = worker.follow_configs(&registry) {
                        tracing::warn!(error = %e, "reading other workers' connector changes");
                    }
                    if let Err(e) = worker.share_status(&worker_id) {
                        tracing::warn!(error = %e, "sharing task states with the other workers");
                    }
                    drop(worker);
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
            })?;
    }
    if let Some(listener) = rest {
        let addr = listener.local_addr();
        let cluster_id = sluice_broker::load_cluster_id(log.dir()).unwrap_or_default();
        let api = sluice_rest::RestApi {
            worker: worker.clone(),
            registry: registry.clone(),
            info: sluice_rest::ServerInfo::new(
                &cluster_id,
                &addr.to_string(),
                &file.display().to_string(),
            ),
            data: Some(sluice_rest::DataAccess {
                log: log.clone(),
                schemas: schemas.clone(),
            }),
        };
        println!(
            "rest api on http://{addr} (auth: {})",
            if listener.is_authenticated() {
                "on"
            } else {
                "off"
            }
        );
        let stop = listeners.clone();
        runtime.spawn(listener.serve(api, async move { stop.cancelled().await }));
    }
    for s in &pipeline.sources {
        println!(
            "source {} ({}) -> topic {}: started, {} task(s)",
            s.name,
            s.type_name,
            s.topics.join(", "),
            s.tasks
        );
    }
    for s in &pipeline.sinks {
        println!(
            "sink {} ({}) <- topics {}: started",
            s.name,
            s.type_name,
            s.topics.join(", ")
        );
    }
    // SIGHUP reloads (registered before anyone is told the pipeline runs: unhandled, it
    // would end the process).
    let hangup = {
        let _in_runtime = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?
    };
    let gate = crate::reload::ReloadGate::default();
    let reloads = CancellationToken::new();
    runtime.spawn(crate::reload::reload_loop(
        crate::reload::Reloader {
            file: file.to_path_buf(),
            worker: worker.clone(),
            registry: registry.clone(),
            active: pipeline.clone(),
            started_from,
            watch,
            gate: gate.clone(),
        },
        hangup,
        reloads.clone(),
    ));
    println!(
        "sluice run: {} running; data in {}{}",
        file.display(),
        pipeline.data_dir.display(),
        if watch {
            "; reloads when the file changes or on SIGHUP"
        } else {
            "; reloads on SIGHUP"
        }
    );
    runtime.block_on(crate::broker::wait_for_signal());
    println!(
        "sluice run: stopping (up to {} s)",
        SHUTDOWN_GRACE.as_secs()
    );
    reloads.cancel();
    let _no_reload_from_here = gate.lock().unwrap_or_else(|e| e.into_inner());
    let left = worker.stop(SHUTDOWN_GRACE);
    listeners.cancel();
    drop(runtime);
    if !left.is_empty() {
        eprintln!(
            "sluice run: these tasks did not stop in time and were abandoned: {}",
            left.join(", ")
        );
    }
    log.close()?;
    println!("sluice run: stopped cleanly");
    Ok(())
}
