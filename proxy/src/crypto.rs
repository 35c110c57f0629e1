//! What the proxy does to records, and to which topics: the client crate's sealing and opening
//! paths (`TopicSealers`, `RecordOpener`: the same code the Rust client runs), the topic rules,
//! the Kafka error codes refusals become, and the counters.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_e2ee_client::consumer::{ConsumeError, ConsumerSettings, RecordOpener};
use kafka_e2ee_client::dek_cache::DekCache;
use kafka_e2ee_client::key_directory::KeyDirectory;
use kafka_e2ee_client::producer::ProduceError;
use kafka_e2ee_client::provider::KeyProvider;
use kafka_e2ee_client::sealing::TopicSealers;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Kafka error codes the proxy answers with.
pub mod code {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const POLICY_VIOLATION: i16 = 44;
}

/// What the proxy does with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Sealed on the way out, opened on the way in.
    Encrypted,
    /// Forwarded untouched both ways (configured explicitly).
    Passthrough,
    /// Neither: produce and fetch are refused.
    Refused,
}

/// Which topics are encrypted (the configuration's `topics`; empty: every topic) and which pass
/// through in the clear (`--passthrough-topic`).
#[derive(Debug, Clone, Default)]
pub struct TopicRules {
    pub encrypted: BTreeSet<String>,
    pub passthrough: BTreeSet<String>,
}

impl TopicRules {
    pub fn rule(&self, topic: &str) -> Rule {
        if self.passthrough.contains(topic) {
            Rule::Passthrough
        } else if self.encrypted.is_empty() || self.encrypted.contains(topic) {
            Rule::Encrypted
        } else {
            Rule::Refused
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub direction: &'static str,
    pub code: i16,
}

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub sealed: Counter,
    pub opened: Counter,
    pub refused: Family<RefusedLabels, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_e2ee_proxy_records_sealed",
            "Records sealed on their way to the broker",
            self.sealed.clone(),
        );
        registry.register(
            "kafka_e2ee_proxy_records_opened",
            "Records opened on their way to the application",
            self.opened.clone(),
        );
        registry.register(
            "kafka_e2ee_proxy_refused",
            "Partitions of a produce or fetch answered with an error code instead (direction produce|fetch)",
            self.refused.clone(),
        );
    }
}

pub struct Crypto<P> {
    pub sealers: TopicSealers<P>,
    pub opener: RecordOpener<P>,
    pub rules: TopicRules,
    pub metrics: Metrics,
}

impl<P: KeyProvider + 'static> Crypto<P> {
    pub fn new(
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        key_wait: std::time::Duration,
        rules: TopicRules,
        metrics: Metrics,
    ) -> Self {
        Self {
            sealers: TopicSealers::new(Arc::clone(&keys), Arc::clone(&deks), key_wait),
            opener: RecordOpener::new(keys, deks, ConsumerSettings { key_wait }),
            rules,
            metrics,
        }
    }
}

/// The error code a produce refusal becomes: non-retriable for what only the operator or the
/// application can fix, retriable for what may pass (a key on its way, a KMS back up).
pub fn produce_code(e: &ProduceError) -> i16 {
    match e {
        ProduceError::NotEncrypted { .. }
        | ProduceError::IncompletePolicy { .. }
        | ProduceError::UnknownPartition { .. }
        | ProduceError::TombstoneWithHeaders { .. } => code::POLICY_VIOLATION,
        ProduceError::KeyLookup { .. }
        | ProduceError::Key(_)
        | ProduceError::KeyExhausted { .. } => code::REQUEST_TIMED_OUT,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

/// The error code a record that cannot be opened gives its partition's fetch: corrupt for what
/// will never open (clients stop there), an unknown server error (clients retry) for a key that
/// may still arrive or a KMS that may come back.
pub fn fetch_code(e: &ConsumeError) -> i16 {
    match e {
        ConsumeError::UnknownKey { .. } | ConsumeError::KeyUnavailable { .. } => {
            code::UNKNOWN_SERVER_ERROR
        }
        _ => code::CORRUPT_MESSAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_topics_are_encrypted_others_refused_unless_passed_through() {
        let rules = TopicRules {
            encrypted: ["orders".to_owned()].into(),
            passthrough: ["audit".to_owned()].into(),
        };
        assert_eq!(rules.rule("orders"), Rule::Encrypted);
        assert_eq!(rules.rule("audit"), Rule::Passthrough);
        assert_eq!(rules.rule("payments"), Rule::Refused);
        let all = TopicRules::default();
        assert_eq!(all.rule("anything"), Rule::Encrypted);
    }
}
