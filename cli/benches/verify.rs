//! `kubectl e2ee verify` against a raw consumer on the same topic (docs/performance.md,
//! "verify"; issue 18's goal: verify reads at >= 0.8 of a raw consumer's records/s). The
//! topic holds N sealed records of 1 KiB over 3 partitions; each group reads all of them once
//! with a plain rdkafka consumer (no opening) and once with `verify_topic` (the command's
//! reading and opening path, its client already started), each timed from creating its
//! consumer to the last record, the order alternating; medians of per-group ratios. Run: `scripts/bench`, or `cargo bench -p kafka-e2ee-cli --bench verify`
//! with the test bed's broker up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::time::{Duration, Instant};

use kafka_e2ee_cli::args::Output;
use kafka_e2ee_cli::verify::{Options, verify_topic};
use kafka_e2ee_client::config::EncryptionClient;
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_tests::fixture::Fixture;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const RECORDS: usize = 30_000;
/// With one record more per partition (see below).
const TOTAL: usize = RECORDS + PARTITIONS as usize;
const PARTITIONS: i32 = 3;
const GROUPS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Reads every record of `topic` with a plain consumer made as verify makes its own (same
/// settings, same group, end offsets learnt first); seconds from creating it to the last
/// record, as verify is timed.
async fn raw_read(client: &EncryptionClient, topic: &str) -> f64 {
    let started = Instant::now();
    let consumer: StreamConsumer = client
        .config()
        .connection()
        .client_config()
        .set("group.id", "kafka-e2ee-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = 0;
    while seen < TOTAL {
        tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records arrive")
            .unwrap();
        seen += 1;
    }
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut fixture = Fixture::new("bench-verify").await.unwrap();
    let topic = fixture.reject_topic("bench-verify", PARTITIONS).await;
    let client = EncryptionClient::with_config(fixture.client_config(Duration::from_secs(10)))
        .await
        .unwrap();
    client
        .key_directory()
        .wait_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    let producer = client.producer().unwrap();
    let value = vec![0x5a_u8; 1024];
    let mut pending = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{i}");
        let mut record = OutgoingRecord::new(&topic, &value);
        record.key = Some(key.as_bytes());
        pending.push(producer.send(record).await.unwrap());
        if pending.len() >= 1000 {
            for d in pending.drain(..) {
                d.wait().await.unwrap();
            }
        }
    }
    for d in pending {
        d.wait().await.unwrap();
    }
    // The test bed's broker reports a partition's end offset as its last batch's base offset
    // plus one (docs/testbed.md): one single-record batch per partition last makes it exact.
    for p in 0..PARTITIONS {
        let mut record = OutgoingRecord::new(&topic, &value);
        record.partition = Some(p);
        producer.send_and_wait(record).await.unwrap();
    }
    {
        let consumer = fixture.connection.metadata_consumer().unwrap();
        let marks = kafka_e2ee_client::kafka::partition_watermarks(
            &consumer,
            &topic,
            Duration::from_secs(10),
        )
        .unwrap();
        let ends: i64 = marks.values().map(|(_, end)| end).sum();
        assert_eq!(ends as usize, TOTAL, "the broker's end offsets: {marks:?}");
    }
    let options = Options {
        since: None,
        partitions: Vec::new(),
        output: Output::Json,
    };
    let (mut raw_rates, mut verify_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for group in 0..GROUPS {
        let mut raw = 0.0;
        let mut verified = 0.0;
        for side in 0..2 {
            if (side + group) % 2 == 0 {
                raw = raw_read(&client, &topic).await;
            } else {
                let started = Instant::now();
                let report = verify_topic(&client, &topic, &options).await.unwrap();
                let seconds = started.elapsed().as_secs_f64();
                assert_eq!(
                    report.records as usize,
                    TOTAL,
                    "{}",
                    serde_json::to_string(&report).unwrap()
                );
                assert!(report.clean());
                verified = seconds;
            }
        }
        let (r, v) = (TOTAL as f64 / raw, TOTAL as f64 / verified);
        println!("group {group}: raw {r:.0} rec/s, verify {v:.0} rec/s");
        raw_rates.push(r);
        verify_rates.push(v);
        ratios.push(v / r);
    }
    println!(
        "verify bench: {RECORDS} sealed records of 1024 B, {PARTITIONS} partitions, {GROUPS} groups (medians)"
    );
    println!("  raw consumer rec/s      {:>12.0}", median(raw_rates));
    println!("  verify rec/s            {:>12.0}", median(verify_rates));
    println!("  verify / raw (rec/s)    {:>12.3}", median(ratios));
}
