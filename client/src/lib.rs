//! kafka-e2ee's shared client crate: the KIP-317 encryption path that client workloads link
//! (docs/client.md).
//!
//! - [`any_provider`]: the configured backend, whichever it is.
//! - [`config`]: client configuration (injected or local, never both) and [`config::EncryptionClient`].
//! - [`producer`]: `EncryptingProducer`, sealing every record before it is batched.
//! - [`consumer`]: `DecryptingConsumer`, opening every record, typed errors, no silent skips.
//! - [`key_directory`]: the live view of the key topic (policies and EDEKs).
//! - [`key_management`]: generate DEKs, publish EDEKs, then the policy (what the operator runs).
//! - [`record`]: record format v1 (docs/wire-format.md): seal/open one record, `PartitionSealer`.
//! - [`engine`]: the EncryptionEngine trait and AES-256-GCM.
//! - [`nonce`]: nonce sequences that never repeat and fail closed at their cap.
//! - [`partitioner`]: the Java client's murmur2 partitioning, chosen before sealing.
//! - [`provider`]: the KeyProvider contract, error classes, the DEK commitment.
//! - [`identity`]: service-account tokens for KMS logins (Vault Kubernetes auth, AWS web
//!   identity).
//! - [`resilient`]: timeouts, retries, rate limit and metrics around any KeyProvider.
//! - [`keystore`]: the local keystore KeyProvider (docs/keystore.md).
//! - `vault` (feature `vault`): the Vault / OpenBao transit KeyProvider.
//! - `aws_kms` (feature `aws-kms`): the AWS KMS KeyProvider.
//! - `hadoop_kms` (feature `hadoop-kms`): the Hadoop KMS KeyProvider.
//! - [`key_records`]: policy and EDEK records of the key topic.
//! - [`signing`]: the operator's signatures on key records, and the keys readers trust.
//! - [`dek_cache`]: unwrapped DEKs, single-flight, checked against their commitment, prefetched.
//! - [`secret`]: zeroized key material.
//! - [`kafka`]: connection settings and idempotent topic administration.

pub mod kafka;

/// Maps looked up once or more per record (by topic): seeded foldhash, several times cheaper
/// than SipHash for short keys, still randomised per process.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The compacted topic that holds policy records and wrapped data keys (EDEKs), as KIP-317
/// names it.
pub const DEFAULT_KEY_TOPIC: &str = "__encryption_keys";

pub mod any_provider;
#[cfg(feature = "aws-kms")]
pub mod aws_kms;
pub mod config;
pub mod consumer;
pub mod dek_cache;
pub mod engine;
#[cfg(feature = "hadoop-kms")]
pub mod hadoop_kms;
pub mod identity;
pub mod key_directory;
pub mod key_management;
pub mod key_records;
mod key_state;
pub mod keystore;
pub mod nonce;
pub mod partitioner;
pub mod producer;
pub mod provider;
pub mod record;
pub mod resilient;
pub mod sealing;
pub mod secret;
pub mod signing;
#[cfg(feature = "vault")]
pub mod vault;
