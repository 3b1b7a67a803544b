//! Kafka RecordBatch v2 (magic 2): header access, validation and building.
//!
//! The log stores batches byte for byte as a Kafka producer sends them, so the same bytes go
//! to disk and back to consumers. Only `baseOffset` (bytes 0..8) is rewritten on append; the
//! CRC32C starts at `attributes` (byte 21) and does not cover it, so no checksum is recomputed.
//!
//! ```text
//! offset  field                 type
//!  0      baseOffset            int64
//!  8      batchLength           int32  (bytes after this field)
//! 12      partitionLeaderEpoch  int32
//! 16      magic                 int8   (= 2)
//! 17      crc                   uint32 (CRC32C of bytes 21..end)
//! 21      attributes            int16  (bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control)
//! 23      lastOffsetDelta       int32
//! 27      baseTimestamp         int64
//! 35      maxTimestamp          int64
//! 43      producerId            int64
//! 51      producerEpoch         int16
//! 53      baseSequence          int32
//! 57      recordsCount          int32
//! 61      records...
//! ```

use crate::error::BatchError;
use crate::record::{encode_record, Record};

/// Bytes before the first record of a batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes of `baseOffset` + `batchLength`: what must be read to know a batch's full size.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// The compression codec named by a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        Ok(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(BatchError::UnknownCompression(other as u8)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The header fields of one batch, decoded from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total bytes of the batch on the wire and on disk (`batchLength` + 12).
    pub size: usize,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Decodes a header without checking the CRC; `bytes` must hold at least the 61 header bytes.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: bytes.len(),
            });
        }
        let batch_length = be_i32(bytes, 8);
        let magic = bytes[16] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let header = BatchHeader {
            base_offset: be_i64(bytes, 0),
            size: batch_length as usize + LOG_OVERHEAD,
            partition_leader_epoch: be_i32(bytes, 12),
            crc: be_u32(bytes, 17),
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            records_count: be_i32(bytes, 57),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::BadLastOffsetDelta(header.last_offset_delta));
        }
        if header.records_count < 0 {
            return Err(BatchError::BadRecordCount(header.records_count));
        }
        Ok(header)
    }

    /// The offset of the batch's last record (offsets of compacted-away records included).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
}

/// Decodes the header of a complete batch and checks its length and CRC32C.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.size != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.size,
            actual: batch.len(),
        });
    }
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    header.compression()?;
    Ok(header)
}

/// Splits a record set (one or more concatenated batches, as in a Produce request) into
/// validated batches: `(start, header)` for each. Fails on the first invalid batch or on
/// trailing bytes that do not form a whole batch.
pub fn split_record_set(bytes: &[u8]) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    let batches = split_verified(bytes)?;
    if batches.is_empty() {
        return Err(BatchError::Empty);
    }
    batches
        .into_iter()
        .map(|(start, h)| validate(&bytes[start..start + h.size]).map(|h| (start, h)))
        .collect()
}

/// Splits a record set the log has already verified (what [`crate::Partition::read`] returns:
/// every batch's CRC was checked on the way out) into batches, parsing headers only. Bytes
/// from anywhere else go through [`split_record_set`], which checks every CRC.
pub fn split_verified(bytes: &[u8]) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: rest.len(),
            });
        }
        let header = BatchHeader::parse(rest)?;
        if header.size > rest.len() {
            return Err(BatchError::Truncated {
                needed: header.size,
                available: rest.len(),
            });
        }
        batches.push((pos, header));
        pos += header.size;
    }
    Ok(batches)
}

/// Overwrites `baseOffset`, which the CRC does not cover.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Replaces the records of an uncompressed batch, keeping every header field but the count,
/// length and CRC. Used by compaction: records keep their own offset and timestamp deltas.
pub fn rebuild_with_records(original: &BatchHeader, raw_records: &[&[u8]]) -> Vec<u8> {
    let body: usize = raw_records.iter().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body);
    write_header(&mut out, original, raw_records.len() as i32);
    for r in raw_records {
        out.extend_from_slice(r);
    }
    finish(&mut out);
    out
}

fn write_header(out: &mut Vec<u8>, h: &BatchHeader, records_count: i32) {
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // batchLength, patched in finish
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched in finish
    out.extend_from_slice(&h.attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&h.base_timestamp.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&records_count.to_be_bytes());
}

fn finish(out: &mut [u8]) {
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Builds an uncompressed batch from records, as a non-idempotent producer does: producer
/// id -1, offsets relative to 0 (the log assigns the real base offset on append).
#[derive(Debug, Default)]
pub struct BatchBuilder {
    /// Room for the batch header (written at `build`), then the encoded records: building
    /// fills in the header where it stands instead of copying the records behind a new one.
    records: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl BatchBuilder {
    pub fn new() -> Self {
        BatchBuilder {
            records: Vec::new(),
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
        }
    }

    pub fn with_capacity(bytes: usize) -> Self {
        let mut records = Vec::with_capacity(BATCH_HEADER_LEN + bytes);
        records.resize(BATCH_HEADER_LEN, 0);
        BatchBuilder {
            records,
            ..Self::new()
        }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch will take once built.
    pub fn size_estimate(&self) -> usize {
        self.records.len().max(BATCH_HEADER_LEN)
    }

    pub fn push(&mut self, record: &Record<'_>) {
        if self.records.is_empty() {
            self.records.resize(BATCH_HEADER_LEN, 0);
        }
        let base = *self.base_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        encode_record(
            &mut self.records,
            record,
            record.timestamp - base,
            self.count,
        );
        self.count += 1;
    }

    pub fn build(mut self) -> Vec<u8> {
        self.seal();
        self.records
    }

    /// Builds the batch in the builder's own buffer, to append it and then [`clear`] the
    /// builder: the buffer is reused batch after batch, never allocated or faulted in again.
    ///
    /// [`clear`]: BatchBuilder::clear
    pub fn build_in_place(&mut self) -> &mut [u8] {
        self.seal();
        &mut self.records
    }

    /// Empties the builder, keeping its buffer.
    pub fn clear(&mut self) {
        self.records.clear();
        self.count = 0;
        self.base_timestamp = None;
        self.max_timestamp = -1;
    }

    fn seal(&mut self) {
        let header = BatchHeader {
            base_offset: 0,
            size: 0,
            partition_leader_epoch: -1,
            crc: 0,
            attributes: 0,
            last_offset_delta: (self.count - 1).max(0),
            base_timestamp: self.base_timestamp.unwrap_or(-1),
            max_timestamp: self.max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: self.count,
        };
        let out = &mut self.records;
        if out.is_empty() {
            out.resize(BATCH_HEADER_LEN, 0);
        }
        let mut head = Vec::with_capacity(BATCH_HEADER_LEN);
        write_header(&mut head, &header, self.count);
        out[..BATCH_HEADER_LEN].copy_from_slice(&head);
        finish(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_reused_in_place_builds_what_a_fresh_one_builds() {
        let record = |v: &'static [u8], ts| Record {
            key: None,
            value: Some(v),
            timestamp: ts,
            headers: vec![],
        };
        let mut reused = BatchBuilder::new();
        reused.push(&record(b"first batch, longer than the second", 5));
        validate(reused.build_in_place()).unwrap();
        reused.clear();
        reused.push(&record(b"a", 7));
        reused.push(&record(b"b", 9));
        let mut fresh = BatchBuilder::new();
        fresh.push(&record(b"a", 7));
        fresh.push(&record(b"b", 9));
        assert_eq!(reused.build_in_place().to_vec(), fresh.build());
    }

    fn sample() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(&Record {
            key: Some(b"k"),
            value: Some(b"v1"),
            timestamp: 1000,
            headers: vec![],
        });
        b.push(&Record {
            key: None,
            value: Some(b"v2"),
            timestamp: 1005,
            headers: vec![],
        });
        b.build()
    }

    #[test]
    fn built_batch_validates_and_reports_header() {
        let batch = sample();
        let h = validate(&batch).unwrap();
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(h.size, batch.len());
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut batch = sample();
        set_base_offset(&mut batch, 123_456);
        let h = validate(&batch).unwrap();
        assert_eq!(h.base_offset, 123_456);
        assert_eq!(h.last_offset(), 123_457);
    }

    #[test]
    fn flipped_byte_is_a_crc_mismatch() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 0x40;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn wrong_magic_and_short_input_are_rejected() {
        let mut batch = sample();
        batch[16] = 1;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::UnsupportedMagic(1))
        ));
        assert!(matches!(
            validate(&sample()[..30]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn record_set_with_trailing_garbage_is_rejected() {
        let mut set = sample();
        set.extend_from_slice(&sample());
        assert_eq!(split_record_set(&set).unwrap().len(), 2);
        set.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            split_record_set(&set),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(split_record_set(&[]), Err(BatchError::Empty)));
    }
}
