//! The binary record batches that cross the plugin boundary, and the JSON of control calls.
//!
//! Little-endian. `bytes` is a `u32` length then the bytes; `opt` is an `i32` length (`-1`:
//! absent) then the bytes.
//!
//! Source batch (`source_poll`'s output): `u32 count`, then per record: `opt topic`,
//! `i32 partition` (`-1`: by key), `i64 timestamp` (`i64::MIN`: at append), `opt key`,
//! `opt value`, `u32 header count` and per header `bytes name`, `bytes value`, then
//! `bytes stream` and `bytes offset` (JSON) of the record's source position.
//!
//! Sink batch (`sink_put`'s input): `u32 count`, then per record: `bytes topic`,
//! `i32 partition`, `i64 offset`, `i64 timestamp`, `opt key`, `opt value`, headers as above,
//! `opt key_schema`, `opt value_schema` (Avro schema JSON).
//!
//! Decoding never trusts lengths: a batch that ends early or declares more than it holds is
//! an error, not a crash (a fuzz target and property tests feed it garbage).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value as Json};

use crate::connector::{SinkRecord, SourcePosition, SourceRecord, TopicPartition};
use crate::data::Payload;

/// Why a batch could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("record batch ends early: needed {needed} more bytes at byte {at}")]
    Truncated { at: usize, needed: usize },
    #[error("record batch: {what} at byte {at} is not valid UTF-8")]
    NotUtf8 { at: usize, what: &'static str },
    #[error("record batch: source offset at byte {at} is not JSON: {message}")]
    BadOffset { at: usize, message: String },
    #[error("record batch has {0} bytes after its last record")]
    Trailing(usize),
    #[error("control data is not what the ABI expects: {0}")]
    Control(String),
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
}

/// JSON as `bytes`, serialized in place (no string per record).
fn put_json(out: &mut Vec<u8>, v: &Json) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Json::Number(n) = v {
        if let Some(u) = n.as_u64() {
            // The common case (byte offsets, sequence numbers) without the serializer.
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            let mut u = u;
            loop {
                i -= 1;
                digits[i] = b'0' + (u % 10) as u8;
                u /= 10;
                if u == 0 {
                    break;
                }
            }
            out.extend_from_slice(&digits[i..]);
        } else {
            out.extend_from_slice(n.to_string().as_bytes());
        }
    } else {
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// A source offset from its JSON; plain unsigned integers without the parser.
fn parse_offset(b: &[u8]) -> Result<Json, serde_json::Error> {
    if !b.is_empty()
        && b.len() <= 19
        && b.iter().all(u8::is_ascii_digit)
        && (b[0] != b'0' || b.len() == 1)
    {
        let n = b.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        return Ok(Json::from(n));
    }
    serde_json::from_slice(b)
}

/// A payload's bytes as they cross: raw as is, typed as its JSON text.
fn payload_bytes(p: &Option<Payload>) -> Option<std::borrow::Cow<'_, [u8]>> {
    match p {
        None => None,
        Some(Payload::Raw(b)) => Some(std::borrow::Cow::Borrowed(b)),
        Some(Payload::Typed { value, .. }) => Some(std::borrow::Cow::Owned(
            value.to_json().to_string().into_bytes(),
        )),
    }
}

fn put_headers(out: &mut Vec<u8>, headers: &[(String, Vec<u8>)]) {
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v);
    }
}

/// Encodes source records (the plugin's side of `source_poll`).
pub fn encode_source(records: &[SourceRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_source_into(records, &mut out);
    out
}

/// [`encode_source`] into `out` (cleared first), a buffer to reuse.
pub fn encode_source_into(records: &[SourceRecord], out: &mut Vec<u8>) {
    out.clear();
    let size: usize = records
        .iter()
        .map(|r| {
            64 + r.position.stream.len()
                + match &r.value {
                    Some(Payload::Raw(b)) => b.len(),
                    _ => 64,
                }
        })
        .sum();
    out.reserve(4 + size);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        put_opt(out, r.topic.as_deref().map(str::as_bytes));
        out.extend_from_slice(&r.partition.unwrap_or(-1).to_le_bytes());
        out.extend_from_slice(&r.timestamp.unwrap_or(i64::MIN).to_le_bytes());
        put_opt(out, payload_bytes(&r.key).as_deref());
        put_opt(out, payload_bytes(&r.value).as_deref());
        put_headers(out, &r.headers);
        put_bytes(out, r.position.stream.as_bytes());
        put_json(out, &r.position.offset);
    }
}

/// Encodes sink records (the host's side of `sink_put`).
pub fn encode_sink(records: &[SinkRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_sink_into(records, &mut out);
    out
}

/// [`encode_sink`] into `out` (cleared first), a buffer to reuse.
pub fn encode_sink_into(records: &[SinkRecord], out: &mut Vec<u8>) {
    let size: usize = records
        .iter()
        .map(|r| {
            48 + r.topic.len()
                + match &r.value {
                    Some(Payload::Raw(b)) => b.len(),
                    _ => 64,
                }
        })
        .sum();
    let mut w = SinkBatchWriter::new(out);
    w.out.reserve(size);
    for r in records {
        w.push(SinkFields {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: payload_bytes(&r.key).as_deref(),
            value: payload_bytes(&r.value).as_deref(),
            headers: &r.headers,
            key_schema: r.key_schema.as_deref(),
            value_schema: r.value_schema.as_deref(),
        });
    }
    w.finish();
}

/// The fields of one sink record, borrowed.
pub struct SinkFields<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Vec<u8>)],
    pub key_schema: Option<&'a str>,
    pub value_schema: Option<&'a str>,
}

/// Writes a sink batch record by record, from whatever holds the fields (the runtime writes
/// straight from what it read from the log, without building [`SinkRecord`]s).
pub struct SinkBatchWriter<'a> {
    out: &'a mut Vec<u8>,
    count: u32,
}

impl<'a> SinkBatchWriter<'a> {
    /// Starts a batch in `out` (cleared first).
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.clear();
        out.extend_from_slice(&[0; 4]);
        SinkBatchWriter { out, count: 0 }
    }

    pub fn push(&mut self, r: SinkFields<'_>) {
        let out = &mut *self.out;
        put_bytes(out, r.topic.as_bytes());
        out.extend_from_slice(&r.partition.to_le_bytes());
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        put_opt(out, r.key);
        put_opt(out, r.value);
        put_headers(out, r.headers);
        put_opt(out, r.key_schema.map(str::as_bytes));
        put_opt(out, r.value_schema.map(str::as_bytes));
        self.count += 1;
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the record count; the batch is complete.
    pub fn finish(self) -> u32 {
        self.out[..4].copy_from_slice(&self.count.to_le_bytes());
        self.count
    }
}

/// Reads a batch in place.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return Err(WireError::Truncated {
                at: self.at,
                needed: n.saturating_sub(self.buf.len() - self.at),
            });
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(self.u32()? as i32)
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
    fn borrowed(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn opt(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        self.take(n as usize).map(Some)
    }
    fn opt_str_ref(&mut self, what: &'static str) -> Result<Option<&'a str>, WireError> {
        let at = self.at;
        match self.opt()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| WireError::NotUtf8 { at, what }),
        }
    }
    fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, WireError> {
        let n = self.u32()? as usize;
        // Each header takes at least 8 bytes: a count beyond that is a lie, not a reason to
        // reserve memory.
        let mut out = Vec::with_capacity(n.min((self.buf.len() - self.at) / 8));
        for _ in 0..n {
            let at = self.at;
            let k = std::str::from_utf8(self.borrowed()?).map_err(|_| WireError::NotUtf8 {
                at,
                what: "header name",
            })?;
            let v = self.borrowed()?.to_vec();
            out.push((k.to_string(), v));
        }
        Ok(out)
    }
    fn count(&mut self) -> Result<usize, WireError> {
        Ok(self.u32()? as usize)
    }
}

/// One record of a source batch, read in place: nothing copied, nothing counted.
#[derive(Debug, Clone, Copy)]
pub struct SourceView<'a> {
    pub topic: Option<&'a str>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
    pub stream: &'a str,
    /// The source offset's JSON text.
    pub offset: &'a [u8],
    /// Where the record starts in the batch (for error messages).
    pub at: usize,
}

impl<'a> SourceView<'a> {
    /// The headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let mut at = 0;
        let bytes = self.headers;
        (0..self.header_count).map(move |_| {
            // Checked when the view was read.
            let field = |at: &mut usize| {
                let n = u32::from_le_bytes([
                    bytes[*at],
                    bytes[*at + 1],
                    bytes[*at + 2],
                    bytes[*at + 3],
                ]) as usize;
                let s = &bytes[*at + 4..*at + 4 + n];
                *at += 4 + n;
                s
            };
            let k = field(&mut at);
            let v = field(&mut at);
            (std::str::from_utf8(k).unwrap_or(""), v)
        })
    }

    /// The source offset, parsed.
    pub fn offset(&self) -> Result<Json, WireError> {
        parse_offset(self.offset).map_err(|e| WireError::BadOffset {
            at: self.at,
            message: e.to_string(),
        })
    }

    /// An owned record; keys and values are slices of `buf`, the batch this view reads.
    pub fn to_record(&self, buf: &Bytes, stream: Arc<str>) -> Result<SourceRecord, WireError> {
        Ok(SourceRecord {
            topic: self.topic.map(str::to_string),
            partition: self.partition,
            key: self.key.map(|k| Payload::Raw(buf.slice_ref(k))),
            value: self.value.map(|v| Payload::Raw(buf.slice_ref(v))),
            headers: self
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            timestamp: self.timestamp,
            position: SourcePosition {
                stream,
                offset: self.offset()?,
            },
        })
    }
}

/// Reads every record of a source batch in place, checking every length and string.
pub fn source_views(buf: &[u8]) -> Result<Vec<SourceView<'_>>, WireError> {
    let mut r = Reader { buf, at: 0 };
    let n = r.count()?;
    // At least 26 bytes per record: a count beyond that is a lie, not a reason to reserve.
    let mut out = Vec::with_capacity(n.min(buf.len() / 26 + 1));
    for _ in 0..n {
        let at = r.at;
        let topic = r.opt_str_ref("topic")?;
        let partition = r.i32()?;
        let timestamp = r.i64()?;
        let key = r.opt()?;
        let value = r.opt()?;
        let header_count = r.u32()?;
        let headers_start = r.at;
        for _ in 0..header_count {
            let name_at = r.at;
            let name = r.borrowed()?;
            std::str::from_utf8(name).map_err(|_| WireError::NotUtf8 {
                at: name_at,
                what: "header name",
            })?;
            r.borrowed()?;
        }
        let headers = &buf[headers_start..r.at];
        let stream_at = r.at;
        let stream = std::str::from_utf8(r.borrowed()?).map_err(|_| WireError::NotUtf8 {
            at: stream_at,
            what: "source stream",
        })?;
        let offset = r.borrowed()?;
        out.push(SourceView {
            topic,
            partition: (partition >= 0).then_some(partition),
            timestamp: (timestamp != i64::MIN).then_some(timestamp),
            key,
            value,
            headers,
            header_count,
            stream,
            offset,
            at,
        });
    }
    if r.at != buf.len() {
        return Err(WireError::Trailing(buf.len() - r.at));
    }
    Ok(out)
}

/// Decodes a source batch; values are slices of `buf`.
pub fn decode_source(buf: &Bytes) -> Result<Vec<SourceRecord>, WireError> {
    let views = source_views(buf)?;
    let mut out = Vec::with_capacity(views.len());
    let mut last_stream: Option<Arc<str>> = None;
    for v in &views {
        // Records of one stream share its name.
        let stream = match &last_stream {
            Some(s) if **s == *v.stream => s.clone(),
            _ => {
                let s: Arc<str> = Arc::from(v.stream);
                last_stream = Some(s.clone());
                s
            }
        };
        out.push(v.to_record(buf, stream)?);
    }
    Ok(out)
}

/// `s` as an `Arc`, the one of the record before when it is the same text.
fn shared_str(last: &mut Option<Arc<str>>, s: Option<&str>) -> Option<Arc<str>> {
    let s = s?;
    match last {
        Some(l) if **l == *s => Some(l.clone()),
        _ => {
            let a: Arc<str> = Arc::from(s);
            *last = Some(a.clone());
            Some(a)
        }
    }
}

/// Decodes a sink batch; values are slices of `buf`.
pub fn decode_sink(buf: &Bytes) -> Result<Vec<SinkRecord>, WireError> {
    let mut r = Reader { buf, at: 0 };
    let n = r.count()?;
    // At least 40 bytes per record: a count beyond that is a lie, not a reason to reserve.
    let mut out = Vec::with_capacity(n.min(buf.len() / 40 + 1));
    let mut last_topic: Option<Arc<str>> = None;
    let (mut last_key_schema, mut last_value_schema) = (None, None);
    for _ in 0..n {
        let topic_at = r.at;
        let topic_bytes = r.borrowed()?;
        let topic = match &last_topic {
            Some(t) if t.as_bytes() == topic_bytes => t.clone(),
            _ => {
                let name = std::str::from_utf8(topic_bytes).map_err(|_| WireError::NotUtf8 {
                    at: topic_at,
                    what: "topic",
                })?;
                let t: Arc<str> = Arc::from(name);
                last_topic = Some(t.clone());
                t
            }
        };
        let partition = r.i32()?;
        let offset = r.i64()?;
        let timestamp = r.i64()?;
        let key = r.opt()?.map(|k| Payload::Raw(buf.slice_ref(k)));
        let value = r.opt()?.map(|v| Payload::Raw(buf.slice_ref(v)));
        let headers = r.headers()?;
        // Records of one schema share it.
        let key_schema = shared_str(&mut last_key_schema, r.opt_str_ref("key schema")?);
        let value_schema = shared_str(&mut last_value_schema, r.opt_str_ref("value schema")?);
        out.push(SinkRecord {
            topic,
            partition,
            offset,
            timestamp,
            key,
            value,
            headers,
            key_schema,
            value_schema,
        });
    }
    if r.at != buf.len() {
        return Err(WireError::Trailing(buf.len() - r.at));
    }
    Ok(out)
}

/// Source positions as control JSON.
pub fn positions_json(positions: &[SourcePosition]) -> Vec<u8> {
    Json::Array(
        positions
            .iter()
            .map(|p| json!({"stream": &*p.stream, "offset": p.offset}))
            .collect(),
    )
    .to_string()
    .into_bytes()
}

pub fn positions_from_json(bytes: &[u8]) -> Result<Vec<SourcePosition>, WireError> {
    let v: Vec<Json> =
        serde_json::from_slice(bytes).map_err(|e| WireError::Control(e.to_string()))?;
    v.into_iter()
        .map(
            |p| match (p.get("stream").and_then(Json::as_str), p.get("offset")) {
                (Some(s), Some(o)) => Ok(SourcePosition {
                    stream: Arc::from(s),
                    offset: o.clone(),
                }),
                _ => Err(WireError::Control(format!(
                    "a source position needs `stream` and `offset`: {p}"
                ))),
            },
        )
        .collect()
}

/// Partitions as control JSON.
pub fn partitions_json(partitions: &[TopicPartition]) -> Vec<u8> {
    Json::Array(
        partitions
            .iter()
            .map(|tp| json!({"topic": tp.topic, "partition": tp.partition}))
            .collect(),
    )
    .to_string()
    .into_bytes()
}

fn partition_of(v: &Json) -> Result<TopicPartition, WireError> {
    match (
        v.get("topic").and_then(Json::as_str),
        v.get("partition").and_then(Json::as_i64),
    ) {
        (Some(t), Some(p)) => Ok(TopicPartition {
            topic: t.to_string(),
            partition: p as i32,
        }),
        _ => Err(WireError::Control(format!(
            "a partition needs `topic` and `partition`: {v}"
        ))),
    }
}

pub fn partitions_from_json(bytes: &[u8]) -> Result<Vec<TopicPartition>, WireError> {
    let v: Vec<Json> =
        serde_json::from_slice(bytes).map_err(|e| WireError::Control(e.to_string()))?;
    v.iter().map(partition_of).collect()
}

/// Sink positions (next offset per partition) as control JSON.
pub fn offsets_json(offsets: &[(TopicPartition, i64)]) -> Vec<u8> {
    Json::Array(
        offsets
            .iter()
            .map(|(tp, o)| json!({"topic": tp.topic, "partition": tp.partition, "offset": o}))
            .collect(),
    )
    .to_string()
    .into_bytes()
}

pub fn offsets_from_json(bytes: &[u8]) -> Result<Vec<(TopicPartition, i64)>, WireError> {
    let v: Vec<Json> =
        serde_json::from_slice(bytes).map_err(|e| WireError::Control(e.to_string()))?;
    v.iter()
        .map(|o| {
            let tp = partition_of(o)?;
            let offset = o
                .get("offset")
                .and_then(Json::as_i64)
                .ok_or_else(|| WireError::Control(format!("a position needs `offset`: {o}")))?;
            Ok((tp, offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source_record(i: u32, value: Option<Vec<u8>>) -> SourceRecord {
        SourceRecord {
            topic: i.is_multiple_of(3).then(|| format!("t{i}")),
            partition: i.is_multiple_of(2).then_some(i as i32),
            key: i
                .is_multiple_of(4)
                .then(|| Payload::Raw(Bytes::from(format!("k{i}")))),
            value: value.map(|v| Payload::Raw(Bytes::from(v))),
            headers: vec![("h".into(), vec![i as u8])],
            timestamp: (!i.is_multiple_of(5)).then_some(i as i64 * 1000),
            position: SourcePosition {
                stream: Arc::from("file-1"),
                offset: json!(i),
            },
        }
    }

    proptest! {
        #[test]
        fn source_batches_round_trip(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)), 0..40)) {
            let records: Vec<SourceRecord> = values.into_iter().enumerate().map(|(i, v)| source_record(i as u32, v)).collect();
            let encoded = Bytes::from(encode_source(&records));
            prop_assert_eq!(decode_source(&encoded).unwrap(), records);
        }

        #[test]
        fn garbage_is_an_error_never_a_crash(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let b = Bytes::from(bytes);
            let _ = decode_source(&b);
            let _ = decode_sink(&b);
        }
    }

    #[test]
    fn sink_batches_round_trip_and_truncation_is_reported() {
        let schema: Arc<str> = Arc::from(r#""string""#);
        let records: Vec<SinkRecord> = (0..3)
            .map(|i| SinkRecord {
                topic: Arc::from("orders"),
                partition: i,
                offset: 10 + i as i64,
                timestamp: 5,
                key: None,
                value: Some(Payload::Raw(Bytes::from(format!("\"v{i}\"")))),
                headers: vec![],
                key_schema: None,
                value_schema: Some(schema.clone()),
            })
            .collect();
        let encoded = Bytes::from(encode_sink(&records));
        assert_eq!(decode_sink(&encoded).unwrap(), records);
        let cut = encoded.slice(..encoded.len() - 3);
        assert!(matches!(
            decode_sink(&cut),
            Err(WireError::Truncated { .. })
        ));
        // A count of four billion records in a 4-byte batch allocates nothing big.
        let lie = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        assert!(decode_sink(&lie).is_err());
    }

    #[test]
    fn control_json_round_trips() {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 2,
        };
        assert_eq!(
            partitions_from_json(&partitions_json(std::slice::from_ref(&tp))).unwrap(),
            vec![tp.clone()]
        );
        assert_eq!(
            offsets_from_json(&offsets_json(&[(tp.clone(), 7)])).unwrap(),
            vec![(tp, 7)]
        );
        let p = SourcePosition {
            stream: Arc::from("s"),
            offset: json!({"lsn": "0/16B3748"}),
        };
        assert_eq!(
            positions_from_json(&positions_json(std::slice::from_ref(&p))).unwrap(),
            vec![p]
        );
        assert!(positions_from_json(b"[{\"stream\": 1}]").is_err());
    }
}
