//! The contract between the operator and the admission webhook for client injection
//! (docs/webhook.md).
//!
//! The operator maintains one ConfigMap per namespace that has EncryptedTopics
//! ([`CLIENT_CONFIGMAP`]): for each KMS connection those topics use, a client configuration
//! file (the client crate's format, with paths relative to the file), and an index
//! ([`INDEX_KEY`], a [`ClientIndex`]) saying which topic uses which file and what a pod must
//! have mounted next to it (service-account tokens, Secret keys). The webhook reads only the
//! index: it injects references to these objects, never their contents.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Namespace label that opts a namespace in to injection.
pub const NAMESPACE_LABEL: &str = "kafka-e2ee.io/injection";
/// The value of [`NAMESPACE_LABEL`] that enables injection.
pub const NAMESPACE_LABEL_ENABLED: &str = "enabled";
/// Pod annotation naming the Kafka topics the pod uses, comma-separated; it opts the pod in.
pub const TOPICS_ANNOTATION: &str = "kafka-e2ee.io/topics";
/// Pod annotation: `"false"` opts a pod out even if it names topics.
pub const INJECT_ANNOTATION: &str = "kafka-e2ee.io/inject";
/// Pod annotation: comma-separated container names to inject into (default: all containers).
pub const CONTAINERS_ANNOTATION: &str = "kafka-e2ee.io/containers";
/// Pod annotation: the IAM role a pod assumes with AWS web identity (AWS KMS connections).
pub const AWS_ROLE_ARN_ANNOTATION: &str = "kafka-e2ee.io/aws-role-arn";
/// Pod annotation: `proxy` runs the encrypting proxy beside the application (any language,
/// any Kafka client: docs/proxy.md) instead of configuring a client library in it (`client`,
/// the default).
pub const MODE_ANNOTATION: &str = "kafka-e2ee.io/mode";
/// The value of [`MODE_ANNOTATION`] that injects the proxy.
pub const MODE_PROXY: &str = "proxy";
/// Pod annotation (proxy mode): the environment variable the application reads its bootstrap
/// servers from (default [`DEFAULT_BOOTSTRAP_ENV`]); the webhook sets it to the proxy.
pub const BOOTSTRAP_ENV_ANNOTATION: &str = "kafka-e2ee.io/bootstrap-env";
pub const DEFAULT_BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";
/// The proxy sidecar's container name, bootstrap address (loopback) and health port.
pub const PROXY_CONTAINER: &str = "kafka-e2ee-proxy";
pub const PROXY_BOOTSTRAP: &str = "127.0.0.1:9092";
pub const PROXY_HEALTH_PORT: u16 = 9190;
/// Pod annotation (proxy mode): a Secret of the pod's namespace holding the proxy's own Kafka
/// credentials (`username` and `password` for SASL; `user.crt`, `user.key` and `ca.crt` for
/// TLS), mounted into the proxy only, at [`KAFKA_SECRET_PATH`].
pub const PROXY_KAFKA_SECRET_ANNOTATION: &str = "kafka-e2ee.io/proxy-kafka-secret";
pub const KAFKA_SECRET_VOLUME: &str = "kafka-e2ee-kafka";
pub const KAFKA_SECRET_PATH: &str = "/var/run/kafka-e2ee-kafka";
/// Pod annotation (client mode): a Secret of the pod's namespace holding the application's
/// Kafka credentials (the same keys as [`PROXY_KAFKA_SECRET_ANNOTATION`]), mounted into the
/// injected containers at [`KAFKA_SECRET_PATH`], which [`KAFKA_CREDENTIALS_ENV`] names. The
/// client library reads them from there; they never enter a ConfigMap or the configuration
/// file.
pub const KAFKA_SECRET_ANNOTATION: &str = "kafka-e2ee.io/kafka-secret";
/// The environment variable naming the directory of the mounted Kafka credentials (client
/// mode); the client library's `config::KAFKA_CREDENTIALS_ENV`.
pub const KAFKA_CREDENTIALS_ENV: &str = "KAFKA_E2EE_KAFKA_CREDENTIALS";
/// Pod annotation the webhook writes: what it injected ([`InjectionRecord`] as JSON).
pub const INJECTED_ANNOTATION: &str = "kafka-e2ee.io/injected";
/// Pod label (`"true"`): the pod must not be created without its injection. The chart's
/// mutating webhook entry for such pods fails closed (`failurePolicy: Fail`); the one for
/// other pods fails open, so the webhook being down blocks only pods that say so.
pub const REQUIRE_INJECTION_LABEL: &str = "kafka-e2ee.io/require-injection";

/// The operator's ConfigMap in each namespace with EncryptedTopics.
pub const CLIENT_CONFIGMAP: &str = "kafka-e2ee-client";
/// Label on that ConfigMap, so the webhook can watch exactly these.
pub const CLIENT_CONFIGMAP_LABEL: &str = "kafka-e2ee.io/client-config";
/// The index's key in the ConfigMap.
pub const INDEX_KEY: &str = "index.yaml";
/// The only index format this version writes and reads.
pub const INDEX_FORMAT: u32 = 1;

/// The volume the webhook adds, and where it is mounted in each chosen container.
pub const VOLUME_NAME: &str = "kafka-e2ee";
pub const MOUNT_PATH: &str = "/var/run/kafka-e2ee";
/// The client configuration's file name inside the volume.
pub const CONFIG_FILE: &str = "client.yaml";
/// The client crate's environment variable for the injected configuration file.
pub const CONFIG_ENV: &str = "KAFKA_E2EE_CONFIG";

/// File names (relative to the client configuration) of what a profile may mount.
pub const VAULT_TOKEN_FILE: &str = "vault-token";
pub const AWS_TOKEN_FILE: &str = "aws-token";
pub const KEYSTORE_FILE: &str = "keystore.json";
pub const CA_FILE: &str = "ca.crt";
pub const CLIENT_CERT_FILE: &str = "tls.crt";
pub const CLIENT_KEY_FILE: &str = "tls.key";
/// The audience AWS STS expects of a web identity token.
pub const AWS_AUDIENCE: &str = "sts.amazonaws.com";
/// Lifetime requested for projected tokens (the kubelet refreshes them at 80%).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// What the operator publishes for one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIndex {
    pub format: u32,
    /// Kafka topic name -> how a client reaches its keys.
    pub topics: BTreeMap<String, IndexedTopic>,
    /// Profile name (also the ConfigMap key of its client configuration) -> what it needs.
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexedTopic {
    /// The EncryptedTopic object managing the topic.
    pub encrypted_topic: String,
    pub profile: String,
}

/// One KMS connection, as client pods use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// `KmsConnection/<name>` or `ClusterKmsConnection/<name>`.
    pub kms_ref: String,
    /// The KeyProvider kind: vault, awsKms, hadoopKms, keystore.
    pub provider: String,
    /// What must be projected next to the configuration file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ProjectedSource>,
    /// Set when pods cannot use this connection, with the reason (e.g. Vault token auth: that
    /// token is the operator's credential and is not handed to workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// One source of the injected projected volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ProjectedSource {
    /// A service-account token for a KMS login (Vault Kubernetes auth).
    #[serde(rename_all = "camelCase")]
    ServiceAccountToken {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        path: String,
    },
    /// A key of the namespace's client ConfigMap (a KMS's CA bundle, copied there by the
    /// operator so that pods of every namespace a connection serves can have it).
    #[serde(rename_all = "camelCase")]
    ClientConfigMap { key: String, path: String },
    /// Keys of a Secret (a keystore). Pods can mount only Secrets of their namespace.
    #[serde(rename_all = "camelCase")]
    Secret {
        namespace: String,
        name: String,
        /// Secret key -> file name.
        items: BTreeMap<String, String>,
    },
}

/// What the webhook injected into a pod, recorded on the pod so that reinvocation (and anyone
/// reading the pod) can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionRecord {
    pub topics: Vec<String>,
    pub profile: String,
    pub containers: Vec<String>,
    /// `proxy` when the proxy sidecar was injected (the containers then got its address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// The profile name (and ConfigMap key) of a connection: valid as a ConfigMap key
/// (`[-._a-zA-Z0-9]+`), distinct per kind and name.
pub fn profile_name(kind_lowercase: &str, name: &str) -> String {
    format!("{kind_lowercase}.{name}.yaml")
}

/// The client ConfigMap key of a profile's CA bundle.
pub fn profile_ca_key(profile: &str) -> String {
    format!("{}.ca.crt", profile.trim_end_matches(".yaml"))
}

/// Splits a comma-separated annotation value into trimmed, non-empty, de-duplicated names
/// in their first-seen order.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !out.iter().any(|seen| seen == item) {
            out.push(item.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_trimmed_and_deduplicated_in_order() {
        assert_eq!(
            split_list(" orders, payments ,,orders,"),
            vec!["orders".to_owned(), "payments".to_owned()]
        );
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn the_index_round_trips_through_yaml() {
        let index = ClientIndex {
            format: INDEX_FORMAT,
            topics: BTreeMap::from([(
                "orders".to_owned(),
                IndexedTopic {
                    encrypted_topic: "orders".into(),
                    profile: profile_name("kmsconnection", "vault"),
                },
            )]),
            profiles: BTreeMap::from([(
                profile_name("kmsconnection", "vault"),
                Profile {
                    kms_ref: "KmsConnection/vault".into(),
                    provider: "vault".into(),
                    sources: vec![ProjectedSource::ServiceAccountToken {
                        audience: Some("vault".into()),
                        path: VAULT_TOKEN_FILE.into(),
                    }],
                    unavailable: None,
                },
            )]),
        };
        let yaml = serde_yaml::to_string(&index).unwrap();
        assert!(yaml.contains("serviceAccountToken"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<ClientIndex>(&yaml).unwrap(), index);
    }
}
