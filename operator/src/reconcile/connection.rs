//! The KMS connection an EncryptedTopic names, read from the API, and its provider.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kafka_e2ee_crds::validation::validate_backend;
use kafka_e2ee_crds::{
    BackendSelectionError, ClusterKmsConnection, EncryptedTopic, KmsBackend, KmsConnection,
    KmsRefKind,
};
use kube::{Api, ResourceExt};

use super::Context;
use super::failure::ReconcileFailure;
use crate::kms::{ConnectionKey, OperatorProvider};

/// The object holding the backend.
pub enum Holder {
    Namespaced(KmsConnection),
    Cluster(ClusterKmsConnection),
}

impl Holder {
    pub fn backend(&self) -> Result<KmsBackend<'_>, BackendSelectionError> {
        match self {
            Self::Namespaced(c) => c.spec.backend(),
            Self::Cluster(c) => c.spec.backend(),
        }
    }

    pub fn generation(&self) -> Option<i64> {
        match self {
            Self::Namespaced(c) => c.metadata.generation,
            Self::Cluster(c) => c.metadata.generation,
        }
    }
}

/// The KMS connection an object names, as read now, and the key its provider is cached under.
pub struct Connection {
    pub key: ConnectionKey,
    /// Its metadata.generation: the provider is rebuilt when the spec changes.
    pub generation: Option<i64>,
    pub holder: Holder,
}

impl Connection {
    /// Reads the (Cluster)KmsConnection `obj` references. Secrets of a namespaced connection
    /// live beside it; those of a cluster-scoped one in the operator's namespace.
    pub async fn fetch(obj: &EncryptedTopic, ctx: &Context) -> Result<Self, ReconcileFailure> {
        let kms_ref = &obj.spec.kms_ref;
        let (secret_namespace, holder) = match kms_ref.kind {
            KmsRefKind::KmsConnection => {
                let namespace = obj.namespace().unwrap_or_default();
                let api: Api<KmsConnection> = Api::namespaced(ctx.client.clone(), &namespace);
                let conn = get(&api, "KmsConnection", &kms_ref.name).await?;
                (namespace, Holder::Namespaced(conn))
            }
            KmsRefKind::ClusterKmsConnection => {
                let api: Api<ClusterKmsConnection> = Api::all(ctx.client.clone());
                let conn = get(&api, "ClusterKmsConnection", &kms_ref.name).await?;
                let namespace = obj.namespace().unwrap_or_default();
                if !admits(ctx, &conn, &namespace).await? {
                    return Err(ReconcileFailure::ConnectionNotAdmitted {
                        name: kms_ref.name.clone(),
                        namespace,
                    });
                }
                (ctx.cluster_namespace.clone(), Holder::Cluster(conn))
            }
        };
        Ok(Self::of(
            kms_ref.kind,
            &kms_ref.name,
            secret_namespace,
            holder,
        ))
    }

    /// The connection held by `holder`, whose Secrets live in `secret_namespace`.
    pub fn of(kind: KmsRefKind, name: &str, secret_namespace: String, holder: Holder) -> Self {
        Self {
            key: ConnectionKey {
                kind,
                name: name.to_owned(),
                secret_namespace,
            },
            generation: holder.generation(),
            holder,
        }
    }

    /// Its backend, valid for its kind (a namespaced one authenticates only as the tenant).
    pub fn backend(&self) -> Result<KmsBackend<'_>, ReconcileFailure> {
        validate_backend(self.holder.backend(), self.key.scope()).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            ReconcileFailure::ConnectionInvalid(text.join("; "))
        })
    }

    /// Whether its EncryptedTopics may name any TEK (a ClusterKmsConnection that says so).
    pub fn any_tek_name(&self) -> bool {
        match &self.holder {
            Holder::Namespaced(_) => false,
            Holder::Cluster(c) => c.spec.allow_any_tek_name,
        }
    }

    /// `Kind/name`, as status records it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.key.kind.as_str(), self.key.name)
    }

    /// The connection's provider (built on first use, cached per resourceVersion).
    pub async fn provider(
        &self,
        ctx: &Context,
        backend: KmsBackend<'_>,
    ) -> Result<Arc<OperatorProvider>, ReconcileFailure> {
        Ok(ctx
            .providers
            .get(&self.key, self.generation, backend)
            .await?)
    }
}

/// Whether a ClusterKmsConnection serves `namespace` (its `namespaces` selection; the
/// namespace's labels are read only when names alone do not decide).
async fn admits(
    ctx: &Context,
    conn: &ClusterKmsConnection,
    namespace: &str,
) -> Result<bool, ReconcileFailure> {
    let Some(selection) = &conn.spec.namespaces else {
        return Ok(true);
    };
    if selection.names.iter().any(|n| n == namespace) {
        return Ok(true);
    }
    if selection.match_labels.is_empty() {
        return Ok(false);
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let found =
        api.get_metadata(namespace)
            .await
            .map_err(|source| ReconcileFailure::Kubernetes {
                what: "reading the namespace's labels",
                source,
            })?;
    Ok(selection.admits(namespace, found.labels()))
}

async fn get<K>(api: &Api<K>, kind: &'static str, name: &str) -> Result<K, ReconcileFailure>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(ReconcileFailure::ConnectionNotFound {
            kind,
            name: name.to_owned(),
        }),
        Err(source) => Err(ReconcileFailure::ConnectionLookup {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}
