//! Plain SQL connections (tokio-postgres), shared by the sink and both sources, with TLS
//! as the connection's `sslmode` asks ([`crate::tls`]).

use sluice_connector_sdk::connector::ConnectorError;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{PgConnection, TlsError};

/// Why a connection did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

impl OpenError {
    /// What went wrong with TLS, when it was TLS (a setting, a file, a certificate the
    /// connection refused, or a server without TLS when it is required): never helped by
    /// trying again.
    pub fn tls_problem(&self) -> Option<String> {
        match self {
            OpenError::Tls(e) => Some(e.to_string()),
            OpenError::Postgres(e) => {
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    // rustls' error travels inside an io::Error, which hides it from `source`.
                    let inner = s
                        .downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref())
                        .and_then(|i| i.downcast_ref::<tokio_rustls::rustls::Error>());
                    if let Some(r) =
                        inner.or_else(|| s.downcast_ref::<tokio_rustls::rustls::Error>())
                    {
                        return Some(format!(
                            "TLS to Postgres: the server's certificate was refused ({r}): check `sslrootcert`, and for `sslmode=verify-full` that `host` is a name the certificate holds"
                        ));
                    }
                    source = s.source();
                }
                let text = e.to_string();
                text.contains("server does not support TLS").then(|| {
                    "TLS to Postgres: the server does not offer TLS, and `sslmode` requires it (turn `ssl` on in the server, or use `sslmode=prefer`)".to_string()
                })
            }
        }
    }
}

impl OpenError {
    /// As a connector's error: TLS problems are fatal (trying again cannot help), and what
    /// Postgres said is judged by `db_error`, the connector's own rule.
    pub fn into_connector(
        self,
        db_error: impl FnOnce(&tokio_postgres::Error) -> ConnectorError,
    ) -> ConnectorError {
        match (self.tls_problem(), self) {
            (Some(tls), _) => ConnectorError::fatal(tls),
            (None, OpenError::Postgres(e)) => db_error(&e),
            (None, e) => ConnectorError::fatal(e.to_string()),
        }
    }
}

/// Whether an error Postgres reports (its SQLSTATE) may pass if the same thing is tried
/// again later: connection exceptions, a server shutting down or restarting ("terminating
/// connection due to administrator command", "cannot connect now"), an object in use,
/// serialization failures and deadlocks, too many connections.
pub fn retry_can_help(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("57P")
        || matches!(sqlstate, "55006" | "40001" | "40P01" | "53300")
}

/// Connects; the connection's driver runs on the current runtime until the client is
/// dropped.
pub async fn open(connection: &PgConnection) -> Result<Client, OpenError> {
    // Like libpq, no TLS over a Unix socket (whatever `sslmode` says): the socket never
    // leaves the machine, and there is no host name to verify.
    let unix_only = connection
        .config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    if !connection.tls.wanted() || unix_only {
        let mut config = connection.config.clone();
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, driver) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        return Ok(client);
    }
    let tls = MakeRustlsConnect::new(connection.tls.client_config()?);
    let (client, driver) = connection.config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = driver.await;
    });
    Ok(client)
}
