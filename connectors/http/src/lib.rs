//! # sluice-connector-http: HTTP sink and sources (in progress)
//!
//! **Owns:** how Sluice talks HTTP to the outside world. Built so far: [`classify`], the
//! policy every HTTP connector shares for an answer: which statuses count as delivered,
//! which are worth a retry and which refuse the request, how long `Retry-After` asks us to
//! wait, and the exponential backoff with full jitter between attempts; and
//! [`url_template`], the sink's `url` with `${topic}`, `${partition}` and `${key}` filled and
//! percent-encoded per record; and [`body`], request bodies (`json_array`, `ndjson`, `single`)
//! with gzip or zstd compression; and [`batch`], one partition's records gathered into
//! requests (`max_records`, `max_bytes`, `linger`, a URL change) and a refused batch split in
//! halves to find the records at fault; [`deliver`], one batch's retries, splits and
//! undelivered records with their status and the start of the answer; and [`transport`], the
//! requests over reqwest (method, headers, bearer or basic auth, compression,
//! `Idempotency-Key`), tested against a real server on 127.0.0.1.
//!
//! Not built yet (and not registered as connector types, so a pipeline naming `http`,
//! `http_server` or `http_poll` gets the registry's "no … connector type" error): the
//! `http` sink, the `http_server` webhook source and the `http_poll` source of issue 12.
//!
//! **Must not touch:** topics, offsets storage, converters: the runtime does those through
//! the SDK traits.
//!
//! ```
//! use std::time::Duration;
//! use sluice_connector_http::classify::{Outcome, StatusPolicy};
//!
//! let policy = StatusPolicy::default();
//! assert_eq!(policy.classify(200), Outcome::Delivered);
//! assert_eq!(policy.classify(503), Outcome::Retry);
//! assert_eq!(policy.classify(400), Outcome::Refused);
//! ```

pub mod batch;
pub mod body;
pub mod classify;
pub mod deliver;
pub mod transport;
pub mod url_template;
