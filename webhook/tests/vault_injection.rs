//! The whole injected path with a real KMS: OpenBao (TLS, its own CA) with its Kubernetes auth
//! method pointed at the test bed's apiserver. The operator logs in as a ServiceAccount of the
//! tenant's namespace (a token it requests for it), the pod's injected configuration names a
//! projected token with Vault's audience and Vault's CA, and the client crate logs in with
//! that token (as the pod's own service account) to unwrap the topic's DEKs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use kafka_e2ee_crds::{
    KmsConnectionSpec, ServiceAccountRef, VaultAuthSpec, VaultBackend, VaultKubernetesAuthSpec,
};
use kafka_e2ee_tests::{Server, env as tb_env, require};
use kube::api::PostParams;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_pod_logs_in_to_vault_with_its_injected_token_and_reads_the_topic() {
    let world = World::new("wh-vault").await;
    let address = require(Server::Vault);
    // Kubernetes auth at a mount of this test's own, trusting the test bed's apiserver.
    let mount = format!("k8s-{}", world.id);
    enable_vault_kubernetes_auth(&mount).await;
    let policy = world.id.clone();
    vault_api(
        reqwest::Method::PUT,
        &format!("sys/policies/acl/{policy}"),
        json!({"policy": "path \"transit/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }"}),
    )
    .await;
    let role = |namespace: &str, account: &str| {
        json!({
            "bound_service_account_names": [account],
            "bound_service_account_namespaces": [namespace],
            "audience": "vault",
            "token_policies": [policy],
            "token_ttl": "1h",
        })
    };
    // The tenant's connection: the operator logs in as the namespace's own ServiceAccount
    // `kms-login`, with a short-lived token it requests for it (never its own token).
    vault_api(
        reqwest::Method::POST,
        &format!("auth/{mount}/role/operator"),
        role(&world.namespace, "kms-login"),
    )
    .await;
    vault_api(
        reqwest::Method::POST,
        &format!("auth/{mount}/role/clients"),
        role(&world.namespace, "app"),
    )
    .await;
    create_service_account(&world.client, &world.namespace, "kms-login").await;
    create_service_account(&world.client, &world.namespace, "app").await;
    let ca = vault_ca_config_map(&world.client, &world.namespace).await;
    let _operator = world.start_operator(&[]);
    apply_kms_connection(
        &world.client,
        &world.namespace,
        "vault",
        KmsConnectionSpec {
            vault: Some(VaultBackend {
                address,
                mount: None,
                namespace: None,
                auth: VaultAuthSpec {
                    token_secret_ref: None,
                    kubernetes: Some(VaultKubernetesAuthSpec {
                        role: "operator".into(),
                        client_role: Some("clients".into()),
                        mount: Some(mount.clone()),
                        audience: Some("vault".into()),
                        service_account_ref: Some(ServiceAccountRef {
                            name: "kms-login".into(),
                        }),
                    }),
                },
                ca: Some(ca),
                allow_insecure_http: false,
            }),
            aws_kms: None,
            hadoop_kms: None,
            keystore: None,
        },
    )
    .await;
    world
        .apply_topic("orders", world.spec("orders", 2, "vault"))
        .await;
    world.wait_topic_ready("orders").await;
    let topic = world.topic_name("orders");
    world.wait_published(&topic).await;

    let webhook = world.start_webhook(&[]);
    world.register(webhook.port, "Fail").await;
    webhook.wait_ready().await;
    world.wait_injecting(&topic).await;
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "annotations": {"kafka-e2ee.io/topics": topic}},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "example.invalid/app:1"}]},
    }))
    .unwrap();
    let stored = world
        .pods(&world.namespace)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let sources = serde_json::to_value(&stored.spec.as_ref().unwrap().volumes).unwrap()[0]["projected"]["sources"].clone();
    assert_eq!(
        sources[0]["configMap"]["items"][1],
        json!({"key": "kmsconnection.vault.ca.crt", "path": "ca.crt"}),
        "Vault's CA travels in the client ConfigMap: {sources}"
    );
    assert_eq!(
        sources[1],
        json!({"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "vault-token"}}),
        "{sources}"
    );
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains(&tb_env(Server::Vault, "VAULT_TOKEN")),
        "no secret value in the pod"
    );

    // The pod's view: its own token (audience vault) logs in as role `clients`.
    let root = world.dir().join("app");
    let config = materialize(&world.client, &stored, &root).await;
    let client = client_from_injected(&config).await;
    let mut sent = produce(&client, &topic, "vault", 6, None).await;
    sent.sort();
    assert_eq!(consume(&client, &topic, 6).await, sent);

    vault_api(
        reqwest::Method::DELETE,
        &format!("sys/auth/{mount}"),
        json!({}),
    )
    .await;
}
