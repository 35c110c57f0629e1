//! The operator against the test bed with a keystore KmsConnection: provisioning, what the key
//! topic holds, clients through those keys, a settled object costing no writes, rollover by
//! age and by record count, growing partitions, and the conditions of invalid input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::time::{Duration, Instant};

use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_crds::{KmsRef, KmsRefKind};
use kube::api::{Patch, PatchParams};
use support::*;

#[tokio::test]
async fn an_encrypted_topic_becomes_ready_and_clients_use_its_keys() {
    let env = TestEnv::new("op-keystore").await;
    let provider = env.keystore().await;
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let mut s = env.spec("orders", 3, "keystore");
    s.tek = Some(KEYSTORE_TEK.into());
    let started = Instant::now();
    env.apply("orders", s).await;
    let obj = env.wait_ready("orders").await;
    let took = started.elapsed();
    eprintln!("Ready after {took:?}");
    let status = obj.status.unwrap();
    let topic = status.topic.clone().unwrap();
    assert_eq!(topic, env.topic_name("orders"));
    let keys = status.keys.unwrap();
    assert_eq!((keys.partitions, keys.summary.as_str()), (3, "v1"));
    assert_eq!(status.tek.unwrap().reference, KEYSTORE_TEK);

    // The key topic: the policy, and exactly one EDEK per partition at version 1.
    let snapshot = env.keys(&topic).await;
    let policy = snapshot.policy.unwrap();
    assert_eq!(
        policy.current_versions,
        [(0, 1), (1, 1), (2, 1)].into_iter().collect()
    );
    assert_eq!(policy.provider.kind, "keystore");
    let edeks: Vec<(i32, u32)> = snapshot
        .edeks
        .iter()
        .map(|e| (e.partition, e.version))
        .collect();
    assert_eq!(edeks, vec![(0, 1), (1, 1), (2, 1)]);

    // A client of the client crate produces and consumes through those keys.
    let client = env.client(provider).await;
    let sent = produce(&client, &topic, "r", 30, None).await;
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(consume(&client, &topic, 30).await, expected);

    // A settled object: poking it triggers a reconcile that writes nothing.
    let writes_before = operator.metric("kafka_e2ee_key_topic_writes_total").await;
    let reconciles_before = operator.metric("kafka_e2ee_reconciles_total").await;
    let poke = serde_json::json!({"metadata": {"labels": {"poked": "yes"}}});
    let poked = env
        .topics()
        .patch("orders", &PatchParams::default(), &Patch::Merge(&poke))
        .await
        .unwrap();
    let rv = poked.metadata.resource_version.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while operator.metric("kafka_e2ee_reconciles_total").await <= reconciles_before {
        assert!(Instant::now() < deadline, "no reconcile after the poke");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = env.topics().get("orders").await.unwrap();
    assert_eq!(after.metadata.resource_version, rv, "status was rewritten");
    assert_eq!(
        operator.metric("kafka_e2ee_key_topic_writes_total").await,
        writes_before
    );
    assert_eq!(env.keys(&topic).await.edeks.len(), 3);
    operator.kill().await;
}

#[tokio::test]
async fn an_existing_topic_is_adopted_and_its_partitions_never_shrink() {
    use kafka_e2ee_client::kafka::{TopicSpec, ensure_topic};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let env = TestEnv::new("op-adopt").await;
    let provider = env.keystore().await;
    let topic = env.topic_name("legacy");
    // A topic that existed before encryption, with a plaintext record in it.
    ensure_topic(
        &env.connection().admin().unwrap(),
        &TopicSpec {
            name: topic.clone(),
            partitions: 3,
            replication: None,
            config: Default::default(),
        },
        WAIT,
    )
    .await
    .unwrap();
    let raw: FutureProducer = env.connection().client_config().create().unwrap();
    raw.send(
        FutureRecord::<str, str>::to(&topic)
            .partition(1)
            .payload("legacy plaintext"),
        WAIT,
    )
    .await
    .unwrap();

    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let mut s = env.spec("legacy", 3, "keystore");
    s.tek = Some(KEYSTORE_TEK.into());
    s.plaintext_policy = kafka_e2ee_crds::PlaintextPolicy::Allow;
    env.apply("legacy", s.clone()).await;
    env.wait_ready("legacy").await;
    // The injected configuration lists the topic (its spec allows plaintext).
    let client = env.client_allowing_plaintext(provider, &[&topic]).await;
    produce(&client, &topic, "encrypted", 3, Some(1)).await;
    let consumer = client.consumer(&kafka_e2ee_tests::unique("adopt")).unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push((
            String::from_utf8(r.value.unwrap()).unwrap(),
            r.was_encrypted,
        ));
    }
    assert_eq!(seen[0], ("legacy plaintext".to_owned(), false));
    assert!(
        seen[1..]
            .iter()
            .all(|(v, enc)| v.starts_with("encrypted") && *enc)
    );

    // Partitions never shrink: the spec says 2, all 3 partitions keep their keys.
    s.partitions = 2;
    env.apply("legacy", s.clone()).await;
    let obj = env.wait_reason("legacy", "PartitionsExceedSpec").await;
    assert_message_mentions(&obj, "3 partitions");
    assert_eq!(
        env.keys(&topic)
            .await
            .policy
            .unwrap()
            .current_versions
            .len(),
        3
    );

    // Growing needs the broker's CreatePartitions, which the test bed's broker (tansu) lacks:
    // there the refusal is reported as such; on a broker with it, the new partition is keyed.
    s.partitions = 4;
    env.apply("legacy", s).await;
    let obj = env
        .wait_for("legacy", "grown or refused", |o| {
            matches!(ready_reason(o).as_deref(), Some("Ready" | "KafkaRefused"))
        })
        .await;
    match ready_reason(&obj).as_deref() {
        Some("KafkaRefused") => {
            let msg = ready_message(&obj);
            assert!(
                msg.contains("growing partitions") && msg.contains("UnsupportedFeature"),
                "{msg}"
            );
            assert_eq!(
                env.keys(&topic)
                    .await
                    .policy
                    .unwrap()
                    .current_versions
                    .len(),
                3
            );
        }
        _ => assert_eq!(
            env.keys(&topic)
                .await
                .policy
                .unwrap()
                .current_versions
                .len(),
            4
        ),
    }
    operator.kill().await;
}

/// The operator lists the cluster's topics at most every half count-check interval, so a
/// topic someone else creates just before its EncryptedTopic is missing from the listing: the
/// operator's create finds it, and the keys still start at its real end offsets; a topic with
/// other partitions than planned is planned again (here: more partitions than the spec).
#[tokio::test]
async fn a_topic_created_after_the_last_listing_is_read_before_keys_are_made() {
    use kafka_e2ee_client::kafka::{TopicSpec, ensure_topic};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let env = TestEnv::new("op-appeared").await;
    env.keystore().await;
    // A listing that stays fresh for the whole test.
    let operator = env.start_operator(None, &["--count-check-interval", "10m"]);
    operator.wait_ready().await;
    let mut first = env.spec("first", 1, "keystore");
    first.tek = Some(KEYSTORE_TEK.into());
    env.apply("first", first).await;
    env.wait_ready("first").await;
    let reads = operator.metric("kafka_e2ee_offset_reads_total").await;
    assert!(reads >= 1.0);

    let raw: FutureProducer = env.connection().client_config().create().unwrap();
    for (name, partitions) in [("same", 3), ("more", 4)] {
        let topic = env.topic_name(name);
        ensure_topic(
            &env.connection().admin().unwrap(),
            &TopicSpec {
                name: topic.clone(),
                partitions,
                replication: None,
                config: Default::default(),
            },
            WAIT,
        )
        .await
        .unwrap();
        for i in 0..2 {
            raw.send(
                FutureRecord::<str, str>::to(&topic)
                    .partition(1)
                    .payload(&format!("plaintext {i}")),
                WAIT,
            )
            .await
            .unwrap();
        }
        let mut s = env.spec(name, 3, "keystore");
        s.tek = Some(KEYSTORE_TEK.into());
        s.plaintext_policy = kafka_e2ee_crds::PlaintextPolicy::Allow;
        env.apply(name, s).await;
        // One at a time: a keystore TEK is shared only once its first holder is provisioned.
        let keys = if partitions == 3 {
            env.wait_ready(name).await
        } else {
            env.wait_reason(name, "PartitionsExceedSpec").await
        }
        .status
        .unwrap()
        .keys
        .unwrap();
        assert_eq!(keys.partitions, partitions, "{name}");
        let edeks = env.keys(&topic).await.edeks;
        let offsets: Vec<(i32, Option<i64>)> = edeks
            .iter()
            .map(|e| (e.partition, e.created_at_offset))
            .collect();
        // Partition 1 holds 2 records: its first DEK counts from offset 2, not 0.
        let expected: Vec<(i32, Option<i64>)> = (0..partitions)
            .map(|p| (p, Some(if p == 1 { 2 } else { 0 })))
            .collect();
        assert_eq!(offsets, expected, "{name}");
    }
    assert!(
        operator.metric("kafka_e2ee_offset_reads_total").await > reads,
        "the topics found already created were read again"
    );
    operator.kill().await;
}

#[tokio::test]
async fn keys_roll_over_by_age_and_by_record_count() {
    let env = TestEnv::new("op-rollover").await;
    let provider = env.keystore().await;
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let client = env.client(provider).await;

    // By count: 20 records per DEK; the operator checks end offsets every 2 s.
    let mut by_count = env.spec("count", 2, "keystore");
    by_count.tek = Some(KEYSTORE_TEK.into());
    by_count.dek_rollover.max_records = 20;
    let count_topic = env.topic_name("count");
    env.apply("by-count", by_count).await;
    env.wait_ready("by-count").await;
    let first = produce(&client, &count_topic, "first", 25, Some(0)).await;
    let obj = env
        .wait_for("by-count", "rolled over partition 0", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.keys.as_ref())
                .is_some_and(|k| k.max_version == 2)
        })
        .await;
    let keys = obj.status.unwrap().keys.unwrap();
    assert_eq!(
        (keys.min_version, keys.max_version),
        (1, 2),
        "only partition 0 rolled"
    );
    // The producer follows the new policy; old and new records all decrypt.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = produce(&client, &count_topic, "second", 5, Some(0)).await;
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    assert_eq!(consume(&client, &count_topic, 30).await, all);
    let versions = header_versions(&env, &count_topic, 0, 30).await;
    assert_eq!(&versions[..25], &[1; 25][..], "first 25 under v1");
    assert_eq!(&versions[25..], &[2; 5][..], "after rollover under v2");

    // By age: 5 s.
    let mut by_age = env.spec("age", 1, "keystore");
    by_age.tek = Some(KEYSTORE_TEK.into());
    by_age.dek_rollover.max_age = "5s".into();
    let age_topic = env.topic_name("age");
    env.apply("by-age", by_age).await;
    env.wait_ready("by-age").await;
    let old = produce(&client, &age_topic, "old", 5, None).await;
    env.wait_for("by-age", "rolled over by age", |o| {
        o.status
            .as_ref()
            .and_then(|s| s.keys.as_ref())
            .is_some_and(|k| k.min_version >= 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new = produce(&client, &age_topic, "new", 5, None).await;
    let mut all: Vec<String> = old.into_iter().chain(new).collect();
    all.sort();
    assert_eq!(consume(&client, &age_topic, 10).await, all);
    let versions = header_versions(&env, &age_topic, 0, 10).await;
    assert!(versions[..5].iter().all(|&v| v == 1), "{versions:?}");
    assert!(versions[5..].iter().all(|&v| v >= 2), "{versions:?}");
    let snapshot = env.keys(&age_topic).await;
    let stored: Vec<u32> = snapshot.edeks.iter().map(|e| e.version).collect();
    let expected: Vec<u32> = (1..=*stored.last().unwrap()).collect();
    assert_eq!(
        stored, expected,
        "versions contiguous, none missing or repeated"
    );
    assert!(
        operator
            .metric("kafka_e2ee_rollovers_total{trigger=\"age\"}")
            .await
            >= 1.0
    );
    assert!(
        operator
            .metric("kafka_e2ee_rollovers_total{trigger=\"count\"}")
            .await
            >= 1.0
    );
    operator.kill().await;
}

/// The DEK version in each record's `encryption_key` header, partition `partition`, in order.
async fn header_versions(env: &TestEnv, topic: &str, partition: i32, n: usize) -> Vec<u32> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = env
        .connection()
        .client_config()
        .set("group.id", kafka_e2ee_tests::unique("raw"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let header = m
                .headers()
                .unwrap()
                .iter()
                .find(|h| h.key == kafka_e2ee_client::record::KEY_HEADER)
                .unwrap();
            out.push(kafka_e2ee_client::record::decode_key_header(header.value.unwrap()).unwrap());
        }
    }
    assert_eq!(out.len(), n);
    out
}

#[tokio::test]
async fn invalid_input_gets_a_condition_naming_the_problem() {
    let env = TestEnv::new("op-invalid").await;
    env.keystore().await;
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;

    let mut bad = env.spec("too-short", 1, "keystore");
    bad.dek_rollover.max_age = "1s".into();
    env.apply("too-short", bad).await;
    let obj = env.wait_reason("too-short", "InvalidSpec").await;
    assert_message_mentions(&obj, "spec.dekRollover.maxAge");

    let mut missing = env.spec("no-kms", 1, "nowhere");
    missing.kms_ref = KmsRef {
        kind: KmsRefKind::ClusterKmsConnection,
        name: "nowhere".into(),
    };
    env.apply("no-kms", missing).await;
    let obj = env.wait_reason("no-kms", "KmsConnectionNotFound").await;
    assert_message_mentions(&obj, "nowhere");

    // The keystore has no such alias: the KMS says so, and nothing is written.
    let mut unknown = env.spec("no-tek", 1, "keystore");
    unknown.tek = Some("no-such-alias".into());
    env.apply("no-tek", unknown).await;
    let obj = env.wait_reason("no-tek", "KmsDenied").await;
    assert_message_mentions(&obj, "no-such-alias");
    let topic_keys = env.keys(&env.topic_name("no-tek")).await;
    assert!(topic_keys.policy.is_none() && topic_keys.edeks.is_empty());

    // Two objects claiming one Kafka topic: the newer one is refused.
    let mut first = env.spec("shared", 1, "keystore");
    first.tek = Some(KEYSTORE_TEK.into());
    env.apply("first-claim", first.clone()).await;
    env.wait_ready("first-claim").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.apply("second-claim", first).await;
    let obj = env.wait_reason("second-claim", "TopicConflict").await;
    assert_message_mentions(&obj, "first-claim");
    operator.kill().await;
}
