//! Runs the real webhook binary (and, where injection needs its ConfigMap, the real operator
//! binary) against the test bed's kube-apiserver, which calls the webhook over TLS through
//! webhook configurations registered with `url:`; each test has its own namespaces,
//! configurations and label, so tests never see each other's webhooks.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the support code"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kafka_e2ee_client::config::{ClientConfig, EncryptionClient};
use kafka_e2ee_crds::injection::{
    CLIENT_CONFIGMAP, INDEX_KEY, MOUNT_PATH, NAMESPACE_LABEL, REQUIRE_INJECTION_LABEL,
};
use kafka_e2ee_crds::{
    EncryptedTopic, EncryptedTopicSpec, KeystoreBackend, KmsConnectionSpec, KmsRef, KmsRefKind,
    SecretKeyRef,
};
pub use kafka_e2ee_tests::kube_env::{
    KEYSTORE_TEK, MANAGER, WAIT, apply_kms_connection, apply_secret, consume, create_namespace,
    create_service_account, enable_vault_kubernetes_auth, free_port, http_text, kube_and_kafka,
    produce, random_keystore_json, ready_reason, server_side_apply, service_account_token,
    topic_name, topic_spec, vault_api, vault_ca_config_map, wait_http_ok,
};
use kafka_e2ee_tests::unique;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The label that ties a test's namespaces and objects to its webhook configurations.
pub const TEST_LABEL: &str = "kafka-e2ee-test";

/// One test's world: an opted-in namespace, the webhook's own namespace, a key topic, and
/// webhook configurations named after the test (deleted on drop).
pub struct World {
    pub client: Client,
    pub id: String,
    /// Labelled for injection and with the test label.
    pub namespace: String,
    /// The webhook's (and operator's) own namespace.
    pub system_namespace: String,
    pub key_topic: String,
    pub bootstrap: String,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        // Synchronous on purpose: a test that fails must still not leave webhooks behind.
        let _ = std::process::Command::new("kubectl")
            .args([
                "delete",
                "--ignore-not-found",
                &format!("mutatingwebhookconfiguration/{}", self.id),
                &format!("validatingwebhookconfiguration/{}", self.id),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running webhook process; killed when dropped.
pub struct Webhook {
    pub child: Child,
    pub port: u16,
    pub http_port: u16,
}

impl Webhook {
    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        wait_http_ok(&url, "webhook").await;
    }

    pub async fn metrics(&self) -> String {
        http_text(&format!("http://127.0.0.1:{}/metrics", self.http_port)).await
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// A running operator process; killed when dropped.
pub struct Operator {
    pub child: Child,
}

pub use kafka_e2ee_tests::sibling_binary;

impl World {
    pub async fn new(prefix: &str) -> Self {
        let (client, bootstrap) = kube_and_kafka().await;
        let id = unique(prefix);
        let namespace = id.clone();
        create_namespace(
            &client,
            &namespace,
            &[(NAMESPACE_LABEL, "enabled"), (TEST_LABEL, &id)],
        )
        .await;
        let system_namespace = format!("{id}-sys");
        create_namespace(&client, &system_namespace, &[]).await;
        let dir = std::env::temp_dir().join(unique("kafka-e2ee-webhook-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            client,
            key_topic: format!("{id}-keys"),
            id,
            namespace,
            system_namespace,
            bootstrap,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the webhook binary: self-managed TLS for 127.0.0.1, writing its CA into this
    /// test's webhook configurations.
    pub fn start_webhook(&self, extra: &[&str]) -> Webhook {
        let (port, http_port) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-e2ee-webhook"));
        cmd.args([
            "--namespace",
            &self.system_namespace,
            "--listen-addr",
            &format!("127.0.0.1:{port}"),
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
            "--mutating-webhook-configuration",
            &self.id,
            "--validating-webhook-configuration",
            &self.id,
            "--cert-check-interval",
            "1s",
        ])
        .args(if extra.iter().any(|a| a.starts_with("--tls-cert-file")) {
            &[][..]
        } else {
            &["--self-managed-tls", "--tls-name", "127.0.0.1"][..]
        })
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
        Webhook {
            child: cmd.spawn().unwrap(),
            port,
            http_port,
        }
    }

    /// Starts the operator binary for this test's namespace, publishing client ConfigMaps
    /// every second.
    pub fn start_operator(&self, extra: &[&str]) -> Operator {
        let mut cmd = Command::new(sibling_binary("kafka-e2ee-operator"));
        cmd.args([
            "run",
            "--bootstrap-servers",
            &self.bootstrap,
            "--key-topic",
            &self.key_topic,
            "--namespace",
            &self.system_namespace,
            "--watch-namespace",
            &self.namespace,
            "--leader-election",
            "false",
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--client-config-resync",
            "1s",
        ])
        .args(extra)
        .env("RUST_LOG", "warn,rustify=off,vaultrs=off")
        .stdin(Stdio::null())
        .kill_on_drop(true);
        Operator {
            child: cmd.spawn().unwrap(),
        }
    }

    /// Registers this test's mutating webhook (called twice per pod: two entries, the
    /// second seeing the first's output, as a reinvocation would) and validating webhook,
    /// both at `port`, without a caBundle (the webhook writes it). Waits until it is there.
    pub async fn register(&self, port: u16, failure_policy: &str) {
        self.register_with_ca(port, failure_policy, None).await;
    }

    /// [`Self::register`], with the caBundle given (certificates from files) instead of
    /// written by the webhook.
    pub async fn register_with_ca(&self, port: u16, failure_policy: &str, ca: Option<&str>) {
        use base64::Engine as _;
        let client_config = |path: &str| {
            let mut cc = json!({"url": format!("https://127.0.0.1:{port}{path}")});
            if let Some(ca) = ca {
                cc["caBundle"] = base64::engine::general_purpose::STANDARD.encode(ca).into();
            }
            cc
        };
        let selector = json!({"matchLabels": {NAMESPACE_LABEL: "enabled", TEST_LABEL: self.id}});
        // The chart's shape: pods labelled to require injection get `failure_policy`, every
        // other pod `Ignore` (the webhook being down blocks only pods that say so). A second
        // pair exercises reinvocation.
        let mutating_entry = |name: &str, required: bool| {
            let operator = if required { "In" } else { "NotIn" };
            json!({
                "name": format!("{}{name}", if required { "required-" } else { "" }),
                "clientConfig": client_config("/mutate"),
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": selector,
                "objectSelector": {"matchExpressions": [
                    {"key": REQUIRE_INJECTION_LABEL, "operator": operator, "values": ["true"]},
                ]},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1", "v1beta1"],
                "reinvocationPolicy": "IfNeeded",
                "failurePolicy": if required { failure_policy } else { "Ignore" },
                "timeoutSeconds": 5,
            })
        };
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": self.id},
            "webhooks": [
                mutating_entry("inject.kafka-e2ee.io", true),
                mutating_entry("inject.kafka-e2ee.io", false),
                mutating_entry("inject-again.kafka-e2ee.io", true),
                mutating_entry("inject-again.kafka-e2ee.io", false),
            ],
        }))
        .unwrap();
        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.id},
            "webhooks": [{
                "name": "validate.kafka-e2ee.io",
                "clientConfig": client_config("/validate"),
                "rules": [{
                    "operations": ["CREATE", "UPDATE"], "apiGroups": ["kafka-e2ee.io"], "apiVersions": ["v1alpha1"],
                    "resources": ["encryptedtopics", "kmsconnections", "clusterkmsconnections"],
                }],
                "objectSelector": {"matchLabels": {TEST_LABEL: self.id}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }],
        }))
        .unwrap();
        let pp = PatchParams::apply(MANAGER).force();
        let mapi = Api::<MutatingWebhookConfiguration>::all(self.client.clone());
        let vapi = Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
        mapi.patch(&self.id, &pp, &Patch::Apply(&mutating))
            .await
            .unwrap();
        vapi.patch(&self.id, &pp, &Patch::Apply(&validating))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = mapi.get(&self.id).await.unwrap();
            let v = vapi.get(&self.id).await.unwrap();
            let has = |cc: &k8s_openapi::api::admissionregistration::v1::WebhookClientConfig| {
                cc.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty())
            };
            if m.webhooks.iter().flatten().all(|w| has(&w.client_config))
                && v.webhooks.iter().flatten().all(|w| has(&w.client_config))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the webhook did not write its caBundle"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A keystore Secret and KmsConnection `keystore` in the test namespace.
    pub async fn keystore(&self) {
        apply_secret(
            &self.client,
            &self.namespace,
            "keystore",
            BTreeMap::from([("keystore.json", random_keystore_json().into_bytes())]),
        )
        .await;
        apply_kms_connection(
            &self.client,
            &self.namespace,
            "keystore",
            KmsConnectionSpec {
                vault: None,
                aws_kms: None,
                hadoop_kms: None,
                keystore: Some(KeystoreBackend {
                    secret_ref: SecretKeyRef {
                        name: "keystore".into(),
                        key: "keystore.json".into(),
                    },
                }),
            },
        )
        .await;
    }

    /// A spec for Kafka topic `<namespace>-<name>` with KmsConnection `conn`.
    pub fn spec(&self, name: &str, partitions: i32, conn: &str) -> EncryptedTopicSpec {
        topic_spec(&self.namespace, name, partitions, conn)
    }

    pub fn topic_name(&self, name: &str) -> String {
        topic_name(&self.namespace, name)
    }

    /// Applies an EncryptedTopic carrying the test label (so this test's validating webhook
    /// sees it).
    pub async fn apply_topic(&self, name: &str, spec: EncryptedTopicSpec) {
        let mut obj = EncryptedTopic::new(name, spec);
        obj.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), self.id.clone())]));
        let api = Api::<EncryptedTopic>::namespaced(self.client.clone(), &self.namespace);
        server_side_apply(&api, name, &obj).await;
    }

    pub async fn wait_topic_ready(&self, name: &str) {
        let api = Api::<EncryptedTopic>::namespaced(self.client.clone(), &self.namespace);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let obj = api.get(name).await.unwrap();
            if ready_reason(&obj).as_deref() == Some("Ready") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not Ready: {:?}",
                obj.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the operator's client ConfigMap lists `topic`.
    pub async fn wait_published(&self, topic: &str) -> ConfigMap {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(cm) = api.get_opt(CLIENT_CONFIGMAP).await.unwrap()
                && cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(INDEX_KEY))
                    .is_some_and(|index| index.contains(topic))
            {
                return cm;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not publish {topic} in {CLIENT_CONFIGMAP}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the apiserver calls the mutating webhook (it picks up configuration
    /// changes asynchronously): a dry-run pod naming `topic` comes back injected.
    pub async fn wait_injecting(&self, topic: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let pod: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "probe", "annotations": {"kafka-e2ee.io/topics": topic}},
                // A real cluster's ServiceAccount admission plugin sets this; the test bed's
                // apiserver runs without it.
                "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            }))
            .unwrap();
            let dry_run = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let created = self.pods(&self.namespace).create(&dry_run, &pod).await;
            if let Ok(pod) = &created
                && pod
                    .annotations()
                    .contains_key(kafka_e2ee_crds::injection::INJECTED_ANNOTATION)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the apiserver does not call the mutating webhook: {:?}",
                created.map(|p| p.metadata.annotations)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the apiserver calls the validating webhook: a dry-run EncryptedTopic that
    /// only the webhook refuses (Delete without confirmation) is refused.
    pub async fn wait_validating(&self) {
        let api = Api::<EncryptedTopic>::namespaced(self.client.clone(), &self.namespace);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut spec = self.spec("probe", 1, "keystore");
            spec.deletion_policy = kafka_e2ee_crds::DeletionPolicy::Delete;
            let mut obj = EncryptedTopic::new("probe", spec);
            obj.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_owned(), self.id.clone())]));
            let dry_run = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            match api.create(&dry_run, &obj).await {
                Err(e) if e.to_string().contains("confirmDeletion") => return,
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the apiserver does not call the validating webhook"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates a pod `name` in `namespace` with `annotations` and two containers.
    pub async fn create_pod(
        &self,
        namespace: &str,
        name: &str,
        annotations: Value,
    ) -> Result<Pod, kube::Error> {
        self.create_labelled_pod(namespace, name, json!({}), annotations)
            .await
    }

    /// [`Self::create_pod`] with labels.
    pub async fn create_labelled_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: Value,
        annotations: Value,
    ) -> Result<Pod, kube::Error> {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"containers": [
                {"name": "app", "image": "example.invalid/app:1"},
                {"name": "sidecar", "image": "example.invalid/proxy:1", "env": [{"name": "A", "value": "1"}]},
            ]},
        }))
        .unwrap();
        self.pods(namespace)
            .create(&PostParams::default(), &pod)
            .await
    }
}

/// Runs kubectl with the test bed's kubeconfig; returns (success, stdout + stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What a kubelet would do with the injected volume, minus the kubelet: fills a folder with
/// the projected sources of `pod`'s `kafka-e2ee` volume (ConfigMap and Secret keys read from
/// the API, service-account tokens requested with their audience), and returns the path the
/// container's `KAFKA_E2EE_CONFIG` names, mapped into that folder.
pub async fn materialize(client: &Client, pod: &Pod, root: &Path) -> PathBuf {
    let namespace = pod.namespace().unwrap();
    let spec = pod.spec.as_ref().unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kafka-e2ee")
        .expect("no injected volume");
    std::fs::create_dir_all(root).unwrap();
    let sources = volume
        .projected
        .as_ref()
        .unwrap()
        .sources
        .clone()
        .unwrap_or_default();
    for source in sources {
        if let Some(cm) = source.config_map {
            let cm = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                .get(&cm.name)
                .await
                .map(|found| (found, cm.items.unwrap_or_default()))
                .unwrap();
            for item in cm.1 {
                let data = cm.0.data.as_ref().unwrap()[&item.key].clone();
                std::fs::write(root.join(&item.path), data).unwrap();
            }
        }
        if let Some(secret) = source.secret {
            let found = Api::<Secret>::namespaced(client.clone(), &namespace)
                .get(&secret.name)
                .await
                .unwrap();
            for item in secret.items.unwrap_or_default() {
                let data = found.data.as_ref().unwrap()[&item.key].0.clone();
                std::fs::write(root.join(&item.path), data).unwrap();
            }
        }
        if let Some(token) = source.service_account_token {
            let account = spec.service_account_name.as_deref().unwrap_or("default");
            let jwt = service_account_token(
                client,
                &namespace,
                account,
                token.audience.as_deref(),
                token.expiration_seconds,
            )
            .await;
            std::fs::write(root.join(&token.path), jwt).unwrap();
        }
    }
    // The container that reads the volume: the application's (client mode) or the proxy's.
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "kafka-e2ee")
        })
        .expect("no container mounts the injected volume");
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "kafka-e2ee")
        .expect("no injected mount");
    let config = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "KAFKA_E2EE_CONFIG")
        .and_then(|e| e.value.clone())
        .expect("no KAFKA_E2EE_CONFIG");
    let relative = Path::new(&config).strip_prefix(&mount.mount_path).unwrap();
    assert_eq!(mount.mount_path, MOUNT_PATH);
    root.join(relative)
}

/// An encrypting client from an injected configuration file (what the workload would run).
pub async fn client_from_injected(path: &Path) -> EncryptionClient {
    // The same resolution `EncryptionClient::start` does with KAFKA_E2EE_CONFIG set.
    let (mut config, _) =
        kafka_e2ee_client::config::resolve_from(Some(path.as_os_str().to_owned()), None).unwrap();
    // The application's own consumer choice, not injection's.
    config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    EncryptionClient::with_config(config).await.unwrap()
}

/// The self-managed CA (PEM) the webhook keeps in `secret` of `namespace`.
pub async fn self_managed_ca(client: &Client, namespace: &str, secret: &str) -> String {
    let found = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(secret)
        .await
        .unwrap();
    String::from_utf8(found.data.unwrap()["ca.crt"].0.clone()).unwrap()
}

/// A TLS connection to the webhook at `port`, trusting only `ca_pem`.
pub async fn tls_connect(
    port: u16,
    ca_pem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let name =
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// The leaf certificate (DER) the webhook at `port` serves now.
pub async fn served_leaf(port: u16, ca_pem: &str) -> Vec<u8> {
    let stream = tls_connect(port, ca_pem).await;
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One HTTPS POST to the webhook; returns the status code and body.
pub async fn https_post(port: u16, ca_pem: &str, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tls_connect(port, ca_pem).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    // The server closes after answering (Connection: close); a TLS close_notify may be
    // missing, which rustls reports as an error after the data: keep what arrived.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Now, in Unix seconds (what certificate issuing takes).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server TLS configuration for 127.0.0.1 with a certificate from a fresh CA (as the webhook
/// issues them), and that CA's PEM: for in-process servers.
pub fn local_tls() -> (std::sync::Arc<rustls::ServerConfig>, String) {
    use kafka_e2ee_webhook::tls::{CertResolver, certified_key, server_config};
    let bundle = kafka_e2ee_webhook::certs::issue(
        &["127.0.0.1".to_owned()],
        Duration::from_secs(3600),
        None,
        unix_now(),
    )
    .unwrap();
    let resolver = std::sync::Arc::new(CertResolver::default());
    resolver.set(certified_key(bundle.cert.as_bytes(), bundle.key.as_bytes()).unwrap());
    (server_config(resolver).unwrap(), bundle.ca_cert)
}

/// An HTTP/1.1 keep-alive connection to the webhook at `port` over TLS, trusting `ca_pem`.
pub async fn http1_client(
    port: u16,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>> {
    let tls = tls_connect(port, ca_pem).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}
