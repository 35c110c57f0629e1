//! kafka-e2ee's client crate: the KIP-317 encryption path over rdkafka that client workloads
//! link (docs/client.md). Everything that needs no Kafka client library is in
//! `kafka-e2ee-core`, re-exported here under the same paths.
//!
//! - [`config`]: client configuration and [`config::EncryptionClient`].
//! - [`producer`]: `EncryptingProducer`, sealing every record before it is batched.
//! - [`consumer`]: `DecryptingConsumer`, opening every record, typed errors, no silent skips.
//! - [`sealing`]: `TopicSealers`, the per-topic sealing path the producer and the proxy share.
//! - [`key_directory`]: the live view of the key topic (policies and EDEKs).
//! - [`key_management`]: generate DEKs, publish EDEKs, then the policy (what the operator runs).
//! - [`kafka`]: connection settings and idempotent topic administration.
//! - From the core: [`record`], [`engine`], [`nonce`], [`key_records`], [`signing`],
//!   [`provider`], [`any_provider`], [`resilient`], [`dek_cache`], [`keystore`], `vault`,
//!   `aws_kms`, `hadoop_kms`, [`identity`], [`partitioner`], [`secret`].

#[cfg(feature = "aws-kms")]
pub use kafka_e2ee_core::aws_kms;
#[cfg(feature = "hadoop-kms")]
pub use kafka_e2ee_core::hadoop_kms;
#[cfg(feature = "vault")]
pub use kafka_e2ee_core::vault;
pub use kafka_e2ee_core::{
    DEFAULT_KEY_TOPIC, FastMap, any_provider, dek_cache, engine, identity, inventory, key_records,
    keystore, nonce, partitioner, provider, record, resilient, secret, signing,
};

pub mod config;
pub mod consumer;
pub mod kafka;
pub mod key_directory;
pub mod key_management;
mod key_state;
pub mod producer;
pub mod sealing;
