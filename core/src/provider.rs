//! KIP-317's KeyProvider: turns a TEK reference into usable data keys. Each KMS backend (Vault
//! transit, AWS KMS, Hadoop KMS) and the local keystore implements it; the operator generates
//! DEKs through it, clients unwrap them through it.

use std::future::Future;

use aws_lc_rs::hmac;
use thiserror::Error;

use crate::secret::KeyMaterial;

/// Which data key a wrapping belongs to. Backends bind it into the wrapping where they can
/// (AAD, encryption context), and the commitment binds it everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DekContext<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub version: u32,
}

impl DekContext<'_> {
    /// Length-prefixed topic, partition and version: the one encoding every binding of a DEK
    /// context (commitments, keystore AAD) uses.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.topic.len() as u64).to_be_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
    }
}

/// A wrapped DEK as the provider returned it: opaque bytes only that provider can unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edek(pub Vec<u8>);

/// Errors by class, each naming the backend and the TEK reference, never key bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("{backend}: TEK '{tek}' not found")]
    NotFound { backend: &'static str, tek: String },
    #[error("{backend}: access to TEK '{tek}' denied")]
    AccessDenied { backend: &'static str, tek: String },
    #[error("{backend}: TEK '{tek}' is disabled")]
    Disabled { backend: &'static str, tek: String },
    #[error("{backend}: throttled while using TEK '{tek}'")]
    Throttled { backend: &'static str, tek: String },
    #[error("{backend}: unavailable while using TEK '{tek}': {reason}")]
    Unavailable {
        backend: &'static str,
        tek: String,
        reason: String,
    },
    #[error("{backend}: the wrapped DEK for {context} under TEK '{tek}' is invalid")]
    InvalidCiphertext {
        backend: &'static str,
        tek: String,
        context: String,
    },
    #[error("{backend}: misconfigured: {reason}")]
    Misconfigured {
        backend: &'static str,
        reason: String,
    },
    /// The KMS marks the TEK as created for another object (AWS: its `kafka-e2ee.io/owner`
    /// tag): it is not this object's to delete.
    #[error("{backend}: TEK '{tek}' was created for another object ({owner})")]
    NotOwned {
        backend: &'static str,
        tek: String,
        owner: String,
    },
}

impl ProviderError {
    /// The class as a stable metrics label.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AccessDenied { .. } => "access_denied",
            Self::Disabled { .. } => "disabled",
            Self::Throttled { .. } => "throttled",
            Self::Unavailable { .. } => "unavailable",
            Self::InvalidCiphertext { .. } => "invalid_ciphertext",
            Self::Misconfigured { .. } => "misconfigured",
            Self::NotOwned { .. } => "not_owned",
        }
    }

    /// Whether asking again later may succeed (the only errors worth a retry).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Throttled { .. })
    }
}

/// The KeyProvider contract, what clients need: DEKs generated and unwrapped under a TEK. The
/// operator's half (create, rotate, re-wrap) is [`TekManager`].
pub trait KeyProvider: Send + Sync {
    /// A short stable name ("keystore", "vault", ...), used in errors and metrics labels.
    fn backend(&self) -> &'static str;

    /// A fresh DEK for `context`, in plaintext and wrapped under `tek`.
    fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> impl Future<Output = Result<(KeyMaterial, Edek), ProviderError>> + Send;

    /// The plaintext DEK of `edek`, which must have been wrapped for `context`.
    fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> impl Future<Output = Result<KeyMaterial, ProviderError>> + Send;
}

/// A borrowed provider is a provider: several caches (or a cache and the operator) can share
/// one client without an `Arc`.
impl<P: KeyProvider> KeyProvider for &P {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }

    fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> impl Future<Output = Result<(KeyMaterial, Edek), ProviderError>> + Send {
        (**self).generate_dek(tek, context)
    }

    fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> impl Future<Output = Result<KeyMaterial, ProviderError>> + Send {
        (**self).unwrap_dek(tek, context, edek)
    }
}

/// What a KMS reports about a TEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TekInfo {
    /// The TEK reference as given.
    pub tek: String,
    /// The version new wrappings use, where the KMS has versions.
    pub latest_version: Option<String>,
    /// The oldest version that still unwraps, where the KMS can retire versions (Vault's
    /// `min_decryption_version`): EDEKs below it must be re-wrapped first.
    pub min_decryption_version: Option<String>,
}

/// The TEK-management half of the contract, which the operator uses: create TEKs (idempotent),
/// rotate them, and re-wrap EDEKs under the latest version without exposing the DEK to anyone
/// where the KMS can do it itself.
pub trait TekManager: KeyProvider {
    /// Creates the TEK if absent; an existing TEK with the expected properties is fine.
    /// Never relies on a KMS creating keys implicitly.
    fn create_tek(&self, tek: &str) -> impl Future<Output = Result<TekInfo, ProviderError>> + Send;

    /// The TEK's current state; `NotFound` if it does not exist.
    fn describe_tek(
        &self,
        tek: &str,
    ) -> impl Future<Output = Result<TekInfo, ProviderError>> + Send;

    /// Makes a new TEK version the one new wrappings use; older versions keep unwrapping.
    fn rotate_tek(&self, tek: &str) -> impl Future<Output = Result<TekInfo, ProviderError>> + Send;

    /// `edek` wrapped again under the TEK's latest version (same DEK).
    fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> impl Future<Output = Result<Edek, ProviderError>> + Send;

    /// The TEK version an EDEK was wrapped under, if the wrapping says.
    fn edek_tek_version(&self, edek: &Edek) -> Option<String>;

    /// Destroys the TEK, or schedules its destruction where the KMS has a waiting period
    /// (AWS: 7 days). Every EDEK under it becomes useless: crypto-shredding. A TEK that does
    /// not exist is not an error.
    fn delete_tek(&self, tek: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// [`Self::create_tek`], marking the TEK in the KMS as created for `owner` where the KMS
    /// can hold such a mark (AWS: a tag). Others just create it.
    fn create_tek_for(
        &self,
        tek: &str,
        owner: &TekOwner<'_>,
    ) -> impl Future<Output = Result<TekInfo, ProviderError>> + Send {
        let _ = owner;
        self.create_tek(tek)
    }

    /// [`Self::delete_tek`], refused with `NotOwned` where the KMS marks the TEK as created for
    /// another owner.
    fn delete_tek_of(
        &self,
        tek: &str,
        owner: &TekOwner<'_>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = owner;
        self.delete_tek(tek)
    }

    /// Re-wraps many EDEKs (after a rotation); results in the same order. Backends with a
    /// batch API (Hadoop's `_reencryptbatch`) override this; the default goes one by one.
    fn rewrap_deks(
        &self,
        tek: &str,
        items: &[(DekContext<'_>, &Edek)],
    ) -> impl Future<Output = Result<Vec<Edek>, ProviderError>> + Send {
        async move {
            let mut out = Vec::with_capacity(items.len());
            for (context, edek) in items {
                out.push(self.rewrap_dek(tek, *context, edek).await?);
            }
            Ok(out)
        }
    }
}

/// Whom the operator creates a TEK for: an EncryptedTopic's uid (what ownership is checked
/// by) and `namespace/name` (for people reading the KMS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TekOwner<'a> {
    pub uid: &'a str,
    pub object: &'a str,
}

/// A commitment to a DEK and the context it belongs to, stored beside the EDEK.
///
/// Some wrappings detect no tampering (Hadoop KMS EEKs are AES-CTR: a changed EEK "unwraps" to
/// a different key). Checking the unwrapped DEK against this commitment turns that into an
/// error, and also catches an EDEK copied to another topic, partition or version.
/// HMAC-SHA256 keyed with the DEK itself, so the commitment reveals nothing about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DekCommitment(pub [u8; 32]);

const COMMITMENT_LABEL: &[u8] = b"kafka-e2ee dek commitment v1";

fn commitment_input(context: DekContext<'_>) -> Vec<u8> {
    let mut msg = Vec::with_capacity(COMMITMENT_LABEL.len() + 8 + context.topic.len() + 8);
    msg.extend_from_slice(COMMITMENT_LABEL);
    context.write_to(&mut msg);
    msg
}

impl DekCommitment {
    pub fn compute(dek: &KeyMaterial, context: DekContext<'_>) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, dek.expose());
        let tag = hmac::sign(&key, &commitment_input(context));
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Self(out)
    }

    /// Constant-time check that `dek` is the key this commitment was made to, for `context`.
    pub fn verify(&self, dek: &KeyMaterial, context: DekContext<'_>) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, dek.expose());
        hmac::verify(&key, &commitment_input(context), &self.0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: DekContext<'static> = DekContext {
        topic: "orders",
        partition: 0,
        version: 1,
    };

    #[test]
    fn commitment_accepts_its_dek_and_context_only() {
        let dek = KeyMaterial::from_vec(vec![9; 32]);
        let c = DekCommitment::compute(&dek, CTX);
        assert!(c.verify(&dek, CTX));
        assert!(
            !c.verify(&KeyMaterial::from_vec(vec![8; 32]), CTX),
            "another DEK"
        );
        for other in [
            DekContext {
                topic: "orders2",
                ..CTX
            },
            DekContext {
                partition: 1,
                ..CTX
            },
            DekContext { version: 2, ..CTX },
        ] {
            assert!(!c.verify(&dek, other), "{other:?}");
        }
    }
}
