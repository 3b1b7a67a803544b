//! One partition's records gathered into requests: a batch closes when it holds
//! `max_records`, when the next value would take it past `max_bytes`, when the next record's
//! URL differs (a templated URL), or when it has lingered `linger` since its first record.
//! A batch remembers where each record's value lies in its body, so a batch the server
//! refuses splits in halves without copying values twice, until the records at fault are
//! found.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::body::{BatchBody, BodyFormat, NotJson};

/// When a batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

impl Default for BatchLimits {
    fn default() -> BatchLimits {
        BatchLimits {
            max_records: 500,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(100),
        }
    }
}

/// A request's worth of records from one partition, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedBatch {
    pub url: String,
    pub format: BodyFormat,
    /// The finished body (before compression); shared, not copied, by each attempt.
    pub body: Bytes,
    /// Each record's offset and where its value lies in `body`.
    pub spans: Vec<(i64, std::ops::Range<usize>)>,
}

impl ClosedBatch {
    pub fn first_offset(&self) -> i64 {
        self.spans.first().map_or(-1, |s| s.0)
    }

    pub fn last_offset(&self) -> i64 {
        self.spans.last().map_or(-1, |s| s.0)
    }

    /// The `Idempotency-Key` of this request: the same records always get the same key, so
    /// a server that deduplicates sees a retry (or a resend after a crash) as one request.
    pub fn idempotency_key(&self, topic: &str, partition: i32) -> String {
        format!(
            "{topic}/{partition}/{}-{}",
            self.first_offset(),
            self.last_offset()
        )
    }

    /// The value of the record at `index`.
    pub fn value(&self, index: usize) -> &[u8] {
        &self.body[self.spans[index].1.clone()]
    }

    /// Two batches of the first and second half of the records; `None` for one record.
    pub fn split(&self) -> Option<(ClosedBatch, ClosedBatch)> {
        if self.spans.len() < 2 {
            return None;
        }
        let middle = self.spans.len() / 2;
        Some((
            self.rebuild(0..middle),
            self.rebuild(middle..self.spans.len()),
        ))
    }

    fn rebuild(&self, records: std::ops::Range<usize>) -> ClosedBatch {
        let mut body = BatchBody::new(self.format);
        let mut spans = Vec::with_capacity(records.len());
        for index in records {
            let span = body.append(self.value(index));
            spans.push((self.spans[index].0, span));
        }
        ClosedBatch {
            url: self.url.clone(),
            format: self.format,
            body: body.finish().into(),
            spans,
        }
    }
}

struct OpenBatch {
    url: String,
    body: BatchBody,
    spans: Vec<(i64, std::ops::Range<usize>)>,
    opened: Instant,
}

/// The open batch of one partition.
pub struct Batcher {
    limits: BatchLimits,
    format: BodyFormat,
    open: Option<OpenBatch>,
}

impl Batcher {
    pub fn new(limits: BatchLimits, format: BodyFormat) -> Batcher {
        let limits = BatchLimits {
            max_records: if format == BodyFormat::Single {
                1
            } else {
                limits.max_records.max(1)
            },
            ..limits
        };
        Batcher {
            limits,
            format,
            open: None,
        }
    }

    /// Adds one record. Returns the batches it closed (a URL change or the size limit
    /// closes the open batch before it; reaching a limit closes the batch it joined), and,
    /// for a value a JSON body cannot hold, why it was refused: such a record joins no
    /// batch, and whatever was closed before it is still to be sent.
    pub fn add(&mut self, url: &str, offset: i64, value: &[u8], now: Instant) -> Added {
        let mut added = Added::default();
        let must_close = self.open.as_ref().is_some_and(|open| {
            open.url != url || open.body.len() + value.len() + 1 > self.limits.max_bytes
        });
        if must_close {
            added.closed.extend(self.take());
        }
        let open = self.open.get_or_insert_with(|| OpenBatch {
            url: url.to_string(),
            body: BatchBody::new(self.format),
            spans: Vec::new(),
            opened: now,
        });
        match open.body.push(value) {
            Ok(span) => open.spans.push((offset, span)),
            Err(error) => {
                if open.body.is_empty() {
                    self.open = None;
                }
                added.refused = Some(error);
                return added;
            }
        }
        if open.body.records() >= self.limits.max_records
            || open.body.len() >= self.limits.max_bytes
        {
            added.closed.extend(self.take());
        }
        added
    }

    /// Whether the open batch has lingered long enough to be sent.
    pub fn due(&self, now: Instant) -> bool {
        self.open
            .as_ref()
            .is_some_and(|open| now.duration_since(open.opened) >= self.limits.linger)
    }

    /// Whether a batch is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Closes the open batch, if any.
    pub fn take(&mut self) -> Option<ClosedBatch> {
        let open = self.open.take()?;
        Some(ClosedBatch {
            url: open.url,
            format: self.format,
            body: open.body.finish().into(),
            spans: open.spans,
        })
    }
}

/// What [`Batcher::add`] did.
#[derive(Debug, Default)]
pub struct Added {
    pub closed: Vec<ClosedBatch>,
    pub refused: Option<NotJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_records: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_records,
            max_bytes,
            linger: Duration::from_millis(50),
        }
    }

    #[test]
    fn batches_close_on_count_size_and_url() {
        let now = Instant::now();
        let mut batcher = Batcher::new(limits(3, 1 << 20), BodyFormat::JsonArray);
        assert!(batcher.add("u", 0, b"1", now).closed.is_empty());
        assert!(batcher.add("u", 1, b"2", now).closed.is_empty());
        let full = batcher.add("u", 2, b"3", now).closed;
        assert_eq!(full.len(), 1);
        assert_eq!(&full[0].body[..], b"[1,2,3]");
        assert_eq!(full[0].idempotency_key("orders", 4), "orders/4/0-2");
        assert!(!batcher.is_open());

        batcher.add("u", 3, b"4", now);
        let switched = batcher.add("v", 4, b"5", now).closed;
        assert_eq!(switched.len(), 1);
        assert_eq!(
            (switched[0].url.as_str(), &switched[0].body[..]),
            ("u", &b"[4]"[..])
        );
        assert_eq!(&batcher.take().unwrap().body[..], b"[5]");

        let mut small = Batcher::new(limits(100, 12), BodyFormat::Ndjson);
        small.add("u", 0, b"\"abcd\"", now);
        let closed = small.add("u", 1, b"\"efgh\"", now).closed;
        assert_eq!(closed.len(), 1, "the second value would pass 12 bytes");
        assert_eq!(&closed[0].body[..], b"\"abcd\"\n");
    }

    #[test]
    fn single_format_sends_one_record_per_request() {
        let mut batcher = Batcher::new(limits(500, 1 << 20), BodyFormat::Single);
        let closed = batcher.add("u", 7, b"raw bytes", Instant::now()).closed;
        assert_eq!(closed.len(), 1);
        assert_eq!(&closed[0].body[..], b"raw bytes");
    }

    #[test]
    fn a_bad_value_joins_no_batch() {
        let now = Instant::now();
        let mut batcher = Batcher::new(limits(10, 1 << 20), BodyFormat::JsonArray);
        batcher.add("u", 0, b"1", now);
        let added = batcher.add("u", 1, b"{bad", now);
        assert!(added.refused.is_some() && added.closed.is_empty());
        batcher.add("u", 2, b"3", now);
        let batch = batcher.take().unwrap();
        assert_eq!(&batch.body[..], b"[1,3]");
        assert_eq!(batch.spans.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 2]);
        let mut empty = Batcher::new(limits(10, 1 << 20), BodyFormat::Ndjson);
        assert!(empty.add("u", 0, b"nope", now).refused.is_some());
        assert!(!empty.is_open());
    }

    #[test]
    fn linger_makes_a_batch_due() {
        let start = Instant::now();
        let mut batcher = Batcher::new(limits(10, 1 << 20), BodyFormat::JsonArray);
        assert!(!batcher.due(start + Duration::from_secs(1)), "nothing open");
        batcher.add("u", 0, b"1", start);
        assert!(!batcher.due(start + Duration::from_millis(10)));
        assert!(batcher.due(start + Duration::from_millis(50)));
    }

    #[test]
    fn refused_batches_split_into_halves_down_to_one_record() {
        let now = Instant::now();
        for format in [BodyFormat::JsonArray, BodyFormat::Ndjson] {
            let mut batcher = Batcher::new(limits(10, 1 << 20), format);
            for offset in 10..15 {
                batcher.add("u", offset, format!("{{\"n\":{offset}}}").as_bytes(), now);
            }
            let batch = batcher.take().unwrap();
            let (left, right) = batch.split().unwrap();
            assert_eq!((left.first_offset(), left.last_offset()), (10, 11));
            assert_eq!((right.first_offset(), right.last_offset()), (12, 14));
            assert_eq!(right.value(2), br#"{"n":14}"#);
            if format == BodyFormat::JsonArray {
                assert_eq!(&left.body[..], br#"[{"n":10},{"n":11}]"#);
            } else {
                assert_eq!(&left.body[..], b"{\"n\":10}\n{\"n\":11}\n");
            }
            let (one, _) = left.split().unwrap();
            assert!(one.split().is_none());
            assert!(!one.body.is_empty());
        }
    }
}
