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

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A few varints (at most 48 bytes: a record's length, attributes, deltas and two more
/// lengths), built on the stack and copied out at once: no capacity check per byte.
struct Head {
    bytes: [u8; 48],
    len: usize,
}

impl Head {
    #[inline]
    fn new() -> Self {
        Head {
            bytes: [0; 48],
            len: 0,
        }
    }

    /// At most 10 bytes.
    #[inline(always)]
    fn varlong(&mut self, v: i64) {
        let mut z = zigzag(v);
        if z < 0x80 {
            self.bytes[self.len] = z as u8;
            self.len += 1;
            return;
        }
        if z < 0x4000 {
            self.bytes[self.len] = (z as u8) | 0x80;
            self.bytes[self.len + 1] = (z >> 7) as u8;
            self.len += 2;
            return;
        }
        while z >= 0x80 {
            self.bytes[self.len] = (z as u8) | 0x80;
            self.len += 1;
            z >>= 7;
        }
        self.bytes[self.len] = z as u8;
        self.len += 1;
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    #[inline]
    fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes[..self.len]);
        self.len = 0;
    }
}

#[inline]
fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let z = zigzag(v);
    if z < 0x80 {
        out.push(z as u8);
    } else if z < 0x4000 {
        out.extend_from_slice(&[(z as u8) | 0x80, (z >> 7) as u8]);
    } else {
        let mut head = Head::new();
        head.varlong(v);
        head.flush(out);
    }
}

#[inline]
fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    // Seven bits a byte; zero still takes one byte.
    ((64 - (z | 1).leading_zeros()) as usize).div_ceil(7)
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
#[inline]
pub(crate) fn encode_record(out: &mut Vec<u8>, r: &Record<'_>, ts_delta: i64, offset_delta: i32) {
    let mut body = 1 + varlong_len(ts_delta) + varlong_len(offset_delta as i64);
    body += bytes_len(r.key) + bytes_len(r.value);
    body += varlong_len(r.headers.len() as i64);
    for (k, v) in &r.headers {
        body += bytes_len(Some(k.as_bytes())) + bytes_len(*v);
    }
    out.reserve(body + 5);
    // length, attributes (unused), deltas and the key's length: one copy.
    let mut head = Head::new();
    head.varlong(body as i64);
    head.byte(0);
    head.varlong(ts_delta);
    head.varlong(offset_delta as i64);
    match r.key {
        None => head.varlong(-1),
        Some(k) => {
            head.varlong(k.len() as i64);
            head.flush(out);
            out.extend_from_slice(k);
        }
    }
    match r.value {
        None => head.varlong(-1),
        Some(v) => {
            head.varlong(v.len() as i64);
            head.flush(out);
            out.extend_from_slice(v);
        }
    }
    head.varlong(r.headers.len() as i64);
    head.flush(out);
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
    #[inline(always)]
    fn varlong(&mut self) -> Result<i64, BatchError> {
        // Most varints of a record are one byte (deltas, a null key, a header count) or two
        // (the lengths of records and values up to 8 KiB).
        let unzig = |z: u64| ((z >> 1) as i64) ^ -((z & 1) as i64);
        let (b, p) = (self.buf, self.pos);
        if p + 1 < b.len() {
            let b0 = b[p];
            if b0 < 0x80 {
                self.pos = p + 1;
                return Ok(unzig(b0 as u64));
            }
            let b1 = b[p + 1];
            if b1 < 0x80 {
                self.pos = p + 2;
                return Ok(unzig((b0 & 0x7f) as u64 | (b1 as u64) << 7));
            }
        }
        self.varlong_slow()
    }

    fn varlong_slow(&mut self) -> Result<i64, BatchError> {
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

    #[inline(always)]
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

/// One record's fields, its headers still to be read from `rest`.
struct Parts<'a> {
    start: usize,
    end: usize,
    ts_delta: i64,
    offset_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    rest: Cursor<'a>,
}

impl<'a> Parts<'a> {
    /// Reads the headers, each to `each`, and checks that they end the record.
    #[inline]
    fn headers(
        mut self,
        mut each: impl FnMut(&'a [u8], Option<&'a [u8]>),
    ) -> Result<(), BatchError> {
        let n_headers = self.rest.varlong()?;
        if n_headers < 0 {
            return Err(BatchError::BadRecord("negative header count"));
        }
        for _ in 0..n_headers {
            let k = self
                .rest
                .bytes()?
                .ok_or(BatchError::BadRecord("null header key"))?;
            each(k, self.rest.bytes()?);
        }
        if self.rest.pos != self.end {
            return Err(BatchError::BadRecord(
                "record length does not match its fields",
            ));
        }
        Ok(())
    }
}

/// Walks the records of one uncompressed batch (its header already validated), checking
/// every length; `each` reads a record's headers.
#[inline]
fn walk_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    mut each: impl FnMut(&'a [u8], Parts<'a>) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    let codec = header.compression()?;
    if codec != Compression::None {
        return Err(BatchError::CompressedUnsupported(codec.name()));
    }
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
        let parts = Parts {
            start,
            end,
            ts_delta,
            offset_delta,
            key,
            value,
            rest: rec,
        };
        each(cur.buf, parts)?;
        cur.pos = end;
    }
    if cur.pos != cur.buf.len() {
        return Err(BatchError::BadRecord("bytes left after the last record"));
    }
    Ok(())
}

/// Decodes the records of one uncompressed batch (its header already validated).
pub fn decode_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<Vec<StoredRecord<'a>>, BatchError> {
    let mut out = Vec::with_capacity(header.records_count.max(0) as usize);
    walk_records(batch, header, |buf, parts| {
        let (start, end) = (parts.start, parts.end);
        let (offset, timestamp) = (
            header.base_offset + parts.offset_delta,
            header.base_timestamp + parts.ts_delta,
        );
        let (key, value) = (parts.key, parts.value);
        let mut headers = Vec::new();
        parts.headers(|k, v| headers.push((k, v)))?;
        out.push(StoredRecord {
            offset,
            timestamp,
            key,
            value,
            headers,
            raw: &buf[start..end],
        });
        Ok(())
    })?;
    Ok(out)
}

/// The offset and value of each record of one uncompressed batch, checked as
/// [`decode_records`] checks them, without building a record: what a sink that needs only
/// values reads.
pub fn for_each_value<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    mut each: impl FnMut(i64, Option<&'a [u8]>),
) -> Result<(), BatchError> {
    walk_records(batch, header, |_, parts| {
        let (offset, value) = (header.base_offset + parts.offset_delta, parts.value);
        parts.headers(|_, _| {})?;
        each(offset, value);
        Ok(())
    })
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
            // The value-only walk accepts exactly what the full decoder accepts, with the
            // same error, and sees the same offsets and values.
            let full = decode_records(&batch, &h);
            let mut seen = Vec::new();
            let lean = for_each_value(&batch, &h, |o, v| seen.push((o, v)));
            match full {
                Ok(records) => {
                    prop_assert!(lean.is_ok());
                    let expected: Vec<_> = records.iter().map(|r| (r.offset, r.value)).collect();
                    prop_assert_eq!(seen, expected);
                }
                Err(e) => prop_assert_eq!(lean.err().map(|e| e.to_string()), Some(e.to_string())),
            }
        }

        #[test]
        fn varlongs_match_the_reference_encoding(v in any::<i64>()) {
            let mut reference = Vec::new();
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            while z >= 0x80 {
                reference.push((z as u8) | 0x80);
                z >>= 7;
            }
            reference.push(z as u8);
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            prop_assert_eq!(&out, &reference);
            prop_assert_eq!(varlong_len(v), reference.len());
            let mut cur = Cursor { buf: &out, pos: 0 };
            prop_assert_eq!(cur.varlong().unwrap(), v);
            prop_assert_eq!(cur.pos, out.len());
        }
    }

    #[test]
    fn values_of_a_batch_are_read_in_place() {
        let mut b = BatchBuilder::new();
        for (i, v) in [Some(&b"a"[..]), None, Some(&[7u8; 300][..])]
            .into_iter()
            .enumerate()
        {
            b.push(&Record {
                key: None,
                value: v,
                timestamp: 1_700_000_000_000 + i as i64,
                headers: vec![("h", Some(b"x"))],
            });
        }
        let batch = b.build();
        let h = validate(&batch).unwrap();
        let mut seen = Vec::new();
        for_each_value(&batch, &h, |o, v| seen.push((o, v.map(<[u8]>::len)))).unwrap();
        assert_eq!(seen, vec![(0, Some(1)), (1, None), (2, Some(300))]);
    }
}
