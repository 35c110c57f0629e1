//! The DEK cache: unwrapped data keys, ready to use, so KMS calls scale with key versions and
//! never with records.
//!
//! - **Single-flight:** concurrent misses for one (topic, partition, version) make one provider
//!   call; the others wait for its result.
//! - **Checked:** every unwrapped DEK is verified against the commitment in its EDEK record
//!   before it is cached (a KMS without integrity, such as Hadoop's AES-CTR EEKs, cannot slip a
//!   wrong key in).
//! - **Expiring:** an entry is refetched after `ttl`, so a revoked TEK takes effect without a
//!   restart. A failed unwrap caches nothing: the next `get` asks the provider again.
//! - **Bounded:** at most `capacity` entries; inserting beyond it evicts the oldest.
//!
//! Only prepared keys are kept; the plaintext DEK bytes are dropped (and zeroized) right after
//! preparation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::OnceCell;
use tokio::time::Instant;

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

type Key = (String, i32, u32);

struct Slot {
    created: Instant,
    cell: Arc<OnceCell<Arc<dyn PreparedKey>>>,
}

/// Cache settings. The defaults suit a client with a few hundred partitions.
#[derive(Debug, Clone, Copy)]
pub struct DekCacheConfig {
    pub capacity: usize,
    pub ttl: Duration,
}

impl Default for DekCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            ttl: Duration::from_secs(3600),
        }
    }
}

pub struct DekCache<P> {
    provider: P,
    engine: Box<dyn EncryptionEngine>,
    config: DekCacheConfig,
    slots: Mutex<HashMap<Key, Slot>>,
}

impl<P: KeyProvider> DekCache<P> {
    pub fn new(provider: P, engine: Box<dyn EncryptionEngine>, config: DekCacheConfig) -> Self {
        Self {
            provider,
            engine,
            config,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The prepared DEK of `record`, unwrapping it through the provider on a miss.
    pub async fn get(&self, record: &EdekRecord) -> Result<Arc<dyn PreparedKey>, DekCacheError> {
        let cell = self.slot(record);
        let prepared = cell
            .get_or_try_init(|| self.unwrap_and_check(record))
            .await?;
        Ok(Arc::clone(prepared))
    }

    /// How many entries are cached (including ones still being fetched).
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cell for this record's key: the live one, or a fresh one if absent or expired.
    fn slot(&self, record: &EdekRecord) -> Arc<OnceCell<Arc<dyn PreparedKey>>> {
        let key = (record.topic.clone(), record.partition, record.version);
        let now = Instant::now();
        // The lock is held only for map bookkeeping, never across the provider call.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(&key)
            && now.duration_since(slot.created) < self.config.ttl
        {
            return Arc::clone(&slot.cell);
        }
        if !slots.contains_key(&key) && slots.len() >= self.config.capacity {
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        slots.insert(
            key,
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
