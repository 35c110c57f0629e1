use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kafka topic whose record values and headers are encrypted end to end (KIP-317).
///
/// The operator provisions the topic encryption key (TEK) in the referenced KMS, creates or
/// adopts the Kafka topic, and publishes one wrapped data key (EDEK) per partition to the key
/// topic before any client uses it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kafka-e2ee.io",
    version = "v1alpha1",
    kind = "EncryptedTopic",
    namespaced,
    status = "EncryptedTopicStatus",
    shortname = "etopic",
    category = "kafka-e2ee",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.topicName"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedTopicSpec {
    /// Name of the Kafka topic. Defaults to metadata.name. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Number of partitions. May grow (new partitions get their own data keys), never shrink.
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    /// Replication factor for a topic the operator creates. Broker default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replicas: Option<i32>,
    /// Extra Kafka topic configuration (e.g. retention.ms) applied at creation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The KMS connection object that holds this topic's encryption key.
    pub kms_ref: KmsRef,
}

/// A reference to a KMS connection object, namespaced or cluster-scoped
/// (like cert-manager's Issuer and ClusterIssuer).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KmsRef {
    /// Kind of the referenced object.
    pub kind: KmsRefKind,
    /// Name of the referenced object (in this namespace for KmsConnection).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The two scopes a KMS connection object comes in.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum KmsRefKind {
    /// Namespaced: usable only by EncryptedTopics in its namespace.
    KmsConnection,
    /// Cluster-scoped: usable from every namespace.
    ClusterKmsConnection,
}

/// What the operator last observed and did. Written with server-side apply; the spec is never
/// mutated.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedTopicStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, plus the reason when it is not (KmsUnavailable, TopicConflict, InvalidSpec, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl EncryptedTopic {
    /// The Kafka topic this resource manages: `spec.topicName`, else `metadata.name`.
    pub fn kafka_topic_name(&self) -> Option<&str> {
        self.spec
            .topic_name
            .as_deref()
            .or(self.metadata.name.as_deref())
    }
}
