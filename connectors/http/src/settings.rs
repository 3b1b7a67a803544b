//! Settings the HTTP connectors share: `headers`, `auth` (bearer, basic, OAuth2 client
//! credentials) and the retry backoff; their specs, and their typed, checked form (no I/O).

use std::time::Duration;

use serde_json::{json, Value as Json};
use sluice_connector_sdk::config::{ConfigIssue, ConfigValues, FieldKind, FieldSpec};

use crate::classify::Backoff;
use crate::transport::{Auth, OAuth2Config, TlsFiles};

pub(crate) fn strings(options: &[&str]) -> FieldKind {
    FieldKind::OneOf(options.iter().map(|o| o.to_string()).collect())
}

pub(crate) fn int(min: i64, max: i64) -> FieldKind {
    FieldKind::Integer { min, max }
}

pub(crate) fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: Some(key.to_string()),
        message: message.into(),
    }
}

/// Settings a task cannot use, as one fatal error (validation reports them first, each
/// with its place in the file; this is for settings that came another way, such as REST).
pub(crate) fn refused(issues: Vec<ConfigIssue>) -> sluice_connector_sdk::connector::ConnectorError {
    let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    sluice_connector_sdk::connector::ConnectorError::fatal(text.join("; "))
}

pub(crate) fn text(c: &ConfigValues, key: &str) -> String {
    c.str(key).unwrap_or_default().to_string()
}

/// `headers`: sent with every request.
pub fn headers_field() -> FieldSpec {
    FieldSpec::optional(
        "headers",
        FieldKind::Map(Box::new(FieldKind::String)),
        None,
        "headers sent with every request",
    )
}

/// `basic: {username, password}`, in the connectors' `auth` and the webhook's.
pub fn basic_field() -> FieldSpec {
    FieldSpec::optional(
        "basic",
        FieldKind::Object(vec![
            FieldSpec::required("username", FieldKind::String, "the user"),
            FieldSpec::required("password", FieldKind::Secret, "the password"),
        ]),
        None,
        "HTTP basic authentication",
    )
}

/// `auth`: one of bearer, basic or oauth2.
pub fn auth_field() -> FieldSpec {
    FieldSpec::optional(
        "auth",
        FieldKind::OneKey(vec![
            FieldSpec::optional("bearer", FieldKind::Secret, None, "a token sent as `Authorization: Bearer …`"),
            basic_field(),
            FieldSpec::optional(
                "oauth2",
                FieldKind::Object(vec![
                    FieldSpec::required("token_url", FieldKind::String, "the token endpoint"),
                    FieldSpec::required("client_id", FieldKind::String, "the client's id"),
                    FieldSpec::required("client_secret", FieldKind::Secret, "the client's secret"),
                    FieldSpec::optional("scope", FieldKind::String, None, "the scope asked for"),
                ]),
                None,
                "OAuth 2.0 client credentials: a token fetched, cached until shortly before it expires, and fetched again on a 401",
            ),
        ]),
        None,
        "how requests authenticate (none by default)",
    )
}

/// The backoff settings inside `retry`, with the connector's defaults.
pub fn backoff_fields(initial: &str, max: &str) -> Vec<FieldSpec> {
    vec![
        FieldSpec::optional(
            "initial_backoff",
            FieldKind::Duration,
            Some(json!(initial)),
            "the ceiling of the first wait (exponential, with full jitter)",
        ),
        FieldSpec::optional(
            "max_backoff",
            FieldKind::Duration,
            Some(json!(max)),
            "the ceiling of any wait",
        ),
        FieldSpec::optional(
            "max_retry_after",
            FieldKind::Duration,
            Some(json!("5m")),
            "the longest Retry-After honoured",
        ),
    ]
}

/// `headers`, checked; `reserved` names (lower case) are set by the connector itself, as
/// `why` explains.
pub fn parse_headers(
    c: &ConfigValues,
    reserved: &[&str],
    why: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (name, value) in c.object("headers").into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        let key = format!("headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            issues.push(issue(&key, "not a valid HTTP header name"));
        } else if reqwest::header::HeaderValue::from_str(value).is_err() {
            issues.push(issue(
                &key,
                "not a valid HTTP header value (control characters?)",
            ));
        } else if reserved.contains(&name.to_ascii_lowercase().as_str()) {
            issues.push(issue(&key, why));
        } else {
            headers.push((name.clone(), value.to_string()));
        }
    }
    headers
}

/// `auth`, typed; an OAuth2 token URL that is not http(s) is an issue.
pub fn parse_auth(c: &ConfigValues, issues: &mut Vec<ConfigIssue>) -> Auth {
    let Some((kind, v)) = c.object("auth").and_then(|m| m.iter().next()) else {
        return Auth::None;
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match kind.as_str() {
        "bearer" => Auth::Bearer(v.as_str().unwrap_or_default().to_string()),
        "basic" => Auth::Basic {
            username: s("username"),
            password: s("password"),
        },
        _ => {
            let token_url = s("token_url");
            if !(token_url.starts_with("http://") || token_url.starts_with("https://")) {
                issues.push(issue(
                    "auth.oauth2.token_url",
                    format!("{token_url:?} must start with http:// or https://"),
                ));
            }
            Auth::OAuth2(OAuth2Config {
                token_url,
                client_id: s("client_id"),
                client_secret: s("client_secret"),
                scope: v.get("scope").and_then(Json::as_str).map(str::to_string),
            })
        }
    }
}

/// `retry.initial_backoff`, `retry.max_backoff` and `retry.max_retry_after`, checked.
pub fn parse_backoff(c: &ConfigValues, issues: &mut Vec<ConfigIssue>) -> Backoff {
    let defaults = Backoff::default();
    let duration = |k: &str, default: Duration| c.duration(k).unwrap_or(default);
    let backoff = Backoff {
        initial: duration("retry.initial_backoff", defaults.initial),
        max: duration("retry.max_backoff", defaults.max),
        max_retry_after: duration("retry.max_retry_after", defaults.max_retry_after),
    };
    if backoff.initial.is_zero() {
        issues.push(issue("retry.initial_backoff", "must be more than 0"));
    }
    if backoff.max < backoff.initial {
        issues.push(issue(
            "retry.max_backoff",
            "must not be less than `retry.initial_backoff`",
        ));
    }
    backoff
}

/// `timeout`, checked.
pub fn parse_timeout(c: &ConfigValues, issues: &mut Vec<ConfigIssue>) -> Duration {
    let timeout = c.duration("timeout").unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        issues.push(issue("timeout", "must be more than 0"));
    }
    timeout
}

/// `tls`: files for https:// endpoints.
pub fn tls_field() -> FieldSpec {
    FieldSpec::optional(
        "tls",
        FieldKind::Object(vec![
            FieldSpec::optional(
                "ca_file",
                FieldKind::String,
                None,
                "PEM certificates to trust beyond the system's roots (a private CA)",
            ),
            FieldSpec::optional(
                "cert_file",
                FieldKind::String,
                None,
                "a PEM client certificate (chain), for servers that ask for one",
            ),
            FieldSpec::optional(
                "key_file",
                FieldKind::String,
                None,
                "the PEM private key of `cert_file`",
            ),
        ]),
        None,
        "TLS for https:// (rustls; the system's roots are always trusted)",
    )
}

/// `tls`, checked (the files are read when the task starts).
pub fn parse_tls(c: &ConfigValues, issues: &mut Vec<ConfigIssue>) -> TlsFiles {
    let path = |k: &str| c.str(k).map(std::path::PathBuf::from);
    let tls = TlsFiles {
        ca_file: path("tls.ca_file"),
        cert_file: path("tls.cert_file"),
        key_file: path("tls.key_file"),
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => issues.push(issue(
            "tls.key_file",
            "`tls.cert_file` needs its `tls.key_file`",
        )),
        (None, Some(_)) => issues.push(issue(
            "tls.cert_file",
            "`tls.key_file` needs its `tls.cert_file`",
        )),
        _ => {}
    }
    tls
}
