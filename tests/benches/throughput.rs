//! Produce + consume throughput, client CPU and wire bytes: encrypted vs plaintext through the
//! same rdkafka client settings and the same broker (docs/performance.md).
//! Run with the test bed's broker up: `scripts/bench` (or `cargo bench -p kafka-e2ee-tests
//! --bench throughput` after `scripts/testbed up kafka` and `eval "$(scripts/testbed env)"`).
//!
//! Each round writes N records to a fresh topic and reads them back. Four sides: plaintext,
//! padded plaintext (records of exactly the encrypted records' wire size and shape, no
//! cryptography: what the extra bytes alone cost), bare AEAD (padded plaintext whose sealed part
//! is AES-256-GCM sealed and opened with aws-lc-rs directly, no envelope: the floor any KIP-317
//! client pays on this machine) and encrypted. A group is one round of each,
//! in an order that rotates from group to group; GROUPS groups per record size, and the medians
//! of the per-group ratios are reported, so machine noise that hits a whole group cancels.
//!
//! Every round starts from the same broker state (an empty topic, leaders known, keys cached:
//! a few warm-up records go through first, outside the clock). The test bed's broker (tansu)
//! keeps records in memory and slows down as it holds more, which hurts the bigger encrypted
//! records more, so `scripts/bench` restarts it for each record size (`KE_BENCH_SIZE`).

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
use kafka_e2ee_client::engine::{Aes256Gcm, TAG_LEN};
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::kafka::{TopicSpec, ensure_topic};
use kafka_e2ee_client::key_directory::KeyDirectory;
use kafka_e2ee_client::key_records::PlaintextPolicy;
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::nonce::{MAX_RECORDS_PER_DEK, NONCE_LEN};
use kafka_e2ee_client::producer::{EncryptingProducer, OutgoingRecord, ProducerSettings};
use kafka_e2ee_client::record::{Header, KEY_HEADER, encode_key_header};
use kafka_e2ee_tests::fixture::{Counting, Fixture};
use kafka_e2ee_tests::unique;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Groups (one round of each side) per record size; `KE_BENCH_GROUPS` overrides it for quick
/// experiments.
const GROUPS: usize = 15;
const PARTITIONS: i32 = 3;

/// Seconds of CPU this process's live threads (librdkafka's included) have used.
fn process_cpu() -> f64 {
    kafka_e2ee_tests::cpu_seconds("self")
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

/// This thread's CPU seconds so far.
fn this_thread_cpu() -> f64 {
    kafka_e2ee_tests::this_thread_cpu_seconds()
}

/// `KE_BENCH_VERBOSE=1`: a line per round on stderr (wall time; client CPU per record, split
/// into the application thread's while producing and while consuming and librdkafka's threads'
/// for the whole round), to see a run's spread and where a difference arises.
fn trace_round(side: &str, n: usize, round: &Round, thread: [f64; 3]) {
    if std::env::var_os("KE_BENCH_VERBOSE").is_some() {
        let per_record = |a: f64, b: f64| (b - a) * 1e6 / n as f64;
        let total = per_record(0.0, round.cpu);
        eprintln!(
            "{side:9} {:.3} s; client CPU µs per record {total:.2}: application thread produce {:.2}, consume {:.2}; other threads {:.2}",
            round.seconds,
            per_record(thread[0], thread[1]),
            per_record(thread[1], thread[2]),
            total - per_record(thread[0], thread[2]),
        );
    }
}

struct Sample {
    key: Vec<u8>,
    header: Header,
    value: Vec<u8>,
}

/// The record the application sends, or (`Padded`, `BareAead`) one of the same allocations and
/// exactly the encrypted record's wire size: the `encryption_key` header instead of the
/// application's (which travels inside the ciphertext), and the value as long as the sealed one.
/// Every shape does the same application work (formatting the header's value included), so
/// that only what differs on the wire or in the cryptography shows in the ratios.
fn sample(i: usize, size: usize, shape: Shape) -> Sample {
    let mut value = format!("{i:012}").into_bytes();
    let trace_id = format!("{i:016x}").into_bytes();
    let (header, len) = match shape {
        Shape::Plain => (
            Header {
                key: "trace-id".into(),
                value: Some(trace_id),
            },
            size,
        ),
        Shape::Padded | Shape::BareAead => {
            // The application's allocation, holding what the encrypted record carries instead.
            let mut key_header = trace_id;
            key_header.clear();
            key_header.extend_from_slice(&KEY_HEADER_V1);
            (
                Header {
                    key: KEY_HEADER.into(),
                    value: Some(key_header),
                },
                size + SEALED_OVER_VALUE,
            )
        }
    };
    value.resize(len, b'v');
    Sample {
        key: format!("customer-{:06}", i % 50_000).into_bytes(),
        header,
        value,
    }
}

/// The `encryption_key` header of DEK version 1 (checked against `encode_key_header` in `main`).
const KEY_HEADER_V1: [u8; 2] = [1, 1];

/// The frame's bytes before the application's value: header count 1, the application's
/// header (1 + 8 + 1 + 16) (docs/wire-format.md).
const FRAME_BEFORE_VALUE: usize = 1 + (1 + 8 + 1 + 16);
/// Sealed value over the application's value: nonce, the frame's header part, tag.
const SEALED_OVER_VALUE: usize = NONCE_LEN + FRAME_BEFORE_VALUE + TAG_LEN;

/// The bare-AEAD side's cryptography: AES-256-GCM of the padded value's middle (where the
/// envelope has its frame), no AAD, through aws-lc-rs with nothing of ours around it. A fresh
/// random key per round, so the counter nonces never repeat under one key.
struct BareAead {
    key: aws_lc_rs::aead::LessSafeKey,
    scratch: Vec<u8>,
}

impl BareAead {
    fn new() -> Self {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        let bytes: [u8; 32] = rand::random();
        Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).unwrap()),
            scratch: Vec::new(),
        }
    }

    /// Seals `value[NONCE_LEN..len - TAG_LEN]` in place; record `i`'s nonce is its index.
    fn seal(&self, i: usize, value: &mut [u8]) {
        use aws_lc_rs::aead::{Aad, Nonce};
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        value[..NONCE_LEN].copy_from_slice(&nonce);
        let end = value.len() - TAG_LEN;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut value[NONCE_LEN..end],
            )
            .unwrap();
        value[end..].copy_from_slice(tag.as_ref());
    }

    /// Opens a sealed payload from the fetched bytes into the reused scratch buffer and returns
    /// the application's value, copied out as the decrypting consumer returns it.
    fn open(&mut self, payload: &[u8]) -> Vec<u8> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce: [u8; NONCE_LEN] = payload[..NONCE_LEN].try_into().unwrap();
        let (ciphertext, tag) = payload[NONCE_LEN..].split_at(payload.len() - NONCE_LEN - TAG_LEN);
        self.scratch.resize(ciphertext.len(), 0);
        self.key
            .open_separate_gather(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                ciphertext,
                tag,
                &mut self.scratch,
            )
            .unwrap();
        self.scratch[FRAME_BEFORE_VALUE..].to_vec()
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

/// Every partition from its first record: where the warm-up records are.
fn warm_up_offsets() -> BTreeMap<i32, i64> {
    (0..PARTITIONS).map(|p| (p, 0)).collect()
}

fn high_watermarks(fx: &Fixture, topic: &str) -> BTreeMap<i32, i64> {
    let c = fx.connection.metadata_consumer().unwrap();
    kafka_e2ee_client::kafka::partition_watermarks(&c, topic, Duration::from_secs(10))
        .unwrap()
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect()
}

/// What the plaintext side sends: the application's record as is, or (`Padded`) a record of
/// exactly the encrypted record's wire shape (the `encryption_key` header and a value as long as
/// the sealed one) without any cryptography: the cost of the bytes alone; or (`BareAead`) that
/// record with its middle sealed and opened by aws-lc-rs AES-256-GCM: bytes plus cryptography,
/// without the envelope (key lookups, frame, AAD, wrappers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Padded,
    BareAead,
}

async fn plaintext_round(
    fx: &Fixture,
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    topic: &str,
    n: usize,
    size: usize,
    shape: Shape,
) -> Round {
    // Warm-up outside the clock: metadata and a connection to every partition's leader.
    for partition in 0..PARTITIONS {
        let record = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .payload(b"warm-up");
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
    consumer
        .assign(&assignment(topic, &warm_up_offsets()))
        .unwrap();
    for _ in 0..PARTITIONS {
        consumer.recv().await.unwrap();
    }
    consumer.unassign().unwrap();
    let from = high_watermarks(fx, topic);
    let mut bare = BareAead::new();
    let (start, cpu, broker) = (Instant::now(), process_cpu(), broker_cpu());
    let produce_start = this_thread_cpu();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = sample(i, size, shape);
        if shape == Shape::BareAead {
            bare.seal(i, &mut s.value);
        }
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
    let consume_start = this_thread_cpu();
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
            m.payload().map(|p| match shape {
                Shape::BareAead => bare.open(p),
                Shape::Plain | Shape::Padded => p.to_vec(),
            }),
        );
        bytes += owned.2.map_or(0, |v| v.len());
    }
    assert!(bytes >= n * size);
    let side = match shape {
        Shape::Plain => "plaintext",
        Shape::Padded => "padded",
        Shape::BareAead => "bare-aead",
    };
    let thread = [produce_start, consume_start, this_thread_cpu()];
    let round = Round {
        seconds: start.elapsed().as_secs_f64(),
        cpu: process_cpu() - cpu,
        broker_cpu: broker_cpu() - broker,
    };
    trace_round(side, n, &round, thread);
    round
}

async fn encrypted_round(
    fx: &Fixture,
    producer: &EncryptingProducer<Counting<LocalKeystore>>,
    consumer: &DecryptingConsumer<Counting<LocalKeystore>>,
    topic: &str,
    n: usize,
    size: usize,
) -> Round {
    // Warm-up outside the clock: topic state, sealers (DEKs through the shared cache), metadata.
    for partition in 0..PARTITIONS {
        let record = OutgoingRecord {
            partition: Some(partition),
            ..OutgoingRecord::new(topic, b"warm-up")
        };
        producer.send_and_wait(record).await.unwrap();
    }
    consumer
        .inner()
        .assign(&assignment(topic, &warm_up_offsets()))
        .unwrap();
    for _ in 0..PARTITIONS {
        consumer.recv().await.unwrap();
    }
    consumer.inner().unassign().unwrap();
    let from = high_watermarks(fx, topic);
    let (start, cpu, broker) = (Instant::now(), process_cpu(), broker_cpu());
    let produce_start = this_thread_cpu();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let s = sample(i, size, Shape::Plain);
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
    let consume_start = this_thread_cpu();
    consumer.inner().assign(&assignment(topic, &from)).unwrap();
    let mut bytes = 0;
    for _ in 0..n {
        let r = consumer.recv().await.unwrap();
        bytes += r.value.map_or(0, |v| v.len());
    }
    assert!(bytes >= n * size);
    let thread = [produce_start, consume_start, this_thread_cpu()];
    let round = Round {
        seconds: start.elapsed().as_secs_f64(),
        cpu: process_cpu() - cpu,
        broker_cpu: broker_cpu() - broker,
    };
    trace_round("encrypted", n, &round, thread);
    round
}

/// Per-group ratios and rates, reported as medians.
#[derive(Default)]
struct Medians {
    plain_rate: Vec<f64>,
    enc_rate: Vec<f64>,
    enc_over_plain: Vec<f64>,
    padded_over_plain: Vec<f64>,
    bare_over_plain: Vec<f64>,
    plain_us: Vec<f64>,
    padded_us: Vec<f64>,
    bare_us: Vec<f64>,
    enc_us: Vec<f64>,
    cpu_enc_over_plain: Vec<f64>,
    cpu_bare_over_plain: Vec<f64>,
    cpu_enc_over_bare: Vec<f64>,
    broker_enc_over_plain: Vec<f64>,
}

/// One group's rounds.
struct Group {
    plain: Round,
    padded: Round,
    bare: Round,
    enc: Round,
}

impl Medians {
    fn push(&mut self, n: usize, g: &Group) {
        let n = n as f64;
        let (p, d, b, e) = (&g.plain, &g.padded, &g.bare, &g.enc);
        self.plain_rate.push(n / p.seconds);
        self.enc_rate.push(n / e.seconds);
        self.enc_over_plain.push(p.seconds / e.seconds);
        self.padded_over_plain.push(p.seconds / d.seconds);
        self.bare_over_plain.push(p.seconds / b.seconds);
        self.plain_us.push(p.cpu * 1e6 / n);
        self.padded_us.push(d.cpu * 1e6 / n);
        self.bare_us.push(b.cpu * 1e6 / n);
        self.enc_us.push(e.cpu * 1e6 / n);
        self.cpu_enc_over_plain.push(e.cpu / p.cpu.max(0.01));
        self.cpu_bare_over_plain.push(b.cpu / p.cpu.max(0.01));
        self.cpu_enc_over_bare.push(e.cpu / b.cpu.max(0.01));
        self.broker_enc_over_plain
            .push(e.broker_cpu / p.broker_cpu.max(0.01));
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

/// Mean content bytes per record of the first `n` records of `topic` after the warm-up records
/// (one at the start of each partition).
async fn mean_record_bytes(fx: &Fixture, topic: &str, n: usize) -> f64 {
    let consumer: StreamConsumer = fx
        .connection
        .client_config()
        .set("group.id", unique("bytes"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Offset(1))
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut total = 0;
    for _ in 0..n {
        total += record_bytes(&consumer.recv().await.unwrap());
    }
    total as f64 / n as f64
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Plaintext,
    Padded,
    BareAead,
    Encrypted,
}

/// The clients both sides use for the whole run (as an application would keep them).
struct Clients {
    plain_producer: FutureProducer,
    plain_consumer: StreamConsumer,
    producer: EncryptingProducer<Counting<LocalKeystore>>,
    consumer: DecryptingConsumer<Counting<LocalKeystore>>,
}

/// A fresh topic for one round: every round starts from the same broker state (an empty
/// topic), so storage that grows over the run cannot favour one side.
async fn fresh_topic(fx: &mut Fixture, side: Side, size: usize) -> String {
    let prefix = match side {
        Side::Plaintext => format!("bench-plain-{size}"),
        Side::Padded => format!("bench-padded-{size}"),
        Side::BareAead => format!("bench-bare-{size}"),
        Side::Encrypted => format!("bench-enc-{size}"),
    };
    if side == Side::Encrypted {
        return fx
            .encrypt_topic(
                &prefix,
                PARTITIONS,
                PlaintextPolicy::Reject,
                MAX_RECORDS_PER_DEK,
                BTreeMap::new(),
            )
            .await
            .unwrap();
    }
    let name = unique(&prefix);
    let spec = TopicSpec {
        name: name.clone(),
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
    name
}

async fn round(fx: &Fixture, c: &Clients, side: Side, topic: &str, n: usize, size: usize) -> Round {
    let shape = match side {
        Side::Plaintext => Shape::Plain,
        Side::Padded => Shape::Padded,
        Side::BareAead => Shape::BareAead,
        Side::Encrypted => {
            return encrypted_round(fx, &c.producer, &c.consumer, topic, n, size).await;
        }
    };
    plaintext_round(
        fx,
        &c.plain_producer,
        &c.plain_consumer,
        topic,
        n,
        size,
        shape,
    )
    .await
}

/// One round on a fresh topic. Topics are not deleted afterwards: librdkafka 2.12 crashes
/// (`rd_kafka_metadata_cache_find`, a null topic name) when tansu reports a deleted topic that a
/// client still has in its metadata cache.
async fn measured_round(fx: &mut Fixture, c: &Clients, side: Side, n: usize, size: usize) -> Round {
    let topic = fresh_topic(fx, side, size).await;
    round(fx, c, side, &topic, n, size).await
}

/// Mean wire bytes per record of each side, from 1,000 records on fresh topics.
async fn wire_bytes(fx: &mut Fixture, c: &Clients, size: usize) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (i, side) in [Side::Plaintext, Side::Padded, Side::Encrypted]
        .into_iter()
        .enumerate()
    {
        let topic = fresh_topic(fx, side, size).await;
        round(fx, c, side, &topic, 1000, size).await;
        out[i] = mean_record_bytes(fx, &topic, 1000).await;
    }
    out
}

#[tokio::main]
async fn main() {
    let env_count = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = env_count("KE_BENCH_RECORDS", 100_000);
    let groups = env_count("KE_BENCH_GROUPS", GROUPS);
    assert_eq!(encode_key_header(1), KEY_HEADER_V1);
    let mut fx = Fixture::new("bench").await.unwrap();

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
    let keys = Arc::new(
        KeyDirectory::start(&fx.connection, &fx.key_topic, fx.trust())
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
    let clients = Clients {
        plain_producer: producer_config.create().unwrap(),
        plain_consumer: consumer_conn
            .client_config()
            .set("group.id", unique("bench-plain"))
            .create()
            .unwrap(),
        producer: EncryptingProducer::new(
            &enc_conn,
            Arc::clone(&keys),
            Arc::clone(&deks),
            ProducerSettings::default(),
        )
        .unwrap(),
        consumer: DecryptingConsumer::new(
            &consumer_conn,
            &unique("bench-enc"),
            Arc::clone(&keys),
            Arc::clone(&deks),
            ConsumerSettings::default(),
        )
        .unwrap(),
    };
    {
        // Futures are moved per record: their size is a per-record cost (docs/performance.md).
        let value = [0u8; 1];
        let send = clients.producer.send(OutgoingRecord::new("t", &value));
        let recv = clients.consumer.recv();
        println!(
            "future sizes: EncryptingProducer::send {} B, DecryptingConsumer::recv {} B",
            std::mem::size_of_val(&send),
            std::mem::size_of_val(&recv)
        );
    }
    println!(
        "{n} records per round, {PARTITIONS} partitions, key 15 B + one 24 B header, {groups} interleaved groups of plaintext, padded plaintext, bare AEAD and encrypted, a fresh topic per round\n"
    );
    println!(
        "| value | plaintext rec/s | encrypted rec/s | encrypted / plaintext rec/s | padded / plaintext rec/s | bare AEAD / plaintext rec/s | client CPU µs per record, plaintext / padded / bare AEAD / encrypted | client CPU, encrypted / plaintext | client CPU, bare AEAD / plaintext | client CPU, encrypted / bare AEAD | broker CPU, encrypted / plaintext | wire bytes per record over plaintext, padded / encrypted |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut encrypted_topics = 0;
    for size in [100usize, 1024] {
        if std::env::var("KE_BENCH_SIZE").is_ok_and(|v| v != size.to_string()) {
            continue;
        }
        // `KE_BENCH_ONLY=plaintext|padded|bare-aead|encrypted`: one side only, for a profiler.
        if let Ok(only) = std::env::var("KE_BENCH_ONLY") {
            let side = match only.as_str() {
                "plaintext" => Side::Plaintext,
                "padded" => Side::Padded,
                "bare-aead" => Side::BareAead,
                _ => Side::Encrypted,
            };
            for _ in 0..groups {
                measured_round(&mut fx, &clients, side, n, size).await;
            }
            continue;
        }
        let mut m = Medians::default();
        for group in 0..groups {
            // Rotate which side goes first, and reverse every other group.
            let mut order = [
                Side::Plaintext,
                Side::Padded,
                Side::BareAead,
                Side::Encrypted,
            ];
            let sides = order.len();
            order.rotate_left(group % sides);
            if group % 2 == 1 {
                order.reverse();
            }
            let mut rounds = BTreeMap::new();
            for side in order {
                let r = measured_round(&mut fx, &clients, side, n, size).await;
                rounds.insert(side as u8, r);
            }
            encrypted_topics += 1;
            let mut take = |side: Side| rounds.remove(&(side as u8)).unwrap();
            let group = Group {
                plain: take(Side::Plaintext),
                padded: take(Side::Padded),
                bare: take(Side::BareAead),
                enc: take(Side::Encrypted),
            };
            m.push(n, &group);
        }
        let [plain_bytes, padded_bytes, enc_bytes] = wire_bytes(&mut fx, &clients, size).await;
        encrypted_topics += 1;
        println!(
            "| {size} B | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.2} / {:.2} / {:.2} / {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} / {:.1} |",
            median(m.plain_rate),
            median(m.enc_rate),
            median(m.enc_over_plain),
            median(m.padded_over_plain),
            median(m.bare_over_plain),
            median(m.plain_us),
            median(m.padded_us),
            median(m.bare_us),
            median(m.enc_us),
            median(m.cpu_enc_over_plain),
            median(m.cpu_bare_over_plain),
            median(m.cpu_enc_over_bare),
            median(m.broker_enc_over_plain),
            padded_bytes - plain_bytes,
            enc_bytes - plain_bytes,
        );
    }
    // One DEK version per partition of every encrypted topic; the DEK cache serves the producer
    // and the consumer, so each version should cost exactly one unwrap.
    println!(
        "\nprovider (KMS) calls: {}; key versions used: {}",
        unwraps.load(Ordering::SeqCst),
        encrypted_topics * PARTITIONS as usize
    );
}
