//! Serving the API on a socket: the one way both `sluice registry` and `sluice run` open the
//! registry's listener, so both enforce one policy ([`sluice_listeners::check`]): a
//! non-loopback address needs authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_listeners::{Listener, ListenerError, Service};

use crate::api::{router_with_auth, AuthConfig};
use crate::registry::Registry;

/// Why the registry's listener did not open.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Refused(#[from] ListenerError),
    #[error("the schema registry cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound registry listener, not yet serving.
pub struct RegistryListener {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    authenticated: bool,
}

impl RegistryListener {
    /// Checks `addr` against the listener policy, then binds it.
    pub async fn bind(
        addr: SocketAddr,
        registry: Arc<Registry>,
        auth: AuthConfig,
    ) -> Result<RegistryListener, ServeError> {
        let authenticated = auth.is_enabled();
        sluice_listeners::check(&Listener {
            service: Service::Registry,
            addr,
            authenticated,
            allow_unauthenticated: false,
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(RegistryListener {
            listener,
            app: router_with_auth(registry, auth),
            authenticated,
        })
    }

    /// The bound address (the real port when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Serves until `shutdown` completes, then lets requests in progress finish.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
