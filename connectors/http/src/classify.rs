//! What an HTTP answer means for the records in the request, and how long to wait before
//! trying again.
//!
//! The defaults follow what the receiving side of an HTTP API means by its status classes,
//! as Vector's and Redpanda Connect's HTTP sinks read them:
//!
//! | status | outcome |
//! |---|---|
//! | 2xx | delivered |
//! | 408, 429, 5xx except 501 and 505 | retry: the server may take it later |
//! | other 4xx, 501, 505, anything else | refused: the same request will fail again |
//!
//! Users override this with `success_codes`, `retry_codes` and `drop_codes` (drop: the
//! server refused, and the user wants those records skipped, not sent to the dead-letter
//! topic, e.g. `409` for "already have it"). A code set is written like `"2xx,304"` or
//! `"500-599"`.
//!
//! Between attempts the wait is exponential backoff with full jitter (uniform in
//! `[0, min(max, initial·2^attempt)]`, as in AWS's "Exponential Backoff and Jitter"), but
//! never shorter than what the server asked for in `Retry-After` (delta-seconds or an
//! HTTP-date), itself capped so a hostile or broken server cannot park a task for a day.

use std::fmt;
use std::time::{Duration, SystemTime};

/// What an answer means for the records in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server took the records: their positions may be committed.
    Delivered,
    /// The server may take them later: send the same request again after a wait.
    Retry,
    /// The server refused them and will again: split the batch to find the records at
    /// fault, then hand those to the task's error policy (dead-letter topic, skip, fail).
    Refused,
    /// The server refused them and the user asked to skip such records silently
    /// (`drop_codes`): committed as if delivered, counted apart.
    Dropped,
}

/// A set of status codes, written `"2xx,304"`, `"500-599"` or `"409"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeSet {
    ranges: Vec<(u16, u16)>,
}

/// A code set that could not be read; says which part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status code set {text:?}: {problem} (write codes like \"409\", \"4xx\" or \"500-599\", separated by commas)")]
pub struct CodeSetError {
    text: String,
    problem: String,
}

impl CodeSet {
    /// Reads a comma-separated list of codes (`409`), classes (`4xx`) and inclusive ranges
    /// (`500-599`). Every code must lie in 100..=599.
    pub fn parse(text: &str) -> Result<CodeSet, CodeSetError> {
        let error = |problem: String| CodeSetError {
            text: text.to_string(),
            problem,
        };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(error("an empty entry".into()));
            }
            let range =
                if let Some(class) = part.strip_suffix("xx").or_else(|| part.strip_suffix("XX")) {
                    match class.parse::<u16>() {
                        Ok(digit @ 1..=5) if class.len() == 1 => (digit * 100, digit * 100 + 99),
                        _ => return Err(error(format!("{part:?} is not a status class 1xx..5xx"))),
                    }
                } else if let Some((low, high)) = part.split_once('-') {
                    let low = code(low.trim()).map_err(&error)?;
                    let high = code(high.trim()).map_err(&error)?;
                    if low > high {
                        return Err(error(format!("{part:?} runs backwards")));
                    }
                    (low, high)
                } else {
                    let single = code(part).map_err(&error)?;
                    (single, single)
                };
            ranges.push(range);
        }
        Ok(CodeSet { ranges })
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }
}

impl fmt::Display for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(low, high)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if low == high {
                write!(f, "{low}")?;
            } else if low % 100 == 0 && high == low + 99 {
                write!(f, "{}xx", low / 100)?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

fn code(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(status @ 100..=599) if text.len() == 3 => Ok(status),
        _ => Err(format!("{text:?} is not a status code 100..599")),
    }
}

/// The user's reading of status codes; the defaults when none is given.
///
/// Precedence: `drop_codes`, then `success_codes`, then `retry_codes`, then refused. An
/// override replaces its default class entirely (`retry_codes: "503"` retries only 503).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusPolicy {
    pub success_codes: Option<CodeSet>,
    pub retry_codes: Option<CodeSet>,
    pub drop_codes: Option<CodeSet>,
}

impl StatusPolicy {
    /// What `status` means for the records of the request it answered.
    pub fn classify(&self, status: u16) -> Outcome {
        if self
            .drop_codes
            .as_ref()
            .is_some_and(|set| set.contains(status))
        {
            return Outcome::Dropped;
        }
        let delivered = match &self.success_codes {
            Some(set) => set.contains(status),
            None => (200..300).contains(&status),
        };
        if delivered {
            return Outcome::Delivered;
        }
        let retry = match &self.retry_codes {
            Some(set) => set.contains(status),
            None => default_retryable(status),
        };
        if retry {
            Outcome::Retry
        } else {
            Outcome::Refused
        }
    }
}

/// 408 Request Timeout, 429 Too Many Requests and server errors, except 501 Not
/// Implemented and 505 HTTP Version Not Supported, which no retry will change.
fn default_retryable(status: u16) -> bool {
    matches!(status, 408 | 429) || ((500..600).contains(&status) && !matches!(status, 501 | 505))
}

/// Reads a `Retry-After` header value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), as RFC 9110 §10.2.3 allows. A date in the past
/// means "now" (zero). `None` for a value that is neither: the caller falls back to its
/// own backoff, as browsers and curl do.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate rather than fail: "99999999999999999999" still means "a long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter, and a cap on what a server may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The ceiling no wait goes over, whatever the attempt.
    pub max: Duration,
    /// The longest `Retry-After` honoured; longer asks are cut to this.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry number `attempt` (0 for the first retry):
    /// `min(max, initial · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry number `attempt`: uniform in `[0, ceiling]` by `unit`
    /// (a random draw in `[0, 1)`), but at least the server's `Retry-After`, itself capped
    /// at `max_retry_after`.
    pub fn wait(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = self.ceiling(attempt).mul_f64(unit);
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

/// A small, fast, non-cryptographic source of jitter (xorshift64*), seeded per task so
/// tasks that fail together do not retry together.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator from `seed`; a zero seed is replaced (xorshift never leaves zero).
    pub fn new(seed: u64) -> Jitter {
        Jitter {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// A generator seeded from the clock and `salt` (e.g. the task's index).
    pub fn from_clock(salt: u64) -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter::new(nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next draw in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_classes() {
        let policy = StatusPolicy::default();
        for (status, outcome) in [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (299, Outcome::Delivered),
            (301, Outcome::Refused),
            (400, Outcome::Refused),
            (401, Outcome::Refused),
            (404, Outcome::Refused),
            (408, Outcome::Retry),
            (413, Outcome::Refused),
            (429, Outcome::Retry),
            (500, Outcome::Retry),
            (501, Outcome::Refused),
            (502, Outcome::Retry),
            (503, Outcome::Retry),
            (505, Outcome::Refused),
            (599, Outcome::Retry),
        ] {
            assert_eq!(policy.classify(status), outcome, "status {status}");
        }
    }

    #[test]
    fn overrides_replace_their_class_and_drop_comes_first() {
        let policy = StatusPolicy {
            success_codes: Some(CodeSet::parse("2xx,304").unwrap()),
            retry_codes: Some(CodeSet::parse("503").unwrap()),
            drop_codes: Some(CodeSet::parse("409, 200").unwrap()),
        };
        assert_eq!(policy.classify(304), Outcome::Delivered);
        assert_eq!(policy.classify(201), Outcome::Delivered);
        assert_eq!(policy.classify(200), Outcome::Dropped);
        assert_eq!(policy.classify(409), Outcome::Dropped);
        assert_eq!(policy.classify(503), Outcome::Retry);
        assert_eq!(
            policy.classify(500),
            Outcome::Refused,
            "retry_codes replaced 5xx"
        );
        assert_eq!(policy.classify(429), Outcome::Refused);
    }

    #[test]
    fn code_sets_read_and_print() {
        let set = CodeSet::parse("4xx, 500-504,599").unwrap();
        assert!(set.contains(400) && set.contains(499) && set.contains(502));
        assert!(!set.contains(505) && !set.contains(399) && set.contains(599));
        assert_eq!(set.to_string(), "4xx,500-504,599");
    }

    #[test]
    fn bad_code_sets_say_which_part() {
        for (text, part) in [
            ("", "an empty entry"),
            ("200,", "an empty entry"),
            ("6xx", "\"6xx\" is not a status class"),
            ("20x", "\"20x\" is not a status code"),
            ("99", "\"99\" is not a status code"),
            ("0200", "\"0200\" is not a status code"),
            ("599-500", "runs backwards"),
            ("abc", "\"abc\" is not a status code"),
        ] {
            let error = CodeSet::parse(text).unwrap_err().to_string();
            assert!(error.contains(part), "{text:?}: {error}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for junk in ["", "-5", "1.5", "soon", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_honours_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        };
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2));
        assert_eq!(backoff.wait(3, 0.5, None), Duration::from_millis(400));
        assert_eq!(
            backoff.wait(0, 0.5, Some(Duration::from_secs(3))),
            Duration::from_secs(3),
            "the server's ask wins over a shorter jitter"
        );
        assert_eq!(
            backoff.wait(0, 0.5, Some(Duration::from_secs(3600))),
            Duration::from_secs(10),
            "a long ask is capped"
        );
        assert_eq!(backoff.wait(2, f64::NAN, None), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn waits_stay_within_bounds(attempt in 0u32..100, seed: u64, asked in proptest::option::of(0u64..100_000)) {
            let backoff = Backoff::default();
            let mut jitter = Jitter::new(seed);
            let unit = jitter.unit();
            prop_assert!((0.0..1.0).contains(&unit));
            let asked = asked.map(Duration::from_millis);
            let wait = backoff.wait(attempt, unit, asked);
            let floor = asked.map_or(Duration::ZERO, |a| a.min(backoff.max_retry_after));
            prop_assert!(wait >= floor);
            prop_assert!(wait <= backoff.max.max(floor));
        }

        #[test]
        fn every_status_has_one_outcome_and_sets_round_trip(status in 100u16..600, low in 100u16..600, len in 0u16..100) {
            let high = (low + len).min(599);
            let text = format!("{low}-{high}");
            let set = CodeSet::parse(&text).unwrap();
            prop_assert_eq!(CodeSet::parse(&set.to_string()).unwrap(), set.clone());
            prop_assert_eq!(set.contains(status), (low..=high).contains(&status));
            let _ = StatusPolicy::default().classify(status);
        }
    }

    #[test]
    fn jitter_spreads_over_the_unit_interval() {
        let mut jitter = Jitter::new(7);
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.unit()).collect();
        let low = draws.iter().filter(|&&u| u < 0.5).count();
        assert!(
            (4_500..5_500).contains(&low),
            "{low} of 10000 below one half"
        );
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
    }
}
