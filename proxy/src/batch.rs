//! Record batches (magic v2), re-framed by hand so that only what encryption changes changes.
//!
//! A batch's 61-byte header (base offset, leader epoch, attributes with the timestamp type and
//! the transactional/control bits, last offset delta, timestamps, producer id, epoch, base
//! sequence, record count) is kept byte for byte; only the records section is re-encoded (with
//! the batch's own codec), and the length and CRC recomputed. Each record keeps its attributes,
//! timestamp and offset deltas and key; its value and headers are what the caller puts there.
//! Kept exactly: duplicate header keys, a last offset delta beyond the last record (compacted
//! batches), LogAppendTime, idempotent and transactional sequence numbers.
//!
//! Compression codecs are kafka-protocol's (gzip, snappy, lz4, zstd).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, None as Plain, Snappy, Zstd};
use thiserror::Error;

/// Bytes of the v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field's end: base offset (8) and the length (4).
const LOG_OVERHEAD: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
/// The header of xerial-framed snappy (the Java client's framing).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const CONTROL_BIT: i16 = 1 << 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {0}")]
    Truncated(&'static str),
    #[error("record batch magic {0} is not supported (only v2 batches, Kafka 0.11 and later)")]
    Magic(i8),
    #[error("record batch CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc { stored: u32, computed: u32 },
    #[error("record batch compression codec {0} is unknown")]
    Codec(i16),
    #[error("record batch could not be (de)compressed: {0}")]
    Compression(String),
    #[error("record batch inflates beyond {MAX_DECOMPRESSED} bytes")]
    TooLarge,
    #[error("malformed record: {0}")]
    Record(&'static str),
}

/// One record of a batch. Header keys are bytes as on the wire (Kafka requires UTF-8; a
/// producer that sends otherwise gets what it sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A complete batch inside a records field: a slice of the response's or request's own
/// buffer (no copy), as are the keys and values of its uncompressed records.
#[derive(Debug, Clone)]
pub struct Batch {
    bytes: Bytes,
}

/// The batches of a records field, and a trailing partial batch (a fetch response may end in
/// one, cut at the size limit; clients ignore it).
pub fn split(records: &Bytes) -> Result<(Vec<Batch>, Bytes), BatchError> {
    let mut batches = Vec::new();
    let mut rest = records.clone();
    while rest.len() >= LOG_OVERHEAD {
        let length = i32::from_be_bytes(read4(&rest, 8));
        let total = usize::try_from(length)
            .ok()
            .filter(|l| *l >= HEADER_LEN - LOG_OVERHEAD)
            .ok_or(BatchError::Truncated("batch length below the header size"))?
            + LOG_OVERHEAD;
        if rest.len() < total {
            break;
        }
        let bytes = rest.split_to(total);
        let magic = bytes[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        batches.push(Batch { bytes });
    }
    Ok((batches, rest))
}

fn read4(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

fn read8(b: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[at..at + 8]);
    out
}

impl Batch {
    /// The whole batch as on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(read8(&self.bytes, 0))
    }

    fn attributes(&self) -> i16 {
        i16::from_be_bytes([self.bytes[ATTRIBUTES_AT], self.bytes[ATTRIBUTES_AT + 1]])
    }

    /// A transaction marker (commit/abort): no application records, never touched.
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }

    pub fn record_count(&self) -> i32 {
        i32::from_be_bytes(read4(&self.bytes, RECORD_COUNT_AT))
    }

    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(read8(&self.bytes, BASE_TIMESTAMP_AT))
    }

    /// With LogAppendTime every record's timestamp is the batch's max timestamp.
    pub fn log_append_time(&self) -> Option<i64> {
        (self.attributes() & TIMESTAMP_TYPE_BIT != 0)
            .then(|| i64::from_be_bytes(read8(&self.bytes, MAX_TIMESTAMP_AT)))
    }

    /// The timestamp of `record` in this batch.
    pub fn timestamp_of(&self, record: &Record) -> i64 {
        self.log_append_time()
            .unwrap_or_else(|| self.base_timestamp().wrapping_add(record.timestamp_delta))
    }

    /// Checks the stored CRC (over attributes to the end).
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let stored = u32::from_be_bytes(read4(&self.bytes, CRC_AT));
        let computed = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        if stored == computed {
            Ok(())
        } else {
            Err(BatchError::Crc { stored, computed })
        }
    }

    /// The records, decompressed and parsed.
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        let count = usize::try_from(self.record_count())
            .map_err(|_| BatchError::Record("negative record count"))?;
        let mut section = self.bytes.slice(HEADER_LEN..);
        let codec = self.attributes() & COMPRESSION_MASK;
        let raw = decompress(codec, &mut section)?;
        parse_records(raw, count)
    }
}

fn compression_error(e: anyhow::Error) -> BatchError {
    BatchError::Compression(format!("{e:#}"))
}

/// The most a batch's records may inflate to: Kafka's own request bound. A batch claiming
/// more (a decompression bomb from a client or a broker) is refused, never allocated.
pub const MAX_DECOMPRESSED: usize = crate::frame::MAX_FRAME;

/// Reads `reader` to its end, refusing more than [`MAX_DECOMPRESSED`] bytes.
fn read_bounded(reader: impl std::io::Read, codec: &str) -> Result<Bytes, BatchError> {
    use std::io::Read as _;
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Compression(format!("{codec}: {e}")))?;
    if out.len() > MAX_DECOMPRESSED {
        return Err(BatchError::TooLarge);
    }
    Ok(Bytes::from(out))
}

/// One raw snappy block, its claimed length checked before anything is allocated.
fn snappy_block(block: &[u8], budget: &mut usize) -> Result<Vec<u8>, BatchError> {
    let error = |e: snap::Error| BatchError::Compression(format!("snappy: {e}"));
    let len = snap::raw::decompress_len(block).map_err(error)?;
    *budget = budget.checked_sub(len).ok_or(BatchError::TooLarge)?;
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(error)
}

fn decompress(codec: i16, section: &mut Bytes) -> Result<Bytes, BatchError> {
    let mut budget = MAX_DECOMPRESSED;
    match codec {
        0 => Ok(section.clone()),
        // Several gzip members are one stream, as Java reads them.
        1 => read_bounded(flate2::read::MultiGzDecoder::new(&section[..]), "gzip"),
        // Xerial framing (the Java client's): a 16-byte header, then length-prefixed raw blocks.
        2 if section.starts_with(XERIAL_MAGIC) => {
            let mut rest = section
                .get(16..)
                .ok_or(BatchError::Truncated("snappy header"))?;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let len = rest
                    .get(..4)
                    .ok_or(BatchError::Truncated("snappy block length"))?;
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let block = rest
                    .get(4..4 + len)
                    .ok_or(BatchError::Truncated("snappy block"))?;
                out.extend(snappy_block(block, &mut budget)?);
                rest = &rest[4 + len..];
            }
            Ok(Bytes::from(out))
        }
        // Raw snappy, as librdkafka writes it.
        2 => snappy_block(section, &mut budget).map(Bytes::from),
        3 => read_bounded(
            lz4::Decoder::new(&section[..])
                .map_err(|e| BatchError::Compression(format!("lz4: {e}")))?,
            "lz4",
        ),
        4 => read_bounded(
            zstd::stream::read::Decoder::new(&section[..])
                .map_err(|e| BatchError::Compression(format!("zstd: {e}")))?,
            "zstd",
        ),
        other => Err(BatchError::Codec(other)),
    }
}

fn compress(codec: i16, raw: &[u8], out: &mut BytesMut) -> Result<(), BatchError> {
    fn put(raw: &[u8]) -> impl FnOnce(&mut BytesMut) -> anyhow::Result<()> + '_ {
        move |b| {
            b.put_slice(raw);
            Ok(())
        }
    }
    match codec {
        0 => Plain::compress(out, put(raw)),
        1 => Gzip::compress(out, put(raw)),
        2 => Snappy::compress(out, put(raw)),
        3 => Lz4::compress(out, put(raw)),
        4 => Zstd::compress(out, put(raw)),
        other => return Err(BatchError::Codec(other)),
    }
    .map_err(compression_error)
}

/// Zig-zag varint, as Kafka's records use.
fn get_varlong(buf: &mut Bytes) -> Result<i64, BatchError> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(BatchError::Record("varint cut short"));
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(BatchError::Record("varint longer than 10 bytes"))
}

fn get_varint(buf: &mut Bytes) -> Result<i32, BatchError> {
    i32::try_from(get_varlong(buf)?).map_err(|_| BatchError::Record("varint out of range"))
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn put_varlong(out: &mut impl BufMut, value: i64) {
    let mut v = zigzag(value);
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn varlong_len(value: i64) -> usize {
    let bits = 64 - zigzag(value).leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// A length-prefixed field; -1 is null.
fn get_nullable(buf: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    let len = get_varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(BatchError::Record("field longer than its record"));
    }
    Ok(Some(buf.split_to(len)))
}

fn put_nullable(out: &mut impl BufMut, field: Option<&[u8]>) {
    match field {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.put_slice(bytes);
        }
    }
}

fn nullable_len(field: Option<&[u8]>) -> usize {
    field.map_or(1, |b| varlong_len(b.len() as i64) + b.len())
}

fn parse_records(mut raw: Bytes, count: usize) -> Result<Vec<Record>, BatchError> {
    let mut records = Vec::with_capacity(count.min(raw.len()));
    for _ in 0..count {
        let len = get_varint(&mut raw)?;
        let len = usize::try_from(len).map_err(|_| BatchError::Record("negative length"))?;
        if raw.remaining() < len {
            return Err(BatchError::Record("record longer than its batch"));
        }
        let mut body = raw.split_to(len);
        if !body.has_remaining() {
            return Err(BatchError::Record("empty record"));
        }
        let attributes = body.get_i8();
        let timestamp_delta = get_varlong(&mut body)?;
        let offset_delta = get_varint(&mut body)?;
        let key = get_nullable(&mut body)?;
        let value = get_nullable(&mut body)?;
        let header_count = get_varint(&mut body)?;
        let header_count = usize::try_from(header_count)
            .map_err(|_| BatchError::Record("negative header count"))?;
        let mut headers = Vec::with_capacity(header_count.min(body.len()));
        for _ in 0..header_count {
            let key = get_nullable(&mut body)?.ok_or(BatchError::Record("null header key"))?;
            let value = get_nullable(&mut body)?;
            headers.push((key, value));
        }
        if body.has_remaining() {
            return Err(BatchError::Record("bytes after the record's headers"));
        }
        records.push(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        });
    }
    if raw.has_remaining() {
        return Err(BatchError::Record("bytes after the batch's last record"));
    }
    Ok(records)
}

/// Writes `record` (its length first, computed, so every byte is copied once).
fn encode_record(out: &mut impl BufMut, record: &Record) {
    let headers = record.headers.len() as i64;
    let len = 1
        + varlong_len(record.timestamp_delta)
        + varlong_len(i64::from(record.offset_delta))
        + nullable_len(record.key.as_deref())
        + nullable_len(record.value.as_deref())
        + varlong_len(headers)
        + record
            .headers
            .iter()
            .map(|(k, v)| nullable_len(Some(k)) + nullable_len(v.as_deref()))
            .sum::<usize>();
    put_varlong(out, len as i64);
    out.put_u8(record.attributes as u8);
    put_varlong(out, record.timestamp_delta);
    put_varlong(out, i64::from(record.offset_delta));
    put_nullable(out, record.key.as_deref());
    put_nullable(out, record.value.as_deref());
    put_varlong(out, headers);
    for (key, value) in &record.headers {
        put_nullable(out, Some(key));
        put_nullable(out, value.as_deref());
    }
}

/// Appends `original` with its records replaced by `records` (the same records, changed, or
/// the first ones of them: then the record count and last offset delta follow them).
pub fn encode(out: &mut BytesMut, original: &Batch, records: &[Record]) -> Result<(), BatchError> {
    let start = out.len();
    out.put_slice(&original.bytes[..HEADER_LEN]);
    let codec = original.attributes() & COMPRESSION_MASK;
    if codec == 0 {
        // Uncompressed: straight into the output.
        for record in records {
            encode_record(out, record);
        }
    } else {
        let mut raw = Vec::new();
        for record in records {
            encode_record(&mut raw, record);
        }
        compress(codec, &raw, out)?;
    }
    let batch = &mut out[start..];
    let length = i32::try_from(batch.len() - LOG_OVERHEAD)
        .map_err(|_| BatchError::Record("batch over 2 GiB"))?;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let all = usize::try_from(original.record_count()).ok() == Some(records.len());
    if !all {
        let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
        batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let last = records.last().map_or(0, |r| r.offset_delta);
        batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&last.to_be_bytes());
    }
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    use super::*;

    fn bytes(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    /// A batch as another implementation (kafka-protocol's encoder) writes it.
    fn foreign_batch(compression: Compression, values: &[&[u8]], transactional: bool) -> Bytes {
        let records: Vec<KpRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| KpRecord {
                transactional,
                control: false,
                partition_leader_epoch: 7,
                producer_id: 42,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i as i64,
                sequence: 9 + i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::copy_from_slice(v)),
                headers: IndexMap::from([(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn every_codec_round_trips_and_the_header_is_kept() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let wire = foreign_batch(compression, &[b"one", b"two", b"three"], true);
            let (batches, rest) = split(&bytes(&wire)).unwrap();
            assert!(rest.is_empty());
            assert_eq!(batches.len(), 1);
            let batch = &batches[0];
            batch.verify_crc().unwrap();
            let mut records = batch.records().unwrap();
            assert_eq!(records.len(), 3);
            assert_eq!(records[1].value.as_deref(), Some(&b"two"[..]));
            for r in &mut records {
                r.value = Some(Bytes::from(format!("sealed-{:?}", r.value)));
                r.headers.push((Bytes::from_static(b"h"), None));
            }
            let mut out = BytesMut::new();
            encode(&mut out, batch, &records).unwrap();
            let (again, _) = split(&bytes(&out)).unwrap();
            again[0].verify_crc().unwrap();
            assert_eq!(again[0].records().unwrap(), records, "{compression:?}");
            // Every header field but length and CRC is as it was.
            assert_eq!(out[..8], wire[..8]);
            assert_eq!(out[12..17], wire[12..17]);
            assert_eq!(out[21..61], wire[21..61]);
            // Another implementation reads it, with the duplicate header kept on our side.
            let decoded = RecordBatchDecoder::decode(&mut out.clone().freeze()).unwrap();
            assert_eq!(decoded.records[0].producer_id, 42);
            assert_eq!(decoded.records[2].sequence, 11);
            assert!(decoded.records[0].transactional);
        }
    }

    /// Decompression bombs are refused before they are allocated: found by the fuzzer (a raw
    /// snappy block claiming ~4 GiB), and a gzip stream of 200 MiB of zeros.
    #[test]
    fn batches_that_inflate_beyond_the_bound_are_refused() {
        let found = include_bytes!("../tests/data/oom-snappy-length.bin");
        if let Ok((batches, _)) = split(&bytes(found)) {
            for b in batches {
                assert!(b.records().is_err());
            }
        }
        let wire = foreign_batch(Compression::None, &[b"x"], false);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &vec![0u8; MAX_DECOMPRESSED + 1]).unwrap();
        let mut bomb = wire[..HEADER_LEN].to_vec();
        bomb[ATTRIBUTES_AT + 1] |= 1;
        bomb.extend(gz.finish().unwrap());
        let length = (bomb.len() - LOG_OVERHEAD) as i32;
        bomb[8..12].copy_from_slice(&length.to_be_bytes());
        let (batches, _) = split(&bytes(&bomb)).unwrap();
        assert_eq!(batches[0].records(), Err(BatchError::TooLarge));
    }

    /// librdkafka writes snappy raw, without the xerial framing the Java client uses.
    #[test]
    fn raw_snappy_batches_are_read() {
        let wire = foreign_batch(Compression::None, &[b"one", b"two"], false);
        let (batches, _) = split(&bytes(&wire)).unwrap();
        let plain_records = &wire[HEADER_LEN..];
        let mut raw = wire[..HEADER_LEN].to_vec();
        raw[ATTRIBUTES_AT + 1] |= 2;
        raw.extend(
            snap::raw::Encoder::new()
                .compress_vec(plain_records)
                .unwrap(),
        );
        let length = (raw.len() - LOG_OVERHEAD) as i32;
        raw[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&raw[ATTRIBUTES_AT..]);
        raw[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let (snappy, _) = split(&bytes(&raw)).unwrap();
        snappy[0].verify_crc().unwrap();
        assert_eq!(snappy[0].records().unwrap(), batches[0].records().unwrap());
    }

    #[test]
    fn a_prefix_of_the_records_ends_the_batch_where_they_end() {
        let wire = foreign_batch(Compression::None, &[b"a", b"b", b"c"], false);
        let (batches, _) = split(&bytes(&wire)).unwrap();
        let records = batches[0].records().unwrap();
        let mut out = BytesMut::new();
        encode(&mut out, &batches[0], &records[..2]).unwrap();
        let (again, _) = split(&bytes(&out)).unwrap();
        assert_eq!(again[0].record_count(), 2);
        assert_eq!(again[0].records().unwrap(), records[..2]);
        let decoded = RecordBatchDecoder::decode(&mut out.freeze()).unwrap();
        assert_eq!(decoded.records.last().unwrap().offset, 101);
    }

    #[test]
    fn a_trailing_partial_batch_is_set_aside_and_damage_is_an_error() {
        let mut wire = foreign_batch(Compression::None, &[b"a"], false).to_vec();
        let one = wire.len();
        wire.extend_from_slice(&foreign_batch(Compression::None, &[b"b"], false)[..20]);
        let (batches, rest) = split(&bytes(&wire)).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(rest.len(), 20);
        let mut flipped = wire[..one].to_vec();
        flipped[one - 1] ^= 1;
        assert!(matches!(
            split(&bytes(&flipped)).unwrap().0[0].verify_crc(),
            Err(BatchError::Crc { .. })
        ));
        let mut old = wire[..one].to_vec();
        old[MAGIC_AT] = 1;
        assert_eq!(split(&bytes(&old)).unwrap_err(), BatchError::Magic(1));
    }

    proptest! {
        #[test]
        fn records_round_trip(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)), 1..20),
                              dup in any::<bool>()) {
            let wire = foreign_batch(Compression::None, &[b"x"], false);
            let (batches, _) = split(&bytes(&wire)).unwrap();
            let mut template = batches[0].records().unwrap().remove(0);
            let records: Vec<Record> = values.iter().enumerate().map(|(i, v)| {
                template.offset_delta = i as i32;
                template.value = v.clone().map(Bytes::from);
                if dup { template.headers.push((Bytes::from_static(b"h"), Some(Bytes::from(vec![i as u8])))); }
                template.clone()
            }).collect();
            let mut out = BytesMut::new();
            encode(&mut out, &batches[0], &records).unwrap();
            let (again, _) = split(&bytes(&out)).unwrap();
            prop_assert_eq!(again[0].records().unwrap(), records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok((batches, _)) = split(&bytes(&input)) {
                for b in batches {
                    let _ = b.verify_crc();
                    let _ = b.records();
                }
            }
        }
    }
}
