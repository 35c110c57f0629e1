//! kafka-e2ee's per-pod encrypting Kafka proxy (docs/proxy.md).
//!
//! It runs beside an application in its pod, on loopback only: the application (any language,
//! any Kafka client) points its bootstrap servers at it; the proxy seals every record produced
//! to an encrypted topic and opens every record fetched from one, with the Rust client's own
//! record format and key handling, so plaintext never leaves the pod and the broker sees only
//! ciphertext.
//!
//! Feature `server` (default) builds the proxy; without it, only the Kafka protocol pieces
//! (what the fuzz targets exercise).
//!
//! - [`batch`]: record batches re-framed so that only values and headers change;
//! - [`produce`], [`fetch`]: sealing requests, opening responses;
//! - [`routes`]: a local port per broker, every broker address rewritten;
//! - [`versions`]: what a client may negotiate;
//! - [`server`]: connections, requests and responses in order;
//! - [`upstream`], [`sasl`]: TLS and SASL to the brokers;
//! - [`crypto`]: topic rules, error codes, metrics.

pub mod batch;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod crypto;
#[cfg(feature = "server")]
pub mod fetch;
pub mod frame;
#[cfg(feature = "server")]
pub mod produce;
pub mod routes;
pub mod sasl;
#[cfg(feature = "server")]
pub mod server;
pub mod upstream;
pub mod versions;
