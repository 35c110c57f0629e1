//! DEK cache: single-flight, commitment check, expiry, bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kafka_e2ee_core::dek_cache::{DekCache, DekCacheConfig, DekCacheError};
use kafka_e2ee_core::engine::Aes256Gcm;
use kafka_e2ee_core::key_records::EdekRecord;
use kafka_e2ee_core::keystore::LocalKeystore;
use kafka_e2ee_core::provider::{DekCommitment, DekContext, Edek, KeyProvider, ProviderError};
use kafka_e2ee_core::secret::KeyMaterial;

/// The real keystore provider, counting unwraps and taking 20 ms each (like a KMS round trip).
struct Counting {
    inner: LocalKeystore,
    unwraps: Arc<AtomicUsize>,
}

impl KeyProvider for Counting {
    fn backend(&self) -> &'static str {
        "counting-keystore"
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        self.inner.generate_dek(tek, context).await
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.inner.unwrap_dek(tek, context, edek).await
    }
}

fn keystore() -> LocalKeystore {
    let json = format!(
        r#"{{"format": 1, "keys": [{{"id": "k1", "material": "{}"}}], "aliases": {{"tek": "k1"}}}}"#,
        STANDARD.encode([1u8; 32])
    );
    LocalKeystore::from_json(json.as_bytes()).unwrap()
}

async fn edek_record(ks: &LocalKeystore, partition: i32, version: u32) -> EdekRecord {
    let ctx = DekContext {
        topic: "orders",
        partition,
        version,
    };
    let (dek, edek) = ks.generate_dek("tek", ctx).await.unwrap();
    EdekRecord {
        topic: "orders".into(),
        partition,
        version,
        tek: "tek".into(),
        tek_version: None,
        edek,
        commitment: DekCommitment::compute(&dek, ctx),
        created_at_ms: 0,
        created_at_offset: None,
    }
}

fn cache(config: DekCacheConfig) -> (Arc<DekCache<Counting>>, Arc<AtomicUsize>) {
    let unwraps = Arc::new(AtomicUsize::new(0));
    let provider = Counting {
        inner: keystore(),
        unwraps: Arc::clone(&unwraps),
    };
    (
        Arc::new(DekCache::new(provider, Box::new(Aes256Gcm), config)),
        unwraps,
    )
}

#[tokio::test]
async fn concurrent_misses_make_one_provider_call_per_key_version() {
    let (cache, unwraps) = cache(DekCacheConfig::default());
    let ks = keystore();
    let records = [
        edek_record(&ks, 0, 1).await,
        edek_record(&ks, 0, 2).await,
        edek_record(&ks, 1, 1).await,
    ];
    let mut tasks = Vec::new();
    for i in 0..300 {
        let cache = Arc::clone(&cache);
        let record = records[i % records.len()].clone();
        tasks.push(tokio::spawn(
            async move { cache.get(&record).await.map(|_| ()) },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        unwraps.load(Ordering::SeqCst),
        records.len(),
        "one unwrap per key version, not per caller"
    );
    // Warm: any number of further gets costs nothing.
    for _ in 0..1000 {
        cache.get(&records[0]).await.unwrap();
    }
    assert_eq!(unwraps.load(Ordering::SeqCst), records.len());
}

#[tokio::test(start_paused = true)]
async fn a_dek_that_does_not_match_its_commitment_is_refused_and_retried_after_error_ttl() {
    let (cache, unwraps) = cache(DekCacheConfig::default());
    let ks = keystore();
    let mut record = edek_record(&ks, 0, 1).await;
    // Another DEK's commitment: what a KMS without integrity would "unwrap" after tampering.
    record.commitment = DekCommitment::compute(
        &KeyMaterial::from_vec(vec![9; 32]),
        DekContext {
            topic: "orders",
            partition: 0,
            version: 1,
        },
    );
    let expected = DekCacheError::CommitmentMismatch {
        topic: "orders".into(),
        partition: 0,
        version: 1,
    };
    // Twenty callers at once share one attempt and its error.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, record) = (Arc::clone(&cache), record.clone());
        tasks.push(tokio::spawn(async move { cache.get(&record).await.err() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Some(expected.clone()));
    }
    assert_eq!(
        unwraps.load(Ordering::SeqCst),
        1,
        "one attempt for all callers"
    );
    assert!(
        cache.get_cached("orders", 0, 1).is_none(),
        "a refused key is never served"
    );
    // Within error_ttl the failure is remembered; after it the provider is asked again.
    assert_eq!(cache.get(&record).await.err(), Some(expected.clone()));
    assert_eq!(unwraps.load(Ordering::SeqCst), 1);
    tokio::time::advance(DekCacheConfig::default().error_ttl).await;
    assert_eq!(cache.get(&record).await.err(), Some(expected));
    assert_eq!(unwraps.load(Ordering::SeqCst), 2, "retried after error_ttl");
}

#[tokio::test]
async fn provider_errors_are_typed_with_the_key_they_concern() {
    let (cache, _) = cache(DekCacheConfig::default());
    let mut record = edek_record(&keystore(), 2, 5).await;
    record.edek.0[10] ^= 1;
    match cache.get(&record).await.err().unwrap() {
        DekCacheError::Provider {
            topic,
            partition: 2,
            version: 5,
            source: ProviderError::InvalidCiphertext { .. },
        } => assert_eq!(topic, "orders"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let (cache, unwraps) = cache(DekCacheConfig {
        capacity: 16,
        ttl: Duration::from_secs(60),
        ..DekCacheConfig::default()
    });
    let record = edek_record(&keystore(), 0, 1).await;
    cache.get(&record).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    cache.get(&record).await.unwrap();
    assert_eq!(unwraps.load(Ordering::SeqCst), 1, "fresh within the ttl");
    tokio::time::advance(Duration::from_secs(31)).await;
    cache.get(&record).await.unwrap();
    assert_eq!(unwraps.load(Ordering::SeqCst), 2, "refetched after the ttl");
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicts_the_oldest() {
    let (cache, unwraps) = cache(DekCacheConfig {
        capacity: 2,
        ttl: Duration::from_secs(3600),
        ..DekCacheConfig::default()
    });
    let ks = keystore();
    let (a, b, c) = (
        edek_record(&ks, 0, 1).await,
        edek_record(&ks, 1, 1).await,
        edek_record(&ks, 2, 1).await,
    );
    for r in [&a, &b, &c] {
        cache.get(r).await.unwrap();
    }
    assert_eq!(cache.len(), 2);
    cache.get(&c).await.unwrap();
    cache.get(&b).await.unwrap();
    assert_eq!(
        unwraps.load(Ordering::SeqCst),
        3,
        "b and c are still cached"
    );
    cache.get(&a).await.unwrap();
    assert_eq!(
        unwraps.load(Ordering::SeqCst),
        4,
        "a, the oldest, was evicted"
    );
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn prefetch_unwraps_ahead_and_get_cached_never_calls_the_provider() {
    let (cache, unwraps) = cache(DekCacheConfig::default());
    let next = edek_record(&keystore(), 0, 2).await;
    assert!(cache.get_cached("orders", 0, 2).is_none());
    assert_eq!(unwraps.load(Ordering::SeqCst), 0, "a miss asks nobody");

    cache.prefetch(next.clone());
    cache.prefetch(next.clone()); // already in flight: still one unwrap
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cache.get_cached("orders", 0, 2).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "prefetch never landed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache.get(&next).await.unwrap();
    assert_eq!(unwraps.load(Ordering::SeqCst), 1);
    assert!(
        cache.get_cached("orders", 1, 2).is_none(),
        "other partition"
    );
    assert!(cache.get_cached("orders", 0, 3).is_none(), "other version");
}
