//! From a KMS connection object to a working provider: secrets are read through the
//! Kubernetes API (held zeroized in memory, never written anywhere), providers are cached per
//! connection and rebuilt when the connection changes or the cache entry is older than its TTL
//! (so a rotated credential Secret is picked up).
//!
//! Who the operator is at the KMS depends on the connection's kind (docs/security.md,
//! "Tenancy"): for a namespaced KmsConnection only something of that namespace (a Secret
//! there, or a short-lived token it requests for a ServiceAccount there); its own identity
//! (service-account token file, the AWS default chain, Hadoop simple auth) only for a
//! ClusterKmsConnection, which cluster administrators create.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kafka_e2ee_client::any_provider::AnyProvider;
use kafka_e2ee_client::aws_kms::{
    AwsKms, AwsKmsSettings, AwsStaticCredentials, AwsWebIdentitySettings,
};
use kafka_e2ee_client::hadoop_kms::{HadoopKms, HadoopKmsSettings, HadoopKmsTls};
use kafka_e2ee_client::identity::{JwtFile, JwtFuture, JwtSource};
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::provider::ProviderError;
use kafka_e2ee_client::resilient::{KmsMetrics, ResiliencePolicy, Resilient};
use kafka_e2ee_client::vault::{VaultAuth, VaultSettings, VaultTransit};
use kafka_e2ee_crds::validation::{ConnectionScope, SpecError, validate_backend};
use kafka_e2ee_crds::{KmsBackend, KmsRefKind, SecretKeyRef};
use kube::Api;
use kube::api::PostParams;

use crate::ca::{self, CaBundleError};
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// The provider the operator uses: any backend, with timeouts, retries and metrics.
pub type OperatorProvider = Resilient<AnyProvider>;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectionError {
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key '{key}'")]
    SecretKeyMissing {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("reading {what} failed")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    CaBundle(#[from] CaBundleError),
    /// The connection breaks a rule of its kind (checked here too, not only at admission:
    /// a connection stored while the webhook was absent must not make us act for it).
    #[error("{}", join(.0))]
    Invalid(Vec<SpecError>),
    #[error(
        "Secret {namespace}/{name} has no client certificate (tls.crt and tls.key): a KmsConnection authenticates to Hadoop KMS with one"
    )]
    ClientCertificateRequired { namespace: String, name: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

fn join(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConnectionKey {
    /// Whose identity the operator may use for it.
    pub fn scope(&self) -> ConnectionScope {
        match self.kind {
            KmsRefKind::KmsConnection => ConnectionScope::Namespaced,
            KmsRefKind::ClusterKmsConnection => ConnectionScope::Cluster,
        }
    }
}

/// Tokens for a ServiceAccount, from the TokenRequest API (`serviceaccounts/token`), short
/// lived and bound to one audience: how the operator acts as a tenant's ServiceAccount
/// without holding a long-lived credential of it.
pub struct TokenRequestJwt {
    api: Api<ServiceAccount>,
    namespace: String,
    name: String,
    audience: String,
}

/// How long a requested token lives: the apiserver's minimum; a login uses it at once.
const REQUESTED_TOKEN_SECONDS: i64 = 600;

impl TokenRequestJwt {
    pub fn new(client: kube::Client, namespace: &str, name: &str, audience: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            audience: audience.to_owned(),
        }
    }
}

impl JwtSource for TokenRequestJwt {
    fn jwt(&self) -> JwtFuture<'_> {
        Box::pin(async move {
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![self.audience.clone()],
                    expiration_seconds: Some(REQUESTED_TOKEN_SECONDS),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            };
            let issued = self
                .api
                .create_token_request(&self.name, &PostParams::default(), &request)
                .await
                .map_err(|e| ProviderError::Misconfigured {
                    backend: "service-account token",
                    reason: format!("TokenRequest for {} failed: {e}", self.describe()),
                })?;
            issued
                .status
                .map(|s| Zeroizing::new(s.token))
                .ok_or_else(|| ProviderError::Misconfigured {
                    backend: "service-account token",
                    reason: format!("TokenRequest for {} returned no token", self.describe()),
                })
        })
    }

    fn describe(&self) -> String {
        format!(
            "ServiceAccount {}/{} (audience {})",
            self.namespace, self.name, self.audience
        )
    }
}

/// Where a connection lives: its Secrets are read from `secret_namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    pub kind: KmsRefKind,
    pub name: String,
    pub secret_namespace: String,
}

struct Entry {
    /// The connection's metadata.generation (spec changes; status writes leave it).
    generation: Option<i64>,
    built: Instant,
    provider: Arc<OperatorProvider>,
}

/// Providers per connection object.
pub struct ProviderCache {
    client: kube::Client,
    metrics: KmsMetrics,
    policy: ResiliencePolicy,
    ttl: Duration,
    /// The operator's own service-account token, for Vault Kubernetes auth.
    service_account_token: PathBuf,
    entries: Mutex<HashMap<ConnectionKey, Entry>>,
}

impl ProviderCache {
    pub fn new(
        client: kube::Client,
        metrics: KmsMetrics,
        policy: ResiliencePolicy,
        ttl: Duration,
        service_account_token: PathBuf,
    ) -> Self {
        Self {
            client,
            metrics,
            policy,
            ttl,
            service_account_token,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The provider of a connection at `generation`, built on first use.
    pub async fn get(
        &self,
        key: &ConnectionKey,
        generation: Option<i64>,
        backend: KmsBackend<'_>,
    ) -> Result<Arc<OperatorProvider>, ConnectionError> {
        let mut entries = self.entries.lock().await;
        if let Some(e) = entries.get(key)
            && e.generation == generation
            && e.built.elapsed() < self.ttl
        {
            return Ok(Arc::clone(&e.provider));
        }
        let inner = self.build(backend, key).await?;
        let policy = match backend {
            // In-process: nothing to protect from a burst of calls.
            KmsBackend::Keystore(_) => ResiliencePolicy {
                rate_per_second: 1e9,
                ..self.policy
            },
            _ => self.policy,
        };
        let provider = Arc::new(Resilient::new(inner, policy, self.metrics.clone()));
        entries.insert(
            key.clone(),
            Entry {
                generation,
                built: Instant::now(),
                provider: Arc::clone(&provider),
            },
        );
        Ok(provider)
    }

    async fn build(
        &self,
        backend: KmsBackend<'_>,
        key: &ConnectionKey,
    ) -> Result<AnyProvider, ConnectionError> {
        let scope = key.scope();
        let namespace = key.secret_namespace.as_str();
        validate_backend(Ok(backend), scope).map_err(ConnectionError::Invalid)?;
        Ok(match backend {
            KmsBackend::Vault(v) => {
                let auth = match (&v.auth.token_secret_ref, &v.auth.kubernetes) {
                    (Some(secret), _) => {
                        let token = self.secret_key(namespace, secret).await?;
                        let text = String::from_utf8_lossy(&token).trim().to_owned();
                        VaultAuth::Token(Zeroizing::new(text))
                    }
                    (None, Some(k8s)) => {
                        let jwt: Arc<dyn JwtSource> = match (&k8s.service_account_ref, scope) {
                            (Some(account), ConnectionScope::Namespaced) => {
                                Arc::new(TokenRequestJwt::new(
                                    self.client.clone(),
                                    namespace,
                                    &account.name,
                                    k8s.audience_or_default(),
                                ))
                            }
                            (None, ConnectionScope::Cluster) => {
                                Arc::new(JwtFile(self.service_account_token.clone()))
                            }
                            // Refused by validate_backend above.
                            _ => return Err(ConnectionError::Invalid(Vec::new())),
                        };
                        VaultAuth::Kubernetes {
                            mount: k8s.mount_or_default().to_owned(),
                            role: k8s.role.clone(),
                            jwt,
                        }
                    }
                    (None, None) => {
                        return Err(ProviderError::Misconfigured {
                            backend: "vault",
                            reason: "vault.auth names no method".into(),
                        }
                        .into());
                    }
                };
                let ca_pem = match &v.ca {
                    Some(reference) => Some(
                        ca::read(&self.client, namespace, reference)
                            .await?
                            .into_bytes(),
                    ),
                    None => None,
                };
                AnyProvider::Vault(Box::new(VaultTransit::new(&VaultSettings {
                    address: v.address.clone(),
                    namespace: v.namespace.clone(),
                    mount: v.mount_or_default().to_owned(),
                    auth,
                    ca_pem,
                })?))
            }
            KmsBackend::AwsKms(a) => {
                let credentials = match &a.credentials_secret_ref {
                    None => None,
                    Some(secret) => {
                        let data = self.secret(namespace, &secret.name).await?;
                        let get = |key: &str| {
                            data.get(key)
                                .map(|v| {
                                    Zeroizing::new(String::from_utf8_lossy(v).trim().to_owned())
                                })
                                .ok_or_else(|| ConnectionError::SecretKeyMissing {
                                    namespace: namespace.to_owned(),
                                    name: secret.name.clone(),
                                    key: key.to_owned(),
                                })
                        };
                        Some(AwsStaticCredentials {
                            access_key_id: get("accessKeyId")?.to_string(),
                            secret_access_key: get("secretAccessKey")?,
                            session_token: get("sessionToken").ok(),
                        })
                    }
                };
                let web_identity = a.web_identity.as_ref().map(|w| AwsWebIdentitySettings {
                    role_arn: w.role_arn.clone(),
                    token: Arc::new(TokenRequestJwt::new(
                        self.client.clone(),
                        namespace,
                        &w.service_account_ref.name,
                        w.audience_or_default(),
                    )),
                    sts_endpoint: w.sts_endpoint.clone(),
                    session_name: session_name(namespace, &key.name),
                });
                AnyProvider::AwsKms(
                    AwsKms::new(&AwsKmsSettings {
                        region: a.region.clone(),
                        endpoint: a.endpoint.clone(),
                        credentials,
                        web_identity,
                    })
                    .await,
                )
            }
            KmsBackend::HadoopKms(h) => {
                let tls = match &h.tls_secret_ref {
                    None => None,
                    Some(secret) => {
                        let data = self.secret(namespace, &secret.name).await?;
                        let what = format!("Secret {namespace}/{}", secret.name);
                        let ca = data.get("ca.crt").ok_or_else(|| {
                            ConnectionError::SecretKeyMissing {
                                namespace: namespace.to_owned(),
                                name: secret.name.clone(),
                                key: "ca.crt".into(),
                            }
                        })?;
                        let ca = ca::certificates_only(ca)
                            .map_err(|problem| CaBundleError::Invalid { what, problem })?;
                        let identity = match (data.get("tls.crt"), data.get("tls.key")) {
                            (Some(cert), Some(key)) => Some(HadoopKmsTls::identity(cert, key)),
                            _ if scope == ConnectionScope::Namespaced => {
                                return Err(ConnectionError::ClientCertificateRequired {
                                    namespace: namespace.to_owned(),
                                    name: secret.name.clone(),
                                });
                            }
                            _ => None,
                        };
                        Some(HadoopKmsTls {
                            ca_pem: ca.into_bytes(),
                            identity_pem: identity,
                        })
                    }
                };
                AnyProvider::HadoopKms(HadoopKms::new(&HadoopKmsSettings {
                    url: h.url.clone(),
                    user: h.user.clone(),
                    tls,
                    timeout: Duration::from_secs(10),
                })?)
            }
            KmsBackend::Keystore(k) => {
                let json = self.secret_key(namespace, &k.secret_ref).await?;
                AnyProvider::Keystore(LocalKeystore::from_json(&json)?)
            }
        })
    }

    /// All keys of a Secret, values zeroized on drop.
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, ConnectionError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|source| ConnectionError::Kube {
                what: format!("Secret {namespace}/{name}"),
                source,
            })?
            .ok_or_else(|| ConnectionError::SecretNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Zeroizing::new(v.0)))
            .collect())
    }

    async fn secret_key(
        &self,
        namespace: &str,
        reference: &SecretKeyRef,
    ) -> Result<Zeroizing<Vec<u8>>, ConnectionError> {
        let mut data = self.secret(namespace, &reference.name).await?;
        data.remove(&reference.key)
            .ok_or_else(|| ConnectionError::SecretKeyMissing {
                namespace: namespace.to_owned(),
                name: reference.name.clone(),
                key: reference.key.clone(),
            })
    }
}

/// An STS session name (`[\w+=,.@-]{2,64}`) that says, in the role's audit trail, which
/// connection assumed it.
fn session_name(namespace: &str, connection: &str) -> String {
    let name: String = format!("kafka-e2ee@{namespace}.{connection}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name
}

/// The non-secret settings clients need, as the policy record carries them.
pub fn public_config(backend: KmsBackend<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            out.insert(k.to_owned(), v.clone());
        }
    };
    match backend {
        KmsBackend::Vault(v) => {
            put("address", Some(&v.address));
            put("mount", v.mount.as_ref());
            put("namespace", v.namespace.as_ref());
        }
        KmsBackend::AwsKms(a) => {
            put("region", a.region.as_ref());
            put("endpoint", a.endpoint.as_ref());
        }
        KmsBackend::HadoopKms(h) => {
            put("url", Some(&h.url));
        }
        KmsBackend::Keystore(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use kafka_e2ee_crds::{AwsKmsBackend, KeystoreBackend};

    use super::*;

    #[test]
    fn public_config_names_no_secret() {
        let keystore = KeystoreBackend {
            secret_ref: SecretKeyRef {
                name: "ks".into(),
                key: "keystore.json".into(),
            },
        };
        assert!(public_config(KmsBackend::Keystore(&keystore)).is_empty());
        let aws = AwsKmsBackend {
            region: Some("eu-west-1".into()),
            endpoint: None,
            credentials_secret_ref: Some(kafka_e2ee_crds::SecretRef { name: "aws".into() }),
            web_identity: None,
        };
        assert_eq!(
            public_config(KmsBackend::AwsKms(&aws)),
            BTreeMap::from([("region".to_owned(), "eu-west-1".to_owned())])
        );
    }

    #[test]
    fn sts_session_names_fit_their_pattern() {
        assert_eq!(session_name("shop", "aws"), "kafka-e2ee@shop.aws");
        let long = session_name(&"n".repeat(63), "conn/x");
        assert_eq!(long.len(), 64);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        );
    }
}
