//! Sealing state shared by every writer of encrypted records (the encrypting producer, the
//! proxy): per topic, the verified policy and one sealer per partition under its current DEK,
//! built on first use and rebuilt only when the key directory changes, so KMS calls and
//! allocations scale with key versions, not records.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::FastMap;
use crate::dek_cache::DekCache;
use crate::key_directory::KeyDirectory;
use crate::key_records::PolicyRecord;
use crate::nonce::{MAX_RECORDS_PER_DEK, NonceSequence};
use crate::producer::ProduceError;
use crate::provider::KeyProvider;
use crate::record::{PartitionSealer, RecordLocation};

/// One topic's keys as of one key-directory generation.
pub struct TopicKeys {
    pub topic: Arc<str>,
    /// Directory generation this state was built from.
    pub generation: u64,
    pub policy: Arc<PolicyRecord>,
    pub partitions: u32,
    /// The topic's `max.message.bytes`, once a writer that checks sizes has read it (carried
    /// over to rebuilt states).
    pub max_message_bytes: OnceLock<usize>,
    /// Current-version sealers by partition, each built on first use; reading one is a
    /// single atomic load.
    sealers: Vec<OnceLock<Arc<PartitionSealer>>>,
}

impl TopicKeys {
    /// The partition's sealer, if built.
    pub fn sealer(&self, partition: i32) -> Option<&Arc<PartitionSealer>> {
        self.sealers.get(usize::try_from(partition).ok()?)?.get()
    }
}

/// The topics' sealing state, from the key directory and the DEK cache.
pub struct TopicSealers<P> {
    keys: Arc<KeyDirectory>,
    deks: Arc<DekCache<P>>,
    /// How long to wait for the key topic (first read, missing EDEKs) before failing.
    key_wait: Duration,
    topics: Mutex<FastMap<String, Arc<TopicKeys>>>,
}

impl<P: KeyProvider + 'static> TopicSealers<P> {
    pub fn new(keys: Arc<KeyDirectory>, deks: Arc<DekCache<P>>, key_wait: Duration) -> Self {
        Self {
            keys,
            deks,
            key_wait,
            topics: Mutex::new(FastMap::default()),
        }
    }

    /// The topic's state, current or rebuilt.
    pub async fn state(&self, topic: &str) -> Result<Arc<TopicKeys>, ProduceError> {
        match self.current(topic) {
            Some(state) => Ok(state),
            None => Box::pin(self.rebuild(topic)).await,
        }
    }

    /// The partition's sealer, cached or built.
    pub async fn sealer(
        &self,
        state: &TopicKeys,
        partition: i32,
    ) -> Result<Arc<PartitionSealer>, ProduceError> {
        match state.sealer(partition) {
            Some(sealer) => Ok(Arc::clone(sealer)),
            None => Box::pin(self.build_sealer(state, &state.topic, partition)).await,
        }
    }

    /// The topic's state if it is built and still matches the key directory.
    pub fn current(&self, topic: &str) -> Option<Arc<TopicKeys>> {
        let generation = self.keys.generation();
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .filter(|state| state.generation == generation)
            .cloned()
    }

    /// The topic's state built afresh from the key directory; callers use it when
    /// [`Self::current`] has none that matches the directory's generation.
    pub async fn rebuild(&self, topic: &str) -> Result<Arc<TopicKeys>, ProduceError> {
        let generation = self.keys.generation();
        // The previous state, however old: its size limit and still-current sealers carry over.
        let cached = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned();
        let policy = self
            .keys
            .policy(topic, self.key_wait)
            .await
            .map_err(|source| ProduceError::NotEncrypted {
                topic: topic.to_owned(),
                source,
            })?;
        let partitions = policy.current_versions.len();
        if !policy
            .current_versions
            .keys()
            .copied()
            .eq(0..partitions as i32)
        {
            return Err(ProduceError::IncompletePolicy {
                topic: topic.to_owned(),
                partitions,
            });
        }
        let max_message_bytes = OnceLock::new();
        if let Some(&known) = cached.as_ref().and_then(|old| old.max_message_bytes.get()) {
            let _ = max_message_bytes.set(known);
        }
        let sealers = still_current(cached.as_deref(), &policy);
        self.prefetch_next_versions(&policy);
        let state = Arc::new(TopicKeys {
            topic: Arc::from(topic),
            generation,
            policy,
            partitions: partitions as u32,
            max_message_bytes,
            sealers,
        });
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), Arc::clone(&state));
        Ok(state)
    }

    /// Starts unwrapping any version newer than the current one that is already published, so
    /// the switch to it does not wait for the KMS.
    fn prefetch_next_versions(&self, policy: &PolicyRecord) {
        for (&partition, &version) in &policy.current_versions {
            if let Some(next) = version
                .checked_add(1)
                .and_then(|v| self.keys.edek_now(&policy.topic, partition, v))
            {
                self.deks.prefetch((*next).clone());
            }
        }
    }

    /// Unwraps the partition's current DEK (through the cache) and builds its sealer.
    pub async fn build_sealer(
        &self,
        state: &TopicKeys,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionSealer>, ProduceError> {
        let version = state
            .policy
            .current_versions
            .get(&partition)
            .copied()
            .ok_or_else(|| ProduceError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: state.partitions,
            })?;
        let edek = self
            .keys
            .edek(topic, partition, version, self.key_wait)
            .await
            .map_err(|source| ProduceError::KeyLookup {
                topic: topic.to_owned(),
                partition,
                source,
            })?;
        let key = self.deks.get(&edek).await?;
        let cap = state
            .policy
            .max_records_per_dek
            .clamp(1, MAX_RECORDS_PER_DEK);
        let nonces = NonceSequence::new(cap).map_err(|source| ProduceError::KeyExhausted {
            topic: topic.to_owned(),
            partition,
            version,
            source,
        })?;
        let sealer = Arc::new(PartitionSealer::new(
            key,
            nonces,
            RecordLocation { topic, partition },
            version,
        ));
        // Two tasks may race to build it; the first one stored wins and both use it.
        let slot = usize::try_from(partition)
            .ok()
            .and_then(|p| state.sealers.get(p))
            .ok_or_else(|| ProduceError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: state.partitions,
            })?;
        Ok(Arc::clone(slot.get_or_init(|| sealer)))
    }
}

/// One slot per partition of `policy`, keeping the old state's sealers whose partition still
/// has the same current version (their nonce counters carry on).
fn still_current(
    old: Option<&TopicKeys>,
    policy: &PolicyRecord,
) -> Vec<OnceLock<Arc<PartitionSealer>>> {
    policy
        .current_versions
        .iter()
        .map(|(&partition, &version)| {
            let slot = OnceLock::new();
            if let Some(sealer) = old
                .and_then(|o| o.sealer(partition))
                .filter(|s| s.dek_version() == version)
            {
                let _ = slot.set(Arc::clone(sealer));
            }
            slot
        })
        .collect()
}
