//! KMS connection objects: where a TEK lives and how the operator authenticates there.
//! `KmsConnection` is namespaced (usable by EncryptedTopics of its namespace) and
//! `ClusterKmsConnection` is cluster-scoped (usable by all), like cert-manager's Issuer and
//! ClusterIssuer. Both hold exactly one backend; secrets are referenced, never inlined.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// HashiCorp Vault / OpenBao transit engine.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultBackend {
    /// Vault address, e.g. `https://vault.vault.svc:8200`.
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
}

impl VaultBackend {
    /// The transit mount (default `transit`).
    pub fn mount_or_default(&self) -> &str {
        self.mount.as_deref().unwrap_or("transit")
    }
}

impl VaultKubernetesAuthSpec {
    /// The auth method's mount (default `kubernetes`).
    pub fn mount_or_default(&self) -> &str {
        self.mount.as_deref().unwrap_or("kubernetes")
    }

    /// The audience of service-account tokens sent to Vault (default `vault`).
    pub fn audience_or_default(&self) -> &str {
        self.audience.as_deref().unwrap_or("vault")
    }

    /// The role injected client pods log in as (default: `role`).
    pub fn client_role_or_default(&self) -> &str {
        self.client_role.as_deref().unwrap_or(&self.role)
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
    /// topics' keys. Default: `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_role: Option<String>,
    /// Mount path of the auth method. Default `kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Audience of the projected service-account token clients get. Default `vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
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
    /// Unset: the SDK's default chain (IRSA / web identity, instance role, environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
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
    /// cert-manager writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<SecretRef>,
}

/// A local keystore (docs/keystore.md) held in a Secret and mounted into clients.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeystoreBackend {
    /// The Secret key that holds the keystore JSON.
    pub secret_ref: SecretKeyRef,
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

macro_rules! kms_connection_spec {
    ($(#[$meta:meta])* $spec:ident) => {
        #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
        $(#[$meta])*
        #[serde(rename_all = "camelCase")]
        #[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
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
    /// backend: vault, awsKms, hadoopKms or keystore. Secrets are referenced from this
    /// namespace.
    #[kube(
        group = "kafka-e2ee.io",
        version = "v1alpha1",
        kind = "KmsConnection",
        namespaced,
        shortname = "kmsconn",
        category = "kafka-e2ee"
    )]
    KmsConnectionSpec
);

kms_connection_spec!(
    /// A KMS that EncryptedTopics in every namespace can keep their TEKs in. Holds exactly one
    /// backend: vault, awsKms, hadoopKms or keystore. Secrets are referenced from the
    /// operator's cluster resource namespace.
    #[kube(
        group = "kafka-e2ee.io",
        version = "v1alpha1",
        kind = "ClusterKmsConnection",
        shortname = "ckmsconn",
        category = "kafka-e2ee"
    )]
    ClusterKmsConnectionSpec
);
