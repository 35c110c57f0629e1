//! The local keystore KeyProvider (KIP-317's "keystores distributed to clients"): TEKs read from
//! a JSON file, typically a Kubernetes Secret mounted into the pod.
//!
//! ```json
//! {
//!   "format": 1,
//!   "keys": [ { "id": "orders-2026-01", "material": "<base64 of 32 random bytes>" } ],
//!   "aliases": { "orders-tek": "orders-2026-01" }
//! }
//! ```
//!
//! A TEK reference is an alias. New DEKs are wrapped under the key the alias points to now;
//! every EDEK names its key id, so rotating (add a key, repoint the alias) leaves old EDEKs
//! readable as long as their key stays in the file. The wrapping is AES-256-GCM with the DEK
//! context (topic, partition, version) and key id as associated data.

use std::collections::HashMap;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::engine::{Aes256Gcm, EncryptionEngine, PreparedKey, TAG_LEN};
use crate::nonce::NONCE_LEN;
use crate::provider::{DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager};
use crate::secret::KeyMaterial;

const BACKEND: &str = "keystore";
const EDEK_FORMAT: u8 = 1;
const DEK_LEN: usize = 32;
const AAD_LABEL: &[u8] = b"kafka-e2ee keystore edek v1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    format: u32,
    keys: Vec<KeyEntry>,
    #[serde(default)]
    aliases: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    material: Zeroizing<String>,
}

/// TEKs held in process memory, loaded from a keystore file.
pub struct LocalKeystore {
    keys: HashMap<String, Box<dyn PreparedKey>>,
    aliases: HashMap<String, String>,
    rng: SystemRandom,
}

fn misconfigured(reason: impl Into<String>) -> ProviderError {
    ProviderError::Misconfigured {
        backend: BACKEND,
        reason: reason.into(),
    }
}

impl LocalKeystore {
    pub fn from_file(path: &Path) -> Result<Self, ProviderError> {
        let bytes =
            Zeroizing::new(std::fs::read(path).map_err(|e| {
                misconfigured(format!("cannot read keystore {}: {e}", path.display()))
            })?);
        Self::from_json(&bytes)
    }

    /// Parses a keystore. Errors say what is wrong and where, never the key bytes.
    pub fn from_json(json: &[u8]) -> Result<Self, ProviderError> {
        let file: KeystoreFile = serde_json::from_slice(json).map_err(|e| {
            misconfigured(format!(
                "keystore is not valid JSON of the documented shape (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if file.format != 1 {
            return Err(misconfigured(format!(
                "keystore format {} is not supported (expected 1)",
                file.format
            )));
        }
        let mut keys = HashMap::new();
        for entry in file.keys {
            if entry.id.is_empty() || entry.id.len() > usize::from(u8::MAX) {
                return Err(misconfigured("a key id must be 1 to 255 bytes"));
            }
            let material =
                KeyMaterial::from_vec(STANDARD.decode(entry.material.as_bytes()).map_err(
                    |_| misconfigured(format!("key '{}': material is not base64", entry.id)),
                )?);
            if material.len() != DEK_LEN {
                return Err(misconfigured(format!(
                    "key '{}': material must be 32 bytes, is {}",
                    entry.id,
                    material.len()
                )));
            }
            let prepared = Aes256Gcm
                .prepare(&material)
                .map_err(|e| misconfigured(format!("key '{}': {e}", entry.id)))?;
            if keys.insert(entry.id.clone(), prepared).is_some() {
                return Err(misconfigured(format!(
                    "key id '{}' appears twice",
                    entry.id
                )));
            }
        }
        for (alias, id) in &file.aliases {
            if !keys.contains_key(id) {
                return Err(misconfigured(format!(
                    "alias '{alias}' points to unknown key id '{id}'"
                )));
            }
        }
        Ok(Self {
            keys,
            aliases: file.aliases,
            rng: SystemRandom::new(),
        })
    }

    /// Resolves a TEK reference: an alias, or a key id used directly.
    fn current_key_id<'a>(&'a self, tek: &'a str) -> Result<&'a str, ProviderError> {
        match self.aliases.get(tek) {
            Some(id) => Ok(id),
            None if self.keys.contains_key(tek) => Ok(tek),
            None => Err(ProviderError::NotFound {
                backend: BACKEND,
                tek: tek.to_owned(),
            }),
        }
    }

    fn random<const N: usize>(&self) -> Result<[u8; N], ProviderError> {
        let mut out = [0u8; N];
        self.rng
            .fill(&mut out)
            .map_err(|_| ProviderError::Unavailable {
                backend: BACKEND,
                tek: String::new(),
                reason: "the system random number generator failed".into(),
            })?;
        Ok(out)
    }
}

fn edek_aad(context: DekContext<'_>, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 8 + context.topic.len() + 9 + key_id.len());
    aad.extend_from_slice(AAD_LABEL);
    context.write_to(&mut aad);
    aad.push(key_id.len() as u8);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

impl LocalKeystore {
    /// EDEK: `[format 0x01][key id length u8][key id][nonce 12][wrapped DEK 32][tag 16]`,
    /// under the key `tek` points to now.
    fn wrap(
        &self,
        tek: &str,
        context: DekContext<'_>,
        dek: &KeyMaterial,
    ) -> Result<Edek, ProviderError> {
        let key_id = self.current_key_id(tek)?;
        let tek_key = self
            .keys
            .get(key_id)
            .ok_or_else(|| ProviderError::NotFound {
                backend: BACKEND,
                tek: tek.to_owned(),
            })?;
        let nonce = self.random::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + DEK_LEN + TAG_LEN);
        out.push(EDEK_FORMAT);
        out.push(key_id.len() as u8);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&nonce);
        let body = out.len();
        out.extend_from_slice(dek.expose());
        let tag = tek_key
            .seal(nonce, &edek_aad(context, key_id), &mut out[body..])
            .map_err(|e| misconfigured(e.to_string()))?;
        out.extend_from_slice(&tag);
        Ok(Edek(out))
    }

    fn info(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        Ok(TekInfo {
            tek: tek.to_owned(),
            latest_version: Some(self.current_key_id(tek)?.to_owned()),
            min_decryption_version: None,
        })
    }
}

/// Keystore TEKs live in the file (a Secret): "creating" one checks that its alias resolves,
/// and rotating means adding a key to the file and repointing the alias. Re-wrapping works
/// like any KMS: old EDEKs keep unwrapping while their key stays in the file.
impl TekManager for LocalKeystore {
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.info(tek)
    }

    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.info(tek)
    }

    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        Err(misconfigured(format!(
            "keystore TEK '{tek}' is rotated in the keystore file: add a key and point the alias at it"
        )))
    }

    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        Err(misconfigured(format!(
            "keystore TEK '{tek}' is deleted by removing it from the keystore file (and its Secret)"
        )))
    }

    async fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        let dek = self.unwrap_dek(tek, context, edek).await?;
        self.wrap(tek, context, &dek)
    }

    fn edek_tek_version(&self, edek: &Edek) -> Option<String> {
        let (&id_len, rest) = edek.0.get(1..)?.split_first()?;
        let id = rest.get(..usize::from(id_len))?;
        std::str::from_utf8(id).ok().map(str::to_owned)
    }
}

impl KeyProvider for LocalKeystore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        let dek = KeyMaterial::from_vec(self.random::<DEK_LEN>()?.to_vec());
        let edek = self.wrap(tek, context, &dek)?;
        Ok((dek, edek))
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        let invalid = || ProviderError::InvalidCiphertext {
            backend: BACKEND,
            tek: tek.to_owned(),
            context: format!(
                "{}/{} v{}",
                context.topic, context.partition, context.version
            ),
        };
        // The TEK reference must still exist (removing an alias retires the TEK), even though
        // the key that unwraps is the one the EDEK names (which survives rotations).
        self.current_key_id(tek)?;
        let bytes = edek.0.as_slice();
        let (&format, rest) = bytes.split_first().ok_or_else(invalid)?;
        let (&id_len, rest) = rest.split_first().ok_or_else(invalid)?;
        if format != EDEK_FORMAT
            || rest.len() != usize::from(id_len) + NONCE_LEN + DEK_LEN + TAG_LEN
        {
            return Err(invalid());
        }
        let (id, rest) = rest.split_at(usize::from(id_len));
        let key_id = std::str::from_utf8(id).map_err(|_| invalid())?;
        let tek_key = self
            .keys
            .get(key_id)
            .ok_or_else(|| ProviderError::NotFound {
                backend: BACKEND,
                tek: format!("{tek} (key id {key_id})"),
            })?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| invalid())?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let dek = tek_key
            .open(nonce, &edek_aad(context, key_id), &mut buf)
            .map_err(|_| invalid())?;
        Ok(KeyMaterial::from_vec(dek.to_vec()))
    }
}
