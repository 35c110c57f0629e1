//! How to reach a Kafka cluster (the rdkafka clients for it are `kafka_e2ee_core::kafka`).

use std::collections::BTreeMap;

/// How to reach the Kafka cluster. `properties` carries librdkafka settings such as
/// `security.protocol` or `ssl.ca.location` verbatim (the proxy reads the TLS and SASL ones
/// for its own connections too).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    pub bootstrap_servers: String,
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &redacted(&self.properties))
            .finish()
    }
}

/// Whether a librdkafka property holds a secret (a SASL password, a JAAS line, a private
/// key): never printed.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// `properties` for printing: secret values replaced.
pub fn redacted(properties: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    properties
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_property(k) {
                "<redacted>"
            } else {
                v.as_str()
            };
            (k.as_str(), shown)
        })
        .collect()
}

impl KafkaConnection {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret_property() {
        let mut c = KafkaConnection::new("kafka:9093");
        c.properties
            .insert("sasl.password".into(), "hunter2".into());
        c.properties
            .insert("ssl.key.pem".into(), "-----BEGIN".into());
        c.properties
            .insert("security.protocol".into(), "sasl_ssl".into());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(shown.contains("sasl_ssl"), "{shown}");
    }
}
