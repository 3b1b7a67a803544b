//! Plain SQL connections (tokio-postgres), shared by the sink and both sources.

use tokio_postgres::{Client, Config, NoTls};

/// Connects; the connection's driver runs on the current runtime until the client is
/// dropped.
pub async fn open(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
