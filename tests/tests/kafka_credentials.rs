//! An injected client with Kafka credentials from a mounted Secret (issue 19): the webhook
//! mounts the Secret that `kafka-e2ee.io/kafka-secret` names and sets
//! `KAFKA_E2EE_KAFKA_CREDENTIALS`; the configuration file itself holds only the namespace's
//! non-secret properties (`security.protocol`). Against the test bed's broker that requires
//! TLS with a client certificate: without the mounted files the client has no certificate to
//! offer; with them, records round-trip encrypted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::time::Duration;

use kafka_e2ee_client::config::{ConfigSource, EncryptionClient, resolve_with};
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_tests::bed::{kafka_tls_connection, kafka_tls_dir};
use kafka_e2ee_tests::fixture::Fixture;
use kafka_e2ee_tests::unique;

const KEY_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_client_uses_the_mounted_kafka_credentials() {
    // The operator's side (here the fixture) reaches the broker with its own certificate.
    let mut fixture = Fixture::on("creds-mtls", kafka_tls_connection("ca.crt"))
        .await
        .unwrap();
    let topic = fixture.reject_topic("creds-mtls", 2).await;

    // What the webhook injects: the configuration file (non-secret properties only) ...
    let mut injected = fixture.client_config(KEY_WAIT);
    injected.properties = [
        ("security.protocol", "ssl"),
        ("auto.offset.reset", "earliest"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let dir = std::env::temp_dir().join(unique("kafka-e2ee-injected"));
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("client.yaml");
    std::fs::write(&config_file, serde_yaml::to_string(&injected).unwrap()).unwrap();
    // ... and the Secret's keys as the kubelet mounts them.
    let secret = dir.join("kafka-secret");
    std::fs::create_dir_all(&secret).unwrap();
    for (from, to) in [
        ("ca.crt", "ca.crt"),
        ("client.crt", "user.crt"),
        ("client.key", "user.key"),
    ] {
        std::fs::copy(kafka_tls_dir().join(from), secret.join(to)).unwrap();
    }

    // Without the mount, the configuration names no certificate to offer the broker.
    let (bare, _) = resolve_with(Some(config_file.clone().into()), None, None).unwrap();
    assert!(!bare.properties.contains_key("ssl.certificate.location"));

    let (config, source) = resolve_with(
        Some(config_file.clone().into()),
        Some(secret.clone().into()),
        None,
    )
    .unwrap();
    assert_eq!(source, ConfigSource::Injected(config_file));
    assert_eq!(
        config.properties["ssl.certificate.location"],
        secret.join("user.crt").to_str().unwrap()
    );
    let client = EncryptionClient::with_config(config).await.unwrap();
    let producer = client.producer().unwrap();
    for i in 0..4 {
        let value = format!("order {i}");
        let mut record = OutgoingRecord::new(&topic, value.as_bytes());
        record.partition = Some(i % 2);
        producer.send_and_wait(record).await.unwrap();
    }
    let consumer = client.consumer(&unique("creds-group")).unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records arrive over mTLS")
            .unwrap();
        assert!(record.was_encrypted);
        got.push(String::from_utf8(record.value.unwrap()).unwrap());
    }
    got.sort();
    assert_eq!(got, ["order 0", "order 1", "order 2", "order 3"]);
}
