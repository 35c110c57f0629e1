//! Record format v1: how one Kafka record is sealed and opened (docs/wire-format.md).
//!
//! On the wire an encrypted record keeps its key in plaintext (so partitioning and compaction
//! work), carries exactly one header, `encryption_key` = `[format][LEB128 DEK version]`, and a
//! value of `nonce (12) || AEAD(frame) || tag (16)`, where the frame holds the original headers
//! and value. Topic, partition, DEK version and record key are not stored in the payload but
//! bound through the AAD, so a record moved or spliced anywhere else fails to open.
//!
//! A tombstone (null value) stays null, so compaction still deletes its key, but it is
//! authenticated: its `encryption_key` header carries the key reference followed by
//! `nonce || tag`, the AEAD tag of an empty plaintext under the same AAD. A record's frame is
//! never empty, so a tombstone's authenticator can never pass for a record, nor the reverse.

use std::sync::Arc;

use thiserror::Error;
use zeroize::Zeroize;

use crate::engine::{EngineError, PreparedKey, TAG_LEN};
use crate::nonce::{NONCE_LEN, NonceError, NonceSequence};

/// The header KIP-317 names for the key reference.
pub const KEY_HEADER: &str = "encryption_key";
/// The only format this version writes and reads.
pub const FORMAT_V1: u8 = 1;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    #[error("the record has no {KEY_HEADER} header")]
    MissingKeyHeader,
    #[error("the record has {0} {KEY_HEADER} headers; exactly one is allowed")]
    DuplicateKeyHeader(usize),
    #[error("record format {0} is not supported by this client (it reads format {FORMAT_V1})")]
    UnsupportedFormat(u8),
    #[error("the {KEY_HEADER} header is malformed")]
    MalformedKeyHeader,
    #[error("the encrypted value is {len} bytes, shorter than nonce and tag ({min})")]
    TooShort { len: usize, min: usize },
    /// The value was altered, or the record was moved to another topic/partition, or its key,
    /// key version or key header was swapped, or the DEK is wrong.
    #[error("the record failed authentication (tampered, moved, or sealed under another key)")]
    Authentication,
    #[error("the decrypted payload is malformed: {0}")]
    MalformedFrame(&'static str),
    #[error(transparent)]
    Nonce(#[from] NonceError),
    #[error("sealing failed")]
    Seal(#[source] EngineError),
}

/// Where a record lives: bound into the AAD, never written into the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

/// An original record header: a string key and a nullable value, as Kafka has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// What the encrypting side puts on the wire in place of the original headers and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// The value of the single `encryption_key` header.
    pub key_header: Vec<u8>,
    /// `nonce || ciphertext || tag`.
    pub value: Vec<u8>,
}

/// The original headers and value, restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRecord {
    pub headers: Vec<Header>,
    pub value: Vec<u8>,
}

/// Bytes a tombstone's `encryption_key` header carries after the key reference.
pub const TOMBSTONE_AUTH_LEN: usize = NONCE_LEN + TAG_LEN;

/// `[FORMAT_V1][LEB128 dek_version]`.
pub fn encode_key_header(dek_version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + TOMBSTONE_AUTH_LEN);
    out.push(FORMAT_V1);
    put_varint(&mut out, u64::from(dek_version));
    out
}

/// The DEK version named by a record's `encryption_key` header value.
pub fn decode_key_header(bytes: &[u8]) -> Result<u32, RecordError> {
    let (version, rest) = key_reference(bytes)?;
    if !rest.is_empty() {
        return Err(RecordError::MalformedKeyHeader);
    }
    Ok(version)
}

/// The DEK version and the authenticator (`nonce || tag`) of a tombstone's `encryption_key`
/// header value.
pub fn decode_tombstone_header(bytes: &[u8]) -> Result<(u32, &[u8]), RecordError> {
    let (version, rest) = key_reference(bytes)?;
    if rest.len() != TOMBSTONE_AUTH_LEN {
        return Err(RecordError::MalformedKeyHeader);
    }
    Ok((version, rest))
}

/// `[format][minimal LEB128 version]` and what follows it.
fn key_reference(bytes: &[u8]) -> Result<(u32, &[u8]), RecordError> {
    let (&format, rest) = bytes.split_first().ok_or(RecordError::MalformedKeyHeader)?;
    if format != FORMAT_V1 {
        return Err(RecordError::UnsupportedFormat(format));
    }
    let mut cursor = rest;
    let version = take_varint(&mut cursor).ok_or(RecordError::MalformedKeyHeader)?;
    let version = u32::try_from(version).map_err(|_| RecordError::MalformedKeyHeader)?;
    Ok((version, cursor))
}

/// The associated data of a v1 record. Every field is length-prefixed, so no two different
/// (topic, partition, version, key) tuples produce the same bytes; then zero padding to a whole
/// number of 16-byte GCM blocks (the encoding is prefix-free, so padding stays unambiguous, and
/// whole blocks spare GCM a partial-block multiply: docs/performance.md).
pub fn aad(location: RecordLocation<'_>, dek_version: u32, record_key: Option<&[u8]>) -> Vec<u8> {
    with_aad(
        AadPrefix::Fields(location, dek_version),
        record_key,
        <[u8]>::to_vec,
    )
}

fn padded_aad_len(len: usize) -> usize {
    len.next_multiple_of(AAD_BLOCK)
}

/// AES-GCM's block size: the AAD is padded to a multiple of it.
const AAD_BLOCK: usize = 16;

/// AADs up to this size are assembled on the stack (topic + record key of ~200 bytes).
const STACK_AAD: usize = 256;

/// The part of the AAD fixed per (topic, partition, DEK version): precomputed by sealers,
/// written from the fields by openers.
#[derive(Clone, Copy)]
enum AadPrefix<'a> {
    Encoded(&'a [u8]),
    Fields(RecordLocation<'a>, u32),
}

impl AadPrefix<'_> {
    fn max_len(&self) -> usize {
        match self {
            Self::Encoded(bytes) => bytes.len(),
            Self::Fields(location, _) => 1 + 10 + location.topic.len() + 4 + 4,
        }
    }

    /// Writes the prefix to the start of `dst` (at least `max_len` long); returns its length.
    #[inline]
    fn write(&self, dst: &mut [u8]) -> usize {
        match *self {
            Self::Encoded(bytes) => {
                dst[..bytes.len()].copy_from_slice(bytes);
                bytes.len()
            }
            Self::Fields(location, dek_version) => {
                dst[0] = FORMAT_V1;
                let mut at = 1 + write_varint(&mut dst[1..], location.topic.len() as u64);
                let topic = location.topic.as_bytes();
                dst[at..at + topic.len()].copy_from_slice(topic);
                at += topic.len();
                dst[at..at + 4].copy_from_slice(&location.partition.to_be_bytes());
                dst[at + 4..at + 8].copy_from_slice(&dek_version.to_be_bytes());
                at + 8
            }
        }
    }
}

/// Calls `f` with the padded AAD, assembled on the stack when it fits: no allocation per
/// record on either the sealing or the opening side.
#[inline]
fn with_aad<T>(prefix: AadPrefix<'_>, record_key: Option<&[u8]>, f: impl FnOnce(&[u8]) -> T) -> T {
    let bound = padded_aad_len(prefix.max_len() + 1 + 10 + record_key.map_or(0, <[u8]>::len));
    let mut stack = [0u8; STACK_AAD];
    let mut heap;
    // Zeroed either way, so the padding is already in place.
    let buf: &mut [u8] = if bound <= STACK_AAD {
        &mut stack
    } else {
        heap = vec![0u8; bound];
        &mut heap
    };
    let len = prefix.write(buf);
    let len = len + write_aad_record_key(&mut buf[len..], record_key);
    f(&buf[..padded_aad_len(len)])
}

/// The record-key part of the AAD: `0x00`, or `0x01, LEB128 length, key`. Returns its length.
fn write_aad_record_key(dst: &mut [u8], record_key: Option<&[u8]>) -> usize {
    let Some(k) = record_key else {
        dst[0] = 0;
        return 1;
    };
    dst[0] = 1;
    let at = 1 + write_varint(&mut dst[1..], k.len() as u64);
    dst[at..at + k.len()].copy_from_slice(k);
    at + k.len()
}

/// LEB128 into a slice with room for it; returns the bytes written.
fn write_varint(dst: &mut [u8], mut v: u64) -> usize {
    let mut at = 0;
    while v >= 0x80 {
        dst[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    dst[at] = v as u8;
    at + 1
}

/// Seals records for one (topic, partition, DEK version): the producer's per-partition state.
/// The AAD prefix and the key header are computed once, not per record.
pub struct PartitionSealer {
    key: Arc<dyn PreparedKey>,
    nonces: NonceSequence,
    key_header: Vec<u8>,
    aad_prefix: Vec<u8>,
    dek_version: u32,
}

impl PartitionSealer {
    pub fn new(
        key: impl Into<Arc<dyn PreparedKey>>,
        nonces: NonceSequence,
        location: RecordLocation<'_>,
        dek_version: u32,
    ) -> Self {
        Self {
            key: key.into(),
            nonces,
            key_header: encode_key_header(dek_version),
            aad_prefix: {
                let prefix = AadPrefix::Fields(location, dek_version);
                let mut bytes = vec![0u8; prefix.max_len()];
                let len = prefix.write(&mut bytes);
                bytes.truncate(len);
                bytes
            },
            dek_version,
        }
    }

    /// The DEK version this sealer seals under.
    pub fn dek_version(&self) -> u32 {
        self.dek_version
    }

    /// The value of the `encryption_key` header every record sealed here carries.
    pub fn key_header(&self) -> &[u8] {
        &self.key_header
    }

    /// How many records this sealer has sealed (its nonce sequence's use).
    pub fn sealed(&self) -> u64 {
        self.nonces.used()
    }

    /// The `encryption_key` header value of a tombstone with `record_key`: the key reference,
    /// then `nonce || tag` over an empty plaintext under the record's AAD. Uses one nonce.
    pub fn seal_tombstone(&self, record_key: Option<&[u8]>) -> Result<Vec<u8>, RecordError> {
        let nonce = self.nonces.next_nonce()?;
        let tag = with_aad(AadPrefix::Encoded(&self.aad_prefix), record_key, |aad| {
            self.key.seal(nonce, aad, &mut [])
        })
        .map_err(RecordError::Seal)?;
        let mut header = self.key_header.clone();
        header.extend_from_slice(&nonce);
        header.extend_from_slice(&tag);
        Ok(header)
    }

    /// `nonce || ciphertext || tag` of the record's headers and (non-null) value.
    pub fn seal(
        &self,
        record_key: Option<&[u8]>,
        headers: &[Header],
        value: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::new();
        self.seal_into(&mut out, record_key, headers, value)?;
        Ok(out)
    }

    /// [`Self::seal`] into `out` (cleared first), so a caller can reuse one buffer for every
    /// record instead of allocating per record.
    pub fn seal_into(
        &self,
        out: &mut Vec<u8>,
        record_key: Option<&[u8]>,
        headers: &[Header],
        value: &[u8],
    ) -> Result<(), RecordError> {
        let prefix = self.aad_prefix.len();
        let key_part = record_key.map_or(1, |k| 1 + 10 + k.len());
        if padded_aad_len(prefix + key_part) > STACK_AAD {
            return with_aad(AadPrefix::Encoded(&self.aad_prefix), record_key, |aad| {
                seal_frame(out, self.key.as_ref(), &self.nonces, aad, headers, value)
            });
        }
        // The common case, spelled out: measurably cheaper than the general `with_aad`.
        let mut buf = [0u8; STACK_AAD];
        buf[..prefix].copy_from_slice(&self.aad_prefix);
        let len = prefix + write_aad_record_key(&mut buf[prefix..], record_key);
        let aad = &buf[..padded_aad_len(len)];
        seal_frame(out, self.key.as_ref(), &self.nonces, aad, headers, value)
    }
}

/// Seals one record's headers and (non-null) value under the DEK `key` of `dek_version`.
/// One-off convenience; producers keep a [`PartitionSealer`] per partition instead.
pub fn seal(
    key: &dyn PreparedKey,
    nonces: &NonceSequence,
    location: RecordLocation<'_>,
    dek_version: u32,
    record_key: Option<&[u8]>,
    headers: &[Header],
    value: &[u8],
) -> Result<SealedRecord, RecordError> {
    let mut out = Vec::new();
    seal_frame(
        &mut out,
        key,
        nonces,
        &aad(location, dek_version, record_key),
        headers,
        value,
    )?;
    Ok(SealedRecord {
        key_header: encode_key_header(dek_version),
        value: out,
    })
}

fn seal_frame(
    out: &mut Vec<u8>,
    key: &dyn PreparedKey,
    nonces: &NonceSequence,
    aad: &[u8],
    headers: &[Header],
    value: &[u8],
) -> Result<(), RecordError> {
    let nonce = nonces.next_nonce()?;
    let headers_len: usize = headers
        .iter()
        .map(|h| 10 + h.key.len() + 10 + h.value.as_ref().map_or(0, Vec::len))
        .sum();
    let needed = NONCE_LEN + 10 + headers_len + value.len() + TAG_LEN;
    ensure_capacity(out, needed);
    out.clear();
    out.extend_from_slice(&nonce);
    put_varint(out, headers.len() as u64);
    for h in headers {
        put_varint(out, h.key.len() as u64);
        out.extend_from_slice(h.key.as_bytes());
        match &h.value {
            None => put_varint(out, 0),
            Some(v) => {
                put_varint(out, v.len() as u64 + 1);
                out.extend_from_slice(v);
            }
        }
    }
    out.extend_from_slice(value);
    match key.seal(nonce, aad, &mut out[NONCE_LEN..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(e) => {
            // The buffer may still hold the plaintext: wiped, not left for reuse.
            out.zeroize();
            Err(RecordError::Seal(e))
        }
    }
}

/// A reused buffer that grew beyond this (a huge record) is dropped rather than kept.
pub const MAX_REUSED_BUFFER: usize = 1 << 20;

/// A per-thread buffer records are sealed or opened in, reused across records. It holds
/// plaintext between uses, so it is wiped when it is dropped (thread exit) or replaced.
#[derive(Default)]
pub struct ReusedBuffer(Vec<u8>);

impl ReusedBuffer {
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    pub fn get(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Drops a buffer that grew beyond [`MAX_REUSED_BUFFER`] (one huge record), wiping it.
    pub fn shrink(&mut self) {
        if self.0.capacity() > MAX_REUSED_BUFFER {
            self.0.zeroize();
            self.0 = Vec::new();
        }
    }
}

impl Drop for ReusedBuffer {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Gives a reused per-record buffer room for `len` bytes, replacing it with an exact-size one
/// if it is smaller (its contents are about to be overwritten). Not `reserve`: its
/// amortised-growth path costs ~90 instructions per record here.
fn ensure_capacity(buf: &mut Vec<u8>, len: usize) {
    if buf.capacity() < len {
        *buf = Vec::with_capacity(len);
    }
}

/// Makes `buf` exactly `len` bytes long for a caller that overwrites all of them. A reused
/// buffer keeps its initialised bytes, so only growth is zero-filled, not every record.
fn reuse_as(buf: &mut Vec<u8>, len: usize) {
    if buf.len() >= len {
        buf.truncate(len);
    } else {
        if buf.capacity() < len {
            // An opening buffer holds the previous record's plaintext: wiped before it goes.
            // (A sealing buffer holds ciphertext once sealed, and is wiped if a seal fails.)
            buf.zeroize();
        }
        ensure_capacity(buf, len);
        buf.resize(len, 0);
    }
}

/// Opens a record sealed by [`seal`]: `dek_version` comes from its `encryption_key` header,
/// `key` is that version's DEK for this location.
pub fn open(
    key: &dyn PreparedKey,
    location: RecordLocation<'_>,
    dek_version: u32,
    record_key: Option<&[u8]>,
    sealed_value: &[u8],
) -> Result<OpenedRecord, RecordError> {
    open_with_scratch(
        key,
        location,
        dek_version,
        record_key,
        sealed_value,
        &mut Vec::new(),
    )
}

/// Checks a tombstone's authenticator (from [`decode_tombstone_header`]): it was made for
/// this location, DEK version and record key, under `key`.
pub fn open_tombstone(
    key: &dyn PreparedKey,
    location: RecordLocation<'_>,
    dek_version: u32,
    record_key: Option<&[u8]>,
    authenticator: &[u8],
) -> Result<(), RecordError> {
    let (nonce, tag) = authenticator.split_at(NONCE_LEN.min(authenticator.len()));
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| RecordError::Authentication)?;
    if tag.len() != TAG_LEN {
        return Err(RecordError::Authentication);
    }
    with_aad(
        AadPrefix::Fields(location, dek_version),
        record_key,
        |aad| key.open_gather(nonce, aad, &[], tag, &mut []),
    )
    .map_err(|_| RecordError::Authentication)
}

/// [`open`], decrypting in `scratch` (a buffer the caller reuses across records): the result
/// then costs one exact-size allocation for the value, not a ciphertext-size one.
pub fn open_with_scratch(
    key: &dyn PreparedKey,
    location: RecordLocation<'_>,
    dek_version: u32,
    record_key: Option<&[u8]>,
    sealed_value: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<OpenedRecord, RecordError> {
    let frame = open_frame(
        key,
        location,
        dek_version,
        record_key,
        sealed_value,
        scratch,
    )?;
    Ok(OpenedRecord {
        headers: frame.to_headers(),
        value: frame.value().to_vec(),
    })
}

/// [`open`] without copying anything out: the authenticated frame, borrowed from `scratch`
/// (where it was decrypted) and checked to parse, for callers that read it in place.
pub fn open_frame<'s>(
    key: &dyn PreparedKey,
    location: RecordLocation<'_>,
    dek_version: u32,
    record_key: Option<&[u8]>,
    sealed_value: &[u8],
    scratch: &'s mut Vec<u8>,
) -> Result<Frame<'s>, RecordError> {
    let min = NONCE_LEN + TAG_LEN;
    if sealed_value.len() < min {
        return Err(RecordError::TooShort {
            len: sealed_value.len(),
            min,
        });
    }
    let (nonce, body) = sealed_value.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| RecordError::TooShort {
        len: sealed_value.len(),
        min,
    })?;
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    // Decrypted from the consumer's buffer straight into `scratch`: no copy of the ciphertext.
    reuse_as(scratch, ciphertext.len());
    with_aad(
        AadPrefix::Fields(location, dek_version),
        record_key,
        |aad| key.open_gather(nonce, aad, ciphertext, tag, scratch),
    )
    .map_err(|_| {
        // Unauthenticated bytes: not kept for anyone to read by mistake.
        scratch.clear();
        RecordError::Authentication
    })?;
    Frame::parse(scratch)
}

/// An opened record's frame (its original headers, then its value), borrowed from the buffer
/// it was decrypted in. Only made by parsing the whole header section, so reading it again
/// cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    value_start: usize,
    header_count: usize,
}

impl<'a> Frame<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let mut header_count = 0;
        let value_start = walk_frame_headers(bytes, |_, _| header_count += 1)?;
        Ok(Self {
            bytes,
            value_start,
            header_count,
        })
    }

    pub fn value(&self) -> &'a [u8] {
        &self.bytes[self.value_start..]
    }

    pub fn header_count(&self) -> usize {
        self.header_count
    }

    /// Calls `each` with every original header, in order.
    pub fn for_each_header(&self, each: impl FnMut(&'a str, Option<&'a [u8]>)) {
        let walked = walk_frame_headers(self.bytes, each);
        debug_assert!(walked.is_ok(), "a Frame is parsed when made");
    }

    pub fn to_headers(&self) -> Vec<Header> {
        let mut headers = Vec::with_capacity(self.header_count);
        self.for_each_header(|key, value| {
            headers.push(Header {
                key: key.to_owned(),
                value: value.map(<[u8]>::to_vec),
            });
        });
        headers
    }
}

/// Calls `each` with the original headers of a frame, in order, and returns where its value
/// starts; an error (after some calls, perhaps) if the header section does not parse.
fn walk_frame_headers<'a>(
    frame: &'a [u8],
    mut each: impl FnMut(&'a str, Option<&'a [u8]>),
) -> Result<usize, RecordError> {
    let mut cur = frame;
    let count = take_varint(&mut cur).ok_or(RecordError::MalformedFrame("header count"))?;
    // Each header takes at least two bytes, so a count beyond that is malformed.
    if count > cur.len() as u64 / 2 {
        return Err(RecordError::MalformedFrame("header count exceeds payload"));
    }
    for _ in 0..count {
        let key_len =
            take_varint(&mut cur).ok_or(RecordError::MalformedFrame("header key length"))?;
        let key = take(&mut cur, key_len).ok_or(RecordError::MalformedFrame("header key"))?;
        let key = std::str::from_utf8(key)
            .map_err(|_| RecordError::MalformedFrame("header key is not UTF-8"))?;
        let value = match take_varint(&mut cur)
            .ok_or(RecordError::MalformedFrame("header value length"))?
        {
            0 => None,
            n => Some(take(&mut cur, n - 1).ok_or(RecordError::MalformedFrame("header value"))?),
        };
        each(key, value);
    }
    Ok(frame.len() - cur.len())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// LEB128, at most 10 bytes, no overflow, minimal: a multi-byte encoding may not end in a
/// zero byte, so every value has exactly one encoding (`01 87 00` is not version 7).
fn take_varint(cur: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = cur.split_first()?;
        *cur = rest;
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return (i == 0 || b != 0).then_some(v);
        }
    }
    None
}

fn take<'a>(cur: &mut &'a [u8], n: u64) -> Option<&'a [u8]> {
    let n = usize::try_from(n).ok()?;
    if n > cur.len() {
        return None;
    }
    let (head, rest) = cur.split_at(n);
    *cur = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short keys (stack) and long keys (heap), from fields or a precomputed prefix, all give
    /// the documented layout.
    #[test]
    fn every_aad_path_gives_the_documented_layout() {
        let loc = RecordLocation {
            topic: "orders",
            partition: 2,
        };
        for key in [
            None,
            Some(&b""[..]),
            Some(&[7u8; 127][..]),
            Some(&[7u8; 128][..]),
            Some(&[7u8; 200][..]),
            Some(&[7u8; 300][..]),
        ] {
            let mut expected = vec![FORMAT_V1, 6];
            expected.extend_from_slice(b"orders");
            expected.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 9]);
            match key {
                None => expected.push(0),
                Some(k) => {
                    expected.push(1);
                    put_varint(&mut expected, k.len() as u64);
                    expected.extend_from_slice(k);
                }
            }
            expected.resize(expected.len().next_multiple_of(16), 0);
            assert_eq!(aad(loc, 9, key), expected, "{:?}", key.map(<[u8]>::len));
            let prefix = &expected[..1 + 1 + 6 + 8];
            let via_prefix = with_aad(AadPrefix::Encoded(prefix), key, <[u8]>::to_vec);
            assert_eq!(via_prefix, expected);
        }
    }

    #[test]
    fn aad_fields_are_length_prefixed() {
        let loc = |topic| RecordLocation {
            topic,
            partition: 1,
        };
        // Moving bytes between topic and record key must change the AAD.
        assert_ne!(aad(loc("ab"), 1, Some(b"c")), aad(loc("a"), 1, Some(b"bc")));
        assert_ne!(aad(loc("a"), 1, None), aad(loc("a"), 1, Some(b"")));
        // 21 bytes of fields, zero-padded to two GCM blocks.
        let padded = aad(loc("orders"), 7, Some(b"c42"));
        assert_eq!(padded.len(), 32);
        assert_eq!(&padded[1 + 1 + 6 + 4 + 4 + 1 + 1 + 3..], &[0u8; 11]);
        assert_eq!(
            aad(loc("orders12345"), 7, Some(b"c42")).len(),
            32,
            "26 bytes"
        );
        let (t17, t18) = ("o".repeat(17), "o".repeat(18));
        assert_eq!(aad(loc(&t17), 7, Some(b"c42")).len(), 32, "exactly 32");
        assert_eq!(aad(loc(&t18), 7, Some(b"c42")).len(), 48, "33 bytes");
    }
}
