//! `sluice broker`: the Kafka protocol listener on a data directory, until SIGINT/SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use sluice_broker::{Broker, BrokerConfig};
use sluice_log::{Log, LogOptions};
use tokio_util::sync::CancellationToken;

use crate::cli::BrokerArgs;

pub fn run(data_dir: &Path, args: BrokerArgs) -> Result<()> {
    // Refused before the data directory is touched; `Broker::open` checks again.
    sluice_listeners::check(&sluice_listeners::Listener {
        service: sluice_listeners::Service::Kafka,
        addr: args.listen,
        authenticated: false,
        allow_unauthenticated: args.allow_unauthenticated,
    })?;
    let advertised =
        sluice_listeners::advertised(args.listen, args.advertised_listener.as_deref())?;
    let config = BrokerConfig {
        listen: args.listen,
        advertised,
        auto_create_topics: !args.no_auto_create_topics,
        default_partitions: args.default_partitions.max(1),
        max_request_bytes: args.max_request_bytes,
        queued_max_request_bytes: args.queued_max_request_bytes,
        allow_unauthenticated: args.allow_unauthenticated,
        group_initial_rebalance_delay: std::time::Duration::from_millis(
            args.group_initial_rebalance_delay_ms,
        ),
        ..BrokerConfig::default()
    };
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let log = Log::open(data_dir, LogOptions::default())
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        let broker = Broker::open(log.clone(), config).await?;
        if let Some(w) = broker.warning() {
            eprintln!("warning: {w}");
            tracing::warn!("{w}");
        }
        let state = broker.state().clone();
        println!(
            "sluice broker listening on {} (advertised {}:{}), data in {}",
            broker.local_addr(),
            state.advertised.0,
            state.advertised.1,
            data_dir.display()
        );
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: draining requests in flight");
            signals.cancel();
        });
        broker.serve(shutdown).await?;
        let closing = log.clone();
        tokio::task::spawn_blocking(move || closing.close()).await??;
        eprintln!("sluice broker stopped cleanly");
        Ok(())
    })
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
