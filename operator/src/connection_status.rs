//! The Ready condition of KMS connections, like cert-manager's Issuers: each
//! (Cluster)KmsConnection is checked when it changes and every `interval`. A connection is
//! Ready when its backend is valid for its kind, its provider builds (the Secrets and
//! ServiceAccounts it names exist, a Vault login succeeds) and the KMS answers a read of a TEK
//! name no topic uses ([`ownership::probe_tek_name`]): "not found" is the answer that proves
//! the KMS was reached and accepted the credentials. The status is written only when it
//! changes, so a settled connection costs no writes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_crds::{ClusterKmsConnection, KmsConnection, KmsConnectionStatus, KmsRefKind};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::ownership;
use crate::reconcile::connection::{Connection, Holder};
use crate::reconcile::status::condition_among;
use crate::reconcile::{Context, MANAGER, READY, ReconcileFailure, reason};

/// Ready condition reason of a connection that was reached and authenticated.
pub const CONNECTED: &str = "Connected";

/// What a check found: the Ready condition's status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Which connections an operator keeps the status of: those of its namespace
/// (`--watch-namespace`; ClusterKmsConnections only when it watches all namespaces), carrying
/// its `--watch-selector` labels if it has one, so that two operators never both write one.
pub struct Scope {
    pub namespace: Option<String>,
    pub selector: Option<String>,
}

/// Checks the (Cluster)KmsConnections of `scope` until the process stops.
pub async fn run(ctx: Arc<Context>, interval: Duration, scope: Scope) {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(selector) = &scope.selector {
        config = config.labels(selector);
    }
    let namespaced: Api<KmsConnection> = match &scope.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let settings = Arc::new((Arc::clone(&ctx), interval));
    let namespaced = Controller::new(namespaced, config.clone())
        .graceful_shutdown_on(kafka_e2ee_telemetry::shutdown_signal())
        .run(
            |conn: Arc<KmsConnection>, s: Arc<(Arc<Context>, Duration)>| async move {
                let namespace = conn.namespace().unwrap_or_default();
                let holder = Holder::Namespaced((*conn).clone());
                let c = Connection::of(
                    KmsRefKind::KmsConnection,
                    &conn.name_any(),
                    namespace.clone(),
                    holder,
                );
                let api = Api::namespaced(s.0.client.clone(), &namespace);
                reconcile(&*conn, &api, Some(&namespace), c, &s.0, s.1).await
            },
            |_, _: &kube::Error, s| Action::requeue(s.1.min(RETRY)),
            Arc::clone(&settings),
        )
        .for_each(|_| async {});
    if scope.namespace.is_some() {
        namespaced.await;
        return;
    }
    let cluster = Controller::new(Api::<ClusterKmsConnection>::all(ctx.client.clone()), config)
        .graceful_shutdown_on(kafka_e2ee_telemetry::shutdown_signal())
        .run(
            |conn: Arc<ClusterKmsConnection>, s: Arc<(Arc<Context>, Duration)>| async move {
                let holder = Holder::Cluster((*conn).clone());
                let c = Connection::of(
                    KmsRefKind::ClusterKmsConnection,
                    &conn.name_any(),
                    s.0.cluster_namespace.clone(),
                    holder,
                );
                let api = Api::all(s.0.client.clone());
                reconcile(&*conn, &api, None, c, &s.0, s.1).await
            },
            |_, _: &kube::Error, s| Action::requeue(s.1.min(RETRY)),
            settings,
        )
        .for_each(|_| async {});
    futures::future::join(namespaced, cluster).await;
}

/// How soon a status that could not be written is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Checks `obj` (read through `api`) and writes its status if that changed.
async fn reconcile<K>(
    obj: &K,
    api: &Api<K>,
    namespace: Option<&str>,
    connection: Connection,
    ctx: &Context,
    interval: Duration,
) -> Result<Action, kube::Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + HasStatus,
{
    let health = check(&connection, namespace, ctx).await;
    if !health.ready {
        tracing::warn!(connection = %connection.label(), namespace, reason = health.reason, message = %health.message, "KMS connection not ready");
    }
    let previous = obj.status();
    let status = KmsConnectionStatus {
        observed_generation: obj.meta().generation,
        backend: connection
            .holder
            .backend()
            .ok()
            .map(|b| b.kind().to_owned()),
        conditions: vec![condition_among(
            previous.map_or(&[][..], |s| &s.conditions),
            READY,
            if health.ready { "True" } else { "False" },
            health.reason,
            &health.message,
            obj.meta().generation,
            SystemTime::now(),
        )],
    };
    if previous != Some(&status) {
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    Ok(Action::requeue(interval))
}

/// Reads the status of both connection kinds.
pub trait HasStatus {
    fn status(&self) -> Option<&KmsConnectionStatus>;
}

impl HasStatus for KmsConnection {
    fn status(&self) -> Option<&KmsConnectionStatus> {
        self.status.as_ref()
    }
}

impl HasStatus for ClusterKmsConnection {
    fn status(&self) -> Option<&KmsConnectionStatus> {
        self.status.as_ref()
    }
}

/// Checks one connection: valid, provider built, KMS reached and credentials accepted.
pub async fn check(connection: &Connection, namespace: Option<&str>, ctx: &Context) -> Health {
    let not_ready = |failure: ReconcileFailure| Health {
        ready: false,
        reason: failure.reason(),
        message: failure.message(),
    };
    let backend = match connection.backend() {
        Ok(backend) => backend,
        Err(failure) => return not_ready(failure),
    };
    let provider = match connection.provider(ctx, backend).await {
        Ok(provider) => provider,
        Err(failure) => return not_ready(failure),
    };
    let probe = ownership::probe_tek_name(backend, namespace);
    match provider.describe_tek(&probe).await {
        Ok(_) | Err(ProviderError::NotFound { .. }) => Health {
            ready: true,
            reason: CONNECTED,
            message: format!(
                "{} answered a read of TEK '{probe}' with these credentials",
                backend.kind()
            ),
        },
        Err(e @ ProviderError::Misconfigured { .. }) => Health {
            ready: false,
            reason: reason::KMS_CONNECTION_INVALID,
            message: e.to_string(),
        },
        Err(e) => {
            let failure = ReconcileFailure::Kms(e);
            Health {
                ready: false,
                reason: failure.reason(),
                message: format!(
                    "{} (checked by reading TEK '{probe}', which the credentials should be allowed to read)",
                    failure.message()
                ),
            }
        }
    }
}
