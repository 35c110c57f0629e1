//! The operator's per-namespace client ConfigMaps, watched and parsed once per version, so
//! that an admission request costs a map lookup, not an apiserver round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kafka_e2ee_crds::injection::{
    CLIENT_CONFIGMAP, CLIENT_CONFIGMAP_LABEL, ClientIndex, INDEX_FORMAT, INDEX_KEY,
};
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::review::IndexSource;

/// A parsed index and the ConfigMap version it came from.
type Parsed = (Option<String>, Option<Arc<ClientIndex>>);

#[derive(Clone)]
pub struct ConfigMapIndexes {
    store: Store<ConfigMap>,
    parsed: Arc<Mutex<HashMap<String, Parsed>>>,
}

impl ConfigMapIndexes {
    /// Starts watching the labelled ConfigMaps of all namespaces; the returned future drives
    /// the watch and must be polled (spawned) for the cache to fill.
    pub fn watch(client: kube::Client) -> (Self, impl Future<Output = ()> + Send) {
        let (store, writer) = reflector::store::<ConfigMap>();
        let config = watcher::Config::default().labels(&format!("{CLIENT_CONFIGMAP_LABEL}=true"));
        let driver = reflector::reflector(writer, watcher(Api::all(client), config))
            .default_backoff()
            .applied_objects()
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching client ConfigMaps");
                }
            });
        let indexes = Self {
            store,
            parsed: Arc::default(),
        };
        (indexes, driver)
    }

    /// Resolves once the first list has arrived.
    pub async fn ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }
}

impl IndexSource for ConfigMapIndexes {
    fn index(&self, namespace: &str) -> Option<Arc<ClientIndex>> {
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
        let index = parse_index(&cm).map(Arc::new);
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
