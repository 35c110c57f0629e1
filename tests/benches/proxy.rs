//! The encrypting proxy's cost (docs/performance.md, "Proxy"): a stock client (librdkafka
//! through rdkafka, the same settings each side) produces N records and reads them back,
//! three ways in one run:
//! - direct: straight to the broker, plaintext;
//! - proxy, passthrough: through the proxy, a topic it forwards untouched (its own cost:
//!   framing, decoding, re-encoding, one more hop);
//! - proxy, encrypted: through the proxy, a topic it seals and opens (the whole cost).
//!
//! The proxy is the real binary (`KE_PROXY_BIN`, built by `scripts/bench` in the release
//! profile), a separate process as in a pod; its CPU is read from /proc. A group is one round
//! of each side, the order rotating; the medians of per-group ratios are reported. Then the
//! proxy's memory per idle client connection (each holds an upstream connection too).
//! Run: `scripts/bench`, or `KE_PROXY_BIN=... cargo bench -p kafka-e2ee-tests --bench proxy`
//! with the test bed's broker up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::kafka::{KafkaConnection, TopicSpec, ensure_topic};
use kafka_e2ee_tests::fixture::Fixture;
use kafka_e2ee_tests::kube_env::free_port;
use kafka_e2ee_tests::{Server, cpu_seconds as cpu_of, require, unique};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const GROUPS: usize = 7;
const PARTITIONS: i32 = 3;

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Round {
    seconds: f64,
    client_cpu: f64,
    proxy_cpu: f64,
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Direct,
    Passthrough,
    Encrypted,
}

struct Proxy {
    child: std::process::Child,
    bootstrap: String,
    http: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_proxy(config: &std::path::Path, passthrough: &str) -> Proxy {
    let bin = std::env::var("KE_PROXY_BIN")
        .expect("KE_PROXY_BIN: the proxy binary (scripts/bench builds it)");
    let (port, http) = (kafka_e2ee_tests::kube_env::proxy_ports(), free_port());
    let base = port + 1;
    let child = std::process::Command::new(bin)
        .args(["--config", &config.display().to_string()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--broker-port-base", &base.to_string()])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--passthrough-topic", passthrough])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("http://127.0.0.1:{http}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the proxy never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Proxy {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        http,
    }
}

fn clients(bootstrap: &str) -> (FutureProducer, StreamConsumer) {
    let connection = KafkaConnection::new(bootstrap);
    let producer: FutureProducer = connection
        .client_config()
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .create()
        .unwrap();
    let consumer: StreamConsumer = connection
        .client_config()
        .set("group.id", unique("bench"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    (producer, consumer)
}

fn assignment(topic: &str, from: i64) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Offset(from))
            .unwrap();
    }
    tpl
}

/// Writes `n` records of `size` bytes to `topic` and reads them back, after a warm-up record
/// per partition outside the clock.
async fn round(
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    topic: &str,
    n: usize,
    size: usize,
    proxy_pid: Option<&str>,
) -> Round {
    for p in 0..PARTITIONS {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(p)
                    .payload(b"warm-up"),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
    }
    consumer.assign(&assignment(topic, 0)).unwrap();
    for _ in 0..PARTITIONS {
        consumer.recv().await.unwrap();
    }
    let value = vec![b'x'; size];
    let proxy_cpu = || proxy_pid.map_or(0.0, cpu_of);
    let (start, cpu, pcpu) = (Instant::now(), cpu_of("self"), proxy_cpu());
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{i}");
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: "trace",
            value: Some(&b"0123456789"[..]),
        });
        let mut record = FutureRecord::to(topic)
            .partition((i % PARTITIONS as usize) as i32)
            .key(key.as_bytes())
            .payload(&value[..])
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
    let mut bytes = 0;
    for _ in 0..n {
        let m = consumer.recv().await.unwrap();
        bytes += m.payload().map_or(0, <[u8]>::len);
    }
    assert_eq!(bytes, n * size, "every record read back, in plaintext");
    consumer.unassign().unwrap();
    Round {
        seconds: start.elapsed().as_secs_f64(),
        client_cpu: cpu_of("self") - cpu,
        proxy_cpu: proxy_cpu() - pcpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let size: usize = std::env::var("KE_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let n: usize = std::env::var("KE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let groups: usize = std::env::var("KE_BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(GROUPS);
    let broker = require(Server::Kafka);
    let mut fx = Fixture::new("bench-proxy").await.unwrap();
    let config_path = std::env::temp_dir().join(unique("bench-proxy-config"));
    std::fs::write(
        &config_path,
        serde_yaml::to_string(&fx.client_config(Duration::from_secs(10))).unwrap(),
    )
    .unwrap();
    // Fresh topics for every round; the passthrough ones are named up front (the flag).
    let passthrough: Vec<String> = (0..groups).map(|_| unique("bench-passthrough")).collect();
    let proxy = start_proxy(&config_path, &passthrough.join(",")).await;
    let pid = proxy.child.id().to_string();
    let direct = clients(&broker);
    let via_proxy = clients(&proxy.bootstrap);
    let admin = fx.connection.admin().unwrap();
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (g, passthrough_topic) in passthrough.iter().enumerate() {
        let mut rounds = BTreeMap::new();
        let mut order = [Side::Direct, Side::Passthrough, Side::Encrypted];
        order.rotate_left(g % 3);
        for side in order {
            let (topic, clients, pid) = match side {
                Side::Direct => (unique("bench-direct"), &direct, None),
                Side::Passthrough => (passthrough_topic.clone(), &via_proxy, Some(pid.as_str())),
                Side::Encrypted => (
                    fx.reject_topic("bench-encrypted", PARTITIONS).await,
                    &via_proxy,
                    Some(pid.as_str()),
                ),
            };
            if !matches!(side, Side::Encrypted) {
                let spec = TopicSpec {
                    name: topic.clone(),
                    partitions: PARTITIONS,
                    replication: None,
                    config: BTreeMap::new(),
                };
                ensure_topic(&admin, &spec, Duration::from_secs(10))
                    .await
                    .unwrap();
            }
            let r = round(&clients.0, &clients.1, &topic, n, size, pid).await;
            rounds.insert(format!("{side:?}"), r);
        }
        let d = &rounds["Direct"];
        let p = &rounds["Passthrough"];
        let e = &rounds["Encrypted"];
        let nf = n as f64;
        rates
            .entry("direct rec/s")
            .or_default()
            .push(nf / d.seconds);
        rates
            .entry("passthrough rec/s")
            .or_default()
            .push(nf / p.seconds);
        rates
            .entry("encrypted rec/s")
            .or_default()
            .push(nf / e.seconds);
        ratios
            .entry("passthrough / direct (rec/s)")
            .or_default()
            .push(d.seconds / p.seconds);
        ratios
            .entry("encrypted / direct (rec/s)")
            .or_default()
            .push(d.seconds / e.seconds);
        ratios
            .entry("client CPU us/rec direct")
            .or_default()
            .push(d.client_cpu * 1e6 / nf);
        ratios
            .entry("client CPU us/rec via proxy, encrypted")
            .or_default()
            .push(e.client_cpu * 1e6 / nf);
        ratios
            .entry("proxy CPU us/rec passthrough")
            .or_default()
            .push(p.proxy_cpu * 1e6 / nf);
        ratios
            .entry("proxy CPU us/rec encrypted")
            .or_default()
            .push(e.proxy_cpu * 1e6 / nf);
        eprintln!(
            "group {g}: direct {:.2}s, passthrough {:.2}s, encrypted {:.2}s; proxy cpu {:.2}/{:.2}s",
            d.seconds, p.seconds, e.seconds, p.proxy_cpu, e.proxy_cpu
        );
    }
    println!(
        "proxy bench: {n} records of {size} B per round, {PARTITIONS} partitions, {groups} groups (medians)"
    );
    for (k, v) in rates.into_iter().chain(ratios) {
        println!("  {k:<42} {:>10.3}", median(v));
    }

    // Memory per idle client connection (each also holds one upstream connection).
    let before = rss_kib(proxy.child.id());
    let mut held = Vec::new();
    for _ in 0..200 {
        let s = tokio::net::TcpStream::connect(&proxy.bootstrap)
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(proxy.child.id());
    println!(
        "  proxy RSS {before:.0} KiB idle, {after:.0} KiB with 200 client connections: {:.1} KiB per connection",
        (after - before) / 200.0
    );
    drop(held);
    let _ = proxy.http;
}
