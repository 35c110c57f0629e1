//! Upgrading from a version that wrote unsigned key records loses nothing: the operator never
//! writes over their record keys, and `kafka-e2ee-operator adopt-key-records` signs them once,
//! after which data sealed under them opens again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::collections::BTreeMap;
use std::process::Output;

use kafka_e2ee_client::config::ProviderConfig;
use kafka_e2ee_client::consumer::ConsumeError;
use kafka_e2ee_client::engine::{Aes256Gcm, EncryptionEngine};
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::kafka::{TopicSpec, ensure_topic};
use kafka_e2ee_client::key_management::{ensure_key_topic, generate_edek};
use kafka_e2ee_client::key_records::{PlaintextPolicy, PolicyRecord, ProviderRef, edek_key};
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::nonce::{MAX_RECORDS_PER_DEK, NonceSequence};
use kafka_e2ee_client::provider::{DekContext, KeyProvider};
use kafka_e2ee_client::record::{KEY_HEADER, PartitionSealer, RecordLocation};
use kafka_e2ee_client::signing::SIGNATURE_HEADER;
use kafka_e2ee_tests::attacker::{Raw, header, inject, last_stored};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use support::*;

/// Runs `kafka-e2ee-operator adopt-key-records` against this env.
async fn adopt(env: &TestEnv, dry_run: bool) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-e2ee-operator"));
    cmd.args([
        "adopt-key-records",
        "--bootstrap-servers",
        &env.bootstrap,
        "--key-topic",
        &env.key_topic,
        "--namespace",
        &env.namespace,
    ]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn unsigned_records_are_never_overwritten_and_adoption_makes_their_data_readable() {
    let env = TestEnv::new("op-upgrade").await;
    let provider = env.keystore().await;
    let ProviderConfig::Keystore { path } = &provider else {
        panic!("keystore")
    };
    let keystore = LocalKeystore::from_file(path).unwrap();
    let connection = env.connection();
    let topic = env.topic_name("legacy");

    // What the previous version left behind: the topic, unsigned EDEKs and policy, and a
    // record sealed under v1 of partition 0.
    ensure_topic(
        &connection.admin().unwrap(),
        &TopicSpec {
            name: topic.clone(),
            partitions: 2,
            replication: None,
            config: BTreeMap::new(),
        },
        WAIT,
    )
    .await
    .unwrap();
    ensure_key_topic(&connection, &env.key_topic, None)
        .await
        .unwrap();
    let mut policy = PolicyRecord {
        topic: topic.clone(),
        provider: ProviderRef {
            kind: "keystore".into(),
            tek: KEYSTORE_TEK.into(),
            config: BTreeMap::new(),
        },
        engine: "AES-256-GCM".into(),
        plaintext: PlaintextPolicy::Reject,
        max_records_per_dek: MAX_RECORDS_PER_DEK,
        current_versions: BTreeMap::new(),
    };
    for partition in 0..2 {
        let edek = generate_edek(&keystore, KEYSTORE_TEK, &topic, partition, 1)
            .await
            .unwrap();
        let (key, value) = edek.encode().unwrap();
        inject(
            &connection,
            Raw::to(&env.key_topic, Some(key.as_bytes()), Some(&value)),
        )
        .await;
        policy.current_versions.insert(partition, 1);
    }
    let (key, value) = policy.encode().unwrap();
    inject(
        &connection,
        Raw::to(&env.key_topic, Some(key.as_bytes()), Some(&value)),
    )
    .await;
    let stored = last_stored(&connection, &env.key_topic, &edek_key(&topic, 0, 1));
    let stored_edek = match kafka_e2ee_client::key_records::decode(
        rdkafka::Message::key(&stored).unwrap(),
        rdkafka::Message::payload(&stored),
    )
    .unwrap()
    {
        kafka_e2ee_client::key_records::KeyRecord::Edek(e) => e,
        other => panic!("{other:?}"),
    };
    let slot = DekContext {
        topic: &topic,
        partition: 0,
        version: 1,
    };
    let dek = keystore
        .unwrap_dek(KEYSTORE_TEK, slot, &stored_edek.edek)
        .await
        .unwrap();
    let sealer = PartitionSealer::new(
        Aes256Gcm.prepare(&dek).unwrap(),
        NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap(),
        RecordLocation {
            topic: &topic,
            partition: 0,
        },
        1,
    );
    let sealed = sealer
        .seal(None, &[], b"written before the upgrade")
        .unwrap();
    let old_at = inject(
        &connection,
        Raw::to(&topic, None, Some(&sealed)).header(KEY_HEADER, sealer.key_header()),
    )
    .await;

    // The upgraded operator believes none of it; it provisions around it, never over it.
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let dry = adopt(&env, true).await;
    let listed = String::from_utf8(dry.stdout).unwrap();
    for key in [edek_key(&topic, 0, 1), edek_key(&topic, 1, 1)] {
        assert!(listed.contains(&format!("would sign {key}")), "{listed}");
    }
    let mut spec = env.spec("legacy", 2, "keystore");
    spec.tek = Some(KEYSTORE_TEK.into());
    env.apply("legacy", spec).await;
    let obj = env.wait_ready("legacy").await;
    assert_eq!(
        obj.status.unwrap().keys.unwrap().summary,
        "v2",
        "v1 is occupied: skipped"
    );
    let untouched = last_stored(&connection, &env.key_topic, &edek_key(&topic, 0, 1));
    assert_eq!(
        header(&untouched, SIGNATURE_HEADER),
        None,
        "the unsigned v1 is still the last"
    );
    let client = env.client(provider.clone()).await;
    let read_old = |client: &kafka_e2ee_client::config::EncryptionClient| {
        let consumer = client
            .consumer(&kafka_e2ee_tests::unique("legacy"))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(old_at))
            .unwrap();
        rdkafka::consumer::Consumer::assign(consumer.inner(), &tpl).unwrap();
        async move { tokio::time::timeout(WAIT, consumer.recv()).await.unwrap() }
    };
    match read_old(&client).await {
        Err(ConsumeError::UnknownKey { version: 1, .. }) => {}
        other => panic!("before adoption: {other:?}"),
    }

    // Adoption signs the unsigned EDEKs; the policy was superseded by the operator's own.
    let done = adopt(&env, false).await;
    let report = String::from_utf8(done.stdout).unwrap();
    assert!(
        report.contains(&format!("signed {}", edek_key(&topic, 0, 1))),
        "{report}"
    );
    assert!(report.contains("2 key record(s) signed"), "{report}");
    let fresh = env.client(provider).await;
    let opened = read_old(&fresh).await.unwrap();
    assert_eq!(
        opened.value.as_deref(),
        Some(&b"written before the upgrade"[..])
    );
    // Running it again finds nothing left to sign.
    let again = String::from_utf8(adopt(&env, false).await.stdout).unwrap();
    assert!(again.contains("0 key record(s) signed"), "{again}");
    operator.kill().await;
}
