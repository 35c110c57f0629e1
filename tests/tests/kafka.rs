//! Kafka broker smoke test: topic admin (incl. compacted), produce/consume with headers, offsets.
//! Runs against the test bed's tansu broker through rdkafka and our client crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::kafka::{
    EnsureOutcome, KafkaConnection, TopicSpec, ensure_topic, partition_watermarks,
};
use kafka_e2ee_tests::{Server, require, unique};
use rdkafka::Message;
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

fn connection() -> KafkaConnection {
    KafkaConnection::new(require(Server::Kafka))
}

#[tokio::test]
async fn creates_plain_and_compacted_topics_idempotently() {
    let conn = connection();
    let admin = conn.admin().unwrap();
    let plain = TopicSpec {
        name: unique("smoke-plain"),
        partitions: 3,
        replication: None,
        config: BTreeMap::new(),
    };
    let compacted = TopicSpec {
        name: unique("smoke-keys"),
        partitions: 4,
        replication: Some(1),
        config: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    for spec in [&plain, &compacted] {
        assert_eq!(
            ensure_topic(&admin, spec, TIMEOUT).await.unwrap(),
            EnsureOutcome::Created,
            "{}",
            spec.name
        );
        assert_eq!(
            ensure_topic(&admin, spec, TIMEOUT).await.unwrap(),
            EnsureOutcome::AlreadyExisted,
            "{}",
            spec.name
        );
    }

    // The broker reports the explicitly set config back (tansu returns only explicit keys).
    let described = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&compacted.name)],
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));

    // Partition counts as created, every partition empty.
    let consumer = conn.metadata_consumer().unwrap();
    for spec in [&plain, &compacted] {
        let marks = partition_watermarks(&consumer, &spec.name, TIMEOUT).unwrap();
        assert_eq!(marks.len(), spec.partitions as usize, "{}", spec.name);
        assert!(
            marks.values().all(|&(low, high)| low == high),
            "{}: {marks:?}",
            spec.name
        );
    }
}

#[tokio::test]
async fn missing_topic_is_a_typed_error() {
    let consumer = connection().metadata_consumer().unwrap();
    let err = partition_watermarks(&consumer, &unique("never-created"), TIMEOUT).unwrap_err();
    assert!(
        matches!(err, kafka_e2ee_client::kafka::Error::TopicNotFound { .. }),
        "expected TopicNotFound, got {err:?}"
    );
}

#[tokio::test]
async fn produces_and_consumes_records_with_headers_in_order() {
    let conn = connection();
    let topic = TopicSpec {
        name: unique("smoke-records"),
        partitions: 2,
        replication: None,
        config: BTreeMap::new(),
    };
    ensure_topic(&conn.admin().unwrap(), &topic, TIMEOUT)
        .await
        .unwrap();

    let producer: FutureProducer = conn
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let records: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("key-{i}"), vec![i as u8; 100 + i]))
        .collect();
    for (key, value) in &records {
        // Header order and repeats must survive: the encryption path relies on both.
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "encryption_key",
                value: Some(b"orders/1/v1".as_slice()),
            })
            .insert(Header {
                key: "trace",
                value: Some(b"first".as_slice()),
            })
            .insert(Header {
                key: "trace",
                value: Some(b"second".as_slice()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to(&topic.name)
            .partition(1)
            .key(key)
            .payload(value)
            .headers(headers);
        let delivery = producer
            .send(record, TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(delivery.partition, 1);
    }

    let consumer: StreamConsumer = conn
        .client_config()
        .set("group.id", unique("smoke-group"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic.name, 1, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();

    for (i, (key, value)) in records.iter().enumerate() {
        let msg = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .expect("timed out waiting for a record")
            .unwrap();
        assert_eq!(msg.offset(), i as i64);
        assert_eq!(msg.key(), Some(key.as_bytes()));
        assert_eq!(msg.payload(), Some(value.as_slice()));
        let headers: Vec<(String, Option<Vec<u8>>)> = msg
            .headers()
            .unwrap()
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("encryption_key".to_string(), Some(b"orders/1/v1".to_vec())),
                ("trace".to_string(), Some(b"first".to_vec())),
                ("trace".to_string(), Some(b"second".to_vec())),
                ("empty".to_string(), None),
            ]
        );
    }

    // Offsets: the operator's rollover-by-count reads exactly these.
    let marks = tokio::task::spawn_blocking(move || {
        partition_watermarks(&conn.metadata_consumer().unwrap(), &topic.name, TIMEOUT)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(marks.get(&0), Some(&(0, 0)));
    assert_eq!(marks.get(&1), Some(&(0, records.len() as i64)));
}
