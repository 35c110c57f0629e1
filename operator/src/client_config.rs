//! The per-namespace client ConfigMap the admission webhook injects from
//! (`kafka_e2ee_crds::injection`, docs/webhook.md).
//!
//! For every namespace with EncryptedTopics, one ConfigMap: a client configuration file per
//! KMS connection those topics use (the client crate's format, paths relative to the file),
//! and an index of topic -> profile with what each profile needs projected beside it. Only
//! addresses and references: pods get a KMS's CA, never the operator's KMS credentials.
//!
//! Each file also carries the trust the key topic cannot give: the operator's public signing
//! keys (`trustedKeys`), and the topics of that profile whose spec allows plaintext
//! (`allowPlaintext`). Both come from here, through the Kubernetes API, never from Kafka.
//!
//! Built by a pure function over the controller's cache and two connection reflectors, and
//! published when a reconcile signals a change and on a resync interval (which also catches
//! deleted topics and connections); a ConfigMap is written only when its data changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kafka_e2ee_client::config::{ClientConfig, ProviderConfig, VaultKubernetesAuth};
use kafka_e2ee_client::signing::PublicKey;
use kafka_e2ee_crds::injection::{
    self, CLIENT_CONFIGMAP, CLIENT_CONFIGMAP_LABEL, ClientIndex, INDEX_FORMAT, INDEX_KEY,
    IndexedTopic, Profile, ProjectedSource,
};
use kafka_e2ee_crds::validation::{ConnectionScope, validate_backend, validate_encrypted_topic};
use kafka_e2ee_crds::{
    ClusterKmsConnection, EncryptedTopic, KmsBackend, KmsConnection, KmsRefKind, PlaintextPolicy,
};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::Notify;

use crate::ca;
use crate::kafka_ops::KeyTopicNames;
use crate::reconcile::{MANAGER, READY, reason};

/// What every client configuration gets besides its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub bootstrap_servers: String,
    /// Non-secret librdkafka properties for clients (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
    /// Where each namespace's key records are.
    pub key_topics: KeyTopicNames,
    /// Where ClusterKmsConnection Secrets live (the operator's namespace).
    pub cluster_namespace: String,
}

/// A connection as the pure builder sees it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionView<'a> {
    pub kind: KmsRefKind,
    pub name: &'a str,
    pub backend: KmsBackend<'a>,
    /// Where its Secrets live.
    pub secret_namespace: &'a str,
    /// The CA bundle pods trust the KMS with (certificates only), or why it cannot be read;
    /// `None` when the connection names none.
    pub ca: Option<Result<&'a str, &'a str>>,
}

/// What a profile's file trusts: the operator's keys, and its topics that allow plaintext;
/// and which topics' key records it reads.
struct ProfileTrust<'a> {
    keys: &'a [PublicKey],
    allow_plaintext: BTreeSet<String>,
    topics: BTreeSet<String>,
}

/// A profile and, when pods can use it, its ConfigMap entries (the client configuration file
/// under the profile's name, and the CA bundle beside it).
fn profile(
    conn: ConnectionView<'_>,
    profile_name: &str,
    namespace: &str,
    settings: &ClientSettings,
    trust: ProfileTrust<'_>,
) -> (Profile, Vec<(String, String)>) {
    let kind = match conn.kind {
        KmsRefKind::KmsConnection => "KmsConnection",
        KmsRefKind::ClusterKmsConnection => "ClusterKmsConnection",
    };
    let kms_ref = format!("{kind}/{}", conn.name);
    let cluster = conn.kind == KmsRefKind::ClusterKmsConnection;
    let mut sources = Vec::new();
    let mut entries = Vec::new();
    // The CA, copied into this ConfigMap (pods cannot mount another namespace's Secret).
    let mut ca_file = || -> Result<Option<std::path::PathBuf>, String> {
        match conn.ca {
            None => Ok(None),
            Some(Err(reason)) => Err(format!("{kms_ref}: {reason}")),
            Some(Ok(pem)) => {
                let key = injection::profile_ca_key(profile_name);
                sources.push(ProjectedSource::ClientConfigMap {
                    key: key.clone(),
                    path: injection::CA_FILE.into(),
                });
                entries.push((key, pem.to_owned()));
                Ok(Some(injection::CA_FILE.into()))
            }
        }
    };
    let provider = match conn.backend {
        KmsBackend::Vault(v) => match &v.auth.kubernetes {
            Some(k8s) => match k8s.client_role_for(cluster, namespace) {
                Some(role) => ca_file().map(|ca_file| {
                    sources.push(ProjectedSource::ServiceAccountToken {
                        audience: Some(k8s.audience_or_default().to_owned()),
                        path: injection::VAULT_TOKEN_FILE.into(),
                    });
                    ProviderConfig::Vault {
                        address: v.address.clone(),
                        mount: v.mount_or_default().to_owned(),
                        namespace: v.namespace.clone(),
                        token_file: None,
                        kubernetes_auth: Some(VaultKubernetesAuth {
                            role,
                            mount: k8s.mount_or_default().to_owned(),
                            token_file: injection::VAULT_TOKEN_FILE.into(),
                        }),
                        ca_file,
                    }
                }),
                None => Err(format!(
                    "{kms_ref} names no vault.auth.kubernetes.clientRole: its role is the \
                     operator's and is not handed to pods; set clientRole (e.g. \
                     'kafka-clients-{{namespace}}')"
                )),
            },
            None => Err(format!(
                "{kms_ref} uses Vault token auth: that token is the operator's credential and \
                 is not handed to pods; use vault.auth.kubernetes (with clientRole) for injected clients"
            )),
        },
        KmsBackend::AwsKms(a) => Ok(ProviderConfig::AwsKms {
            region: a.region.clone(),
            endpoint: a.endpoint.clone(),
        }),
        // The CA to trust the KMS, never the operator's client certificate.
        KmsBackend::HadoopKms(h) => ca_file().map(|ca_file| ProviderConfig::HadoopKms {
            url: h.url.clone(),
            user: h.user.clone(),
            ca_file,
            client_cert_file: None,
            client_key_file: None,
        }),
        KmsBackend::Keystore(k) => {
            sources.push(ProjectedSource::Secret {
                namespace: conn.secret_namespace.to_owned(),
                name: k.secret_ref.name.clone(),
                items: BTreeMap::from([(
                    k.secret_ref.key.clone(),
                    injection::KEYSTORE_FILE.to_owned(),
                )]),
            });
            Ok(ProviderConfig::Keystore {
                path: injection::KEYSTORE_FILE.into(),
            })
        }
    };
    let rendered = provider.and_then(|provider| {
        let mut config = ClientConfig::new(
            settings.bootstrap_servers.clone(),
            provider,
            trust.keys.to_vec(),
        );
        config.allow_plaintext = trust.allow_plaintext;
        config.topics = trust.topics;
        config.properties = settings.properties.clone();
        config.key_topic = settings.key_topics.for_namespace(namespace);
        serde_yaml::to_string(&config).map_err(|e| format!("cannot render its configuration: {e}"))
    });
    let unavailable = match rendered {
        Ok(yaml) => {
            entries.push((profile_name.to_owned(), yaml));
            None
        }
        Err(reason) => {
            sources.clear();
            entries.clear();
            Some(reason)
        }
    };
    let profile = Profile {
        kms_ref,
        provider: conn.backend.kind().to_owned(),
        sources,
        unavailable,
    };
    (profile, entries)
}

/// Ready reasons of a topic that was provisioned and is only waiting on a KMS or broker
/// outage: pods can still be given its configuration (they need the same services).
const OUTAGE_REASONS: [&str; 2] = [reason::KMS_UNAVAILABLE, reason::KAFKA_UNAVAILABLE];

/// Whether pods may be given a topic: it is Ready (so it owns its Kafka topic and has keys),
/// or was provisioned and waits on an outage. Never one in TopicConflict over another
/// namespace's topic, nor one that never converged.
pub fn injectable(topic: &EncryptedTopic) -> bool {
    let Some(status) = &topic.status else {
        return false;
    };
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == READY) else {
        return false;
    };
    // `topic` is recorded only once the keys were in place.
    ready.status == "True"
        || (status.topic.is_some() && OUTAGE_REASONS.contains(&ready.reason.as_str()))
}

/// The ConfigMap data for one namespace: the index and the entries of every usable profile.
/// Topics that are being deleted, do not validate, are not [`injectable`], or whose
/// connection is missing, invalid or does not serve the namespace are left out (the webhook
/// then names them as unknown). `trusted` are the operator's public signing keys.
pub fn namespace_data<'a>(
    namespace: &str,
    topics: impl IntoIterator<Item = &'a EncryptedTopic>,
    connection: impl Fn(KmsRefKind, &str) -> Option<ConnectionView<'a>>,
    settings: &ClientSettings,
    trusted: &[PublicKey],
) -> BTreeMap<String, String> {
    let mut index = ClientIndex {
        format: INDEX_FORMAT,
        ..ClientIndex::default()
    };
    // Profile name -> its connection, its topics, and those of them that allow plaintext.
    let mut profiles: BTreeMap<String, (ConnectionView<'a>, BTreeSet<String>, BTreeSet<String>)> =
        BTreeMap::new();
    for topic in topics {
        if topic.metadata.deletion_timestamp.is_some() || !injectable(topic) {
            continue;
        }
        let Ok(valid) = validate_encrypted_topic(topic) else {
            continue;
        };
        let kms_ref = &topic.spec.kms_ref;
        let Some(conn) = connection(kms_ref.kind, &kms_ref.name) else {
            continue;
        };
        let kind = match conn.kind {
            KmsRefKind::KmsConnection => "kmsconnection",
            KmsRefKind::ClusterKmsConnection => "clusterkmsconnection",
        };
        let name = injection::profile_name(kind, conn.name);
        let (_, topics, allow) = profiles
            .entry(name.clone())
            .or_insert_with(|| (conn, BTreeSet::new(), BTreeSet::new()));
        topics.insert(valid.topic.clone());
        if topic.spec.plaintext_policy == PlaintextPolicy::Allow {
            allow.insert(valid.topic.clone());
        }
        index.topics.insert(
            valid.topic,
            IndexedTopic {
                encrypted_topic: topic.name_any(),
                profile: name,
            },
        );
    }
    if index.topics.is_empty() {
        return BTreeMap::new();
    }
    let mut files = BTreeMap::new();
    for (name, (conn, topics, allow_plaintext)) in profiles {
        let trust = ProfileTrust {
            keys: trusted,
            allow_plaintext,
            topics,
        };
        let (profile, entries) = profile(conn, &name, namespace, settings, trust);
        files.extend(entries);
        index.profiles.insert(name, profile);
    }
    match serde_yaml::to_string(&index) {
        Ok(yaml) => {
            files.insert(INDEX_KEY.to_owned(), yaml);
            files
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render the client index");
            BTreeMap::new()
        }
    }
}

/// A connection object from the caches.
enum Held {
    Namespaced(Arc<KmsConnection>),
    Cluster(Arc<ClusterKmsConnection>),
}

impl Held {
    fn backend(&self) -> Result<KmsBackend<'_>, kafka_e2ee_crds::BackendSelectionError> {
        match self {
            Self::Namespaced(c) => c.spec.backend(),
            Self::Cluster(c) => c.spec.backend(),
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Self::Namespaced(c) => c.metadata.name.as_deref(),
            Self::Cluster(c) => c.metadata.name.as_deref(),
        }
    }
}

/// A connection with what the API gave for it.
struct Resolved {
    held: Held,
    secret_namespace: String,
    ca: Option<Result<String, String>>,
}

impl Resolved {
    /// Its view for the builder, if its backend is valid for its kind.
    fn view(&self, kind: KmsRefKind) -> Option<ConnectionView<'_>> {
        let scope = match kind {
            KmsRefKind::KmsConnection => ConnectionScope::Namespaced,
            KmsRefKind::ClusterKmsConnection => ConnectionScope::Cluster,
        };
        Some(ConnectionView {
            kind,
            name: self.held.name()?,
            backend: validate_backend(self.held.backend(), scope).ok()?,
            secret_namespace: &self.secret_namespace,
            ca: self
                .ca
                .as_ref()
                .map(|r| r.as_deref().map_err(String::as_str)),
        })
    }
}

/// Reads the caches and keeps every namespace's ConfigMap current.
pub struct Publisher {
    pub client: kube::Client,
    pub topics: Store<EncryptedTopic>,
    pub settings: ClientSettings,
    /// Notified by reconciles that may have changed what a namespace publishes.
    pub changed: Arc<Notify>,
    pub resync: Duration,
    /// Restrict to one namespace (the operator's --watch-namespace).
    pub watch_namespace: Option<String>,
    /// The label selector of the EncryptedTopics watched (the operator's --watch-selector).
    pub selector: Option<String>,
    /// The operator's public signing keys, as a rotation changes them.
    pub trusted: tokio::sync::watch::Receiver<Arc<Vec<PublicKey>>>,
}

impl Publisher {
    /// Runs until the process ends.
    pub async fn run(self) {
        let (connections, conn_writer) = reflector::store::<KmsConnection>();
        let (cluster_connections, cluster_writer) = reflector::store::<ClusterKmsConnection>();
        let conn_api: Api<KmsConnection> = match &self.watch_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let watch_conn =
            reflector::reflector(conn_writer, watcher(conn_api, watcher::Config::default()))
                .applied_objects()
                .for_each(|_| async {});
        let watch_cluster = reflector::reflector(
            cluster_writer,
            watcher(
                Api::<ClusterKmsConnection>::all(self.client.clone()),
                watcher::Config::default(),
            ),
        )
        .applied_objects()
        .for_each(|_| async {});
        let publish = async {
            // Both caches must be complete, or a topic would briefly vanish from its index.
            let _ = connections.wait_until_ready().await;
            let _ = cluster_connections.wait_until_ready().await;
            let _ = self.topics.wait_until_ready().await;
            let mut published: HashMap<String, BTreeMap<String, String>> = HashMap::new();
            // One schedule for resyncs, so that a steady stream of reconciles cannot keep
            // postponing them.
            let mut resync = tokio::time::interval(self.resync);
            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            resync.tick().await;
            let mut trusted = self.trusted.clone();
            let mut full = true;
            loop {
                self.publish_all(&connections, &cluster_connections, &mut published, full)
                    .await;
                full = false;
                tokio::select! {
                    // A signing-key rotation changed what every file trusts.
                    Ok(()) = trusted.changed() => {}
                    () = self.changed.notified() => {
                        // Let a burst of reconciles settle into one pass.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    // A resync compares with the apiserver again, not our memory.
                    _ = resync.tick() => full = true,
                }
            }
        };
        tokio::join!(watch_conn, watch_cluster, publish);
    }

    async fn publish_all(
        &self,
        connections: &Store<KmsConnection>,
        cluster_connections: &Store<ClusterKmsConnection>,
        published: &mut HashMap<String, BTreeMap<String, String>>,
        full: bool,
    ) {
        let topics = self.topics.state();
        let mut by_namespace: BTreeMap<String, Vec<&EncryptedTopic>> = BTreeMap::new();
        for topic in &topics {
            by_namespace
                .entry(topic.namespace().unwrap_or_default())
                .or_default()
                .push(topic);
        }
        // Namespaces whose last topic went away still hold a ConfigMap to delete: those we
        // published ourselves, and on a full pass (start, resync) any the apiserver holds, so
        // that the passes after every reconcile cost no list call. An operator that watches a
        // selection of EncryptedTopics leaves alone the ConfigMaps it did not publish.
        let mut namespaces: BTreeSet<String> = by_namespace.keys().cloned().collect();
        namespaces.extend(published.keys().cloned());
        if full && self.selector.is_none() {
            match self.existing_configmaps().await {
                Ok(existing) => namespaces.extend(existing),
                Err(e) => tracing::warn!(error = %e, "cannot list client ConfigMaps"),
            }
        }
        let namespaced = connections.state();
        let cluster = cluster_connections.state();
        let trusted = Arc::clone(&self.trusted.borrow());
        for namespace in namespaces {
            let topics = by_namespace
                .get(&namespace)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            // What the topics' connections need from the API (CA bundles, the namespace's
            // labels), read once per connection before the pure build.
            let mut resolved: HashMap<(KmsRefKind, String), Option<Resolved>> = HashMap::new();
            let mut labels = None;
            for topic in topics {
                let r = &topic.spec.kms_ref;
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    resolved.entry((r.kind, r.name.clone()))
                {
                    let found = self
                        .resolve(
                            &namespaced,
                            &cluster,
                            &namespace,
                            r.kind,
                            &r.name,
                            &mut labels,
                        )
                        .await;
                    slot.insert(found);
                }
            }
            let lookup = |kind: KmsRefKind, name: &str| -> Option<ConnectionView<'_>> {
                resolved.get(&(kind, name.to_owned()))?.as_ref()?.view(kind)
            };
            let data = namespace_data(
                &namespace,
                topics.iter().copied(),
                lookup,
                &self.settings,
                &trusted,
            );
            if !full && published.get(&namespace) == Some(&data) {
                continue;
            }
            match self.write(&namespace, &data).await {
                // A deleted ConfigMap needs no more passes.
                Ok(()) if data.is_empty() => {
                    published.remove(&namespace);
                }
                Ok(()) => {
                    published.insert(namespace, data);
                }
                Err(e) => {
                    tracing::warn!(%namespace, error = %e, "cannot publish the client ConfigMap")
                }
            }
        }
    }

    /// The connection `kind`/`name` as topics of `namespace` see it: `None` when it is
    /// missing or (a ClusterKmsConnection) does not serve the namespace. `labels` caches the
    /// namespace's labels for the pass.
    async fn resolve(
        &self,
        namespaced: &[Arc<KmsConnection>],
        cluster: &[Arc<ClusterKmsConnection>],
        namespace: &str,
        kind: KmsRefKind,
        name: &str,
        labels: &mut Option<BTreeMap<String, String>>,
    ) -> Option<Resolved> {
        let (held, secret_namespace) = match kind {
            KmsRefKind::KmsConnection => {
                let c = namespaced.iter().find(|c| {
                    c.name_any() == name && c.namespace().as_deref() == Some(namespace)
                })?;
                (Held::Namespaced(Arc::clone(c)), namespace.to_owned())
            }
            KmsRefKind::ClusterKmsConnection => {
                let c = cluster.iter().find(|c| c.name_any() == name)?;
                if let Some(selection) = &c.spec.namespaces {
                    if labels.is_none() && !selection.names.iter().any(|n| n == namespace) {
                        let api: Api<Namespace> = Api::all(self.client.clone());
                        match api.get_metadata(namespace).await {
                            Ok(ns) => *labels = Some(ns.labels().clone()),
                            Err(e) => {
                                tracing::warn!(%namespace, error = %e, "cannot read the namespace's labels");
                                return None;
                            }
                        }
                    }
                    if !selection.admits(namespace, labels.as_ref().unwrap_or(&BTreeMap::new())) {
                        return None;
                    }
                }
                (
                    Held::Cluster(Arc::clone(c)),
                    self.settings.cluster_namespace.clone(),
                )
            }
        };
        let ca = match held.backend().ok().and_then(ca::reference) {
            None => None,
            Some(reference) => Some(
                ca::read(&self.client, &secret_namespace, &reference)
                    .await
                    .map_err(|e| kafka_e2ee_telemetry::chain(&e)),
            ),
        };
        Some(Resolved {
            held,
            secret_namespace,
            ca,
        })
    }

    async fn existing_configmaps(&self) -> Result<Vec<String>, kube::Error> {
        let api: Api<ConfigMap> = match &self.watch_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let list = api
            .list_metadata(&ListParams::default().labels(&format!("{CLIENT_CONFIGMAP_LABEL}=true")))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|cm| cm.metadata.name.as_deref() == Some(CLIENT_CONFIGMAP))
            .filter_map(|cm| cm.metadata.namespace)
            .collect())
    }

    /// Creates, updates or deletes the namespace's ConfigMap; no write if it already matches.
    async fn write(
        &self,
        namespace: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<(), kube::Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let current = api.get_opt(CLIENT_CONFIGMAP).await?;
        if data.is_empty() {
            if current.is_some() {
                api.delete(CLIENT_CONFIGMAP, &DeleteParams::default())
                    .await?;
                tracing::info!(%namespace, "client ConfigMap deleted (no EncryptedTopics left)");
            }
            return Ok(());
        }
        if current.as_ref().and_then(|cm| cm.data.as_ref()) == Some(data) {
            return Ok(());
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(CLIENT_CONFIGMAP.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([
                    (CLIENT_CONFIGMAP_LABEL.to_owned(), "true".to_owned()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        MANAGER.to_owned(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            data: Some(data.clone()),
            ..ConfigMap::default()
        };
        api.patch(
            CLIENT_CONFIGMAP,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
        tracing::info!(%namespace, topics = data.len().saturating_sub(1), "client ConfigMap published");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kafka_e2ee_crds::{
        EncryptedTopicSpec, EncryptedTopicStatus, HadoopKmsBackend, KeystoreBackend, KmsRef,
        SecretKeyRef, SecretRef, TekStatus, VaultAuthSpec, VaultBackend, VaultKubernetesAuthSpec,
    };

    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";

    fn trusted() -> Vec<PublicKey> {
        vec![
            "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
                .parse()
                .unwrap(),
        ]
    }

    fn settings() -> ClientSettings {
        ClientSettings {
            bootstrap_servers: "kafka:9092".into(),
            properties: BTreeMap::from([("security.protocol".into(), "ssl".into())]),
            key_topics: KeyTopicNames::PerNamespace("__encryption_keys.{namespace}".into()),
            cluster_namespace: "kafka-e2ee".into(),
        }
    }

    fn with_ready(
        mut t: EncryptedTopic,
        status: &str,
        reason: &str,
        provisioned: bool,
    ) -> EncryptedTopic {
        t.status = Some(EncryptedTopicStatus {
            conditions: vec![Condition {
                type_: READY.into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            topic: provisioned.then(|| t.kafka_topic_name().unwrap_or_default().to_owned()),
            tek: provisioned.then(|| TekStatus {
                reference: "tek".into(),
                ..TekStatus::default()
            }),
            ..EncryptedTopicStatus::default()
        });
        t
    }

    /// A Ready topic of namespace `shop`.
    fn topic(name: &str, kind: KmsRefKind, conn: &str) -> EncryptedTopic {
        let mut t = EncryptedTopic::new(
            name,
            EncryptedTopicSpec::new(
                3,
                KmsRef {
                    kind,
                    name: conn.into(),
                },
            ),
        );
        t.metadata.namespace = Some("shop".into());
        with_ready(t, "True", reason::READY, true)
    }

    fn vault(kubernetes: bool, client_role: Option<&str>) -> VaultBackend {
        VaultBackend {
            address: "https://vault:8200".into(),
            mount: None,
            namespace: None,
            auth: VaultAuthSpec {
                token_secret_ref: (!kubernetes).then(|| SecretKeyRef {
                    name: "vault-token".into(),
                    key: "token".into(),
                }),
                kubernetes: kubernetes.then(|| VaultKubernetesAuthSpec {
                    role: "kafka-e2ee-operator".into(),
                    client_role: client_role.map(str::to_owned),
                    mount: None,
                    audience: None,
                    service_account_ref: None,
                }),
            },
            ca: None,
            allow_insecure_http: false,
        }
    }

    fn view<'a>(kind: KmsRefKind, name: &'a str, backend: KmsBackend<'a>) -> ConnectionView<'a> {
        ConnectionView {
            kind,
            name,
            backend,
            secret_namespace: match kind {
                KmsRefKind::KmsConnection => "shop",
                KmsRefKind::ClusterKmsConnection => "kafka-e2ee",
            },
            ca: None,
        }
    }

    fn build<'a>(
        topics: impl IntoIterator<Item = &'a EncryptedTopic>,
        connection: impl Fn(KmsRefKind, &str) -> Option<ConnectionView<'a>>,
    ) -> (BTreeMap<String, String>, ClientIndex) {
        let data = namespace_data("shop", topics, connection, &settings(), &trusted());
        let index = data
            .get(INDEX_KEY)
            .map(|i| serde_yaml::from_str(i).unwrap())
            .unwrap_or_default();
        (data, index)
    }

    #[test]
    fn client_config_env_names_agree() {
        assert_eq!(kafka_e2ee_client::config::CONFIG_ENV, injection::CONFIG_ENV);
    }

    /// The CRD's bound on `dekRollover.maxRecords` and the producers' nonce cap are one
    /// number, kept in the two crates that must not depend on each other.
    #[test]
    fn the_records_per_dek_cap_is_one_number() {
        assert_eq!(
            u64::try_from(kafka_e2ee_crds::validation::MAX_RECORDS_PER_DEK).unwrap(),
            kafka_e2ee_client::nonce::MAX_RECORDS_PER_DEK
        );
    }

    #[test]
    fn each_connection_becomes_one_profile_with_its_file_and_mounts() {
        let vault_k8s = vault(true, Some("orders-clients"));
        let keystore = KeystoreBackend {
            secret_ref: SecretKeyRef {
                name: "shared-keys".into(),
                key: "keystore.json".into(),
            },
        };
        let topics = [
            topic("orders", KmsRefKind::KmsConnection, "vault"),
            topic("payments", KmsRefKind::KmsConnection, "vault"),
            topic("audit", KmsRefKind::ClusterKmsConnection, "shared"),
            topic("ghost", KmsRefKind::KmsConnection, "missing"),
        ];
        let (data, index) = build(&topics, |kind, name| match (kind, name) {
            (KmsRefKind::KmsConnection, "vault") => Some(ConnectionView {
                ca: Some(Ok(CA)),
                ..view(kind, "vault", KmsBackend::Vault(&vault_k8s))
            }),
            (KmsRefKind::ClusterKmsConnection, "shared") => {
                Some(view(kind, "shared", KmsBackend::Keystore(&keystore)))
            }
            _ => None,
        });
        assert_eq!(
            index.topics.keys().collect::<Vec<_>>(),
            ["audit", "orders", "payments"],
            "the topic without a connection is left out"
        );
        assert_eq!(index.topics["orders"].profile, "kmsconnection.vault.yaml");
        assert_eq!(index.topics["payments"].profile, "kmsconnection.vault.yaml");
        let vault_profile = &index.profiles["kmsconnection.vault.yaml"];
        assert_eq!(
            vault_profile.sources,
            [
                ProjectedSource::ClientConfigMap {
                    key: "kmsconnection.vault.ca.crt".into(),
                    path: "ca.crt".into()
                },
                ProjectedSource::ServiceAccountToken {
                    audience: Some("vault".into()),
                    path: "vault-token".into()
                }
            ]
        );
        assert_eq!(
            data["kmsconnection.vault.ca.crt"], CA,
            "the CA beside the file"
        );
        let config = ClientConfig::parse(&data["kmsconnection.vault.yaml"], "test").unwrap();
        assert_eq!(config.bootstrap_servers, "kafka:9092");
        assert_eq!(
            config.trusted_keys,
            trusted(),
            "the operator's keys travel with every file"
        );
        assert!(
            config.allow_plaintext.is_empty(),
            "Reject topics pin nothing"
        );
        assert_eq!(config.properties["security.protocol"], "ssl");
        assert_eq!(
            config.key_topic, "__encryption_keys.shop",
            "the namespace's key topic"
        );
        assert_eq!(
            config.topics.iter().collect::<Vec<_>>(),
            ["orders", "payments"],
            "only the profile's topics' key records are read"
        );
        let ProviderConfig::Vault {
            kubernetes_auth: Some(auth),
            mount,
            ca_file,
            ..
        } = config.provider
        else {
            panic!("{:?}", config.provider)
        };
        assert_eq!(
            (auth.role.as_str(), auth.mount.as_str(), mount.as_str()),
            ("orders-clients", "kubernetes", "transit")
        );
        assert_eq!(auth.token_file, std::path::Path::new("vault-token"));
        assert_eq!(ca_file.as_deref(), Some(std::path::Path::new("ca.crt")));
        assert_eq!(
            index.profiles["clusterkmsconnection.shared.yaml"].sources,
            [ProjectedSource::Secret {
                namespace: "kafka-e2ee".into(),
                name: "shared-keys".into(),
                items: BTreeMap::from([("keystore.json".into(), "keystore.json".into())]),
            }]
        );
        assert_eq!(data.len(), 4, "index + two profile files + a CA: {data:?}");
    }

    #[test]
    fn operator_credentials_are_never_published() {
        let token_auth = vault(false, None);
        let hadoop = HadoopKmsBackend {
            url: "https://hkms:9600/kms".into(),
            user: "kafka".into(),
            tls_secret_ref: Some(SecretRef {
                name: "hkms-tls".into(),
            }),
            allow_simple_auth: false,
            allow_insecure_http: false,
        };
        // A cluster connection's `role` is the operator's: without a clientRole, pods get none.
        let cluster_vault = vault(true, None);
        let topics = [
            topic("orders", KmsRefKind::KmsConnection, "vault"),
            topic("audit", KmsRefKind::KmsConnection, "hadoop"),
            topic("shared", KmsRefKind::ClusterKmsConnection, "vault"),
        ];
        let (data, index) = build(&topics, |kind, name| {
            Some(match (kind, name) {
                (KmsRefKind::KmsConnection, "vault") => {
                    view(kind, "vault", KmsBackend::Vault(&token_auth))
                }
                (KmsRefKind::ClusterKmsConnection, _) => {
                    view(kind, "vault", KmsBackend::Vault(&cluster_vault))
                }
                _ => ConnectionView {
                    ca: Some(Ok(CA)),
                    ..view(kind, "hadoop", KmsBackend::HadoopKms(&hadoop))
                },
            })
        });
        let vault = &index.profiles["kmsconnection.vault.yaml"];
        assert!(
            vault.unavailable.as_deref().unwrap().contains("token auth"),
            "{vault:?}"
        );
        assert!(vault.sources.is_empty());
        assert!(!data.contains_key("kmsconnection.vault.yaml"));
        let cluster = &index.profiles["clusterkmsconnection.vault.yaml"];
        assert!(
            cluster
                .unavailable
                .as_deref()
                .unwrap()
                .contains("clientRole"),
            "{cluster:?}"
        );
        assert!(!data.contains_key("clusterkmsconnection.vault.yaml"));
        // Hadoop: the CA to trust the KMS, not the operator's client certificate.
        assert_eq!(
            index.profiles["kmsconnection.hadoop.yaml"].sources,
            [ProjectedSource::ClientConfigMap {
                key: "kmsconnection.hadoop.ca.crt".into(),
                path: "ca.crt".into()
            }]
        );
        let config = ClientConfig::parse(&data["kmsconnection.hadoop.yaml"], "test").unwrap();
        assert!(matches!(
            config.provider,
            ProviderConfig::HadoopKms {
                client_cert_file: None,
                client_key_file: None,
                ca_file: Some(_),
                ..
            }
        ));
    }

    /// One ClusterKmsConnection, one Vault role per tenant: `{namespace}` in clientRole.
    #[test]
    fn a_cluster_connection_gives_each_namespace_its_client_role() {
        let v = vault(true, Some("clients-{namespace}"));
        let topics = [topic("orders", KmsRefKind::ClusterKmsConnection, "vault")];
        let (data, _) = build(&topics, |kind, _| {
            Some(view(kind, "vault", KmsBackend::Vault(&v)))
        });
        let config = ClientConfig::parse(&data["clusterkmsconnection.vault.yaml"], "test").unwrap();
        let ProviderConfig::Vault {
            kubernetes_auth: Some(auth),
            ..
        } = config.provider
        else {
            panic!("{:?}", config.provider)
        };
        assert_eq!(auth.role, "clients-shop");
    }

    #[test]
    fn a_ca_that_cannot_be_read_makes_the_profile_unavailable() {
        let v = vault(true, Some("clients"));
        let topics = [topic("orders", KmsRefKind::KmsConnection, "vault")];
        let (data, index) = build(&topics, |kind, _| {
            Some(ConnectionView {
                ca: Some(Err("ConfigMap shop/vault-ca not found")),
                ..view(kind, "vault", KmsBackend::Vault(&v))
            })
        });
        let profile = &index.profiles["kmsconnection.vault.yaml"];
        assert!(
            profile
                .unavailable
                .as_deref()
                .unwrap()
                .contains("vault-ca not found"),
            "{profile:?}"
        );
        assert!(profile.sources.is_empty());
        assert_eq!(data.len(), 1, "the index alone: {data:?}");
    }

    /// Only topics that own their Kafka topic and were provisioned reach pods: not one in
    /// TopicConflict over another namespace's topic, nor one that never converged.
    #[test]
    fn only_provisioned_topics_that_own_their_topic_are_injected() {
        let v = vault(true, Some("clients"));
        let base = |name: &str| topic(name, KmsRefKind::KmsConnection, "vault");
        let topics = [
            base("ready"),
            with_ready(base("outage"), "False", reason::KMS_UNAVAILABLE, true),
            with_ready(
                base("never-provisioned"),
                "False",
                reason::KMS_UNAVAILABLE,
                false,
            ),
            with_ready(base("conflict"), "False", reason::TOPIC_CONFLICT, true),
            with_ready(base("denied"), "False", reason::KMS_DENIED, false),
            {
                let mut t = base("new");
                t.status = None;
                t
            },
        ];
        let (_, index) = build(&topics, |kind, _| {
            Some(view(kind, "vault", KmsBackend::Vault(&v)))
        });
        assert_eq!(index.topics.keys().collect::<Vec<_>>(), ["outage", "ready"]);
    }

    #[test]
    fn plaintext_is_pinned_per_profile_from_the_spec() {
        let v = vault(true, None);
        let mut migrating = topic("legacy", KmsRefKind::KmsConnection, "vault");
        migrating.spec.plaintext_policy = PlaintextPolicy::Allow;
        let strict = topic("orders", KmsRefKind::KmsConnection, "vault");
        let mut elsewhere = topic("audit", KmsRefKind::KmsConnection, "other");
        elsewhere.spec.plaintext_policy = PlaintextPolicy::Allow;
        let (data, _) = build([&migrating, &strict, &elsewhere], |kind, name| {
            Some(view(
                kind,
                if name == "vault" { "vault" } else { "other" },
                KmsBackend::Vault(&v),
            ))
        });
        let vault = ClientConfig::parse(&data["kmsconnection.vault.yaml"], "test").unwrap();
        assert_eq!(
            vault.allow_plaintext.iter().collect::<Vec<_>>(),
            [&topic_name_of(&migrating)],
            "only the Allow topic of this profile"
        );
        let other = ClientConfig::parse(&data["kmsconnection.other.yaml"], "test").unwrap();
        assert_eq!(
            other.allow_plaintext.iter().collect::<Vec<_>>(),
            [&topic_name_of(&elsewhere)]
        );
    }

    fn topic_name_of(t: &EncryptedTopic) -> String {
        validate_encrypted_topic(t).unwrap().topic
    }

    #[test]
    fn deleting_invalid_and_absent_topics_publish_nothing() {
        let mut deleting = topic("orders", KmsRefKind::KmsConnection, "vault");
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let mut invalid = topic("payments", KmsRefKind::KmsConnection, "vault");
        invalid.spec.partitions = 0;
        let v = vault(true, None);
        let (data, _) = build([&deleting, &invalid], |kind, _| {
            Some(view(kind, "vault", KmsBackend::Vault(&v)))
        });
        assert!(data.is_empty(), "{data:?}");
    }
}
