//! The operator believes only the key records it signed. A broker administrator (a raw Kafka
//! producer, nothing else) writes forged records into the key topic: EDEKs above the current
//! version (one at the last version number there is), a policy pointing at them, and a signed
//! EDEK copied under another version. The operator then rolls keys over and rotates the TEK
//! with them present: it neither adopts them nor crashes, reports them (condition, event,
//! metric), and the topic's clients keep working.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kafka_e2ee_client::key_records::{EdekRecord, edek_key, policy_key};
use kafka_e2ee_client::provider::{DekCommitment, Edek};
use kafka_e2ee_client::signing::SIGNATURE_HEADER;
use kafka_e2ee_crds::TekRotation;
use kafka_e2ee_operator::reconcile::KEY_RECORDS_VERIFIED;
use kafka_e2ee_tests::attacker::{Raw, inject, last_stored, signature_of};
use kube::api::{Api, ListParams};
use rdkafka::Message;
use support::*;

#[tokio::test]
async fn forged_key_records_are_reported_never_adopted_and_never_crash_the_operator() {
    let env = TestEnv::new("op-forged").await;
    let provider = env.vault().await;
    let mut operator = env.start_operator(None, &[]);
    operator.wait_ready().await;
    let mut spec = env.spec("orders", 2, "vault");
    spec.dek_rollover.max_records = 10;
    spec.tek_rotation = Some(TekRotation {
        period: "1h".into(),
    });
    env.apply("orders", spec).await;
    let obj = env.wait_ready("orders").await;
    let topic = obj.status.as_ref().unwrap().topic.clone().unwrap();
    let tek = obj.status.unwrap().tek.unwrap().reference;
    let connection = env.connection();

    // The attacker's records.
    let genuine = last_stored(&connection, &env.key_topic, &edek_key(&topic, 0, 1));
    let genuine_sig = signature_of(&genuine);
    let forged = |version: u32| EdekRecord {
        topic: topic.clone(),
        partition: 0,
        version,
        tek: tek.clone(),
        tek_version: Some("1".into()),
        edek: Edek(b"vault:v1:AAAA".to_vec()),
        commitment: DekCommitment([7; 32]),
        created_at_ms: 0,
        created_at_offset: Some(0),
    };
    let v99 = forged(99).encode().unwrap();
    let max = forged(u32::MAX).encode().unwrap();
    let mut pointing = env.keys(&topic).await.policy.unwrap().as_ref().clone();
    pointing.current_versions = BTreeMap::from([(0, u32::MAX), (1, 99)]);
    let policy = pointing.encode().unwrap();
    let copied_key = edek_key(&topic, 0, 7);
    for raw in [
        Raw::to(&env.key_topic, Some(v99.0.as_bytes()), Some(&v99.1)),
        Raw::to(&env.key_topic, Some(max.0.as_bytes()), Some(&max.1)),
        Raw::to(&env.key_topic, Some(policy.0.as_bytes()), Some(&policy.1)),
        Raw::to(
            &env.key_topic,
            Some(copied_key.as_bytes()),
            genuine.payload(),
        )
        .header(SIGNATURE_HEADER, &genuine_sig),
    ] {
        inject(&connection, raw).await;
    }

    // Reported: a condition naming them, an event, the metric.
    let forged_keys = [
        v99.0.clone(),
        max.0.clone(),
        policy_key(&topic),
        copied_key.clone(),
    ];
    let obj = env
        .wait_for("orders", "reporting the forged records", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == KEY_RECORDS_VERIFIED
                        && c.status == "False"
                        && forged_keys.iter().all(|k| c.message.contains(k.as_str()))
                })
            })
        })
        .await;
    let condition = obj
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == KEY_RECORDS_VERIFIED)
        .unwrap();
    assert_eq!(condition.reason, "UnverifiedKeyRecords");
    for key in &forged_keys {
        assert!(
            condition.message.contains(key.as_str()),
            "{key} not in {}",
            condition.message
        );
    }
    assert!(
        operator
            .metric("kafka_e2ee_key_records_rejected_total{reason=\"unsigned\"}")
            .await
            >= 3.0
    );
    assert!(
        operator
            .metric("kafka_e2ee_key_records_rejected_total{reason=\"bad_signature\"}")
            .await
            >= 1.0
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = events.list(&ListParams::default()).await.unwrap();
        if listed
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("UnverifiedKeyRecords"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no UnverifiedKeyRecords event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A rollover by count on partition 0: the next version is 2, not 100 and not a wrap.
    let client = env.client(provider.clone()).await;
    produce(&client, &topic, "before", 12, Some(0)).await;
    let obj = env
        .wait_for("orders", "rolled over", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.keys.as_ref())
                .is_some_and(|k| k.max_version >= 2)
        })
        .await;
    assert_eq!(obj.status.unwrap().keys.unwrap().max_version, 2);

    // A TEK rotation (its last one made to look two hours old): only verified EDEKs are
    // re-wrapped.
    env.force_tek_rotation("orders", &tek, "2").await;

    let keys = env.keys(&topic).await;
    let versions: Vec<(i32, u32)> = keys
        .edeks
        .iter()
        .map(|e| (e.partition, e.version))
        .collect();
    assert_eq!(
        versions,
        [(0, 1), (0, 2), (1, 1)],
        "only what the operator wrote"
    );
    assert_eq!(
        keys.policy.unwrap().current_versions,
        BTreeMap::from([(0, 2), (1, 1)])
    );
    assert!(
        keys.edeks
            .iter()
            .all(|e| e.tek_version.as_deref() == Some("2"))
    );
    assert_eq!(
        operator.metric("kafka_e2ee_edeks_rewrapped_total").await,
        3.0,
        "the forged EDEKs were not re-wrapped"
    );
    assert!(
        operator.child.try_wait().unwrap().is_none(),
        "the operator is running"
    );

    // The victim keeps working, old records and new.
    produce(&client, &topic, "after", 3, Some(0)).await;
    let fresh = env.client(provider).await;
    assert_eq!(consume(&fresh, &topic, 15).await.len(), 15);
    operator.kill().await;
}
