//! OAuth 2.0 client credentials (RFC 6749 §4.4): a token fetched from `token_url` with the
//! client's id and secret (HTTP basic, §2.3.1), cached until shortly before `expires_in`
//! runs out, and fetched again at once when the endpoint answers 401.
//!
//! A token endpoint that cannot be reached, or answers 5xx or 429, is retried like any
//! request; one that refuses the credentials (another 4xx) stops the sink: nothing will get
//! through until the user fixes them. Neither the secret nor a token appears in an error.

use std::fmt;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::deliver::NoAnswer;

/// The `auth: {oauth2: {…}}` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
}

impl fmt::Debug for OAuth2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Config")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

/// How long before its expiry a token is replaced: a tenth of its life, at most a minute.
fn margin(life: Duration) -> Duration {
    (life / 10).min(Duration::from_secs(60))
}

/// Tokens assumed to live this long when the endpoint does not say (`expires_in` absent).
const UNSTATED_LIFE: Duration = Duration::from_secs(300);

struct Token {
    value: String,
    replace_at: Instant,
}

/// The current token, shared by the requests of one sink task.
pub(crate) struct TokenCache {
    config: OAuth2Config,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl TokenCache {
    pub(crate) fn new(config: OAuth2Config) -> TokenCache {
        TokenCache {
            config,
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// A token to send: the cached one while it is fresh, else a new one. `rejected` is a
    /// token the endpoint just answered 401 to: it is replaced (once, by whichever request
    /// gets here first).
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        rejected: Option<&str>,
    ) -> Result<String, NoAnswer> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            let is_rejected = rejected.is_some_and(|r| r == t.value);
            if !is_rejected && Instant::now() < t.replace_at {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.fetch(client).await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<Token, NoAnswer> {
        let c = &self.config;
        let mut form = "grant_type=client_credentials".to_string();
        if let Some(scope) = &c.scope {
            form.push_str("&scope=");
            form.extend(utf8_percent_encode(scope, NON_ALPHANUMERIC));
        }
        // RFC 6749 §2.3.1: the id and secret are form-encoded before they go into basic auth.
        let id: String = utf8_percent_encode(&c.client_id, NON_ALPHANUMERIC).collect();
        let secret: String = utf8_percent_encode(&c.client_secret, NON_ALPHANUMERIC).collect();
        let started = Instant::now();
        let response = client
            .post(&c.token_url)
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                NoAnswer::Lost(format!(
                    "token endpoint {}: {}",
                    c.token_url,
                    super::describe(&e)
                ))
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            NoAnswer::Lost(format!(
                "token endpoint {}: {}",
                c.token_url,
                super::describe(&e)
            ))
        })?;
        if !(200..300).contains(&status) {
            // The endpoint's own words (RFC 6749 §5.2 `error`), never echoing a token.
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let text = format!(
                "token endpoint {} answered {status}{reason} to client `{}`",
                c.token_url, c.client_id
            );
            return Err(if status == 408 || status == 429 || status >= 500 {
                NoAnswer::Lost(text)
            } else {
                NoAnswer::Stop(format!(
                    "{text}: check auth.oauth2's client_id, client_secret and scope"
                ))
            });
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            NoAnswer::Stop(format!(
                "token endpoint {} answered {status} without a JSON object",
                c.token_url
            ))
        })?;
        let Some(value) = parsed.get("access_token").and_then(|t| t.as_str()) else {
            return Err(NoAnswer::Stop(format!(
                "token endpoint {} answered {status} without `access_token`",
                c.token_url
            )));
        };
        let life = parsed
            .get("expires_in")
            .and_then(|e| {
                e.as_u64()
                    .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            })
            .map_or(UNSTATED_LIFE, Duration::from_secs);
        Ok(Token {
            value: value.to_string(),
            replace_at: started + life.saturating_sub(margin(life)),
        })
    }
}
