//! The operator with each real KMS of the test bed: OpenBao (Vault transit), moto (AWS KMS)
//! and the Hadoop KMS. Each: Ready, one EDEK per partition, clients round-trip through the
//! keys. Plus, on OpenBao, TEK rotation with re-wrap and crypto-shredding deletion; on moto,
//! deletion with Retain; on Hadoop, the pause and unmanaged annotations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_e2ee_client::config::ProviderConfig;
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_client::vault::VaultTransit;
use kafka_e2ee_crds::{
    AwsKmsBackend, DeletionPolicy, EncryptedTopic, HadoopKmsBackend, KmsConnectionSpec,
    MANAGED_ANNOTATION, PAUSE_ANNOTATION, SecretRef, TekRotation,
};
use kafka_e2ee_tests::{Server, env as tb_env, require};
use support::*;

fn vault_admin() -> VaultTransit {
    kafka_e2ee_tests::bed::vault_root()
}

/// Applies `name` (3 partitions), waits for Ready, checks the key topic and a client round
/// trip. Returns the object and the Kafka topic.
async fn provision_and_round_trip(
    env: &TestEnv,
    name: &str,
    conn: &str,
    provider: ProviderConfig,
    edit: impl FnOnce(&mut kafka_e2ee_crds::EncryptedTopicSpec),
) -> (EncryptedTopic, String) {
    let mut s = env.spec(name, 3, conn);
    edit(&mut s);
    let started = Instant::now();
    env.apply(name, s).await;
    let obj = env.wait_ready(name).await;
    eprintln!("{name} ({conn}): Ready after {:?}", started.elapsed());
    let topic = env.topic_name(name);
    let keys = env.keys(&topic).await;
    assert_eq!(
        keys.policy.as_ref().unwrap().current_versions,
        BTreeMap::from([(0, 1), (1, 1), (2, 1)])
    );
    let edeks: Vec<(i32, u32)> = keys
        .edeks
        .iter()
        .map(|e| (e.partition, e.version))
        .collect();
    assert_eq!(edeks, vec![(0, 1), (1, 1), (2, 1)]);
    let client = env.client(provider).await;
    let mut sent = produce(&client, &topic, "v", 12, None).await;
    sent.sort();
    assert_eq!(consume(&client, &topic, 12).await, sent);
    (obj, topic)
}

#[tokio::test]
async fn vault_topics_rotate_their_tek_and_crypto_shred_on_delete() {
    let env = TestEnv::new("op-vault").await;
    let provider = env.vault().await;
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let (obj, topic) = provision_and_round_trip(&env, "payments", "vault", provider.clone(), |s| {
        s.tek_rotation = Some(TekRotation {
            period: "1h".into(),
        });
    })
    .await;
    let tek = obj.status.as_ref().unwrap().tek.clone().unwrap();
    assert_eq!(
        tek.reference,
        format!("kafka-e2ee_{}_payments", env.namespace)
    );
    assert_eq!(tek.version.as_deref(), Some("1"));
    assert!(tek.next_rotation.is_some());

    // Make the last rotation look 2 h old: the 1 h period is due, so the operator rotates and
    // re-wraps every EDEK under TEK version 2 (same record keys, same DEKs).
    let obj = env
        .force_tek_rotation("payments", &tek.reference, "2")
        .await;
    let keys = env.keys(&topic).await;
    assert_eq!(keys.edeks.len(), 3, "re-wrapped in place, no new versions");
    for e in &keys.edeks {
        assert_eq!(e.tek_version.as_deref(), Some("2"), "{e:?}");
        assert!(e.edek.0.starts_with(b"vault:v2:"), "wrapped under v2");
    }
    assert_eq!(
        operator.metric("kafka_e2ee_edeks_rewrapped_total").await,
        3.0
    );
    // Data written before the rotation decrypts through the re-wrapped EDEKs (a fresh client:
    // nothing cached).
    let fresh = env.client(provider.clone()).await;
    assert_eq!(consume(&fresh, &topic, 12).await.len(), 12);
    assert!(obj.status.unwrap().tek.unwrap().last_rotation.is_some());

    // Crypto-shredding: Delete (confirmed) removes the TEK, the key records and the topic.
    let mut s = env.spec("payments", 3, "vault");
    s.tek_rotation = Some(TekRotation {
        period: "1h".into(),
    });
    s.deletion_policy = DeletionPolicy::Delete;
    s.confirm_deletion = Some(topic.clone());
    env.apply("payments", s).await;
    let obj = env
        .wait_for("payments", "finalizer added", |o| {
            o.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == "kafka-e2ee.io/crypto-shred"))
        })
        .await;
    assert!(obj.metadata.finalizers.is_some());
    env.delete("payments").await;
    env.wait_deleted("payments").await;
    let keys = env.keys(&topic).await;
    assert!(keys.policy.is_none() && keys.edeks.is_empty(), "{keys:?}");
    assert!(matches!(
        vault_admin().describe_tek(&tek.reference).await,
        Err(ProviderError::NotFound { .. })
    ));
    let ends = env
        .connection()
        .metadata_consumer()
        .map(|c| {
            kafka_e2ee_client::kafka::partition_watermarks(&c, &topic, Duration::from_secs(10))
        })
        .unwrap();
    assert!(
        matches!(
            ends,
            Err(kafka_e2ee_client::kafka::Error::TopicNotFound { .. })
        ),
        "{ends:?}"
    );
    operator.kill().await;
}

#[tokio::test]
async fn aws_kms_topics_are_provisioned_and_retained_on_delete() {
    let env = TestEnv::new("op-aws").await;
    let endpoint = require(Server::AwsKms);
    let region = tb_env(Server::AwsKms, "AWS_REGION");
    env.secret(
        "aws",
        BTreeMap::from([
            ("accessKeyId", b"testbed".to_vec()),
            ("secretAccessKey", b"testbed".to_vec()),
        ]),
    )
    .await;
    env.kms_connection(
        "aws",
        KmsConnectionSpec {
            aws_kms: Some(AwsKmsBackend {
                region: Some(region.clone()),
                endpoint: Some(endpoint.clone()),
                credentials_secret_ref: Some(SecretRef { name: "aws".into() }),
                web_identity: None,
            }),
            ..no_backend()
        },
    )
    .await;
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let provider = ProviderConfig::AwsKms {
        region: Some(region),
        endpoint: Some(endpoint),
    };
    let (obj, topic) = provision_and_round_trip(&env, "shipments", "aws", provider, |_| {}).await;
    assert!(
        obj.status
            .unwrap()
            .tek
            .unwrap()
            .reference
            .starts_with(&format!("alias/kafka-e2ee/{}/", env.namespace))
    );

    // Retain (the default): deleting the object leaves topic, keys and TEK alone.
    env.delete("shipments").await;
    env.wait_deleted("shipments").await;
    let keys = env.keys(&topic).await;
    assert!(keys.policy.is_some());
    assert_eq!(keys.edeks.len(), 3);
    operator.kill().await;
}

#[tokio::test]
async fn hadoop_kms_topics_honour_pause_and_unmanaged() {
    let env = TestEnv::new("op-hadoop").await;
    // A tenant's connection: mutual TLS with a client certificate from its own Secret.
    let url = kafka_e2ee_tests::bed::hadoop_tls_url();
    let tls = hadoop_tls_secret(&env.client, &env.namespace).await;
    env.kms_connection(
        "hadoop",
        KmsConnectionSpec {
            hadoop_kms: Some(HadoopKmsBackend {
                url: url.clone(),
                user: "kafka-e2ee".into(),
                tls_secret_ref: Some(tls),
                allow_simple_auth: false,
                allow_insecure_http: false,
            }),
            ..no_backend()
        },
    )
    .await;
    let operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let files = kafka_e2ee_tests::bed::hadoop_tls_files();
    let provider = ProviderConfig::HadoopKms {
        url,
        user: "kafka-e2ee".into(),
        ca_file: Some(files.ca),
        client_cert_file: Some(files.cert),
        client_key_file: Some(files.key),
    };
    let (_, topic) = provision_and_round_trip(&env, "audit", "hadoop", provider, |s| {
        s.dek_rollover.max_age = "6s".into();
    })
    .await;

    // Paused: no rollover although the 6 s age passes.
    env.annotate("audit", PAUSE_ANNOTATION, Some("true")).await;
    let paused = env
        .wait_for("audit", "Paused=True", |o| {
            condition_is(o, "Paused", "True")
        })
        .await;
    // Ready keeps what it said, so `kubectl wait --for=condition=Ready` and GitOps waits end.
    assert_eq!(ready_reason(&paused).as_deref(), Some("Ready"));
    let before = env.keys(&topic).await.edeks.len();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        env.keys(&topic).await.edeks.len(),
        before,
        "rolled over while paused"
    );
    // Resumed: the overdue rollover happens (past the versions of the pause; one may have
    // come before it), and the Paused condition is gone.
    let paused_max = paused
        .status
        .as_ref()
        .and_then(|s| s.keys.as_ref())
        .map_or(0, |k| k.max_version);
    env.annotate("audit", PAUSE_ANNOTATION, None).await;
    let resumed = env
        .wait_for("audit", "rolled over after resume", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.keys.as_ref())
                .is_some_and(|k| k.min_version > paused_max)
        })
        .await;
    assert!(!condition_is(&resumed, "Paused", "True"));

    // Unmanaged, with deletionPolicy Delete: the operator lets go (no finalizer), so deleting
    // the object shreds nothing.
    let mut s = env.spec("audit", 3, "hadoop");
    s.dek_rollover.max_age = "6s".into();
    s.deletion_policy = DeletionPolicy::Delete;
    s.confirm_deletion = Some(topic.clone());
    env.apply("audit", s).await;
    env.wait_for("audit", "finalizer added", |o| {
        !o.metadata.finalizers.clone().unwrap_or_default().is_empty()
    })
    .await;
    env.annotate("audit", MANAGED_ANNOTATION, Some("false"))
        .await;
    env.wait_reason("audit", "Unmanaged").await;
    let obj = env.topics().get("audit").await.unwrap();
    assert!(obj.metadata.finalizers.unwrap_or_default().is_empty());
    env.delete("audit").await;
    env.wait_deleted("audit").await;
    let keys = env.keys(&topic).await;
    assert!(keys.policy.is_some() && !keys.edeks.is_empty());
    operator.kill().await;
}

/// Whether `obj` has condition `type_` with `status`.
fn condition_is(obj: &EncryptedTopic, type_: &str, status: &str) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    })
}
