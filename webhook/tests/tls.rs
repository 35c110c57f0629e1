//! Certificate rotation without a restart: files replaced underneath (cert-manager renewing
//! a mounted Secret) and the self-managed certificate renewed by the webhook itself; the
//! apiserver keeps calling through both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::time::Duration;

use kafka_e2ee_webhook::certs::issue;
use support::*;

async fn wait_for_leaf(port: u16, ca: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leaf = served_leaf(port, ca).await;
        if want(&leaf) {
            return leaf;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the served certificate did not change"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn leaf_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn certificate_files_replaced_underneath_are_served_without_a_restart() {
    let world = World::new("wh-tls-files").await;
    let names = vec!["127.0.0.1".to_owned()];
    let first = issue(&names, Duration::from_secs(3600), None, unix_now()).unwrap();
    let (cert, key) = (world.dir().join("tls.crt"), world.dir().join("tls.key"));
    std::fs::write(&cert, &first.cert).unwrap();
    std::fs::write(&key, &first.key).unwrap();
    let webhook = world.start_webhook(&[
        &format!("--tls-cert-file={}", cert.display()),
        &format!("--tls-key-file={}", key.display()),
        "--tls-reload-interval=1s",
    ]);
    webhook.wait_ready().await;
    world
        .register_with_ca(webhook.port, "Fail", Some(&first.ca_cert))
        .await;
    world.wait_validating().await;
    assert_eq!(
        served_leaf(webhook.port, &first.ca_cert).await,
        leaf_der(&first.cert)
    );

    // A renewal by the same CA (what cert-manager does), written key first like a
    // non-atomic writer would: the half-written state is skipped, then the pair is served.
    let second = issue(
        &names,
        Duration::from_secs(3600),
        Some((&first.ca_cert, &first.ca_key)),
        unix_now(),
    )
    .unwrap();
    std::fs::write(&key, &second.key).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::write(&cert, &second.cert).unwrap();
    let want = leaf_der(&second.cert);
    wait_for_leaf(webhook.port, &first.ca_cert, |leaf| leaf == want.as_slice()).await;
    // The apiserver, trusting the same CA, still gets answers.
    world.wait_validating().await;
    let metrics = webhook.metrics().await;
    assert!(
        metrics.contains("kafka_e2ee_webhook_tls_reloads_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_self_managed_certificate_is_renewed_and_the_ca_bundle_kept() {
    let world = World::new("wh-tls-self").await;
    let webhook = world.start_webhook(&["--cert-validity=8s"]);
    world.register(webhook.port, "Fail").await;
    webhook.wait_ready().await;
    world.wait_validating().await;
    let ca = self_managed_ca(
        &world.client,
        &world.system_namespace,
        "kafka-e2ee-webhook-tls",
    )
    .await;
    let first = served_leaf(webhook.port, &ca).await;
    // Renewed after two thirds of ~10 s.
    wait_for_leaf(webhook.port, &ca, |leaf| leaf != first.as_slice()).await;
    assert_eq!(
        self_managed_ca(
            &world.client,
            &world.system_namespace,
            "kafka-e2ee-webhook-tls"
        )
        .await,
        ca,
        "renewal keeps the CA, so the caBundle stays valid"
    );
    world.wait_validating().await;

    // A second replica adopts the same Secret instead of issuing its own.
    let replica = world.start_webhook(&["--cert-validity=8s"]);
    replica.wait_ready().await;
    served_leaf(replica.port, &ca).await;
    assert_eq!(
        self_managed_ca(
            &world.client,
            &world.system_namespace,
            "kafka-e2ee-webhook-tls"
        )
        .await,
        ca
    );
}
