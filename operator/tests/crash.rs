//! Crash safety: the operator is aborted (as abruptly as `kill -9`: no destructors, no
//! flushing) at each step of provisioning, rollover, TEK rotation and crypto-shredding, then
//! restarted. Every time: no duplicate or missing DEK versions, the policy names only EDEKs
//! that exist, records written around the crash decrypt, and the object is Ready again (or,
//! when deleting, gone with its TEK).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_e2ee_client::key_directory::TopicKeysSnapshot;
use support::*;

const NO_ELECTION: &[&str] = &["--leader-election", "false"];

/// Versions 1..=n of every partition, each once; the policy's current version stored.
fn assert_keys_consistent(keys: &TopicKeysSnapshot, partitions: i32) {
    let policy = keys.policy.as_ref().expect("a policy");
    let mut by_partition: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
    for e in &keys.edeks {
        by_partition.entry(e.partition).or_default().push(e.version);
    }
    assert_eq!(
        by_partition.len(),
        usize::try_from(partitions).unwrap(),
        "{by_partition:?}"
    );
    for (p, versions) in &by_partition {
        let n = u32::try_from(versions.len()).unwrap();
        assert_eq!(
            versions,
            &(1..=n).collect::<Vec<_>>(),
            "partition {p}: gap or repeat"
        );
        let current = policy.current_versions[p];
        assert!(
            versions.contains(&current),
            "policy names v{current} of {p}, not stored"
        );
    }
}

#[tokio::test]
async fn a_crash_at_any_provisioning_step_is_repaired_on_restart() {
    // The keystore's TEK exists up front; "after-tek" is exercised with OpenBao below.
    for point in ["after-topic", "after-edeks", "after-policy"] {
        let env = TestEnv::new("op-crash").await;
        let provider = env.keystore().await;
        let mut crashing = env.start_operator(Some(point), NO_ELECTION);
        let mut s = env.spec("t", 2, "keystore");
        s.tek = Some(KEYSTORE_TEK.into());
        env.apply("t", s).await;
        assert!(
            crashing.wait_for_crash(WAIT).await,
            "{point}: exited cleanly"
        );
        let topic = env.topic_name("t");
        let left = env.keys(&topic).await;
        match point {
            "after-topic" => assert!(left.edeks.is_empty(), "{point}"),
            "after-edeks" => assert!(left.policy.is_none() && left.edeks.len() == 2, "{point}"),
            _ => assert!(left.policy.is_some(), "{point}"),
        }

        let operator = env.start_operator(None, NO_ELECTION);
        env.wait_ready("t").await;
        let keys = env.keys(&topic).await;
        assert_keys_consistent(&keys, 2);
        assert_eq!(
            keys.edeks.len(),
            2,
            "{point}: only version 1 of each partition"
        );
        let client = env.client(provider).await;
        let mut sent = produce(&client, &topic, point, 6, None).await;
        sent.sort();
        assert_eq!(consume(&client, &topic, 6).await, sent, "{point}");
        operator.kill().await;
    }
}

#[tokio::test]
async fn a_crash_during_rollover_is_repaired_without_a_gap() {
    let env = TestEnv::new("op-crash-roll").await;
    let provider = env.keystore().await;
    let operator = env.start_operator(None, NO_ELECTION);
    let mut s = env.spec("r", 2, "keystore");
    s.tek = Some(KEYSTORE_TEK.into());
    s.dek_rollover.max_age = "5s".into();
    env.apply("r", s).await;
    env.wait_ready("r").await;
    let topic = env.topic_name("r");
    let client = env.client(provider).await;
    let mut sent = produce(&client, &topic, "before", 6, None).await;
    operator.kill().await;

    // The next rollover (due within 5 s) dies after its EDEKs, before the policy.
    let mut crashing = env.start_operator(Some("after-edeks"), NO_ELECTION);
    assert!(crashing.wait_for_crash(Duration::from_secs(30)).await);
    let left = env.keys(&topic).await;
    assert_eq!(left.edeks.len(), 4, "v2 EDEKs written");
    assert!(
        left.policy
            .unwrap()
            .current_versions
            .values()
            .all(|&v| v == 1)
    );
    // Producers still use v1 meanwhile: the orphaned v2 is never referenced by a record.
    sent.extend(produce(&client, &topic, "during", 4, None).await);

    let operator = env.start_operator(None, NO_ELECTION);
    env.wait_for("r", "rolled over", |o| {
        o.status
            .as_ref()
            .and_then(|s| s.keys.as_ref())
            .is_some_and(|k| k.min_version >= 2)
    })
    .await;
    assert_keys_consistent(&env.keys(&topic).await, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sent.extend(produce(&client, &topic, "after", 4, None).await);
    sent.sort();
    assert_eq!(consume(&client, &topic, 14).await, sent);
    operator.kill().await;
}

#[tokio::test]
async fn crashes_around_tek_creation_and_rotation_are_repaired() {
    use kafka_e2ee_crds::TekRotation;
    use kube::api::{Patch, PatchParams};

    let env = TestEnv::new("op-crash-tek").await;
    let provider = env.vault().await;

    // Crash after recording the TEK about to be created, before the KMS call: the TEK the
    // restart creates is still recorded as created for this object.
    let mut crashing = env.start_operator(Some("after-tek-claimed"), NO_ELECTION);
    env.apply("claimed", env.spec("claimed", 1, "vault")).await;
    assert!(crashing.wait_for_crash(WAIT).await);
    let claimed = env.topics().get("claimed").await.unwrap();
    let uid = claimed.metadata.uid.clone();
    assert_eq!(
        claimed
            .status
            .as_ref()
            .and_then(|s| s.tek.as_ref())
            .and_then(|t| t.created_for.clone()),
        uid,
        "claimed before the KMS call"
    );
    let operator = env.start_operator(None, NO_ELECTION);
    let ready = env.wait_ready("claimed").await;
    let tek = ready.status.unwrap().tek.unwrap();
    assert_eq!(tek.created_for, uid);
    assert_eq!(tek.connection.as_deref(), Some("KmsConnection/vault"));
    operator.kill().await;

    // Crash right after the TEK was created in the KMS.
    let mut crashing = env.start_operator(Some("after-tek"), NO_ELECTION);
    let mut s = env.spec("v", 2, "vault");
    s.tek_rotation = Some(TekRotation {
        period: "1h".into(),
    });
    env.apply("v", s).await;
    assert!(crashing.wait_for_crash(WAIT).await);
    let topic = env.topic_name("v");
    assert!(env.keys(&topic).await.edeks.is_empty());
    let operator = env.start_operator(None, NO_ELECTION);
    let obj = env.wait_ready("v").await;
    assert_eq!(
        obj.status.unwrap().tek.unwrap().version.as_deref(),
        Some("1")
    );
    assert_keys_consistent(&env.keys(&topic).await, 2);
    let client = env.client(provider.clone()).await;
    let mut sent = produce(&client, &topic, "before", 6, None).await;
    operator.kill().await;

    // Rotation due; crash after the EDEKs were re-wrapped, before status recorded it.
    let two_hours_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
    let patch = serde_json::json!({"status": {"tek": {
        "reference": format!("kafka-e2ee_{}_v", env.namespace),
        "version": "1",
        "lastRotation": two_hours_ago.to_string()}}});
    env.topics()
        .patch_status("v", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let mut crashing = env.start_operator(Some("after-rewrap"), NO_ELECTION);
    assert!(crashing.wait_for_crash(WAIT).await);
    let keys = env.keys(&topic).await;
    assert!(
        keys.edeks
            .iter()
            .all(|e| e.tek_version.as_deref() == Some("2"))
    );

    // Restarted: status had not recorded the rotation, so the operator may rotate once more
    // (never less); either way every EDEK ends up under the TEK's current version.
    let operator = env.start_operator(None, NO_ELECTION);
    let obj = env
        .wait_for("v", "rotation recorded", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.tek.as_ref())
                .and_then(|t| t.version.as_deref())
                .is_some_and(|v| v != "1")
        })
        .await;
    let version = obj.status.unwrap().tek.unwrap().version.unwrap();
    env.wait_ready("v").await;
    let keys = env.keys(&topic).await;
    assert_keys_consistent(&keys, 2);
    assert_eq!(keys.edeks.len(), 2, "re-wrapping adds no versions");
    assert!(
        keys.edeks
            .iter()
            .all(|e| e.tek_version.as_deref() == Some(version.as_str())),
        "{keys:?}"
    );
    let fresh = env.client(provider).await;
    sent.extend(produce(&fresh, &topic, "after", 4, None).await);
    sent.sort();
    assert_eq!(consume(&fresh, &topic, 10).await, sent);
    operator.kill().await;
}

/// Crypto-shredding aborted after each of its steps and restarted: it resumes where it
/// stopped, and ends with the TEK gone from the KMS, the key records tombstoned and the topic
/// deleted; `CryptoShredded` is announced once, at the end.
#[tokio::test]
async fn a_crash_between_shredding_steps_resumes_and_ends_with_the_tek_gone() {
    use kafka_e2ee_client::provider::{ProviderError, TekManager};
    use kafka_e2ee_crds::DeletionPolicy;
    use kafka_e2ee_operator::crash::SHRED_POINTS;

    let env = TestEnv::new("op-crash-shred").await;
    env.vault().await;
    let vault = kafka_e2ee_tests::bed::vault_root();
    for (i, point) in SHRED_POINTS.iter().enumerate() {
        let name = format!("s{i}");
        let operator = env.start_operator(None, NO_ELECTION);
        let mut s = env.spec(&name, 2, "vault");
        let topic = env.topic_name(&name);
        s.deletion_policy = DeletionPolicy::Delete;
        s.confirm_deletion = Some(topic.clone());
        env.apply(&name, s).await;
        let ready = env.wait_ready(&name).await;
        let tek = ready.status.unwrap().tek.unwrap().reference;
        operator.kill().await;

        let mut crashing = env.start_operator(Some(point), NO_ELECTION);
        env.delete(&name).await;
        assert!(crashing.wait_for_crash(WAIT).await, "{point}");
        // Whatever step it died after, the TEK went first.
        assert!(
            matches!(
                vault.describe_tek(&tek).await,
                Err(ProviderError::NotFound { .. })
            ),
            "{point}: the TEK is deleted before anything else"
        );
        assert!(
            !env.event_reasons(&name)
                .await
                .iter()
                .any(|r| r == "CryptoShredded"),
            "{point}: no success announced before the end"
        );
        let operator = env.start_operator(None, NO_ELECTION);
        env.wait_deleted(&name).await;
        let keys = env.keys(&topic).await;
        assert!(
            keys.policy.is_none() && keys.edeks.is_empty(),
            "{point}: {keys:?}"
        );
        let reasons = env.event_reasons(&name).await;
        assert_eq!(
            reasons.iter().filter(|r| *r == "CryptoShredded").count(),
            1,
            "{point}: {reasons:?}"
        );
        operator.kill().await;
    }
}
