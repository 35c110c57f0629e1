//! Why a reconciliation did not converge: one variant per failed action, each with the Ready
//! reason a user sees and how soon to try again.

use std::time::Duration;

use kafka_e2ee_client::provider::ProviderError;
use kafka_e2ee_telemetry::chain;
use thiserror::Error;

use crate::kafka_ops::KafkaOpsError;
use crate::kms::ConnectionError;
use crate::ownership::ClaimError;
use crate::plan::PlanError;

/// Ready condition reasons (docs/operator.md explains each and what to do).
pub mod reason {
    pub const READY: &str = "Ready";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const KMS_CONNECTION_NOT_FOUND: &str = "KmsConnectionNotFound";
    pub const KMS_CONNECTION_INVALID: &str = "KmsConnectionInvalid";
    pub const KMS_CONNECTION_NOT_ADMITTED: &str = "KmsConnectionNotAdmitted";
    pub const KMS_UNAVAILABLE: &str = "KmsUnavailable";
    pub const KMS_DENIED: &str = "KmsDenied";
    pub const KAFKA_UNAVAILABLE: &str = "KafkaUnavailable";
    pub const KAFKA_REFUSED: &str = "KafkaRefused";
    pub const TOPIC_CONFLICT: &str = "TopicConflict";
    pub const TEK_CONFLICT: &str = "TekConflict";
    pub const TEK_NOT_IN_NAMESPACE: &str = "TekNotInNamespace";
    pub const WAITING_FOR_DELETION: &str = "WaitingForDeletion";
    pub const IMMUTABLE_FIELD_CHANGED: &str = "ImmutableFieldChanged";
    pub const PARTITIONS_EXCEED_SPEC: &str = "PartitionsExceedSpec";
    pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
    pub const PAUSED: &str = "Paused";
    pub const UNMANAGED: &str = "Unmanaged";
    pub const KEY_VERSIONS_EXHAUSTED: &str = "KeyVersionsExhausted";
    /// KeyRecordsVerified condition reasons.
    pub const VERIFIED: &str = "Verified";
    pub const UNVERIFIED_KEY_RECORDS: &str = "UnverifiedKeyRecords";
    /// Event reason: a rollover or rotation request annotation that cannot be honoured.
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    /// TekOwned condition reasons.
    pub const TEK_CREATED: &str = "Created";
    pub const TEK_ADOPTED: &str = "Adopted";
}

/// The usual wait before trying a failed step again.
pub const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReconcileFailure {
    /// Every rule the spec breaks, at once.
    #[error("{}", .0.join("; "))]
    InvalidSpec(Vec<String>),
    #[error("{kind} {name} not found")]
    ConnectionNotFound { kind: &'static str, name: String },
    #[error("reading {kind} {name} failed")]
    ConnectionLookup {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// A ClusterKmsConnection whose `namespaces` leave this namespace out.
    #[error(
        "ClusterKmsConnection {name} does not serve namespace {namespace} (its spec.namespaces leaves it out); ask a cluster administrator, or use a KmsConnection of this namespace"
    )]
    ConnectionNotAdmitted { name: String, namespace: String },
    /// The connection is malformed, or what it names (a Secret, a key of it) is missing.
    #[error("{0}")]
    ConnectionInvalid(String),
    #[error(transparent)]
    Kms(ProviderError),
    #[error(transparent)]
    Kafka(Box<KafkaOpsError>),
    /// Another EncryptedTopic holds the topic or TEK, the TEK is outside the namespace's
    /// names, or an immutable field changed.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{what} failed")]
    Kubernetes {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileFailure {
    /// The Ready condition's reason (a bounded set: also a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => reason::INVALID_SPEC,
            Self::ConnectionNotFound { .. } | Self::ConnectionLookup { .. } => {
                reason::KMS_CONNECTION_NOT_FOUND
            }
            Self::ConnectionInvalid(_) => reason::KMS_CONNECTION_INVALID,
            Self::ConnectionNotAdmitted { .. } => reason::KMS_CONNECTION_NOT_ADMITTED,
            Self::Kms(e) if e.is_transient() => reason::KMS_UNAVAILABLE,
            Self::Kms(_) => reason::KMS_DENIED,
            Self::Kafka(e) if refused(e) => reason::KAFKA_REFUSED,
            Self::Kafka(_) => reason::KAFKA_UNAVAILABLE,
            Self::Claim(ClaimError::Held { deleting: true, .. }) => reason::WAITING_FOR_DELETION,
            Self::Claim(ClaimError::Held { what: "TEK", .. }) => reason::TEK_CONFLICT,
            Self::Claim(ClaimError::Held { .. }) | Self::Plan(PlanError::Conflict(_)) => {
                reason::TOPIC_CONFLICT
            }
            Self::Claim(ClaimError::OutsideNamespace { .. }) => reason::TEK_NOT_IN_NAMESPACE,
            Self::Claim(ClaimError::Changed { .. }) => reason::IMMUTABLE_FIELD_CHANGED,
            Self::Plan(PlanError::VersionsExhausted { .. }) => reason::KEY_VERSIONS_EXHAUSTED,
            Self::Kubernetes { .. } => reason::KUBERNETES_API_ERROR,
        }
    }

    /// When to reconcile again; `None`: only when the object changes (nothing else helps).
    pub fn requeue(&self) -> Option<Duration> {
        match self {
            Self::InvalidSpec(_) => None,
            Self::ConnectionNotFound { .. } | Self::ConnectionNotAdmitted { .. } => Some(RETRY * 3),
            // The broker said no (e.g. no CreatePartitions): retrying soon will not help, but
            // a broker upgrade or a spec change may.
            Self::Kafka(e) if refused(e) => Some(RETRY * 6),
            // Planned on an outdated listing: the next plan reads the topic again.
            Self::Kafka(e) if matches!(**e, KafkaOpsError::TopicAppeared { .. }) => {
                Some(Duration::from_secs(1))
            }
            // The deletion it waits for usually finishes in seconds.
            Self::Claim(e) if e.is_wait() => Some(RETRY / 2),
            Self::Claim(_) | Self::Plan(_) => Some(RETRY * 6),
            _ => Some(RETRY),
        }
    }

    /// The condition's message: the error and its causes.
    pub fn message(&self) -> String {
        chain(self)
    }

    /// Whether only a person can make it converge (kstatus's `Stalled`): a spec, a claim, a
    /// policy or a refusal; the rest (outages, a connection not created yet, a deletion to
    /// wait for) the operator retries into success on its own (`Reconciling`).
    pub fn stalls(&self) -> bool {
        match self {
            Self::Kms(e) => !e.is_transient(),
            Self::Kafka(e) => refused(e),
            Self::Claim(e) => !e.is_wait(),
            Self::Kubernetes { .. }
            | Self::ConnectionNotFound { .. }
            | Self::ConnectionLookup { .. } => false,
            Self::InvalidSpec(_)
            | Self::ConnectionNotAdmitted { .. }
            | Self::ConnectionInvalid(_)
            | Self::Plan(_) => true,
        }
    }

    /// Whether the KMS connection (not this object) is what failed: the topic's message then
    /// names it, so that its own Ready condition is where a reader looks next.
    pub fn concerns_connection(&self) -> bool {
        matches!(self, Self::Kms(_) | Self::ConnectionInvalid(_))
    }
}

impl From<KafkaOpsError> for ReconcileFailure {
    fn from(e: KafkaOpsError) -> Self {
        Self::Kafka(Box::new(e))
    }
}

impl From<kafka_e2ee_client::key_management::KeyManagementError> for ReconcileFailure {
    fn from(e: kafka_e2ee_client::key_management::KeyManagementError) -> Self {
        KafkaOpsError::from(e).into()
    }
}

impl From<ConnectionError> for ReconcileFailure {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Provider(p) => Self::Kms(p),
            ConnectionError::NotFound { kind, name } => Self::ConnectionNotFound { kind, name },
            other => Self::ConnectionInvalid(chain(&other)),
        }
    }
}

fn refused(e: &KafkaOpsError) -> bool {
    match e {
        KafkaOpsError::Refused { .. } => true,
        KafkaOpsError::Admin { source, .. } => {
            matches!(source, rdkafka::error::KafkaError::AdminOp(_))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_reason_and_retry() {
        let cases = [
            (
                ReconcileFailure::InvalidSpec(vec!["a".into(), "b".into()]),
                reason::INVALID_SPEC,
                None,
                "a; b",
            ),
            (
                ReconcileFailure::Kms(ProviderError::Unavailable {
                    backend: "vault",
                    tek: "t".into(),
                    reason: "timeout".into(),
                }),
                reason::KMS_UNAVAILABLE,
                Some(RETRY),
                "vault: unavailable while using TEK 't': timeout",
            ),
            (
                ReconcileFailure::Kms(ProviderError::AccessDenied {
                    backend: "vault",
                    tek: "t".into(),
                }),
                reason::KMS_DENIED,
                Some(RETRY),
                "vault: access to TEK 't' denied",
            ),
            (
                ReconcileFailure::ConnectionNotFound {
                    kind: "KmsConnection",
                    name: "vault".into(),
                },
                reason::KMS_CONNECTION_NOT_FOUND,
                Some(RETRY * 3),
                "KmsConnection vault not found",
            ),
            (
                ReconcileFailure::Plan(PlanError::VersionsExhausted {
                    topic: "orders".into(),
                    partition: 2,
                }),
                reason::KEY_VERSIONS_EXHAUSTED,
                Some(RETRY * 6),
                "partition 2 of topic orders",
            ),
            (
                ReconcileFailure::Claim(ClaimError::Held {
                    what: "topic",
                    value: "orders".into(),
                    namespace: "a".into(),
                    name: "o".into(),
                    deleting: false,
                }),
                reason::TOPIC_CONFLICT,
                Some(RETRY * 6),
                "topic orders is held by EncryptedTopic a/o",
            ),
            (
                ReconcileFailure::Claim(ClaimError::Held {
                    what: "TEK",
                    value: "kafka-e2ee_a_o".into(),
                    namespace: "a".into(),
                    name: "o".into(),
                    deleting: true,
                }),
                reason::WAITING_FOR_DELETION,
                Some(RETRY / 2),
                "(being deleted: this object waits until it is gone)",
            ),
            (
                ReconcileFailure::Claim(ClaimError::OutsideNamespace {
                    tek: "kafka-e2ee_a_o".into(),
                    prefix: "kafka-e2ee_b_".into(),
                }),
                reason::TEK_NOT_IN_NAMESPACE,
                Some(RETRY * 6),
                "allowAnyTekName",
            ),
        ];
        // Those a person must fix are Stalled; outages, a connection not created yet and a
        // deletion to wait for are Reconciling.
        let stalled = [true, false, true, false, true, true, false, true];
        assert_eq!(cases.len(), stalled.len());
        for ((failure, reason_, retry, text), stalls) in cases.into_iter().zip(stalled) {
            assert_eq!(failure.reason(), reason_, "{failure:?}");
            assert_eq!(failure.requeue(), retry, "{failure:?}");
            assert!(failure.message().contains(text), "{}", failure.message());
            assert_eq!(failure.stalls(), stalls, "{failure:?}");
        }
    }
}
