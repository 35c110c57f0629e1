//! The encrypting proxy with Kafka clients nobody here wrote (Python's `kafka-python`, pure
//! Python; `confluent-kafka`, librdkafka from its wheel; Go's sarama from Debian; kafkajs from
//! npm), against the test bed's broker:
//! records round-trip exactly through the proxy with every codec; what the proxy seals opens in
//! the Rust client and what the Rust client seals reads back through the proxy; the broker
//! holds only ciphertext; a tampered record is an error for its partition, never ciphertext;
//! plaintext for a topic the pod may not encrypt never reaches the broker.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kafka_e2ee_client::config::{ClientConfig, EncryptionClient};
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::kafka::KafkaConnection;
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_client::record::{Header, KEY_HEADER};
use kafka_e2ee_proxy::crypto::{Crypto, Metrics, TopicRules};
use kafka_e2ee_proxy::sasl::{Mechanism, ScramError};
use kafka_e2ee_proxy::server::{ConnectionMetrics, Proxy, Settings, UpstreamFailureLabels};
use kafka_e2ee_proxy::upstream::{
    Connector, SecurityProtocol, UpstreamError, UpstreamRead, UpstreamSettings, UpstreamWrite,
};
use kafka_e2ee_tests::attacker::{self, Raw};
use kafka_e2ee_tests::fixture::Fixture;
use kafka_e2ee_tests::{Server, require, unique};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::{Value, json};

const KEY_WAIT: Duration = Duration::from_secs(10);
const LIBS: [&str; 4] = ["kafka-python", "confluent-kafka", "sarama", "kafkajs"];
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// The codecs each client offers here (kafkajs ships gzip; snappy is the kafkajs-snappy
/// plugin; its lz4 and zstd plugins are native builds we do not install).
fn codecs(lib: &str) -> &'static [&'static str] {
    if lib == "kafkajs" {
        &CODECS[..3]
    } else {
        &CODECS
    }
}

/// An environment variable scripts/test sets when it installs the clients.
fn installed(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test (it installs the Kafka clients of other languages and sets it)")
    })
}

fn clients_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap())
        .join("clients")
}

/// The command that runs `lib`'s client with the shared command line.
fn client_command(lib: &str) -> tokio::process::Command {
    match lib {
        "sarama" => tokio::process::Command::new(installed("KE_SARAMA_CLIENT")),
        "kafkajs" => {
            let mut c = tokio::process::Command::new("node");
            c.arg(clients_dir().join("kafkajs_client.js"))
                .env("NODE_PATH", installed("KE_KAFKAJS_NODE_PATH"));
            c
        }
        python => {
            let mut c = tokio::process::Command::new(installed("KE_CLIENTS_PYTHON"));
            c.arg(clients_dir().join("py_client.py"))
                .args(["--lib", python]);
            c
        }
    }
}

/// Runs a client; returns its JSON lines.
async fn run_client(lib: &str, args: &[&str]) -> Vec<Value> {
    let out = client_command(lib)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{lib} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Reads `expect` records of `topic` through `bootstrap` in a new consumer group.
async fn consume(
    lib: &str,
    bootstrap: &str,
    topic: &str,
    expect: usize,
    timeout_s: u32,
) -> Vec<Value> {
    let (group, expect, timeout) = (unique("g"), expect.to_string(), timeout_s.to_string());
    let args = [
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        &group,
    ];
    run_client(
        lib,
        &[&args[..], &["--expect", &expect, "--timeout", &timeout]].concat(),
    )
    .await
}

/// A proxy serving `config`, on ports of its own; returns its bootstrap address.
async fn start_proxy(
    config: ClientConfig,
    passthrough: &[&str],
) -> (String, Arc<EncryptionClient>) {
    let plaintext = Connector::new(&UpstreamSettings::default()).unwrap();
    let (bootstrap, client, _) =
        start_proxy_to(config, passthrough, require(Server::Kafka), plaintext).await;
    (bootstrap, client)
}

/// A proxy whose records go to `upstream` through `connector` (the key topic stays where
/// `config` says); also returns its connection metrics.
async fn start_proxy_to(
    mut config: ClientConfig,
    passthrough: &[&str],
    upstream: String,
    connector: Connector,
) -> (String, Arc<EncryptionClient>, ConnectionMetrics) {
    // The proxy's log, shown with --nocapture (RUST_LOG, default warnings).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    // For the test's own Rust consumers, which subscribe after the records are written.
    config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let client = Arc::new(EncryptionClient::with_config(config.clone()).await.unwrap());
    let crypto = Crypto::new(
        Arc::clone(client.key_directory()),
        Arc::clone(client.dek_cache()),
        KEY_WAIT,
        TopicRules {
            encrypted: config.topics.clone(),
            passthrough: passthrough.iter().map(|s| (*s).to_owned()).collect(),
        },
        Metrics::default(),
    );
    // Ports of this proxy: a free block, so the tests of this file can run side by side.
    let base = kafka_e2ee_tests::kube_env::proxy_ports();
    let settings = Settings {
        listen: ([127, 0, 0, 1], base).into(),
        broker_port_base: base + 1,
        upstream: vec![upstream],
        connector,
    };
    let metrics = ConnectionMetrics::default();
    let proxy = Proxy::new(settings, crypto, metrics.clone());
    let serving = proxy.bind().await.unwrap();
    tokio::spawn(serving);
    (format!("127.0.0.1:{base}"), client, metrics)
}

/// The Rust client's consumer of `topic`, assigned every partition from the beginning (not
/// subscribed: no group rebalance to wait for).
fn rust_reader(
    client: &EncryptionClient,
    topic: &str,
    partitions: i32,
) -> kafka_e2ee_client::consumer::DecryptingConsumer<kafka_e2ee_client::config::ClientProvider> {
    use rdkafka::consumer::Consumer;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer = client.consumer(&unique("rust")).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.inner().assign(&tpl).unwrap();
    consumer
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The records each library sends: a marker in every value (searched for on the broker),
/// binary bytes, a null key, a duplicate header name (where the client's API can send one),
/// an empty header value, an explicit partition.
fn records(tag: &str, lib: &str) -> Vec<Value> {
    let marker = format!("PLAINTEXT-{tag}");
    let headers = if lib == "kafkajs" {
        // Its headers are an object: one value per name.
        json!([["trace", hex(b"abc")], ["empty", hex(b"")]])
    } else {
        json!([
            ["trace", hex(b"abc")],
            ["trace", hex(b"def")],
            ["empty", hex(b"")]
        ])
    };
    vec![
        json!({"key": hex(b"k1"), "value": hex(format!("{marker}-one").as_bytes()),
               "headers": headers, "partition": 0}),
        json!({"key": null, "value": hex(format!("{marker}-\u{0}\u{ff}-binary").as_bytes()), "headers": [], "partition": 1}),
        json!({"key": hex(b"k3"), "value": hex(marker.as_bytes()), "headers": [["h", hex(b"")]], "partition": 0}),
    ]
}

fn write_records(records: &[Value]) -> PathBuf {
    let path = std::env::temp_dir().join(unique("proxy-records"));
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// (key, value, headers) of a record line, for comparing sent with received.
fn content(r: &Value) -> (Value, Value, Value) {
    (r["key"].clone(), r["value"].clone(), r["headers"].clone())
}

fn sorted(mut v: Vec<(Value, Value, Value)>) -> Vec<(Value, Value, Value)> {
    v.sort_by_key(|c| format!("{c:?}"));
    v
}

/// Nothing readable on the broker: every record carries only the key header, no value holds
/// the marker.
fn assert_only_ciphertext(fixture: &Fixture, topic: &str, partitions: i32, marker: &str) -> usize {
    let mut seen = 0;
    for partition in 0..partitions {
        for m in read_partition(fixture, topic, partition) {
            seen += 1;
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| h.key.to_owned()).collect::<Vec<_>>())
                .unwrap_or_default();
            assert_eq!(headers, [KEY_HEADER], "{topic}/{partition}@{}", m.offset());
            let value = m.payload().unwrap_or_default();
            assert!(
                !value.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "plaintext on the broker at {topic}/{partition}@{}",
                m.offset()
            );
        }
    }
    seen
}

fn read_partition(
    fixture: &Fixture,
    topic: &str,
    partition: i32,
) -> Vec<rdkafka::message::OwnedMessage> {
    attacker::read_partition(&fixture.connection, topic, partition)
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_python_clients_round_trip_through_the_proxy_with_every_codec() {
    let mut fixture = Fixture::new("proxy-rt").await.unwrap();
    for lib in LIBS {
        let topic = fixture.reject_topic(&format!("proxy-rt-{lib}"), 2).await;
        let (bootstrap, client) = start_proxy(fixture.client_config(KEY_WAIT), &[]).await;
        let mut sent = Vec::new();
        for codec in codecs(lib) {
            let batch = records(&format!("{lib}-{codec}"), lib);
            let file = write_records(&batch);
            let mut args = vec![
                "produce",
                "--bootstrap",
                &bootstrap,
                "--topic",
                &topic,
                "--records",
                file.to_str().unwrap(),
                "--compression",
                codec,
            ];
            // kafkajs's idempotent producer fails on the test bed's broker even without the
            // proxy (docs/testbed.md).
            if lib != "kafkajs" {
                args.push("--idempotent");
            }
            let acks = run_client(lib, &args).await;
            assert_eq!(acks.len(), batch.len(), "{lib} {codec}: {acks:?}");
            assert!(
                acks.iter().all(|a| a.get("error").is_none()),
                "{lib} {codec}: {acks:?}"
            );
            sent.extend(batch.iter().map(content));
        }
        // Read back through the proxy, in a consumer group with commits.
        let got = consume(lib, &bootstrap, &topic, sent.len(), 30).await;
        assert!(
            got.iter().all(|r| r.get("error").is_none()),
            "{lib}: {got:?}"
        );
        assert_eq!(
            sorted(got.iter().map(content).collect()),
            sorted(sent.clone()),
            "{lib}"
        );

        // The broker holds ciphertext only.
        assert_eq!(
            assert_only_ciphertext(&fixture, &topic, 2, "PLAINTEXT-"),
            sent.len()
        );

        // The Rust client opens what the proxy sealed, to the same bytes.
        let consumer = rust_reader(&client, &topic, 2);
        let mut rust = Vec::new();
        while rust.len() < sent.len() {
            let Ok(r) = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await else {
                panic!(
                    "{lib}: the Rust client read {} of {}",
                    rust.len(),
                    sent.len()
                );
            };
            let r = r.unwrap();
            assert!(r.was_encrypted);
            rust.push((
                r.key.as_deref().map_or(Value::Null, |k| json!(hex(k))),
                json!(hex(r.value.as_deref().unwrap())),
                json!(
                    r.headers
                        .iter()
                        .map(|h| json!([h.key, h.value.as_deref().map(hex)]))
                        .collect::<Vec<_>>()
                ),
            ));
        }
        assert_eq!(
            sorted(rust),
            sorted(sent),
            "{lib}: the Rust client reads the same"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_rust_client_seals_reads_back_through_the_proxy() {
    let mut fixture = Fixture::new("proxy-interop").await.unwrap();
    let topic = fixture.reject_topic("proxy-interop", 2).await;
    let (bootstrap, client) = start_proxy(fixture.client_config(KEY_WAIT), &[]).await;
    let producer = client.producer().unwrap();
    let headers = vec![Header {
        key: "origin".into(),
        value: Some(b"rust".to_vec()),
    }];
    for i in 0..4 {
        let value = format!("PLAINTEXT-rust-{i}");
        let key = format!("k{i}");
        let mut record = OutgoingRecord::new(&topic, value.as_bytes());
        record.key = Some(key.as_bytes());
        record.headers = &headers;
        producer.send_and_wait(record).await.unwrap();
    }
    for lib in LIBS {
        let got = consume(lib, &bootstrap, &topic, 4, 30).await;
        assert_eq!(got.len(), 4, "{lib}: {got:?}");
        let values: BTreeSet<String> = got
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = (0..4)
            .map(|i| hex(format!("PLAINTEXT-rust-{i}").as_bytes()))
            .collect();
        assert_eq!(values, expected, "{lib}");
        assert!(
            got.iter()
                .all(|r| r["headers"] == json!([["origin", hex(b"rust")]])),
            "{lib}: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_record_is_an_error_for_its_partition_never_ciphertext() {
    let mut fixture = Fixture::new("proxy-tamper").await.unwrap();
    let topic = fixture.reject_topic("proxy-tamper", 1).await;
    let (bootstrap, client) = start_proxy(fixture.client_config(KEY_WAIT), &[]).await;
    let producer = client.producer().unwrap();
    for i in 0..2 {
        let value = format!("PLAINTEXT-good-{i}");
        producer
            .send_and_wait(OutgoingRecord::new(&topic, value.as_bytes()))
            .await
            .unwrap();
    }
    // The broker admin copies a sealed record with one bit flipped.
    let stored = attacker::read_all(&fixture.connection, &topic);
    let mut value = stored[0].payload().unwrap().to_vec();
    let last = value.len() - 1;
    value[last] ^= 1;
    let key_header = attacker::header(&stored[0], KEY_HEADER).unwrap();
    let tampered_at = attacker::inject(
        &fixture.connection,
        Raw::to(&topic, None, Some(&value)).header(KEY_HEADER, &key_header),
    )
    .await;
    assert_eq!(tampered_at, 2);

    for lib in LIBS {
        let got = consume(lib, &bootstrap, &topic, 3, 45).await;
        let records: Vec<_> = got.iter().filter(|r| r.get("error").is_none()).collect();
        // The two good ones, and never the tampered one (nor its ciphertext).
        assert_eq!(records.len(), 2, "{lib}: {got:?}");
        assert!(
            records.iter().all(|r| r["offset"].as_i64() < Some(2)),
            "{lib}: {got:?}"
        );
        let errors: Vec<_> = got.iter().filter(|r| r.get("error").is_some()).collect();
        assert!(
            !errors.is_empty(),
            "{lib}: the application is told: {got:?}"
        );
        eprintln!("{lib} reports: {errors:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_never_reaches_the_broker_for_a_topic_it_may_not_encrypt() {
    let mut fixture = Fixture::new("proxy-refuse").await.unwrap();
    let encrypted = fixture.reject_topic("proxy-refuse-ok", 1).await;
    let unlisted = fixture.reject_topic("proxy-refuse-other", 1).await;
    // Listed for this pod, but without a policy (no EncryptedTopic made it).
    let no_policy = unique("proxy-refuse-nopolicy");
    let admin = fixture.connection.admin().unwrap();
    kafka_e2ee_client::kafka::ensure_topic(
        &admin,
        &kafka_e2ee_client::kafka::TopicSpec {
            name: no_policy.clone(),
            partitions: 1,
            replication: None,
            config: Default::default(),
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut config = fixture.client_config(Duration::from_secs(2));
    config.topics = [encrypted.clone(), no_policy.clone()].into();
    let (bootstrap, _client) = start_proxy(config, &[]).await;
    let batch = records("refused", "any");
    let file = write_records(&batch[..1]);
    for lib in LIBS {
        for (topic, expected) in [(&unlisted, "authoriz"), (&no_policy, "polic")] {
            let acks = run_client(
                lib,
                &[
                    "produce",
                    "--bootstrap",
                    &bootstrap,
                    "--topic",
                    topic,
                    "--records",
                    file.to_str().unwrap(),
                ],
            )
            .await;
            let error = acks[0]["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{lib} {topic}: accepted: {acks:?}"));
            assert!(
                error.to_lowercase().contains(expected),
                "{lib} {topic}: {error}"
            );
        }
        // The pod's own topic still works.
        let acks = run_client(
            lib,
            &[
                "produce",
                "--bootstrap",
                &bootstrap,
                "--topic",
                &encrypted,
                "--records",
                file.to_str().unwrap(),
            ],
        )
        .await;
        assert!(acks[0].get("error").is_none(), "{lib}: {acks:?}");
    }
    assert!(
        read_partition(&fixture, &unlisted, 0).is_empty(),
        "nothing reached {unlisted}"
    );
    assert!(
        read_partition(&fixture, &no_policy, 0).is_empty(),
        "nothing reached {no_policy}"
    );
    assert_eq!(
        assert_only_ciphertext(&fixture, &encrypted, 1, "PLAINTEXT-"),
        LIBS.len()
    );
}

/// Why sarama consumes without a group in these tests: sarama 1.22 cannot join one on the test
/// bed's broker (MEMBER_ID_REQUIRED, KIP-394, which it predates), and that is so without the
/// proxy too. When it stops being so, this fails and sarama's groups join the tests above.
#[tokio::test(flavor = "multi_thread")]
async fn sarama_cannot_join_a_group_on_the_test_bed_broker_even_directly() {
    let mut fixture = Fixture::new("proxy-sarama").await.unwrap();
    let topic = fixture.reject_topic("proxy-sarama", 1).await;
    let broker = require(Server::Kafka);
    let group = unique("g");
    let got = run_client(
        "sarama",
        &[
            "consume-group",
            "--bootstrap",
            &broker,
            "--topic",
            &topic,
            "--group",
            &group,
            "--timeout",
            "20",
        ],
    )
    .await;
    assert!(
        got.iter()
            .any(|r| r["error"].as_str().is_some_and(|e| e.contains("79"))),
        "{got:?}"
    );
}

fn tls_connection(ca: &str) -> KafkaConnection {
    kafka_e2ee_tests::bed::kafka_tls_connection(ca)
}

fn connector(connection: &KafkaConnection) -> Connector {
    Connector::new(&UpstreamSettings::from_properties(&connection.properties).unwrap()).unwrap()
}

/// Sends ApiVersions over `connection`; true when the broker answered.
async fn answers((mut read, mut write): (UpstreamRead, UpstreamWrite)) -> bool {
    use kafka_e2ee_proxy::frame;
    // ApiVersions v0, correlation id 1, no client id.
    let request = [0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    if frame::write(&mut write, &request).await.is_err() {
        return false;
    }
    matches!(frame::read(&mut read).await, Ok(Some(_)))
}

/// Everything over mTLS: the key topic (the Rust side's librdkafka, built with OpenSSL) and the
/// records (the proxy's own TLS), with the settings the proxy takes from the configuration's
/// properties, as the binary does.
#[tokio::test(flavor = "multi_thread")]
async fn through_the_proxy_to_a_broker_that_requires_tls_and_a_client_certificate() {
    let connection = tls_connection("ca.crt");
    let tls_bootstrap = connection.bootstrap_servers.clone();
    let mut fixture = Fixture::on("proxy-tls", connection.clone()).await.unwrap();
    let topic = fixture.reject_topic("proxy-tls", 2).await;
    let config = fixture.client_config(KEY_WAIT);
    let (bootstrap, client, _) = start_proxy_to(
        config.clone(),
        &[],
        tls_bootstrap.clone(),
        connector(&connection),
    )
    .await;
    let lib = "kafka-python";
    let batch = records("tls", lib);
    let file = write_records(&batch);
    let acks = run_client(
        lib,
        &[
            "produce",
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--records",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(acks.iter().all(|a| a.get("error").is_none()), "{acks:?}");
    let got = consume(lib, &bootstrap, &topic, batch.len(), 30).await;
    assert_eq!(
        sorted(got.iter().map(content).collect()),
        sorted(batch.iter().map(content).collect())
    );
    // The Rust client, over TLS itself, opens what the proxy sealed; the broker holds only
    // ciphertext (read raw over TLS).
    let consumer = rust_reader(&client, &topic, 2);
    for _ in 0..batch.len() {
        let r = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(r.value.unwrap().starts_with(b"PLAINTEXT-tls"));
    }
    let marker = "PLAINTEXT-tls";
    assert_eq!(
        assert_only_ciphertext(&fixture, &topic, 2, marker),
        batch.len()
    );

    // No client certificate: the broker's side refuses the connection.
    let mut no_cert = connection.clone();
    no_cert.properties.remove("ssl.certificate.location");
    no_cert.properties.remove("ssl.key.location");
    let refused = match connector(&no_cert).connect(&tls_bootstrap).await {
        Ok(halves) => !answers(halves).await,
        Err(UpstreamError::Tls { .. }) => true,
        Err(other) => panic!("unexpected: {other}"),
    };
    assert!(
        refused,
        "the broker answered a proxy without a client certificate"
    );
    assert!(
        answers(
            connector(&connection)
                .connect(&tls_bootstrap)
                .await
                .unwrap()
        )
        .await
    );

    // A CA that did not sign the broker's certificate: the proxy refuses the broker, typed and
    // counted, and the application's connection is closed (never a plaintext fallback).
    let wrong_ca = connector(&tls_connection("client.crt"));
    let err = wrong_ca.connect(&tls_bootstrap).await.err().unwrap();
    assert!(matches!(err, UpstreamError::Tls { .. }), "{err}");
    let (bootstrap, _, metrics) = start_proxy_to(config, &[], tls_bootstrap, wrong_ca).await;
    let app = tokio::net::TcpStream::connect(&bootstrap).await.unwrap();
    let (r, w) = app.into_split();
    assert!(!answers((Box::new(r), Box::new(w))).await);
    let failures = metrics
        .upstream_failures
        .get_or_create(&UpstreamFailureLabels { reason: "tls" })
        .get();
    assert!(failures >= 1, "tls failures counted: {failures}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_authenticates_with_scram_and_reports_the_brokers_refusal() {
    // The test bed's SASL broker has no users (tansu cannot be given any here, docs/testbed.md),
    // so a correct SCRAM exchange ends in the broker's refusal of the user, which must come back
    // typed, with the broker's reason.
    let sasl = kafka_e2ee_tests::env(Server::Kafka, "KE_KAFKA_SASL_BOOTSTRAP");
    let creds = std::env::temp_dir().join(unique("kafka-creds"));
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("username"), "app\n").unwrap();
    std::fs::write(creds.join("password"), "secret\n").unwrap();
    let settings = |mechanism| UpstreamSettings {
        protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: Some(mechanism),
        credentials_dir: Some(creds.clone()),
        ..Default::default()
    };
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        let err = Connector::new(&settings(mechanism))
            .unwrap()
            .connect(&sasl)
            .await
            .err()
            .unwrap();
        let refused_user = match &err {
            UpstreamError::Scram {
                source: ScramError::Refused(reason),
                ..
            } => reason.contains("unknown-user"),
            UpstreamError::Authentication { message, .. } => message.contains("unknown"),
            _ => false,
        };
        assert_eq!(err.reason(), "authentication");
        assert!(
            refused_user,
            "{mechanism:?}: {:#}",
            anyhow::Error::from(err)
        );
    }
    // A mechanism the broker does not enable: refused at the handshake, never sent.
    let err = Connector::new(&settings(Mechanism::Plain))
        .unwrap()
        .connect(&sasl)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            UpstreamError::MechanismRefused { .. } | UpstreamError::Protocol { .. }
        ),
        "{:#}",
        anyhow::Error::from(err)
    );
    std::fs::remove_dir_all(&creds).unwrap();
}
