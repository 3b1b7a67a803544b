//! The `http` sink: settings, their checks (no I/O), and the connector that starts tasks.
//!
//! The data path: the runtime's `put` hands a partition's records to its [`task`] lane;
//! the lane's batcher closes requests ([`crate::batch`]), a worker per partition delivers
//! them in order ([`crate::deliver`] over [`crate::transport`]), and `flush` reports, per
//! partition, the offset below which every record was delivered, dropped by `drop_codes`,
//! or handed back as refused for the dead-letter topic.

use std::time::Duration;

use serde_json::json;
use sluice_connector_sdk::config::{ConfigIssue, ConfigSpec, ConfigValues, FieldKind, FieldSpec};
use sluice_connector_sdk::connector::{ConnectorError, Result, SinkConnector, SinkTask, TaskInfo};

use crate::batch::BatchLimits;
use crate::body::{BodyFormat, Compression};
use crate::classify::{CodeSet, StatusPolicy};
use crate::deliver::RetryPolicy;
use crate::settings::{
    auth_field, backoff_fields, headers_field, int, issue, parse_auth, parse_backoff,
    parse_headers, parse_timeout, parse_tls, strings, text, tls_field,
};
use crate::transport::{HttpTransport, TransportConfig};
use crate::url_template::UrlTemplate;

pub mod task;

/// The settings of `type: http` (names as issue 12 gives them).
pub fn spec() -> ConfigSpec {
    ConfigSpec::new(vec![
        FieldSpec::required("url", FieldKind::String, "where records are sent: http:// or https://, with ${topic}, ${partition} and ${key} filled per record (percent-encoded)"),
        FieldSpec::optional("method", strings(&["POST", "PUT", "PATCH"]), Some(json!("POST")), "the request method"),
        headers_field(),
        auth_field(),
        tls_field(),
        FieldSpec::optional("body", strings(&["json_array", "ndjson", "single"]), Some(json!("json_array")), "`json_array`: a batch is one JSON array of the values; `ndjson`: one value per line; `single`: one record per request, its value as the body (any bytes)"),
        FieldSpec::optional(
            "batch",
            FieldKind::Object(vec![
                FieldSpec::optional("max_records", int(1, 100_000), Some(json!(500)), "records per request at most"),
                FieldSpec::optional("max_bytes", FieldKind::Size, Some(json!("1MiB")), "body bytes per request at most (a larger single value goes alone)"),
                FieldSpec::optional("linger", FieldKind::Duration, Some(json!("20ms")), "how long a request waits for more records before it goes"),
            ]),
            None,
            "how records are gathered into requests",
        ),
        FieldSpec::optional("compression", strings(&["none", "gzip", "zstd"]), Some(json!("none")), "the body's Content-Encoding"),
        FieldSpec::optional("max_in_flight", int(1, 1024), Some(json!(4)), "requests in flight at once for the task (one per partition, unless `ordered: false`)"),
        FieldSpec::optional("ordered", FieldKind::Boolean, Some(json!(true)), "`true`: a partition has one request in flight, so its records arrive in order; `false`: up to `max_in_flight` per partition (offsets still commit in order)"),
        FieldSpec::optional(
            "retry",
            FieldKind::Object(vec![
                FieldSpec::optional("max_retries", int(-1, 1_000_000), Some(json!(10)), "retries of a request before its records follow the error policy (-1: no limit)"),
            ]
            .into_iter()
            .chain(backoff_fields("100ms", "30s"))
            .collect()),
            None,
            "how failed requests are retried (408, 429, 5xx except 501 and 505, timeouts, broken connections)",
        ),
        FieldSpec::optional("timeout", FieldKind::Duration, Some(json!("30s")), "the whole request, connect to the answer's last byte"),
        FieldSpec::optional("success_codes", FieldKind::String, None, "statuses that mean delivered, such as `2xx,304` (default 2xx)"),
        FieldSpec::optional("retry_codes", FieldKind::String, None, "statuses retried, such as `429,500-599` (replaces the default set)"),
        FieldSpec::optional("drop_codes", FieldKind::String, None, "statuses after which the records are skipped, neither retried nor dead-lettered, such as `409`"),
        FieldSpec::optional("on_null_value", strings(&["ignore", "fail"]), Some(json!("ignore")), "a record without a value (a tombstone): `ignore` skips it, `fail` hands it to the error policy"),
    ])
    .with_check(|c| SinkSettings::from_config(c).err().unwrap_or_default())
}

/// What to do with a record that has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNull {
    Ignore,
    Fail,
}

/// The sink's settings, typed and checked.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub url: UrlTemplate,
    pub transport: TransportConfig,
    pub format: BodyFormat,
    pub limits: BatchLimits,
    pub statuses: StatusPolicy,
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    pub ordered: bool,
    pub on_null: OnNull,
}

impl SinkSettings {
    /// Every problem at once; settings the spec already typed are taken as typed.
    pub fn from_config(c: &ConfigValues) -> Result<SinkSettings, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let url = UrlTemplate::parse(&text(c, "url"))
            .map_err(|e| issues.push(issue("url", e.to_string())))
            .ok();
        let codes = |key: &str, issues: &mut Vec<ConfigIssue>| -> Option<CodeSet> {
            let t = c.str(key)?;
            CodeSet::parse(t)
                .map_err(|e| issues.push(issue(key, e.to_string())))
                .ok()
        };
        let statuses = StatusPolicy {
            success_codes: codes("success_codes", &mut issues),
            retry_codes: codes("retry_codes", &mut issues),
            drop_codes: codes("drop_codes", &mut issues),
        };
        let headers = parse_headers(
            c,
            &["content-type", "content-encoding", "idempotency-key", "authorization"],
            "set by the sink itself (from `body`, `compression`, `auth` and each request's records)",
            &mut issues,
        );
        let auth = parse_auth(c, &mut issues);
        let format = BodyFormat::parse(&text(c, "body")).unwrap_or(BodyFormat::JsonArray);
        let compression = Compression::parse(&text(c, "compression")).unwrap_or(Compression::None);
        let max_bytes = c.size("batch.max_bytes").unwrap_or(1 << 20);
        if max_bytes == 0 || max_bytes > (1 << 30) {
            issues.push(issue("batch.max_bytes", "must be from 1 byte to 1GiB"));
        }
        let duration =
            |k: &str, default: u64| c.duration(k).unwrap_or(Duration::from_millis(default));
        let backoff = parse_backoff(c, &mut issues);
        let timeout = parse_timeout(c, &mut issues);
        let tls = parse_tls(c, &mut issues);
        let max_retries = c.int("retry.max_retries").unwrap_or(10);
        let (Some(url), true) = (url, issues.is_empty()) else {
            return Err(issues);
        };
        Ok(SinkSettings {
            url,
            transport: TransportConfig {
                method: text(c, "method").parse().unwrap_or(reqwest::Method::POST),
                headers,
                content_type: format.content_type().to_string(),
                compression,
                auth,
                timeout,
                tls,
            },
            format,
            limits: BatchLimits {
                max_records: c.int("batch.max_records").unwrap_or(500) as usize,
                max_bytes: max_bytes as usize,
                linger: duration("batch.linger", 20),
            },
            statuses,
            retry: RetryPolicy {
                max_attempts: if max_retries < 0 {
                    0
                } else {
                    (max_retries as u32).saturating_add(1)
                },
                backoff,
            },
            max_in_flight: c.int("max_in_flight").unwrap_or(4) as usize,
            ordered: c.bool("ordered").unwrap_or(true),
            on_null: if c.str("on_null_value") == Some("fail") {
                OnNull::Fail
            } else {
                OnNull::Ignore
            },
        })
    }
}

/// The `http` sink connector.
pub struct HttpSink {
    config: ConfigValues,
}

impl HttpSink {
    pub fn new(config: ConfigValues) -> HttpSink {
        HttpSink { config }
    }
}

impl SinkConnector for HttpSink {
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConfigValues>> {
        Ok(vec![self.config.clone(); max_tasks.max(1) as usize])
    }

    fn create_task(&self, info: TaskInfo, config: ConfigValues) -> Result<Box<dyn SinkTask>> {
        let settings = SinkSettings::from_config(&config).map_err(crate::settings::refused)?;
        let transport = HttpTransport::new(&settings.transport)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        Ok(Box::new(task::HttpSinkTask::new(
            info, settings, transport,
        )?))
    }
}

#[cfg(test)]
mod tests;
