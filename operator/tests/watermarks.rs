//! The operator's shared offset reader (`kafka_e2ee_operator::watermarks`) against the test
//! bed's broker: one read answers every reconcile waiting for it, answers are at most one max
//! age old, and the operator's own changes are known without a read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_e2ee_client::kafka::{Connect as _, KafkaConnection, TopicSpec, ensure_topic};
use kafka_e2ee_operator::watermarks::Watermarks;
use kafka_e2ee_tests::{Server, require, unique};
use prometheus_client::metrics::counter::Counter;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TIMEOUT: Duration = Duration::from_secs(10);

fn connection() -> KafkaConnection {
    KafkaConnection::new(require(Server::Kafka))
}

fn reader(max_age: Duration) -> (Watermarks, Counter) {
    let reads = Counter::default();
    let consumer = Arc::new(connection().metadata_consumer().unwrap());
    (
        Watermarks::new(consumer, max_age, TIMEOUT, reads.clone()),
        reads,
    )
}

async fn create(name: &str, partitions: i32) {
    let spec = TopicSpec {
        name: name.to_owned(),
        partitions,
        replication: None,
        config: BTreeMap::new(),
    };
    ensure_topic(&connection().admin().unwrap(), &spec, TIMEOUT)
        .await
        .unwrap();
}

async fn produce(topic: &str, partition: i32, n: usize) {
    let producer: FutureProducer = connection().client_config().create().unwrap();
    for i in 0..n {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&format!("r{i}")),
                TIMEOUT,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn one_read_answers_every_question_waiting_for_it() {
    let topics: Vec<String> = (0..20)
        .map(|i| unique(&format!("marks-many-{i}")))
        .collect();
    for t in &topics {
        create(t, 3).await;
    }
    let (marks, reads) = reader(Duration::from_secs(60));
    let answers = futures::future::join_all(topics.iter().map(|t| marks.get(t))).await;
    for (t, answer) in topics.iter().zip(answers) {
        let got = answer.unwrap().unwrap_or_else(|| panic!("{t} not found"));
        assert_eq!(got, BTreeMap::from([(0, (0, 0)), (1, (0, 0)), (2, (0, 0))]));
    }
    // The first question reads; those asked meanwhile share the next read.
    assert!(reads.get() <= 2, "{} reads for 20 topics", reads.get());
    // Fresh enough: no more reads.
    marks.get(&topics[0]).await.unwrap().unwrap();
    assert!(reads.get() <= 2);
}

#[tokio::test]
async fn answers_are_at_most_max_age_old_and_own_changes_need_no_read() {
    let topic = unique("marks-fresh");
    let (marks, reads) = reader(Duration::from_secs(2));
    assert_eq!(marks.get(&topic).await.unwrap(), None, "not created yet");
    assert_eq!(reads.get(), 1);

    // Created by someone else: the listing says absent until it is read again (the operator's
    // create finds the topic and marks it unknown, which reads it in full).
    create(&topic, 2).await;
    assert_eq!(marks.get(&topic).await.unwrap(), None);
    marks.unknown(&topic);
    let got = marks.get(&topic).await.unwrap().expect("created");
    assert_eq!(got.len(), 2);
    assert_eq!(reads.get(), 2);

    // Records written since the last read show once it is older than the max age.
    produce(&topic, 1, 5).await;
    assert_eq!(marks.get(&topic).await.unwrap().unwrap()[&1], (0, 0));
    assert_eq!(reads.get(), 2, "a fresh read answers");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(marks.get(&topic).await.unwrap().unwrap()[&1], (0, 5));
    assert_eq!(reads.get(), 3);

    // Created by the operator: known at once, without a read (growing is the unit tests':
    // the test bed's broker has no CreatePartitions).
    let other = unique("marks-created");
    create(&other, 3).await;
    marks.created(&other, 3);
    assert_eq!(marks.get(&other).await.unwrap().unwrap().len(), 3);
    assert_eq!(reads.get(), 3);
}
