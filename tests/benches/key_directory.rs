//! Key directory cold load (docs/performance.md): a fresh `KeyDirectory` reads N signed key
//! records (default 20,000: per topic one policy and 19 EDEKs, written as the operator writes
//! them: each topic's EDEKs in one signed batch, its policy in another) from the beginning of
//! the key topic, verifying every record, decoding and indexing them. The baseline is the same
//! records read by a bare rdkafka consumer that only decodes them: no signature, no state.
//! Rounds alternate which side goes first; medians and their ratio are printed, and the
//! signature checks alone are timed in-process to say where the difference goes.
//!
//! `eval "$(scripts/testbed env)"; cargo bench -p kafka-e2ee-tests --bench key_directory`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code: a failed step fails the run"
)]

use std::collections::BTreeMap;

use futures::StreamExt;
use std::time::{Duration, Instant};

use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::key_directory::KeyDirectory;
use kafka_e2ee_client::key_records::{
    self, EdekRecord, PlaintextPolicy, PolicyRecord, ProviderRef,
};
use kafka_e2ee_client::provider::{DekCommitment, Edek};
use kafka_e2ee_client::signing::{SIGNATURE_HEADER, Verifier};
use kafka_e2ee_tests::fixture::{Fixture, TEK};
use kafka_e2ee_tests::unique;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const EDEKS_PER_TOPIC: usize = 19;
const ROUNDS: usize = 7;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `n` signed key records: per topic, EDEKs for 19 versions of partition 0 and a policy.
/// `batched`: each topic's EDEKs in one signed batch (as a rollover of every partition, or a
/// re-signing pass, writes them); otherwise every record alone (as single-partition
/// rollovers accumulate): one signature per record, the worst case.
async fn fill(fx: &Fixture, n: usize, batched: bool) {
    let topics = n / (EDEKS_PER_TOPIC + 1);
    let mut edeks = Vec::with_capacity(topics * EDEKS_PER_TOPIC);
    let mut policies = Vec::with_capacity(topics);
    for t in 0..topics {
        let topic = format!("bench-topic-{t:05}");
        for version in 1..=EDEKS_PER_TOPIC as u32 {
            edeks.push(EdekRecord {
                topic: topic.clone(),
                partition: 0,
                version,
                tek: TEK.into(),
                tek_version: Some("1".into()),
                // The size of a Vault transit wrapping of a 32-byte DEK.
                edek: Edek(vec![b'v'; 61]),
                commitment: DekCommitment([7; 32]),
                created_at_ms: 1_800_000_000_000,
                created_at_offset: Some(0),
            });
        }
        policies.push(PolicyRecord {
            topic,
            provider: ProviderRef {
                kind: "keystore".into(),
                tek: TEK.into(),
                config: BTreeMap::new(),
            },
            engine: "AES-256-GCM".into(),
            plaintext: PlaintextPolicy::Reject,
            max_records_per_dek: 1 << 30,
            current_versions: BTreeMap::from([(0, EDEKS_PER_TOPIC as u32)]),
        });
    }
    // As the operator provisions: a topic's EDEKs in one batch, then its policy. Topics are
    // written concurrently (the operator reconciles many at once).
    let writes =
        edeks
            .chunks(EDEKS_PER_TOPIC)
            .zip(&policies)
            .map(|(topic_edeks, policy)| async move {
                if batched {
                    fx.writer.publish_edeks(topic_edeks).await.unwrap();
                } else {
                    for edek in topic_edeks {
                        fx.writer
                            .publish_edeks(std::slice::from_ref(edek))
                            .await
                            .unwrap();
                    }
                }
                fx.writer.publish_policy(policy).await.unwrap();
            });
    futures::stream::iter(writes)
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// A fresh directory, read to the end; returns the time and the records it applied.
async fn verified(fx: &Fixture, n: usize) -> Duration {
    let started = Instant::now();
    let dir = KeyDirectory::start(&fx.connection, &fx.key_topic, fx.trust())
        .await
        .unwrap();
    let started_reading = started.elapsed();
    while (dir
        .stats()
        .applied
        .load(std::sync::atomic::Ordering::Relaxed) as usize)
        < n
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_applied = started.elapsed();
    dir.wait_caught_up(Duration::from_secs(120)).await.unwrap();
    let took = started.elapsed();
    if std::env::var_os("KE_BENCH_VERBOSE").is_some() {
        println!("    start {started_reading:?}, all applied {all_applied:?}, caught up {took:?}");
    }
    let applied = dir
        .stats()
        .applied
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(applied as usize, n, "every record verified and applied");
    took
}

/// A bare consumer of the key topic, from its beginning.
fn from_beginning(fx: &Fixture) -> BaseConsumer {
    let consumer: BaseConsumer = fx
        .connection
        .client_config()
        .set("group.id", unique("bench-raw"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&fx.key_topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    consumer
}

/// A bare consumer that reads and decodes every record; no signatures, no state.
fn decoded_only(fx: &Fixture, n: usize) -> Duration {
    let started = Instant::now();
    let consumer = from_beginning(fx);
    let mut seen = 0;
    while seen < n {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            key_records::decode(message.key().unwrap(), message.payload()).unwrap();
            seen += 1;
        }
    }
    started.elapsed()
}

/// The verification alone (audit paths and one signature check per batch), in-process, over
/// the stored records; returns the time and the number of Ed25519 checks.
fn verification_only(fx: &Fixture, n: usize) -> (Duration, u64) {
    let consumer = from_beginning(fx);
    let mut records = Vec::with_capacity(n);
    while records.len() < n {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            records.push(message.unwrap().detach());
        }
    }
    let mut verifier = Verifier::new(fx.trust().keys);
    let started = Instant::now();
    for m in &records {
        let header = m
            .headers()
            .unwrap()
            .iter()
            .find(|h| h.key == SIGNATURE_HEADER)
            .and_then(|h| h.value);
        verifier
            .verify(m.key().unwrap(), m.payload(), header)
            .unwrap();
    }
    (started.elapsed(), verifier.signature_checks())
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// One layout of the key topic: fill it, then alternate the two readers.
async fn measure(n: usize, batched: bool) {
    let fx = Fixture::new("bench-dir").await.unwrap();
    let filled = Instant::now();
    fill(&fx, n, batched).await;
    println!(
        "{n} signed key records, {}, written in {:.1} s",
        if batched {
            "each topic's EDEKs in one batch"
        } else {
            "every record signed alone"
        },
        filled.elapsed().as_secs_f64()
    );
    // Warm-up outside the clock (page cache, broker's first fetch of the topic).
    decoded_only(&fx, n);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            with.push(verified(&fx, n).await);
            without.push(decoded_only(&fx, n));
        } else {
            without.push(decoded_only(&fx, n));
            with.push(verified(&fx, n).await);
        }
        println!(
            "  round {round}: directory (verify + decode + index) {:>7.1} ms, bare consumer (decode) {:>7.1} ms",
            with[round].as_secs_f64() * 1e3,
            without[round].as_secs_f64() * 1e3
        );
    }
    let (sig, checks) = verification_only(&fx, n);
    let (w, wo) = (median(with), median(without));
    println!(
        "  median: directory {:.1} ms, bare consumer {:.1} ms, ratio {:.2} (target <= 2.0); verification alone {:.1} ms ({:.2} us per record, {checks} Ed25519 checks)",
        w.as_secs_f64() * 1e3,
        wo.as_secs_f64() * 1e3,
        w.as_secs_f64() / wo.as_secs_f64(),
        sig.as_secs_f64() * 1e3,
        sig.as_secs_f64() * 1e6 / n as f64
    );
}

#[tokio::main]
async fn main() {
    let n =
        env_usize("KE_BENCH_KEY_RECORDS", 20_000) / (EDEKS_PER_TOPIC + 1) * (EDEKS_PER_TOPIC + 1);
    println!("key directory cold load:");
    measure(n, true).await;
    measure(n, false).await;
}
