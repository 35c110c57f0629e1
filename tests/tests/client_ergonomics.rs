//! What an rdkafka application brings along (issue 19): its own rdkafka configuration and
//! client contexts (the hook for OAUTHBEARER token callbacks; here statistics and rebalance
//! callbacks, which show the contexts are the ones librdkafka calls), the consumer read as a
//! `futures::Stream`, and the client's KMS metrics registered in the application's registry.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kafka_e2ee_client::config::EncryptionClient;
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_tests::fixture::Fixture;
use kafka_e2ee_tests::unique;
use prometheus_client::registry::Registry;
use rdkafka::Statistics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

const KEY_WAIT: Duration = Duration::from_secs(20);

/// Counts librdkafka's callbacks into it.
#[derive(Clone, Default)]
struct Counting {
    stats: Arc<AtomicUsize>,
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for Counting {
    fn stats(&self, _: Statistics) {
        self.stats.fetch_add(1, Ordering::SeqCst);
    }
}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_brings_its_rdkafka_config_contexts_and_registry() {
    let mut fixture = Fixture::new("ergonomics").await.unwrap();
    let topic = fixture.reject_topic("ergonomics", 2).await;
    let client = EncryptionClient::with_config(fixture.client_config(KEY_WAIT))
        .await
        .unwrap();
    let mut registry = Registry::default();
    client.kms_metrics().register(&mut registry);

    let producing = Counting::default();
    let mut config = fixture.connection.client_config();
    config.set("statistics.interval.ms", "100");
    let producer = client
        .producer_with_context(config, producing.clone())
        .unwrap();
    for i in 0..6 {
        let value = format!("order {i}");
        producer
            .send_and_wait(OutgoingRecord::new(&topic, value.as_bytes()))
            .await
            .unwrap();
    }

    let consuming = Counting::default();
    let mut config = fixture.connection.client_config();
    config
        .set("group.id", unique("ergonomics"))
        .set("auto.offset.reset", "earliest");
    let consumer = client
        .consumer_with_context(config, consuming.clone())
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let opened = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.stream().take(6).collect::<Vec<_>>(),
    )
    .await
    .expect("six records through the stream");
    let mut values: Vec<String> = opened
        .into_iter()
        .map(|r| String::from_utf8(r.unwrap().value.unwrap()).unwrap())
        .collect();
    values.sort();
    assert_eq!(
        values,
        (0..6).map(|i| format!("order {i}")).collect::<Vec<_>>()
    );

    // The application's contexts are the ones librdkafka called.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        producing.stats.load(Ordering::SeqCst) > 0,
        "no statistics callback"
    );
    assert!(
        consuming.rebalances.load(Ordering::SeqCst) > 0,
        "no rebalance callback"
    );
    // The DEKs were unwrapped through the KMS, counted in the application's registry.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("kafka_e2ee_kms_calls_total{")
                && l.contains("backend=\"keystore\"")
                && !l.ends_with(" 0")),
        "{text}"
    );
}
