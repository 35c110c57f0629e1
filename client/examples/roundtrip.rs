//! The orders application of the demo, as an injected workload runs it: its configuration comes
//! from `KAFKA_E2EE_CONFIG` (what the admission webhook injects), the keys from the operator.
//! It produces three orders through `EncryptingProducer`, reads them back through
//! `DecryptingConsumer`, then reads the same records with a plain Kafka consumer that has no
//! keys and fails if any plaintext byte sequence of them is on the broker.
//!
//! ```sh
//! KAFKA_E2EE_CONFIG=/var/run/kafka-e2ee/client.yaml cargo run -p kafka-e2ee-client --example roundtrip -- orders
//! ```

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use kafka_e2ee_client::config::{EncryptionClient, resolve};
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_client::record::Header;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const ORDERS: [&str; 3] = [
    r#"{"order":1,"customer":"alice","card":"4111-1111-1111-1111"}"#,
    r#"{"order":2,"customer":"bob","card":"5500-0000-0000-0004"}"#,
    r#"{"order":3,"customer":"carol","card":"3400-0000-0000-009"}"#,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "orders".into());
    // The injected configuration (KAFKA_E2EE_CONFIG); this application's own choice on top:
    // a new consumer group reads from the beginning.
    let (mut config, source) =
        resolve(None).context("no injected configuration: set KAFKA_E2EE_CONFIG")?;
    println!("configuration: {source:?}, key topic {}", config.key_topic);
    config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let connection = config.connection();
    let client = EncryptionClient::with_config(config).await?;
    client
        .key_directory()
        .wait_caught_up(Duration::from_secs(10))
        .await?;
    let topic = topic.as_str();

    let producer = client.producer()?;
    for (i, order) in ORDERS.iter().enumerate() {
        let key = format!("order-{}", i + 1);
        let headers = [Header {
            key: "source".into(),
            value: Some(b"web-shop".to_vec()),
        }];
        let at = producer
            .send_and_wait(OutgoingRecord {
                key: Some(key.as_bytes()),
                headers: &headers,
                ..OutgoingRecord::new(topic, order.as_bytes())
            })
            .await?;
        println!(
            "produced  {key} -> {topic}/{}@{}: {order}",
            at.partition, at.offset
        );
    }

    let consumer = client.consumer(&format!("demo-{}", std::process::id()))?;
    consumer.subscribe(&[topic])?;
    let mut seen = 0;
    while seen < ORDERS.len() {
        let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("the consumer received nothing for 30 s")??;
        let value =
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
        ensure!(
            ORDERS.contains(&value.as_str()),
            "decrypted an unexpected value: {value}"
        );
        println!(
            "consumed  {}/{}@{} (application sees): {value}",
            record.topic, record.partition, record.offset
        );
        seen += 1;
    }

    // --- what the broker holds: a plain consumer with no keys ---
    let raw: BaseConsumer = connection
        .client_config()
        .set("group.id", format!("demo-raw-{}", std::process::id()))
        .create()?;
    let metadata = raw.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, i32::try_from(p)?, Offset::Beginning)?;
    }
    raw.assign(&tpl)?;
    let mut shown = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while shown < ORDERS.len() {
        if std::time::Instant::now() > deadline {
            bail!("the raw consumer saw only {shown} records");
        }
        let Some(message) = raw.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let value = message.payload().unwrap_or_default();
        let header = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| h.key.to_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        for order in ORDERS {
            for secret in ["alice", "bob", "carol", "4111", "web-shop"] {
                ensure!(
                    !value.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "plaintext {secret:?} found on the broker"
                );
            }
            ensure!(!value.windows(order.len()).any(|w| w == order.as_bytes()));
        }
        let hex: String = value.iter().take(48).map(|b| format!("{b:02x}")).collect();
        println!(
            "on broker {topic}/{}@{} key={} headers=[{header}] value ({} bytes): {hex}...",
            message.partition(),
            message.offset(),
            String::from_utf8_lossy(message.key().unwrap_or_default()),
            value.len()
        );
        shown += 1;
    }
    println!("ok: the application read its plaintext back; the broker holds only ciphertext");
    Ok(())
}
