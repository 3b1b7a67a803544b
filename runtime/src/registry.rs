//! `sluice registry`: the schema registry's HTTP API on a data directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;
use sluice_log::{Log, LogOptions};
use sluice_schema_registry::api::AuthConfig;
use sluice_schema_registry::registry::Registry;
use sluice_schema_registry::serve::RegistryListener;
use sluice_schema_registry::store::LogStore;

use crate::cli::RegistryArgs;

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    listen: Option<SocketAddr>,
    #[serde(default)]
    auth: AuthConfig,
}

pub fn run(data_dir: &Path, args: RegistryArgs) -> Result<()> {
    let file: RegistryFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not a valid registry config", path.display()))?
        }
        None => RegistryFile::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081)));
    // Refused before the data directory is touched; `RegistryListener::bind` checks again.
    sluice_listeners::check(&sluice_listeners::Listener {
        service: sluice_listeners::Service::Registry,
        addr: listen,
        authenticated: file.auth.is_enabled(),
        allow_unauthenticated: false,
    })
    .map_err(|e| anyhow::anyhow!("{e} (in --config)"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let log = Log::open(data_dir, LogOptions::default())
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        let store = LogStore::open(&log)?;
        let registry = Arc::new(Registry::open(Arc::new(store))?);
        let listener = RegistryListener::bind(listen, registry, file.auth).await?;
        println!(
            "sluice registry listening on http://{} (auth: {}), data in {}",
            listener.local_addr(),
            if listener.is_authenticated() {
                "on"
            } else {
                "off"
            },
            data_dir.display()
        );
        listener.serve(crate::broker::wait_for_signal()).await?;
        let closing = log.clone();
        tokio::task::spawn_blocking(move || closing.close()).await??;
        Ok(())
    })
}
