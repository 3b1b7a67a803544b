//! The `http_server` webhook source: settings, their checks (no I/O), and the connector.
//!
//! A caller POSTs to `path` on `listen`; the call passes the rate limit and the caller's
//! credentials ([`guard`]), its body becomes records ([`decode`]), and the caller waits
//! until the runtime says those records are in the log (the SDK's `committed`): only then
//! does it get its 200, so a 2xx is a promise. A full backlog, a stopping pipeline or a log
//! that does not take the records within `ack_timeout` gets a 503 with `Retry-After`, at
//! once; nothing is left hanging ([`task`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value as Json};
use sluice_connector_sdk::config::{ConfigIssue, ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{Result, SourceConnector, SourceTask, TaskInfo};

use crate::settings::{int, issue, strings, text};

pub mod decode;
pub mod guard;
pub mod task;

use decode::BodyKind;
use guard::CallerAuth;

/// The settings of `type: http_server`.
pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("listen", FieldKind::String, "the address to listen on, such as 127.0.0.1:8090 (another address than loopback needs `auth`)"),
        FieldSpec::optional("path", FieldKind::String, Some(json!("/")), "the path callers POST to; `{name}` segments are path parameters (`/hooks/{source}`)"),
        FieldSpec::optional("body", strings(&["json", "json_array", "ndjson", "raw"]), Some(json!("json")), "`json`: the body is one record; `json_array`: one record per element; `ndjson`: one per line; `raw`: the bytes as one record"),
        FieldSpec::optional(
            "auth",
            FieldKind::OneKey(vec![
                FieldSpec::optional(
                    "hmac_sha256",
                    FieldKind::Object(vec![
                        FieldSpec::optional("header", FieldKind::String, Some(json!("X-Hub-Signature-256")), "the header with `sha256=<hex>` of the body"),
                        FieldSpec::required("secret", FieldKind::Secret, "the signing secret"),
                    ]),
                    None,
                    "the body signed with HMAC-SHA256, as GitHub, Stripe-like and many webhook senders do",
                ),
                crate::settings::basic_field(),
                FieldSpec::optional("bearer", FieldKind::Secret, None, "a token callers send as `Authorization: Bearer …`"),
            ]),
            None,
            "how callers prove who they are (none by default, allowed only on loopback)",
        ),
        FieldSpec::optional("max_body", FieldKind::Size, Some(json!("1MiB")), "the largest body taken; a larger one gets 413"),
        FieldSpec::optional(
            "rate_limit",
            FieldKind::Object(vec![
                FieldSpec::required("requests", int(1, 10_000_000), "calls allowed per `per` (bursts up to this many)"),
                FieldSpec::optional("per", FieldKind::Duration, Some(json!("1s")), "the window"),
            ]),
            None,
            "past it, callers get 429 with Retry-After at once (no limit by default)",
        ),
        FieldSpec::optional("max_pending", int(1, 10_000_000), Some(json!(10_000)), "records taken and not yet in the log; past it callers get 503 with Retry-After at once"),
        FieldSpec::optional("ack_timeout", FieldKind::Duration, Some(json!("10s")), "how long a caller waits for its records to be in the log before it gets 503"),
        FieldSpec::optional("key_from", FieldKind::String, None, "the record key: `header:NAME`, `path:NAME` or `pointer:/json/pointer` (default: the Idempotency-Key header, if sent)"),
        FieldSpec::optional("record_headers", FieldKind::List(Box::new(FieldKind::String)), None, "request parts copied to record headers: `header:NAME` or `path:NAME`"),
    ])
    .with_check(|c| ServerSettings::from_config(c).err().unwrap_or_default())
}

/// A part of the request: a header or a path parameter (or, for keys, a field of the JSON
/// record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPart {
    Header(String),
    Path(String),
    Pointer(String),
}

impl RequestPart {
    fn parse(text: &str, pointers: bool) -> Result<RequestPart, String> {
        let (kind, name) = text.split_once(':').unwrap_or(("", text));
        match kind {
            "header" if !name.is_empty() => Ok(RequestPart::Header(name.to_string())),
            "path" if !name.is_empty() => Ok(RequestPart::Path(name.to_string())),
            "pointer" if pointers && (name.is_empty() || name.starts_with('/')) => {
                Ok(RequestPart::Pointer(name.to_string()))
            }
            _ if pointers => Err(format!(
                "{text:?}: write `header:NAME`, `path:NAME` or `pointer:/json/pointer`"
            )),
            _ => Err(format!("{text:?}: write `header:NAME` or `path:NAME`")),
        }
    }
}

/// The webhook source's settings, typed and checked.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub path: String,
    /// The path's `{name}` parameters.
    pub path_params: Vec<String>,
    pub body: BodyKind,
    pub auth: CallerAuth,
    pub max_body: usize,
    /// `(requests, per)`.
    pub rate_limit: Option<(u32, Duration)>,
    pub max_pending: usize,
    pub ack_timeout: Duration,
    pub key_from: Option<RequestPart>,
    pub record_headers: Vec<RequestPart>,
}

/// `/a/{b}/c`: literal segments and `{name}` parameters only (what the router accepts).
fn path_params(path: &str) -> Result<Vec<String>, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with `/`"));
    }
    let mut params = Vec::new();
    for segment in path.split('/').skip(1) {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "{path:?}: `{{{name}}}` is not a parameter name (letters, digits, `_`)"
                ));
            }
            if params.iter().any(|p| p == name) {
                return Err(format!("{path:?}: `{{{name}}}` appears twice"));
            }
            params.push(name.to_string());
        } else if segment.contains(['{', '}', '*', '?', '#']) {
            return Err(format!("{path:?}: segment {segment:?} may not hold `{{`, `}}`, `*`, `?` or `#` (a parameter is a whole segment: `/{{name}}`)"));
        } else if segment.is_empty() && path.len() > 1 && !path.ends_with('/') {
            return Err(format!("{path:?} has an empty segment (`//`)"));
        }
    }
    Ok(params)
}

impl ServerSettings {
    /// Every problem at once.
    pub fn from_config(c: &ConfigValues) -> Result<ServerSettings, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let listen = text(c, "listen")
            .parse::<SocketAddr>()
            .map_err(|_| {
                issues.push(issue(
                    "listen",
                    format!(
                        "{:?} is not an address such as 127.0.0.1:8090",
                        text(c, "listen")
                    ),
                ))
            })
            .ok();
        let path = c.str("path").unwrap_or("/").to_string();
        let params = path_params(&path)
            .map_err(|e| issues.push(issue("path", e)))
            .unwrap_or_default();
        let auth = match c.object("auth").and_then(|m| m.iter().next()) {
            None => CallerAuth::None,
            Some((kind, v)) => {
                let s = |k: &str| {
                    v.get(k)
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                match kind.as_str() {
                    "hmac_sha256" => CallerAuth::HmacSha256 {
                        header: v
                            .get("header")
                            .and_then(Json::as_str)
                            .unwrap_or("X-Hub-Signature-256")
                            .to_string(),
                        secret: s("secret"),
                    },
                    "basic" => CallerAuth::Basic {
                        username: s("username"),
                        password: s("password"),
                    },
                    _ => CallerAuth::Bearer(v.as_str().unwrap_or_default().to_string()),
                }
            }
        };
        if let CallerAuth::HmacSha256 { header, secret } = &auth {
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                issues.push(issue(
                    "auth.hmac_sha256.header",
                    "not a valid HTTP header name",
                ));
            }
            if secret.is_empty() {
                issues.push(issue("auth.hmac_sha256.secret", "must not be empty"));
            }
        }
        if let Some(addr) = listen {
            if !addr.ip().is_loopback() && auth == CallerAuth::None {
                issues.push(issue(
                    "listen",
                    format!("{addr} is reachable from other machines: callers must authenticate (set `auth`), or listen on 127.0.0.1"),
                ));
            }
        }
        let body = BodyKind::parse(&text(c, "body")).unwrap_or(BodyKind::Json);
        let max_body = c.size("max_body").unwrap_or(1 << 20);
        if max_body == 0 || max_body > (1 << 30) {
            issues.push(issue("max_body", "must be from 1 byte to 1GiB"));
        }
        let rate_limit = c.int("rate_limit.requests").map(|r| {
            let per = c
                .duration("rate_limit.per")
                .unwrap_or(Duration::from_secs(1));
            if per.is_zero() {
                issues.push(issue("rate_limit.per", "must be more than 0"));
            }
            (r as u32, per)
        });
        let ack_timeout = c.duration("ack_timeout").unwrap_or(Duration::from_secs(10));
        if ack_timeout.is_zero() {
            issues.push(issue("ack_timeout", "must be more than 0"));
        }
        let key_from = c.str("key_from").and_then(|k| {
            RequestPart::parse(k, true)
                .map_err(|e| issues.push(issue("key_from", e)))
                .ok()
        });
        let mut record_headers = Vec::new();
        for (i, h) in c.strings("record_headers").iter().enumerate() {
            match RequestPart::parse(h, false) {
                Ok(part) => record_headers.push(part),
                Err(e) => issues.push(issue("record_headers", format!("entry {}: {e}", i + 1))),
            }
        }
        for (key, part) in key_from.iter().map(|p| ("key_from".to_string(), p)).chain(
            record_headers
                .iter()
                .map(|p| ("record_headers".to_string(), p)),
        ) {
            match part {
                RequestPart::Path(name) if !params.contains(name) => issues.push(issue(
                    &key,
                    format!("`path` {path:?} has no parameter `{{{name}}}`"),
                )),
                RequestPart::Pointer(_) if !body.is_json() => issues.push(issue(
                    &key,
                    "a JSON pointer needs a JSON `body` (not `raw`)",
                )),
                _ => {}
            }
        }
        let (Some(listen), true) = (listen, issues.is_empty()) else {
            return Err(issues);
        };
        Ok(ServerSettings {
            listen,
            path,
            path_params: params,
            body,
            auth,
            max_body: max_body as usize,
            rate_limit,
            max_pending: c.int("max_pending").unwrap_or(10_000) as usize,
            ack_timeout,
            key_from,
            record_headers,
        })
    }
}

/// The `http_server` source connector: one task (one listener).
pub struct HttpServer {
    config: ConfigValues,
}

impl HttpServer {
    pub fn new(config: ConfigValues) -> HttpServer {
        HttpServer { config }
    }
}

impl SourceConnector for HttpServer {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        // One address can be listened on once.
        Ok(vec![self.config.clone()])
    }

    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let settings = ServerSettings::from_config(&config).map_err(crate::settings::refused)?;
        Ok(Box::new(task::ServerTask::new(info, settings)?))
    }
}

#[cfg(test)]
mod tests;
