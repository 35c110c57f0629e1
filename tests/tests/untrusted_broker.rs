//! The broker is not trusted. Whoever administers it can write any record to any topic,
//! `__encryption_keys` included, serve old records again, and copy records around. Each test
//! here plays that attacker with nothing but a raw Kafka producer and consumer (what a broker
//! admin has), then checks that the attack is refused (a typed error, or a key record counted
//! and ignored) and that the victim's producers and consumers keep working.
//!
//! The fixture plays the operator: it signs what it writes with its own key, which the
//! victims trust (as clients trust the operator's published keys).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_e2ee_client::config::{ClientConfig, EncryptionClient};
use kafka_e2ee_client::consumer::{ConsumeError, ConsumedRecord};
use kafka_e2ee_client::engine::{Aes256Gcm, EncryptionEngine};
use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::key_directory::Trust;
use kafka_e2ee_client::key_management::ensure_key_topic;
use kafka_e2ee_client::key_records::{EdekRecord, PlaintextPolicy, edek_key, policy_key};
use kafka_e2ee_client::nonce::{MAX_RECORDS_PER_DEK, NonceSequence};
use kafka_e2ee_client::producer::OutgoingRecord;
use kafka_e2ee_client::provider::{DekCommitment, DekContext, Edek};
use kafka_e2ee_client::record::{KEY_HEADER, PartitionSealer, RecordLocation};
use kafka_e2ee_client::secret::KeyMaterial;
use kafka_e2ee_client::signing::{SIGNATURE_HEADER, SigningKey, TrustedKeys};
use kafka_e2ee_tests::attacker::{self, Raw, signature_of};
use kafka_e2ee_tests::fixture::{Fixture, TEK};
use kafka_e2ee_tests::traffic::{Traffic, assert_read_in_order};
use kafka_e2ee_tests::unique;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(10);

/// A key-topic record, as the attacker writes it.
fn key_record<'a>(fx: &'a Fixture, key: &'a str, value: Option<&'a [u8]>) -> Raw<'a> {
    Raw::to(&fx.key_topic, Some(key.as_bytes()), value)
}

async fn inject(fx: &Fixture, raw: Raw<'_>) -> i64 {
    attacker::inject(&fx.connection, raw).await
}

fn raw_records(fx: &Fixture, topic: &str) -> Vec<OwnedMessage> {
    attacker::read_all(&fx.connection, topic)
}

fn stored(fx: &Fixture, record_key: &str) -> OwnedMessage {
    attacker::last_stored(&fx.connection, &fx.key_topic, record_key)
}

/// What the victim runs: a client of the fixture's key topic, caught up.
async fn victim_with(config: ClientConfig) -> EncryptionClient {
    let mut config = config;
    config
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let client = EncryptionClient::with_config(config).await.unwrap();
    client.key_directory().wait_caught_up(WAIT).await.unwrap();
    client
}

async fn victim(fx: &Fixture) -> EncryptionClient {
    victim_with(fx.client_config(WAIT)).await
}

/// The record at `offset` of partition 0, through a fresh decrypting consumer of `client`.
async fn read_at(
    client: &EncryptionClient,
    topic: &str,
    offset: i64,
) -> Result<ConsumedRecord, ConsumeError> {
    let consumer = client.consumer(&unique("victim")).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.inner().assign(&tpl).unwrap();
    tokio::time::timeout(WAIT, consumer.recv()).await.unwrap()
}

/// The victim still works: a fresh record goes out sealed and comes back as sent.
async fn round_trip(client: &EncryptionClient, topic: &str) -> Vec<u8> {
    let value = unique("still-working").into_bytes();
    let at = client
        .producer()
        .unwrap()
        .send_and_wait(OutgoingRecord {
            partition: Some(0),
            ..OutgoingRecord::new(topic, &value)
        })
        .await
        .unwrap();
    let back = read_at(client, topic, at.offset).await.unwrap();
    assert_eq!(back.value.as_deref(), Some(value.as_slice()));
    assert!(back.was_encrypted);
    // The key reference it was sealed under, as the broker stores it.
    let stored = stored_at(client, topic, at.offset);
    assert_eq!(stored.0, vec![KEY_HEADER.to_owned()]);
    stored.1
}

/// Header names and the `encryption_key` value of the stored record at `offset`.
fn stored_at(client: &EncryptionClient, topic: &str, offset: i64) -> (Vec<String>, Vec<u8>) {
    let consumer: BaseConsumer = client
        .config()
        .connection()
        .client_config()
        .set("group.id", unique("peek"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m.headers().unwrap();
            let names = (0..headers.count())
                .map(|i| headers.get(i).key.to_owned())
                .collect();
            let value = headers.get(0).value.unwrap_or_default().to_vec();
            return (names, value);
        }
    }
    panic!("no record at {topic}@{offset}");
}

#[tokio::test]
async fn a_forged_policy_neither_allows_plaintext_nor_swaps_the_tek() {
    let mut fx = Fixture::new("ub-policy").await.unwrap();
    let topic = fx.reject_topic("ub-policy", 1).await;
    let victim = victim(&fx).await;
    let genuine = fx.policies[&topic].clone();

    // The attacker's policy: plaintext allowed, its own TEK.
    let mut forged = genuine.clone();
    forged.plaintext = PlaintextPolicy::Allow;
    forged.provider.tek = "attacker-tek".into();
    let (key, value) = forged.encode().unwrap();
    let (theirs, _) = SigningKey::generate().unwrap();
    let foreign = theirs.sign(u64::MAX, key.as_bytes(), Some(&value));
    let copied = signature_of(&stored(&fx, &key));
    for headers in [
        vec![],
        vec![(SIGNATURE_HEADER, foreign.as_slice())],
        vec![(SIGNATURE_HEADER, copied.as_slice())],
        vec![
            (SIGNATURE_HEADER, copied.as_slice()),
            (SIGNATURE_HEADER, copied.as_slice()),
        ],
    ] {
        inject(
            &fx,
            Raw {
                headers,
                ..key_record(&fx, &key, Some(&value))
            },
        )
        .await;
    }
    // Then plaintext on the data topic, as if the policy allowed it.
    let plaintext_at = inject(
        &fx,
        Raw {
            topic: &topic,
            partition: 0,
            key: Some(b"k"),
            value: Some(b"attacker plaintext"),
            headers: vec![],
        },
    )
    .await;

    let keys = victim.key_directory();
    keys.sync(WAIT).await.unwrap();
    assert_eq!(
        *keys.policy_now(&topic).unwrap(),
        genuine,
        "the genuine policy stands"
    );
    let stats: BTreeMap<_, _> = keys.stats().rejected().into_iter().collect();
    for reason in [
        "unsigned",
        "unknown_signer",
        "bad_signature",
        "malformed_signature",
    ] {
        assert!(stats[reason] >= 1, "{reason}: {stats:?}");
    }
    assert!(keys.rejected(&topic).pending.contains_key(&key));

    // Running and fresh readers alike refuse the plaintext, typed, at its offset.
    let fresh = victim_with(fx.client_config(WAIT)).await;
    for client in [&victim, &fresh] {
        match read_at(client, &topic, plaintext_at).await {
            Err(ConsumeError::PlaintextRejected { at }) => assert_eq!(at.offset, plaintext_at),
            other => panic!("{other:?}"),
        }
    }
    // The victim keeps sealing under the genuine TEK's DEK (the attacker's TEK does not even
    // exist in its keystore).
    assert_eq!(round_trip(&victim, &topic).await, vec![1, 1]);
}

#[tokio::test]
async fn an_older_signed_policy_served_again_is_not_believed() {
    let mut fx = Fixture::new("ub-rollback").await.unwrap();
    // Migration: plaintext was allowed, and signed so.
    let topic = fx
        .encrypt_topic(
            "ub-rollback",
            1,
            PlaintextPolicy::Allow,
            MAX_RECORDS_PER_DEK,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    let old = stored(&fx, &policy_key(&topic));
    // Then the EncryptedTopic was switched to Reject: a newer signed policy, and client
    // configurations that pin nothing.
    let mut strict = fx.policies[&topic].clone();
    strict.plaintext = PlaintextPolicy::Reject;
    fx.writer.publish_policy(&strict).await.unwrap();
    fx.policies.insert(topic.clone(), strict.clone());
    let config = fx.client_config(WAIT);
    assert!(config.allow_plaintext.is_empty());
    let victim = victim_with(config.clone()).await;
    let newer = stored(&fx, &policy_key(&topic));

    // The broker serves the old, validly signed record again, byte for byte.
    let replayed = signature_of(&old);
    inject(
        &fx,
        Raw {
            headers: vec![(SIGNATURE_HEADER, replayed.as_slice())],
            ..key_record(&fx, &policy_key(&topic), old.payload())
        },
    )
    .await;
    let plaintext_at = inject(
        &fx,
        Raw {
            topic: &topic,
            partition: 0,
            key: None,
            value: Some(b"plaintext after the switch"),
            headers: vec![],
        },
    )
    .await;
    let keys = victim.key_directory();
    keys.sync(WAIT).await.unwrap();
    assert_eq!(
        keys.policy_now(&topic).unwrap().plaintext,
        PlaintextPolicy::Reject
    );
    assert!(keys.stats().stale_generation.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        keys.rejected(&topic).pending.get(&policy_key(&topic)),
        Some(&"stale_generation")
    );
    assert!(matches!(
        read_at(&victim, &topic, plaintext_at).await,
        Err(ConsumeError::PlaintextRejected { .. })
    ));

    // A fresh reader that the broker serves only the old policy (here: a key topic holding
    // everything but the newer record) believes it, validly signed as it is; but plaintext
    // still does not pass, because its trusted configuration no longer pins the topic.
    let replica = unique("ub-rollback-replica");
    ensure_key_topic(&fx.connection, &replica, None)
        .await
        .unwrap();
    for m in raw_records(&fx, &fx.key_topic) {
        if m.key() == newer.key() && m.offset() >= newer.offset() {
            continue; // the newer policy, and the replay after it
        }
        let signature = signature_of(&m);
        inject(
            &fx,
            Raw {
                topic: &replica,
                partition: 0,
                key: m.key(),
                value: m.payload(),
                headers: vec![(SIGNATURE_HEADER, signature.as_slice())],
            },
        )
        .await;
    }
    let mut served_old = config.clone();
    served_old.key_topic = replica;
    let fooled = victim_with(served_old).await;
    assert_eq!(
        fooled.key_directory().policy_now(&topic).unwrap().plaintext,
        PlaintextPolicy::Allow,
        "the rolled-back policy is believed..."
    );
    assert!(
        matches!(
            read_at(&fooled, &topic, plaintext_at).await,
            Err(ConsumeError::PlaintextRejected { .. })
        ),
        "...but it cannot relax Reject: the pin is in the trusted configuration"
    );
    round_trip(&victim, &topic).await;
}

#[tokio::test]
async fn forged_and_replayed_edeks_are_never_used() {
    let mut fx = Fixture::new("ub-edek").await.unwrap();
    let topic = fx.reject_topic("ub-edek", 2).await;
    let victim = victim(&fx).await;
    let genuine = stored(&fx, &edek_key(&topic, 0, 1));
    let genuine_sig = signature_of(&genuine);
    let genuine_value = genuine.payload().unwrap().to_vec();

    // Another slot's EDEK, its signature copied: as partition 1's, and as a new version 99.
    let moved_value = String::from_utf8(genuine_value.clone())
        .unwrap()
        .replace("\"partition\":0", "\"partition\":1");
    for (key, value) in [
        (edek_key(&topic, 1, 1), genuine_value.clone()),
        (edek_key(&topic, 1, 1), moved_value.into_bytes()),
        (edek_key(&topic, 0, 99), genuine_value.replace_version(99)),
    ] {
        inject(
            &fx,
            Raw {
                headers: vec![(SIGNATURE_HEADER, genuine_sig.as_slice())],
                ..key_record(&fx, &key, Some(&value))
            },
        )
        .await;
    }
    // An EDEK for the last version number with a DEK the attacker knows (its commitment
    // correct for that DEK), unsigned; and a policy pointing every partition at it.
    let known = KeyMaterial::from_vec(vec![0x42; 32]);
    let slot = DekContext {
        topic: &topic,
        partition: 0,
        version: u32::MAX,
    };
    let attackers = EdekRecord {
        topic: topic.clone(),
        partition: 0,
        version: u32::MAX,
        tek: TEK.into(),
        tek_version: None,
        edek: Edek(vec![0x42; 60]),
        commitment: DekCommitment::compute(&known, slot),
        created_at_ms: 0,
        created_at_offset: None,
    };
    let (key, value) = attackers.encode().unwrap();
    inject(&fx, key_record(&fx, &key, Some(&value))).await;
    let mut pointing = fx.policies[&topic].clone();
    pointing.current_versions = BTreeMap::from([(0, u32::MAX), (1, u32::MAX)]);
    let (key, value) = pointing.encode().unwrap();
    inject(&fx, key_record(&fx, &key, Some(&value))).await;

    let keys = victim.key_directory();
    keys.sync(WAIT).await.unwrap();
    let snapshot = keys.topic_keys(&topic);
    assert_eq!(
        snapshot
            .edeks
            .iter()
            .map(|e| (e.partition, e.version))
            .collect::<Vec<_>>(),
        [(0, 1), (1, 1)],
        "only the genuine EDEKs"
    );
    assert_eq!(*snapshot.policy.unwrap(), fx.policies[&topic]);
    let stats: BTreeMap<_, _> = keys.stats().rejected().into_iter().collect();
    assert!(stats["bad_signature"] >= 3, "{stats:?}");
    assert!(stats["unsigned"] >= 2, "{stats:?}");

    // A record the attacker sealed under its own DEK, naming version 99: refused, typed.
    let sealer = PartitionSealer::new(
        Aes256Gcm.prepare(&known).unwrap(),
        NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap(),
        RecordLocation {
            topic: &topic,
            partition: 0,
        },
        99,
    );
    let sealed = sealer.seal(None, &[], b"attacker's record").unwrap();
    let forged_at = inject(
        &fx,
        Raw {
            topic: &topic,
            partition: 0,
            key: None,
            value: Some(&sealed),
            headers: vec![(KEY_HEADER, sealer.key_header())],
        },
    )
    .await;
    let consumer_client = EncryptionClient::with_config({
        let mut c = fx.client_config(Duration::from_millis(500));
        c.properties
            .insert("auto.offset.reset".into(), "earliest".into());
        c
    })
    .await
    .unwrap();
    match read_at(&consumer_client, &topic, forged_at).await {
        Err(ConsumeError::UnknownKey { version: 99, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Nothing is sealed under an unverified key: v1 now, and after the operator's rollover
    // its genuine v2.
    assert_eq!(round_trip(&victim, &topic).await, vec![1, 1]);
    assert_eq!(fx.rollover(&topic).await.unwrap(), 2);
    keys.sync(WAIT).await.unwrap();
    assert_eq!(round_trip(&victim, &topic).await, vec![1, 2]);
}

#[tokio::test]
async fn a_retired_signing_key_is_not_believed_after_its_removal() {
    let mut fx = Fixture::new("ub-retired").await.unwrap();
    let topic = fx.reject_topic("ub-retired", 1).await;
    let victim = victim(&fx).await;
    let keys = victim.key_directory();
    let retired = fx.writer.signer().key();
    // Rotation: the new key is trusted first, then signs, then everything is signed again,
    // then the old key leaves the trusted configuration.
    let (new, _) = SigningKey::generate().unwrap();
    let new_public = new.public_key().clone();
    keys.set_trust(Trust {
        keys: TrustedKeys::new([retired.public_key().clone(), new_public.clone()]),
        ..Trust::default()
    });
    fx.writer.signer().set_key(Arc::new(new));
    resign_everything(&fx, &victim).await;
    keys.set_trust(Trust {
        keys: TrustedKeys::new([new_public]),
        ..Trust::default()
    });
    keys.sync(WAIT).await.unwrap();
    assert!(
        keys.policy_now(&topic).is_some(),
        "everything was signed again"
    );
    assert_eq!(keys.topic_keys(&topic).edeks.len(), 1);

    // The retired key leaks: a policy allowing plaintext, signed with it at the highest
    // generation there is.
    let mut forged = fx.policies[&topic].clone();
    forged.plaintext = PlaintextPolicy::Allow;
    let (key, value) = forged.encode().unwrap();
    let signature = retired.sign(u64::MAX, key.as_bytes(), Some(&value));
    let before = keys.stats().unknown_signer.load(Ordering::Relaxed);
    inject(
        &fx,
        Raw {
            headers: vec![(SIGNATURE_HEADER, signature.as_slice())],
            ..key_record(&fx, &key, Some(&value))
        },
    )
    .await;
    keys.sync(WAIT).await.unwrap();
    assert_eq!(
        keys.policy_now(&topic).unwrap().plaintext,
        PlaintextPolicy::Reject
    );
    assert!(keys.stats().unknown_signer.load(Ordering::Relaxed) > before);
    round_trip(&victim, &topic).await;
}

/// What the operator does in a signing-key rotation: every live record, signed again.
async fn resign_everything(fx: &Fixture, reader: &EncryptionClient) {
    let keys = reader.key_directory();
    keys.sync(WAIT).await.unwrap();
    for topic in keys.topics() {
        let snapshot = keys.topic_keys(&topic);
        let edeks: Vec<_> = snapshot.edeks.iter().map(|e| (**e).clone()).collect();
        fx.writer.publish_edeks(&edeks).await.unwrap();
        if let Some(policy) = snapshot.policy {
            fx.writer.publish_policy(&policy).await.unwrap();
        }
    }
    keys.sync(WAIT).await.unwrap();
}

/// Writes a client configuration file trusting `keys` (what the kubelet does when the
/// operator's ConfigMap changes).
fn write_config(path: &Path, config: &ClientConfig, keys: &[&SigningKey]) {
    let mut config = config.clone();
    config.trusted_keys = keys.iter().map(|k| k.public_key().clone()).collect();
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

#[tokio::test]
async fn a_signing_key_rotation_with_overlap_interrupts_no_consumer() {
    let mut fx = Fixture::new("ub-rotation").await.unwrap();
    let topic = fx.reject_topic("ub-rotation", 1).await;
    let first = fx.writer.signer().key();
    let (second, _) = SigningKey::generate().unwrap();
    let second = Arc::new(second);
    let dir = std::env::temp_dir().join(unique("ub-rotation"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client.yaml");
    let mut base = fx.client_config(WAIT);
    base.properties
        .insert("auto.offset.reset".into(), "earliest".into());
    write_config(&path, &base, &[&first]);
    let reload = Duration::from_millis(100);
    let client = Arc::new(EncryptionClient::from_file(&path, reload).await.unwrap());
    client.key_directory().wait_caught_up(WAIT).await.unwrap();

    // The application produces all along.
    let traffic = Traffic::start(Arc::clone(&client), &topic, Duration::from_millis(10));
    let overlap = reload * 5;
    // 1. The new key is published and trusted before it signs anything.
    write_config(&path, &base, &[&first, &second]);
    tokio::time::sleep(overlap).await;
    // 2. It signs; everything is signed again; a rollover is signed by it alone.
    fx.writer.signer().set_key(Arc::clone(&second));
    resign_everything(&fx, &client).await;
    assert_eq!(fx.rollover(&topic).await.unwrap(), 2);
    tokio::time::sleep(overlap).await;
    // 3. The old key leaves the trusted configuration; another rollover.
    write_config(&path, &base, &[&second]);
    tokio::time::sleep(overlap).await;
    assert_eq!(fx.rollover(&topic).await.unwrap(), 3);
    tokio::time::sleep(overlap).await;
    let sent = traffic.stop().await;
    assert!(sent > 20, "only {sent} records");

    // A consumer of the same client reads every record, in order, without one error.
    assert_read_in_order(&client, &topic, sent).await;
    let versions: BTreeSet<Vec<u8>> = (0..i64::from(sent))
        .map(|offset| stored_at(&client, &topic, offset).1)
        .collect();
    assert_eq!(
        versions,
        BTreeSet::from([vec![1, 1], vec![1, 2], vec![1, 3]]),
        "records under every version the rotation spanned"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn tombstones_are_the_producers_and_replays_are_recognisable() {
    let mut fx = Fixture::new("ub-tombstone").await.unwrap();
    let topic = fx
        .encrypt_topic(
            "ub-tombstone",
            1,
            PlaintextPolicy::Reject,
            MAX_RECORDS_PER_DEK,
            BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
        )
        .await
        .unwrap();
    let victim = victim(&fx).await;
    let producer = victim.producer().unwrap();
    let state = producer
        .send_and_wait(OutgoingRecord {
            key: Some(b"customer-7"),
            partition: Some(0),
            ..OutgoingRecord::new(&topic, b"address: 1 Main St")
        })
        .await
        .unwrap();
    let delete = producer
        .send_and_wait(OutgoingRecord {
            key: Some(b"customer-7"),
            partition: Some(0),
            value: None,
            ..OutgoingRecord::new(&topic, b"")
        })
        .await
        .unwrap();
    let tombstone = read_at(&victim, &topic, delete.offset).await.unwrap();
    assert_eq!(tombstone.value, None);
    assert!(tombstone.was_encrypted, "authenticated by the producer");
    let genuine = raw_records(&fx, &topic)
        .into_iter()
        .find(|m| m.offset() == delete.offset)
        .unwrap();
    let authenticator = genuine.headers().unwrap().get(0).value.unwrap().to_vec();

    // Deleting someone's state without the producer's key: a header-less tombstone, the
    // genuine authenticator moved to another record key, or a made-up one.
    let tombstone_for = |key: &'static [u8], headers| Raw {
        topic: &topic,
        partition: 0,
        key: Some(key),
        value: None,
        headers,
    };
    let bare = inject(&fx, tombstone_for(b"customer-8", vec![])).await;
    let moved = inject(
        &fx,
        tombstone_for(b"customer-8", vec![(KEY_HEADER, authenticator.as_slice())]),
    )
    .await;
    let mut made_up = authenticator.clone();
    let last = made_up.len() - 1;
    made_up[last] ^= 1;
    let forged = inject(
        &fx,
        tombstone_for(b"customer-7", vec![(KEY_HEADER, made_up.as_slice())]),
    )
    .await;
    assert!(matches!(
        read_at(&victim, &topic, bare).await,
        Err(ConsumeError::UnauthenticatedTombstone { .. })
    ));
    for at in [moved, forged] {
        assert!(
            matches!(
                read_at(&victim, &topic, at).await,
                Err(ConsumeError::Tampered { .. })
            ),
            "offset {at}"
        );
    }

    // A sealed record copied to a new offset of the same partition opens again: replays are
    // not refused (docs/security.md), but the copy carries the original's seal id.
    let original = raw_records(&fx, &topic)
        .into_iter()
        .find(|m| m.offset() == state.offset)
        .unwrap();
    let header = original.headers().unwrap().get(0).value.unwrap().to_vec();
    let copy = inject(
        &fx,
        Raw {
            topic: &topic,
            partition: 0,
            key: original.key(),
            value: original.payload(),
            headers: vec![(KEY_HEADER, header.as_slice())],
        },
    )
    .await;
    let first = read_at(&victim, &topic, state.offset).await.unwrap();
    let again = read_at(&victim, &topic, copy).await.unwrap();
    assert_eq!(again.value, first.value);
    assert!(first.seal_id.is_some());
    assert_eq!(
        again.seal_id, first.seal_id,
        "the same sealing, delivered twice"
    );
    assert_ne!(tombstone.seal_id, first.seal_id);
    round_trip(&victim, &topic).await;
}

/// An EDEK record's JSON with another version in it (the attacker edits bytes, not types).
trait ReplaceVersion {
    fn replace_version(&self, version: u32) -> Vec<u8>;
}

impl ReplaceVersion for Vec<u8> {
    fn replace_version(&self, version: u32) -> Vec<u8> {
        String::from_utf8(self.clone())
            .unwrap()
            .replace("\"version\":1", &format!("\"version\":{version}"))
            .into_bytes()
    }
}
