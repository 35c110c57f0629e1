//! The operator's signing key rotates with overlap: a new key is published before it signs,
//! every key record is signed again, the old key is retired. Clients that follow their
//! configuration file (as the kubelet refreshes the mounted ConfigMap) see no error at any
//! point, and a crash at any step of the rotation is resumed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kafka_e2ee_client::config::{ClientConfig, EncryptionClient};
use kafka_e2ee_client::key_directory::{KeyDirectory, Trust};
use kafka_e2ee_client::signing::{PublicKey, TrustedKeys};
use kafka_e2ee_operator::crash::ROTATION_POINTS;
use kafka_e2ee_operator::signing_keys::SECRET_KEY;
use kafka_e2ee_tests::traffic::{Traffic, assert_read_in_order};
use kafka_e2ee_tests::unique;
use kube::api::Api;
use support::*;

const SIGNING_SECRET: &str = "kafka-e2ee-signing-keys";

/// Fast rotation: a key signs for `period`, with `overlap` on each side.
fn rotation_flags(period: &'static str, overlap: &'static str) -> [&'static str; 4] {
    [
        "--signing-key-rotation",
        period,
        "--signing-key-overlap",
        overlap,
    ]
}

/// The states of the stored keys (`Next`, `Active`, `Retiring`, `Retired`), oldest first.
async fn stored_states(env: &TestEnv) -> Vec<String> {
    let secret = Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .get(SIGNING_SECRET)
        .await
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&secret.data.unwrap()[SECRET_KEY].0).unwrap();
    json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the rotation has retired the first key and published only its successor.
async fn wait_rotated(env: &TestEnv, first: &[PublicKey], within: Duration) -> Vec<PublicKey> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let published = env.trusted_keys().await;
        let states = stored_states(env).await;
        if published.len() == 1
            && published != first
            && states.first().map(String::as_str) == Some("Retired")
        {
            // One key signs: the older ones are retired (a test may have rotated several
            // times) and, with a fast period, the next may already be prepared (stored as Next)
            // between the two reads above.
            let active = states.iter().position(|s| s == "Active");
            let active = active.unwrap_or_else(|| panic!("no active key: {states:?}"));
            assert!(
                states[..active].iter().all(|s| s == "Retired"),
                "{states:?}"
            );
            assert!(
                states[active + 1..].iter().all(|s| s == "Next"),
                "{states:?}"
            );
            return published;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not rotated: {:?}",
            stored_states(env).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A reader that trusts only `keys`, read to the end of the key topic.
async fn directory_trusting(env: &TestEnv, keys: Vec<PublicKey>) -> KeyDirectory {
    let dir = KeyDirectory::start(
        &env.connection(),
        &env.key_topic,
        Trust {
            keys: TrustedKeys::new(keys),
            ..Trust::default()
        },
    )
    .await
    .unwrap();
    dir.sync(WAIT).await.unwrap();
    dir
}

/// Keeps a client configuration file in step with the operator's published keys, as the
/// kubelet keeps a mounted ConfigMap in step.
fn follow_published_keys(
    env: &TestEnv,
    path: PathBuf,
    base: ClientConfig,
) -> tokio::task::JoinHandle<()> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), &env.namespace);
    tokio::spawn(async move {
        let mut written = Vec::new();
        loop {
            if let Ok(Some(cm)) = api
                .get_opt(kafka_e2ee_operator::signing_keys::TRUSTED_KEYS_CONFIGMAP)
                .await
                && let Some(text) = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(kafka_e2ee_operator::signing_keys::TRUSTED_KEYS_KEY))
            {
                let keys = kafka_e2ee_operator::signing_keys::parse_trusted_keys(text).unwrap();
                if keys != written {
                    let mut config = base.clone();
                    config.trusted_keys = keys.clone();
                    let tmp = path.with_extension("tmp");
                    std::fs::write(&tmp, serde_yaml::to_string(&config).unwrap()).unwrap();
                    std::fs::rename(&tmp, &path).unwrap();
                    written = keys;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test]
async fn the_signing_key_rotates_with_overlap_and_clients_follow_without_an_error() {
    let env = TestEnv::new("op-signing").await;
    let provider = env.keystore().await;
    let operator = env.start_operator(None, &rotation_flags("10s", "3s"));
    operator.wait_ready().await;
    let mut spec = env.spec("orders", 1, "keystore");
    spec.tek = Some(KEYSTORE_TEK.into());
    env.apply("orders", spec).await;
    let topic = env
        .wait_ready("orders")
        .await
        .status
        .unwrap()
        .topic
        .unwrap();
    let first = env.trusted_keys().await;
    assert_eq!(first.len(), 1);
    assert_eq!(stored_states(&env).await, ["Active"]);

    // An application configured from a file that follows the published keys.
    let dir = std::env::temp_dir().join(unique("op-signing"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.yaml");
    let mut base = ClientConfig::new(&env.bootstrap, provider.clone(), first.clone());
    base.key_topic = env.key_topic.clone();
    base.properties
        .insert("auto.offset.reset".into(), "earliest".into());
    std::fs::write(&path, serde_yaml::to_string(&base).unwrap()).unwrap();
    let following = follow_published_keys(&env, path.clone(), base);
    let client = Arc::new(
        EncryptionClient::from_file(&path, Duration::from_millis(200))
            .await
            .unwrap(),
    );
    let traffic = Traffic::start(Arc::clone(&client), &topic, Duration::from_millis(20));

    let second = wait_rotated(&env, &first, Duration::from_secs(60)).await;
    // Let the clients take in the retirement too, then a little more traffic.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = traffic.stop().await;
    following.abort();
    assert!(sent > 100, "only {sent} records");
    assert_read_in_order(&client, &topic, sent).await;
    // Every live record is signed by the new key: a reader trusting only it sees them all.
    let keys = directory_trusting(&env, second).await.topic_keys(&topic);
    assert!(keys.policy.is_some());
    assert_eq!(keys.edeks.len(), 1);
    assert_eq!(
        operator
            .metric("kafka_e2ee_signing_key_rotation_steps_total")
            .await,
        3.0
    );
    assert!(
        operator
            .metric("kafka_e2ee_key_records_resigned_total")
            .await
            >= 2.0
    );
    std::fs::remove_dir_all(dir).unwrap();
    operator.kill().await;
}

#[tokio::test]
async fn a_crash_at_any_rotation_step_is_resumed() {
    for point in ROTATION_POINTS {
        let env = TestEnv::new("op-signing-crash").await;
        env.keystore().await;
        let flags = rotation_flags("4s", "1s");
        let mut crashing = env.start_operator(Some(point), &flags);
        crashing.wait_ready().await;
        let mut spec = env.spec("orders", 2, "keystore");
        spec.tek = Some(KEYSTORE_TEK.into());
        env.apply("orders", spec).await;
        let topic = env
            .wait_ready("orders")
            .await
            .status
            .unwrap()
            .topic
            .unwrap();
        let first = env.trusted_keys().await;
        assert!(
            crashing.wait_for_crash(Duration::from_secs(60)).await,
            "{point}: no crash"
        );
        let operator = env.start_operator(None, &flags);
        operator.wait_ready().await;
        let second = wait_rotated(&env, &first, Duration::from_secs(60)).await;
        let keys = directory_trusting(&env, second).await.topic_keys(&topic);
        let versions: BTreeSet<(i32, u32)> = keys
            .edeks
            .iter()
            .map(|e| (e.partition, e.version))
            .collect();
        assert_eq!(versions, BTreeSet::from([(0, 1), (1, 1)]), "{point}");
        assert!(keys.policy.is_some(), "{point}");
        env.wait_ready("orders").await;
        operator.kill().await;
    }
}
