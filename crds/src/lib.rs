//! Custom resource types of kafka-e2ee, the CRD YAML generated from them, and the pure
//! validation the schema cannot express (Kubernetes 1.20 has no CEL rules).
//!
//! This crate depends on nothing else of ours, so the operator, the webhook and the tests can
//! all share one definition.

mod encrypted_topic;
mod topic_name;
mod yaml;

pub use encrypted_topic::{
    EncryptedTopic, EncryptedTopicSpec, EncryptedTopicStatus, KmsRef, KmsRefKind,
};
pub use topic_name::{TopicNameError, validate_topic_name};
pub use yaml::{CrdYamlError, all_crds, crds_yaml};

/// The API group of every kafka-e2ee kind.
pub const GROUP: &str = "kafka-e2ee.io";
