//! The KeyProvider / TekManager contract, written once and run against every backend on its
//! real server: the local keystore, and Vault transit on OpenBao (more backends join as they
//! land). Rotation is the one step that differs: a KMS rotates by API, a keystore by a new file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kafka_e2ee_client::aws_kms::{AwsKms, AwsKmsSettings};
use kafka_e2ee_client::dek_cache::{DekCache, DekCacheConfig, DekCacheError};
use kafka_e2ee_client::engine::Aes256Gcm;
use std::time::Duration;

use kafka_e2ee_client::hadoop_kms::{HadoopKms, HadoopKmsSettings, HadoopKmsTls};
use kafka_e2ee_client::key_records::EdekRecord;
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::provider::{
    DekCommitment, DekContext, Edek, KeyProvider, ProviderError, TekManager,
};
use kafka_e2ee_client::secret::KeyMaterial;
use kafka_e2ee_client::vault::{VaultAuth, VaultSettings, VaultTransit};
use kafka_e2ee_tests::{Server, env, require, unique};
use zeroize::Zeroizing;

const CTX: DekContext<'static> = DekContext {
    topic: "orders",
    partition: 3,
    version: 1,
};

/// What the first half hands to the second, across the rotation.
struct BeforeRotation {
    dek: KeyMaterial,
    edek: Edek,
    version: Option<String>,
}

/// Creation (idempotent), generate/unwrap, unknown keys, tampering.
async fn before_rotation<P: TekManager>(provider: &P, tek: &str) -> BeforeRotation {
    let created = provider.create_tek(tek).await.unwrap();
    let again = provider.create_tek(tek).await.unwrap();
    assert_eq!(created, again, "create_tek is idempotent");
    assert_eq!(provider.describe_tek(tek).await.unwrap(), created);

    let (dek, edek) = provider.generate_dek(tek, CTX).await.unwrap();
    assert_eq!(dek.len(), 32, "256-bit DEKs");
    let unwrapped = provider.unwrap_dek(tek, CTX, &edek).await.unwrap();
    assert!(
        DekCommitment::compute(&dek, CTX).verify(&unwrapped, CTX),
        "unwrap gives the generated DEK"
    );
    // Where a wrapping names its TEK version (not AWS), it is the latest.
    if let Some(version) = provider.edek_tek_version(&edek) {
        assert_eq!(
            Some(version),
            created.latest_version,
            "new EDEKs use the latest TEK version"
        );
    }

    // Unknown TEK: NotFound, and nothing gets created as a side effect.
    let missing = unique("missing-tek");
    for err in [
        provider.unwrap_dek(&missing, CTX, &edek).await.err(),
        provider.generate_dek(&missing, CTX).await.err(),
        provider.describe_tek(&missing).await.err(),
    ] {
        assert!(
            matches!(err, Some(ProviderError::NotFound { .. })),
            "{err:?}"
        );
    }
    BeforeRotation {
        dek,
        edek,
        version: created.latest_version,
    }
}

/// Tampered or misplaced EDEKs never yield a usable key: checked through the DEK cache, which
/// verifies the commitment (the only protection for wrappings without integrity).
async fn tampering_is_refused<P: TekManager>(provider: &P, tek: &str, state: &BeforeRotation) {
    let record = |edek: Edek, partition| EdekRecord {
        topic: CTX.topic.into(),
        partition,
        version: 1,
        tek: tek.into(),
        tek_version: None,
        edek,
        commitment: DekCommitment::compute(&state.dek, CTX),
        created_at_ms: 0,
        created_at_offset: None,
    };
    // A fresh cache per case: a cache serves a version it already holds without asking again.
    let cache = || DekCache::new(provider, Box::new(Aes256Gcm), DekCacheConfig::default());
    assert!(cache().get(&record(state.edek.clone(), 3)).await.is_ok());
    // Inside the bytes, not the last one: a base64 EDEK's last character carries padding bits.
    for at in [state.edek.0.len() / 2, state.edek.0.len() * 3 / 4] {
        let mut bytes = state.edek.0.clone();
        bytes[at] ^= 0x01;
        let err = cache().get(&record(Edek(bytes), 3)).await.err();
        assert!(
            matches!(
                err,
                Some(
                    DekCacheError::CommitmentMismatch { .. }
                        | DekCacheError::Provider {
                            source: ProviderError::InvalidCiphertext { .. },
                            ..
                        }
                )
            ),
            "byte {at}: {err:?}"
        );
    }
    // The right EDEK filed under another partition.
    let err = cache().get(&record(state.edek.clone(), 4)).await.err();
    assert!(
        matches!(
            err,
            Some(
                DekCacheError::CommitmentMismatch { .. }
                    | DekCacheError::Provider {
                        source: ProviderError::InvalidCiphertext { .. },
                        ..
                    }
            )
        ),
        "{err:?}"
    );
}

/// Where the KMS binds a wrapping to its slot (keystore AAD, Vault derivation context, AWS
/// encryption context), an EDEK presented for any other slot is refused by the KMS itself,
/// before the commitment (or the operator's signature) is even looked at.
async fn kms_binds_the_slot<P: TekManager>(provider: &P, tek: &str) {
    let (_, edek) = provider.generate_dek(tek, CTX).await.unwrap();
    for elsewhere in [
        DekContext {
            partition: 4,
            ..CTX
        },
        DekContext {
            topic: "payments",
            ..CTX
        },
        DekContext { version: 2, ..CTX },
    ] {
        let err = provider.unwrap_dek(tek, elsewhere, &edek).await.err();
        assert!(
            matches!(
                err,
                Some(ProviderError::InvalidCiphertext { .. } | ProviderError::AccessDenied { .. })
            ),
            "{} unwrapped an EDEK for {elsewhere:?}: {err:?}",
            provider.backend()
        );
    }
    assert!(provider.unwrap_dek(tek, CTX, &edek).await.is_ok());
}

/// After a rotation: old EDEKs still unwrap, re-wrapping moves them to the new version, new
/// DEKs use it.
async fn after_rotation<P: TekManager>(provider: &P, tek: &str, before: &BeforeRotation) {
    let info = provider.describe_tek(tek).await.unwrap();
    assert_ne!(
        info.latest_version, before.version,
        "rotation made a new version"
    );
    let old = provider.unwrap_dek(tek, CTX, &before.edek).await.unwrap();
    assert!(DekCommitment::compute(&before.dek, CTX).verify(&old, CTX));

    let rewrapped = provider.rewrap_dek(tek, CTX, &before.edek).await.unwrap();
    assert_ne!(rewrapped, before.edek);
    if let Some(version) = provider.edek_tek_version(&rewrapped) {
        assert_eq!(Some(version), info.latest_version);
    }
    let same = provider.unwrap_dek(tek, CTX, &rewrapped).await.unwrap();
    assert!(
        DekCommitment::compute(&before.dek, CTX).verify(&same, CTX),
        "re-wrapping keeps the DEK"
    );
    // The batch form (Hadoop: one _reencryptbatch call) gives the same DEKs, in order.
    let other = DekContext {
        partition: 4,
        ..CTX
    };
    let (other_dek, other_edek) = provider.generate_dek(tek, other).await.unwrap();
    let batch = provider
        .rewrap_deks(tek, &[(CTX, &before.edek), (other, &other_edek)])
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    let first = provider.unwrap_dek(tek, CTX, &batch[0]).await.unwrap();
    assert!(DekCommitment::compute(&before.dek, CTX).verify(&first, CTX));
    let second = provider.unwrap_dek(tek, other, &batch[1]).await.unwrap();
    assert!(DekCommitment::compute(&other_dek, other).verify(&second, other));

    let (_, fresh) = provider.generate_dek(tek, CTX).await.unwrap();
    if let Some(version) = provider.edek_tek_version(&fresh) {
        assert_eq!(Some(version), info.latest_version);
    }
}

/// The whole contract for a KMS that rotates by API: versions `first` then `second`.
async fn kms_contract<P: TekManager>(
    provider: &P,
    tek: &str,
    first: &str,
    second: &str,
) -> BeforeRotation {
    let before = before_rotation(provider, tek).await;
    assert_eq!(before.version.as_deref(), Some(first));
    let rotated = provider.rotate_tek(tek).await.unwrap();
    assert_eq!(rotated.latest_version.as_deref(), Some(second));
    after_rotation(provider, tek, &before).await;
    tampering_is_refused(provider, tek, &before).await;
    before
}

/// Crypto-shredding: after delete_tek the TEK is gone and its EDEKs unwrap no more; deleting
/// again (or a TEK that never existed) is fine.
async fn deletion_shreds<P: TekManager>(provider: &P, tek: &str, state: &BeforeRotation) {
    provider.delete_tek(tek).await.unwrap();
    assert!(
        matches!(
            provider.describe_tek(tek).await,
            Err(ProviderError::NotFound { .. })
        ),
        "deleted TEK still described"
    );
    assert!(
        provider.unwrap_dek(tek, CTX, &state.edek).await.is_err(),
        "an EDEK of a deleted TEK still unwraps"
    );
    provider.delete_tek(tek).await.unwrap();
}

fn keystore_json(keys: &[(&str, [u8; 32])], alias_to: &str) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(id, k)| format!(r#"{{"id": "{id}", "material": "{}"}}"#, STANDARD.encode(k)))
        .collect();
    format!(
        r#"{{"format": 1, "keys": [{}], "aliases": {{"tek": "{alias_to}"}}}}"#,
        keys.join(",")
    )
}

#[tokio::test]
async fn keystore_meets_the_contract() {
    let (k1, k2) = ([1u8; 32], [2u8; 32]);
    let v1 = LocalKeystore::from_json(keystore_json(&[("k1", k1)], "k1").as_bytes()).unwrap();
    let before = before_rotation(&v1, "tek").await;
    assert!(matches!(
        v1.rotate_tek("tek").await,
        Err(ProviderError::Misconfigured { .. })
    ));
    tampering_is_refused(&v1, "tek", &before).await;
    kms_binds_the_slot(&v1, "tek").await;
    // Rotation: the Secret gains k2 and the alias moves to it.
    let v2 = LocalKeystore::from_json(keystore_json(&[("k1", k1), ("k2", k2)], "k2").as_bytes())
        .unwrap();
    after_rotation(&v2, "tek", &before).await;
    // The keystore's TEKs live in its Secret: deleting one is the Secret owner's job.
    assert!(matches!(
        v2.delete_tek("tek").await,
        Err(ProviderError::Misconfigured { .. })
    ));
}

fn vault() -> VaultTransit {
    kafka_e2ee_tests::bed::vault_root()
}

#[tokio::test]
async fn vault_transit_meets_the_contract() {
    let (provider, tek) = (vault(), unique("conformance-tek"));
    let before = kms_contract(&provider, &tek, "1", "2").await;
    kms_binds_the_slot(&provider, &tek).await;
    // Re-wrapping for another slot fails in Vault too (derivation covers rewrap).
    let elsewhere = DekContext {
        partition: 4,
        ..CTX
    };
    assert!(matches!(
        provider.rewrap_dek(&tek, elsewhere, &before.edek).await,
        Err(ProviderError::InvalidCiphertext { .. })
    ));
    let info = provider.describe_tek(&tek).await.unwrap();
    assert_eq!(
        info.min_decryption_version.as_deref(),
        Some("1"),
        "v1 still decrypts"
    );
    deletion_shreds(&provider, &tek, &before).await;
}

#[tokio::test]
async fn vault_refuses_an_existing_key_of_the_wrong_kind_and_bad_credentials() {
    use vaultrs::api::transit::KeyType;
    use vaultrs::api::transit::requests::CreateKeyRequestBuilder;
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

    let tek = unique("exportable-tek");
    let admin = VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(require(Server::Vault))
            .token(env(Server::Vault, "VAULT_TOKEN"))
            .build()
            .unwrap(),
    )
    .unwrap();
    vaultrs::transit::key::create(
        &admin,
        "transit",
        &tek,
        Some(
            CreateKeyRequestBuilder::default()
                .key_type(KeyType::Aes256Gcm96)
                .exportable(true),
        ),
    )
    .await
    .unwrap();
    assert!(matches!(
        vault().create_tek(&tek).await,
        Err(ProviderError::Misconfigured { .. })
    ));
    // A key without derivation (made by hand, or by an earlier version) keeps working; Vault
    // ignores the context for it, so it binds no slot (the operator's signature does).
    let underived = unique("underived-tek");
    vaultrs::transit::key::create(
        &admin,
        "transit",
        &underived,
        Some(CreateKeyRequestBuilder::default().key_type(KeyType::Aes256Gcm96)),
    )
    .await
    .unwrap();
    let provider = vault();
    provider.create_tek(&underived).await.unwrap();
    let (dek, edek) = provider.generate_dek(&underived, CTX).await.unwrap();
    let elsewhere = DekContext {
        partition: 9,
        ..CTX
    };
    let unbound = provider
        .unwrap_dek(&underived, elsewhere, &edek)
        .await
        .unwrap();
    assert!(DekCommitment::compute(&dek, CTX).verify(&unbound, CTX));

    let wrong_token = VaultTransit::new(&kafka_e2ee_tests::bed::vault_settings(VaultAuth::Token(
        Zeroizing::new("not-a-token".into()),
    )))
    .unwrap();
    assert!(matches!(
        wrong_token.describe_tek(&tek).await,
        Err(ProviderError::AccessDenied { .. })
    ));

    // The process environment redirects nothing: this test's has VAULT_CACERT (OpenBao's
    // private CA) and VAULT_TOKEN, and a client given no CA of its own still trusts only the
    // system's roots, so the TLS handshake fails, typed as a misconfiguration (retrying will
    // not fix it) that names the remedy.
    assert!(std::env::var_os("VAULT_CACERT").is_some());
    let no_ca = VaultTransit::new(&VaultSettings {
        ca_pem: None,
        ..kafka_e2ee_tests::bed::vault_settings(kafka_e2ee_tests::bed::vault_root_auth())
    })
    .unwrap();
    match no_ca.describe_tek(&tek).await {
        Err(ProviderError::Misconfigured { reason, .. }) => {
            assert!(reason.contains("not trusted"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    for bundle in [&b"not a certificate"[..], b""] {
        assert!(matches!(
            VaultTransit::new(&VaultSettings {
                ca_pem: Some(bundle.to_vec()),
                ..kafka_e2ee_tests::bed::vault_settings(kafka_e2ee_tests::bed::vault_root_auth())
            }),
            Err(ProviderError::Misconfigured { .. })
        ));
    }

    // Nothing listening: Unavailable, naming the backend and the key.
    let down = VaultTransit::new(&VaultSettings {
        address: "https://127.0.0.1:9".into(),
        namespace: None,
        mount: "transit".into(),
        auth: VaultAuth::Token(Zeroizing::new("x".into())),
        ca_pem: None,
    })
    .unwrap();
    match down.describe_tek(&tek).await {
        Err(ProviderError::Unavailable {
            backend: "vault",
            tek: t,
            ..
        }) => assert_eq!(t, tek),
        other => panic!("{other:?}"),
    }
}

async fn aws() -> AwsKms {
    // Credentials come from the default chain: the test bed exports AWS_ACCESS_KEY_ID etc.
    AwsKms::new(&AwsKmsSettings {
        region: Some(env(Server::AwsKms, "AWS_REGION")),
        endpoint: Some(require(Server::AwsKms)),
        credentials: None,
        web_identity: None,
    })
    .await
}

#[tokio::test]
async fn aws_kms_meets_the_contract() {
    let tek = format!("alias/{}", unique("conformance-tek"));
    let provider = aws().await;
    let before = kms_contract(&provider, &tek, "1", "2").await;
    deletion_shreds(&provider, &tek, &before).await;
}

/// Web identity: a ServiceAccount token (here a real one from the test bed's apiserver)
/// exchanged with STS (moto's) for a role's credentials, which then serve KMS. moto does not
/// check the token or the role's policy (docs/kms.md says what AWS checks); what is tested
/// here is the exchange, and that a token that cannot be had is a typed refusal.
#[tokio::test]
async fn aws_kms_with_web_identity_assumes_the_role_with_a_service_account_token() {
    use kafka_e2ee_client::aws_kms::AwsWebIdentitySettings;
    use kafka_e2ee_tests::bed::FixedJwt;
    require(Server::KubeApiserver);
    let kube = kube::Client::try_default().await.unwrap();
    let ns = unique("aws-web");
    kafka_e2ee_tests::kube_env::create_namespace(&kube, &ns, &[]).await;
    kafka_e2ee_tests::kube_env::create_service_account(&kube, &ns, "kms").await;
    let token = kafka_e2ee_tests::kube_env::service_account_token(
        &kube,
        &ns,
        "kms",
        Some("sts.amazonaws.com"),
        Some(600),
    )
    .await;
    let with = |token: Result<String, String>| async move {
        AwsKms::new(&AwsKmsSettings {
            region: Some(env(Server::AwsKms, "AWS_REGION")),
            endpoint: Some(require(Server::AwsKms)),
            credentials: None,
            web_identity: Some(AwsWebIdentitySettings {
                role_arn: "arn:aws:iam::123456789012:role/kafka-e2ee-tenant".into(),
                token: std::sync::Arc::new(FixedJwt(token)),
                sts_endpoint: Some(require(Server::AwsKms)),
                session_name: "kafka-e2ee-test".into(),
            }),
        })
        .await
    };
    let provider = with(Ok(token)).await;
    let tek = format!("alias/{}", unique("web-identity-tek"));
    provider.create_tek(&tek).await.unwrap();
    let (dek, edek) = provider.generate_dek(&tek, CTX).await.unwrap();
    let unwrapped = provider.unwrap_dek(&tek, CTX, &edek).await.unwrap();
    assert!(DekCommitment::compute(&dek, CTX).verify(&unwrapped, CTX));

    let refused = with(Err("TokenRequest refused".into())).await;
    let err = refused.describe_tek(&tek).await.err();
    assert!(
        matches!(err, Some(ProviderError::AccessDenied { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn aws_kms_binds_the_encryption_context_and_refuses_plain_key_ids_it_cannot_create() {
    let provider = aws().await;
    let tek = format!("alias/{}", unique("context-tek"));
    provider.create_tek(&tek).await.unwrap();
    kms_binds_the_slot(&provider, &tek).await;
    let err = provider
        .create_tek("1234abcd-0000-0000-0000-000000000000")
        .await
        .err();
    assert!(
        matches!(err, Some(ProviderError::Misconfigured { .. })),
        "{err:?}"
    );
}

fn hadoop(user: &str) -> HadoopKms {
    HadoopKms::new(&HadoopKmsSettings {
        url: require(Server::HadoopKms),
        user: user.into(),
        tls: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

/// The same KMS over HTTPS with mutual TLS (the test bed's second listener).
fn hadoop_tls(client_cert: bool) -> HadoopKms {
    require(Server::HadoopKms);
    let dir = std::path::PathBuf::from(env(Server::HadoopKms, "KE_HADOOP_KMS_TLS_DIR"));
    HadoopKms::new(&HadoopKmsSettings {
        url: env(Server::HadoopKms, "KE_HADOOP_KMS_TLS_URL"),
        user: "kafka-e2ee".into(),
        tls: Some(
            HadoopKmsTls::from_files(
                &dir.join("ca.crt"),
                client_cert.then(|| dir.join("client.crt")).as_deref(),
                client_cert.then(|| dir.join("client.key")).as_deref(),
            )
            .unwrap(),
        ),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

#[tokio::test]
async fn hadoop_kms_over_mutual_tls_meets_the_contract() {
    let (provider, tek) = (hadoop_tls(true), unique("tls-tek"));
    let before = kms_contract(&provider, &tek, "0", "1").await;
    deletion_shreds(&provider, &tek, &before).await;
    // Without a client certificate the handshake is refused: a typed error, nothing served.
    let err = hadoop_tls(false).describe_tek("anything").await.err();
    assert!(
        matches!(
            err,
            Some(ProviderError::Unavailable {
                backend: "hadoop-kms",
                ..
            })
        ),
        "{err:?}"
    );
    // A CA that did not sign the server's certificate is not trusted.
    let dir = std::path::PathBuf::from(env(Server::HadoopKms, "KE_HADOOP_KMS_TLS_DIR"));
    let wrong_ca = HadoopKms::new(&HadoopKmsSettings {
        url: env(Server::HadoopKms, "KE_HADOOP_KMS_TLS_URL"),
        user: "kafka-e2ee".into(),
        tls: Some(
            HadoopKmsTls::from_files(
                &dir.join("client.crt"),
                Some(&dir.join("client.crt")),
                Some(&dir.join("client.key")),
            )
            .unwrap(),
        ),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert!(matches!(
        wrong_ca.describe_tek("anything").await,
        Err(ProviderError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn hadoop_kms_meets_the_contract() {
    let provider = hadoop("kafka-e2ee");
    let tek = unique("conformance-tek");
    let before = before_rotation(&provider, &tek).await;
    assert_eq!(
        before.version.as_deref(),
        Some("0"),
        "Hadoop numbers versions from 0"
    );
    let rotated = provider.rotate_tek(&tek).await.unwrap();
    assert_eq!(rotated.latest_version.as_deref(), Some("1"));
    after_rotation(&provider, &tek, &before).await;
    // EEKs are AES-CTR: here the commitment is what refuses a tampered wrapping.
    tampering_is_refused(&provider, &tek, &before).await;
    // Hadoop KMS binds no slot: an EEK "unwraps" for any context. That is why its EDEK records
    // are trusted only through the operator's signature and the signed commitment
    // (docs/security.md).
    let elsewhere = DekContext {
        partition: 4,
        ..CTX
    };
    let unbound = provider
        .unwrap_dek(&tek, elsewhere, &before.edek)
        .await
        .unwrap();
    assert!(
        DekCommitment::compute(&before.dek, CTX).verify(&unbound, CTX),
        "the same DEK, whatever slot was asked for"
    );
    assert!(
        !DekCommitment::compute(&before.dek, CTX).verify(&unbound, elsewhere),
        "but its (signed) commitment names its own slot only"
    );
    deletion_shreds(&provider, &tek, &before).await;
}

#[tokio::test]
async fn hadoop_kms_refuses_an_eek_of_another_key_and_reports_a_dead_server() {
    let provider = hadoop("kafka-e2ee");
    let (a, b) = (unique("tek-a"), unique("tek-b"));
    provider.create_tek(&a).await.unwrap();
    provider.create_tek(&b).await.unwrap();
    let (_, edek) = provider.generate_dek(&a, CTX).await.unwrap();
    assert!(matches!(
        provider.unwrap_dek(&b, CTX, &edek).await,
        Err(ProviderError::InvalidCiphertext { .. })
    ));
    let down = HadoopKms::new(&HadoopKmsSettings {
        url: "http://127.0.0.1:9/kms".into(),
        user: "x".into(),
        tls: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert!(matches!(
        down.describe_tek(&a).await,
        Err(ProviderError::Unavailable {
            backend: "hadoop-kms",
            ..
        })
    ));
}
