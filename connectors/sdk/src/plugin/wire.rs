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
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        put_opt(&mut out, r.topic.as_deref().map(str::as_bytes));
        out.extend_from_slice(&r.partition.unwrap_or(-1).to_le_bytes());
        out.extend_from_slice(&r.timestamp.unwrap_or(i64::MIN).to_le_bytes());
        put_opt(&mut out, payload_bytes(&r.key).as_deref());
        put_opt(&mut out, payload_bytes(&r.value).as_deref());
        put_headers(&mut out, &r.headers);
        put_bytes(&mut out, r.position.stream.as_bytes());
        put_json(&mut out, &r.position.offset);
    }
    out
}

/// Encodes sink records (the host's side of `sink_put`).
pub fn encode_sink(records: &[SinkRecord]) -> Vec<u8> {
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
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        put_bytes(&mut out, r.topic.as_bytes());
        out.extend_from_slice(&r.partition.to_le_bytes());
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        put_opt(&mut out, payload_bytes(&r.key).as_deref());
        put_opt(&mut out, payload_bytes(&r.value).as_deref());
        put_headers(&mut out, &r.headers);
        put_opt(&mut out, r.key_schema.as_deref().map(str::as_bytes));
        put_opt(&mut out, r.value_schema.as_deref().map(str::as_bytes));
    }
    out
}

/// Reads a batch; values become slices of `buf` (no copy per record).
struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
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
    fn shared(&mut self, n: usize) -> Result<Bytes, WireError> {
        let start = self.at;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }
    fn bytes(&mut self) -> Result<Bytes, WireError> {
        let n = self.u32()? as usize;
        self.shared(n)
    }
    /// A `bytes` field borrowed, not shared (no reference count touched).
    fn borrowed(&mut self) -> Result<&[u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn opt(&mut self) -> Result<Option<Bytes>, WireError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        self.shared(n as usize).map(Some)
    }
    fn string(&mut self, what: &'static str) -> Result<String, WireError> {
        let at = self.at;
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::NotUtf8 { at, what })
    }
    fn opt_str(&mut self, what: &'static str) -> Result<Option<Arc<str>>, WireError> {
        let at = self.at;
        match self.opt()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(&b)
                .map(|s| Some(Arc::from(s)))
                .map_err(|_| WireError::NotUtf8 { at, what }),
        }
    }
    fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, WireError> {
        let n = self.u32()? as usize;
        // Each header takes at least 8 bytes: a count beyond that is a lie, not a reason to
        // reserve memory.
        let mut out = Vec::with_capacity(n.min((self.buf.len() - self.at) / 8));
        for _ in 0..n {
            let k = self.string("header name")?;
            let v = self.bytes()?.to_vec();
            out.push((k, v));
        }
        Ok(out)
    }
    fn count(&mut self) -> Result<usize, WireError> {
        Ok(self.u32()? as usize)
    }
}

/// Decodes a source batch; values are slices of `buf`.
pub fn decode_source(buf: &Bytes) -> Result<Vec<SourceRecord>, WireError> {
    let mut r = Reader { buf, at: 0 };
    let n = r.count()?;
    let mut out = Vec::with_capacity(n.min(buf.len() / 32));
    let mut last_stream: Option<Arc<str>> = None;
    for _ in 0..n {
        let topic_at = r.at;
        let topic = match r.opt()? {
            None => None,
            Some(b) => Some(
                String::from_utf8(b.to_vec()).map_err(|_| WireError::NotUtf8 {
                    at: topic_at,
                    what: "topic",
                })?,
            ),
        };
        let partition = r.i32()?;
        let timestamp = r.i64()?;
        let key = r.opt()?.map(Payload::Raw);
        let value = r.opt()?.map(Payload::Raw);
        let headers = r.headers()?;
        let stream_at = r.at;
        let stream_bytes = r.borrowed()?;
        // Records of one stream share its name.
        let stream = match &last_stream {
            Some(s) if s.as_bytes() == stream_bytes => s.clone(),
            _ => {
                let name = std::str::from_utf8(stream_bytes).map_err(|_| WireError::NotUtf8 {
                    at: stream_at,
                    what: "source stream",
                })?;
                let s: Arc<str> = Arc::from(name);
                last_stream = Some(s.clone());
                s
            }
        };
        let offset_at = r.at;
        let offset_bytes = r.borrowed()?;
        let offset: Json = parse_offset(offset_bytes).map_err(|e| WireError::BadOffset {
            at: offset_at,
            message: e.to_string(),
        })?;
        out.push(SourceRecord {
            topic,
            partition: (partition >= 0).then_some(partition),
            key,
            value,
            headers,
            timestamp: (timestamp != i64::MIN).then_some(timestamp),
            position: SourcePosition { stream, offset },
        });
    }
    if r.at != buf.len() {
        return Err(WireError::Trailing(buf.len() - r.at));
    }
    Ok(out)
}

/// Decodes a sink batch; values are slices of `buf`.
pub fn decode_sink(buf: &Bytes) -> Result<Vec<SinkRecord>, WireError> {
    let mut r = Reader { buf, at: 0 };
    let n = r.count()?;
    let mut out = Vec::with_capacity(n.min(buf.len() / 40));
    let mut last_topic: Option<Arc<str>> = None;
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
        let key = r.opt()?.map(Payload::Raw);
        let value = r.opt()?.map(Payload::Raw);
        let headers = r.headers()?;
        let key_schema = r.opt_str("key schema")?;
        let value_schema = r.opt_str("value schema")?;
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
