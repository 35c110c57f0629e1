//! kafka-e2ee's core: everything about keys and records that does not need a Kafka client
//! library (docs/client.md "Crates"). The rdkafka client (`kafka-e2ee-client`) and the proxy
//! (`kafka-e2ee-proxy`) both build on it; the fuzz targets and the seal bench use it alone, so
//! they never build librdkafka.
//!
//! - [`record`]: record format v1 (docs/wire-format.md): seal/open one record, `PartitionSealer`.
//! - [`engine`]: the EncryptionEngine trait and AES-256-GCM.
//! - [`nonce`]: nonce sequences that never repeat and fail closed at their cap.
//! - [`key_records`]: policy and EDEK records of the key topic.
//! - [`signing`]: the operator's signatures on key records, and the keys readers trust.
//! - [`trust`]: what a key-topic reader believes without asking Kafka.
//! - [`config`]: the client configuration file (injected or local, never both).
//! - [`connection`]: how to reach a Kafka cluster.
//! - [`provider`]: the KeyProvider contract, error classes, the DEK commitment.
//! - [`any_provider`]: the configured backend, whichever it is.
//! - [`resilient`]: timeouts, retries, rate limit and metrics around any KeyProvider.
//! - [`dek_cache`]: unwrapped DEKs, single-flight, checked against their commitment, prefetched.
//! - [`inventory`]: which key versions retained data still needs (what pruning may delete).
//! - [`keystore`]: the local keystore KeyProvider (docs/keystore.md).
//! - `vault` (feature `vault`): the Vault / OpenBao transit KeyProvider.
//! - `aws_kms` (feature `aws-kms`): the AWS KMS KeyProvider.
//! - `hadoop_kms` (feature `hadoop-kms`): the Hadoop KMS KeyProvider.
//! - [`identity`]: service-account tokens for KMS logins (Vault Kubernetes auth, AWS web
//!   identity).
//! - [`partitioner`]: the Java client's murmur2 partitioning, chosen before sealing.
//! - [`secret`]: zeroized key material.

/// Maps looked up once or more per record (by topic): seeded foldhash, several times cheaper
/// than SipHash for short keys, still randomised per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The compacted topic that holds policy records and wrapped data keys (EDEKs), as KIP-317
/// names it.
pub const DEFAULT_KEY_TOPIC: &str = "__encryption_keys";

pub mod any_provider;
#[cfg(feature = "aws-kms")]
pub mod aws_kms;
pub mod config;
pub mod connection;
pub mod dek_cache;
pub mod engine;
#[cfg(feature = "hadoop-kms")]
pub mod hadoop_kms;
pub mod identity;
pub mod inventory;
pub mod key_records;
pub mod keystore;
pub mod nonce;
pub mod partitioner;
pub mod provider;
pub mod record;
pub mod resilient;
pub mod secret;
pub mod signing;
pub mod trust;
#[cfg(feature = "vault")]
pub mod vault;
