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
use k8s_openapi::api::core::v1::ConfigMap;
use kafka_e2ee_client::config::{ClientConfig, ProviderConfig, VaultKubernetesAuth};
use kafka_e2ee_client::signing::PublicKey;
use kafka_e2ee_crds::injection::{
    self, CLIENT_CONFIGMAP, CLIENT_CONFIGMAP_LABEL, ClientIndex, INDEX_FORMAT, INDEX_KEY,
    IndexedTopic, Profile, ProjectedSource,
};
use kafka_e2ee_crds::validation::{validate_backend, validate_encrypted_topic};
use kafka_e2ee_crds::{
    ClusterKmsConnection, EncryptedTopic, KmsBackend, KmsConnection, KmsRefKind, PlaintextPolicy,
};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::Notify;

use crate::reconcile::MANAGER;

/// What every client configuration gets besides its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub bootstrap_servers: String,
    /// Non-secret librdkafka properties for clients (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
    pub key_topic: String,
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
}

/// What a profile's file trusts: the operator's keys, and its topics that allow plaintext.
struct ProfileTrust<'a> {
    keys: &'a [PublicKey],
    allow_plaintext: BTreeSet<String>,
}

/// A profile and, when pods can use it, its client configuration file.
fn profile(
    conn: ConnectionView<'_>,
    settings: &ClientSettings,
    trust: ProfileTrust<'_>,
) -> (Profile, Option<String>) {
    let kind = match conn.kind {
        KmsRefKind::KmsConnection => "KmsConnection",
        KmsRefKind::ClusterKmsConnection => "ClusterKmsConnection",
    };
    let kms_ref = format!("{kind}/{}", conn.name);
    let mut sources = Vec::new();
    let provider = match conn.backend {
        KmsBackend::Vault(v) => match &v.auth.kubernetes {
            Some(k8s) => {
                sources.push(ProjectedSource::ServiceAccountToken {
                    audience: Some(k8s.audience_or_default().to_owned()),
                    path: injection::VAULT_TOKEN_FILE.into(),
                });
                Ok(ProviderConfig::Vault {
                    address: v.address.clone(),
                    mount: v.mount_or_default().to_owned(),
                    namespace: v.namespace.clone(),
                    token_file: None,
                    kubernetes_auth: Some(VaultKubernetesAuth {
                        role: k8s.client_role_or_default().to_owned(),
                        mount: k8s.mount_or_default().to_owned(),
                        token_file: injection::VAULT_TOKEN_FILE.into(),
                    }),
                })
            }
            None => Err(format!(
                "{kms_ref} uses Vault token auth: that token is the operator's credential and \
                 is not handed to pods; use vault.auth.kubernetes (with clientRole) for injected clients"
            )),
        },
        KmsBackend::AwsKms(a) => Ok(ProviderConfig::AwsKms {
            region: a.region.clone(),
            endpoint: a.endpoint.clone(),
        }),
        KmsBackend::HadoopKms(h) => {
            let ca_file = h.tls_secret_ref.as_ref().map(|secret| {
                sources.push(ProjectedSource::Secret {
                    namespace: conn.secret_namespace.to_owned(),
                    name: secret.name.clone(),
                    items: BTreeMap::from([(
                        injection::CA_FILE.to_owned(),
                        injection::CA_FILE.to_owned(),
                    )]),
                });
                injection::CA_FILE.into()
            });
            Ok(ProviderConfig::HadoopKms {
                url: h.url.clone(),
                user: h.user.clone(),
                ca_file,
                client_cert_file: None,
                client_key_file: None,
            })
        }
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
    let (file, unavailable) = match provider {
        Ok(provider) => {
            let mut config = ClientConfig::new(
                settings.bootstrap_servers.clone(),
                provider,
                trust.keys.to_vec(),
            );
            config.allow_plaintext = trust.allow_plaintext;
            config.properties = settings.properties.clone();
            config.key_topic = settings.key_topic.clone();
            match serde_yaml::to_string(&config) {
                Ok(yaml) => (Some(yaml), None),
                Err(e) => (None, Some(format!("cannot render its configuration: {e}"))),
            }
        }
        Err(reason) => (None, Some(reason)),
    };
    let profile = Profile {
        kms_ref,
        provider: conn.backend.kind().to_owned(),
        sources,
        unavailable,
    };
    (profile, file)
}

/// The ConfigMap data for one namespace: the index and one file per usable profile. Topics
/// that are being deleted, do not validate, or whose connection is missing or invalid are
/// left out (the webhook then names them as unknown). `trusted` are the operator's public
/// signing keys.
pub fn namespace_data<'a>(
    topics: impl IntoIterator<Item = &'a EncryptedTopic>,
    connection: impl Fn(KmsRefKind, &str) -> Option<ConnectionView<'a>>,
    settings: &ClientSettings,
    trusted: &[PublicKey],
) -> BTreeMap<String, String> {
    let mut index = ClientIndex {
        format: INDEX_FORMAT,
        ..ClientIndex::default()
    };
    // Profile name -> its connection and the topics of it that allow plaintext.
    let mut profiles: BTreeMap<String, (ConnectionView<'a>, BTreeSet<String>)> = BTreeMap::new();
    for topic in topics {
        if topic.metadata.deletion_timestamp.is_some() {
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
        let (_, allow) = profiles
            .entry(name.clone())
            .or_insert_with(|| (conn, BTreeSet::new()));
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
    for (name, (conn, allow_plaintext)) in profiles {
        let trust = ProfileTrust {
            keys: trusted,
            allow_plaintext,
        };
        let (profile, file) = profile(conn, settings, trust);
        if let Some(file) = file {
            files.insert(name.clone(), file);
        }
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
            loop {
                self.publish_all(&connections, &cluster_connections, &mut published)
                    .await;
                tokio::select! {
                    // A signing-key rotation changed what every file trusts.
                    Ok(()) = trusted.changed() => {}
                    () = self.changed.notified() => {
                        // Let a burst of reconciles settle into one pass.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ = resync.tick() => {
                        // A resync compares with the apiserver again, not our memory.
                        published.clear();
                    }
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
        // that the passes after every reconcile cost no list call.
        let mut namespaces: BTreeSet<String> = by_namespace.keys().cloned().collect();
        namespaces.extend(published.keys().cloned());
        if published.is_empty() {
            match self.existing_configmaps().await {
                Ok(existing) => namespaces.extend(existing),
                Err(e) => tracing::warn!(error = %e, "cannot list client ConfigMaps"),
            }
        }
        let namespaced = connections.state();
        let cluster = cluster_connections.state();
        let trusted = Arc::clone(&self.trusted.borrow());
        for namespace in namespaces {
            let lookup = |kind: KmsRefKind, name: &str| -> Option<ConnectionView<'_>> {
                let (name, backend, secret_namespace) = match kind {
                    KmsRefKind::KmsConnection => {
                        let c = namespaced.iter().find(|c| {
                            c.name_any() == name && c.namespace().as_deref() == Some(&namespace)
                        })?;
                        (
                            c.metadata.name.as_deref()?,
                            c.spec.backend(),
                            namespace.as_str(),
                        )
                    }
                    KmsRefKind::ClusterKmsConnection => {
                        let c = cluster.iter().find(|c| c.name_any() == name)?;
                        (
                            c.metadata.name.as_deref()?,
                            c.spec.backend(),
                            self.settings.cluster_namespace.as_str(),
                        )
                    }
                };
                Some(ConnectionView {
                    kind,
                    name,
                    backend: validate_backend(backend).ok()?,
                    secret_namespace,
                })
            };
            let topics = by_namespace
                .get(&namespace)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let data = namespace_data(topics.iter().copied(), lookup, &self.settings, &trusted);
            if published.get(&namespace) == Some(&data) {
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
    use kafka_e2ee_crds::{
        EncryptedTopicSpec, HadoopKmsBackend, KeystoreBackend, KmsRef, SecretKeyRef, SecretRef,
        VaultAuthSpec, VaultBackend, VaultKubernetesAuthSpec,
    };

    use super::*;

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
            key_topic: "__encryption_keys".into(),
            cluster_namespace: "kafka-e2ee".into(),
        }
    }

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
        t
    }

    fn vault(kubernetes: bool) -> VaultBackend {
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
                    client_role: Some("orders-clients".into()),
                    mount: None,
                    audience: None,
                }),
            },
        }
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
        let vault_k8s = vault(true);
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
        let data = namespace_data(
            &topics,
            |kind, name| match (kind, name) {
                (KmsRefKind::KmsConnection, "vault") => Some(ConnectionView {
                    kind,
                    name: "vault",
                    backend: KmsBackend::Vault(&vault_k8s),
                    secret_namespace: "shop",
                }),
                (KmsRefKind::ClusterKmsConnection, "shared") => Some(ConnectionView {
                    kind,
                    name: "shared",
                    backend: KmsBackend::Keystore(&keystore),
                    secret_namespace: "kafka-e2ee",
                }),
                _ => None,
            },
            &settings(),
            &trusted(),
        );
        let index: ClientIndex = serde_yaml::from_str(&data[INDEX_KEY]).unwrap();
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
            [ProjectedSource::ServiceAccountToken {
                audience: Some("vault".into()),
                path: "vault-token".into()
            }]
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
        let ProviderConfig::Vault {
            kubernetes_auth: Some(auth),
            mount,
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
        assert_eq!(
            index.profiles["clusterkmsconnection.shared.yaml"].sources,
            [ProjectedSource::Secret {
                namespace: "kafka-e2ee".into(),
                name: "shared-keys".into(),
                items: BTreeMap::from([("keystore.json".into(), "keystore.json".into())]),
            }]
        );
        assert_eq!(data.len(), 3, "index + two profile files: {data:?}");
    }

    #[test]
    fn operator_credentials_are_never_published() {
        let token_auth = vault(false);
        let hadoop = HadoopKmsBackend {
            url: "https://hkms:9600/kms".into(),
            user: "kafka".into(),
            tls_secret_ref: Some(SecretRef {
                name: "hkms-tls".into(),
            }),
        };
        let topics = [
            topic("orders", KmsRefKind::KmsConnection, "vault"),
            topic("audit", KmsRefKind::KmsConnection, "hadoop"),
        ];
        let data = namespace_data(
            &topics,
            |kind, name| {
                let backend = match name {
                    "vault" => KmsBackend::Vault(&token_auth),
                    _ => KmsBackend::HadoopKms(&hadoop),
                };
                Some(ConnectionView {
                    kind,
                    name: if name == "vault" { "vault" } else { "hadoop" },
                    backend,
                    secret_namespace: "shop",
                })
            },
            &settings(),
            &trusted(),
        );
        let index: ClientIndex = serde_yaml::from_str(&data[INDEX_KEY]).unwrap();
        let vault = &index.profiles["kmsconnection.vault.yaml"];
        assert!(
            vault.unavailable.as_deref().unwrap().contains("token auth"),
            "{vault:?}"
        );
        assert!(vault.sources.is_empty());
        assert!(!data.contains_key("kmsconnection.vault.yaml"));
        // Hadoop: the CA to trust the KMS, not the operator's client certificate.
        assert_eq!(
            index.profiles["kmsconnection.hadoop.yaml"].sources,
            [ProjectedSource::Secret {
                namespace: "shop".into(),
                name: "hkms-tls".into(),
                items: BTreeMap::from([("ca.crt".into(), "ca.crt".into())]),
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

    #[test]
    fn plaintext_is_pinned_per_profile_from_the_spec() {
        let v = vault(true);
        let mut migrating = topic("legacy", KmsRefKind::KmsConnection, "vault");
        migrating.spec.plaintext_policy = PlaintextPolicy::Allow;
        let strict = topic("orders", KmsRefKind::KmsConnection, "vault");
        let mut elsewhere = topic("audit", KmsRefKind::KmsConnection, "other");
        elsewhere.spec.plaintext_policy = PlaintextPolicy::Allow;
        let data = namespace_data(
            [&migrating, &strict, &elsewhere],
            |kind, name| {
                Some(ConnectionView {
                    kind,
                    name: if name == "vault" { "vault" } else { "other" },
                    backend: KmsBackend::Vault(&v),
                    secret_namespace: "shop",
                })
            },
            &settings(),
            &trusted(),
        );
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
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut invalid = topic("payments", KmsRefKind::KmsConnection, "vault");
        invalid.spec.partitions = 0;
        let v = vault(true);
        let data = namespace_data(
            [&deleting, &invalid],
            |kind, _| {
                Some(ConnectionView {
                    kind,
                    name: "vault",
                    backend: KmsBackend::Vault(&v),
                    secret_namespace: "shop",
                })
            },
            &settings(),
            &trusted(),
        );
        assert!(data.is_empty(), "{data:?}");
    }
}
