//! A replication connection (`replication=database`): startup and authentication
//! (trust, cleartext, MD5, SCRAM-SHA-256), the simple-query commands of the replication
//! protocol (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, `START_REPLICATION`), and the
//! CopyBoth stream that carries WAL data one way and standby status updates the other.
//!
//! `tokio-postgres` cannot open such a connection (no `replication` startup parameter, no
//! CopyBoth), so framing is read here; `postgres-protocol` writes the frontend messages and
//! does the SCRAM exchange. Reads fill one buffer and frames are cut from it, so a read may
//! be cancelled (by `select!`) without losing bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::lsn::Lsn;
use super::pgoutput::PG_EPOCH_OFFSET_MICROS;
use super::CdcError;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The largest backend message accepted: a row of a wide table with TOASTed values can be
/// large, but not unbounded.
const MAX_MESSAGE: usize = 1 << 30;

/// What the server sends inside the CopyBoth stream.
#[derive(Debug)]
pub enum Replicated {
    /// WAL data: `start` is where this message's change sits, `wal_end` the server's end.
    XLogData {
        start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    /// The server's end of WAL; `reply`: it wants a status update now.
    Keepalive { wal_end: Lsn, reply: bool },
}

/// A server's ErrorResponse, its fields by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)?;
        if let Some(d) = &self.detail {
            write!(f, "; {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

fn parse_error_fields(mut body: &[u8]) -> ServerError {
    let mut e = ServerError {
        code: String::new(),
        message: String::new(),
        detail: None,
        hint: None,
    };
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            break;
        }
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        match kind {
            b'C' => e.code = text,
            b'M' => e.message = text,
            b'D' => e.detail = Some(text),
            b'H' => e.hint = Some(text),
            _ => {}
        }
        body = rest.get(end + 1..).unwrap_or(&[]);
    }
    e
}

/// Asks the server for TLS (SSLRequest) and, when it agrees, does the handshake; a server
/// that declines goes on in plain text unless `sslmode` requires TLS.
async fn start_tls(
    mut s: tokio::net::TcpStream,
    host: &str,
    tls: &crate::tls::PgTls,
) -> Result<Box<dyn Io>, CdcError> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]; // 80877103
    let lost = |e: std::io::Error| CdcError::Lost(format!("asking for TLS: {e}"));
    s.write_all(&SSL_REQUEST).await.map_err(lost)?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await.map_err(lost)?;
    match answer[0] {
        b'S' => {
            let connector = tls.connector().map_err(|e| CdcError::Config(e.to_string()))?;
            let name = crate::tls::server_name(host).map_err(|e| CdcError::Config(e.to_string()))?;
            let stream = connector.connect(name, s).await.map_err(|e| {
                match e.get_ref().and_then(|r| r.downcast_ref::<tokio_rustls::rustls::Error>()) {
                    Some(r) => CdcError::Config(format!(
                        "TLS to Postgres: the server's certificate was refused ({r}): check `sslrootcert`, and for `sslmode=verify-full` that `host` is a name the certificate holds"
                    )),
                    None => CdcError::Lost(format!("TLS handshake: {e}")),
                }
            })?;
            Ok(Box::new(stream))
        }
        b'N' if !tls.required() => Ok(Box::new(s)),
        b'N' => Err(CdcError::Config(
            "TLS to Postgres: the server does not offer TLS, and `sslmode` requires it (turn `ssl` on in the server, or use `sslmode=prefer`)".into(),
        )),
        other => Err(CdcError::Protocol(format!(
            "answer `{}` to a TLS request",
            other.escape_ascii()
        ))),
    }
}

/// One open replication connection.
pub struct ReplicationConnection {
    io: Box<dyn Io>,
    read: BytesMut,
    write: BytesMut,
    /// Inside CopyBoth (after START_REPLICATION).
    copying: bool,
}

/// Rows of a simple query, every value as text.
pub type Rows = Vec<Vec<Option<String>>>;

impl ReplicationConnection {
    /// Connects and authenticates as `config` says, with `replication=database`.
    pub async fn connect(
        connection: &crate::tls::PgConnection,
        application_name: &str,
    ) -> Result<ReplicationConnection, CdcError> {
        let config = &connection.config;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        let io: Box<dyn Io> = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => {
                let addr = format!("{host}:{port}");
                let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
                    .await
                    .map_err(|_| {
                        CdcError::Unreachable(format!("{addr}: no answer in {timeout:?}"))
                    })?
                    .map_err(|e| CdcError::Unreachable(format!("{addr}: {e}")))?;
                let _ = s.set_nodelay(true);
                if connection.tls.wanted() {
                    start_tls(s, host, &connection.tls).await?
                } else {
                    Box::new(s)
                }
            }
            Some(tokio_postgres::config::Host::Unix(dir)) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let s = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| CdcError::Unreachable(format!("{}: {e}", path.display())))?;
                Box::new(s)
            }
            None => return Err(CdcError::Config("the connection names no host".into())),
        };
        let mut c = ReplicationConnection {
            io,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(1024),
            copying: false,
        };
        let user = config.get_user().unwrap_or("postgres");
        let dbname = config.get_dbname().unwrap_or(user);
        let params = [
            ("user", user),
            ("database", dbname),
            ("replication", "database"),
            ("application_name", application_name),
            ("client_encoding", "UTF8"),
            // The text output `types` reads (the same as the snapshot's session).
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            ("IntervalStyle", "iso_8601"),
            ("extra_float_digits", "3"),
        ];
        frontend::startup_message(params.iter().copied(), &mut c.write)
            .map_err(|e| CdcError::Protocol(e.to_string()))?;
        c.flush().await?;
        c.authenticate(user, config.get_password()).await?;
        // ParameterStatus, BackendKeyData, then ReadyForQuery.
        loop {
            let (tag, body) = c.message().await?;
            match tag {
                b'Z' => return Ok(c),
                b'E' => return Err(CdcError::from_server(parse_error_fields(&body))),
                _ => {}
            }
        }
    }

    async fn authenticate(&mut self, user: &str, password: Option<&[u8]>) -> Result<(), CdcError> {
        let need_password = || {
            CdcError::Auth(format!(
                "the server asks a password of `{user}` and the connection gives none (add `password=…`)"
            ))
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                b'E' => return Err(CdcError::from_server(parse_error_fields(&body))),
                b'R' => {}
                other => {
                    return Err(CdcError::Protocol(format!(
                        "message `{}` during authentication",
                        other.escape_ascii()
                    )))
                }
            }
            let mut b = &body[..];
            if b.len() < 4 {
                return Err(CdcError::Protocol("a short authentication message".into()));
            }
            match b.get_i32() {
                0 => return Ok(()),
                3 => {
                    let pw = password.ok_or_else(need_password)?;
                    frontend::password_message(pw, &mut self.write)
                        .map_err(|e| CdcError::Protocol(e.to_string()))?;
                }
                5 => {
                    let pw = password.ok_or_else(need_password)?;
                    if b.len() < 4 {
                        return Err(CdcError::Protocol("an MD5 request without salt".into()));
                    }
                    let salt = [b[0], b[1], b[2], b[3]];
                    let hash =
                        postgres_protocol::authentication::md5_hash(user.as_bytes(), pw, salt);
                    frontend::password_message(hash.as_bytes(), &mut self.write)
                        .map_err(|e| CdcError::Protocol(e.to_string()))?;
                }
                10 => {
                    let pw = password.ok_or_else(need_password)?;
                    let offers_scram = b.split(|&c| c == 0).any(|m| m == SCRAM_SHA_256.as_bytes());
                    if !offers_scram {
                        return Err(CdcError::Auth(
                            "the server offers no SASL mechanism Sluice speaks (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    let s = ScramSha256::new(pw, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.write)
                        .map_err(|e| CdcError::Protocol(e.to_string()))?;
                    scram = Some(s);
                }
                11 => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| CdcError::Protocol("SASL continue before SASL".into()))?;
                    s.update(b).map_err(|e| CdcError::Auth(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.write)
                        .map_err(|e| CdcError::Protocol(e.to_string()))?;
                }
                12 => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| CdcError::Protocol("SASL final before SASL".into()))?;
                    s.finish(b)
                        .map_err(|e| CdcError::Auth(format!("SCRAM: the server's proof: {e}")))?;
                    continue;
                }
                other => {
                    return Err(CdcError::Auth(format!(
                        "the server asks for authentication method {other}, which Sluice does not speak (trust, password, md5 and scram-sha-256 work)"
                    )))
                }
            }
            self.flush().await?;
        }
    }

    async fn flush(&mut self) -> Result<(), CdcError> {
        self.io
            .write_all(&self.write)
            .await
            .map_err(|e| CdcError::Lost(format!("writing to the server: {e}")))?;
        self.io
            .flush()
            .await
            .map_err(|e| CdcError::Lost(format!("writing to the server: {e}")))?;
        self.write.clear();
        Ok(())
    }

    /// The next backend message (tag and body); cancel-safe.
    async fn message(&mut self) -> Result<(u8, Bytes), CdcError> {
        loop {
            if self.read.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]])
                        as usize;
                if !(4..=MAX_MESSAGE).contains(&len) {
                    return Err(CdcError::Protocol(format!(
                        "a backend message of {len} bytes"
                    )));
                }
                if self.read.len() > len {
                    let mut frame = self.read.split_to(len + 1);
                    let tag = frame[0];
                    frame.advance(5);
                    // Notices are for the server's log, not for this stream.
                    if tag == b'N' {
                        let n = parse_error_fields(&frame);
                        tracing::debug!(notice = %n.message, "postgres notice");
                        continue;
                    }
                    return Ok((tag, frame.freeze()));
                }
                self.read.reserve(len + 1 - self.read.len());
            }
            let n = self
                .io
                .read_buf(&mut self.read)
                .await
                .map_err(|e| CdcError::Lost(format!("reading from the server: {e}")))?;
            if n == 0 {
                return Err(CdcError::Lost("the server closed the connection".into()));
            }
        }
    }

    /// Whether a whole message is already read and waiting (the next `recv` will not wait
    /// for the network): the stream is then busy, and records may gather into a batch.
    pub fn has_buffered_message(&self) -> bool {
        self.read.len() >= 5 && {
            let len = u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]]);
            self.read.len() > len as usize
        }
    }

    /// Runs one replication command (or plain SQL) and returns its rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Rows, CdcError> {
        frontend::query(sql, &mut self.write).map_err(|e| CdcError::Protocol(e.to_string()))?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                b'D' => rows.push(parse_data_row(&body)?),
                b'E' => failed = Some(parse_error_fields(&body)),
                b'Z' => break,
                b'W' => {
                    return Err(CdcError::Protocol(format!(
                        "`{sql}` started a copy; use start_replication"
                    )))
                }
                _ => {} // RowDescription, CommandComplete, EmptyQueryResponse
            }
        }
        match failed {
            Some(e) => Err(CdcError::from_server(e)),
            None => Ok(rows),
        }
    }

    /// `START_REPLICATION SLOT … LOGICAL start (pgoutput options)`: the connection is then a
    /// CopyBoth stream.
    pub async fn start_replication(
        &mut self,
        slot: &str,
        start: Lsn,
        options: &str,
    ) -> Result<(), CdcError> {
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} ({options})",
            quote_ident(slot)
        );
        frontend::query(&sql, &mut self.write).map_err(|e| CdcError::Protocol(e.to_string()))?;
        self.flush().await?;
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                b'W' => {
                    self.copying = true;
                    return Ok(());
                }
                b'E' => {
                    let e = parse_error_fields(&body);
                    // Drain to ReadyForQuery so the caller may retry on this connection.
                    loop {
                        if self.message().await?.0 == b'Z' {
                            break;
                        }
                    }
                    return Err(CdcError::from_server(e));
                }
                _ => {}
            }
        }
    }

    /// The next message of the stream; cancel-safe.
    pub async fn recv(&mut self) -> Result<Replicated, CdcError> {
        let (tag, body) = self.message().await?;
        match tag {
            b'd' => {
                let mut b = body;
                let Some(&kind) = b.first() else {
                    return Err(CdcError::Protocol("an empty CopyData".into()));
                };
                b.advance(1);
                match kind {
                    b'w' if b.len() >= 24 => {
                        let start = Lsn(b.get_u64());
                        let wal_end = Lsn(b.get_u64());
                        b.advance(8); // the server's send time
                        Ok(Replicated::XLogData {
                            start,
                            wal_end,
                            data: b,
                        })
                    }
                    b'k' if b.len() >= 17 => {
                        let wal_end = Lsn(b.get_u64());
                        b.advance(8);
                        Ok(Replicated::Keepalive {
                            wal_end,
                            reply: b.get_u8() == 1,
                        })
                    }
                    other => Err(CdcError::Protocol(format!(
                        "CopyData `{}` of {} bytes",
                        other.escape_ascii(),
                        b.len()
                    ))),
                }
            }
            b'E' => Err(CdcError::from_server(parse_error_fields(&body))),
            // CopyDone, CommandComplete, ReadyForQuery: the server ended the stream (it is
            // shutting down, or its walsender stopped).
            b'c' | b'C' | b'Z' => Err(CdcError::Lost("the server ended the stream".into())),
            other => Err(CdcError::Protocol(format!(
                "message `{}` in the replication stream",
                other.escape_ascii()
            ))),
        }
    }

    /// A standby status update: everything up to `flushed` is durable on our side, so the
    /// slot may release the WAL before it.
    pub async fn send_status(&mut self, flushed: Lsn, reply: bool) -> Result<(), CdcError> {
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(flushed.0); // written
        body.put_u64(flushed.0); // flushed
        body.put_u64(flushed.0); // applied
        body.put_i64(now_pg_micros());
        body.put_u8(u8::from(reply));
        frontend::CopyData::new(body.freeze())
            .map_err(|e| CdcError::Protocol(e.to_string()))?
            .write(&mut self.write);
        self.flush().await
    }

    /// Ends the stream and the connection politely.
    pub async fn close(mut self) {
        if self.copying {
            frontend::copy_done(&mut self.write);
        }
        frontend::terminate(&mut self.write);
        let _ = self.flush().await;
    }
}

fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, CdcError> {
    let mut b = body;
    if b.len() < 2 {
        return Err(CdcError::Protocol("a short DataRow".into()));
    }
    let n = b.get_i16();
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        if b.len() < 4 {
            return Err(CdcError::Protocol("a short DataRow".into()));
        }
        let len = b.get_i32();
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return Err(CdcError::Protocol("a short DataRow".into()));
        }
        row.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
        b.advance(len);
    }
    Ok(row)
}

fn now_pg_micros() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    unix - PG_EPOCH_OFFSET_MICROS
}

/// `name` as an SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
