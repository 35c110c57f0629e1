//! Kubernetes API smoke test against the test bed's real kube-apiserver v1.20 (+ etcd):
//! namespace, our CRD, server-side apply of an object and its status, schema rejection, watch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kafka_e2ee_crds::{EncryptedTopic, EncryptedTopicSpec, KmsRef, KmsRefKind};
use kafka_e2ee_tests::kube_env::{MANAGER, create_namespace, install_crds};
use kafka_e2ee_tests::{Server, require, unique};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

async fn client() -> Client {
    require(Server::KubeApiserver);
    Client::try_default().await.unwrap()
}

fn topic(name: &str, partitions: i32) -> EncryptedTopic {
    EncryptedTopic::new(
        name,
        EncryptedTopicSpec::new(
            partitions,
            KmsRef {
                kind: KmsRefKind::ClusterKmsConnection,
                name: "vault".into(),
            },
        ),
    )
}

#[tokio::test]
async fn server_side_applies_watches_and_validates_encrypted_topics() {
    let client = client().await;
    install_crds(&client).await;
    let ns = unique("smoke");
    create_namespace(&client, &ns, &[]).await;
    let api: Api<EncryptedTopic> = Api::namespaced(client.clone(), &ns);
    let ssa = PatchParams::apply(MANAGER).force();

    // Apply, then read back what the API server stored.
    let applied = api
        .patch("orders", &ssa, &Patch::Apply(&topic("orders", 3)))
        .await
        .unwrap();
    assert_eq!(applied.spec.partitions, 3);
    assert_eq!(applied.kafka_topic_name(), Some("orders"));
    assert!(
        applied
            .managed_fields()
            .iter()
            .any(|f| f.manager.as_deref() == Some(MANAGER))
    );

    // Watch: a change made after the watch starts arrives as an applied object.
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.name_any(), "orders");
    api.patch("orders", &ssa, &Patch::Apply(&topic("orders", 4)))
        .await
        .unwrap();
    let updated = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(obj) = events.try_next().await.unwrap() {
            if obj.spec.partitions == 4 {
                return obj;
            }
        }
        panic!("watch ended before the update arrived");
    })
    .await
    .expect("no watch event for the update within 10s");
    assert_eq!(updated.name_any(), "orders");

    // Status subresource with server-side apply; the spec is untouched by it.
    let status = json!({
        "apiVersion": "kafka-e2ee.io/v1alpha1",
        "kind": "EncryptedTopic",
        "status": {
            "observedGeneration": updated.metadata.generation,
            "conditions": [{
                "type": "Ready", "status": "False", "reason": "Smoke", "message": "set by the smoke test",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }
    });
    let with_status = api
        .patch_status("orders", &ssa, &Patch::Apply(&status))
        .await
        .unwrap();
    let conditions = with_status.status.unwrap().conditions;
    assert_eq!(conditions.len(), 1);
    assert_eq!(
        (conditions[0].type_.as_str(), conditions[0].reason.as_str()),
        ("Ready", "Smoke")
    );
    assert_eq!(with_status.spec.partitions, 4);
    assert_eq!(
        with_status.metadata.generation, updated.metadata.generation,
        "status must not bump generation"
    );

    // The schema rejects what it can express, without the webhook: partitions below the
    // minimum, a duration without a unit, a topic name Kafka would refuse.
    let mut unitless = topic("bad", 3);
    unitless.spec.dek_rollover.max_age = "30".into();
    let mut spaced = topic("bad", 3);
    spaced.spec.topic_name = Some("orders v2".into());
    let mut rotation = topic("bad", 3);
    rotation.spec.tek_rotation = Some(kafka_e2ee_crds::TekRotation {
        period: "90 days".into(),
    });
    for (bad, field) in [
        (topic("bad", 0), "spec.partitions"),
        (unitless, "spec.dekRollover.maxAge"),
        (spaced, "spec.topicName"),
        (rotation, "spec.tekRotation.period"),
    ] {
        match api.patch("bad", &ssa, &Patch::Apply(&bad)).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(status.message.contains(field), "{}", status.message);
            }
            other => panic!("{field}: expected a 422 from the API server, got {other:?}"),
        }
    }
    // The root description is the kind's own, for `kubectl explain`.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get("encryptedtopics.kafka-e2ee.io").await.unwrap();
    let root = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.description.clone())
        .unwrap_or_default();
    assert!(
        root.starts_with("A Kafka topic whose record values"),
        "{root}"
    );
}
