//! kafka-e2ee's shared client crate: the KIP-317 encryption path that client workloads link.
//!
//! - [`record`]: record format v1 (docs/wire-format.md): seal/open one record, `PartitionSealer`.
//! - [`engine`]: the EncryptionEngine trait and AES-256-GCM.
//! - [`nonce`]: nonce sequences that never repeat and fail closed at their cap.
//! - [`provider`]: the KeyProvider contract, error classes, the DEK commitment.
//! - [`keystore`]: the local keystore KeyProvider (docs/keystore.md).
//! - [`key_records`]: policy and EDEK records of the key topic.
//! - [`dek_cache`]: unwrapped DEKs, single-flight, checked against their commitment.
//! - [`secret`]: zeroized key material.
//! - [`kafka`]: connection settings and idempotent topic administration.
//!
//! Still to come (issue 3): next-version prefetch in the DEK cache, the encrypting producer and decrypting consumer,
//! and client configuration.

pub mod kafka;

/// The compacted topic that holds policy records and wrapped data keys (EDEKs), as KIP-317
/// names it.
pub const DEFAULT_KEY_TOPIC: &str = "__encryption_keys";

pub mod config;
pub mod consumer;
pub mod dek_cache;
pub mod engine;
pub mod key_directory;
pub mod key_management;
pub mod key_records;
pub mod keystore;
pub mod nonce;
pub mod partitioner;
pub mod producer;
pub mod provider;
pub mod record;
pub mod secret;
