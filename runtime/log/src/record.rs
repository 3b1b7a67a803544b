//! Records inside a RecordBatch v2: zig-zag varint encoding and decoding.
//!
//! ```text
//! length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint | key | valueLength varint | value
//! headerCount varint | [headerKeyLength varint | headerKey | headerValueLength varint | headerValue]*
//! ```
//! A length of -1 means null (key, value and header values may be null).

use crate::batch::{BatchHeader, Compression, BATCH_HEADER_LEN};
use crate::error::BatchError;

/// A record as produced: borrowed key, value and headers, absolute timestamp in ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// A record read back from the log, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// The record's bytes in the batch, length prefix included (what compaction copies).
    pub raw: &'a [u8],
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varlong_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

/// Appends one encoded record (with its length prefix) to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, r: &Record<'_>, ts_delta: i64, offset_delta: i32) {
    let mut body = 1 + varlong_len(ts_delta) + varlong_len(offset_delta as i64);
    body += bytes_len(r.key) + bytes_len(r.value);
    body += varlong_len(r.headers.len() as i64);
    for (k, v) in &r.headers {
        body += bytes_len(Some(k.as_bytes())) + bytes_len(*v);
    }
    out.reserve(body + 5);
    put_varlong(out, body as i64);
    out.push(0); // record attributes: unused
    put_varlong(out, ts_delta);
    put_varlong(out, offset_delta as i64);
    put_bytes(out, r.key);
    put_bytes(out, r.value);
    put_varlong(out, r.headers.len() as i64);
    for (k, v) in &r.headers {
        put_bytes(out, Some(k.as_bytes()));
        put_bytes(out, *v);
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(BatchError::BadRecord("varint runs past the end"))?;
            self.pos += 1;
            if shift > 63 {
                return Err(BatchError::BadRecord("varint longer than 10 bytes"));
            }
            z |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn bytes(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varlong()?;
        if len < -1 {
            return Err(BatchError::BadRecord("negative length"));
        }
        if len == -1 {
            return Ok(None);
        }
        let end = self
            .pos
            .checked_add(len as usize)
            .filter(|&e| e <= self.buf.len())
            .ok_or(BatchError::BadRecord(
                "field runs past the end of the record",
            ))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(Some(out))
    }
}

/// Decodes the records of one uncompressed batch (its header already validated).
pub fn decode_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<Vec<StoredRecord<'a>>, BatchError> {
    let codec = header.compression()?;
    if codec != Compression::None {
        return Err(BatchError::CompressedUnsupported(codec.name()));
    }
    let mut out = Vec::with_capacity(header.records_count.max(0) as usize);
    let mut cur = Cursor {
        buf: &batch[..header.size.min(batch.len())],
        pos: BATCH_HEADER_LEN,
    };
    for _ in 0..header.records_count {
        let start = cur.pos;
        let len = cur.varlong()?;
        if len < 0 {
            return Err(BatchError::BadRecord("negative record length"));
        }
        let body_start = cur.pos;
        let end = body_start
            .checked_add(len as usize)
            .filter(|&e| e <= cur.buf.len())
            .ok_or(BatchError::BadRecord(
                "record runs past the end of the batch",
            ))?;
        let mut rec = Cursor {
            buf: &cur.buf[..end],
            pos: body_start + 1,
        };
        let ts_delta = rec.varlong()?;
        let offset_delta = rec.varlong()?;
        let key = rec.bytes()?;
        let value = rec.bytes()?;
        let n_headers = rec.varlong()?;
        if n_headers < 0 {
            return Err(BatchError::BadRecord("negative header count"));
        }
        let mut headers = Vec::new();
        for _ in 0..n_headers {
            let k = rec
                .bytes()?
                .ok_or(BatchError::BadRecord("null header key"))?;
            headers.push((k, rec.bytes()?));
        }
        if rec.pos != end {
            return Err(BatchError::BadRecord(
                "record length does not match its fields",
            ));
        }
        out.push(StoredRecord {
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp + ts_delta,
            key,
            value,
            headers,
            raw: &cur.buf[start..end],
        });
        cur.pos = end;
    }
    if cur.pos != cur.buf.len() {
        return Err(BatchError::BadRecord("bytes left after the last record"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate, BatchBuilder};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(
            (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
             0i64..1_000_000,
             proptest::collection::vec(("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10))), 0..3)),
            1..50))
        {
            let mut b = BatchBuilder::new();
            for (k, v, ts, hs) in &recs {
                let headers = hs.iter().map(|(hk, hv)| (hk.as_str(), hv.as_deref())).collect();
                b.push(&Record { key: k.as_deref(), value: v.as_deref(), timestamp: 1_600_000_000_000 + ts, headers });
            }
            let batch = b.build();
            let h = validate(&batch).unwrap();
            let decoded = decode_records(&batch, &h).unwrap();
            prop_assert_eq!(decoded.len(), recs.len());
            for (i, (d, (k, v, ts, hs))) in decoded.iter().zip(&recs).enumerate() {
                prop_assert_eq!(d.offset, i as i64);
                prop_assert_eq!(d.timestamp, 1_600_000_000_000 + ts);
                prop_assert_eq!(d.key, k.as_deref());
                prop_assert_eq!(d.value, v.as_deref());
                prop_assert_eq!(d.headers.len(), hs.len());
            }
        }

        #[test]
        fn decoding_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300), count in 0i32..20) {
            let mut batch = BatchBuilder::new().build();
            batch.truncate(BATCH_HEADER_LEN);
            batch[57..61].copy_from_slice(&count.to_be_bytes());
            batch.extend_from_slice(&body);
            let len = (batch.len() - 12) as i32;
            batch[8..12].copy_from_slice(&len.to_be_bytes());
            let h = crate::batch::BatchHeader::parse(&batch).unwrap();
            let _ = decode_records(&batch, &h);
        }
    }
}
