//! kafka-e2ee's operator, KIP-317's KeyManager as a Kubernetes controller: it reconciles
//! `EncryptedTopic`s into a TEK in the KMS, a Kafka topic, and the key records in
//! `__encryption_keys`, then keeps the keys fresh (DEK rollover, TEK rotation with re-wrap).
//!
//! `reconcile` is a pipeline: fetch -> validate (pure, `kafka_e2ee_crds::validation`) ->
//! plan (pure, [`plan`]) -> apply (ordered, idempotent, [`apply`]) -> status.

pub mod adopt;
pub mod apply;
pub mod ca;
pub mod cli;
pub mod client_config;
pub mod connection_status;
pub mod crash;
pub mod kafka_ops;
pub mod kms;
pub mod leader;
pub mod metrics;
pub mod ownership;
pub mod plan;
pub mod reconcile;
mod run;
pub mod signing_keys;
pub mod signing_rotation;
pub mod watermarks;

pub use cli::{AdoptArgs, Args, Command, HomeArgs, KafkaArgs, RunArgs};
pub use run::{Error, run};
