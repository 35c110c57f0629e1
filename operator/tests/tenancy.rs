//! Tenancy: one operator serving two tenant namespaces, `a` (the victim) and `b` (the
//! attacker, with every right in its own namespace and none elsewhere). Each attack of
//! issue 17 is made with only those rights; each is refused with a condition, the victim's
//! TEK and key records are intact, and its clients keep decrypting. Vault is OpenBao over TLS,
//! used with the least-privilege policies of docs/kms.md (read from the file), not a root
//! token; the operator serves the test's objects only (`--watch-selector`) and keeps a key
//! topic per namespace (`--key-topic-template`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kafka_e2ee_client::config::{ClientConfig, EncryptionClient, ProviderConfig};
use kafka_e2ee_client::key_directory::{KeyDirectory, TopicKeysSnapshot, Trust};
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_crds::injection::{CLIENT_CONFIGMAP, ClientIndex, INDEX_KEY};
use kafka_e2ee_crds::{
    AwsKmsBackend, CaBundleRef, ClusterKmsConnection, ClusterKmsConnectionSpec, DeletionPolicy,
    EncryptedTopic, EncryptedTopicSpec, HadoopKmsBackend, KeystoreBackend, KmsConnection,
    KmsConnectionSpec, KmsRef, KmsRefKind, NamespaceSelection, SecretKeyRef, ServiceAccountRef,
    VaultAuthSpec, VaultBackend, VaultKubernetesAuthSpec,
};
use kafka_e2ee_tests::bed::{vault_ca_file, vault_http, vault_root};
use kafka_e2ee_tests::kube_env::{
    apply_kms_connection, apply_secret, create_namespace, create_service_account,
    enable_vault_kubernetes_auth, random_keystore_json, server_side_apply,
};
use kafka_e2ee_tests::{Server, env as tb_env, require};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const LABEL: &str = "kafka-e2ee-tenancy-test";

/// The operator's namespace (the env's), two tenant namespaces, and the operator serving them.
struct Tenants {
    env: TestEnv,
    a: String,
    b: String,
}

impl Tenants {
    async fn new(prefix: &str) -> Self {
        let env = TestEnv::new(prefix).await;
        let (a, b) = (
            format!("{}-a", env.namespace),
            format!("{}-b", env.namespace),
        );
        for ns in [&a, &b] {
            create_namespace(&env.client, ns, &[(LABEL, &env.namespace)]).await;
        }
        Self { env, a, b }
    }

    fn id(&self) -> &str {
        &self.env.namespace
    }

    fn operator(&self) -> Operator {
        self.env.start_operator_selecting(
            &format!("{LABEL}={}", self.id()),
            &format!("{}.keys.{{namespace}}", self.id()),
            &["--leader-election", "false", "--client-config-resync", "2s"],
        )
    }

    fn key_topic(&self, namespace: &str) -> String {
        format!("{}.keys.{namespace}", self.id())
    }

    fn topics(&self, namespace: &str) -> Api<EncryptedTopic> {
        Api::namespaced(self.env.client.clone(), namespace)
    }

    /// A spec for topic `<namespace>-<name>` on `kms_ref`.
    fn spec(
        &self,
        namespace: &str,
        name: &str,
        kind: KmsRefKind,
        conn: &str,
    ) -> EncryptedTopicSpec {
        let mut spec = EncryptedTopicSpec::new(
            2,
            KmsRef {
                kind,
                name: conn.into(),
            },
        );
        spec.topic_name = Some(format!("{namespace}-{name}"));
        spec
    }

    /// [`Self::spec`] with crypto-shredding confirmed.
    fn shredding(
        &self,
        namespace: &str,
        name: &str,
        kind: KmsRefKind,
        conn: &str,
    ) -> EncryptedTopicSpec {
        let mut spec = self.spec(namespace, name, kind, conn);
        spec.deletion_policy = DeletionPolicy::Delete;
        spec.confirm_deletion = spec.topic_name.clone();
        spec
    }

    async fn apply(&self, namespace: &str, name: &str, spec: EncryptedTopicSpec) {
        let mut obj = EncryptedTopic::new(name, spec);
        obj.metadata.labels = Some(BTreeMap::from([(LABEL.to_owned(), self.id().to_owned())]));
        server_side_apply(&self.topics(namespace), name, &obj).await;
    }

    async fn delete(&self, namespace: &str, name: &str) {
        self.topics(namespace)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    async fn wait_for(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(Option<&EncryptedTopic>) -> bool,
    ) -> Option<EncryptedTopic> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self.topics(namespace).get_opt(name).await.unwrap();
            if check(found.as_ref()) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{namespace}/{name}: not {what} within {WAIT:?}: {:?}",
                found.and_then(|o| o.status)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_reason(&self, namespace: &str, name: &str, reason: &str) -> EncryptedTopic {
        self.wait_for(namespace, name, reason, |o| {
            o.and_then(ready_reason).as_deref() == Some(reason)
        })
        .await
        .unwrap()
    }

    async fn wait_ready(&self, namespace: &str, name: &str) -> EncryptedTopic {
        self.wait_reason(namespace, name, "Ready").await
    }

    async fn wait_deleting(&self, namespace: &str, name: &str, reason: &str) -> EncryptedTopic {
        self.wait_for(namespace, name, &format!("Deleting {reason}"), |o| {
            o.and_then(deleting).is_some_and(|(_, r)| r == reason)
        })
        .await
        .unwrap()
    }

    async fn wait_gone(&self, namespace: &str, name: &str) {
        self.wait_for(namespace, name, "deleted", |o| o.is_none())
            .await;
    }

    /// The reasons of the events about `namespace/name`.
    async fn event_reasons(&self, namespace: &str, name: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.env.client.clone(), namespace);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// What `namespace`'s key topic holds for `topic`, read fresh.
    async fn keys(&self, namespace: &str, topic: &str) -> TopicKeysSnapshot {
        let dir = KeyDirectory::start(
            &self.env.connection(),
            &self.key_topic(namespace),
            self.env.trust().await,
        )
        .await
        .unwrap();
        dir.wait_caught_up(WAIT).await.unwrap();
        dir.topic_keys(topic)
    }

    /// A client of `namespace` configured as its injected pods are (key topic, trusted keys),
    /// with `provider`.
    async fn client(&self, namespace: &str, provider: ProviderConfig) -> EncryptionClient {
        let mut config =
            ClientConfig::new(&self.env.bootstrap, provider, self.env.trusted_keys().await);
        config.key_topic = self.key_topic(namespace);
        config.key_wait_ms = Some(20_000);
        config
            .properties
            .insert("auto.offset.reset".into(), "earliest".into());
        EncryptionClient::with_config(config).await.unwrap()
    }

    /// The client index the operator published in `namespace`.
    async fn index(&self, namespace: &str) -> Option<(ClientIndex, BTreeMap<String, String>)> {
        let cm = Api::<ConfigMap>::namespaced(self.env.client.clone(), namespace)
            .get_opt(CLIENT_CONFIGMAP)
            .await
            .unwrap()?;
        let data = cm.data.unwrap_or_default();
        let index = serde_yaml::from_str(data.get(INDEX_KEY)?).unwrap();
        Some((index, data))
    }
}

/// OpenBao set up for the tenants: policies from docs/kms.md, a Kubernetes auth mount.
struct Vault {
    mount: String,
    id: String,
}

impl Vault {
    async fn new(id: &str) -> Self {
        let mount = format!("k8s-{id}");
        enable_vault_kubernetes_auth(&mount).await;
        Self {
            mount,
            id: id.to_owned(),
        }
    }

    /// Writes the docs' policy `block` for `namespace` (its `shop` replaced) as `<id>-<name>`.
    async fn policy(&self, name: &str, block: &str, namespace: &str) -> String {
        let full = format!("{}-{name}", self.id);
        let text =
            docs_policy(block).replace("kafka-e2ee_shop_", &format!("kafka-e2ee_{namespace}_"));
        call(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{full}"),
            json!({"policy": text}),
        )
        .await;
        full
    }

    /// A Kubernetes auth role for ServiceAccount `namespace/account` with `policies`.
    async fn role(&self, role: &str, namespace: &str, account: &str, policies: &[&str]) {
        call(
            reqwest::Method::POST,
            &format!("auth/{}/role/{role}", self.mount),
            json!({
                "bound_service_account_names": [account],
                "bound_service_account_namespaces": [namespace],
                "audience": "vault",
                "token_policies": policies,
                "token_ttl": "1h",
            }),
        )
        .await;
    }

    /// The tenant `namespace`'s own identity at Vault, as docs/kms.md sets it up: the docs'
    /// `tenant-operator` policy for its names, role `operator-a` bound to its ServiceAccount
    /// `kms-login`, and a connection spec logging in as `role` with that ServiceAccount.
    async fn tenant_login(
        &self,
        t: &Tenants,
        namespace: &str,
    ) -> impl Fn(&str) -> KmsConnectionSpec {
        let policy = self.policy("tenant-a", "tenant-operator", namespace).await;
        self.role("operator-a", namespace, "kms-login", &[&policy])
            .await;
        create_service_account(&t.env.client, namespace, "kms-login").await;
        let ca = vault_ca_config_map(&t.env.client, namespace).await;
        let mount = self.mount.clone();
        move |role: &str| KmsConnectionSpec {
            vault: Some(vault_backend(
                VaultAuthSpec {
                    token_secret_ref: None,
                    kubernetes: Some(VaultKubernetesAuthSpec {
                        role: role.into(),
                        client_role: None,
                        mount: Some(mount.clone()),
                        audience: None,
                        service_account_ref: Some(ServiceAccountRef {
                            name: "kms-login".into(),
                        }),
                    }),
                },
                ca.clone(),
            )),
            ..no_backend()
        }
    }

    /// A token with `policies` only (no root, no default).
    async fn token(&self, policies: &[&str]) -> String {
        let answer = call(
            reqwest::Method::POST,
            "auth/token/create",
            json!({"policies": policies, "no_default_policy": true, "ttl": "1h"}),
        )
        .await;
        answer["auth"]["client_token"].as_str().unwrap().to_owned()
    }
}

/// Calls OpenBao's API with the root token (setting up only); returns the JSON answer.
async fn call(method: reqwest::Method, path: &str, body: Value) -> Value {
    let address = require(Server::Vault);
    let response = vault_http()
        .request(method, format!("{address}/v1/{path}"))
        .header("X-Vault-Token", tb_env(Server::Vault, "VAULT_TOKEN"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The fenced HCL block of docs/kms.md whose first line is `# policy: <name>`.
fn docs_policy(name: &str) -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let text = std::fs::read_to_string(format!("{root}/../docs/kms.md")).unwrap();
    let marker = format!("```hcl\n# policy: {name}\n");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/kms.md has no policy {name}"))
        + marker.len();
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_owned()
}

fn vault_backend(auth: VaultAuthSpec, ca: CaBundleRef) -> VaultBackend {
    VaultBackend {
        address: require(Server::Vault),
        mount: None,
        namespace: None,
        auth,
        ca: Some(ca),
        allow_insecure_http: false,
    }
}

fn token_auth(secret: &str) -> VaultAuthSpec {
    VaultAuthSpec {
        token_secret_ref: Some(SecretKeyRef {
            name: secret.into(),
            key: "token".into(),
        }),
        kubernetes: None,
    }
}

/// A client provider with a Vault token of `policies`' rights.
fn vault_client(token_file: std::path::PathBuf) -> ProviderConfig {
    ProviderConfig::Vault {
        address: require(Server::Vault),
        mount: "transit".into(),
        namespace: None,
        token_file: Some(token_file),
        kubernetes_auth: None,
        ca_file: Some(vault_ca_file()),
    }
}

fn write_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(kafka_e2ee_tests::unique(name));
    std::fs::write(&path, contents).unwrap();
    path
}

async fn apply_cluster_connection(t: &Tenants, name: &str, spec: ClusterKmsConnectionSpec) {
    let api: Api<ClusterKmsConnection> = Api::all(t.env.client.clone());
    server_side_apply(&api, name, &ClusterKmsConnection::new(name, spec)).await;
}

fn cluster_vault(
    backend: VaultBackend,
    namespaces: Option<NamespaceSelection>,
    any_tek_name: bool,
) -> ClusterKmsConnectionSpec {
    ClusterKmsConnectionSpec {
        vault: Some(backend),
        aws_kms: None,
        hadoop_kms: None,
        keystore: None,
        namespaces,
        allow_any_tek_name: any_tek_name,
    }
}

/// A tenant tries to make the operator authenticate as the operator (its service-account
/// token, its AWS role, Hadoop's spoofable simple auth), send a token over plain http, or read
/// a Secret of another namespace. Each is refused before the operator contacts anything.
#[tokio::test]
async fn a_tenant_cannot_borrow_the_operators_identity_or_another_namespaces_secret() {
    let t = Tenants::new("ten-identity").await;
    let b = t.b.clone();
    // Stands in for a KMS address the tenant controls: counts connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let contacted = Arc::new(AtomicUsize::new(0));
    {
        let contacted = Arc::clone(&contacted);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                contacted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
    }
    // The victim's Secret, in a.
    apply_secret(
        &t.env.client,
        &t.a,
        "vault-token",
        BTreeMap::from([("token", tb_env(Server::Vault, "VAULT_TOKEN").into_bytes())]),
    )
    .await;
    let operator = t.operator();
    operator.wait_ready().await;

    let k8s_as_operator = VaultAuthSpec {
        token_secret_ref: None,
        kubernetes: Some(VaultKubernetesAuthSpec {
            role: "kafka-e2ee-operator".into(),
            client_role: None,
            mount: None,
            audience: None,
            service_account_ref: None,
        }),
    };
    let attempts: Vec<(&str, KmsConnectionSpec, &str)> = vec![
        (
            "exfil-http",
            KmsConnectionSpec {
                vault: Some(VaultBackend {
                    address: format!("http://127.0.0.1:{port}"),
                    mount: None,
                    namespace: None,
                    auth: k8s_as_operator.clone(),
                    ca: None,
                    allow_insecure_http: false,
                }),
                ..no_backend()
            },
            "plain http",
        ),
        (
            "exfil-https",
            KmsConnectionSpec {
                vault: Some(VaultBackend {
                    address: format!("https://127.0.0.1:{port}"),
                    mount: None,
                    namespace: None,
                    auth: k8s_as_operator,
                    ca: None,
                    allow_insecure_http: false,
                }),
                ..no_backend()
            },
            "serviceAccountRef",
        ),
        (
            "aws-own",
            KmsConnectionSpec {
                aws_kms: Some(AwsKmsBackend {
                    region: Some(tb_env(Server::AwsKms, "AWS_REGION")),
                    endpoint: Some(require(Server::AwsKms)),
                    credentials_secret_ref: None,
                    web_identity: None,
                }),
                ..no_backend()
            },
            "credentialsSecretRef or webIdentity",
        ),
        (
            "hadoop-simple",
            KmsConnectionSpec {
                hadoop_kms: Some(HadoopKmsBackend {
                    url: kafka_e2ee_tests::bed::hadoop_tls_url(),
                    user: "hdfs".into(),
                    tls_secret_ref: None,
                    allow_simple_auth: false,
                    allow_insecure_http: false,
                }),
                ..no_backend()
            },
            "simple authentication",
        ),
    ];
    for (name, spec, why) in attempts {
        apply_kms_connection(&t.env.client, &b, name, spec).await;
        t.apply(&b, name, t.spec(&b, name, KmsRefKind::KmsConnection, name))
            .await;
        let refused = t.wait_reason(&b, name, "KmsConnectionInvalid").await;
        assert_message_mentions(&refused, why);
    }

    // Naming a's Secret: references resolve in the connection's own namespace, and a
    // `namespace` field is not part of the schema (the apiserver prunes it).
    // (Server-side apply refuses the undeclared field outright; a merge patch is pruned.)
    apply_kms_connection(
        &t.env.client,
        &b,
        "borrowed",
        KmsConnectionSpec {
            vault: Some(VaultBackend {
                address: require(Server::Vault),
                mount: None,
                namespace: None,
                auth: token_auth("vault-token"),
                ca: None,
                allow_insecure_http: false,
            }),
            ..no_backend()
        },
    )
    .await;
    let api: Api<KmsConnection> = Api::namespaced(t.env.client.clone(), &b);
    let sneaky = json!({"spec": {"vault": {"auth": {"tokenSecretRef": {"namespace": t.a}}}}});
    api.patch("borrowed", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .unwrap();
    let stored = api.get("borrowed").await.unwrap();
    assert!(
        !serde_json::to_string(&stored.spec).unwrap().contains(&t.a),
        "pruned: {:?}",
        stored.spec
    );
    t.apply(
        &b,
        "borrowed",
        t.spec(&b, "borrowed", KmsRefKind::KmsConnection, "borrowed"),
    )
    .await;
    let refused = t.wait_reason(&b, "borrowed", "KmsConnectionInvalid").await;
    assert_message_mentions(&refused, &format!("Secret {b}/vault-token not found"));

    // Nothing was sent anywhere: the address the tenant chose was never contacted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(contacted.load(Ordering::SeqCst), 0);
    operator.kill().await;
}

/// b names a's TEK on a shared ClusterKmsConnection (the operator's own Vault identity), by
/// its name outside b's prefix, and on a connection that allows any name; it uses a
/// connection that does not serve it. All refused; a's TEK, key records and data survive
/// b's deletions with Delete.
#[tokio::test]
async fn one_namespace_cannot_name_use_or_destroy_anothers_tek() {
    let t = Tenants::new("ten-tek").await;
    let (a, b, home) = (t.a.clone(), t.b.clone(), t.env.namespace.clone());
    let vault = Vault::new(t.id()).await;
    let operator_policy = vault
        .policy("cluster-operator", "cluster-operator", "")
        .await;
    let clients_a = vault.policy("clients-a", "tenant-clients", &a).await;
    let operator_token = vault.token(&[&operator_policy]).await;
    apply_secret(
        &t.env.client,
        &home,
        "vault-operator",
        BTreeMap::from([("token", operator_token.into_bytes())]),
    )
    .await;
    let ca = vault_ca_config_map(&t.env.client, &home).await;
    let both = NamespaceSelection {
        names: vec![a.clone(), b.clone()],
        match_labels: BTreeMap::new(),
    };
    let (shared, open, gold) = (
        format!("{}-shared", t.id()),
        format!("{}-open", t.id()),
        format!("{}-gold", t.id()),
    );
    let backend = vault_backend(token_auth("vault-operator"), ca);
    apply_cluster_connection(
        &t,
        &shared,
        cluster_vault(backend.clone(), Some(both.clone()), false),
    )
    .await;
    apply_cluster_connection(&t, &open, cluster_vault(backend.clone(), Some(both), true)).await;
    let gold_only = NamespaceSelection {
        names: vec![],
        match_labels: BTreeMap::from([("tier".to_owned(), format!("gold-{}", t.id()))]),
    };
    apply_cluster_connection(&t, &gold, cluster_vault(backend, Some(gold_only), false)).await;
    let operator = t.operator();
    operator.wait_ready().await;

    // The victim: a topic with crypto-shredding, on the connection that allows any TEK name.
    t.apply(
        &a,
        "orders",
        t.shredding(&a, "orders", KmsRefKind::ClusterKmsConnection, &open),
    )
    .await;
    let victim = t.wait_ready(&a, "orders").await;
    let tek = victim.status.as_ref().unwrap().tek.clone().unwrap();
    assert_eq!(tek.reference, format!("kafka-e2ee_{a}_orders"));
    assert_eq!(tek.created_for, victim.metadata.uid);
    let topic = format!("{a}-orders");
    let token = vault.token(&[&clients_a]).await;
    let reader = t
        .client(&a, vault_client(write_file("clients-a", &token)))
        .await;
    let writer_token = vault.token(&[&operator_policy]).await;
    let writer = t
        .client(&a, vault_client(write_file("writer-a", &writer_token)))
        .await;
    let mut sent = produce(&writer, &topic, "before", 4, None).await;

    // b names a's TEK where names are scoped: outside its prefix.
    let mut steal = t.shredding(&b, "steal", KmsRefKind::ClusterKmsConnection, &shared);
    steal.tek = Some(tek.reference.clone());
    t.apply(&b, "steal", steal).await;
    let refused = t.wait_reason(&b, "steal", "TekNotInNamespace").await;
    assert_message_mentions(&refused, &format!("kafka-e2ee_{b}_"));
    // ... and where any name is allowed: the TEK was created for a's object.
    let mut steal = t.shredding(&b, "steal-open", KmsRefKind::ClusterKmsConnection, &open);
    steal.tek = Some(tek.reference.clone());
    t.apply(&b, "steal-open", steal).await;
    let refused = t.wait_reason(&b, "steal-open", "TekConflict").await;
    assert_message_mentions(&refused, &format!("{a}/orders"));
    // ... and claims a's topic.
    let mut squat = t.spec(&b, "squat", KmsRefKind::ClusterKmsConnection, &shared);
    squat.topic_name = Some(topic.clone());
    t.apply(&b, "squat", squat).await;
    t.wait_reason(&b, "squat", "TopicConflict").await;
    // A connection that does not serve b.
    t.apply(
        &b,
        "elsewhere",
        t.spec(&b, "elsewhere", KmsRefKind::ClusterKmsConnection, &gold),
    )
    .await;
    let refused = t
        .wait_reason(&b, "elsewhere", "KmsConnectionNotAdmitted")
        .await;
    assert_message_mentions(&refused, &gold);
    // The administrator admits b (a label on its namespace): then it is served.
    let namespaces: Api<Namespace> = Api::all(t.env.client.clone());
    let label = json!({"metadata": {"labels": {"tier": format!("gold-{}", t.id())}}});
    namespaces
        .patch(&b, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let nudge = json!({"metadata": {"annotations": {"nudge": "1"}}});
    t.topics(&b)
        .patch("elsewhere", &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    t.wait_ready(&b, "elsewhere").await;

    // b deletes its objects (with Delete): nothing of a's is touched.
    for name in ["steal", "steal-open", "squat"] {
        t.delete(&b, name).await;
        t.wait_gone(&b, name).await;
    }
    assert!(
        vault_root().describe_tek(&tek.reference).await.is_ok(),
        "a's TEK survives"
    );
    let keys = t.keys(&a, &topic).await;
    assert!(keys.policy.is_some() && keys.edeks.len() == 2, "{keys:?}");
    sent.extend(produce(&writer, &topic, "after", 4, None).await);
    sent.sort();
    assert_eq!(
        consume(&reader, &topic, 8).await,
        sent,
        "a's consumers still decrypt"
    );
    let victim = t.topics(&a).get("orders").await.unwrap();
    assert_eq!(ready_reason(&victim).as_deref(), Some("Ready"));
    operator.kill().await;
}

/// Crypto-shredding reports success only once the TEK is gone: the KMS refusing to delete
/// (the tenant's policy withholds `delete`) or the connection deleted first keep the object,
/// with a condition and a warning; fixing either finishes the job.
#[tokio::test]
async fn crypto_shredding_never_reports_success_while_the_tek_survives() {
    let t = Tenants::new("ten-shred").await;
    let a = t.a.clone();
    let vault = Vault::new(t.id()).await;
    // The tenant's own identity: its ServiceAccount, the docs' policy without delete.
    let connection = vault.tenant_login(&t, &a).await("operator-a");
    apply_kms_connection(&t.env.client, &a, "vault", connection.clone()).await;
    // Keystore TEKs live in the tenant's Secret: Delete cannot shred them, so it is refused.
    apply_secret(
        &t.env.client,
        &a,
        "keystore",
        BTreeMap::from([("keystore.json", random_keystore_json().into_bytes())]),
    )
    .await;
    apply_kms_connection(
        &t.env.client,
        &a,
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
    let operator = t.operator();
    operator.wait_ready().await;

    let mut on_keystore = t.shredding(&a, "local", KmsRefKind::KmsConnection, "keystore");
    on_keystore.tek = Some(KEYSTORE_TEK.into());
    t.apply(&a, "local", on_keystore).await;
    let refused = t.wait_reason(&a, "local", "InvalidSpec").await;
    assert_message_mentions(&refused, "keystore");
    assert!(
        refused.metadata.finalizers.is_none(),
        "no finalizer: deletion shreds nothing"
    );

    // The KMS refuses: the object stays, no success is announced, the TEK is there.
    t.apply(
        &a,
        "refused",
        t.shredding(&a, "refused", KmsRefKind::KmsConnection, "vault"),
    )
    .await;
    let ready = t.wait_ready(&a, "refused").await;
    let tek = ready.status.unwrap().tek.unwrap().reference;
    assert_eq!(tek, format!("kafka-e2ee_{a}_refused"));
    t.delete(&a, "refused").await;
    t.wait_deleting(&a, "refused", "KmsDenied").await;
    let events = t.event_reasons(&a, "refused").await;
    assert!(events.iter().any(|e| e == "NotShredded"), "{events:?}");
    assert!(!events.iter().any(|e| e == "CryptoShredded"), "{events:?}");
    assert!(vault_root().describe_tek(&tek).await.is_ok());
    // The connection deleted before the topic: the object waits for it.
    t.apply(
        &a,
        "orphan",
        t.shredding(&a, "orphan", KmsRefKind::KmsConnection, "vault"),
    )
    .await;
    let ready = t.wait_ready(&a, "orphan").await;
    let orphan_tek = ready.status.unwrap().tek.unwrap().reference;
    Api::<KmsConnection>::namespaced(t.env.client.clone(), &a)
        .delete("vault", &DeleteParams::default())
        .await
        .unwrap();
    t.delete(&a, "orphan").await;
    t.wait_deleting(&a, "orphan", "KmsConnectionNotFound").await;
    assert!(vault_root().describe_tek(&orphan_tek).await.is_ok());
    assert!(
        !t.event_reasons(&a, "orphan")
            .await
            .iter()
            .any(|e| e == "CryptoShredded")
    );

    // Granting delete, and restoring the connection: both finish, TEKs gone.
    vault
        .policy("tenant-a", "tenant-operator-shredding", &a)
        .await;
    apply_kms_connection(&t.env.client, &a, "vault", connection).await;
    for (name, tek) in [("refused", &tek), ("orphan", &orphan_tek)] {
        t.wait_gone(&a, name).await;
        assert!(
            matches!(
                vault_root().describe_tek(tek).await,
                Err(ProviderError::NotFound { .. })
            ),
            "{name}: the TEK is gone"
        );
        assert!(
            t.event_reasons(&a, name)
                .await
                .iter()
                .any(|e| e == "CryptoShredded")
        );
        let keys = t.keys(&a, &format!("{a}-{name}")).await;
        assert!(
            keys.policy.is_none() && keys.edeks.is_empty(),
            "{name}: {keys:?}"
        );
    }
    t.delete(&a, "local").await;
    t.wait_gone(&a, "local").await;
    operator.kill().await;
}

/// GitOps re-applies a topic right after deleting it (another object name, the same Kafka
/// topic): the new object waits while the old one's crypto-shredding is unfinished, and
/// gets fresh keys after it; the old finalizer destroys nothing of the new object's.
#[tokio::test]
async fn a_topic_reused_right_after_a_delete_waits_for_the_shredding() {
    let t = Tenants::new("ten-reuse").await;
    let a = t.a.clone();
    let vault = Vault::new(t.id()).await;
    let policy = vault.policy("tenant-a", "tenant-operator", &a).await;
    let token = vault.token(&[&policy]).await;
    apply_secret(
        &t.env.client,
        &a,
        "vault-token",
        BTreeMap::from([("token", token.clone().into_bytes())]),
    )
    .await;
    let ca = vault_ca_config_map(&t.env.client, &a).await;
    apply_kms_connection(
        &t.env.client,
        &a,
        "vault",
        KmsConnectionSpec {
            vault: Some(vault_backend(token_auth("vault-token"), ca)),
            ..no_backend()
        },
    )
    .await;
    let operator = t.operator();
    operator.wait_ready().await;
    let topic = format!("{a}-events");
    let mut first = t.shredding(&a, "events-v1", KmsRefKind::KmsConnection, "vault");
    first.topic_name = Some(topic.clone());
    first.confirm_deletion = Some(topic.clone());
    t.apply(&a, "events-v1", first.clone()).await;
    let old = t.wait_ready(&a, "events-v1").await;
    let old_tek = old.status.unwrap().tek.unwrap().reference;
    // Deleted while the KMS refuses (no delete in the policy yet), and re-applied at once.
    t.delete(&a, "events-v1").await;
    t.wait_deleting(&a, "events-v1", "KmsDenied").await;
    t.apply(&a, "events-v2", first).await;
    let waiting = t.wait_reason(&a, "events-v2", "WaitingForDeletion").await;
    assert_message_mentions(&waiting, "events-v1");

    vault
        .policy("tenant-a", "tenant-operator-shredding", &a)
        .await;
    t.wait_gone(&a, "events-v1").await;
    let new = t.wait_ready(&a, "events-v2").await;
    let new_tek = new.status.unwrap().tek.unwrap();
    assert_ne!(new_tek.reference, old_tek);
    assert_eq!(new_tek.created_for, new.metadata.uid);
    assert!(matches!(
        vault_root().describe_tek(&old_tek).await,
        Err(ProviderError::NotFound { .. })
    ));
    let client = t
        .client(&a, vault_client(write_file("reuse", &token)))
        .await;
    let mut sent = produce(&client, &topic, "fresh", 4, None).await;
    sent.sort();
    assert_eq!(consume(&client, &topic, 4).await, sent);
    operator.kill().await;
}

/// Each namespace's key records go to its own key topic (Kafka ACLs can then separate
/// tenants), a namespace's client index never offers a topic it does not own, and a client
/// reads the key records of its configuration's topics only.
#[tokio::test]
async fn key_records_and_client_configuration_stay_within_the_namespace() {
    let t = Tenants::new("ten-keys").await;
    let (a, b) = (t.a.clone(), t.b.clone());
    let keystore = random_keystore_json();
    for ns in [&a, &b] {
        apply_secret(
            &t.env.client,
            ns,
            "keystore",
            BTreeMap::from([("keystore.json", keystore.clone().into_bytes())]),
        )
        .await;
        for conn in ["ks1", "ks2"] {
            apply_kms_connection(
                &t.env.client,
                ns,
                conn,
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
        }
    }
    let operator = t.operator();
    operator.wait_ready().await;
    let keystore_topic = |ns: &str, name: &str, conn: &str| {
        let mut s = t.spec(ns, name, KmsRefKind::KmsConnection, conn);
        s.tek = Some(KEYSTORE_TEK.into());
        s
    };
    t.apply(&a, "one", keystore_topic(&a, "one", "ks1")).await;
    t.apply(&a, "two", keystore_topic(&a, "two", "ks2")).await;
    t.apply(&b, "mine", keystore_topic(&b, "mine", "ks1")).await;
    for (ns, name) in [(&a, "one"), (&a, "two"), (&b, "mine")] {
        t.wait_ready(ns, name).await;
    }
    // b claims a's topic once a holds it. (Created in the same second as a's object, the
    // claim would be a coin toss on uids: topic names are first come, first served;
    // docs/security.md.)
    let mut squat = keystore_topic(&b, "squat", "ks1");
    squat.topic_name = Some(format!("{a}-one"));
    t.apply(&b, "squat", squat).await;
    t.wait_reason(&b, "squat", "TopicConflict").await;

    // Key records per namespace.
    let (a_one, a_two, b_mine) = (format!("{a}-one"), format!("{a}-two"), format!("{b}-mine"));
    assert!(t.keys(&a, &a_one).await.policy.is_some());
    assert!(
        t.keys(&a, &b_mine).await.policy.is_none(),
        "b's records are not in a's key topic"
    );
    assert!(t.keys(&b, &b_mine).await.policy.is_some());
    assert!(t.keys(&b, &a_one).await.policy.is_none());

    // b's index: its own topic, never a's (b's claim on it is in conflict).
    let (index, _) = t
        .wait_for_index(&b, |i| i.topics.contains_key(&b_mine))
        .await;
    assert!(!index.topics.contains_key(&a_one), "{index:?}");
    // a's profile for ks1: a's key topic, and the key records of `one` only.
    let (index, data) = t
        .wait_for_index(&a, |i| {
            i.topics.contains_key(&a_one) && i.topics.contains_key(&a_two)
        })
        .await;
    let profile = &index.topics[&a_one].profile;
    let config = ClientConfig::parse(&data[profile], "test").unwrap();
    assert_eq!(config.key_topic, t.key_topic(&a));
    assert_eq!(config.topics.iter().collect::<Vec<_>>(), [&a_one]);
    let reader = KeyDirectory::start(&t.env.connection(), &config.key_topic, config.trust())
        .await
        .unwrap();
    reader.wait_caught_up(WAIT).await.unwrap();
    assert!(reader.topic_keys(&a_one).policy.is_some());
    assert!(
        reader.topic_keys(&a_two).policy.is_none(),
        "another profile's topic is not read"
    );
    assert!(
        reader.stats().skipped.load(Ordering::Relaxed) >= 3,
        "two's policy and EDEKs passed over"
    );
    let everything: Trust = Trust {
        topics: None,
        ..config.trust()
    };
    let all = KeyDirectory::start(&t.env.connection(), &config.key_topic, everything)
        .await
        .unwrap();
    all.wait_caught_up(WAIT).await.unwrap();
    assert!(
        all.topic_keys(&a_two).policy.is_some(),
        "the records are there to be skipped"
    );
    operator.kill().await;
}

impl Tenants {
    /// Waits until `namespace`'s published index satisfies `check`.
    async fn wait_for_index(
        &self,
        namespace: &str,
        check: impl Fn(&ClientIndex) -> bool,
    ) -> (ClientIndex, BTreeMap<String, String>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some((index, data)) = self.index(namespace).await
                && check(&index)
            {
                return (index, data);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{namespace}: index not published"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A KmsConnection says whether the KMS accepts it, like cert-manager's Issuers. With a Vault
/// role that does not exist the connection is Ready=False (KmsDenied, naming the role) and a
/// topic using it names the connection in its own condition; with the right role the
/// connection turns Ready (Connected) on the change and the topic follows. The check reads a
/// TEK name no topic uses, inside the namespace's names (the docs' tenant policy covers it),
/// and a settled connection is checked without being written again.
#[tokio::test]
async fn a_kms_connection_reports_whether_the_kms_accepts_its_credentials() {
    let t = Tenants::new("ten-conn").await;
    let a = t.a.clone();
    let vault = Vault::new(t.id()).await;
    let with_role = vault.tenant_login(&t, &a).await;
    // Labelled: the operator keeps the status of the connections its selector picks.
    let connections: Api<KmsConnection> = Api::namespaced(t.env.client.clone(), &a);
    let apply_connection = |spec: KmsConnectionSpec| {
        let mut obj = KmsConnection::new("vault", spec);
        obj.metadata.labels = Some(BTreeMap::from([(LABEL.to_owned(), t.id().to_owned())]));
        let connections = connections.clone();
        async move { server_side_apply(&connections, "vault", &obj).await }
    };
    let wait_connection = |reason: &'static str| {
        let connections = connections.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let found = connections.get("vault").await.unwrap();
                let ready = found
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                    .cloned();
                if ready.as_ref().is_some_and(|c| c.reason == reason) {
                    return (found, ready.unwrap());
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "connection not {reason} within {WAIT:?}: {:?}",
                    found.status
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    apply_connection(with_role("not-a-role")).await;
    let operator = t.env.start_operator_selecting(
        &format!("{LABEL}={}", t.id()),
        &format!("{}.keys.{{namespace}}", t.id()),
        &["--leader-election", "false", "--kms-check-interval", "1s"],
    );
    operator.wait_ready().await;

    let (refused, ready) = wait_connection("KmsDenied").await;
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("not-a-role"), "{}", ready.message);
    let status = refused.status.unwrap();
    assert_eq!(status.backend.as_deref(), Some("vault"));
    assert_eq!(status.observed_generation, refused.metadata.generation);

    t.apply(
        &a,
        "orders",
        t.spec(&a, "orders", KmsRefKind::KmsConnection, "vault"),
    )
    .await;
    let failing = t.wait_reason(&a, "orders", "KmsDenied").await;
    assert_message_mentions(&failing, "KmsConnection/vault: ");
    // kstatus reads a refusal only a person can fix as Stalled (flux --wait fails at once).
    let condition = |o: &EncryptedTopic, type_: &str| {
        o.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        condition(&failing, "Stalled"),
        Some(("True".into(), "KmsDenied".into()))
    );

    apply_connection(with_role("operator-a")).await;
    let (accepted, ready) = wait_connection("Connected").await;
    assert_eq!(ready.status, "True");
    assert!(
        ready
            .message
            .contains(&format!("kafka-e2ee_{a}__connection-check")),
        "{}",
        ready.message
    );
    assert_eq!(
        accepted.status.as_ref().unwrap().observed_generation,
        accepted.metadata.generation
    );
    let ready = t.wait_ready(&a, "orders").await;
    assert_eq!(condition(&ready, "Stalled"), None);
    // Checked every second from here on, and not written again while nothing changes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = connections.get("vault").await.unwrap();
    assert_eq!(
        later.metadata.resource_version, accepted.metadata.resource_version,
        "a settled connection was written again: {:?}",
        later.status
    );
    operator.kill().await;
}
