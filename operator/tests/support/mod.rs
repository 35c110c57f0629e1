//! Runs the real operator binary against the test bed's kube-apiserver, broker and KMS
//! servers, each test in its own namespace with its own key topic and Lease, and checks what
//! it did through the API, the key topic and the client crate.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the support code"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kafka_e2ee_client::config::{ClientConfig, EncryptionClient, ProviderConfig};
use kafka_e2ee_client::kafka::KafkaConnection;
use kafka_e2ee_client::key_directory::{KeyDirectory, TopicKeysSnapshot, Trust};
use kafka_e2ee_client::signing::{PublicKey, TrustedKeys};
use kafka_e2ee_crds::{
    EncryptedTopic, EncryptedTopicSpec, KeystoreBackend, KmsConnectionSpec, KmsRef, KmsRefKind,
    SecretKeyRef, VaultAuthSpec, VaultBackend,
};
use kafka_e2ee_operator::signing_keys::{
    TRUSTED_KEYS_CONFIGMAP, TRUSTED_KEYS_KEY, parse_trusted_keys,
};
use kafka_e2ee_tests::{Server, env as tb_env, require, unique};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Client, ResourceExt};
use tokio::process::{Child, Command};

pub use kafka_e2ee_tests::kube_env::{
    KEYSTORE_TEK, MANAGER, WAIT, consume, hadoop_tls_secret, produce, ready_reason,
    vault_ca_config_map,
};
use kafka_e2ee_tests::kube_env::{
    apply_kms_connection, apply_secret, create_namespace, free_port, http_text, kube_and_kafka,
    random_keystore_json, server_side_apply, topic_name, topic_spec,
};

/// One test's world: a namespace, a key topic, a lease name.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub key_topic: String,
    pub lease: String,
    pub bootstrap: String,
    dir: PathBuf,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running operator process; killed (SIGKILL) when dropped.
pub struct Operator {
    pub child: Child,
    pub http_port: u16,
}

impl Operator {
    /// Its /metrics text.
    pub async fn metrics(&self) -> String {
        http_text(&format!("http://127.0.0.1:{}/metrics", self.http_port)).await
    }

    /// The value of a metric line starting with `name` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until this replica leads and /readyz answers 200 (key topic read).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        // A standby is ready too; leading flips readiness off until Kafka is connected.
        loop {
            let url = format!("http://127.0.0.1:{}/metrics", self.http_port);
            if let Ok(r) = reqwest::get(&url).await
                && let Ok(text) = r.text().await
                && text.lines().any(|l| l == "kafka_e2ee_leader 1")
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "operator not leading"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "operator not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to end by itself (a crash point); returns whether it aborted.
    pub async fn wait_for_crash(&mut self, within: Duration) -> bool {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("operator did not reach its crash point in time")
            .unwrap();
        !status.success()
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

impl TestEnv {
    pub async fn new(prefix: &str) -> Self {
        let (client, bootstrap) = kube_and_kafka().await;
        let namespace = unique(prefix);
        create_namespace(&client, &namespace, &[]).await;
        let dir = std::env::temp_dir().join(unique("kafka-e2ee-operator-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            client,
            key_topic: format!("{namespace}-keys"),
            lease: format!("{namespace}-lease"),
            namespace,
            bootstrap,
            dir,
        }
    }

    pub fn connection(&self) -> KafkaConnection {
        KafkaConnection::new(&self.bootstrap)
    }

    /// Starts the operator binary (watching this namespace only), optionally set to crash.
    /// `KE_OPERATOR_BIN` runs another build instead (benchmarks compare releases with it).
    pub fn start_operator(&self, crash_at: Option<&str>, extra: &[&str]) -> Operator {
        let scope = [
            "--key-topic".to_owned(),
            self.key_topic.clone(),
            "--watch-namespace".to_owned(),
            self.namespace.clone(),
        ];
        self.spawn_operator(crash_at, &scope, extra)
    }

    /// Starts the operator for several namespaces: every EncryptedTopic labelled `selector`
    /// (in any namespace), with a key topic per namespace named by `key_topic_template`; this
    /// env's namespace is its own (signing keys, lease).
    pub fn start_operator_selecting(
        &self,
        selector: &str,
        key_topic_template: &str,
        extra: &[&str],
    ) -> Operator {
        let scope = [
            "--watch-selector".to_owned(),
            selector.to_owned(),
            "--key-topic-template".to_owned(),
            key_topic_template.to_owned(),
        ];
        self.spawn_operator(None, &scope, extra)
    }

    fn spawn_operator(&self, crash_at: Option<&str>, scope: &[String], extra: &[&str]) -> Operator {
        let http_port = free_port();
        let bin = std::env::var_os("KE_OPERATOR_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_kafka-e2ee-operator").into());
        let mut cmd = Command::new(bin);
        cmd.args([
            "run",
            "--bootstrap-servers",
            &self.bootstrap,
            "--namespace",
            &self.namespace,
            "--lease-name",
            &self.lease,
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
        ])
        .args(scope)
        .args(extra)
        // Tests roll over by count within seconds; the default checks once a minute.
        .args(if extra.contains(&"--count-check-interval") {
            &[][..]
        } else {
            &["--count-check-interval", "2s"][..]
        })
        .env("RUST_LOG", "info,rustify=off")
        // As the chart runs it (operator.mallocArenaMax), unless the caller chose otherwise.
        .env(
            "MALLOC_ARENA_MAX",
            std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into()),
        )
        .env_remove(kafka_e2ee_operator::crash::CRASH_AT_ENV)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        if let Some(point) = crash_at {
            cmd.env(kafka_e2ee_operator::crash::CRASH_AT_ENV, point);
        }
        Operator {
            child: cmd.spawn().unwrap(),
            http_port,
        }
    }

    pub fn topics(&self) -> Api<EncryptedTopic> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn apply(&self, name: &str, spec: EncryptedTopicSpec) {
        server_side_apply(&self.topics(), name, &EncryptedTopic::new(name, spec)).await;
    }

    pub async fn annotate(&self, name: &str, key: &str, value: Option<&str>) {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.topics()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    pub async fn delete(&self, name: &str) {
        self.topics()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    /// Waits until the object is gone from the API.
    pub async fn wait_deleted(&self, name: &str) {
        let uid = self.topics().get(name).await.ok().and_then(|o| o.uid());
        let Some(uid) = uid else { return };
        tokio::time::timeout(
            WAIT,
            await_condition(self.topics(), name, conditions::is_deleted(&uid)),
        )
        .await
        .expect("object not deleted in time")
        .unwrap();
    }

    /// Waits until `check` holds for the object; returns it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&EncryptedTopic) -> bool,
    ) -> EncryptedTopic {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(obj) = self.topics().get_opt(name).await.unwrap()
                && check(&obj)
            {
                return obj;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: not {what} within {WAIT:?}: {:?}",
                self.topics()
                    .get_opt(name)
                    .await
                    .unwrap()
                    .and_then(|o| o.status)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes the TEK's last rotation look two hours old (status is the only record of it), so
    /// that a 1 h `tekRotation` is due; waits until the TEK is at `version` and Ready again.
    pub async fn force_tek_rotation(&self, name: &str, tek: &str, version: &str) -> EncryptedTopic {
        let two_hours_ago =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
        let patch = serde_json::json!({"status": {"tek": {"reference": tek, "lastRotation": two_hours_ago.to_string()}}});
        self.topics()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        self.wait_for(name, "rotated", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.tek.as_ref())
                .and_then(|t| t.version.as_deref())
                == Some(version)
        })
        .await;
        self.wait_ready(name).await
    }

    /// Waits for Ready=True at the object's current generation.
    pub async fn wait_ready(&self, name: &str) -> EncryptedTopic {
        self.wait_for(name, "Ready", |o| {
            ready_reason(o).as_deref() == Some("Ready")
        })
        .await
    }

    /// The reasons of the events about object `name` (events.k8s.io), oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let mut events: Vec<_> = api
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
        events.into_iter().filter_map(|e| e.reason).collect()
    }

    /// Waits for the `Deleting` condition at `status` with `reason`.
    pub async fn wait_deleting(&self, name: &str, status: &str, reason: &str) -> EncryptedTopic {
        self.wait_for(name, &format!("Deleting={status} {reason}"), |o| {
            deleting(o).is_some_and(|(s, r)| s == status && r == reason)
        })
        .await
    }

    /// Waits for a Ready condition with `reason` at the current generation.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> EncryptedTopic {
        self.wait_for(name, reason, |o| ready_reason(o).as_deref() == Some(reason))
            .await
    }

    pub async fn secret(&self, name: &str, data: BTreeMap<&str, Vec<u8>>) {
        apply_secret(&self.client, &self.namespace, name, data).await;
    }

    pub async fn kms_connection(&self, name: &str, spec: KmsConnectionSpec) {
        apply_kms_connection(&self.client, &self.namespace, name, spec).await;
    }

    /// A keystore Secret and KmsConnection named `keystore`; returns the client's provider
    /// config (the same keystore as a file).
    pub async fn keystore(&self) -> ProviderConfig {
        let json = random_keystore_json();
        self.secret(
            "keystore",
            BTreeMap::from([("keystore.json", json.clone().into_bytes())]),
        )
        .await;
        self.kms_connection(
            "keystore",
            KmsConnectionSpec {
                keystore: Some(KeystoreBackend {
                    secret_ref: SecretKeyRef {
                        name: "keystore".into(),
                        key: "keystore.json".into(),
                    },
                }),
                ..no_backend()
            },
        )
        .await;
        let path = self.dir.join("keystore.json");
        std::fs::write(&path, json).unwrap();
        ProviderConfig::Keystore { path }
    }

    /// A Secret with the test bed's OpenBao token and a KmsConnection `vault` using it;
    /// returns the client's provider config (the same token as a file).
    pub async fn vault(&self) -> ProviderConfig {
        let address = require(Server::Vault);
        let token = tb_env(Server::Vault, "VAULT_TOKEN");
        let ca = vault_ca_config_map(&self.client, &self.namespace).await;
        self.secret(
            "vault-token",
            BTreeMap::from([("token", token.clone().into_bytes())]),
        )
        .await;
        self.kms_connection(
            "vault",
            KmsConnectionSpec {
                vault: Some(VaultBackend {
                    address: address.clone(),
                    mount: None,
                    namespace: None,
                    auth: VaultAuthSpec {
                        token_secret_ref: Some(SecretKeyRef {
                            name: "vault-token".into(),
                            key: "token".into(),
                        }),
                        kubernetes: None,
                    },
                    ca: Some(ca),
                    allow_insecure_http: false,
                }),
                ..no_backend()
            },
        )
        .await;
        ProviderConfig::Vault {
            address,
            mount: "transit".into(),
            namespace: None,
            token_file: Some(self.file("vault-token", &token)),
            kubernetes_auth: None,
            ca_file: Some(kafka_e2ee_tests::bed::vault_ca_file()),
        }
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The operator's public signing keys, as it publishes them in its namespace (this test's
    /// namespace); waits for the operator to have published them.
    pub async fn trusted_keys(&self) -> Vec<PublicKey> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(cm) = api.get_opt(TRUSTED_KEYS_CONFIGMAP).await.unwrap()
                && let Some(text) = cm.data.as_ref().and_then(|d| d.get(TRUSTED_KEYS_KEY))
            {
                return parse_trusted_keys(text).unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator published no trusted keys"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What a client of this env trusts: the operator's published keys.
    pub async fn trust(&self) -> Trust {
        Trust {
            keys: TrustedKeys::new(self.trusted_keys().await),
            ..Trust::default()
        }
    }

    /// An encrypting client of this env's key topic with `provider`.
    pub async fn client(&self, provider: ProviderConfig) -> EncryptionClient {
        self.client_allowing_plaintext(provider, &[]).await
    }

    /// [`Self::client`] whose configuration lets plaintext of `topics` pass (as the injected
    /// configuration does for EncryptedTopics with `plaintextPolicy: Allow`).
    pub async fn client_allowing_plaintext(
        &self,
        provider: ProviderConfig,
        topics: &[&str],
    ) -> EncryptionClient {
        let mut config = ClientConfig::new(&self.bootstrap, provider, self.trusted_keys().await);
        config.allow_plaintext = topics.iter().map(|t| (*t).to_owned()).collect();
        config.key_topic = self.key_topic.clone();
        config.key_wait_ms = Some(20_000);
        config
            .properties
            .insert("auto.offset.reset".into(), "earliest".into());
        EncryptionClient::with_config(config).await.unwrap()
    }

    /// A fresh reader of the key topic, caught up.
    pub async fn directory(&self) -> KeyDirectory {
        let dir = KeyDirectory::start(&self.connection(), &self.key_topic, self.trust().await)
            .await
            .unwrap();
        dir.wait_caught_up(WAIT).await.unwrap();
        dir
    }

    /// What the key topic holds for `topic` now: a fresh reader, read to the end.
    pub async fn keys(&self, topic: &str) -> TopicKeysSnapshot {
        self.directory().await.topic_keys(topic)
    }
}

impl TestEnv {
    /// A spec using the namespace's KmsConnection `conn`, for a Kafka topic named after the
    /// namespace and `name` (topics are broker-wide: unique per run).
    pub fn spec(&self, name: &str, partitions: i32, conn: &str) -> EncryptedTopicSpec {
        topic_spec(&self.namespace, name, partitions, conn)
    }

    pub fn topic_name(&self, name: &str) -> String {
        topic_name(&self.namespace, name)
    }
}

/// A connection spec with no backend set (set exactly one).
pub fn no_backend() -> KmsConnectionSpec {
    KmsConnectionSpec {
        vault: None,
        aws_kms: None,
        hadoop_kms: None,
        keystore: None,
    }
}

/// Asserts that the object's Ready message mentions `needle`.
pub fn assert_message_mentions(obj: &EncryptedTopic, needle: &str) {
    let message = ready_message(obj);
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

pub fn ready_message(obj: &EncryptedTopic) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The `Deleting` condition's status and reason.
pub fn deleting(obj: &EncryptedTopic) -> Option<(String, String)> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Deleting")
        .map(|c| (c.status.clone(), c.reason.clone()))
}
