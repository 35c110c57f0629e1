//! kafka-e2ee's admission webhook (docs/webhook.md).
//!
//! - `/mutate`: pods that opt in get the KeyProvider configuration of the topics they name,
//!   as references (a projected volume of the operator's client ConfigMap, a service-account
//!   token, Secret keys) and `KAFKA_E2EE_CONFIG` ([`inject`]).
//! - `/validate`: EncryptedTopics and KMS connections get every rule Kubernetes 1.20 cannot
//!   express in a schema ([`validate`]).
//!
//! The decisions are pure ([`review`] turns a body into a response); [`server`] serves them
//! over rustls with a certificate that can rotate underneath ([`tls`], [`certs`]).

pub mod certs;
pub mod cli;
pub mod index;
pub mod inject;
pub mod metrics;
pub mod review;
mod run;
pub mod server;
pub mod tls;
pub mod validate;

pub use cli::Args;
pub use run::{Error, run};

pub(crate) use kafka_e2ee_telemetry::chain;
