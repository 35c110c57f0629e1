//! kafka-e2ee's shared client crate.
//!
//! Today it holds the Kafka plumbing both the operator and client workloads need: connection
//! settings and idempotent topic administration. The KIP-317 encryption path (record format,
//! engines, key providers, encrypting producer and decrypting consumer) lands here next.

pub mod kafka;

/// The compacted topic that holds policy records and wrapped data keys (EDEKs), as KIP-317
/// names it.
pub const DEFAULT_KEY_TOPIC: &str = "__encryption_keys";

pub mod engine;
pub mod key_records;
pub mod keystore;
pub mod nonce;
pub mod provider;
pub mod record;
pub mod secret;
