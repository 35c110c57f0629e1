//! How to reach a Kafka cluster (the rdkafka clients for it are `kafka_e2ee_core::kafka`).

use std::collections::BTreeMap;

/// How to reach the Kafka cluster. `properties` carries librdkafka settings such as
/// `security.protocol` or `ssl.ca.location` verbatim (the proxy reads the TLS and SASL ones
/// for its own connections too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConnection {
    pub bootstrap_servers: String,
    pub properties: BTreeMap<String, String>,
}

impl KafkaConnection {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
        }
    }
}
