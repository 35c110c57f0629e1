//! Operator signatures on key-topic records (docs/wire-format.md, "Signed key records").
//!
//! The key topic lives on the broker, which is not trusted: whoever administers it can write
//! any record there. So every record the operator writes (policy, EDEK, and their tombstones)
//! carries an Ed25519 signature over its record key, its value (or the fact that it is a
//! tombstone) and a generation that only grows; readers believe a record only if a key from
//! their trusted configuration (which reaches them through the Kubernetes API, never through
//! Kafka) verifies it.
//!
//! Records are signed in batches (what one write publishes: a rollover's EDEKs, a re-signing
//! pass): one Ed25519 signature over the root of a SHA-256 Merkle tree of the batch's records,
//! and each record carries the signature and its audit path in one header,
//! [`SIGNATURE_HEADER`] (layout in docs/wire-format.md). A reader checks the path to the root
//! and the root's signature once per batch ([`Verifier`] remembers verified roots), so a cold
//! read of N records costs about one signature check per batch, not per record.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;
use zeroize::Zeroizing;

/// The record header that carries a key record's signature.
pub const SIGNATURE_HEADER: &str = "key_record_signature";
/// The only signature format this version writes and reads.
pub const SIGNATURE_FORMAT: u8 = 1;
/// Bytes of the header value before the audit path: format, key id, generation, signature,
/// leaf index, leaf count.
pub const SIGNATURE_HEADER_FIXED_LEN: usize = 1 + KEY_ID_LEN + 8 + SIGNATURE_LEN + 4 + 4;
/// The most records one signature covers (audit paths stay at most 10 hashes).
pub const MAX_BATCH: usize = 1024;

const KEY_ID_LEN: usize = 8;
const SIGNATURE_LEN: usize = 64;
const PUBLIC_KEY_LEN: usize = 32;
const HASH_LEN: usize = 32;
/// Domain separation: these bytes are signed for nothing else.
const LABEL: &[u8] = b"kafka-e2ee key record batch v1\0";
/// A leaf (one record) and an inner node never hash the same input.
const LEAF: u8 = 0;
const NODE: u8 = 1;
/// Verified batch roots a [`Verifier`] remembers.
const VERIFIED_ROOTS: usize = 4096;
/// How a public key is written in configuration: `ed25519:<base64>`.
const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// Why a key-topic record is not believed. Bounded (the reason is a metric label).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("it carries no {SIGNATURE_HEADER} header")]
    Unsigned,
    #[error("it carries more than one {SIGNATURE_HEADER} header")]
    DuplicateHeader,
    #[error("its {SIGNATURE_HEADER} header is malformed")]
    Malformed,
    #[error("it is signed by key {0}, which is not trusted")]
    UnknownSigner(KeyId),
    #[error("its signature by key {0} does not verify")]
    Invalid(KeyId),
}

impl SignatureError {
    /// A stable metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::DuplicateHeader | Self::Malformed => "malformed_signature",
            Self::UnknownSigner(_) => "unknown_signer",
            Self::Invalid(_) => "bad_signature",
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    #[error("could not generate a signing key")]
    Generate,
    #[error("the signing key is not a valid Ed25519 PKCS#8 document")]
    InvalidPrivateKey,
    #[error("{0:?} is not a public key of the form ed25519:<base64 of 32 bytes>")]
    InvalidPublicKey(String),
}

/// A signing key's id: the first 8 bytes of SHA-256 of its public key, shown in hex. Derived,
/// so an id can never name two keys by mistake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    fn of(public_key: &[u8]) -> Self {
        let hash = digest::digest(&digest::SHA256, public_key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hash.as_ref()[..KEY_ID_LEN]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// An operator's public signing key, as configuration carries it: `ed25519:<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: KeyId,
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl PublicKey {
    fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self {
            id: KeyId::of(&bytes),
            bytes,
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = SigningKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || SigningKeyError::InvalidPublicKey(s.to_owned());
        let encoded = s
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or_else(invalid)?;
        let bytes: [u8; PUBLIC_KEY_LEN] = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(invalid)?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.bytes))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}: {self})", self.id)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The operator's private signing key. Not `Debug`, `Display` or `Clone`: its bytes exist
/// only inside aws-lc (and, while being stored, in a zeroized buffer).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl SigningKey {
    /// A new random key, and its PKCS#8 document for storage (zeroized when dropped).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), SigningKeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| SigningKeyError::Generate)?;
        let pkcs8 = pair.to_pkcs8().map_err(|_| SigningKeyError::Generate)?;
        let stored = Zeroizing::new(pkcs8.as_ref().to_vec());
        Ok((Self::from_pair(pair)?, stored))
    }

    /// Loads a key stored as an Ed25519 PKCS#8 (v1 or v2) document.
    pub fn from_pkcs8(document: &[u8]) -> Result<Self, SigningKeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(document)
            .map_err(|_| SigningKeyError::InvalidPrivateKey)?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: Ed25519KeyPair) -> Result<Self, SigningKeyError> {
        let public: [u8; PUBLIC_KEY_LEN] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| SigningKeyError::InvalidPrivateKey)?;
        Ok(Self {
            pair,
            public: PublicKey::from_bytes(public),
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key as a PKCS#8 document, for storage (zeroized when dropped).
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, SigningKeyError> {
        let document = self
            .pair
            .to_pkcs8()
            .map_err(|_| SigningKeyError::Generate)?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// The [`SIGNATURE_HEADER`] value for one record (`value` `None` for a tombstone): a
    /// batch of one.
    pub fn sign(&self, generation: u64, record_key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        self.sign_batch(generation, &[(record_key, value)])
            .pop()
            .unwrap_or_default()
    }

    /// One [`SIGNATURE_HEADER`] value per record, in order, under one signature over the
    /// batch's Merkle root. At most [`MAX_BATCH`] records (callers chunk larger batches).
    pub fn sign_batch(&self, generation: u64, records: &[(&[u8], Option<&[u8]>)]) -> Vec<Vec<u8>> {
        let leaves: Vec<[u8; HASH_LEN]> = records
            .iter()
            .map(|(key, value)| leaf_hash(key, *value))
            .collect();
        let count = leaves.len() as u32;
        let levels = tree_levels(leaves);
        let root = levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or([0; HASH_LEN]);
        let signature = self
            .pair
            .sign(&batch_message(self.id(), generation, count, &root));
        (0..count as usize)
            .map(|index| {
                let path = audit_path(&levels, index);
                let mut header =
                    Vec::with_capacity(SIGNATURE_HEADER_FIXED_LEN + path.len() * HASH_LEN);
                header.push(SIGNATURE_FORMAT);
                header.extend_from_slice(&self.id().0);
                header.extend_from_slice(&generation.to_be_bytes());
                header.extend_from_slice(signature.as_ref());
                header.extend_from_slice(&(index as u32).to_be_bytes());
                header.extend_from_slice(&count.to_be_bytes());
                for hash in path {
                    header.extend_from_slice(&hash);
                }
                header
            })
            .collect()
    }
}

/// A record's leaf: the length-prefixed record key, then the length-prefixed value or a
/// tombstone marker. Every field has a fixed size or a length prefix, so no two records share
/// a leaf.
fn leaf_hash(record_key: &[u8], value: Option<&[u8]>) -> [u8; HASH_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[LEAF]);
    ctx.update(&(record_key.len() as u32).to_be_bytes());
    ctx.update(record_key);
    match value {
        None => ctx.update(&[0]),
        Some(v) => {
            ctx.update(&[1]);
            ctx.update(&(v.len() as u64).to_be_bytes());
            ctx.update(v);
        }
    }
    to_hash(ctx.finish())
}

fn node_hash(left: &[u8; HASH_LEN], right: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[NODE]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish())
}

fn to_hash(d: digest::Digest) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

/// What is signed for a batch: the label, the signer, the generation, the number of records
/// and the root.
fn batch_message(signer: KeyId, generation: u64, count: u32, root: &[u8; HASH_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + KEY_ID_LEN + 8 + 4 + HASH_LEN);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(&signer.0);
    m.extend_from_slice(&generation.to_be_bytes());
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(root);
    m
}

/// The tree, level by level from the leaves to the root: at each level, nodes are paired left
/// to right, and an odd last node moves up unchanged. One leaf is its own root.
fn tree_levels(leaves: Vec<[u8; HASH_LEN]>) -> Vec<Vec<[u8; HASH_LEN]>> {
    let mut levels = vec![leaves];
    while let Some(level) = levels.last().filter(|l| l.len() > 1) {
        let up = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [single] => *single,
                _ => [0; HASH_LEN],
            })
            .collect();
        levels.push(up);
    }
    levels
}

/// The siblings of leaf `index` from the bottom up (none where a node moves up alone).
fn audit_path(levels: &[Vec<[u8; HASH_LEN]>], mut index: usize) -> Vec<[u8; HASH_LEN]> {
    let mut path = Vec::new();
    for level in levels.iter().take(levels.len().saturating_sub(1)) {
        if let Some(sibling) = level.get(index ^ 1) {
            path.push(*sibling);
        }
        index /= 2;
    }
    path
}

/// The root that `leaf` at `index` of `count` leaves leads to through `path`; `None` if the
/// path has the wrong number of hashes for that position.
fn root_from_path(
    leaf: [u8; HASH_LEN],
    mut index: usize,
    mut count: usize,
    path: &[u8],
) -> Option<[u8; HASH_LEN]> {
    let mut hashes = path.chunks_exact(HASH_LEN);
    if !hashes.remainder().is_empty() || index >= count {
        return None;
    }
    let mut node = leaf;
    while count > 1 {
        let sibling = index ^ 1;
        if sibling < count {
            let hash: [u8; HASH_LEN] = hashes.next()?.try_into().ok()?;
            node = if index.is_multiple_of(2) {
                node_hash(&node, &hash)
            } else {
                node_hash(&hash, &node)
            };
        }
        index /= 2;
        count = count.div_ceil(2);
    }
    hashes.next().is_none().then_some(node)
}

/// Who signed a record that verified, and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub signer: KeyId,
    pub generation: u64,
}

/// The public keys a reader believes. They come from the trusted configuration (the
/// Kubernetes API), never from Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.id, k)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// Verifies a record's signature header (`None` when the record has none). One-off: a
    /// reader of many records keeps a [`Verifier`], which checks each batch's signature once.
    pub fn verify(
        &self,
        record_key: &[u8],
        value: Option<&[u8]>,
        header: Option<&[u8]>,
    ) -> Result<Signed, SignatureError> {
        Verifier::new(self.clone()).verify(record_key, value, header)
    }
}

/// Verifies records against trusted keys, remembering the batch roots whose signature it has
/// checked (at most 4096, the oldest forgotten first).
pub struct Verifier {
    keys: TrustedKeys,
    verified: std::collections::HashSet<(KeyId, u64, u32, [u8; HASH_LEN])>,
    order: std::collections::VecDeque<(KeyId, u64, u32, [u8; HASH_LEN])>,
    signature_checks: u64,
}

impl Verifier {
    pub fn new(keys: TrustedKeys) -> Self {
        Self {
            keys,
            verified: Default::default(),
            order: Default::default(),
            signature_checks: 0,
        }
    }

    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// Ed25519 checks made so far (one per batch, however many of its records were read).
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks
    }

    /// Verifies a record's signature header (`None` when the record has none).
    pub fn verify(
        &mut self,
        record_key: &[u8],
        value: Option<&[u8]>,
        header: Option<&[u8]>,
    ) -> Result<Signed, SignatureError> {
        self.verify_all(&[(record_key, value, header)])
            .pop()
            .unwrap_or(Err(SignatureError::Unsigned))
    }

    /// Verifies many records (record key, value, signature header), answering in order. Each
    /// record's audit path is checked against its batch root; the signatures of batches not
    /// verified before are checked once each, on up to [`PARALLEL_CHECKS`] threads when there
    /// are enough of them (a cold read of records signed one by one is dominated by them).
    pub fn verify_all(&mut self, records: &[ToVerify<'_>]) -> Vec<Result<Signed, SignatureError>> {
        let located: Vec<Result<Located<'_>, SignatureError>> =
            records.iter().map(|r| self.locate(r)).collect();
        let mut unchecked: Vec<(BatchId, &[u8])> = Vec::new();
        for l in located.iter().flatten() {
            if !self.verified.contains(&l.batch) && !unchecked.contains(&(l.batch, l.signature)) {
                unchecked.push((l.batch, l.signature));
            }
        }
        self.signature_checks += unchecked.len() as u64;
        let outcomes = check_signatures(&self.keys, &unchecked);
        for ((batch, _), ok) in unchecked.iter().zip(&outcomes) {
            if *ok {
                self.remember(*batch);
            }
        }
        located
            .into_iter()
            .map(|l| {
                let l = l?;
                if self.verified.contains(&l.batch) {
                    Ok(l.signed)
                } else {
                    Err(SignatureError::Invalid(l.signed.signer))
                }
            })
            .collect()
    }

    /// The batch a record belongs to, from its header and audit path (hashing only).
    fn locate<'a>(&self, record: &ToVerify<'a>) -> Result<Located<'a>, SignatureError> {
        let (record_key, value, header) = *record;
        let header = header.ok_or(SignatureError::Unsigned)?;
        let parsed = parse_header(header)?;
        if !self.keys.keys.contains_key(&parsed.signer) {
            return Err(SignatureError::UnknownSigner(parsed.signer));
        }
        let root = root_from_path(
            leaf_hash(record_key, value),
            parsed.index as usize,
            parsed.count as usize,
            parsed.path,
        )
        .ok_or(SignatureError::Invalid(parsed.signer))?;
        Ok(Located {
            signed: Signed {
                signer: parsed.signer,
                generation: parsed.generation,
            },
            batch: (parsed.signer, parsed.generation, parsed.count, root),
            signature: parsed.signature,
        })
    }

    fn remember(&mut self, batch: BatchId) {
        if self.verified.insert(batch) {
            if self.order.len() >= VERIFIED_ROOTS
                && let Some(oldest) = self.order.pop_front()
            {
                self.verified.remove(&oldest);
            }
            self.order.push_back(batch);
        }
    }
}

/// A record to verify: record key, value (`None`: tombstone), signature header.
pub type ToVerify<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

/// A signed batch: signer, generation, record count, root.
type BatchId = (KeyId, u64, u32, [u8; HASH_LEN]);

struct Located<'a> {
    signed: Signed,
    batch: BatchId,
    signature: &'a [u8],
}

/// At most this many threads check signatures at once.
pub const PARALLEL_CHECKS: usize = 4;
/// Fewer checks than this run on the calling thread alone.
const PARALLEL_FROM: usize = 16;

/// Checks each batch's signature; in parallel chunks when there are many.
fn check_signatures(keys: &TrustedKeys, batches: &[(BatchId, &[u8])]) -> Vec<bool> {
    let check = |(batch, signature): &(BatchId, &[u8])| {
        let (signer, generation, count, root) = batch;
        keys.keys.get(signer).is_some_and(|key| {
            key.verify(
                &batch_message(*signer, *generation, *count, root),
                signature,
            )
        })
    };
    if batches.len() < PARALLEL_FROM {
        return batches.iter().map(check).collect();
    }
    // Asked once: it reads cgroup files.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(PARALLEL_CHECKS)
    });
    if threads < 2 {
        return batches.iter().map(check).collect();
    }
    let chunk = batches.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = batches.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|c| {
                (
                    c.len(),
                    scope.spawn(move || c.iter().map(check).collect::<Vec<bool>>()),
                )
            })
            .collect();
        let mut out: Vec<bool> = first.iter().map(check).collect();
        for (len, handle) in others {
            // A panicking check thread counts as failed checks, never as verified, and its
            // chunk keeps its place.
            match handle.join() {
                Ok(part) if part.len() == len => out.extend(part),
                _ => out.extend(std::iter::repeat_n(false, len)),
            }
        }
        out
    })
}

struct ParsedHeader<'a> {
    signer: KeyId,
    generation: u64,
    signature: &'a [u8],
    index: u32,
    count: u32,
    path: &'a [u8],
}

fn parse_header(header: &[u8]) -> Result<ParsedHeader<'_>, SignatureError> {
    let malformed = SignatureError::Malformed;
    if header.len() < SIGNATURE_HEADER_FIXED_LEN || header[0] != SIGNATURE_FORMAT {
        return Err(malformed);
    }
    let (id, rest) = header[1..].split_at(KEY_ID_LEN);
    let (generation, rest) = rest.split_at(8);
    let (signature, rest) = rest.split_at(SIGNATURE_LEN);
    let (index, rest) = rest.split_at(4);
    let (count, path) = rest.split_at(4);
    let be32 = |b: &[u8]| b.try_into().map(u32::from_be_bytes);
    let count = be32(count).map_err(|_| malformed.clone())?;
    if count == 0 || count as usize > MAX_BATCH {
        return Err(malformed);
    }
    Ok(ParsedHeader {
        signer: KeyId(id.try_into().map_err(|_| malformed.clone())?),
        generation: u64::from_be_bytes(generation.try_into().map_err(|_| malformed.clone())?),
        signature,
        index: be32(index).map_err(|_| malformed.clone())?,
        count,
        path,
    })
}

/// Signs what a writer publishes, with generations that only grow: at least the current time
/// in microseconds and always above every generation seen or issued before, so a restarted
/// operator (or one whose clock stepped back) still supersedes what it wrote earlier.
pub struct Signer {
    key: RwLock<Arc<SigningKey>>,
    last_generation: AtomicU64,
}

impl Signer {
    pub fn new(key: impl Into<Arc<SigningKey>>) -> Self {
        Self {
            key: RwLock::new(key.into()),
            last_generation: AtomicU64::new(0),
        }
    }

    /// The key new records are signed with.
    pub fn key(&self) -> Arc<SigningKey> {
        Arc::clone(&self.key.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Signs with `key` from now on (signing-key rotation).
    pub fn set_key(&self, key: Arc<SigningKey>) {
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// Records a generation seen in the key topic: the next one issued is above it.
    pub fn observe_generation(&self, generation: u64) {
        self.last_generation.fetch_max(generation, Ordering::AcqRel);
    }

    /// The signature header of each record of a batch (at most [`MAX_BATCH`]), under one
    /// fresh generation.
    pub fn sign_batch(&self, records: &[(&[u8], Option<&[u8]>)]) -> Vec<Vec<u8>> {
        let generation = self.next_generation();
        self.key().sign_batch(generation, records)
    }

    fn next_generation(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut last = self.last_generation.load(Ordering::Acquire);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.last_generation.compare_exchange_weak(
                last,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate().unwrap().0
    }

    #[test]
    fn a_signature_verifies_for_exactly_what_was_signed() {
        let k = key();
        let trusted = TrustedKeys::new([k.public_key().clone()]);
        let header = k.sign(7, b"policy/orders", Some(b"{}"));
        assert_eq!(
            header.len(),
            SIGNATURE_HEADER_FIXED_LEN,
            "a batch of one has no path"
        );
        assert_eq!(
            trusted.verify(b"policy/orders", Some(b"{}"), Some(&header)),
            Ok(Signed {
                signer: k.id(),
                generation: 7
            })
        );
        let invalid = Err(SignatureError::Invalid(k.id()));
        assert_eq!(
            trusted.verify(b"policy/orderz", Some(b"{}"), Some(&header)),
            invalid
        );
        assert_eq!(
            trusted.verify(b"policy/orders", Some(b"{ }"), Some(&header)),
            invalid
        );
        assert_eq!(
            trusted.verify(b"policy/orders", None, Some(&header)),
            invalid
        );
        assert_eq!(
            trusted.verify(
                b"policy/orders",
                Some(b""),
                Some(&k.sign(1, b"policy/orders", None))
            ),
            invalid
        );
        // The generation is signed: raising it breaks the signature.
        let mut raised = header.clone();
        raised[1 + KEY_ID_LEN + 7] ^= 1;
        assert_eq!(
            trusted.verify(b"policy/orders", Some(b"{}"), Some(&raised)),
            invalid
        );
        // Every bit of the header matters.
        for byte in 1..header.len() {
            let mut flipped = header.clone();
            flipped[byte] ^= 0x80;
            assert!(
                trusted
                    .verify(b"policy/orders", Some(b"{}"), Some(&flipped))
                    .is_err(),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn every_record_of_a_batch_verifies_alone_and_only_as_itself() {
        let k = key();
        let trusted = TrustedKeys::new([k.public_key().clone()]);
        for n in [1usize, 2, 3, 5, 8, 13, 64, 100, MAX_BATCH] {
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|i| format!("edek/t/0/{i}").into_bytes())
                .collect();
            let values: Vec<Vec<u8>> = (0..n)
                .map(|i| format!("{{\"v\":{i}}}").into_bytes())
                .collect();
            let records: Vec<(&[u8], Option<&[u8]>)> = keys
                .iter()
                .zip(&values)
                .enumerate()
                .map(|(i, (k, v))| (k.as_slice(), (i % 7 != 3).then_some(v.as_slice())))
                .collect();
            let headers = k.sign_batch(9, &records);
            assert_eq!(headers.len(), n);
            let longest = headers.iter().map(Vec::len).max().unwrap();
            assert!(
                longest <= SIGNATURE_HEADER_FIXED_LEN + 10 * HASH_LEN,
                "{n} records: a path of at most 10 hashes"
            );
            let mut verifier = Verifier::new(trusted.clone());
            for ((key, value), header) in records.iter().zip(&headers) {
                assert_eq!(
                    verifier
                        .verify(key, *value, Some(header))
                        .map(|s| s.generation),
                    Ok(9),
                    "{n} records"
                );
            }
            assert_eq!(verifier.signature_checks(), 1, "one check per batch of {n}");
            if n > 1 {
                // A record with another record's place in the batch: refused.
                let (key, value) = records[0];
                assert!(
                    trusted.verify(key, value, Some(&headers[1])).is_err(),
                    "{n}"
                );
                // A header with its path cut short or extended: refused.
                let last = headers.last().unwrap();
                let (key, value) = records[n - 1];
                assert!(
                    trusted
                        .verify(key, value, Some(&last[..last.len() - HASH_LEN]))
                        .is_err()
                );
                let mut longer = last.clone();
                longer.extend_from_slice(&[0; HASH_LEN]);
                assert!(trusted.verify(key, value, Some(&longer)).is_err());
            }
        }
    }

    #[test]
    fn unsigned_malformed_and_foreign_records_are_refused_by_reason() {
        let ours = key();
        let theirs = key();
        let trusted = TrustedKeys::new([ours.public_key().clone()]);
        assert_eq!(
            trusted.verify(b"k", None, None),
            Err(SignatureError::Unsigned)
        );
        let good = ours.sign(1, b"k", None);
        let mut zero_count = good.clone();
        zero_count[SIGNATURE_HEADER_FIXED_LEN - 4..].copy_from_slice(&0u32.to_be_bytes());
        for bad in [
            &good[..10],
            &[][..],
            &[2u8; SIGNATURE_HEADER_FIXED_LEN][..],
            &zero_count,
        ] {
            assert_eq!(
                trusted.verify(b"k", None, Some(bad)),
                Err(SignatureError::Malformed)
            );
        }
        let foreign = theirs.sign(1, b"k", None);
        assert_eq!(
            trusted.verify(b"k", None, Some(&foreign)),
            Err(SignatureError::UnknownSigner(theirs.id()))
        );
        // A foreign signature relabelled with our key id does not verify either.
        let mut relabelled = foreign.clone();
        relabelled[1..1 + KEY_ID_LEN].copy_from_slice(&ours.id().0);
        assert_eq!(
            trusted.verify(b"k", None, Some(&relabelled)),
            Err(SignatureError::Invalid(ours.id()))
        );
        assert_eq!(SignatureError::Unsigned.reason(), "unsigned");
    }

    #[test]
    fn keys_round_trip_through_storage_and_configuration() {
        let (k, pkcs8) = SigningKey::generate().unwrap();
        let loaded = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(loaded.public_key(), k.public_key());
        assert_eq!(
            SigningKey::from_pkcs8(&k.to_pkcs8().unwrap()).unwrap().id(),
            k.id()
        );
        let text = k.public_key().to_string();
        assert!(text.starts_with("ed25519:"), "{text}");
        assert_eq!(text.parse::<PublicKey>().unwrap(), *k.public_key());
        assert_eq!(k.id().to_string().len(), 16);
        for bad in [
            "",
            "ed25519:",
            "rsa:AAAA",
            "ed25519:AAAA",
            "ed25519:not base64!",
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?}");
        }
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }

    #[test]
    fn generations_only_grow_and_pass_what_was_seen() {
        let signer = Signer::new(key());
        let a = signer.next_generation();
        let b = signer.next_generation();
        assert!(b > a);
        signer.observe_generation(u64::MAX - 5);
        assert_eq!(signer.next_generation(), u64::MAX - 4);
        signer.observe_generation(3);
        assert_eq!(signer.next_generation(), u64::MAX - 3, "never goes back");
    }
}
