//! Client configuration ([`kafka_e2ee_core::config`], re-exported here), and wiring it into a
//! ready producer or consumer: [`EncryptionClient`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{ConsumerContext, DefaultConsumerContext};
use thiserror::Error;

pub use kafka_e2ee_core::config::*;

use crate::any_provider::AnyProvider;
use crate::consumer::{ConsumeError, ConsumerSettings, DecryptingConsumer};
use crate::dek_cache::DekCache;
use crate::kafka::Connect as _;
use crate::key_directory::{KeyDirectory, KeyDirectoryError};
use crate::producer::{EncryptingProducer, ProduceError, ProducerSettings};
use crate::provider::ProviderError;
use crate::resilient::{KmsMetrics, ResiliencePolicy, Resilient};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the configured KeyProvider cannot start")]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    KeyDirectory(#[from] KeyDirectoryError),
}

/// What producers and consumers share: the key directory and the DEK cache. Build one per
/// process and create producers and consumers from it.
pub struct EncryptionClient {
    config: ClientConfig,
    keys: Arc<KeyDirectory>,
    deks: Arc<DekCache<ClientProvider>>,
    kms_metrics: KmsMetrics,
}

/// The provider behind every client: the configured backend inside the resilience decorator.
pub type ClientProvider = Resilient<AnyProvider>;

impl EncryptionClient {
    /// Resolves the configuration (injected or `local`), loads the provider and starts reading
    /// the key topic.
    /// An injected configuration is re-read every [`TRUST_RELOAD`] for its trust settings.
    pub async fn start(local: Option<ClientConfig>) -> Result<Self, ClientError> {
        let (config, source) = resolve(local)?;
        tracing::info!(?source, key_topic = %config.key_topic, "kafka-e2ee client configured");
        let client = Self::with_config(config).await?;
        if let ConfigSource::Injected(path) = source {
            client.follow_trust(path, TRUST_RELOAD);
        }
        Ok(client)
    }

    /// A client configured from the file at `path`, which is re-read every `reload_every` for
    /// its trust settings (`trustedKeys`, `allowPlaintext`), as [`Self::start`] does for an
    /// injected file.
    pub async fn from_file(path: &Path, reload_every: Duration) -> Result<Self, ClientError> {
        let client = Self::with_config(ClientConfig::from_file(path)?).await?;
        client.follow_trust(path.to_owned(), reload_every);
        Ok(client)
    }

    /// Re-reads `path` every `every` and applies its trust settings; stops with the client.
    /// A file that cannot be read or parsed keeps the trust in force (and is logged).
    fn follow_trust(&self, path: PathBuf, every: Duration) {
        let keys = Arc::downgrade(&self.keys);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = keys.upgrade() else { return };
                match ClientConfig::from_file(&path) {
                    Ok(config) => keys.set_trust(config.trust()),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot re-read the client configuration; the trust in force stays")
                    }
                }
            }
        });
    }

    pub async fn with_config(config: ClientConfig) -> Result<Self, ClientError> {
        let kms_metrics = KmsMetrics::default();
        let provider = Resilient::new(
            AnyProvider::from_config(&config.provider).await?,
            ResiliencePolicy::default(),
            kms_metrics.clone(),
        );
        let keys = Arc::new(
            KeyDirectory::start(&config.connection(), &config.key_topic, config.trust()).await?,
        );
        let deks = Arc::new(DekCache::new(
            provider,
            config.crypto_library.engine(),
            config.dek_cache_config(),
        ));
        Ok(Self {
            config,
            keys,
            deks,
            kms_metrics,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn key_directory(&self) -> &Arc<KeyDirectory> {
        &self.keys
    }

    pub fn dek_cache(&self) -> &Arc<DekCache<ClientProvider>> {
        &self.deks
    }

    /// The client's KMS call metrics (`kafka_e2ee_kms_calls_total`, errors, latency by backend
    /// and operation), for the application to register: `client.kms_metrics().register(&mut
    /// registry)` with its prometheus-client `Registry`.
    pub fn kms_metrics(&self) -> &KmsMetrics {
        &self.kms_metrics
    }

    /// A producer with the configuration's `properties` and `producerProperties`.
    pub fn producer(&self) -> Result<EncryptingProducer<ClientProvider>, ProduceError> {
        self.producer_from(self.config.producer_connection().client_config())
    }

    /// A producer from the application's own rdkafka configuration (its bootstrap servers,
    /// security and tuning), sealing with this client's keys.
    pub fn producer_from(
        &self,
        config: rdkafka::ClientConfig,
    ) -> Result<EncryptingProducer<ClientProvider>, ProduceError> {
        self.producer_with_context(config, DefaultClientContext)
    }

    /// [`Self::producer_from`] with the application's rdkafka context (an OAUTHBEARER token
    /// callback, statistics, logging).
    pub fn producer_with_context<C: ClientContext + Clone + 'static>(
        &self,
        config: rdkafka::ClientConfig,
        context: C,
    ) -> Result<EncryptingProducer<ClientProvider, C>, ProduceError> {
        EncryptingProducer::with_context(
            config,
            context,
            Arc::clone(&self.keys),
            Arc::clone(&self.deks),
            ProducerSettings {
                key_wait: self.config.key_wait(),
                ..ProducerSettings::default()
            },
        )
    }

    /// A consumer in group `group_id` with the configuration's `properties` and
    /// `consumerProperties`.
    pub fn consumer(
        &self,
        group_id: &str,
    ) -> Result<DecryptingConsumer<ClientProvider>, ConsumeError> {
        let mut config = self.config.consumer_connection().client_config();
        config.set("group.id", group_id);
        self.consumer_from(config)
    }

    /// A consumer from the application's own rdkafka configuration (its `group.id`,
    /// security and tuning), opening with this client's keys.
    pub fn consumer_from(
        &self,
        config: rdkafka::ClientConfig,
    ) -> Result<DecryptingConsumer<ClientProvider>, ConsumeError> {
        self.consumer_with_context(config, DefaultConsumerContext)
    }

    /// [`Self::consumer_from`] with the application's rdkafka context (an OAUTHBEARER token
    /// callback, rebalance callbacks, statistics).
    pub fn consumer_with_context<C: ConsumerContext + 'static>(
        &self,
        config: rdkafka::ClientConfig,
        context: C,
    ) -> Result<DecryptingConsumer<ClientProvider, C>, ConsumeError> {
        DecryptingConsumer::with_context(
            config,
            context,
            Arc::clone(&self.keys),
            Arc::clone(&self.deks),
            ConsumerSettings {
                key_wait: self.config.key_wait(),
            },
        )
    }
}
