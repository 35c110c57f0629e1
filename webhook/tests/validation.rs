//! The validating webhook, called by the real kube-apiserver: every rule the 1.20 schema
//! cannot express is refused at `kubectl apply` with its message; metadata-only updates
//! pass; malformed AdmissionReview bodies get HTTP 400 with a message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use support::*;

/// An EncryptedTopic manifest for `kubectl apply` with this test's label.
fn topic_yaml(world: &World, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: kafka-e2ee.io/v1alpha1\nkind: EncryptedTopic\nmetadata:\n  name: {name}\n  namespace: {}\n  labels:\n    {TEST_LABEL}: {}\nspec:\n{spec}",
        world.namespace, world.id
    )
}

fn apply(yaml: &str) -> (bool, String) {
    kubectl(
        &["apply", "--server-side", "--field-manager=tests", "-f", "-"],
        Some(yaml),
    )
}

#[tokio::test]
async fn kubectl_apply_of_a_bad_object_is_refused_with_its_rule() {
    let world = World::new("wh-validate").await;
    let webhook = world.start_webhook(&[]);
    world.register(webhook.port, "Fail").await;
    webhook.wait_ready().await;
    world.wait_validating().await;
    let topic = world.topic_name("orders");
    let kms = "  kmsRef: {kind: KmsConnection, name: keystore}\n";

    // Creates: rules on one object.
    let cases = [
        (
            "deletionPolicy: Delete\n".to_owned(),
            format!(
                "spec.deletionPolicy is Delete, which destroys the topic's data: set spec.confirmDeletion to '{topic}' to confirm"
            ),
        ),
        (
            "dekRollover: {maxAge: 1s}\n".to_owned(),
            "spec.dekRollover.maxAge: 1s is shorter than the minimum 5s".to_owned(),
        ),
        (
            "tekRotation: {period: 10m}\n".to_owned(),
            "spec.tekRotation.period: 10m is shorter than the minimum 1h".to_owned(),
        ),
    ];
    for (extra, message) in &cases {
        let spec = format!("  topicName: {topic}\n  partitions: 3\n{kms}  {extra}");
        let (ok, out) = apply(&topic_yaml(&world, "bad", &spec));
        assert!(!ok, "{extra}: admitted: {out}");
        assert!(out.contains("denied the request"), "{extra}: {out}");
        assert!(out.contains(message.as_str()), "{extra}: {out}");
    }
    // What the schema can express (a duration's shape) is refused before the webhook sees it.
    let spec =
        format!("  topicName: {topic}\n  partitions: 3\n{kms}  dekRollover: {{maxAge: soon}}\n");
    let (ok, out) = apply(&topic_yaml(&world, "bad", &spec));
    assert!(!ok && out.contains("spec.dekRollover.maxAge"), "{out}");
    let reserved = format!("  topicName: __consumer_offsets\n  partitions: 3\n{kms}");
    let (ok, out) = apply(&topic_yaml(&world, "reserved", &reserved));
    assert!(
        !ok && out.contains("'__consumer_offsets' is reserved"),
        "{out}"
    );

    // Updates: rules between the stored object and the new one.
    let good = format!("  topicName: {topic}\n  partitions: 6\n{kms}");
    let (ok, out) = apply(&topic_yaml(&world, "orders", &good));
    assert!(ok, "{out}");
    let updates = [
        (
            format!("  topicName: {topic}\n  partitions: 3\n{kms}"),
            "spec.partitions: 6 cannot decrease to 3",
        ),
        (
            format!("  topicName: {topic}-v2\n  partitions: 6\n{kms}"),
            "cannot become",
        ),
        (
            format!(
                "  topicName: {topic}\n  partitions: 6\n  kmsRef: {{kind: ClusterKmsConnection, name: keystore}}\n"
            ),
            "spec.kmsRef: KmsConnection/keystore cannot become ClusterKmsConnection/keystore",
        ),
    ];
    for (spec, message) in &updates {
        let (ok, out) = apply(&topic_yaml(&world, "orders", spec));
        assert!(!ok, "admitted: {spec}: {out}");
        assert!(out.contains(message), "{message}: {out}");
    }
    // Allowed changes still pass: growing, a new rollover age, a label.
    let grown =
        format!("  topicName: {topic}\n  partitions: 8\n{kms}  dekRollover: {{maxAge: 7d}}\n");
    let (ok, out) = apply(&topic_yaml(&world, "orders", &grown));
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &[
            "label",
            "-n",
            &world.namespace,
            "encryptedtopic/orders",
            "team=payments",
        ],
        None,
    );
    assert!(ok, "{out}");

    // KMS connections.
    let conn = format!(
        "apiVersion: kafka-e2ee.io/v1alpha1\nkind: KmsConnection\nmetadata:\n  name: vault\n  namespace: {}\n  labels:\n    {TEST_LABEL}: {}\nspec:\n  vault: {{address: 'vault:8200', auth: {{}}}}\n",
        world.namespace, world.id
    );
    let (ok, out) = apply(&conn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("vault.address: 'vault:8200' is not an http:// or https:// URL"),
        "{out}"
    );
    assert!(
        out.contains("set exactly one of tokenSecretRef and kubernetes"),
        "{out}"
    );
    let cluster = format!(
        "apiVersion: kafka-e2ee.io/v1alpha1\nkind: ClusterKmsConnection\nmetadata:\n  name: {}-hkms\n  labels:\n    {TEST_LABEL}: {}\nspec:\n  hadoopKms: {{url: 'ftp://kms:9600', user: kafka}}\n",
        world.id, world.id
    );
    let (ok, out) = apply(&cluster);
    assert!(!ok, "{out}");
    assert!(
        out.contains("hadoopKms.url: 'ftp://kms:9600' is not an http"),
        "{out}"
    );

    let metrics = webhook.metrics().await;
    for reason in [
        "DeleteNotConfirmed",
        "Rollover",
        "PartitionsDecreased",
        "TopicNameChanged",
        "KmsRefChanged",
        "KmsConnection",
        "TopicName",
    ] {
        assert!(
            metrics.contains(&format!(r#"kafka_e2ee_webhook_problems_total{{webhook="validate",outcome="denied",reason="{reason}"}}"#)),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn malformed_admission_reviews_get_400_with_a_message() {
    let world = World::new("wh-malformed").await;
    let webhook = world.start_webhook(&[]);
    world.register(webhook.port, "Fail").await;
    webhook.wait_ready().await;
    let ca = self_managed_ca(
        &world.client,
        &world.system_namespace,
        "kafka-e2ee-webhook-tls",
    )
    .await;
    let cases: [(&[u8], &str); 4] = [
        (b"", "malformed AdmissionReview"),
        (b"not json", "malformed AdmissionReview"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "it has no request",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#,
            "malformed AdmissionReview",
        ),
    ];
    for path in ["/mutate", "/validate"] {
        for (body, message) in cases {
            let (status, text) = https_post(webhook.port, &ca, path, body).await;
            assert_eq!(
                status,
                400,
                "{path} {:?}: {text}",
                String::from_utf8_lossy(body)
            );
            assert!(text.contains(message), "{text}");
        }
    }
    // Still serving after all that.
    let (status, _) = https_post(webhook.port, &ca, "/validate", b"{}").await;
    assert_eq!(status, 400);
    let metrics = webhook.metrics().await;
    assert!(
        metrics.contains(
            r#"kafka_e2ee_webhook_requests_total{webhook="mutate",outcome="malformed"} 4"#
        ),
        "{metrics}"
    );
}
