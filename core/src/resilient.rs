//! What every KMS backend gets around it: a timeout per attempt, retries with jittered
//! exponential backoff on transient errors only, a rate limit, and metrics.
//!
//! - Only `Unavailable` and `Throttled` are retried. `NotFound`, `AccessDenied`, `Disabled`,
//!   `InvalidCiphertext` and `Misconfigured` are answers, and asking again cannot change them.
//! - Rotation is never retried: a rotation whose answer was lost may have happened.
//! - The rate limit (a token bucket shared by all calls through one `Resilient`) bounds the KMS
//!   load however many records fail; together with the DEK cache's single-flight, an outage or
//!   a cold start cannot turn into one KMS call per record.
//! - Metrics (prometheus-client): calls and errors by backend, operation and error class, and a
//!   latency histogram per operation.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::provider::{
    DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager, TekOwner,
};
use crate::secret::KeyMaterial;

/// Timeouts, retries and the rate limit. The defaults suit a KMS across a network.
#[derive(Debug, Clone, Copy)]
pub struct ResiliencePolicy {
    /// Each attempt is abandoned (as `Unavailable`) after this long.
    pub attempt_timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Sustained calls per second to the KMS through this provider.
    pub rate_per_second: f64,
    /// Calls allowed at once above the sustained rate.
    pub burst: u32,
}

impl Default for ResiliencePolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 4,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            rate_per_second: 50.0,
            burst: 20,
        }
    }
}

impl ResiliencePolicy {
    /// The longest a call can take: every attempt timing out, with the longest backoffs.
    pub fn worst_case(&self) -> Duration {
        self.attempt_timeout * self.max_attempts
            + self.max_backoff * self.max_attempts.saturating_sub(1)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    backend: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    backend: &'static str,
    op: &'static str,
    class: &'static str,
}

/// KMS call metrics. Cheap to clone (shared counters); register once.
#[derive(Clone)]
pub struct KmsMetrics {
    calls: Family<OpLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<OpLabels, Histogram>,
}

impl Default for KmsMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            errors: Family::default(),
            // 1 ms .. ~16 s.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
        }
    }
}

impl KmsMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_e2ee_kms_calls",
            "KMS calls (attempts), by backend and operation",
            self.calls.clone(),
        );
        registry.register(
            "kafka_e2ee_kms_errors",
            "Failed KMS attempts, by backend, operation and error class",
            self.errors.clone(),
        );
        registry.register(
            "kafka_e2ee_kms_latency_seconds",
            "KMS attempt latency, by backend and operation",
            self.latency.clone(),
        );
    }

    /// Attempts made so far for `op` on `backend` (tests and diagnostics).
    pub fn calls(&self, backend: &'static str, op: &'static str) -> u64 {
        self.calls.get_or_create(&OpLabels { backend, op }).get()
    }

    pub fn errors(&self, backend: &'static str, op: &'static str, class: &'static str) -> u64 {
        self.errors
            .get_or_create(&ErrorLabels { backend, op, class })
            .get()
    }
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A provider with timeouts, retries, a rate limit and metrics around it.
pub struct Resilient<P> {
    inner: P,
    policy: ResiliencePolicy,
    bucket: Mutex<Bucket>,
    metrics: KmsMetrics,
    rng: SystemRandom,
}

impl<P: KeyProvider> Resilient<P> {
    pub fn new(inner: P, policy: ResiliencePolicy, metrics: KmsMetrics) -> Self {
        Self {
            inner,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(policy.burst.max(1)),
                last: Instant::now(),
            }),
            policy,
            metrics,
            rng: SystemRandom::new(),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn metrics(&self) -> &KmsMetrics {
        &self.metrics
    }

    /// Waits for a token of the rate limit.
    async fn admit(&self) {
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let refill =
                    now.duration_since(bucket.last).as_secs_f64() * self.policy.rate_per_second;
                bucket.tokens = (bucket.tokens + refill).min(f64::from(self.policy.burst.max(1)));
                bucket.last = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64(
                    (1.0 - bucket.tokens) / self.policy.rate_per_second.max(0.001),
                )
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Full jitter: uniform in [0, min(max, base * 2^(attempt-1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .policy
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.policy.max_backoff);
        let mut bytes = [0u8; 4];
        let fraction = match self.rng.fill(&mut bytes) {
            Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        ceiling.mul_f64(fraction)
    }

    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        tek: &str,
        retry: bool,
        attempt_once: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let backend = self.inner.backend();
        let labels = OpLabels { backend, op };
        let max_attempts = if retry {
            self.policy.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            self.admit().await;
            self.metrics.calls.get_or_create(&labels).inc();
            let started = Instant::now();
            let result =
                match tokio::time::timeout(self.policy.attempt_timeout, attempt_once()).await {
                    Ok(result) => result,
                    Err(_) => Err(ProviderError::Unavailable {
                        backend,
                        tek: tek.to_owned(),
                        reason: format!("no answer within {:?}", self.policy.attempt_timeout),
                    }),
                };
            self.metrics
                .latency
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            self.metrics
                .errors
                .get_or_create(&ErrorLabels {
                    backend,
                    op,
                    class: error.class(),
                })
                .inc();
            if !error.is_transient() || attempt >= max_attempts {
                return Err(error);
            }
            tracing::debug!(backend, op, attempt, error = %error, "transient KMS error; retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

impl<P: KeyProvider> KeyProvider for Resilient<P> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        self.run("generate_dek", tek, true, || {
            self.inner.generate_dek(tek, context)
        })
        .await
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        self.run("unwrap_dek", tek, true, || {
            self.inner.unwrap_dek(tek, context, edek)
        })
        .await
    }
}

impl<P: TekManager> TekManager for Resilient<P> {
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.run("create_tek", tek, true, || self.inner.create_tek(tek))
            .await
    }

    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.run("describe_tek", tek, true, || self.inner.describe_tek(tek))
            .await
    }

    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.run("rotate_tek", tek, false, || self.inner.rotate_tek(tek))
            .await
    }

    async fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        self.run("rewrap_dek", tek, true, || {
            self.inner.rewrap_dek(tek, context, edek)
        })
        .await
    }

    fn edek_tek_version(&self, edek: &Edek) -> Option<String> {
        self.inner.edek_tek_version(edek)
    }

    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        self.run("delete_tek", tek, true, || self.inner.delete_tek(tek))
            .await
    }

    async fn create_tek_for(
        &self,
        tek: &str,
        owner: &TekOwner<'_>,
    ) -> Result<TekInfo, ProviderError> {
        self.run("create_tek", tek, true, || {
            self.inner.create_tek_for(tek, owner)
        })
        .await
    }

    async fn delete_tek_of(&self, tek: &str, owner: &TekOwner<'_>) -> Result<(), ProviderError> {
        self.run("delete_tek", tek, true, || {
            self.inner.delete_tek_of(tek, owner)
        })
        .await
    }

    async fn rewrap_deks(
        &self,
        tek: &str,
        items: &[(DekContext<'_>, &Edek)],
    ) -> Result<Vec<Edek>, ProviderError> {
        self.run("rewrap_deks", tek, true, || {
            self.inner.rewrap_deks(tek, items)
        })
        .await
    }
}
