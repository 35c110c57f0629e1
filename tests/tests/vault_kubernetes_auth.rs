//! Vault Kubernetes auth for real: OpenBao's kubernetes auth method checks a service-account
//! token minted by the test bed's kube-apiserver (TokenRequest) through that apiserver's
//! TokenReview API; the client logs in with it and unwraps DEKs, and gets no more than its
//! policy allows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use kafka_e2ee_client::provider::{
    DekCommitment, DekContext, KeyProvider, ProviderError, TekManager,
};
use kafka_e2ee_client::vault::{VaultAuth, VaultTransit};
use kafka_e2ee_tests::kube_env::{
    create_namespace, create_service_account, enable_vault_kubernetes_auth, service_account_token,
    vault_api,
};
use kafka_e2ee_tests::{Server, env, require, unique};
use serde_json::json;
use zeroize::Zeroizing;

const CTX: DekContext<'static> = DekContext {
    topic: "orders",
    partition: 0,
    version: 1,
};

/// What a Vault administrator does once: enable and configure the auth method, a policy that
/// only decrypts under one TEK, and a role binding one service account to it.
async fn configure_vault(mount: &str, ns: &str, tek: &str, token_ttl: &str) {
    enable_vault_kubernetes_auth(mount).await;
    let policy = format!("decrypt-{tek}");
    vault_api(
        reqwest::Method::PUT,
        &format!("sys/policies/acl/{policy}"),
        json!({"policy": format!("path \"transit/decrypt/{tek}\" {{ capabilities = [\"update\"] }}")}),
    )
    .await;
    vault_api(
        reqwest::Method::POST,
        &format!("auth/{mount}/role/orders-client"),
        json!({
            "bound_service_account_names": ["orders-client"],
            "bound_service_account_namespaces": [ns],
            "audience": "vault",
            "token_policies": [policy],
            "token_ttl": token_ttl,
        }),
    )
    .await;
}

fn vault(auth: VaultAuth) -> VaultTransit {
    VaultTransit::new(&kafka_e2ee_tests::bed::vault_settings(auth)).unwrap()
}

#[tokio::test]
async fn a_service_account_logs_in_through_token_review_renews_and_gets_only_its_policy() {
    require(Server::KubeApiserver);
    let kube = kube::Client::try_default().await.unwrap();
    let ns = unique("vault-auth");
    create_namespace(&kube, &ns, &[]).await;
    let mut tokens = Vec::new();
    for account in ["orders-client", "someone-else"] {
        create_service_account(&kube, &ns, account).await;
        tokens.push(service_account_token(&kube, &ns, account, Some("vault"), Some(600)).await);
    }
    let [good, stranger] = <[String; 2]>::try_from(tokens).unwrap();

    let admin = vault(VaultAuth::Token(Zeroizing::new(env(
        Server::Vault,
        "VAULT_TOKEN",
    ))));
    let tek = unique("k8s-auth-tek");
    admin.create_tek(&tek).await.unwrap();
    let (dek, edek) = admin.generate_dek(&tek, CTX).await.unwrap();
    let mount = unique("kubernetes");
    // Vault tokens live 3 s: the client must log in again to keep working.
    configure_vault(&mount, &ns, &tek, "3s").await;

    // The projected token, as the webhook will mount it into the pod.
    let dir = std::env::temp_dir().join(unique("sa-token"));
    std::fs::create_dir_all(&dir).unwrap();
    let login_as = |name: &str, jwt: &str| {
        let file = dir.join(name);
        std::fs::write(&file, jwt).unwrap();
        vault(VaultAuth::Kubernetes {
            mount: mount.clone(),
            role: "orders-client".into(),
            jwt: std::sync::Arc::new(kafka_e2ee_client::identity::JwtFile(file)),
        })
    };

    let pod = login_as("good", &good);
    let unwrapped = pod.unwrap_dek(&tek, CTX, &edek).await.unwrap();
    assert!(DekCommitment::compute(&dek, CTX).verify(&unwrapped, CTX));
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let again = pod.unwrap_dek(&tek, CTX, &edek).await.unwrap();
    assert!(
        DekCommitment::compute(&dek, CTX).verify(&again, CTX),
        "still working after the first Vault token expired"
    );
    // The policy allows decrypt only: generating DEKs (the operator's job) is denied.
    assert!(matches!(
        pod.generate_dek(&tek, CTX).await,
        Err(ProviderError::AccessDenied { .. })
    ));
    // A service account the role does not bind is refused at login.
    assert!(matches!(
        login_as("stranger", &stranger)
            .unwrap_dek(&tek, CTX, &edek)
            .await,
        Err(ProviderError::AccessDenied { .. })
    ));
    // A token that is not a service-account token at all is refused too.
    assert!(matches!(
        login_as("forged", "eyJhbGciOiJub25lIn0.e30.")
            .unwrap_dek(&tek, CTX, &edek)
            .await,
        Err(ProviderError::AccessDenied { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
