//! `sluice broker`: the Kafka protocol listener on a data directory, until SIGINT/SIGTERM.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sluice_broker::{Broker, BrokerConfig, BrokerState};
use sluice_log::{Log, LogOptions};
use tokio_util::sync::CancellationToken;

use crate::cli::BrokerArgs;

fn parse_advertised(s: &str) -> Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("--advertised-listener `{s}` must be HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--advertised-listener `{s}`: `{port}` is not a port"))?;
    if host.is_empty() {
        bail!("--advertised-listener `{s}` has no host");
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

pub fn run(data_dir: &Path, args: BrokerArgs) -> Result<()> {
    let advertised = args
        .advertised_listener
        .as_deref()
        .map(parse_advertised)
        .transpose()?;
    let config = BrokerConfig {
        listen: args.listen,
        advertised,
        auto_create_topics: !args.no_auto_create_topics,
        default_partitions: args.default_partitions.max(1),
        max_request_bytes: args.max_request_bytes,
        ..BrokerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let log = Log::open(data_dir, LogOptions::default())
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        // Bind first so that port 0 resolves before clients are told where to connect.
        let probe = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let port = probe.local_addr()?.port();
        drop(probe);
        let config = BrokerConfig {
            listen: std::net::SocketAddr::new(config.listen.ip(), port),
            ..config
        };
        let state = BrokerState::new(log.clone(), config, port)?;
        let broker = Broker::bind(state.clone()).await?;
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
