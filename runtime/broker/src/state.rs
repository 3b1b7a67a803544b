//! What every request handler shares: the log, the settings, the group coordinator and the
//! idempotent-producer table.

use std::path::Path;
use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;
use sluice_log::Log;

use crate::config::BrokerConfig;
use crate::coordinator::Coordinator;
use crate::producers::Producers;

pub struct BrokerState {
    pub log: Log,
    pub config: BrokerConfig,
    /// Host and port given to clients.
    pub advertised: (String, u16),
    /// Stable across restarts (kept in the data directory).
    pub cluster_id: String,
    pub groups: Coordinator,
    pub producers: Producers,
    /// Requests, bytes and connections, counted from the start (see [`crate::metrics`]).
    pub metrics: crate::metrics::BrokerMetrics,
}

impl BrokerState {
    /// `bound_port` is the port actually bound (for `--listen 127.0.0.1:0`).
    /// Without `config.advertised`, clients are told the listening address itself, which
    /// a wildcard (`0.0.0.0`) cannot be: that is refused.
    pub fn new(
        log: Log,
        config: BrokerConfig,
        bound_port: u16,
    ) -> Result<Arc<BrokerState>, crate::BrokerError> {
        let advertised = match config.advertised.clone() {
            Some(a) => a,
            None => {
                sluice_listeners::advertised(config.listen, None)?;
                (config.listen.ip().to_string(), bound_port)
            }
        };
        let cluster_id = load_cluster_id(log.dir()).map_err(crate::BrokerError::State)?;
        let groups = Coordinator::new(
            log.clone(),
            config.min_session_timeout,
            config.max_session_timeout,
            config.group_initial_rebalance_delay,
        );
        Ok(Arc::new(BrokerState {
            log,
            config,
            advertised,
            cluster_id,
            groups,
            producers: Producers::new(),
            metrics: Default::default(),
        }))
    }
}

/// The cluster id kept in the data directory (`cluster.id`), created on first use.
pub fn load_cluster_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id: String = bytes
        .iter()
        .chain(bytes[..6].iter())
        .map(|b| ALPHABET[(*b & 63) as usize] as char)
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Runs blocking log work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "blocking log task failed");
            None
        }
    }
}
