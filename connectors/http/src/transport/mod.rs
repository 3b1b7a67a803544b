//! The sink's [`Transport`]: one reqwest client (connections kept alive and reused), the
//! user's method, headers and authentication, the body compressed as asked, and an
//! `Idempotency-Key` naming the records in the request.
//!
//! Secrets (the bearer token, the basic password) live only in the client's headers; they
//! are never logged, and `Debug` prints them redacted.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::batch::ClosedBatch;
use crate::body::Compression;
use crate::deliver::{Answer, NoAnswer, Transport, BODY_EXCERPT};

mod oauth2;
pub use oauth2::OAuth2Config;

use oauth2::TokenCache;

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
    /// Client credentials: a token fetched and refreshed by the transport.
    OAuth2(OAuth2Config),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Auth::OAuth2(c) => write!(f, "OAuth2({c:?})"),
        }
    }
}

/// What the transport needs from the sink's settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// `POST` (default), `PUT` or `PATCH`.
    pub method: reqwest::Method,
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    pub compression: Compression,
    pub auth: Auth,
    /// The whole request, connect to last byte of the answer.
    pub timeout: Duration,
    /// Extra trust and a client certificate for https:// (the system's roots always).
    pub tls: TlsFiles,
}

/// `tls`: PEM files read when the task starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificates to trust beyond the system's roots (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// The client certificate (chain) and its private key, for servers that ask for one.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// A header the user set that HTTP cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("header {name:?}: not a valid header name")]
    HeaderName { name: String },
    #[error("header {name:?}: its value is not a valid header value (control characters?)")]
    HeaderValue { name: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    #[error("tls.{setting} {path}: {message}")]
    Tls {
        setting: &'static str,
        path: String,
        message: String,
    },
}

/// Requests over reqwest.
#[derive(Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    method: reqwest::Method,
    compression: Compression,
    oauth2: Option<TokenCache>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCache")
    }
}

impl HttpTransport {
    pub fn new(config: &TransportConfig) -> Result<HttpTransport, TransportError> {
        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: &str, secret: bool| {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                TransportError::HeaderName {
                    name: name.to_string(),
                }
            })?;
            let mut value =
                HeaderValue::from_str(value).map_err(|_| TransportError::HeaderValue {
                    name: name.to_string(),
                })?;
            value.set_sensitive(secret);
            headers.insert(header, value);
            Ok::<(), TransportError>(())
        };
        if !config.content_type.is_empty() {
            put("content-type", &config.content_type, false)?;
        }
        for (name, value) in &config.headers {
            put(name, value, false)?;
        }
        if let Some(encoding) = config.compression.content_encoding() {
            put("content-encoding", encoding, false)?;
        }
        match &config.auth {
            Auth::None => {}
            Auth::Bearer(token) => put("authorization", &format!("Bearer {token}"), true)?,
            Auth::Basic { username, password } => {
                let credentials = base64(format!("{username}:{password}").as_bytes());
                put("authorization", &format!("Basic {credentials}"), true)?
            }
            Auth::OAuth2(_) => {}
        }
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        let read = |setting: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| TransportError::Tls {
                setting,
                path: path.display().to_string(),
                message: format!("cannot read it: {e}"),
            })
        };
        if let Some(ca) = &config.tls.ca_file {
            let pem = read("ca_file", ca)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| TransportError::Tls {
                    setting: "ca_file",
                    path: ca.display().to_string(),
                    message: "holds no PEM certificate".into(),
                })?;
            for c in certificates {
                builder = builder.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
            let mut pem = read("cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read("key_file", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| TransportError::Tls {
                setting: "cert_file",
                path: cert.display().to_string(),
                message: format!(
                    "with key_file {}: not a PEM certificate and private key: {e}",
                    key.display()
                ),
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .default_headers(headers)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TransportError::Client(e.to_string()))?;
        Ok(HttpTransport {
            client,
            method: config.method.clone(),
            compression: config.compression,
            oauth2: match &config.auth {
                Auth::OAuth2(c) => Some(TokenCache::new(c.clone())),
                _ => None,
            },
        })
    }
}

/// A page the poller fetched: the whole body, up to its limit.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The `Link` header, as sent.
    pub link: Option<String>,
    pub body: Vec<u8>,
}

impl HttpTransport {
    /// Sends the request `make` builds, with the OAuth2 token when there is one; a 401 to a
    /// token we hold (revoked, or expired early) fetches a new one and sends again, once.
    async fn authorized(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, NoAnswer> {
        let mut rejected: Option<String> = None;
        loop {
            let mut request = make();
            let token = match &self.oauth2 {
                Some(cache) => {
                    let token = cache.token(&self.client, rejected.as_deref()).await?;
                    let mut value =
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            NoAnswer::Stop(
                                "the token endpoint sent a token HTTP cannot carry".into(),
                            )
                        })?;
                    value.set_sensitive(true);
                    request = request.header(reqwest::header::AUTHORIZATION, value);
                    Some(token)
                }
                None => None,
            };
            let response = request
                .send()
                .await
                .map_err(|e| NoAnswer::Lost(describe(&e)))?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && rejected.is_none() {
                if let Some(token) = token {
                    rejected = Some(token);
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// `GET url` (the poller's request), its body read whole; a body past `max_body` bytes
    /// is an error that names the limit, as is a broken connection.
    pub async fn get(&self, url: &str, max_body: usize) -> Result<Fetched, NoAnswer> {
        let mut response = self.authorized(|| self.client.get(url)).await?;
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (retry_after, link) = (
            header(reqwest::header::RETRY_AFTER),
            header(reqwest::header::LINK),
        );
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| NoAnswer::Lost(describe(&e)))?
        {
            if body.len() + chunk.len() > max_body {
                return Err(NoAnswer::Stop(format!(
                    "the answer is larger than max_body ({max_body} bytes)"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            retry_after,
            link,
            body,
        })
    }
}

impl Transport for HttpTransport {
    async fn send(&self, batch: &ClosedBatch, idempotency_key: &str) -> Result<Answer, NoAnswer> {
        let body = self
            .compression
            .apply(&batch.body)
            .map_err(|e| NoAnswer::Lost(format!("could not compress the body: {e}")))?;
        let mut response = self
            .authorized(|| {
                self.client
                    .request(self.method.clone(), &batch.url)
                    .header("idempotency-key", idempotency_key)
                    .body(body.clone())
            })
            .await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        // Read a small answer whole so the connection goes back to the pool; keep only the
        // start of a large one.
        while let Ok(Some(chunk)) = response.chunk().await {
            if body.len() < BODY_EXCERPT {
                body.extend_from_slice(&chunk[..chunk.len().min(BODY_EXCERPT - body.len())]);
            } else if body.len() >= 64 * BODY_EXCERPT {
                break;
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// reqwest's error with its causes, which name what actually happened ("connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod oauth2_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
