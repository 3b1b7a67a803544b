//! Who may call an HTTP listener (the schema registry, the REST API): HTTP basic users and
//! bearer tokens, compared in constant time and never printed, and one axum layer that
//! refuses everyone else with the caller's own error shape and a `WWW-Authenticate`
//! challenge.
//!
//! ```
//! use sluice_listeners::auth::{AuthConfig, BasicUser};
//! let auth = AuthConfig { basic: vec![BasicUser { username: "ops".into(), password: "s3cret".into() }],
//!                         bearer_tokens: vec!["tok".into()] };
//! assert!(auth.allows(Some("Bearer tok")));
//! assert!(auth.allows(Some("Basic b3BzOnMzY3JldA==")));
//! assert!(!auth.allows(Some("Basic b3BzOndyb25n")));
//! ```

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use serde::Deserialize;

/// Who may call the API: nobody checked (loopback only), or HTTP basic users and bearer tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `username` / `password` pairs for HTTP basic authentication.
    #[serde(default)]
    pub basic: Vec<BasicUser>,
    /// Accepted `Authorization: Bearer <token>` tokens.
    #[serde(default)]
    pub bearer_tokens: Vec<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUser {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are never printed.
        write!(
            f,
            "BasicUser {{ username: {:?}, password: [hidden] }}",
            self.username
        )
    }
}

impl AuthConfig {
    /// Whether any credential is configured (an empty bearer token is none: it would let
    /// anyone in, so it is never accepted).
    pub fn is_enabled(&self) -> bool {
        !self.basic.is_empty() || self.bearer_tokens.iter().any(|t| !t.is_empty())
    }

    /// Whether an `Authorization` header value names a configured user or token.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            if token.trim().is_empty() {
                return false;
            }
            return self
                .bearer_tokens
                .iter()
                .any(|t| constant_time_eq(t.as_bytes(), token.trim().as_bytes()));
        }
        if let Some(encoded) = value.strip_prefix("Basic ") {
            let Some(decoded) = base64_decode(encoded.trim()) else {
                return false;
            };
            let Ok(decoded) = String::from_utf8(decoded) else {
                return false;
            };
            let Some((user, pass)) = decoded.split_once(':') else {
                return false;
            };
            return self.basic.iter().any(|u| {
                constant_time_eq(u.username.as_bytes(), user.as_bytes())
                    & constant_time_eq(u.password.as_bytes(), pass.as_bytes())
            });
        }
        false
    }
}

/// `app` behind `auth` when any credential is configured (unchanged otherwise): a request
/// without valid credentials gets `unauthorized()` (the API's own 401 body) with a
/// `WWW-Authenticate: Basic realm="sluice"` challenge.
pub fn require(app: Router, auth: AuthConfig, unauthorized: fn() -> Response) -> Router {
    if !auth.is_enabled() {
        return app;
    }
    let auth = Arc::new(auth);
    app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let auth = auth.clone();
            async move {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if auth.allows(given) {
                    return next.run(req).await;
                }
                let mut resp = unauthorized();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sluice\""),
                );
                resp
            }
        },
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer() {
        let auth = AuthConfig {
            basic: vec![BasicUser {
                username: "ops".into(),
                password: "s3cret".into(),
            }],
            bearer_tokens: vec!["tok".into()],
        };
        assert!(auth.allows(Some("Basic b3BzOnMzY3JldA==")));
        assert!(!auth.allows(Some("Basic b3BzOndyb25n")));
        assert!(auth.allows(Some("Bearer tok")));
        assert!(!auth.allows(Some("Bearer nope")));
        assert!(!auth.allows(Some("Basic !!!")));
        assert!(!auth.allows(Some("Digest x")));
        assert!(!auth.allows(None));
        let empty = AuthConfig {
            basic: vec![],
            bearer_tokens: vec![String::new()],
        };
        assert!(!empty.is_enabled(), "an empty token is no authentication");
        assert!(!empty.allows(Some("Bearer ")));
        assert!(!empty.allows(Some("Bearer  ")));
        assert!(!format!("{:?}", auth.basic[0]).contains("s3cret"));
    }
}
