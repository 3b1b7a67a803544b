//! Delivering one batch: send, read the answer with [`crate::classify`], wait and resend
//! what may succeed later, split what the server refuses until the records at fault are
//! alone, and hand back every record that could not be delivered with the reason, the
//! status and the start of the server's answer (for the dead-letter topic's headers).
//!
//! The transport is a trait so this logic is tested under tokio's paused clock with
//! scripted answers; the sink's transport is reqwest against a real server.

use std::future::Future;
use std::time::SystemTime;

use crate::batch::ClosedBatch;
use crate::classify::{retry_after, Backoff, Jitter, Outcome, StatusPolicy};

/// The most of a server's answer kept for a refused record's header.
pub const BODY_EXCERPT: usize = 1024;

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The start of the body (at most [`BODY_EXCERPT`] bytes).
    pub body: Vec<u8>,
}

/// A request without an answer to classify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswer {
    /// Connection refused or dropped, a timeout: always retried.
    Lost(String),
    /// Nothing sent will get through until the user acts (the token endpoint refused our
    /// client credentials): the delivery stops and the task fails with this.
    Stop(String),
}

/// Sends one batch as one request.
pub trait Transport {
    /// `idempotency_key` names the batch's records ([`ClosedBatch::idempotency_key`]).
    fn send(
        &self,
        batch: &ClosedBatch,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Answer, NoAnswer>>;
}

/// A record the server did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub offset: i64,
    /// The record's value as the body held it.
    pub value: bytes::Bytes,
    pub reason: String,
    /// The last status, if the server answered at all.
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

/// How a batch went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    /// Records the user's `drop_codes` skipped.
    pub dropped: usize,
    pub undelivered: Vec<Undelivered>,
    /// Requests sent, retries included.
    pub requests: usize,
    /// Why the delivery gave up on everything not yet delivered ([`NoAnswer::Stop`]).
    pub stopped: Option<String>,
}

/// Retries per request before its records count as undelivered (`retry.max_attempts`).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included; 0 means no limit.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

/// Delivers `batch`, splitting refused batches in halves; returns when every record is
/// delivered, dropped or undelivered. Retries wait on tokio's clock; a caller that stops
/// drops the future.
pub async fn deliver<T: Transport>(
    transport: &T,
    (topic, partition): (&str, i32),
    statuses: &StatusPolicy,
    retry: RetryPolicy,
    jitter: &mut Jitter,
    batch: ClosedBatch,
) -> Delivery {
    let mut delivery = Delivery::default();
    let mut queue = vec![batch];
    while let Some(batch) = queue.pop() {
        let mut attempt = 0u32;
        loop {
            delivery.requests += 1;
            let key = batch.idempotency_key(topic, partition);
            let answer = transport.send(&batch, &key).await;
            let (outcome, status, body, asked) = match answer {
                Ok(answer) => (
                    statuses.classify(answer.status),
                    Some(answer.status),
                    answer.body,
                    answer
                        .retry_after
                        .as_deref()
                        .and_then(|v| retry_after(v, SystemTime::now())),
                ),
                Err(NoAnswer::Lost(why)) => (Outcome::Retry, None, why.into_bytes(), None),
                Err(NoAnswer::Stop(why)) => {
                    delivery.stopped = Some(why);
                    return delivery;
                }
            };
            match outcome {
                Outcome::Delivered => delivery.delivered += batch.spans.len(),
                Outcome::Dropped => delivery.dropped += batch.spans.len(),
                Outcome::Refused => match batch.split() {
                    // Halves go on the stack right half first, so the left is sent first
                    // and records keep their order.
                    Some((left, right)) => {
                        queue.push(right);
                        queue.push(left);
                    }
                    None => delivery.undelivered.extend(undelivered(
                        &batch,
                        format!("the server refused it with status {}", status.unwrap_or(0)),
                        status,
                        &body,
                    )),
                },
                Outcome::Retry => {
                    attempt += 1;
                    if retry.max_attempts != 0 && attempt >= retry.max_attempts {
                        let last = match status {
                            Some(code) => format!("status {code}"),
                            None => format!("no answer: {}", String::from_utf8_lossy(&body)),
                        };
                        delivery.undelivered.extend(undelivered(
                            &batch,
                            format!("retries ran out after {attempt} attempts; last {last}"),
                            status,
                            &body,
                        ));
                    } else {
                        let wait = retry.backoff.wait(attempt - 1, jitter.unit(), asked);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            break;
        }
    }
    delivery
}

fn undelivered(
    batch: &ClosedBatch,
    reason: String,
    status: Option<u16>,
    body: &[u8],
) -> Vec<Undelivered> {
    let body = &body[..body.len().min(BODY_EXCERPT)];
    batch
        .spans
        .iter()
        .map(|(offset, span)| Undelivered {
            offset: *offset,
            value: batch.body.slice(span.clone()),
            reason: reason.clone(),
            status,
            body: body.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchLimits, Batcher};
    use crate::body::BodyFormat;
    use std::cell::RefCell;
    use std::time::Duration;
    use std::time::Instant;

    /// Answers by a rule over the batch and the attempt number, and records what it saw.
    struct Scripted<F: Fn(&ClosedBatch, usize) -> Result<Answer, NoAnswer>> {
        rule: F,
        seen: RefCell<Vec<(Vec<i64>, tokio::time::Instant)>>,
    }

    impl<F: Fn(&ClosedBatch, usize) -> Result<Answer, NoAnswer>> Transport for Scripted<F> {
        async fn send(&self, batch: &ClosedBatch, _key: &str) -> Result<Answer, NoAnswer> {
            let attempt = self.seen.borrow().len();
            self.seen.borrow_mut().push((
                batch.spans.iter().map(|s| s.0).collect(),
                tokio::time::Instant::now(),
            ));
            (self.rule)(batch, attempt)
        }
    }

    fn answer(status: u16) -> Result<Answer, NoAnswer> {
        Ok(Answer {
            status,
            retry_after: None,
            body: format!("status {status}").into_bytes(),
        })
    }

    fn batch(offsets: std::ops::Range<i64>) -> ClosedBatch {
        let mut batcher = Batcher::new(
            BatchLimits {
                max_records: 1000,
                ..BatchLimits::default()
            },
            BodyFormat::JsonArray,
        );
        for offset in offsets {
            batcher.add("u", offset, offset.to_string().as_bytes(), Instant::now());
        }
        batcher.take().unwrap()
    }

    async fn run(
        transport: &impl Transport,
        statuses: &StatusPolicy,
        max_attempts: u32,
        seed: u64,
        batch: ClosedBatch,
    ) -> Delivery {
        let retry = RetryPolicy {
            max_attempts,
            backoff: Backoff::default(),
        };
        deliver(
            transport,
            ("t", 0),
            statuses,
            retry,
            &mut Jitter::new(seed),
            batch,
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_server_takes_it_honouring_retry_after() {
        let transport = Scripted {
            rule: |_: &ClosedBatch, attempt| match attempt {
                0 => Ok(Answer {
                    status: 429,
                    retry_after: Some("7".into()),
                    body: vec![],
                }),
                1 => Err(NoAnswer::Lost("connection reset".into())),
                2 => answer(503),
                _ => answer(200),
            },
            seen: RefCell::default(),
        };
        let start = tokio::time::Instant::now();
        let delivery = run(&transport, &StatusPolicy::default(), 10, 1, batch(0..4)).await;
        assert_eq!(delivery.delivered, 4);
        assert_eq!(delivery.requests, 4);
        assert!(delivery.undelivered.is_empty());
        let seen = transport.seen.borrow();
        let second = seen[1].1.duration_since(start);
        assert!(
            second >= Duration::from_secs(7),
            "waited {second:?}, Retry-After said 7s"
        );
        assert!(second < Duration::from_secs(8), "waited {second:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn refused_batches_split_until_the_bad_records_are_alone() {
        // The server refuses any request holding offset 3 or 6.
        let transport = Scripted {
            rule: |batch: &ClosedBatch, _| {
                if batch.spans.iter().any(|s| s.0 == 3 || s.0 == 6) {
                    Ok(Answer {
                        status: 400,
                        retry_after: None,
                        body: b"{\"error\":\"bad field\"}".to_vec(),
                    })
                } else {
                    answer(200)
                }
            },
            seen: RefCell::default(),
        };
        let delivery = run(&transport, &StatusPolicy::default(), 3, 1, batch(0..8)).await;
        assert_eq!(delivery.delivered, 6);
        let bad: Vec<i64> = delivery.undelivered.iter().map(|u| u.offset).collect();
        assert_eq!(bad, [3, 6]);
        assert_eq!(delivery.undelivered[0].status, Some(400));
        assert_eq!(delivery.undelivered[0].body, b"{\"error\":\"bad field\"}");
        assert!(delivery.undelivered[0]
            .reason
            .contains("refused it with status 400"));
        // Delivered requests go out in offset order.
        let delivered_order: Vec<i64> = transport
            .seen
            .borrow()
            .iter()
            .filter(|(offsets, _)| !offsets.contains(&3) && !offsets.contains(&6))
            .flat_map(|(offsets, _)| offsets.clone())
            .collect();
        assert_eq!(delivered_order, [0, 1, 2, 4, 5, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_run_out_and_say_so() {
        let transport = Scripted {
            rule: |_: &ClosedBatch, _| answer(500),
            seen: RefCell::default(),
        };
        let delivery = run(&transport, &StatusPolicy::default(), 3, 9, batch(0..2)).await;
        assert_eq!(delivery.requests, 3);
        assert_eq!(delivery.undelivered.len(), 2);
        let reason = &delivery.undelivered[0].reason;
        assert!(
            reason.contains("retries ran out after 3 attempts; last status 500"),
            "{reason}"
        );
        let longest: Duration = (0..3).map(|a| Backoff::default().ceiling(a)).sum();
        assert!(longest >= Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn drop_codes_skip_records() {
        let transport = Scripted {
            rule: |_: &ClosedBatch, _| answer(409),
            seen: RefCell::default(),
        };
        let statuses = StatusPolicy {
            drop_codes: Some(crate::classify::CodeSet::parse("409").unwrap()),
            ..StatusPolicy::default()
        };
        let delivery = run(&transport, &statuses, 3, 1, batch(0..5)).await;
        assert_eq!((delivery.dropped, delivery.requests), (5, 1));
    }
}
