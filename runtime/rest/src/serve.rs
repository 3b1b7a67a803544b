//! The REST listener: checked against the listener policy (a non-loopback address needs
//! authentication), bound, then served until shutdown.

use std::net::SocketAddr;

use sluice_listeners::auth::AuthConfig;
use sluice_listeners::{Listener, ListenerError, Service};

use crate::{router_with_auth, RestApi};

/// Why the REST listener did not open.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Refused(#[from] ListenerError),
    #[error("the REST API cannot listen on {addr}: {source} (set `runtime.rest.listen` to a free address, or pass --rest-listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound REST listener, not yet serving.
pub struct RestListener {
    listener: tokio::net::TcpListener,
    auth: AuthConfig,
}

impl RestListener {
    /// Checks `addr` against the listener policy, then binds it.
    pub async fn bind(addr: SocketAddr, auth: AuthConfig) -> Result<RestListener, ServeError> {
        sluice_listeners::check(&Listener {
            service: Service::Rest,
            addr,
            authenticated: auth.is_enabled(),
            allow_unauthenticated: false,
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(RestListener { listener, auth })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn is_authenticated(&self) -> bool {
        self.auth.is_enabled()
    }

    /// Serves `api` until `shutdown` completes, then lets requests in progress finish.
    pub async fn serve(
        self,
        api: RestApi,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, router_with_auth(api, self.auth))
            .with_graceful_shutdown(shutdown)
            .await
    }
}
