//! The operator's Prometheus metrics (served at /metrics with the KMS client metrics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, or the Ready condition's reason.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub trigger: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub keys_generated: Counter,
    pub rollovers: Family<TriggerLabels, Counter>,
    pub tek_rotations: Counter,
    pub edeks_rewrapped: Counter,
    pub key_topic_writes: Counter,
    pub offset_reads: Counter,
    pub key_records_resigned: Counter,
    pub signing_key_steps: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            // 1 ms .. ~33 s.
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            keys_generated: Counter::default(),
            rollovers: Family::default(),
            tek_rotations: Counter::default(),
            edeks_rewrapped: Counter::default(),
            key_topic_writes: Counter::default(),
            offset_reads: Counter::default(),
            key_records_resigned: Counter::default(),
            signing_key_steps: Counter::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_e2ee_reconciles",
            "EncryptedTopic reconciliations, by result (ok or the Ready reason)",
            self.reconciles.clone(),
        );
        registry.register(
            "kafka_e2ee_reconcile_duration_seconds",
            "Time to reconcile one EncryptedTopic",
            self.reconcile_seconds.clone(),
        );
        registry.register(
            "kafka_e2ee_keys_generated",
            "DEKs generated through the KMS",
            self.keys_generated.clone(),
        );
        registry.register(
            "kafka_e2ee_rollovers",
            "Partitions moved to a new DEK version, by trigger (initial, age, count)",
            self.rollovers.clone(),
        );
        registry.register(
            "kafka_e2ee_tek_rotations",
            "TEK rotations performed",
            self.tek_rotations.clone(),
        );
        registry.register(
            "kafka_e2ee_edeks_rewrapped",
            "EDEKs re-wrapped under a newer TEK version",
            self.edeks_rewrapped.clone(),
        );
        registry.register(
            "kafka_e2ee_key_topic_writes",
            "Records written to the key topic (EDEKs, policies, tombstones)",
            self.key_topic_writes.clone(),
        );
        registry.register(
            "kafka_e2ee_offset_reads",
            "Reads of partition offsets (each covers every topic the operator manages)",
            self.offset_reads.clone(),
        );
        registry.register(
            "kafka_e2ee_key_records_resigned",
            "Key records written again, signed by the new key, during a signing-key rotation",
            self.key_records_resigned.clone(),
        );
        registry.register(
            "kafka_e2ee_signing_key_rotation_steps",
            "Signing-key rotation steps stored (prepare, activate, retire)",
            self.signing_key_steps.clone(),
        );
        registry.register(
            "kafka_e2ee_leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
    }

    pub fn reconciled(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}
