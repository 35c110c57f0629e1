//! The demo's client step: encrypt on produce, decrypt on consume, and show what the broker
//! holds. Run by `scripts/demo` against the test bed's broker:
//!
//! ```sh
//! KE_KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo run -p kafka-e2ee-client --example roundtrip -- orders 6
//! ```
//!
//! Until the operator lands (issue 5) this example also plays its part: it creates a keystore
//! TEK and provisions the topic's DEKs with the same key-management functions the operator
//! will call. The keystore is written to a temporary directory standing in for a mounted
//! Secret, and removed at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kafka_e2ee_client::config::{ClientConfig, EncryptionClient, ProviderConfig};
use kafka_e2ee_client::kafka::{KafkaConnection, TopicSpec, ensure_topic};
use kafka_e2ee_client::key_management::{KeyTopicWriter, ensure_key_topic, provision};
use kafka_e2ee_client::key_records::{PlaintextPolicy, PolicyRecord, ProviderRef};
use kafka_e2ee_client::keystore::LocalKeystore;
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
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let partitions: i32 = args.next().map_or(Ok(6), |p| p.parse())?;
    let bootstrap = std::env::var("KE_KAFKA_BOOTSTRAP")
        .context("KE_KAFKA_BOOTSTRAP is not set: run `scripts/testbed up kafka` and `eval \"$(scripts/testbed env)\"`")?;
    let connection = KafkaConnection::new(&bootstrap);
    let key_topic = kafka_e2ee_client::DEFAULT_KEY_TOPIC;

    // --- the operator's part (issue 5 moves it into the operator) ---
    let dir = std::env::temp_dir().join(format!("kafka-e2ee-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let keystore_path = dir.join("keystore.json");
    let mut tek = [0u8; 32];
    SystemRandom::new()
        .fill(&mut tek)
        .map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    let keystore_json = format!(
        r#"{{"format": 1, "keys": [{{"id": "orders-1", "material": "{}"}}], "aliases": {{"orders-tek": "orders-1"}}}}"#,
        STANDARD.encode(tek)
    );
    std::fs::write(&keystore_path, &keystore_json)?;
    let result = run(
        &connection,
        key_topic,
        &topic,
        partitions,
        &keystore_path,
        &keystore_json,
    )
    .await;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn run(
    connection: &KafkaConnection,
    key_topic: &str,
    topic: &str,
    partitions: i32,
    keystore_path: &std::path::Path,
    keystore_json: &str,
) -> anyhow::Result<()> {
    ensure_key_topic(connection, key_topic, None).await?;
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions,
        replication: None,
        config: BTreeMap::new(),
    };
    ensure_topic(&connection.admin()?, &spec, Duration::from_secs(10)).await?;
    let keystore = LocalKeystore::from_json(keystore_json.as_bytes())?;
    let writer = KeyTopicWriter::new(connection, key_topic)?;
    let policy = PolicyRecord {
        topic: topic.to_owned(),
        provider: ProviderRef {
            kind: "keystore".into(),
            tek: "orders-tek".into(),
            config: BTreeMap::new(),
        },
        engine: "AES-256-GCM".into(),
        plaintext: PlaintextPolicy::Reject,
        max_records_per_dek: 1 << 32,
        current_versions: BTreeMap::new(),
    };
    provision(&keystore, &writer, policy, 0..partitions, 1).await?;
    println!(
        "keys: one DEK per partition of {topic} ({partitions}), wrapped under keystore TEK orders-tek, published to {key_topic}"
    );

    // --- the application's part ---
    let mut config = ClientConfig::new(
        connection.bootstrap_servers.clone(),
        ProviderConfig::Keystore {
            path: keystore_path.to_owned(),
        },
    );
    config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let client = EncryptionClient::with_config(config).await?;
    client
        .key_directory()
        .wait_caught_up(Duration::from_secs(10))
        .await?;

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
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
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
