//! Produce + consume throughput, client CPU and wire bytes: encrypted vs plaintext through the
//! same rdkafka client settings and the same broker (docs/performance.md).
//! Run with the test bed's broker up: `scripts/bench` (or `cargo bench -p kafka-e2ee-tests
//! --bench throughput` after `scripts/testbed up kafka` and `eval "$(scripts/testbed env)"`).
//!
//! Each round writes N records and reads them back. Plaintext and encrypted rounds alternate
//! (which goes first alternates too), PAIRS times per record size; the medians of the per-pair
//! ratios are reported, so machine noise that hits both sides of a pair cancels.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kafka_e2ee_client::consumer::{ConsumerSettings, DecryptingConsumer};
use kafka_e2ee_client::dek_cache::{DekCache, DekCacheConfig};
use kafka_e2ee_client::engine::Aes256Gcm;
use kafka_e2ee_client::kafka::{TopicSpec, ensure_topic};
use kafka_e2ee_client::key_directory::KeyDirectory;
use kafka_e2ee_client::key_records::PlaintextPolicy;
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::nonce::MAX_RECORDS_PER_DEK;
use kafka_e2ee_client::producer::{EncryptingProducer, OutgoingRecord, ProducerSettings};
use kafka_e2ee_client::record::Header;
use kafka_e2ee_tests::fixture::{Counting, Fixture};
use kafka_e2ee_tests::unique;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PAIRS: usize = 15;
const PARTITIONS: i32 = 3;

/// Seconds of CPU this process's live threads (librdkafka's included) have used, with the
/// nanosecond resolution of /proc/<pid>/task/<tid>/schedstat (utime ticks are 10 ms).
fn process_cpu() -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path().join("schedstat");
        // A thread may exit between listing and reading.
        if let Ok(stat) = std::fs::read_to_string(path) {
            ns += stat
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// Seconds of CPU the broker process has used (all its threads), from the test bed's pid file.
fn broker_cpu() -> f64 {
    let Some(pid) = std::env::var("KE_TESTBED_RUN")
        .ok()
        .and_then(|dir| std::fs::read_to_string(format!("{dir}/kafka.pid")).ok())
    else {
        return 0.0;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) else {
        return 0.0;
    };
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0 // USER_HZ
}

struct Sample {
    key: Vec<u8>,
    header: Header,
    value: Vec<u8>,
}

fn sample(i: usize, size: usize) -> Sample {
    let mut value = format!("{i:012}").into_bytes();
    value.resize(size, b'v');
    Sample {
        key: format!("customer-{:06}", i % 50_000).into_bytes(),
        header: Header {
            key: "trace-id".into(),
            value: Some(format!("{i:016x}").into_bytes()),
        },
        value,
    }
}

struct Round {
    seconds: f64,
    cpu: f64,
    broker_cpu: f64,
}

fn assignment(topic: &str, from: &BTreeMap<i32, i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in from {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
    }
    tpl
}

fn high_watermarks(fx: &Fixture, topic: &str) -> BTreeMap<i32, i64> {
    let c = fx.connection.metadata_consumer().unwrap();
    kafka_e2ee_client::kafka::partition_watermarks(&c, topic, Duration::from_secs(10))
        .unwrap()
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect()
}

async fn plaintext_round(
    fx: &Fixture,
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    topic: &str,
    n: usize,
    size: usize,
) -> Round {
    let from = high_watermarks(fx, topic);
    let (start, cpu, broker) = (Instant::now(), process_cpu(), broker_cpu());
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let s = sample(i, size);
        let headers = OwnedHeaders::new_with_capacity(1).insert(KafkaHeader {
            key: &s.header.key,
            value: s.header.value.as_deref(),
        });
        let mut record = FutureRecord::to(topic)
            .key(&s.key)
            .payload(&s.value)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(d) => break pending.push(d),
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    consumer.assign(&assignment(topic, &from)).unwrap();
    let mut bytes = 0;
    for _ in 0..n {
        let m = consumer.recv().await.unwrap();
        // The same work the decrypting consumer does: an owned record for the application.
        let owned = (
            m.key().map(<[u8]>::to_vec),
            m.headers().map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect::<Vec<_>>()
            }),
            m.payload().map(<[u8]>::to_vec),
        );
        bytes += owned.2.map_or(0, |v| v.len());
    }
    assert!(bytes >= n * size);
    Round {
        seconds: start.elapsed().as_secs_f64(),
        cpu: process_cpu() - cpu,
        broker_cpu: broker_cpu() - broker,
    }
}

async fn encrypted_round(
    fx: &Fixture,
    producer: &EncryptingProducer<Counting<LocalKeystore>>,
    consumer: &DecryptingConsumer<Counting<LocalKeystore>>,
    topic: &str,
    n: usize,
    size: usize,
) -> Round {
    let from = high_watermarks(fx, topic);
    let (start, cpu, broker) = (Instant::now(), process_cpu(), broker_cpu());
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let s = sample(i, size);
        let headers = [s.header];
        let record = OutgoingRecord {
            key: Some(&s.key),
            headers: &headers,
            ..OutgoingRecord::new(topic, &s.value)
        };
        pending.push(producer.send(record).await.unwrap());
    }
    for d in pending {
        d.wait().await.unwrap();
    }
    consumer.inner().assign(&assignment(topic, &from)).unwrap();
    let mut bytes = 0;
    for _ in 0..n {
        let r = consumer.recv().await.unwrap();
        bytes += r.value.map_or(0, |v| v.len());
    }
    assert!(bytes >= n * size);
    Round {
        seconds: start.elapsed().as_secs_f64(),
        cpu: process_cpu() - cpu,
        broker_cpu: broker_cpu() - broker,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn zigzag_varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// Bytes of a record in Kafka's v2 format that depend on its content: key, value, headers and
/// their length varints, and the record-length varint (timestamp and offset deltas and the
/// attributes byte are the same for both sides and cancel).
fn record_bytes(m: &impl Message) -> usize {
    let field = |b: Option<&[u8]>| b.map_or(1, |b| zigzag_varint_len(b.len() as i64) + b.len());
    let mut body = field(m.key()) + field(m.payload());
    let headers: Vec<(String, Option<Vec<u8>>)> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    body += zigzag_varint_len(headers.len() as i64);
    for (k, v) in &headers {
        body += field(Some(k.as_bytes())) + field(v.as_deref());
    }
    body + zigzag_varint_len(body as i64)
}

/// Mean content bytes per record of the first `n` records of `topic`.
async fn mean_record_bytes(fx: &Fixture, topic: &str, n: usize) -> f64 {
    let consumer: StreamConsumer = fx
        .connection
        .client_config()
        .set("group.id", unique("bytes"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut total = 0;
    for _ in 0..n {
        total += record_bytes(&consumer.recv().await.unwrap());
    }
    total as f64 / n as f64
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("KE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut fx = Fixture::new("bench").await.unwrap();
    let mut topics = BTreeMap::new();
    for size in [100usize, 1024] {
        let encrypted = fx
            .encrypt_topic(
                &format!("bench-enc-{size}"),
                PARTITIONS,
                PlaintextPolicy::Reject,
                MAX_RECORDS_PER_DEK,
                BTreeMap::new(),
            )
            .await
            .unwrap();
        let plain = unique(&format!("bench-plain-{size}"));
        let spec = TopicSpec {
            name: plain.clone(),
            partitions: PARTITIONS,
            replication: None,
            config: BTreeMap::new(),
        };
        ensure_topic(
            &fx.connection.admin().unwrap(),
            &spec,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        topics.insert(size, (plain, encrypted));
    }

    // One rdkafka configuration for both sides.
    let producer_config = {
        let mut c = fx.connection.client_config();
        c.set("linger.ms", "5");
        c
    };
    let mut consumer_conn = fx.connection.clone();
    consumer_conn
        .properties
        .insert("enable.auto.commit".into(), "false".into());
    let plain_producer: FutureProducer = producer_config.create().unwrap();
    let plain_consumer: StreamConsumer = consumer_conn
        .client_config()
        .set("group.id", unique("bench-plain"))
        .create()
        .unwrap();
    let keys = Arc::new(
        KeyDirectory::start(&fx.connection, &fx.key_topic)
            .await
            .unwrap(),
    );
    keys.wait_caught_up(Duration::from_secs(10)).await.unwrap();
    let unwraps = Arc::new(AtomicUsize::new(0));
    let deks = Arc::new(DekCache::new(
        Counting::new(
            LocalKeystore::from_file(&fx.keystore_path).unwrap(),
            Arc::clone(&unwraps),
        ),
        Box::new(Aes256Gcm),
        DekCacheConfig::default(),
    ));
    let mut enc_conn = fx.connection.clone();
    enc_conn.properties.insert("linger.ms".into(), "5".into());
    let producer = EncryptingProducer::new(
        &enc_conn,
        Arc::clone(&keys),
        Arc::clone(&deks),
        ProducerSettings::default(),
    )
    .unwrap();
    let consumer = DecryptingConsumer::new(
        &consumer_conn,
        &unique("bench-enc"),
        Arc::clone(&keys),
        Arc::clone(&deks),
        ConsumerSettings::default(),
    )
    .unwrap();

    {
        // Futures are moved per record: their size is a per-record cost (docs/performance.md).
        let (topic, value) = (topics[&100].1.as_str(), [0u8; 1]);
        let send = producer.send(OutgoingRecord::new(topic, &value));
        let recv = consumer.recv();
        println!(
            "future sizes: EncryptingProducer::send {} B, DecryptingConsumer::recv {} B",
            std::mem::size_of_val(&send),
            std::mem::size_of_val(&recv)
        );
    }
    println!(
        "{n} records per round, {PARTITIONS} partitions, key 15 B + one 24 B header, {PAIRS} interleaved pairs\n"
    );
    println!(
        "| value | plaintext rec/s | encrypted rec/s | encrypted / plaintext rec/s (median) | client CPU µs per record, plaintext / encrypted | client CPU per record, encrypted / plaintext (median) | broker CPU per record, encrypted / plaintext (median) | wire bytes per record over plaintext |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut encrypted_records = 0usize;
    for (&size, (plain, encrypted)) in &topics {
        let (mut rate_ratio, mut cpu_ratio, mut broker_ratio, mut plain_rate, mut enc_rate) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut plain_us, mut enc_us) = (vec![], vec![]);
        // One unmeasured round each: connections, metadata, first keys.
        plaintext_round(&fx, &plain_producer, &plain_consumer, plain, n / 10, size).await;
        encrypted_round(&fx, &producer, &consumer, encrypted, n / 10, size).await;
        encrypted_records += n / 10;
        // `KE_BENCH_ONLY=plaintext|encrypted`: one side only, for a profiler (`perf record`).
        if let Ok(side) = std::env::var("KE_BENCH_ONLY") {
            for _ in 0..PAIRS {
                if side == "plaintext" {
                    plaintext_round(&fx, &plain_producer, &plain_consumer, plain, n, size).await;
                } else {
                    encrypted_round(&fx, &producer, &consumer, encrypted, n, size).await;
                }
            }
            continue;
        }
        for pair in 0..PAIRS {
            let (p, e) = if pair % 2 == 0 {
                let p =
                    plaintext_round(&fx, &plain_producer, &plain_consumer, plain, n, size).await;
                let e = encrypted_round(&fx, &producer, &consumer, encrypted, n, size).await;
                (p, e)
            } else {
                let e = encrypted_round(&fx, &producer, &consumer, encrypted, n, size).await;
                let p =
                    plaintext_round(&fx, &plain_producer, &plain_consumer, plain, n, size).await;
                (p, e)
            };
            encrypted_records += n;
            rate_ratio.push(p.seconds / e.seconds);
            cpu_ratio.push(e.cpu / p.cpu.max(0.01));
            broker_ratio.push(e.broker_cpu / p.broker_cpu.max(0.01));
            plain_us.push(p.cpu * 1e6 / n as f64);
            enc_us.push(e.cpu * 1e6 / n as f64);
            plain_rate.push(n as f64 / p.seconds);
            enc_rate.push(n as f64 / e.seconds);
        }
        let overhead = mean_record_bytes(&fx, encrypted, 1000).await
            - mean_record_bytes(&fx, plain, 1000).await;
        println!(
            "| {size} B | {:.0} | {:.0} | {:.3} | {:.2} / {:.2} | {:.3} | {:.3} | {:.1} |",
            median(plain_rate),
            median(enc_rate),
            median(rate_ratio),
            median(plain_us),
            median(enc_us),
            median(cpu_ratio),
            median(broker_ratio),
            overhead
        );
    }
    println!(
        "\nprovider (KMS) calls: {} for {encrypted_records} records encrypted and decrypted; key versions used: {}",
        unwraps.load(Ordering::SeqCst),
        2 * PARTITIONS
    );
}
