//! Custom resource types of kafka-e2ee, the CRD YAML generated from them, and the pure
//! validation the schema cannot express (Kubernetes 1.20 has no CEL rules).
//!
//! This crate depends on nothing else of ours, so the operator, the webhook and the tests can
//! all share one definition.

pub mod duration;
mod encrypted_topic;
pub mod injection;
mod kms_connection;
mod topic_name;
pub mod validation;
mod yaml;

pub use encrypted_topic::{
    Cipher, DEFAULT_MAX_RECORDS, DekRollover, DeletionPolicy, EncryptedTopic, EncryptedTopicSpec,
    EncryptedTopicStatus, KeysSpec, KeysStatus, KmsRef, KmsRefKind, MANAGED_ANNOTATION,
    MAX_REQUEST_AHEAD_SECONDS, PAUSE_ANNOTATION, PRUNE_REQUEST_ANNOTATION, PlaintextPolicy,
    ROLLOVER_PARTITIONS_ANNOTATION, ROLLOVER_REQUEST_ANNOTATION, ROTATE_REQUEST_ANNOTATION,
    Request, Requests, RequestsStatus, TekRotation, TekStatus,
};
pub use kms_connection::{
    AwsKmsBackend, AwsWebIdentity, BackendSelectionError, CaBundleRef, ClusterKmsConnection,
    ClusterKmsConnectionSpec, ConfigMapKeyRef, HadoopKmsBackend, KeystoreBackend, KmsBackend,
    KmsConnection, KmsConnectionSpec, KmsConnectionStatus, NamespaceSelection, SecretKeyRef,
    SecretRef, ServiceAccountRef, VaultAuthSpec, VaultBackend, VaultKubernetesAuthSpec,
};
pub use topic_name::{TopicNameError, validate_topic_name};
pub use yaml::{CrdYamlError, all_crds, crds_yaml};

/// The API group of every kafka-e2ee kind.
pub const GROUP: &str = "kafka-e2ee.io";
