//! Operator signatures on key-topic records (docs/wire-format.md, "Signed key records").
//!
//! The key topic lives on the broker, which is not trusted: whoever administers it can write
//! any record there. So every record the operator writes (policy, EDEK, and their tombstones)
//! carries an Ed25519 signature over its record key, its value (or the fact that it is a
//! tombstone) and a generation that only grows; readers believe a record only if a key from
//! their trusted configuration (which reaches them through the Kubernetes API, never through
//! Kafka) verifies it.
//!
//! The signature travels in one record header, [`SIGNATURE_HEADER`]:
//! `[format = 1][key id: 8 bytes][generation: u64 BE][Ed25519 signature: 64 bytes]`.

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
/// Bytes of the header value: format, key id, generation, signature.
pub const SIGNATURE_HEADER_LEN: usize = 1 + KEY_ID_LEN + 8 + SIGNATURE_LEN;

const KEY_ID_LEN: usize = 8;
const SIGNATURE_LEN: usize = 64;
const PUBLIC_KEY_LEN: usize = 32;
/// Domain separation: these bytes are signed for nothing else.
const LABEL: &[u8] = b"kafka-e2ee key record signature v1\0";
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

    /// The [`SIGNATURE_HEADER`] value for a record (`value` `None` for a tombstone).
    pub fn sign(&self, generation: u64, record_key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let message = signed_message(self.id(), generation, record_key, value);
        let signature = self.pair.sign(&message);
        let mut header = Vec::with_capacity(SIGNATURE_HEADER_LEN);
        header.push(SIGNATURE_FORMAT);
        header.extend_from_slice(&self.id().0);
        header.extend_from_slice(&generation.to_be_bytes());
        header.extend_from_slice(signature.as_ref());
        header
    }
}

/// What is signed: the label, the signer, the generation, the length-prefixed record key,
/// and the length-prefixed value or a tombstone marker. Every field has a fixed size or a
/// length prefix, so no two records share a message.
fn signed_message(
    signer: KeyId,
    generation: u64,
    record_key: &[u8],
    value: Option<&[u8]>,
) -> Vec<u8> {
    let value_len = value.map_or(0, <[u8]>::len);
    let mut m =
        Vec::with_capacity(LABEL.len() + KEY_ID_LEN + 8 + 4 + record_key.len() + 9 + value_len);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(&signer.0);
    m.extend_from_slice(&generation.to_be_bytes());
    m.extend_from_slice(&(record_key.len() as u32).to_be_bytes());
    m.extend_from_slice(record_key);
    match value {
        None => m.push(0),
        Some(v) => {
            m.push(1);
            m.extend_from_slice(&(v.len() as u64).to_be_bytes());
            m.extend_from_slice(v);
        }
    }
    m
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

    /// Whether `other` trusts a key this set does not.
    pub fn adds_to(&self, other: &TrustedKeys) -> bool {
        self.keys.keys().any(|id| !other.keys.contains_key(id))
    }

    /// Verifies a record's signature header (`None` when the record has none).
    pub fn verify(
        &self,
        record_key: &[u8],
        value: Option<&[u8]>,
        header: Option<&[u8]>,
    ) -> Result<Signed, SignatureError> {
        let header = header.ok_or(SignatureError::Unsigned)?;
        let (signer, generation, signature) = parse_header(header)?;
        let key = self
            .keys
            .get(&signer)
            .ok_or(SignatureError::UnknownSigner(signer))?;
        let message = signed_message(signer, generation, record_key, value);
        if key.verify(&message, signature) {
            Ok(Signed { signer, generation })
        } else {
            Err(SignatureError::Invalid(signer))
        }
    }
}

fn parse_header(header: &[u8]) -> Result<(KeyId, u64, &[u8]), SignatureError> {
    if header.len() != SIGNATURE_HEADER_LEN || header[0] != SIGNATURE_FORMAT {
        return Err(SignatureError::Malformed);
    }
    let (id, rest) = header[1..].split_at(KEY_ID_LEN);
    let (generation, signature) = rest.split_at(8);
    let id = KeyId(id.try_into().map_err(|_| SignatureError::Malformed)?);
    let generation = u64::from_be_bytes(
        generation
            .try_into()
            .map_err(|_| SignatureError::Malformed)?,
    );
    Ok((id, generation, signature))
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

    /// The signature header for a record, under a fresh generation.
    pub fn sign(&self, record_key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let generation = self.next_generation();
        self.key().sign(generation, record_key, value)
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
        assert_eq!(header.len(), SIGNATURE_HEADER_LEN);
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
        // Every bit of the signature matters.
        for byte in 1 + KEY_ID_LEN + 8..SIGNATURE_HEADER_LEN {
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
    fn unsigned_malformed_and_foreign_records_are_refused_by_reason() {
        let ours = key();
        let theirs = key();
        let trusted = TrustedKeys::new([ours.public_key().clone()]);
        assert_eq!(
            trusted.verify(b"k", None, None),
            Err(SignatureError::Unsigned)
        );
        let good = ours.sign(1, b"k", None);
        for bad in [&good[..10], &[][..], &[2u8; SIGNATURE_HEADER_LEN][..]] {
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
