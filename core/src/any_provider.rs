//! The KeyProvider a client configuration names, whichever backend it is.

use crate::config::ProviderConfig;
use crate::keystore::LocalKeystore;
use crate::provider::{
    DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager, TekOwner,
};
use crate::secret::KeyMaterial;

pub enum AnyProvider {
    Keystore(LocalKeystore),
    #[cfg(feature = "vault")]
    Vault(Box<crate::vault::VaultTransit>),
    #[cfg(feature = "aws-kms")]
    AwsKms(crate::aws_kms::AwsKms),
    #[cfg(feature = "hadoop-kms")]
    HadoopKms(crate::hadoop_kms::HadoopKms),
}

/// A backend this build was compiled without.
#[allow(dead_code, reason = "unused when every backend feature is enabled")]
fn not_built(kind: &'static str, feature: &str) -> ProviderError {
    ProviderError::Misconfigured {
        backend: kind,
        reason: format!("this build has no {kind} support (cargo feature `{feature}`)"),
    }
}

impl AnyProvider {
    pub async fn from_config(config: &ProviderConfig) -> Result<Self, ProviderError> {
        match config {
            ProviderConfig::Keystore { path } => {
                Ok(Self::Keystore(LocalKeystore::from_file(path)?))
            }
            #[cfg(feature = "vault")]
            ProviderConfig::Vault {
                address,
                mount,
                namespace,
                token_file,
                kubernetes_auth,
                ca_file,
            } => {
                let auth = match (token_file, kubernetes_auth) {
                    (Some(file), None) => {
                        let token =
                            zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(
                                |e| ProviderError::Misconfigured {
                                    backend: "vault",
                                    reason: format!(
                                        "cannot read the token file {}: {e}",
                                        file.display()
                                    ),
                                },
                            )?);
                        crate::vault::VaultAuth::Token(zeroize::Zeroizing::new(
                            token.trim().to_owned(),
                        ))
                    }
                    (None, Some(k8s)) => crate::vault::VaultAuth::Kubernetes {
                        mount: k8s.mount.clone(),
                        role: k8s.role.clone(),
                        jwt: std::sync::Arc::new(crate::vault::JwtFile(k8s.token_file.clone())),
                    },
                    _ => {
                        return Err(ProviderError::Misconfigured {
                            backend: "vault",
                            reason: "exactly one of tokenFile and kubernetesAuth".into(),
                        });
                    }
                };
                let settings = crate::vault::VaultSettings {
                    address: address.clone(),
                    namespace: namespace.clone(),
                    mount: mount.clone(),
                    auth,
                    ca_pem: ca_file
                        .as_deref()
                        .map(|path| {
                            std::fs::read(path).map_err(|e| ProviderError::Misconfigured {
                                backend: "vault",
                                reason: format!("cannot read the CA file {}: {e}", path.display()),
                            })
                        })
                        .transpose()?,
                };
                Ok(Self::Vault(Box::new(crate::vault::VaultTransit::new(
                    &settings,
                )?)))
            }
            #[cfg(not(feature = "vault"))]
            ProviderConfig::Vault { .. } => Err(not_built("vault", "vault")),
            #[cfg(feature = "aws-kms")]
            ProviderConfig::AwsKms { region, endpoint } => Ok(Self::AwsKms(
                crate::aws_kms::AwsKms::new(&crate::aws_kms::AwsKmsSettings {
                    region: region.clone(),
                    endpoint: endpoint.clone(),
                    // Pods use the SDK's chain: the webhook injects web identity (IRSA-style).
                    credentials: None,
                    web_identity: None,
                })
                .await,
            )),
            #[cfg(not(feature = "aws-kms"))]
            ProviderConfig::AwsKms { .. } => Err(not_built("aws-kms", "aws-kms")),
            #[cfg(feature = "hadoop-kms")]
            ProviderConfig::HadoopKms {
                url,
                user,
                ca_file,
                client_cert_file,
                client_key_file,
            } => Ok(Self::HadoopKms(crate::hadoop_kms::HadoopKms::new(
                &crate::hadoop_kms::HadoopKmsSettings {
                    url: url.clone(),
                    user: user.clone(),
                    tls: ca_file
                        .as_deref()
                        .map(|ca| {
                            crate::hadoop_kms::HadoopKmsTls::from_files(
                                ca,
                                client_cert_file.as_deref(),
                                client_key_file.as_deref(),
                            )
                        })
                        .transpose()?,
                    timeout: std::time::Duration::from_secs(10),
                },
            )?)),
            #[cfg(not(feature = "hadoop-kms"))]
            ProviderConfig::HadoopKms { .. } => Err(not_built("hadoop-kms", "hadoop-kms")),
        }
    }
}

/// Delegates a call to whichever backend is inside.
macro_rules! each_backend {
    ($self:expr, $p:ident => $call:expr) => {
        match $self {
            AnyProvider::Keystore($p) => $call,
            #[cfg(feature = "vault")]
            AnyProvider::Vault($p) => $call,
            #[cfg(feature = "aws-kms")]
            AnyProvider::AwsKms($p) => $call,
            #[cfg(feature = "hadoop-kms")]
            AnyProvider::HadoopKms($p) => $call,
        }
    };
}

impl KeyProvider for AnyProvider {
    fn backend(&self) -> &'static str {
        each_backend!(self, p => p.backend())
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        each_backend!(self, p => p.generate_dek(tek, context).await)
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        each_backend!(self, p => p.unwrap_dek(tek, context, edek).await)
    }
}

impl TekManager for AnyProvider {
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        each_backend!(self, p => p.create_tek(tek).await)
    }

    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        each_backend!(self, p => p.describe_tek(tek).await)
    }

    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        each_backend!(self, p => p.rotate_tek(tek).await)
    }

    async fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        each_backend!(self, p => p.rewrap_dek(tek, context, edek).await)
    }

    async fn rewrap_deks(
        &self,
        tek: &str,
        items: &[(DekContext<'_>, &Edek)],
    ) -> Result<Vec<Edek>, ProviderError> {
        each_backend!(self, p => p.rewrap_deks(tek, items).await)
    }

    fn edek_tek_version(&self, edek: &Edek) -> Option<String> {
        each_backend!(self, p => p.edek_tek_version(edek))
    }

    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        each_backend!(self, p => p.delete_tek(tek).await)
    }

    async fn create_tek_for(
        &self,
        tek: &str,
        owner: &TekOwner<'_>,
    ) -> Result<TekInfo, ProviderError> {
        each_backend!(self, p => p.create_tek_for(tek, owner).await)
    }

    async fn delete_tek_of(&self, tek: &str, owner: &TekOwner<'_>) -> Result<(), ProviderError> {
        each_backend!(self, p => p.delete_tek_of(tek, owner).await)
    }
}
