//! `kubectl e2ee verify` against a raw consumer on the same topic (docs/performance.md,
//! "verify"; issue 18's goal: verify reads at >= 0.8 of a raw consumer's records/s). The
//! topic holds N sealed records of 1 KiB over 3 partitions; each group reads all of them once
//! with a plain rdkafka consumer (no opening) and once with `verify_topic` (the command's
//! reading and opening path, its client already started), the order alternating; medians of
//! per-group ratios. Each side is timed two ways: reading (from creating its consumer to the
//! last record) and with close (until the consumer is closed and dropped, which librdkafka
//! takes up to ~0.15 s for on the test bed). Run: `scripts/bench`, or
//! `cargo bench -p kafka-e2ee-cli --bench verify` with the test bed's broker up.

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
/// settings, same group, end offsets learnt first).
async fn raw_read(client: &EncryptionClient, topic: &str) -> Timing {
    let cpu = this_thread_cpu();
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
    let reading = started.elapsed().as_secs_f64();
    let thread_cpu = this_thread_cpu() - cpu;
    drop(consumer);
    Timing {
        reading,
        with_close: started.elapsed().as_secs_f64(),
        thread_cpu,
    }
}

#[derive(Default)]
struct Timing {
    /// Seconds from creating the consumer to the last record.
    reading: f64,
    /// ... and until the consumer is closed.
    with_close: f64,
    /// CPU seconds of the thread that receives (and, for verify, opens).
    thread_cpu: f64,
}

/// This thread's CPU seconds so far.
fn this_thread_cpu() -> f64 {
    kafka_e2ee_tests::this_thread_cpu_seconds()
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
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut cpu: [Vec<f64>; 2] = Default::default();
    let (mut reading_ratios, mut close_ratios) = (Vec::new(), Vec::new());
    for group in 0..GROUPS {
        let mut raw = Timing::default();
        let mut verified = Timing::default();
        for side in 0..2 {
            if (side + group) % 2 == 0 {
                raw = raw_read(&client, &topic).await;
            } else {
                let cpu = this_thread_cpu();
                let started = Instant::now();
                let report = verify_topic(&client, &topic, &options).await.unwrap();
                let with_close = started.elapsed().as_secs_f64();
                // Includes the close, unlike the raw side's (closing takes ~0.03 µs per record).
                let thread_cpu = this_thread_cpu() - cpu;
                assert_eq!(
                    report.records as usize,
                    TOTAL,
                    "{}",
                    serde_json::to_string(&report).unwrap()
                );
                assert!(report.clean());
                verified = Timing {
                    reading: report.seconds,
                    with_close,
                    thread_cpu,
                };
            }
        }
        let rate = |s: f64| TOTAL as f64 / s;
        let micros = |s: f64| s * 1e6 / TOTAL as f64;
        println!(
            "group {group}: reading raw {:.0} / verify {:.0} rec/s; with close raw {:.0} / verify {:.0} rec/s; receiving thread CPU µs per record raw {:.2} / verify {:.2}",
            rate(raw.reading),
            rate(verified.reading),
            rate(raw.with_close),
            rate(verified.with_close),
            micros(raw.thread_cpu),
            micros(verified.thread_cpu)
        );
        for (i, s) in [
            raw.reading,
            verified.reading,
            raw.with_close,
            verified.with_close,
        ]
        .into_iter()
        .enumerate()
        {
            rates[i].push(rate(s));
        }
        cpu[0].push(micros(raw.thread_cpu));
        cpu[1].push(micros(verified.thread_cpu));
        reading_ratios.push(raw.reading / verified.reading);
        close_ratios.push(raw.with_close / verified.with_close);
    }
    let [raw_reading, verify_reading, raw_close, verify_close] = rates.map(median);
    let [raw_cpu, verify_cpu] = cpu.map(median);
    println!(
        "verify bench: {RECORDS} sealed records of 1024 B, {PARTITIONS} partitions, {GROUPS} groups (medians)"
    );
    println!("  reading: raw consumer rec/s             {raw_reading:>10.0}");
    println!("  reading: verify rec/s                   {verify_reading:>10.0}");
    println!(
        "  reading: verify / raw (rec/s)           {:>10.3}",
        median(reading_ratios)
    );
    println!("  with close: raw consumer rec/s          {raw_close:>10.0}");
    println!("  with close: verify rec/s                {verify_close:>10.0}");
    println!(
        "  with close: verify / raw (rec/s)        {:>10.3}",
        median(close_ratios)
    );
    println!("  receiving thread CPU µs/record, raw     {raw_cpu:>10.2}");
    println!("  receiving thread CPU µs/record, verify  {verify_cpu:>10.2}");
}
