//! Key-topic records: round trips, tombstones, and refusal of anything inconsistent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::BTreeMap;

use kafka_e2ee_core::key_records::{
    EdekRecord, KeyRecord, KeyRecordError, PlaintextPolicy, PolicyRecord, ProviderRef, decode,
    edek_key, policy_key,
};
use kafka_e2ee_core::provider::{DekCommitment, DekContext, Edek};
use kafka_e2ee_core::secret::KeyMaterial;

fn policy() -> PolicyRecord {
    PolicyRecord {
        topic: "orders".into(),
        provider: ProviderRef {
            kind: "vault".into(),
            tek: "orders-tek".into(),
            config: BTreeMap::from([("address".into(), "https://vault:8200".into())]),
        },
        engine: "AES-256-GCM".into(),
        plaintext: PlaintextPolicy::Reject,
        max_records_per_dek: 1 << 30,
        current_versions: BTreeMap::from([(0, 3), (1, 2)]),
    }
}

fn edek() -> EdekRecord {
    let ctx = DekContext {
        topic: "orders",
        partition: 1,
        version: 2,
    };
    EdekRecord {
        topic: "orders".into(),
        partition: 1,
        version: 2,
        tek: "orders-tek".into(),
        tek_version: Some("4".into()),
        edek: Edek(vec![1, 2, 3, 250]),
        commitment: DekCommitment::compute(&KeyMaterial::from_vec(vec![5; 32]), ctx),
        created_at_ms: 1_795_000_000_000,
        created_at_offset: Some(81_920),
    }
}

#[test]
fn policy_and_edek_records_round_trip() {
    let (key, value) = policy().encode().unwrap();
    assert_eq!(key, "policy/orders");
    assert_eq!(
        decode(key.as_bytes(), Some(&value)),
        Ok(KeyRecord::Policy(policy()))
    );
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(
        (
            json["format"].as_u64(),
            json["currentVersions"]["0"].as_u64()
        ),
        (Some(1), Some(3))
    );

    let (key, value) = edek().encode().unwrap();
    assert_eq!(key, "edek/orders/1/2");
    assert_eq!(
        decode(key.as_bytes(), Some(&value)),
        Ok(KeyRecord::Edek(edek()))
    );
    // Readable by operators with any Kafka tool.
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(
        (json["format"].as_u64(), json["tek"].as_str()),
        (Some(1), Some("orders-tek"))
    );
}

#[test]
fn tombstones_decode_to_deletions() {
    assert_eq!(
        decode(policy_key("orders").as_bytes(), None),
        Ok(KeyRecord::PolicyDeleted {
            topic: "orders".into()
        })
    );
    assert_eq!(
        decode(edek_key("orders", 4, 9).as_bytes(), None),
        Ok(KeyRecord::EdekDeleted {
            topic: "orders".into(),
            partition: 4,
            version: 9
        })
    );
}

#[test]
fn a_value_under_another_records_key_is_refused() {
    let (_, value) = edek().encode().unwrap();
    for (key, field) in [
        ("edek/orders/0/2", "partition"),
        ("edek/orders/1/3", "version"),
        ("edek/payments/1/2", "topic"),
    ] {
        match decode(key.as_bytes(), Some(&value)) {
            Err(KeyRecordError::KeyMismatch { field: f, .. }) => assert_eq!(f, field, "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    let (_, policy_value) = policy().encode().unwrap();
    assert!(matches!(
        decode(b"policy/payments", Some(&policy_value)),
        Err(KeyRecordError::KeyMismatch { field: "topic", .. })
    ));
}

#[test]
fn unknown_keys_formats_and_malformed_values_are_typed_errors() {
    for key in [
        "",
        "policy/",
        "policy/a/b",
        "edek/orders/1",
        "edek/orders/-1/2",
        "edek/orders/x/2",
        "edek//1/2",
        "other/orders",
    ] {
        assert!(
            matches!(
                decode(key.as_bytes(), None),
                Err(KeyRecordError::UnknownKey(_))
            ),
            "{key:?}"
        );
    }
    assert!(matches!(
        decode(&[0xff, 0xfe], None),
        Err(KeyRecordError::UnknownKey(_))
    ));
    assert_eq!(
        decode(
            b"policy/orders",
            Some(br#"{"format": 2, "whatever": true}"#)
        ),
        Err(KeyRecordError::UnsupportedFormat {
            key: "policy/orders".into(),
            format: 2
        })
    );
    let (_, mut value) = edek().encode().unwrap();
    value.truncate(value.len() - 2);
    assert!(matches!(
        decode(b"edek/orders/1/2", Some(&value)),
        Err(KeyRecordError::MalformedValue { .. })
    ));
    let bad_commitment = String::from_utf8(edek().encode().unwrap().1)
        .unwrap()
        .replace("\"commitment\":\"", "\"commitment\":\"AAAA");
    assert!(matches!(
        decode(b"edek/orders/1/2", Some(bad_commitment.as_bytes())),
        Err(KeyRecordError::MalformedValue { .. })
    ));
}
