//! The `http_poll` source: settings, their checks (no I/O), and the connector.
//!
//! The task ([`task`]) GETs `url` and takes the records at `records_pointer` from the JSON
//! answer ([`page`]); the next request comes from a cursor: a field of the answer
//! (`cursor_pointer`), a field of the page's last record (`record_cursor_pointer`), or the
//! `Link: <…>; rel="next"` header ([`link`]). Pages are followed until the last; then the
//! poller waits `interval` and asks again. Where it stands is the source position of every
//! record, so the runtime stores it only once the records are in the log, and a restart
//! asks for the right page again, skipping what that page already gave.

use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigIssue, ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SourceConnector, SourceTask, TaskInfo,
};

use crate::classify::Backoff;
use crate::settings::{
    auth_field, backoff_fields, headers_field, issue, parse_auth, parse_backoff, parse_headers,
    parse_timeout, parse_tls, text, tls_field,
};
use crate::transport::{HttpTransport, TransportConfig};
use crate::url_template::UrlTemplate;

pub mod link;
pub mod page;
pub mod task;

/// The settings of `type: http_poll`.
pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("url", FieldKind::String, "what to GET: http:// or https://, with ${cursor} where the cursor goes (percent-encoded)"),
        FieldSpec::optional("initial_cursor", FieldKind::String, Some(json!("")), "the cursor of the very first request"),
        FieldSpec::optional("interval", FieldKind::Duration, Some(json!("60s")), "after the last page, how long to wait before asking again"),
        FieldSpec::optional("records_pointer", FieldKind::String, Some(json!("")), "JSON pointer (RFC 6901) to the array of records in an answer; empty: the answer is the array"),
        FieldSpec::optional("cursor_pointer", FieldKind::String, None, "JSON pointer to the next page's cursor in an answer; absent, null or empty: the last page"),
        FieldSpec::optional("record_cursor_pointer", FieldKind::String, None, "JSON pointer to the cursor in each record: the next request asks for what comes after the last record"),
        FieldSpec::optional("follow_link", FieldKind::Boolean, Some(json!(true)), "follow a `Link: <…>; rel=\"next\"` header to the next page"),
        FieldSpec::optional("key_pointer", FieldKind::String, None, "JSON pointer to the field of each record that becomes its key"),
        headers_field(),
        auth_field(),
        tls_field(),
        FieldSpec::optional("timeout", FieldKind::Duration, Some(json!("30s")), "one request, connect to the answer's last byte"),
        FieldSpec::optional("max_body", FieldKind::Size, Some(json!("16MiB")), "the largest answer read; a larger one stops the task"),
        FieldSpec::optional(
            "retry",
            FieldKind::Object(backoff_fields("1s", "60s")),
            None,
            "how 408, 429, 5xx, timeouts and broken connections are waited out (for ever: a poller never gives up)",
        ),
    ])
    .with_check(|c| PollSettings::from_config(c).err().unwrap_or_default())
}

/// Where the next request's cursor comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorFrom {
    /// No cursor: the same URL each time (pages by `Link` header, if any).
    Nothing,
    /// A field of the answer.
    Answer(String),
    /// A field of each record.
    Record(String),
}

/// The poller's settings, typed and checked.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub url: UrlTemplate,
    pub initial_cursor: String,
    pub interval: Duration,
    pub records_pointer: String,
    pub cursor: CursorFrom,
    pub follow_link: bool,
    pub key_pointer: Option<String>,
    pub transport: TransportConfig,
    pub max_body: usize,
    pub backoff: Backoff,
}

fn pointer(c: &ConfigValues, key: &str, issues: &mut Vec<ConfigIssue>) -> Option<String> {
    let p = c.str(key)?;
    if !p.is_empty() && !p.starts_with('/') {
        issues.push(issue(
            key,
            format!("{p:?} is not a JSON pointer: it must be empty or start with `/` (such as `/data/items`)"),
        ));
    }
    Some(p.to_string())
}

impl PollSettings {
    /// Every problem at once.
    pub fn from_config(c: &ConfigValues) -> Result<PollSettings, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let url = UrlTemplate::parse_cursor(&text(c, "url"))
            .map_err(|e| issues.push(issue("url", e.to_string())))
            .ok();
        let records_pointer = pointer(c, "records_pointer", &mut issues).unwrap_or_default();
        let answer = pointer(c, "cursor_pointer", &mut issues);
        let record = pointer(c, "record_cursor_pointer", &mut issues);
        let key_pointer = pointer(c, "key_pointer", &mut issues);
        let cursor = match (answer, record) {
            (Some(a), Some(_)) => {
                issues.push(issue(
                    "record_cursor_pointer",
                    "`cursor_pointer` and `record_cursor_pointer` cannot both be set: the cursor comes from the answer or from its last record",
                ));
                CursorFrom::Answer(a) // either: only the clash is reported
            }
            (Some(a), None) => CursorFrom::Answer(a),
            (None, Some(r)) => CursorFrom::Record(r),
            (None, None) => CursorFrom::Nothing,
        };
        if let Some(url) = &url {
            match (&cursor, url.uses_cursor()) {
                (CursorFrom::Nothing, true) => issues.push(issue(
                    "url",
                    "has ${cursor}, but no `cursor_pointer` or `record_cursor_pointer` says where the cursor comes from",
                )),
                (CursorFrom::Answer(_), false) => issues.push(issue(
                    "cursor_pointer",
                    "the url has no ${cursor} to put the cursor in",
                )),
                (CursorFrom::Record(_), false) => issues.push(issue(
                    "record_cursor_pointer",
                    "the url has no ${cursor} to put the cursor in",
                )),
                _ => {}
            }
        }
        let headers = parse_headers(
            c,
            &["authorization"],
            "set by the poller itself (from `auth`)",
            &mut issues,
        );
        let auth = parse_auth(c, &mut issues);
        let backoff = parse_backoff(c, &mut issues);
        let timeout = parse_timeout(c, &mut issues);
        let tls = parse_tls(c, &mut issues);
        let interval = c.duration("interval").unwrap_or(Duration::from_secs(60));
        if interval.is_zero() {
            issues.push(issue("interval", "must be more than 0"));
        }
        let max_body = c.size("max_body").unwrap_or(16 << 20);
        if max_body == 0 || max_body > (1 << 30) {
            issues.push(issue("max_body", "must be from 1 byte to 1GiB"));
        }
        let (Some(url), true) = (url, issues.is_empty()) else {
            return Err(issues);
        };
        Ok(PollSettings {
            url,
            initial_cursor: text(c, "initial_cursor"),
            interval,
            records_pointer,
            cursor,
            follow_link: c.bool("follow_link").unwrap_or(true),
            key_pointer,
            transport: TransportConfig {
                method: reqwest::Method::GET,
                headers,
                content_type: String::new(),
                compression: crate::body::Compression::None,
                auth,
                timeout,
                tls,
            },
            max_body: max_body as usize,
            backoff,
        })
    }
}

/// The `http_poll` source connector: one task (one cursor).
pub struct HttpPoll {
    config: ConfigValues,
}

impl HttpPoll {
    pub fn new(config: ConfigValues) -> HttpPoll {
        HttpPoll { config }
    }
}

impl SourceConnector for HttpPoll {
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConfigValues>> {
        // One cursor cannot be shared: a second task would read the same pages again.
        Ok(vec![self.config.clone()])
    }

    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SourceTask>> {
        let settings = PollSettings::from_config(&config).map_err(crate::settings::refused)?;
        let transport = HttpTransport::new(&settings.transport)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        Ok(Box::new(task::PollTask::new(info, settings, transport)?))
    }
}

#[cfg(test)]
mod tests;
