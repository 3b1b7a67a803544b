//! One `http_poll` task: a request in flight at a time on the task's own small runtime,
//! `poll` waiting for it no longer than the runtime asks, the page's records handed out in
//! order, and waits (the `interval` after the last page, backoff after a failure) kept as
//! a time before which nothing is sent, so `poll` never sleeps past its timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sluice_connector_sdk::connector::{
    ConnectorError, Result, SourcePosition, SourceRecord, SourceTask, TaskInfo,
};
use sluice_connector_sdk::data::Payload;

use super::page::{read_page, Position};
use super::PollSettings;
use crate::classify::{retry_after, Jitter, Outcome, StatusPolicy};
use crate::deliver::{NoAnswer, BODY_EXCERPT};
use crate::transport::{Fetched, HttpTransport};

type Fetch = tokio::task::JoinHandle<Result<Fetched, NoAnswer>>;

/// A task of the `http_poll` source.
pub struct PollTask {
    info: TaskInfo,
    settings: Arc<PollSettings>,
    transport: Arc<HttpTransport>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The stream name of this source's positions: its url as written.
    stream: Arc<str>,
    /// The next request.
    position: Position,
    /// Records of the last page not yet handed to the runtime.
    ready: VecDeque<SourceRecord>,
    /// The request in flight, and the URL it went to.
    fetching: Option<(Fetch, String)>,
    /// Nothing is sent before this.
    not_before: Instant,
    /// Failed attempts in a row (for the backoff).
    failures: u32,
    jitter: Jitter,
    statuses: StatusPolicy,
}

impl PollTask {
    pub fn new(info: TaskInfo, settings: PollSettings, transport: HttpTransport) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("sluice-poll-{}", info.connector))
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectorError::fatal(format!("could not start the poller's thread: {e}"))
            })?;
        let stream: Arc<str> = settings.url.as_str().into();
        Ok(PollTask {
            position: Position::start(&settings),
            jitter: Jitter::from_clock(u64::from(info.task)),
            info,
            settings: Arc::new(settings),
            transport: Arc::new(transport),
            runtime: Some(runtime),
            stream,
            ready: VecDeque::new(),
            fetching: None,
            not_before: Instant::now(),
            failures: 0,
            statuses: StatusPolicy::default(),
        })
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.runtime
            .as_ref()
            .ok_or_else(|| ConnectorError::fatal("the poller is stopped"))
    }

    fn take_ready(&mut self, max: usize) -> Vec<SourceRecord> {
        let n = self.ready.len().min(max.max(1));
        self.ready.drain(..n).collect()
    }

    /// After a failed attempt: wait the backoff, never less than `Retry-After`.
    fn back_off(&mut self, url: &str, why: &str, asked: Option<Duration>) {
        let wait = self
            .settings
            .backoff
            .wait(self.failures, self.jitter.unit(), asked);
        self.failures = self.failures.saturating_add(1);
        self.not_before = Instant::now() + wait;
        tracing::warn!(
            connector = %self.info.connector,
            "GET {url}: {why}; asking again in {} ms",
            wait.as_millis()
        );
    }

    /// An answer arrived: its records become ready, or the next wait is set.
    fn answered(&mut self, url: &str, fetched: Fetched) -> Result<()> {
        match self.statuses.classify(fetched.status) {
            Outcome::Delivered => {}
            Outcome::Retry => {
                let asked = fetched
                    .retry_after
                    .as_deref()
                    .and_then(|v| retry_after(v, SystemTime::now()));
                self.back_off(url, &format!("answered {}", fetched.status), asked);
                return Ok(());
            }
            Outcome::Refused | Outcome::Dropped => {
                let start = &fetched.body[..fetched.body.len().min(BODY_EXCERPT)];
                return Err(ConnectorError::fatal(format!(
                    "GET {url} answered {}: {}",
                    fetched.status,
                    String::from_utf8_lossy(start)
                )));
            }
        }
        self.failures = 0;
        let page = read_page(
            &self.settings,
            &self.position,
            url,
            &fetched.body,
            fetched.link.as_deref(),
        )
        .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        for r in page.records {
            self.ready.push_back(SourceRecord {
                topic: None,
                partition: None,
                key: r.key.map(|k| Payload::Raw(Bytes::from(k))),
                value: Some(Payload::Raw(Bytes::from(r.value))),
                headers: Vec::new(),
                timestamp: None,
                position: SourcePosition {
                    stream: self.stream.clone(),
                    offset: r.after.to_json(),
                },
            });
        }
        self.position = page.next;
        if page.last {
            self.not_before = Instant::now() + self.settings.interval;
        }
        Ok(())
    }
}

impl SourceTask for PollTask {
    fn start(&mut self, committed: Vec<SourcePosition>) -> Result<()> {
        if let Some(p) = committed.iter().find(|p| *p.stream == *self.stream) {
            match Position::from_json(&p.offset) {
                Some(position) => self.position = position,
                None => {
                    return Err(ConnectorError::fatal(format!(
                        "the stored position {} is not one this version of http_poll reads",
                        p.offset
                    )))
                }
            }
        }
        Ok(())
    }

    fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<SourceRecord>> {
        if !self.ready.is_empty() {
            return Ok(self.take_ready(max_records));
        }
        let deadline = Instant::now() + timeout;
        if self.fetching.is_none() {
            let now = Instant::now();
            if now < self.not_before {
                std::thread::sleep((self.not_before - now).min(timeout));
                return Ok(Vec::new());
            }
            let url = self.position.url(&self.settings);
            let (transport, max_body, target) =
                (self.transport.clone(), self.settings.max_body, url.clone());
            let fetch = self
                .runtime()?
                .spawn(async move { transport.get(&target, max_body).await });
            self.fetching = Some((fetch, url));
        }
        let Some((mut fetch, url)) = self.fetching.take() else {
            return Ok(Vec::new());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let done = self
            .runtime()?
            .block_on(async { tokio::time::timeout(left, &mut fetch).await });
        let result = match done {
            Err(_) => {
                self.fetching = Some((fetch, url)); // still under way: wait again next poll
                return Ok(Vec::new());
            }
            Ok(Err(e)) => Err(NoAnswer::Lost(format!("the request failed: {e}"))),
            Ok(Ok(result)) => result,
        };
        match result {
            Ok(fetched) => self.answered(&url, fetched)?,
            Err(NoAnswer::Lost(why)) => self.back_off(&url, &why, None),
            Err(NoAnswer::Stop(why)) => {
                return Err(ConnectorError::fatal(format!("GET {url}: {why}")))
            }
        }
        Ok(self.take_ready(max_records))
    }

    fn committed(&mut self, _positions: Vec<SourcePosition>) -> Result<()> {
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        if let Some((fetch, _)) = self.fetching.take() {
            fetch.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        Ok(())
    }
}

impl Drop for PollTask {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
