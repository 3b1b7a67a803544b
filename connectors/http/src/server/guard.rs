//! What a webhook call must pass before its body is read into records: the rate limit and
//! the caller's credentials (an HMAC-SHA256 signature of the body, HTTP basic, or a bearer
//! token). Secrets are compared in constant time.

use std::fmt;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How callers prove who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum CallerAuth {
    None,
    /// `header` holds `sha256=<hex>` (GitHub's form) or `<hex>`: the HMAC-SHA256 of the
    /// body under `secret`.
    HmacSha256 {
        header: String,
        secret: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
}

impl fmt::Debug for CallerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallerAuth::None => f.write_str("None"),
            CallerAuth::HmacSha256 { header, .. } => {
                write!(f, "HmacSha256 {{ header: {header:?}, secret: <redacted> }}")
            }
            CallerAuth::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            CallerAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Equal bytes, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl CallerAuth {
    /// Whether the check needs the body (the signature covers it).
    pub fn needs_body(&self) -> bool {
        matches!(self, CallerAuth::HmacSha256 { .. })
    }

    /// Checks the `Authorization` header; `Err` is what the 401 says. An HMAC is checked
    /// by [`CallerAuth::check_signature`] once the body is read.
    pub fn check_header(&self, authorization: Option<&str>) -> Result<(), &'static str> {
        match self {
            CallerAuth::None | CallerAuth::HmacSha256 { .. } => Ok(()),
            CallerAuth::Bearer(token) => {
                let given = authorization
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .ok_or("a bearer token is required (Authorization: Bearer …)")?;
                same(given.trim().as_bytes(), token.as_bytes())
                    .then_some(())
                    .ok_or("the bearer token is wrong")
            }
            CallerAuth::Basic { username, password } => {
                use base64::Engine as _;
                let given = authorization
                    .and_then(|a| a.strip_prefix("Basic "))
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .ok_or("basic credentials are required (Authorization: Basic …)")?;
                let expected = format!("{username}:{password}");
                same(&given, expected.as_bytes())
                    .then_some(())
                    .ok_or("the user name or password is wrong")
            }
        }
    }

    /// Checks the body's signature in `signature` (the configured header's value).
    pub fn check_signature(&self, signature: Option<&str>, body: &[u8]) -> Result<(), String> {
        let CallerAuth::HmacSha256 { header, secret } = self else {
            return Ok(());
        };
        let given = signature.ok_or_else(|| format!("the {header} header is missing"))?;
        let digest = given.trim();
        let digest = digest.strip_prefix("sha256=").unwrap_or(digest);
        let digest =
            hex(digest).ok_or_else(|| format!("the {header} header is not sha256=<hex digest>"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| "the signing secret cannot be used".to_string())?;
        mac.update(body);
        mac.verify_slice(&digest)
            .map_err(|_| format!("the {header} signature does not match the body"))
    }
}

/// A token bucket: `requests` calls per `per`, refilled continuously, bursts up to
/// `requests`.
#[derive(Debug)]
pub struct RateLimit {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(requests: u32, per: Duration) -> RateLimit {
        let capacity = f64::from(requests.max(1));
        RateLimit {
            capacity,
            per_second: capacity / per.as_secs_f64().max(1e-3),
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes a token at `now`; `Err(wait)`: none left, the next comes after `wait`.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    #[test]
    fn github_signatures_are_checked_against_the_body() {
        let auth = CallerAuth::HmacSha256 {
            header: "X-Hub-Signature-256".into(),
            secret: "It's a Secret to Everybody".into(),
        };
        // GitHub's documented example.
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), good);
        assert!(auth.check_signature(Some(good), b"Hello, World!").is_ok());
        assert!(auth
            .check_signature(Some(&good[7..]), b"Hello, World!")
            .is_ok());
        let wrong = auth
            .check_signature(Some(good), b"Hello, World?")
            .unwrap_err();
        assert!(wrong.contains("does not match"), "{wrong}");
        assert!(auth
            .check_signature(None, b"x")
            .unwrap_err()
            .contains("missing"));
        assert!(auth
            .check_signature(Some("sha256=zz"), b"x")
            .unwrap_err()
            .contains("not sha256=<hex"));
        assert!(!format!("{auth:?}").contains("Secret"));
    }

    #[test]
    fn basic_and_bearer_credentials() {
        let basic = CallerAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        assert!(basic.check_header(Some("Basic dTpw")).is_ok());
        assert!(basic.check_header(Some("Basic dTpx")).is_err());
        assert!(basic.check_header(None).is_err());
        let bearer = CallerAuth::Bearer("t".into());
        assert!(bearer.check_header(Some("Bearer t")).is_ok());
        assert!(bearer.check_header(Some("Bearer u")).is_err());
        assert!(bearer.check_header(Some("Basic dTpw")).is_err());
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_says_when_to_come_back() {
        let mut limit = RateLimit::new(10, Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..10 {
            assert!(limit.take(start).is_ok());
        }
        let wait = limit.take(start).unwrap_err();
        assert!(
            (Duration::from_millis(90)..=Duration::from_millis(110)).contains(&wait),
            "{wait:?}"
        );
        assert!(limit.take(start + Duration::from_millis(101)).is_ok());
        assert!(limit.take(start + Duration::from_millis(101)).is_err());
    }
}
