//! What admission decisions read from the cluster, watched so that a request costs a map
//! lookup, not an apiserver round trip: the operator's per-namespace client ConfigMaps
//! (parsed once per version) and the KMS connections (for rules on a topic and its backend).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kafka_e2ee_crds::injection::{
    CLIENT_CONFIGMAP, CLIENT_CONFIGMAP_LABEL, ClientIndex, INDEX_FORMAT, INDEX_KEY,
};
use kafka_e2ee_crds::{ClusterKmsConnection, KmsConnection, KmsRef, KmsRefKind};
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::inject::PreparedIndex;
use crate::review::IndexSource;

/// A parsed index and the ConfigMap version it came from.
type Parsed = (Option<String>, Option<Arc<PreparedIndex>>);

#[derive(Clone)]
pub struct ClusterCache {
    store: Store<ConfigMap>,
    parsed: Arc<Mutex<HashMap<String, Parsed>>>,
    connections: Store<KmsConnection>,
    cluster_connections: Store<ClusterKmsConnection>,
}

/// Drives a reflector until the process ends, logging watch errors.
fn drive<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
) -> impl Future<Output = ()> + Send
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects()
        .for_each(move |event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching {what}");
            }
        })
}

impl ClusterCache {
    /// Starts watching the labelled ConfigMaps of all namespaces; the returned future drives
    /// the watch and must be polled (spawned) for the cache to fill.
    pub fn watch(client: kube::Client) -> (Self, impl Future<Output = ()> + Send) {
        let (store, writer) = reflector::store::<ConfigMap>();
        let (connections, conn_writer) = reflector::store::<KmsConnection>();
        let (cluster_connections, cluster_writer) = reflector::store::<ClusterKmsConnection>();
        let config = watcher::Config::default().labels(&format!("{CLIENT_CONFIGMAP_LABEL}=true"));
        let driver = futures::future::join3(
            drive(
                writer,
                Api::all(client.clone()),
                config,
                "client ConfigMaps",
            ),
            drive(
                conn_writer,
                Api::all(client.clone()),
                watcher::Config::default(),
                "KmsConnections",
            ),
            drive(
                cluster_writer,
                Api::all(client),
                watcher::Config::default(),
                "ClusterKmsConnections",
            ),
        );
        let indexes = Self {
            store,
            parsed: Arc::default(),
            connections,
            cluster_connections,
        };
        (indexes, async move {
            driver.await;
        })
    }

    /// Resolves once the first lists have arrived.
    pub async fn ready(&self) {
        let _ = self.store.wait_until_ready().await;
        let _ = self.connections.wait_until_ready().await;
        let _ = self.cluster_connections.wait_until_ready().await;
    }
}

impl IndexSource for ClusterCache {
    fn connection_kind(&self, namespace: &str, kms_ref: &KmsRef) -> Option<&'static str> {
        let backend = match kms_ref.kind {
            KmsRefKind::KmsConnection => self
                .connections
                .get(&ObjectRef::new(&kms_ref.name).within(namespace))?
                .spec
                .backend()
                .ok()?
                .kind(),
            KmsRefKind::ClusterKmsConnection => self
                .cluster_connections
                .get(&ObjectRef::new(&kms_ref.name))?
                .spec
                .backend()
                .ok()?
                .kind(),
        };
        Some(backend)
    }

    fn index(&self, namespace: &str) -> Option<Arc<PreparedIndex>> {
        let found = self
            .store
            .get(&ObjectRef::new(CLIENT_CONFIGMAP).within(namespace));
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cm) = found else {
            // Gone (the namespace's last EncryptedTopic was deleted): forget its parse too.
            parsed.remove(namespace);
            return None;
        };
        let version = cm.metadata.resource_version.clone();
        if let Some((v, index)) = parsed.get(namespace)
            && *v == version
        {
            return index.clone();
        }
        let index = parse_index(&cm).map(|index| Arc::new(PreparedIndex::new(index)));
        parsed.insert(namespace.to_owned(), (version, index.clone()));
        index
    }
}

/// The index in a client ConfigMap; an unreadable one counts as none (the pod is then told
/// its topics are unknown) and is logged once per version.
fn parse_index(cm: &ConfigMap) -> Option<ClientIndex> {
    let text = cm.data.as_ref()?.get(INDEX_KEY)?;
    match serde_yaml::from_str::<ClientIndex>(text) {
        Ok(index) if index.format == INDEX_FORMAT => Some(index),
        Ok(index) => {
            tracing::warn!(namespace = ?cm.metadata.namespace, format = index.format, "client index format not supported");
            None
        }
        Err(e) => {
            tracing::warn!(namespace = ?cm.metadata.namespace, error = %e, "unreadable client index");
            None
        }
    }
}
