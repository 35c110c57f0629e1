//! The client encryption path end to end on the test bed's broker: EncryptingProducer ->
//! broker -> DecryptingConsumer, with the keys provisioned through the key topic as the
//! operator will do it, and a raw consumer checking what the broker actually stores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kafka_e2ee_client::config::{ClientConfig, EncryptionClient};
use kafka_e2ee_client::consumer::{
    ConsumeError, ConsumedRecord, ConsumerSettings, DecryptingConsumer,
};
use kafka_e2ee_client::dek_cache::{DekCache, DekCacheConfig, DekCacheError};
use kafka_e2ee_client::engine::{Aes256Gcm, EncryptionEngine};
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::key_directory::{KeyDirectory, KeyLookupError};
use kafka_e2ee_client::key_management::generate_edek;
use kafka_e2ee_client::key_records::PlaintextPolicy;
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::nonce::{MAX_RECORDS_PER_DEK, NonceSequence};
use kafka_e2ee_client::partitioner::partition_for_key;
use kafka_e2ee_client::producer::{
    EncryptingProducer, OutgoingRecord, ProduceError, ProducerSettings,
};
use kafka_e2ee_client::provider::{DekContext, KeyProvider, ProviderError};
use kafka_e2ee_client::record::{
    Header, KEY_HEADER, PartitionSealer, RecordError, RecordLocation, TOMBSTONE_AUTH_LEN,
};
use kafka_e2ee_tests::fixture::{Counting, Fixture, TEK};
use kafka_e2ee_tests::unique;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(10);

struct Pipeline {
    producer: EncryptingProducer<Counting<LocalKeystore>>,
    consumer: DecryptingConsumer<Counting<LocalKeystore>>,
    unwraps: Arc<AtomicUsize>,
}

/// Producer and consumer sharing one key directory and one counting DEK cache.
async fn pipeline(fx: &Fixture, key_wait: Duration) -> Pipeline {
    pipeline_with(fx, key_wait, DekCacheConfig::default()).await
}

async fn pipeline_with(fx: &Fixture, key_wait: Duration, cache: DekCacheConfig) -> Pipeline {
    let keys = Arc::new(
        KeyDirectory::start(&fx.connection, &fx.key_topic, fx.trust())
            .await
            .unwrap(),
    );
    // Startup reads the key topic once; key_wait then bounds only later lookups.
    keys.wait_caught_up(WAIT).await.unwrap();
    let unwraps = Arc::new(AtomicUsize::new(0));
    let provider = Counting::new(
        LocalKeystore::from_file(&fx.keystore_path).unwrap(),
        Arc::clone(&unwraps),
    );
    let deks = Arc::new(DekCache::new(provider, Box::new(Aes256Gcm), cache));
    let producer = EncryptingProducer::new(
        &fx.connection,
        Arc::clone(&keys),
        Arc::clone(&deks),
        ProducerSettings {
            key_wait,
            ..ProducerSettings::default()
        },
    )
    .unwrap();
    let mut conn = fx.connection.clone();
    conn.properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let consumer = DecryptingConsumer::new(
        &conn,
        &unique("group"),
        keys,
        deks,
        ConsumerSettings { key_wait },
    )
    .unwrap();
    Pipeline {
        producer,
        consumer,
        unwraps,
    }
}

/// Assigns every partition of `topic` from the beginning (no group rebalance to wait for).
fn assign_all(consumer: &StreamConsumer, topic: &str, partitions: i32) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
}

/// Every record the broker holds for `topic`, as stored (no decryption).
fn raw_records(fx: &Fixture, topic: &str, partitions: i32, expected: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = fx
        .connection
        .client_config()
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.unwrap().detach());
        }
    }
    assert_eq!(out.len(), expected, "raw records of {topic}");
    out
}

fn raw_producer(fx: &Fixture) -> FutureProducer {
    fx.connection.client_config().create().unwrap()
}

/// A test record: varied keys, headers (repeated, null, empty) and values (empty, binary).
fn sample(i: usize) -> (Option<Vec<u8>>, Vec<Header>, Option<Vec<u8>>) {
    let key = (!i.is_multiple_of(3)).then(|| format!("customer-{:04}", i % 37).into_bytes());
    let headers = match i % 4 {
        0 => vec![],
        1 => vec![Header {
            key: "trace-id".into(),
            value: Some(format!("trace-secret-{i:06}").into_bytes()),
        }],
        2 => vec![
            Header {
                key: "dup".into(),
                value: Some(b"one".to_vec()),
            },
            Header {
                key: "dup".into(),
                value: None,
            },
            Header {
                key: "".into(),
                value: Some(vec![]),
            },
        ],
        _ => vec![Header {
            key: "bin".into(),
            value: Some(vec![0, 255, 1, 254]),
        }],
    };
    let value = match i % 10 {
        // Tombstones only for keyed records without headers (a keyed record, i % 3 != 0).
        7 if key.is_some() => None,
        5 => Some(vec![]),
        _ => Some(format!("plaintext-value-{i:06}-{}", "x".repeat(i % 200)).into_bytes()),
    };
    let headers = if value.is_none() { vec![] } else { headers };
    (key, headers, value)
}

#[tokio::test]
async fn records_round_trip_exactly_and_the_broker_holds_no_plaintext() {
    let mut fx = Fixture::new("e2e").await.unwrap();
    let partitions = 3;
    let topic = fx.reject_topic("e2e-orders", partitions).await;
    let pipe = pipeline(&fx, WAIT).await;

    let n = 600;
    let mut sent = HashMap::new();
    let mut deliveries = Vec::new();
    for i in 0..n {
        let (key, headers, value) = sample(i);
        let record = OutgoingRecord {
            topic: &topic,
            partition: None,
            key: key.as_deref(),
            headers: &headers,
            value: value.as_deref(),
            timestamp_ms: Some(1_795_000_000_000 + i as i64),
        };
        let delivery = pipe.producer.send(record).await.unwrap();
        if let Some(k) = &key {
            assert_eq!(
                delivery.partition(),
                partition_for_key(k, partitions as u32),
                "murmur2 partition"
            );
        }
        deliveries.push((i, delivery));
    }
    for (i, d) in deliveries {
        let at = d.wait().await.unwrap();
        sent.insert((at.partition, at.offset), i);
    }
    let tombstones = (0..n).filter(|&i| sample(i).2.is_none()).count();
    assert!(tombstones > 10, "the sample includes tombstones");

    assign_all(pipe.consumer.inner(), &topic, partitions);
    let mut received = 0;
    while received < n {
        let r = tokio::time::timeout(WAIT, pipe.consumer.recv())
            .await
            .unwrap()
            .unwrap();
        let i = sent[&(r.partition, r.offset)];
        let (key, headers, value) = sample(i);
        assert_eq!(
            (&r.key, &r.headers, &r.value),
            (&key, &headers, &value),
            "record {i}"
        );
        assert_eq!(r.timestamp_ms, Some(1_795_000_000_000 + i as i64));
        assert!(r.was_encrypted, "sealed, or for a tombstone authenticated");
        received += 1;
    }
    assert_eq!(
        pipe.unwraps.load(Ordering::SeqCst),
        partitions as usize,
        "one unwrap per (partition, version) for {n} records"
    );

    // What the broker stores: keys in the clear, exactly one key header, no plaintext.
    let raw = raw_records(&fx, &topic, partitions, n);
    let secrets: Vec<Vec<u8>> = (0..n)
        .flat_map(|i| {
            let (_, headers, value) = sample(i);
            value
                .into_iter()
                .chain(headers.into_iter().filter_map(|h| h.value))
                .filter(|v| v.len() >= 8)
        })
        .collect();
    for m in &raw {
        let i = sent[&(m.partition(), m.offset())];
        assert_eq!(
            m.key().map(<[u8]>::to_vec),
            sample(i).0,
            "record key stays plaintext"
        );
        let Some(value) = m.payload() else {
            // A tombstone carries only its key reference and authenticator (nonce, tag).
            let headers = m.headers().unwrap();
            assert_eq!(headers.count(), 1);
            assert_eq!(headers.get(0).key, KEY_HEADER);
            assert_eq!(headers.get(0).value.unwrap().len(), 2 + TOMBSTONE_AUTH_LEN);
            continue;
        };
        let headers = m.headers().unwrap();
        assert_eq!(headers.count(), 1);
        assert_eq!(headers.get(0).key, KEY_HEADER);
        for secret in &secrets {
            assert!(
                !value.windows(secret.len()).any(|w| w == secret.as_slice()),
                "plaintext found on the broker"
            );
        }
        assert!(!value.windows(9).any(|w| w == b"plaintext"));
        assert!(!value.windows(5).any(|w| w == b"trace"));
    }
}

#[tokio::test]
async fn keyed_records_land_where_librdkafka_murmur2_puts_them() {
    let mut fx = Fixture::new("murmur").await.unwrap();
    let partitions = 7;
    let encrypted = fx.reject_topic("murmur-enc", partitions).await;
    let plain = fx.reject_topic("murmur-plain", partitions).await;
    let pipe = pipeline(&fx, WAIT).await;
    // librdkafka's murmur2_random is documented as Java-compatible for keyed records.
    let java_like: FutureProducer = fx
        .connection
        .client_config()
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for i in 0..100 {
        let key = format!("key-{i}-{}", "k".repeat(i % 9));
        let ours = pipe
            .producer
            .send_and_wait(OutgoingRecord {
                key: Some(key.as_bytes()),
                ..OutgoingRecord::new(&encrypted, b"v")
            })
            .await
            .unwrap();
        let theirs = java_like
            .send(FutureRecord::to(&plain).key(&key).payload("v"), WAIT)
            .await
            .unwrap();
        assert_eq!(ours.partition, theirs.partition, "key {key}");
    }
}

/// A tampered or out-of-place record on the broker, and the error it must produce.
struct Case {
    name: &'static str,
    partition: i32,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    value: Option<Vec<u8>>,
    expect: fn(&ConsumeError) -> bool,
}

#[tokio::test]
async fn tampered_moved_and_unknown_records_fail_typed_and_are_never_skipped() {
    let mut fx = Fixture::new("tamper").await.unwrap();
    let topic = fx.reject_topic("tamper", 2).await;
    let other = fx.reject_topic("tamper-other", 2).await;
    let pipe = pipeline(&fx, Duration::from_millis(700)).await;

    // One genuine record per topic, then copies of it altered on the way to the broker.
    let good = |t: &str| {
        let t = t.to_owned();
        let producer = &pipe.producer;
        async move {
            producer
                .send_and_wait(OutgoingRecord {
                    topic: &t,
                    partition: Some(0),
                    key: Some(b"order-1"),
                    headers: &[Header {
                        key: "h".into(),
                        value: Some(b"v".to_vec()),
                    }],
                    value: Some(b"the genuine value"),
                    timestamp_ms: None,
                })
                .await
                .unwrap()
        }
    };
    let original = good(&topic).await;
    let other_original = good(&other).await;
    let raw = raw_records(&fx, &topic, 1, 1).remove(0);
    let other_raw = raw_records(&fx, &other, 1, 1).remove(0);
    assert_eq!((original.offset, other_original.offset), (0, 0));
    let value = raw.payload().unwrap().to_vec();
    let key_header = raw.headers().unwrap().get(0).value.unwrap().to_vec();
    let kh = |v: &[u8]| vec![(KEY_HEADER.to_owned(), Some(v.to_vec()))];
    let flipped = |at: usize| {
        let mut v = value.clone();
        v[at] ^= 0x01;
        v
    };
    let tampered = |e: &ConsumeError| matches!(e, ConsumeError::Tampered { .. });
    let mut cases = vec![
        Case {
            name: "flip in nonce",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&key_header),
            value: Some(flipped(3)),
            expect: tampered,
        },
        Case {
            name: "flip in ciphertext",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&key_header),
            value: Some(flipped(14)),
            expect: tampered,
        },
        Case {
            name: "flip in tag",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&key_header),
            value: Some(flipped(value.len() - 1)),
            expect: tampered,
        },
        Case {
            name: "truncated",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&key_header),
            value: Some(value[..20].to_vec()),
            expect: tampered,
        },
        Case {
            name: "record key changed",
            partition: 0,
            key: Some(b"order-2".to_vec()),
            headers: kh(&key_header),
            value: Some(value.clone()),
            expect: tampered,
        },
        Case {
            name: "record key removed",
            partition: 0,
            key: None,
            headers: kh(&key_header),
            value: Some(value.clone()),
            expect: tampered,
        },
        Case {
            name: "moved to another partition",
            partition: 1,
            key: Some(b"order-1".to_vec()),
            headers: kh(&key_header),
            value: Some(value.clone()),
            expect: tampered,
        },
        Case {
            name: "key header names an unknown version",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&[1, 9]),
            value: Some(value.clone()),
            expect: |e| {
                matches!(
                    e,
                    ConsumeError::UnknownKey {
                        version: 9,
                        source: KeyLookupError::UnknownKey { .. },
                        ..
                    }
                )
            },
        },
        Case {
            name: "key header malformed",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&[1, 0x80]),
            value: Some(value.clone()),
            expect: |e| {
                matches!(
                    e,
                    ConsumeError::Malformed {
                        source: RecordError::MalformedKeyHeader,
                        ..
                    }
                )
            },
        },
        Case {
            name: "future record format",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&[2, 1]),
            value: Some(value.clone()),
            expect: |e| {
                matches!(
                    e,
                    ConsumeError::Malformed {
                        source: RecordError::UnsupportedFormat(2),
                        ..
                    }
                )
            },
        },
        Case {
            name: "duplicate key header",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: [kh(&key_header), kh(&key_header)].concat(),
            value: Some(value.clone()),
            expect: |e| {
                matches!(
                    e,
                    ConsumeError::Malformed {
                        source: RecordError::DuplicateKeyHeader(2),
                        ..
                    }
                )
            },
        },
        Case {
            name: "unencrypted header added",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: [
                kh(&key_header),
                vec![("injected".into(), Some(b"x".to_vec()))],
            ]
            .concat(),
            value: Some(value.clone()),
            expect: |e| matches!(e, ConsumeError::UnauthenticatedHeaders { count: 1, .. }),
        },
        Case {
            name: "plaintext on a reject topic",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: vec![],
            value: Some(b"plaintext".to_vec()),
            expect: |e| matches!(e, ConsumeError::PlaintextRejected { .. }),
        },
        Case {
            name: "key header with a padded varint",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&[1, 0x81, 0x00]),
            value: Some(value.clone()),
            expect: |e| {
                matches!(
                    e,
                    ConsumeError::Malformed {
                        source: RecordError::MalformedKeyHeader,
                        ..
                    }
                )
            },
        },
        Case {
            name: "tombstone without an authenticator",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: vec![],
            value: None,
            expect: |e| matches!(e, ConsumeError::UnauthenticatedTombstone { .. }),
        },
        Case {
            name: "tombstone with a forged authenticator",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&[[1u8, 1].as_slice(), &[0x5a; TOMBSTONE_AUTH_LEN]].concat()),
            value: None,
            expect: tampered,
        },
        Case {
            name: "tombstone with a record's key header",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: kh(&key_header),
            value: None,
            expect: |e| {
                matches!(
                    e,
                    ConsumeError::Malformed {
                        source: RecordError::MalformedKeyHeader,
                        ..
                    }
                )
            },
        },
        Case {
            name: "tombstone with plaintext headers",
            partition: 0,
            key: Some(b"order-1".to_vec()),
            headers: vec![("leak".into(), Some(b"x".to_vec()))],
            value: None,
            expect: |e| matches!(e, ConsumeError::PlaintextRejected { .. }),
        },
    ];
    // The other topic's genuine record, copied into this topic (same partition, version, key).
    cases.push(Case {
        name: "moved from another topic",
        partition: 0,
        key: other_raw.key().map(<[u8]>::to_vec),
        headers: kh(other_raw.headers().unwrap().get(0).value.unwrap()),
        value: other_raw.payload().map(<[u8]>::to_vec),
        expect: tampered,
    });

    // Each bad record is followed by a good one, all on the broker before reading starts.
    let raw_out = raw_producer(&fx);
    for case in &cases {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &case.headers {
            headers = headers.insert(KafkaHeader {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .partition(case.partition)
            .headers(headers);
        if let Some(k) = &case.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &case.value {
            record = record.payload(v.as_slice());
        }
        raw_out.send(record, WAIT).await.unwrap();
        good(&topic).await;
    }

    assign_all(pipe.consumer.inner(), &topic, 2);
    let mut failures = 0;
    let mut genuine = 0;
    let mut seen = Vec::new();
    let mut first_seen = Vec::new();
    while genuine < cases.len() + 1 || failures < cases.len() {
        match tokio::time::timeout(WAIT, pipe.consumer.recv())
            .await
            .unwrap()
        {
            Ok(r) => {
                assert_eq!(r.value.as_deref(), Some(&b"the genuine value"[..]));
                genuine += 1;
            }
            Err(err) => {
                let at = err
                    .position()
                    .cloned()
                    .expect("per-record errors name the record");
                let case = if at.partition == 1 {
                    cases.iter().find(|c| c.partition == 1).unwrap()
                } else {
                    // Partition 0 holds the genuine record at offset 0, then case i at 2i+1.
                    let i = usize::try_from((at.offset - 1) / 2).unwrap();
                    cases.iter().filter(|c| c.partition == 0).nth(i).unwrap()
                };
                assert!((case.expect)(&err), "{}: got {err:?}", case.name);
                let text = format!("{err}");
                assert!(
                    text.contains(&format!("{}/{}@{}", topic, at.partition, at.offset)),
                    "{text}"
                );
                // Not skipped: the same record fails again (other partitions may come
                // first) until the application skips it.
                if let Some(i) = first_seen.iter().position(|p| p == &at) {
                    first_seen.remove(i);
                    pipe.consumer.skip(&at).unwrap();
                    seen.push(case.name);
                    failures += 1;
                } else {
                    first_seen.push(at);
                }
            }
        }
    }
    assert!(first_seen.is_empty());
    assert_eq!(failures, cases.len(), "every case failed: {seen:?}");
}

#[tokio::test]
async fn a_late_edek_is_waited_for_and_a_replaced_one_is_refused() {
    let mut fx = Fixture::new("late").await.unwrap();
    let topic = fx.reject_topic("late", 1).await;
    let pipe = pipeline(&fx, Duration::from_secs(8)).await;

    // A producer elsewhere seals under version 2, whose EDEK reaches the key topic 1.5 s later.
    let edek = generate_edek(&*fx.keystore, TEK, &topic, 0, 2)
        .await
        .unwrap();
    let dek = fx
        .keystore
        .unwrap_dek(
            TEK,
            DekContext {
                topic: &topic,
                partition: 0,
                version: 2,
            },
            &edek.edek,
        )
        .await
        .unwrap();
    let sealer = PartitionSealer::new(
        Aes256Gcm.prepare(&dek).unwrap(),
        NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap(),
        RecordLocation {
            topic: &topic,
            partition: 0,
        },
        2,
    );
    let sealed = sealer.seal(None, &[], b"sealed under v2").unwrap();
    raw_producer(&fx)
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(&sealed)
                .headers(OwnedHeaders::new().insert(KafkaHeader {
                    key: KEY_HEADER,
                    value: Some(sealer.key_header()),
                })),
            WAIT,
        )
        .await
        .unwrap();
    let late = tokio::spawn({
        let writer_edek = edek.clone();
        let fx_writer = kafka_e2ee_client::key_management::KeyTopicWriter::new(
            &fx.connection,
            &fx.key_topic,
            Arc::clone(fx.writer.signer()),
        )
        .unwrap();
        async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            fx_writer.publish_edeks(&[writer_edek]).await.unwrap();
        }
    });
    assign_all(pipe.consumer.inner(), &topic, 1);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(WAIT, pipe.consumer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.value.as_deref(), Some(&b"sealed under v2"[..]));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it did wait for the EDEK"
    );
    late.await.unwrap();

    // An EDEK replaced in the key topic by one for another version fails the commitment or the
    // unwrap, typed; the record is not skipped.
    let fresh = Arc::new(
        KeyDirectory::start(&fx.connection, &fx.key_topic, fx.trust())
            .await
            .unwrap(),
    );
    let mut forged = generate_edek(&*fx.keystore, TEK, &topic, 0, 3)
        .await
        .unwrap();
    forged.version = 2; // v3's wrapping and commitment, published as v2
    fx.writer.publish_edeks(&[forged]).await.unwrap();
    let deks = Arc::new(DekCache::new(
        LocalKeystore::from_file(&fx.keystore_path).unwrap(),
        Box::new(Aes256Gcm),
        DekCacheConfig::default(),
    ));
    let mut conn = fx.connection.clone();
    conn.properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let consumer = DecryptingConsumer::new(
        &conn,
        &unique("g"),
        fresh,
        deks,
        ConsumerSettings {
            key_wait: Duration::from_secs(2),
        },
    )
    .unwrap();
    assign_all(consumer.inner(), &topic, 1);
    let err = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .unwrap()
        .unwrap_err();
    let ConsumeError::KeyUnavailable { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(
            **source,
            DekCacheError::Provider {
                source: ProviderError::InvalidCiphertext { .. },
                ..
            } | DekCacheError::CommitmentMismatch { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_consumer_asks_the_kms_again_when_its_cached_key_expires() {
    let mut fx = Fixture::new("key-ttl").await.unwrap();
    let topic = fx.reject_topic("key-ttl", 1).await;
    let ttl = Duration::from_secs(2);
    let pipe = pipeline_with(
        &fx,
        WAIT,
        DekCacheConfig {
            ttl,
            ..DekCacheConfig::default()
        },
    )
    .await;
    assign_all(pipe.consumer.inner(), &topic, 1);
    let round_trip = async |value: &[u8]| {
        pipe.producer
            .send_and_wait(OutgoingRecord::new(&topic, value))
            .await
            .unwrap();
        let r = tokio::time::timeout(WAIT, pipe.consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.value.as_deref(), Some(value));
    };
    for i in 0..5u8 {
        round_trip(&[i; 10]).await;
    }
    assert_eq!(pipe.unwraps.load(Ordering::SeqCst), 1, "one unwrap, shared");
    // The producer keeps its sealer; the consumer's key must not outlive the cache entry:
    // after the ttl the KMS is asked again (so a revoked TEK takes effect).
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    round_trip(b"after the ttl").await;
    assert_eq!(
        pipe.unwraps.load(Ordering::SeqCst),
        2,
        "refetched after the ttl"
    );
}

#[tokio::test]
async fn a_topic_encrypted_while_clients_run_is_usable_at_once() {
    let mut fx = Fixture::new("late-topic").await.unwrap();
    // The clients are up and have read the key topic to its end before the topic exists.
    let pipe = pipeline(&fx, WAIT).await;
    for round in 0..3 {
        let topic = fx.reject_topic(&format!("late-{round}"), 1).await;
        // No pause: the policy was written a moment ago and the directory's reader may not
        // have fetched it yet; the producer must read up to the key topic's end, not refuse.
        let sent = pipe
            .producer
            .send_and_wait(OutgoingRecord::new(&topic, b"first record"))
            .await;
        assert!(sent.is_ok(), "round {round}: {sent:?}");
    }
}

#[tokio::test]
async fn the_producer_refuses_what_it_must_not_send() {
    let mut fx = Fixture::new("refuse").await.unwrap();
    let small = fx
        .encrypt_topic(
            "refuse-small",
            1,
            PlaintextPolicy::Reject,
            MAX_RECORDS_PER_DEK,
            BTreeMap::from([("max.message.bytes".to_owned(), "2000".to_owned())]),
        )
        .await
        .unwrap();
    let pipe = pipeline(&fx, Duration::from_secs(2)).await;

    // A topic with no policy is not encrypted: nothing is sent, in plaintext or otherwise.
    let unencrypted = unique("refuse-plain");
    kafka_e2ee_client::kafka::ensure_topic(
        &fx.connection.admin().unwrap(),
        &kafka_e2ee_client::kafka::TopicSpec {
            name: unencrypted.clone(),
            partitions: 1,
            replication: None,
            config: BTreeMap::new(),
        },
        WAIT,
    )
    .await
    .unwrap();
    let err = pipe
        .producer
        .send(OutgoingRecord::new(&unencrypted, b"secret"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ProduceError::NotEncrypted {
                source: KeyLookupError::NoPolicy { .. },
                ..
            }
        ),
        "{err:?}"
    );

    // Fits in plaintext, not once sealed: refused with the sizes.
    let value = vec![b'a'; 1900];
    match pipe
        .producer
        .send(OutgoingRecord::new(&small, &value))
        .await
        .err()
        .unwrap()
    {
        ProduceError::RecordTooLarge {
            size, limit: 2000, ..
        } => assert!(size > 2000),
        other => panic!("{other:?}"),
    }
    let ok = pipe
        .producer
        .send_and_wait(OutgoingRecord::new(&small, &value[..1700]))
        .await;
    assert!(ok.is_ok(), "{ok:?}");

    let err = pipe
        .producer
        .send(OutgoingRecord {
            key: Some(b"k"),
            headers: &[Header {
                key: "who".into(),
                value: Some(b"alice".to_vec()),
            }],
            value: None,
            ..OutgoingRecord::new(&small, b"")
        })
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ProduceError::TombstoneWithHeaders { .. }),
        "{err:?}"
    );
    let err = pipe
        .producer
        .send(OutgoingRecord {
            partition: Some(1),
            ..OutgoingRecord::new(&small, b"x")
        })
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ProduceError::UnknownPartition {
                partition: 1,
                partitions: 1,
                ..
            }
        ),
        "{err:?}"
    );

    // Only the one accepted record reached the broker.
    let raw = raw_records(&fx, &small, 1, 1);
    assert_eq!(raw[0].payload().unwrap().len(), 1700 + 12 + 16 + 1);
    let (_, high) = fx
        .connection
        .metadata_consumer()
        .unwrap()
        .fetch_watermarks(&unencrypted, 0, WAIT)
        .unwrap();
    assert_eq!(high, 0, "nothing was written to {unencrypted}");
}

#[tokio::test]
async fn rollover_and_the_per_key_record_cap_switch_versions_without_losing_records() {
    let mut fx = Fixture::new("roll").await.unwrap();
    let cap = 50;
    let topic = fx
        .encrypt_topic("roll", 2, PlaintextPolicy::Reject, cap, BTreeMap::new())
        .await
        .unwrap();
    let pipe = pipeline(&fx, WAIT).await;
    let send = |i: usize| {
        let value = format!("record-{i}");
        let topic = topic.clone();
        let producer = &pipe.producer;
        async move {
            producer
                .send_and_wait(OutgoingRecord {
                    partition: Some(0),
                    ..OutgoingRecord::new(&topic, value.as_bytes())
                })
                .await
        }
    };
    for i in 0..cap as usize {
        send(i).await.unwrap();
    }
    // The DEK of partition 0 has sealed its cap: fail closed until a new version exists.
    let err = send(999).await.err().unwrap();
    assert!(
        matches!(
            err,
            ProduceError::KeyExhausted {
                partition: 0,
                version: 1,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(fx.rollover(&topic).await.unwrap(), 2);
    let deadline = std::time::Instant::now() + WAIT;
    let mut next = cap as usize;
    loop {
        match send(next).await {
            Ok(_) => break,
            Err(ProduceError::KeyExhausted { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    next += 1;
    for i in next..next + 20 {
        send(i).await.unwrap();
    }
    let total = next + 20;

    assign_all(pipe.consumer.inner(), &topic, 1);
    for i in 0..total {
        let r: ConsumedRecord = tokio::time::timeout(WAIT, pipe.consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.value.unwrap(), format!("record-{i}").into_bytes());
    }
    let versions: Vec<Vec<u8>> = raw_records(&fx, &topic, 1, total)
        .iter()
        .map(|m| m.headers().unwrap().get(0).value.unwrap().to_vec())
        .collect();
    assert!(versions[..cap as usize].iter().all(|v| v == &[1, 1]));
    assert!(versions[cap as usize..].iter().all(|v| v == &[1, 2]));
    // Partition 0 v1 and v2 for the producer (v2 maybe prefetched), the same for the consumer
    // through the shared cache: provider calls follow key versions, not the 121 records.
    assert_eq!(pipe.unwraps.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_configured_client_round_trips_and_plaintext_passes_only_where_allowed() {
    let mut fx = Fixture::new("cfg").await.unwrap();
    let allow = fx
        .encrypt_topic(
            "cfg-migrating",
            1,
            PlaintextPolicy::Allow,
            MAX_RECORDS_PER_DEK,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    let client = EncryptionClient::with_config(fx.client_config(WAIT))
        .await
        .unwrap();
    let producer = client.producer().unwrap();
    // A legacy plaintext record written before encryption was turned on.
    raw_producer(&fx)
        .send(
            FutureRecord::<str, str>::to(&allow).payload("legacy plaintext"),
            WAIT,
        )
        .await
        .unwrap();
    producer
        .send_and_wait(OutgoingRecord::new(&allow, b"new and encrypted"))
        .await
        .unwrap();

    let mut conn_config: ClientConfig = client.config().clone();
    conn_config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let reader = EncryptionClient::with_config(conn_config).await.unwrap();
    let consumer = reader.consumer(&unique("cfg")).unwrap();
    consumer.subscribe(&[&allow]).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            first.value.as_deref(),
            first.was_encrypted,
            second.value.as_deref(),
            second.was_encrypted
        ),
        (
            Some(&b"legacy plaintext"[..]),
            false,
            Some(&b"new and encrypted"[..]),
            true
        )
    );
}

/// `cryptoLibrary` is a per-client choice over one record format: what an aws-lc-rs producer
/// sealed, a ring consumer opens, and the other way round.
#[tokio::test]
async fn producers_and_consumers_on_either_crypto_library_read_each_other() {
    use kafka_e2ee_client::engine::CryptoLibrary;
    let mut fx = Fixture::new("engines").await.unwrap();
    let topic = fx.reject_topic("engines", 1).await;
    let client = |library| {
        let mut config = fx.client_config(WAIT);
        config.crypto_library = library;
        config
            .consumer_properties
            .insert("auto.offset.reset".into(), "earliest".into());
        EncryptionClient::with_config(config)
    };
    let (lc, ring) = (
        client(CryptoLibrary::AwsLc).await.unwrap(),
        client(CryptoLibrary::Ring).await.unwrap(),
    );
    for (producer, name) in [(&lc, "aws-lc"), (&ring, "ring")] {
        let value = format!("sealed by {name}");
        producer
            .producer()
            .unwrap()
            .send_and_wait(OutgoingRecord::new(&topic, value.as_bytes()))
            .await
            .unwrap();
    }
    for consumer in [&lc, &ring] {
        let consumer = consumer.consumer(&unique("engines")).unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(String::from_utf8(record.value.unwrap()).unwrap());
        }
        assert_eq!(got, ["sealed by aws-lc", "sealed by ring"]);
    }
}
