//! A KMS outage for real: the test bed's OpenBao process is frozen (SIGSTOP: connections are
//! accepted, nothing answers, as with a hung server) and thawed again.
//!
//! With warm caches nothing notices; with cold caches callers get a typed `Unavailable` within
//! the configured bound after a bounded number of KMS attempts (counted by the metrics), and
//! everything recovers when the server does. Its own test binary, so no other test sees the
//! outage.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use kafka_e2ee_client::config::{ClientConfig, EncryptionClient, ProviderConfig};
use kafka_e2ee_client::dek_cache::{DekCache, DekCacheConfig, DekCacheError};
use kafka_e2ee_client::engine::Aes256Gcm;
use kafka_e2ee_client::key_management::generate_edek;
use kafka_e2ee_client::key_records::PlaintextPolicy;
use kafka_e2ee_client::nonce::MAX_RECORDS_PER_DEK;
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_client::resilient::{KmsMetrics, ResiliencePolicy, Resilient};
use kafka_e2ee_client::vault::{VaultSettings, VaultTransit};
use kafka_e2ee_tests::fixture::{Fixture, TekRef};
use kafka_e2ee_tests::{Server, env, require, unique};

/// Freezes a process until dropped (also when the test panics).
struct Frozen(String);

impl Frozen {
    fn vault() -> Self {
        let run = env(Server::Vault, "KE_TESTBED_RUN");
        let pid = std::fs::read_to_string(format!("{run}/vault.pid")).unwrap();
        let pid = pid.trim().to_owned();
        assert!(
            std::process::Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success()
        );
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0])
            .status();
    }
}

/// The tests here freeze the shared server: one at a time.
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn vault_settings() -> VaultSettings {
    kafka_e2ee_tests::bed::vault_settings(kafka_e2ee_tests::bed::vault_root_auth())
}

#[tokio::test]
async fn a_kms_outage_is_invisible_when_warm_bounded_when_cold_and_recovers() {
    let _one = ONE_OUTAGE_AT_A_TIME.lock().await;
    let policy = ResiliencePolicy {
        attempt_timeout: Duration::from_millis(300),
        max_attempts: 3,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        rate_per_second: 20.0,
        burst: 5,
    };
    let metrics = KmsMetrics::default();
    let vault = VaultTransit::new(&vault_settings()).unwrap();
    let provider = Resilient::new(vault, policy, metrics.clone());
    let tek = unique("outage-tek");
    provider.create_tek(&tek).await.unwrap();
    let mut edeks = Vec::new();
    for partition in 0..3 {
        edeks.push(
            generate_edek(&provider, &tek, "orders", partition, 1)
                .await
                .unwrap(),
        );
    }
    let cache = Arc::new(DekCache::new(
        &provider,
        Box::new(Aes256Gcm),
        DekCacheConfig::default(),
    ));
    // Warm: partitions 0 and 1. Cold: partition 2.
    cache.get(&edeks[0]).await.unwrap();
    cache.get(&edeks[1]).await.unwrap();
    let calls = || metrics.calls("vault", "unwrap_dek");
    let before = calls();

    let frozen = Frozen::vault();
    // Warm caches: a sustained window of lookups, every one served, no KMS call.
    let window = Instant::now();
    let mut served = 0u64;
    while window.elapsed() < Duration::from_secs(2) {
        for edek in &edeks[..2] {
            cache.get(edek).await.unwrap();
            served += 1;
        }
    }
    assert!(served > 10_000, "{served} lookups served");
    assert_eq!(calls(), before, "warm lookups never reach the KMS");

    // Cold cache: 50 callers at once get a typed Unavailable within the policy's bound, after
    // at most max_attempts KMS attempts in all.
    let started = Instant::now();
    let mut waiting = Vec::new();
    for _ in 0..50 {
        waiting.push(cache.get(&edeks[2]));
    }
    let results = futures::future::join_all(waiting).await;
    let elapsed = started.elapsed();
    for result in &results {
        assert!(
            matches!(
                result,
                Err(DekCacheError::Provider {
                    source: ProviderError::Unavailable { .. },
                    partition: 2,
                    ..
                })
            ),
            "{:?}",
            result.as_ref().err()
        );
    }
    assert!(
        elapsed <= policy.worst_case() + Duration::from_millis(500),
        "gave up after {elapsed:?}"
    );
    assert_eq!(
        calls() - before,
        u64::from(policy.max_attempts),
        "50 waiting callers cost one attempt sequence"
    );
    assert_eq!(
        metrics.errors("vault", "unwrap_dek", "unavailable"),
        u64::from(policy.max_attempts)
    );

    // Recovery: the server comes back, the remembered failure expires, the key unwraps.
    drop(frozen);
    tokio::time::sleep(DekCacheConfig::default().error_ttl).await;
    let recovered = Instant::now();
    loop {
        match cache.get(&edeks[2]).await {
            Ok(_) => break,
            Err(_) if recovered.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no recovery: {e:?}"),
        }
    }
}

/// The whole client path on Vault: configured from a client file (Vault kind, token file),
/// producing and consuming through the broker while Vault is frozen.
#[tokio::test]
async fn producers_and_consumers_on_warm_caches_ride_out_a_kms_outage() {
    let _one = ONE_OUTAGE_AT_A_TIME.lock().await;
    let mut fx = Fixture::new("outage").await.unwrap();
    let vault = VaultTransit::new(&vault_settings()).unwrap();
    let tek = unique("outage-client-tek");
    vault.create_tek(&tek).await.unwrap();
    let topic = fx
        .encrypt_topic_with(
            TekRef {
                provider: &vault,
                kind: "vault",
                tek: &tek,
            },
            "outage",
            2,
            PlaintextPolicy::Reject,
            MAX_RECORDS_PER_DEK,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(unique("vault-token"));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, env(Server::Vault, "VAULT_TOKEN")).unwrap();
    let mut config = ClientConfig::new(
        fx.connection.bootstrap_servers.clone(),
        ProviderConfig::Vault {
            address: require(Server::Vault),
            mount: "transit".into(),
            namespace: None,
            token_file: Some(token_file),
            kubernetes_auth: None,
            ca_file: Some(kafka_e2ee_tests::bed::vault_ca_file()),
        },
        vec![fx.trusted_key.clone()],
    );
    config.key_topic = fx.key_topic.clone();
    config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let client = EncryptionClient::with_config(config).await.unwrap();
    client
        .key_directory()
        .wait_caught_up(Duration::from_secs(10))
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let producer = client.producer().unwrap();
    let consumer = client.consumer(&unique("outage")).unwrap();
    consumer.subscribe(&[&topic]).unwrap();

    // Warm up: one record per partition each way.
    for partition in 0..2 {
        producer
            .send_and_wait(OutgoingRecord {
                partition: Some(partition),
                ..OutgoingRecord::new(&topic, b"warm-up")
            })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap()
            .unwrap();
    }

    let frozen = Frozen::vault();
    let window = Instant::now();
    let mut sent = 0usize;
    while window.elapsed() < Duration::from_secs(3) {
        let value = format!("during-the-outage-{sent:06}");
        producer
            .send_and_wait(OutgoingRecord::new(&topic, value.as_bytes()))
            .await
            .unwrap();
        sent += 1;
    }
    for i in 0..sent {
        let record = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(record.was_encrypted, "record {i}");
        assert!(record.value.unwrap().starts_with(b"during-the-outage-"));
    }
    drop(frozen);
    assert!(
        sent > 100,
        "{sent} records produced and consumed during the outage"
    );
}
