//! Kubernetes-side helpers shared by the operator's and the webhook's integration tests:
//! CRDs, namespaces, Secrets and KMS connections on the test bed's apiserver, processes'
//! ports and readiness, and a plaintext round trip through the client crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failed step must fail the test, loudly"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kafka_e2ee_client::config::EncryptionClient;
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_crds::{
    EncryptedTopic, EncryptedTopicSpec, KmsConnection, KmsConnectionSpec, KmsRef, KmsRefKind,
};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{conditions, wait::await_condition};
use rand::RngCore;

use crate::{Server, env, require, unique};

/// Field manager of objects the tests write.
pub const MANAGER: &str = "kafka-e2ee-tests";
/// How long tests wait for anything eventual.
pub const WAIT: Duration = Duration::from_secs(60);
/// The alias every test keystore defines.
pub const KEYSTORE_TEK: &str = "test-tek";

/// Installs (server-side applies) the CRDs and waits until they are established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kafka_e2ee_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD not established")
        .unwrap();
    }
}

/// A client of the test bed's kube-apiserver with our CRDs installed, and the broker's bootstrap
/// servers; fails, naming the command that starts it, when either server is not up.
pub async fn kube_and_kafka() -> (Client, String) {
    require(Server::KubeApiserver);
    let bootstrap = require(Server::Kafka);
    let client = Client::try_default().await.unwrap();
    install_crds(&client).await;
    (client, bootstrap)
}

/// Server-side applies `obj` as `name` with the tests' field manager, forcing conflicts.
pub async fn server_side_apply<K>(api: &Api<K>, name: &str, obj: &K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap();
}

/// The body of a GET of `url` (a process's /metrics).
pub async fn http_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Creates a namespace with `labels`.
pub async fn create_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Applies a Secret with `data`.
pub async fn apply_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    data: BTreeMap<&str, Vec<u8>>,
) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v)))
                .collect(),
        ),
        ..Default::default()
    };
    server_side_apply(
        &Api::<Secret>::namespaced(client.clone(), namespace),
        name,
        &secret,
    )
    .await;
}

/// Applies a ConfigMap.
pub async fn apply_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    data: BTreeMap<&str, String>,
) {
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ..Default::default()
    };
    server_side_apply(
        &Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), namespace),
        name,
        &cm,
    )
    .await;
}

/// The test bed's Vault CA as a ConfigMap `vault-ca` (key `ca.crt`) in `namespace`, and the
/// reference a connection there names it by.
pub async fn vault_ca_config_map(client: &Client, namespace: &str) -> kafka_e2ee_crds::CaBundleRef {
    apply_config_map(
        client,
        namespace,
        "vault-ca",
        BTreeMap::from([("ca.crt", crate::bed::vault_ca_pem())]),
    )
    .await;
    kafka_e2ee_crds::CaBundleRef {
        secret_ref: None,
        config_map_ref: Some(kafka_e2ee_crds::ConfigMapKeyRef {
            name: "vault-ca".into(),
            key: "ca.crt".into(),
        }),
    }
}

/// A Secret `hadoop-tls` in `namespace` with the test bed's Hadoop KMS CA and client
/// certificate (the shape cert-manager writes).
pub async fn hadoop_tls_secret(client: &Client, namespace: &str) -> kafka_e2ee_crds::SecretRef {
    let files = crate::bed::hadoop_tls_files();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    apply_secret(
        client,
        namespace,
        "hadoop-tls",
        BTreeMap::from([
            ("ca.crt", read(&files.ca)),
            ("tls.crt", read(&files.cert)),
            ("tls.key", read(&files.key)),
        ]),
    )
    .await;
    kafka_e2ee_crds::SecretRef {
        name: "hadoop-tls".into(),
    }
}

/// Applies a KmsConnection.
pub async fn apply_kms_connection(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: KmsConnectionSpec,
) {
    let obj = KmsConnection::new(name, spec);
    server_side_apply(
        &Api::<KmsConnection>::namespaced(client.clone(), namespace),
        name,
        &obj,
    )
    .await;
}

/// A keystore file (docs/keystore.md) with one random TEK aliased [`KEYSTORE_TEK`].
pub fn random_keystore_json() -> String {
    let mut material = [0u8; 32];
    rand::rng().fill_bytes(&mut material);
    format!(
        r#"{{"format": 1, "keys": [{{"id": "k1", "material": "{}"}}], "aliases": {{"{KEYSTORE_TEK}": "k1"}}}}"#,
        STANDARD.encode(material)
    )
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ports for an encrypting proxy: its bootstrap port `p`, and `p + 1 + node id` for the
/// brokers (the test bed's broker is node 111). A block of 400 ports, all free right now, below
/// the kernel's ephemeral range (32768 and up), where outgoing connections could take one
/// between this check and the proxy binding it.
pub fn proxy_ports() -> u16 {
    const BLOCK: u16 = 400;
    for _ in 0..50 {
        let start = 20_000 + (rand::random::<u16>() % 30) * BLOCK;
        let free =
            (start..start + BLOCK).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return start;
        }
    }
    panic!("no block of {BLOCK} free ports between 20000 and 32000");
}

/// Waits until `url` answers 2xx.
pub async fn wait_http_ok(url: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not ready at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces `n` records with values `"{tag}-{i}"`: keyed so they spread over partitions, or
/// all to `partition`.
pub async fn produce(
    client: &EncryptionClient,
    topic: &str,
    tag: &str,
    n: usize,
    partition: Option<i32>,
) -> Vec<String> {
    let producer = client.producer().unwrap();
    let mut values = Vec::new();
    for i in 0..n {
        let value = format!("{tag}-{i}");
        let key = format!("key-{i}");
        producer
            .send_and_wait(OutgoingRecord {
                key: Some(key.as_bytes()),
                partition,
                ..OutgoingRecord::new(topic, value.as_bytes())
            })
            .await
            .unwrap();
        values.push(value);
    }
    values
}

/// Consumes until `expected` values were read (any order, returned sorted); fails on any
/// error and on any record that was not encrypted.
pub async fn consume(client: &EncryptionClient, topic: &str, expected: usize) -> Vec<String> {
    let consumer = client.consumer(&unique("reader")).unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let record = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("records did not arrive")
            .unwrap();
        assert!(record.was_encrypted);
        out.push(String::from_utf8(record.value.unwrap()).unwrap());
    }
    out.sort();
    out
}

/// An EncryptedTopic's Ready condition reason, if it describes the current generation.
pub fn ready_reason(obj: &EncryptedTopic) -> Option<String> {
    let status = obj.status.as_ref()?;
    if status.observed_generation != obj.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

/// The Kafka topic a test's EncryptedTopic `name` in `namespace` manages: topics are
/// broker-wide, so named after the (unique) namespace.
pub fn topic_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

/// A spec for [`topic_name`] using the namespace's KmsConnection `conn`.
pub fn topic_spec(namespace: &str, name: &str, partitions: i32, conn: &str) -> EncryptedTopicSpec {
    let mut spec = EncryptedTopicSpec::new(
        partitions,
        KmsRef {
            kind: KmsRefKind::KmsConnection,
            name: conn.into(),
        },
    );
    spec.topic_name = Some(topic_name(namespace, name));
    spec
}

/// Creates ServiceAccount `name` in `namespace` (no controller-manager makes them here).
pub async fn create_service_account(client: &Client, namespace: &str, name: &str) {
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
}

/// A token of ServiceAccount `name` with `audience`, from the TokenRequest API (what the
/// kubelet projects into a pod).
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    name: &str,
    audience: Option<&str>,
    expiration_seconds: Option<i64>,
) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().map(str::to_owned).collect(),
            expiration_seconds,
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
}

/// Calls OpenBao's HTTP API with the test bed's root token; fails the test on an error.
pub async fn vault_api(method: reqwest::Method, path: &str, body: serde_json::Value) {
    let address = require(Server::Vault);
    let root = env(Server::Vault, "VAULT_TOKEN");
    let response = crate::bed::vault_http()
        .request(method, format!("{address}/v1/{path}"))
        .header("X-Vault-Token", root)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        response.text().await.unwrap_or_default()
    );
}

/// Enables OpenBao's Kubernetes auth method at `mount`, checking tokens through the test
/// bed's apiserver (TokenReview with the static admin token).
pub async fn enable_vault_kubernetes_auth(mount: &str) {
    let run = env(Server::KubeApiserver, "KE_TESTBED_RUN");
    vault_api(
        reqwest::Method::POST,
        &format!("sys/auth/{mount}"),
        serde_json::json!({"type": "kubernetes"}),
    )
    .await;
    let apiserver = kube::Config::infer().await.unwrap().cluster_url.to_string();
    vault_api(
        reqwest::Method::POST,
        &format!("auth/{mount}/config"),
        serde_json::json!({
            "kubernetes_host": apiserver.trim_end_matches('/'),
            "kubernetes_ca_cert": std::fs::read_to_string(format!("{run}/pki/ca.crt")).unwrap(),
            "token_reviewer_jwt": std::fs::read_to_string(format!("{run}/pki/admin.token")).unwrap().trim(),
            "disable_local_ca_jwt": true,
        }),
    )
    .await;
}
