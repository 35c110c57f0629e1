//! Drives the signing-key rotation of [`crate::signing_keys`]: loads (or creates) the keys at
//! start, then takes one step at a time when it is due, in the documented order. Each step is
//! stored in the Secret before it takes effect, so a crash between any two is resumed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kafka_e2ee_client::key_directory::Trust;
use kafka_e2ee_client::key_records::{EdekRecord, KeyRecord};
use kafka_e2ee_client::signing::{PublicKey, Signer, TrustedKeys};
use thiserror::Error;
use tokio::sync::watch;

use crate::crash;
use crate::kafka_ops::{KafkaOps, KafkaOpsError, KeyTopic};
use crate::metrics::Metrics;
use crate::signing_keys::{
    KeyRing, KeyStore, RotationSettings, RotationStep, SigningKeysError, next_step,
};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RotationError {
    #[error(transparent)]
    Keys(#[from] SigningKeysError),
    #[error("signing key records again failed")]
    Resign(#[source] KafkaOpsError),
    #[error("the signing keys have no active key")]
    NoActiveKey,
}

/// The keys, where they are stored, and who hears about changes.
pub struct SigningRotation {
    store: KeyStore,
    ring: KeyRing,
    resource_version: String,
    settings: RotationSettings,
    signer: Arc<Signer>,
    published: watch::Sender<Arc<Vec<PublicKey>>>,
}

/// Checked at least this often, whatever is scheduled (a changed Secret, a straggler record).
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// After a failed step.
const RETRY: Duration = Duration::from_secs(10);

impl SigningRotation {
    /// Loads the keys (creating the first on first start) and publishes the trusted ones.
    pub async fn start(store: KeyStore, settings: RotationSettings) -> Result<Self, RotationError> {
        let (ring, resource_version) = store.load_or_create().await?;
        let active = ring.active().ok_or(RotationError::NoActiveKey)?;
        let published = ring.published();
        store.publish(&published).await?;
        let (published, _) = watch::channel(Arc::new(published));
        Ok(Self {
            store,
            ring,
            resource_version,
            settings,
            signer: Arc::new(Signer::new(active)),
            published,
        })
    }

    /// The signer every key-topic writer of this operator uses.
    pub fn signer(&self) -> Arc<Signer> {
        Arc::clone(&self.signer)
    }

    /// What the operator's own reader believes: its published keys; its retired keys' records
    /// are known history.
    pub fn trust(&self) -> Trust {
        Trust {
            keys: TrustedKeys::new(self.ring.published()),
            allow_plaintext: BTreeSet::new(),
            retired: self.ring.retired().collect(),
            topics: None,
        }
    }

    /// The public keys clients must trust, as they change.
    pub fn published(&self) -> watch::Receiver<Arc<Vec<PublicKey>>> {
        self.published.subscribe()
    }

    /// Runs the rotation until the process ends.
    pub async fn run(mut self, kafka: &KafkaOps, metrics: &Metrics) {
        loop {
            let sleep = match self.step(kafka, metrics).await {
                Ok(None) => Duration::ZERO,
                Ok(Some(until)) => until
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
                    .clamp(Duration::from_millis(200), MAX_SLEEP),
                Err(e) => {
                    tracing::warn!(error = %kafka_e2ee_telemetry::chain(&e), "signing-key rotation step failed; retrying");
                    // Someone else may have changed the Secret: start from what it holds.
                    if let Ok((ring, version)) = self.store.load_or_create().await {
                        self.ring = ring;
                        self.resource_version = version;
                    }
                    RETRY
                }
            };
            tokio::time::sleep(sleep).await;
        }
    }

    /// Takes the step due now, if any; returns when to look again (`None`: at once).
    pub async fn step(
        &mut self,
        kafka: &KafkaOps,
        metrics: &Metrics,
    ) -> Result<Option<SystemTime>, RotationError> {
        let active = self.ring.active().ok_or(RotationError::NoActiveKey)?;
        let key_topics = kafka.key_topics.all();
        let others_signed = key_topics
            .iter()
            .any(|t| !t.directory.signed_by_others(active.id()).is_empty());
        let now = SystemTime::now();
        let step = next_step(&self.ring, self.settings, others_signed, now);
        match step {
            RotationStep::Wait(until) => return Ok(Some(until.unwrap_or(now + MAX_SLEEP))),
            RotationStep::Resign => {
                // Alone with the key topic: a policy signed again from what the directory
                // holds must not overwrite one a reconcile is publishing at the same time.
                let _exclusive = kafka.writes.write().await;
                for key_topic in &key_topics {
                    key_topic
                        .read_own_writes()
                        .await
                        .map_err(RotationError::Resign)?;
                    let records = key_topic.directory.signed_by_others(active.id());
                    let count = resign(key_topic, records).await?;
                    metrics.key_records_resigned.inc_by(count as u64);
                }
                crash::point("after-resign");
            }
            RotationStep::Prepare | RotationStep::Activate | RotationStep::Retire(_) => {
                self.ring.apply(step, now)?;
                self.resource_version =
                    self.store.store(&self.ring, &self.resource_version).await?;
                self.took_effect(kafka).await?;
                let point = match step {
                    RotationStep::Prepare => "after-signing-key-prepared",
                    RotationStep::Activate => "after-signing-key-activated",
                    _ => "after-signing-key-retired",
                };
                tracing::info!(?step, keys = ?self.ring.states().iter().map(|(id, state, _)| format!("{id}:{state:?}")).collect::<Vec<_>>(), "signing-key rotation");
                metrics.signing_key_steps.inc();
                crash::point(point);
            }
        }
        Ok(None)
    }

    /// After a stored change: the signer, the operator's reader and everyone else follow.
    async fn took_effect(&self, kafka: &KafkaOps) -> Result<(), RotationError> {
        self.signer
            .set_key(self.ring.active().ok_or(RotationError::NoActiveKey)?);
        kafka.set_trust(self.trust());
        let published = self.ring.published();
        self.store.publish(&published).await?;
        self.published.send_replace(Arc::new(published));
        Ok(())
    }
}

/// Writes every record again, same content, signed by the active key; returns how many.
async fn resign(kafka: &KeyTopic, records: Vec<KeyRecord>) -> Result<usize, RotationError> {
    let total = records.len();
    let mut edeks: Vec<EdekRecord> = Vec::new();
    for record in records {
        match record {
            KeyRecord::Policy(policy) => kafka
                .writer
                .publish_policy(&policy)
                .await
                .map_err(|e| RotationError::Resign(e.into()))?,
            KeyRecord::Edek(edek) => edeks.push(edek),
            KeyRecord::PolicyDeleted { .. } | KeyRecord::EdekDeleted { .. } => {}
        }
    }
    kafka
        .writer
        .publish_edeks(&edeks)
        .await
        .map_err(|e| RotationError::Resign(e.into()))?;
    kafka
        .read_own_writes()
        .await
        .map_err(RotationError::Resign)?;
    tracing::info!(
        records = total,
        key_topic = %kafka.name,
        "key records signed again with the active key"
    );
    Ok(total)
}
