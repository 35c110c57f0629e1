//! The DEK cache: unwrapped data keys, ready to use, so KMS calls scale with key versions and
//! never with records.
//!
//! - **Single-flight:** concurrent misses for one (topic, partition, version) make one provider
//!   call; the others wait for its result.
//! - **Checked:** every unwrapped DEK is verified against the commitment in its EDEK record
//!   before it is cached (a KMS without integrity, such as Hadoop's AES-CTR EEKs, cannot slip a
//!   wrong key in).
//! - **Expiring:** an entry is refetched after `ttl`, so a revoked TEK takes effect without a
//!   restart. A failure is remembered only for `error_ttl` (1 s by default): every caller
//!   waiting on that attempt gets the same typed error, and a KMS outage costs one attempt
//!   sequence per key version per `error_ttl`, however many records are waiting.
//! - **Bounded:** at most `capacity` entries; inserting beyond it evicts the oldest.
//! - **Prefetching:** `prefetch` unwraps a key version before its first use (the next version,
//!   as soon as its EDEK is published), so a rollover never stalls a producer or consumer.
//!
//! Only prepared keys are kept; the plaintext DEK bytes are dropped (and zeroized) right after
//! preparation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::FastMap;
use crate::engine::{EncryptionEngine, EngineError, PreparedKey};
use crate::key_records::EdekRecord;
use crate::provider::{DekContext, KeyProvider, ProviderError};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DekCacheError {
    #[error("could not unwrap the DEK of {topic}/{partition} v{version}")]
    Provider {
        topic: String,
        partition: i32,
        version: u32,
        #[source]
        source: ProviderError,
    },
    /// The provider returned a key that is not the one the EDEK record committed to.
    #[error(
        "the unwrapped DEK of {topic}/{partition} v{version} does not match its commitment (tampered or misplaced EDEK)"
    )]
    CommitmentMismatch {
        topic: String,
        partition: i32,
        version: u32,
    },
    #[error("the DEK of {topic}/{partition} v{version} is unusable")]
    Engine {
        topic: String,
        partition: i32,
        version: u32,
        #[source]
        source: EngineError,
    },
}

/// Entries by topic, then (partition, version): lookups by `&str` never allocate.
type Slots = FastMap<String, FastMap<(i32, u32), Slot>>;

type Outcome = Result<Arc<dyn PreparedKey>, DekCacheError>;

struct Slot {
    created: Instant,
    cell: Arc<OnceCell<Outcome>>,
}

/// Cache settings. The defaults suit a client with a few hundred partitions.
#[derive(Debug, Clone, Copy)]
pub struct DekCacheConfig {
    pub capacity: usize,
    pub ttl: Duration,
    /// How long a failed unwrap is remembered before the next caller asks the provider again.
    pub error_ttl: Duration,
}

impl Default for DekCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            ttl: Duration::from_secs(3600),
            error_ttl: Duration::from_secs(1),
        }
    }
}

pub struct DekCache<P> {
    provider: P,
    engine: Box<dyn EncryptionEngine>,
    config: DekCacheConfig,
    slots: Mutex<Slots>,
}

impl<P: KeyProvider> DekCache<P> {
    pub fn new(provider: P, engine: Box<dyn EncryptionEngine>, config: DekCacheConfig) -> Self {
        Self {
            provider,
            engine,
            config,
            slots: Mutex::new(FastMap::default()),
        }
    }

    /// The prepared DEK of `record`, unwrapping it through the provider on a miss.
    pub async fn get(&self, record: &EdekRecord) -> Result<Arc<dyn PreparedKey>, DekCacheError> {
        let cell = self.slot(record);
        cell.get_or_init(|| self.unwrap_and_check(record))
            .await
            .clone()
    }

    /// The prepared DEK if it is cached, unexpired and already unwrapped; never calls the
    /// provider. The hot path of consumers, which know only the version from a record header.
    pub fn get_cached(
        &self,
        topic: &str,
        partition: i32,
        version: u32,
    ) -> Option<Arc<dyn PreparedKey>> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.get(topic)?.get(&(partition, version))?;
        if slot.created.elapsed() >= self.config.ttl {
            return None;
        }
        slot.cell.get()?.as_ref().ok().map(Arc::clone)
    }

    /// Unwraps `record`'s DEK in the background so that the first record sealed under a new
    /// version does not wait for the KMS. Errors are left for the next `get` to report.
    pub fn prefetch(self: &Arc<Self>, record: EdekRecord)
    where
        P: 'static,
    {
        if self
            .get_cached(&record.topic, record.partition, record.version)
            .is_some()
        {
            return;
        }
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = cache.get(&record).await {
                tracing::debug!(error = %e, "prefetching a DEK failed; the next use retries");
            }
        });
    }

    /// How many entries are cached (including ones still being fetched).
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(FastMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cell for this record's key: the live one, or a fresh one if absent or expired.
    fn slot(&self, record: &EdekRecord) -> Arc<OnceCell<Outcome>> {
        let id = (record.partition, record.version);
        let now = Instant::now();
        // The lock is held only for map bookkeeping, never across the provider call.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let existing = slots.get(record.topic.as_str()).and_then(|t| t.get(&id));
        if let Some(slot) = existing {
            let age = now.duration_since(slot.created);
            let failed = matches!(slot.cell.get(), Some(Err(_)));
            if age < self.config.ttl && !(failed && age >= self.config.error_ttl) {
                return Arc::clone(&slot.cell);
            }
        }
        if existing.is_none()
            && slots.values().map(FastMap::len).sum::<usize>() >= self.config.capacity
        {
            evict_oldest(&mut slots);
        }
        let cell = Arc::new(OnceCell::new());
        slots.entry(record.topic.clone()).or_default().insert(
            id,
            Slot {
                created: now,
                cell: Arc::clone(&cell),
            },
        );
        cell
    }

    async fn unwrap_and_check(
        &self,
        record: &EdekRecord,
    ) -> Result<Arc<dyn PreparedKey>, DekCacheError> {
        let (topic, partition, version) = (record.topic.clone(), record.partition, record.version);
        let context = DekContext {
            topic: &record.topic,
            partition,
            version,
        };
        let dek = self
            .provider
            .unwrap_dek(&record.tek, context, &record.edek)
            .await
            .map_err(|source| DekCacheError::Provider {
                topic: topic.clone(),
                partition,
                version,
                source,
            })?;
        if !record.commitment.verify(&dek, context) {
            return Err(DekCacheError::CommitmentMismatch {
                topic,
                partition,
                version,
            });
        }
        let prepared = self
            .engine
            .prepare(&dek)
            .map_err(|source| DekCacheError::Engine {
                topic,
                partition,
                version,
                source,
            })?;
        Ok(Arc::from(prepared))
    }
}

fn evict_oldest(slots: &mut Slots) {
    let oldest = slots
        .iter()
        .flat_map(|(topic, entries)| entries.iter().map(move |(id, s)| (s.created, topic, *id)))
        .min_by_key(|(created, _, _)| *created)
        .map(|(_, topic, id)| (topic.clone(), id));
    if let Some((topic, id)) = oldest
        && let Some(entries) = slots.get_mut(&topic)
    {
        entries.remove(&id);
        if entries.is_empty() {
            slots.remove(&topic);
        }
    }
}
