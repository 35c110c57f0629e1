//! KMS connection objects: where a TEK lives and how the operator authenticates there.
//! `KmsConnection` is namespaced (usable by EncryptedTopics of its namespace) and
//! `ClusterKmsConnection` is cluster-scoped (usable by all), like cert-manager's Issuer and
//! ClusterIssuer. Both hold exactly one backend; secrets are referenced, never inlined.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// HashiCorp Vault / OpenBao transit engine.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultBackend {
    /// Vault address: `https://...` (e.g. `https://vault.vault.svc:8200`). `http://` only on a
    /// ClusterKmsConnection with `allowInsecureHttp`.
    #[schemars(length(min = 1))]
    pub address: String,
    /// Mount path of the transit engine. Default `transit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// How the operator (and injected clients) authenticate. Exactly one method.
    pub auth: VaultAuthSpec,
    /// The CA bundle (PEM) that signed Vault's certificate, trusted instead of the system's;
    /// also delivered to injected pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaBundleRef>,
    /// ClusterKmsConnection only: accept an `http://` address (tokens travel in the clear;
    /// reported in the connection's status). Never for a namespaced KmsConnection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

impl VaultBackend {
    /// The transit mount (default `transit`).
    pub fn mount_or_default(&self) -> &str {
        self.mount.as_deref().unwrap_or("transit")
    }
}

/// Stands for the client pod's namespace in `clientRole`.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

impl VaultKubernetesAuthSpec {
    /// The auth method's mount (default `kubernetes`).
    pub fn mount_or_default(&self) -> &str {
        self.mount.as_deref().unwrap_or("kubernetes")
    }

    /// The audience of service-account tokens sent to Vault (default `vault`).
    pub fn audience_or_default(&self) -> &str {
        self.audience.as_deref().unwrap_or("vault")
    }

    /// The role injected client pods of `namespace` log in as: `clientRole` with
    /// `{namespace}` replaced by the namespace's name; unset, `role` for a KmsConnection (the
    /// tenant's own) and none for a ClusterKmsConnection (its `role` is the operator's, which
    /// pods must never get).
    pub fn client_role_for(&self, cluster: bool, namespace: &str) -> Option<String> {
        match &self.client_role {
            Some(template) => Some(template.replace(NAMESPACE_PLACEHOLDER, namespace)),
            None if cluster => None,
            None => Some(self.role.clone()),
        }
    }
}

/// Vault authentication: a token from a Secret, or Kubernetes auth with the pod's
/// service-account token. Exactly one.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAuthSpec {
    /// A Secret key holding a Vault token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Vault's Kubernetes auth method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuthSpec>,
}

/// Vault's Kubernetes auth method.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuthSpec {
    /// The Vault role the operator logs in as (it creates, rotates and re-wraps TEKs).
    #[schemars(length(min = 1))]
    pub role: String,
    /// The Vault role injected client pods log in as; give it only transit decrypt on the
    /// topics' keys. `{namespace}` stands for the pod's namespace (one role per tenant on a
    /// ClusterKmsConnection). Default: `role` on a KmsConnection; a ClusterKmsConnection
    /// must set it (its `role` is the operator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_role: Option<String>,
    /// Mount path of the auth method. Default `kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Audience of the service-account tokens sent to Vault (the operator's, and those of
    /// injected pods). Default `vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// KmsConnection (required there): the ServiceAccount of the connection's namespace the
    /// operator logs in as. It requests a short-lived token for it (TokenRequest), never
    /// using its own. Not allowed on a ClusterKmsConnection, which uses the operator's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountRef>,
}

/// AWS KMS.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsKmsBackend {
    /// AWS region. Default: the SDK's (AWS_REGION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A custom endpoint (VPC endpoint, or a local KMS for tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A Secret with `accessKeyId` and `secretAccessKey` (and optionally `sessionToken`).
    /// A KmsConnection needs this or `webIdentity`; on a ClusterKmsConnection, with neither,
    /// the operator's own credentials (the SDK's default chain: IRSA, instance role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Web identity for a ServiceAccount of the connection's namespace: the operator requests
    /// a token for it (TokenRequest) and exchanges it with STS (`AssumeRoleWithWebIdentity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_identity: Option<AwsWebIdentity>,
}

/// AWS web identity: a ServiceAccount's token exchanged for a role's credentials.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsWebIdentity {
    /// The IAM role to assume.
    #[schemars(length(min = 1))]
    pub role_arn: String,
    /// The ServiceAccount (of the connection's namespace) whose token is presented.
    pub service_account_ref: ServiceAccountRef,
    /// The token's audience. Default `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// A custom STS endpoint. Default: the region's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
}

impl AwsWebIdentity {
    /// The audience AWS STS expects (default `sts.amazonaws.com`).
    pub fn audience_or_default(&self) -> &str {
        self.audience.as_deref().unwrap_or("sts.amazonaws.com")
    }
}

/// Hadoop KMS (the Ranger / Hadoop key management server).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HadoopKmsBackend {
    /// Base URL, e.g. `https://kms.example:9600/kms`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// User name for simple authentication (`user.name`).
    #[schemars(length(min = 1))]
    pub user: String,
    /// A Secret with `ca.crt` and, for mutual TLS, `tls.crt` and `tls.key` (the shape
    /// cert-manager writes). A KmsConnection needs it, with the client certificate: simple
    /// authentication (`user` alone) is trivially spoofed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<SecretRef>,
    /// ClusterKmsConnection only: authenticate with `user` alone (no client certificate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_simple_auth: bool,
    /// ClusterKmsConnection only: accept an `http://` URL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

/// A local keystore (docs/keystore.md) held in a Secret and mounted into clients.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeystoreBackend {
    /// The Secret key that holds the keystore JSON.
    pub secret_ref: SecretKeyRef,
}

/// A PEM CA bundle: one key of a Secret or of a ConfigMap (exactly one), in the connection's
/// namespace (for a ClusterKmsConnection, the operator's).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct CaBundleRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// One key of a ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A ServiceAccount of the connection's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ServiceAccountRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Which namespaces may use a ClusterKmsConnection: those named, and those whose labels match
/// (either). Unset: every namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
}

impl NamespaceSelection {
    /// Whether a namespace with `name` and `labels` may use the connection.
    pub fn admits(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.names.iter().any(|n| n == name)
            || (!self.match_labels.is_empty()
                && self
                    .match_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// A Secret (in the connection's namespace; for a ClusterKmsConnection, in the operator's
/// cluster resource namespace).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

/// The backend of a connection, whichever kind of object holds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KmsBackend<'a> {
    Vault(&'a VaultBackend),
    AwsKms(&'a AwsKmsBackend),
    HadoopKms(&'a HadoopKmsBackend),
    Keystore(&'a KeystoreBackend),
}

impl KmsBackend<'_> {
    /// The provider kind as the policy record and client configuration name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Vault(_) => "vault",
            Self::AwsKms(_) => "awsKms",
            Self::HadoopKms(_) => "hadoopKms",
            Self::Keystore(_) => "keystore",
        }
    }
}

/// Why a connection's backend selection is unusable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BackendSelectionError {
    #[error("no backend set: set exactly one of vault, awsKms, hadoopKms, keystore")]
    None,
    #[error("{0} backends set: set exactly one of vault, awsKms, hadoopKms, keystore")]
    Several(usize),
}

/// What the operator found when it last checked a (Cluster)KmsConnection: written only when
/// it changes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KmsConnectionStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The backend it holds: vault, awsKms, hadoopKms or keystore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Ready: the KMS was reached and accepted the connection's credentials at the last check
    /// (checked when the connection changes and periodically). Reasons: Connected,
    /// KmsConnectionInvalid, KmsDenied, KmsUnavailable (docs/operator.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

macro_rules! kms_connection_spec {
    ($(#[$meta:meta])* $spec:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* }) => {
        #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
        $(#[$meta])*
        #[serde(rename_all = "camelCase")]
        pub struct $spec {
            /// Vault / OpenBao transit.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub vault: Option<VaultBackend>,
            /// AWS KMS.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub aws_kms: Option<AwsKmsBackend>,
            /// Hadoop KMS.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub hadoop_kms: Option<HadoopKmsBackend>,
            /// A keystore in a Secret.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub keystore: Option<KeystoreBackend>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $spec {
            /// The one backend this connection holds.
            pub fn backend(&self) -> Result<KmsBackend<'_>, BackendSelectionError> {
                let set: Vec<KmsBackend<'_>> = [
                    self.vault.as_ref().map(KmsBackend::Vault),
                    self.aws_kms.as_ref().map(KmsBackend::AwsKms),
                    self.hadoop_kms.as_ref().map(KmsBackend::HadoopKms),
                    self.keystore.as_ref().map(KmsBackend::Keystore),
                ]
                .into_iter()
                .flatten()
                .collect();
                match set.as_slice() {
                    [] => Err(BackendSelectionError::None),
                    [one] => Ok(*one),
                    many => Err(BackendSelectionError::Several(many.len())),
                }
            }
        }
    };
}

kms_connection_spec!(
    /// A KMS that EncryptedTopics in this namespace can keep their TEKs in. Holds exactly one
    /// backend: vault, awsKms, hadoopKms or keystore. Secrets and ServiceAccounts are
    /// referenced from this namespace, and the operator authenticates only as something of
    /// this namespace (never with its own identity).
    #[kube(
        group = "kafka-e2ee.io",
        version = "v1alpha1",
        kind = "KmsConnection",
        namespaced,
        status = "KmsConnectionStatus",
        printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.backend"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
        shortname = "kmsconn",
        category = "kafka-e2ee"
    )]
    KmsConnectionSpec {}
);

kms_connection_spec!(
    /// A KMS that EncryptedTopics in the namespaces it admits can keep their TEKs in. Holds
    /// exactly one backend: vault, awsKms, hadoopKms or keystore. Secrets are referenced from
    /// the operator's namespace, and the operator authenticates with its own identity: only
    /// cluster administrators should create these.
    #[kube(
        group = "kafka-e2ee.io",
        version = "v1alpha1",
        kind = "ClusterKmsConnection",
        status = "KmsConnectionStatus",
        printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.backend"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
        shortname = "ckmsconn",
        category = "kafka-e2ee"
    )]
    ClusterKmsConnectionSpec {
        /// The namespaces whose EncryptedTopics may use this connection. Unset: all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespaces: Option<NamespaceSelection>,
        /// Let EncryptedTopics name any TEK in `spec.tek`. Unset, a TEK name must start with
        /// the topic's namespace prefix (`kafka-e2ee_<namespace>_`, AWS
        /// `alias/kafka-e2ee/<namespace>/`), so one namespace cannot name (and have the
        /// operator's identity use or delete) another's TEK.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_any_tek_name: bool
    }
);
