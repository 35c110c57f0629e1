//! Admission latency at 200 concurrent requests (docs/performance.md): `/mutate` injecting a
//! pod and `/validate` checking an EncryptedTopic update, against a no-op handler on the same
//! server (same TLS, HTTP and body handling, answering a constant "allowed").
//! No servers needed: `cargo bench -p kafka-e2ee-webhook --bench admission` (or scripts/bench).
//!
//! 200 client tasks each hold one keep-alive TLS connection (the apiserver keeps its
//! connections too) and send requests back to back. Rounds alternate the endpoints (and which
//! goes first); the medians of per-round p99 ratios are reported, so machine noise that hits
//! both sides of a pair cancels. Client and server share this process's two cores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use kafka_e2ee_crds::injection::{
    ClientIndex, INDEX_FORMAT, IndexedTopic, Profile, ProjectedSource,
};
use kafka_e2ee_webhook::inject::PreparedIndex;
use kafka_e2ee_webhook::metrics::Metrics;
use kafka_e2ee_webhook::review::{Admission, IndexSource, ProblemMode, Webhook};
use kafka_e2ee_webhook::server::{AppState, router, serve_tls};
use serde_json::json;

#[path = "../tests/support/mod.rs"]
mod support;

// The binary's allocator (webhook/src/main.rs), so the numbers are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 200;
const REQUESTS_PER_TASK: usize = 25;
const ROUNDS: usize = 15;

struct Indexes(Arc<PreparedIndex>);

impl IndexSource for Indexes {
    fn index(&self, _namespace: &str) -> Option<Arc<PreparedIndex>> {
        Some(Arc::clone(&self.0))
    }
}

fn index() -> ClientIndex {
    // A namespace with 50 topics on one Vault connection.
    let topics = (0..50)
        .map(|i| {
            (
                format!("topic-{i}"),
                IndexedTopic {
                    encrypted_topic: format!("topic-{i}"),
                    profile: "kmsconnection.vault.yaml".into(),
                },
            )
        })
        .collect();
    ClientIndex {
        format: INDEX_FORMAT,
        topics,
        profiles: BTreeMap::from([(
            "kmsconnection.vault.yaml".into(),
            Profile {
                kms_ref: "KmsConnection/vault".into(),
                provider: "vault".into(),
                sources: vec![ProjectedSource::ServiceAccountToken {
                    audience: Some("vault".into()),
                    path: "vault-token".into(),
                }],
                unavailable: None,
            },
        )]),
    }
}

/// A pod CREATE review the size the apiserver sends (managed fields included, ~4 KiB).
fn pod_review() -> Vec<u8> {
    let managed: Vec<serde_json::Value> = (0..3)
        .map(|i| json!({"manager": format!("kubectl-{i}"), "operation": "Update", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kafka-e2ee.io/topics": {}},
            "f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {},
            "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {}, "f:terminationMessagePath": {}}}}}}))
        .collect();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "orders-api-7d9f8b6c5-", "labels": {"app": "orders-api", "pod-template-hash": "7d9f8b6c5"},
                    "annotations": {"kafka-e2ee.io/topics": "topic-3,topic-17"}, "managedFields": managed},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "registry.example/orders-api:1.4.2", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                         "env": [{"name": "RUST_LOG", "value": "info"}, {"name": "PORT", "value": "8080"}],
                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                         "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                         "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"},
                        {"name": "proxy", "image": "registry.example/proxy:2.0", "resources": {}}],
                    "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
                    "serviceAccountName": "orders-api", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                },
            },
            "dryRun": false,
        },
    }))
    .unwrap()
}

/// An EncryptedTopic UPDATE review (grow partitions: allowed after every rule ran).
fn topic_review() -> Vec<u8> {
    let topic = |partitions: i32| {
        json!({"apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "EncryptedTopic",
            "metadata": {"name": "orders", "namespace": "shop", "generation": 3},
            "spec": {"partitions": partitions, "kmsRef": {"kind": "KmsConnection", "name": "vault"},
                "tekRotation": {"period": "90d"}, "dekRollover": {"maxAge": "7d", "maxRecords": 100000000}}})
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "kafka-e2ee.io", "version": "v1alpha1", "kind": "EncryptedTopic"},
            "resource": {"group": "kafka-e2ee.io", "version": "v1alpha1", "resource": "encryptedtopics"},
            "namespace": "shop", "operation": "UPDATE", "userInfo": {"username": "alice"},
            "object": topic(12), "oldObject": topic(6),
        },
    }))
    .unwrap()
}

const NOOP_RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"status":{}}}"#;

async fn start_server() -> (u16, String) {
    let (tls, ca) = support::local_tls();
    let state = Arc::new(AppState {
        admission: Admission {
            indexes: Indexes(Arc::new(index().into())),
            policy: kafka_e2ee_webhook::inject::Policy {
                excluded: BTreeSet::from(["kube-system".to_owned()]),
                proxy: None,
            },
            problem_mode: ProblemMode::Deny,
        },
        metrics: Metrics::default(),
    });
    // The baseline: same router, TLS and body extraction; a constant answer.
    let app = router(state).route(
        "/noop",
        post(|_body: Bytes| async { ([("content-type", "application/json")], NOOP_RESPONSE) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_tls(
        listener,
        tls,
        app,
        kafka_e2ee_webhook::server::ConnectionLimits::default(),
        std::future::pending(),
    ));
    (port, ca)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One round: every connection sends REQUESTS_PER_TASK requests to `path`; all latencies.
async fn round(senders: &mut Vec<Sender>, path: &'static str, body: Bytes) -> Vec<Duration> {
    let tasks: Vec<_> = senders
        .drain(..)
        .map(|mut sender| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(REQUESTS_PER_TASK);
                for _ in 0..REQUESTS_PER_TASK {
                    let request = hyper::Request::post(path)
                        .header("host", "127.0.0.1")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    let started = Instant::now();
                    let response = sender.send_request(request).await.unwrap();
                    assert_eq!(response.status(), 200, "{path}");
                    let bytes = response.into_body().collect().await.unwrap().to_bytes();
                    latencies.push(started.elapsed());
                    assert!(bytes.starts_with(b"{"));
                }
                (sender, latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let (sender, latencies) = task.await.unwrap();
        senders.push(sender);
        all.extend(latencies);
    }
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU per call of the handler alone (no TLS, no HTTP), single-threaded.
fn handler_cost(admission: &Admission<Indexes>, webhook: Webhook, body: &[u8]) -> Duration {
    const CALLS: u32 = 20_000;
    for _ in 0..1_000 {
        std::hint::black_box(admission.handle(webhook, body));
    }
    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(admission.handle(webhook, body));
    }
    started.elapsed() / CALLS
}

fn main() {
    let admission = Admission {
        indexes: Indexes(Arc::new(index().into())),
        policy: kafka_e2ee_webhook::inject::Policy {
            excluded: BTreeSet::from(["kube-system".to_owned()]),
            proxy: None,
        },
        problem_mode: ProblemMode::Deny,
    };
    // `KE_BENCH_PROFILE=mutate|validate`: only the handler, 20,000 calls, for
    // `valgrind --tool=callgrind --toggle-collect='*Admission*handle*'`.
    if let Ok(which) = std::env::var("KE_BENCH_PROFILE") {
        let (webhook, body) = match which.as_str() {
            "validate" => (Webhook::Validate, topic_review()),
            _ => (Webhook::Mutate, pod_review()),
        };
        for _ in 0..20_000 {
            std::hint::black_box(admission.handle(webhook, &body));
        }
        return;
    }
    println!(
        "handler alone: /mutate {:.1} µs, /validate {:.1} µs per call",
        handler_cost(&admission, Webhook::Mutate, &pod_review()).as_secs_f64() * 1e6,
        handler_cost(&admission, Webhook::Validate, &topic_review()).as_secs_f64() * 1e6,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (port, ca) = start_server().await;
        let mut senders = Vec::new();
        for _ in 0..CONCURRENCY {
            senders.push(support::http1_client(port, &ca).await);
        }
        let bodies = [
            ("/mutate", Bytes::from(pod_review())),
            ("/validate", Bytes::from(topic_review())),
        ];
        println!(
            "{CONCURRENCY} connections x {REQUESTS_PER_TASK} requests per round, {ROUNDS} rounds per endpoint; pod review {} B, topic review {} B",
            bodies[0].1.len(),
            bodies[1].1.len()
        );
        // Warm up connections, caches and allocator.
        round(&mut senders, "/noop", bodies[0].1.clone()).await;
        for (path, body) in bodies {
            round(&mut senders, path, body.clone()).await;
            let (mut ratios_p99, mut ratios_p50) = (Vec::new(), Vec::new());
            let (mut all_real, mut all_noop) = (Vec::new(), Vec::new());
            for i in 0..ROUNDS {
                let (real, noop) = if i % 2 == 0 {
                    let real = round(&mut senders, path, body.clone()).await;
                    (real, round(&mut senders, "/noop", body.clone()).await)
                } else {
                    let noop = round(&mut senders, "/noop", body.clone()).await;
                    (round(&mut senders, path, body.clone()).await, noop)
                };
                let (mut real, mut noop) = (real, noop);
                real.sort();
                noop.sort();
                ratios_p99.push(ms(percentile(&real, 0.99)) / ms(percentile(&noop, 0.99)));
                ratios_p50.push(ms(percentile(&real, 0.5)) / ms(percentile(&noop, 0.5)));
                all_real.extend(real);
                all_noop.extend(noop);
            }
            all_real.sort();
            all_noop.sort();
            println!(
                "{path:<9} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms | no-op p50 {:>6.2} ms  p99 {:>6.2} ms | median ratio p99 {:.3}, p50 {:.3}",
                ms(percentile(&all_real, 0.5)),
                ms(percentile(&all_real, 0.99)),
                ms(*all_real.last().unwrap()),
                ms(percentile(&all_noop, 0.5)),
                ms(percentile(&all_noop, 0.99)),
                median(ratios_p99),
                median(ratios_p50),
            );
        }
    });
}
