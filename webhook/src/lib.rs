//! kafka-e2ee's admission webhook.
//!
//! Not implemented yet: the mutating (KeyProvider injection) and validating (EncryptedTopic
//! rules Kubernetes 1.20 cannot express in a schema) webhooks arrive with the webhook issue.
//! The crate exists so the workspace has its final shape; it exports nothing.
