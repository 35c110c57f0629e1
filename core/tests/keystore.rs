//! The local keystore KeyProvider: generate/unwrap, rotation by alias, typed errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kafka_e2ee_core::keystore::LocalKeystore;
use kafka_e2ee_core::provider::{DekCommitment, DekContext, Edek, KeyProvider, ProviderError};
use kafka_e2ee_core::secret::KeyMaterial;

const CTX: DekContext<'static> = DekContext {
    topic: "orders",
    partition: 3,
    version: 1,
};

fn keystore(keys: &[(&str, u8)], aliases: &[(&str, &str)]) -> LocalKeystore {
    let keys: Vec<_> = keys
        .iter()
        .map(|(id, b)| serde_json::json!({"id": id, "material": STANDARD.encode([*b; 32])}))
        .collect();
    let aliases: serde_json::Map<_, _> = aliases
        .iter()
        .map(|(a, id)| (a.to_string(), serde_json::json!(id)))
        .collect();
    let json = serde_json::json!({"format": 1, "keys": keys, "aliases": aliases});
    LocalKeystore::from_json(json.to_string().as_bytes()).unwrap()
}

/// Same DEK iff the commitment made to one verifies the other (KeyMaterial has no Eq, by design).
fn same_dek(a: &KeyMaterial, b: &KeyMaterial) -> bool {
    DekCommitment::compute(a, CTX).verify(b, CTX)
}

#[tokio::test]
async fn generated_deks_unwrap_to_the_same_key_and_differ_from_each_other() {
    let ks = keystore(&[("k1", 1)], &[("orders-tek", "k1")]);
    let (dek, edek) = ks.generate_dek("orders-tek", CTX).await.unwrap();
    assert_eq!(dek.len(), 32);
    assert_eq!(edek.0.len(), 2 + 2 + 12 + 32 + 16);
    assert!(same_dek(
        &ks.unwrap_dek("orders-tek", CTX, &edek).await.unwrap(),
        &dek
    ));
    let (other, _) = ks.generate_dek("orders-tek", CTX).await.unwrap();
    assert!(!same_dek(&dek, &other), "two generated DEKs must differ");
}

#[tokio::test]
async fn rotation_by_alias_keeps_old_edeks_readable() {
    let before = keystore(&[("k1", 1)], &[("orders-tek", "k1")]);
    let (dek, old_edek) = before.generate_dek("orders-tek", CTX).await.unwrap();
    // The Secret is updated: a new key, the alias repointed, the old key kept.
    let after = keystore(&[("k1", 1), ("k2", 2)], &[("orders-tek", "k2")]);
    assert!(same_dek(
        &after
            .unwrap_dek("orders-tek", CTX, &old_edek)
            .await
            .unwrap(),
        &dek
    ));
    let (_, new_edek) = after.generate_dek("orders-tek", CTX).await.unwrap();
    assert_eq!(&new_edek.0[2..4], b"k2", "new EDEKs name the new key id");
    // Once the old key is removed, its EDEKs are a typed NotFound, not garbage.
    let pruned = keystore(&[("k2", 2)], &[("orders-tek", "k2")]);
    let err = pruned
        .unwrap_dek("orders-tek", CTX, &old_edek)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn tampered_or_misplaced_edeks_are_invalid_ciphertext() {
    let ks = keystore(&[("k1", 1)], &[("orders-tek", "k1")]);
    let (_, edek) = ks.generate_dek("orders-tek", CTX).await.unwrap();
    for i in 4..edek.0.len() {
        let mut bad = edek.clone();
        bad.0[i] ^= 0x01;
        let err = ks.unwrap_dek("orders-tek", CTX, &bad).await.err();
        assert!(
            matches!(err, Some(ProviderError::InvalidCiphertext { .. })),
            "byte {i}: {err:?}"
        );
    }
    for ctx in [
        DekContext {
            partition: 4,
            ..CTX
        },
        DekContext { version: 2, ..CTX },
        DekContext {
            topic: "payments",
            ..CTX
        },
    ] {
        let err = ks.unwrap_dek("orders-tek", ctx, &edek).await.err();
        assert!(
            matches!(err, Some(ProviderError::InvalidCiphertext { .. })),
            "{ctx:?}: {err:?}"
        );
    }
    for bad in [
        Edek(vec![]),
        Edek(vec![1]),
        Edek(vec![2, 2, b'k', b'1']),
        Edek(edek.0[..edek.0.len() - 1].to_vec()),
    ] {
        assert!(matches!(
            ks.unwrap_dek("orders-tek", CTX, &bad).await.err(),
            Some(ProviderError::InvalidCiphertext { .. })
        ));
    }
}

#[tokio::test]
async fn unknown_alias_is_not_found() {
    let ks = keystore(&[("k1", 1)], &[]);
    let err = ks.generate_dek("nope", CTX).await.err().unwrap();
    assert_eq!(
        err,
        ProviderError::NotFound {
            backend: "keystore",
            tek: "nope".into()
        }
    );
    // A key id works as a reference too.
    assert!(ks.generate_dek("k1", CTX).await.is_ok());
}

#[test]
fn malformed_keystores_are_refused_without_echoing_key_material() {
    let secret = STANDARD.encode([0x42u8; 16]);
    let cases = [
        ("not json".to_string(), "not valid JSON"),
        (r#"{"format": 2, "keys": []}"#.to_string(), "format 2"),
        (
            format!(r#"{{"format": 1, "keys": [{{"id": "k", "material": "{secret}"}}]}}"#),
            "must be 32 bytes, is 16",
        ),
        (
            r#"{"format": 1, "keys": [{"id": "k", "material": "%%%"}]}"#.to_string(),
            "not base64",
        ),
        (
            r#"{"format": 1, "keys": [], "aliases": {"a": "missing"}}"#.to_string(),
            "unknown key id 'missing'",
        ),
        (
            r#"{"format": 1, "keys": [], "extra": true}"#.to_string(),
            "not valid JSON",
        ),
    ];
    for (json, want) in cases {
        let err = LocalKeystore::from_json(json.as_bytes()).err().unwrap();
        let text = err.to_string();
        assert!(
            matches!(err, ProviderError::Misconfigured { .. }) && text.contains(want),
            "{json}: {text}"
        );
        assert!(!text.contains(&secret), "error echoes key material: {text}");
    }
    let dup = format!(
        r#"{{"format": 1, "keys": [{{"id": "k", "material": "{m}"}}, {{"id": "k", "material": "{m}"}}]}}"#,
        m = STANDARD.encode([1u8; 32])
    );
    assert!(
        LocalKeystore::from_json(dup.as_bytes())
            .err()
            .unwrap()
            .to_string()
            .contains("appears twice")
    );
}

#[test]
fn loads_from_a_mounted_file() {
    let dir = std::env::temp_dir().join(format!("ke-keystore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keystore.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"format": 1, "keys": [{{"id": "k", "material": "{}"}}]}}"#,
            STANDARD.encode([3u8; 32])
        ),
    )
    .unwrap();
    assert!(LocalKeystore::from_file(&path).is_ok());
    let missing = LocalKeystore::from_file(&dir.join("absent.json"))
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("cannot read keystore"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
