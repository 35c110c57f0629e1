//! What a key-topic reader believes without asking Kafka (the configuration's trust).

use std::collections::BTreeSet;

use crate::key_records;
use crate::signing::{KeyId, TrustedKeys};

/// What a reader believes without asking Kafka: the operator's public signing keys, and the
/// topics whose plaintext records it accepts (only if their verified policy also says
/// `Allow`). Both come from the client configuration, which the Kubernetes API delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub keys: TrustedKeys,
    pub allow_plaintext: BTreeSet<String>,
    /// Signing keys this reader retired itself (the operator's own, after a rotation): their
    /// records are history, refused without being reported as forgeries.
    pub retired: BTreeSet<KeyId>,
    /// The topics whose key records this reader reads; the others are skipped unverified and
    /// never held (a client's memory grows with its own topics, not the cluster's). `None`:
    /// every topic (the operator).
    pub topics: Option<BTreeSet<String>>,
}

impl Trust {
    /// Whether records of the topic a record key names are read at all. Keys that name no
    /// topic are read (and refused as malformed).
    pub fn reads(&self, record_key: &[u8]) -> bool {
        let topic = std::str::from_utf8(record_key)
            .ok()
            .and_then(key_records::topic_of_key);
        match (&self.topics, topic) {
            (Some(topics), Some(topic)) => topics.contains(topic),
            _ => true,
        }
    }
}
