//! The resilience decorator's policy (pure logic, so a scripted provider stands in for a KMS
//! here; the real-server outage test is tests/tests/kms_outage.rs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::sync::Mutex;
use std::time::Duration;

use kafka_e2ee_core::provider::{
    DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager,
};
use kafka_e2ee_core::resilient::{KmsMetrics, ResiliencePolicy, Resilient};
use kafka_e2ee_core::secret::KeyMaterial;

const CTX: DekContext<'static> = DekContext {
    topic: "t",
    partition: 0,
    version: 1,
};

/// Answers each call with the next scripted outcome (the last one repeats), optionally slowly.
struct Scripted {
    outcomes: Mutex<Vec<Option<ProviderError>>>,
    delay: Duration,
}

impl Scripted {
    fn new(outcomes: Vec<Option<ProviderError>>, delay: Duration) -> Self {
        Self {
            outcomes: Mutex::new(outcomes),
            delay,
        }
    }

    async fn next(&self) -> Result<(), ProviderError> {
        tokio::time::sleep(self.delay).await;
        let mut outcomes = self.outcomes.lock().unwrap();
        let outcome = if outcomes.len() > 1 {
            outcomes.remove(0)
        } else {
            outcomes[0].clone()
        };
        outcome.map_or(Ok(()), Err)
    }
}

impl KeyProvider for Scripted {
    fn backend(&self) -> &'static str {
        "scripted"
    }
    async fn generate_dek(
        &self,
        _tek: &str,
        _context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        self.next().await?;
        Ok((KeyMaterial::from_vec(vec![1; 32]), Edek(vec![1])))
    }
    async fn unwrap_dek(
        &self,
        _tek: &str,
        _context: DekContext<'_>,
        _edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        self.next().await?;
        Ok(KeyMaterial::from_vec(vec![1; 32]))
    }
}

impl TekManager for Scripted {
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.next().await?;
        Ok(TekInfo {
            tek: tek.into(),
            latest_version: None,
            min_decryption_version: None,
        })
    }
    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.create_tek(tek).await
    }
    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.create_tek(tek).await
    }
    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        self.create_tek(tek).await.map(|_| ())
    }
    async fn rewrap_dek(
        &self,
        _tek: &str,
        _context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        self.next().await?;
        Ok(edek.clone())
    }
    fn edek_tek_version(&self, _edek: &Edek) -> Option<String> {
        None
    }
}

fn unavailable() -> Option<ProviderError> {
    Some(ProviderError::Unavailable {
        backend: "scripted",
        tek: "t".into(),
        reason: "down".into(),
    })
}

fn resilient(outcomes: Vec<Option<ProviderError>>, delay: Duration) -> Resilient<Scripted> {
    Resilient::new(
        Scripted::new(outcomes, delay),
        ResiliencePolicy::default(),
        KmsMetrics::default(),
    )
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_then_succeed() {
    let p = resilient(vec![unavailable(), unavailable(), None], Duration::ZERO);
    p.unwrap_dek("t", CTX, &Edek(vec![1])).await.unwrap();
    assert_eq!(p.metrics().calls("scripted", "unwrap_dek"), 3);
    assert_eq!(
        p.metrics().errors("scripted", "unwrap_dek", "unavailable"),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_lasting_outage_gives_up_after_max_attempts_within_the_worst_case() {
    let p = resilient(vec![unavailable()], Duration::ZERO);
    let started = tokio::time::Instant::now();
    let err = p.unwrap_dek("t", CTX, &Edek(vec![1])).await.err().unwrap();
    assert!(matches!(err, ProviderError::Unavailable { .. }));
    assert_eq!(p.metrics().calls("scripted", "unwrap_dek"), 4);
    assert!(started.elapsed() <= ResiliencePolicy::default().worst_case());
}

#[tokio::test(start_paused = true)]
async fn answers_are_never_retried() {
    for error in [
        ProviderError::NotFound {
            backend: "scripted",
            tek: "t".into(),
        },
        ProviderError::AccessDenied {
            backend: "scripted",
            tek: "t".into(),
        },
        ProviderError::InvalidCiphertext {
            backend: "scripted",
            tek: "t".into(),
            context: "t/0 v1".into(),
        },
    ] {
        let class = error.class();
        let p = resilient(vec![Some(error)], Duration::ZERO);
        assert!(p.unwrap_dek("t", CTX, &Edek(vec![1])).await.is_err());
        assert_eq!(p.metrics().calls("scripted", "unwrap_dek"), 1, "{class}");
        assert_eq!(p.metrics().errors("scripted", "unwrap_dek", class), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn rotation_is_never_retried() {
    let p = resilient(vec![unavailable(), None], Duration::ZERO);
    assert!(p.rotate_tek("t").await.is_err());
    assert_eq!(p.metrics().calls("scripted", "rotate_tek"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_kms_times_out_per_attempt() {
    let p = resilient(vec![None], Duration::from_secs(60));
    let started = tokio::time::Instant::now();
    let err = p.unwrap_dek("t", CTX, &Edek(vec![1])).await.err().unwrap();
    assert!(
        matches!(&err, ProviderError::Unavailable { reason, .. } if reason.contains("no answer")),
        "{err:?}"
    );
    assert_eq!(p.metrics().calls("scripted", "unwrap_dek"), 4);
    let policy = ResiliencePolicy::default();
    assert!(started.elapsed() >= policy.attempt_timeout * 4);
    assert!(started.elapsed() <= policy.worst_case());
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_bounds_calls_per_second() {
    let p = Resilient::new(
        Scripted::new(vec![None], Duration::ZERO),
        ResiliencePolicy {
            rate_per_second: 10.0,
            burst: 5,
            ..ResiliencePolicy::default()
        },
        KmsMetrics::default(),
    );
    let started = tokio::time::Instant::now();
    for _ in 0..55 {
        p.unwrap_dek("t", CTX, &Edek(vec![1])).await.unwrap();
    }
    // 5 at once, then 10 per second: the other 50 take about 5 s.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(4900), "{elapsed:?}");
    assert!(elapsed <= Duration::from_millis(5200), "{elapsed:?}");
}

#[test]
fn metrics_register_and_encode() {
    let metrics = KmsMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let _ = metrics.calls("vault", "unwrap_dek");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("kafka_e2ee_kms_calls_total{backend=\"vault\",op=\"unwrap_dek\"} 0"),
        "{text}"
    );
}
