//! Scale benchmark (docs/performance.md): N EncryptedTopics (3 partitions each, keystore TEK)
//! reconciled from empty to Ready by the real operator binary against the test bed's
//! kube-apiserver and broker; then a full resync (a restarted operator lists and reconciles
//! everything) must write nothing; the operator's peak RSS is read from /proc.
//!
//! `eval "$(scripts/testbed env)"; KE_SCALE_TOPICS=5000 cargo bench -p kafka-e2ee-operator --bench scale`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code: a failed step fails the run"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use kafka_e2ee_crds::EncryptedTopic;
use kube::api::{ListParams, PostParams};
use support::*;

/// The operator as deployed (default count-check interval), with more concurrent reconciles.
const OPERATOR_ARGS: &[&str] = &["--concurrency", "64", "--count-check-interval", "60s"];

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

async fn list_all(env: &TestEnv) -> Vec<EncryptedTopic> {
    env.topics()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// Every object's resourceVersion: unchanged means not written.
async fn resource_versions(env: &TestEnv) -> BTreeMap<String, Option<String>> {
    list_all(env)
        .await
        .into_iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap(),
                o.metadata.resource_version,
            )
        })
        .collect()
}

/// Events the operator published in `env`'s namespace (events.k8s.io).
async fn count_events(env: &TestEnv) -> usize {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    api.list(&ListParams::default()).await.unwrap().items.len()
}

fn tek_name(i: usize) -> String {
    format!("scale-tek-{i:05}")
}

fn ready_count(items: &[EncryptedTopic]) -> usize {
    items
        .iter()
        .filter(|o| ready_reason(o).as_deref() == Some("Ready"))
        .count()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("KE_SCALE_TOPICS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let env = TestEnv::new("scale").await;
    env.keystore().await;
    // A TEK per topic (a TEK is held by one EncryptedTopic): one key under N aliases.
    let aliases: serde_json::Map<String, serde_json::Value> =
        (0..n).map(|i| (tek_name(i), "k1".into())).collect();
    let keystore = serde_json::json!({
        "format": 1,
        "keys": [{"id": "k1", "material": base64::engine::general_purpose::STANDARD.encode([7u8; 32])}],
        "aliases": aliases,
    });
    env.secret(
        "keystore",
        BTreeMap::from([("keystore.json", keystore.to_string().into_bytes())]),
    )
    .await;
    let operator = env.start_operator(None, OPERATOR_ARGS);
    operator.wait_ready().await;
    let pid = operator.child.id().unwrap();

    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let env = &env;
            async move {
                let name = format!("t{i:05}");
                let mut spec = env.spec(&name, 3, "keystore");
                spec.tek = Some(tek_name(i));
                env.topics()
                    .create(&PostParams::default(), &EncryptedTopic::new(&name, spec))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let created = started.elapsed();
    let mut last = 0;
    loop {
        let items = list_all(&env).await;
        let ready = ready_count(&items);
        if ready != last {
            eprintln!(
                "{:>6.1}s  {ready}/{n} Ready",
                started.elapsed().as_secs_f64()
            );
            last = ready;
        }
        if ready == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not all Ready in 30 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_ready = started.elapsed();
    let rss_initial = peak_rss_mib(pid);
    let writes = operator.metric("kafka_e2ee_key_topic_writes_total").await;
    let reconciles = operator.metric("kafka_e2ee_reconciles_total").await;
    let offset_reads = operator.metric("kafka_e2ee_offset_reads_total").await;
    let events = count_events(&env).await;
    operator.kill().await;

    // Full resync: a new operator lists every object and reconciles each once.
    let before = resource_versions(&env).await;
    let operator = env.start_operator(None, OPERATOR_ARGS);
    operator.wait_ready().await;
    let resync_started = Instant::now();
    let pid = operator.child.id().unwrap();
    while (operator.metric("kafka_e2ee_reconciles_total").await as usize) < n {
        assert!(resync_started.elapsed() < Duration::from_secs(1800));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let resync = resync_started.elapsed();
    let after = resource_versions(&env).await;
    let api_writes = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .count();
    let resync_writes = operator.metric("kafka_e2ee_key_topic_writes_total").await;
    let rss_resync = peak_rss_mib(pid);
    operator.kill().await;

    println!("EncryptedTopics:              {n} x 3 partitions (keystore TEK)");
    println!(
        "created through the API in:   {:.1} s",
        created.as_secs_f64()
    );
    println!(
        "empty -> all Ready:           {:.1} s",
        all_ready.as_secs_f64()
    );
    println!("key-topic records written:    {writes}");
    println!(
        "per topic:                    {:.2} reconciles, {:.2} events, {:.3} offset reads ({offset_reads} in all)",
        reconciles / n as f64,
        events as f64 / n as f64,
        offset_reads / n as f64
    );
    println!("operator peak RSS:            {rss_initial:.1} MiB");
    println!(
        "full resync:                  {:.1} s",
        resync.as_secs_f64()
    );
    println!("  objects rewritten:          {api_writes}");
    println!("  key-topic records written:  {resync_writes}");
    println!("  operator peak RSS:          {rss_resync:.1} MiB");
}
