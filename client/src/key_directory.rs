//! The client's view of the key topic (`__encryption_keys`): every topic's policy and EDEK
//! records, read from the beginning and then followed live.
//!
//! The key topic is on the broker, which is not trusted. A record is believed only if a key of
//! the reader's [`Trust`] (which comes through the Kubernetes API, never through Kafka) signed
//! it, and only if its generation is newer than what its slot held (`key_state`); everything
//! else is counted, logged by record key, and ignored.
//!
//! Producers ask it for a topic's policy and a partition's current EDEK; consumers ask for the
//! EDEK a record header names. The operator publishes an EDEK before the policy or records that
//! use it, but a consumer may read a data record before its own view of the key topic has caught
//! up; so lookups wait a bounded time for an entry to arrive, then fail with a typed error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::kafka::{self, Connect as _, KafkaConnection};
use crate::key_records::{self, EdekRecord, KeyRecord, PlaintextPolicy, PolicyRecord};
pub use crate::key_state::{MAX_PENDING_REJECTIONS, RejectedKeyRecords};
use crate::key_state::{Outcome, Position, State};
use crate::signing::{KeyId, SIGNATURE_HEADER, SignatureError, ToVerify, Verifier};
pub use kafka_e2ee_core::trust::Trust;

pub use kafka_e2ee_core::config::DEFAULT_KEY_WAIT;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLookupError {
    /// The key topic has not been read to its end yet (broker unreachable or slow).
    #[error("the key topic {key_topic} was not read up to date within {waited:?}")]
    NotCaughtUp { key_topic: String, waited: Duration },
    /// The topic has no policy record: it is not an encrypted topic (or not yet).
    #[error("topic {topic} has no encryption policy in {key_topic}")]
    NoPolicy { topic: String, key_topic: String },
    #[error(
        "no EDEK for {topic}/{partition} version {version} arrived in {key_topic} within {waited:?}"
    )]
    UnknownKey {
        topic: String,
        partition: i32,
        version: u32,
        key_topic: String,
        waited: Duration,
    },
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyDirectoryError {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("failed to create the key-topic reader for {key_topic}")]
    CreateConsumer {
        key_topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to assign the partitions of {key_topic}")]
    Assign {
        key_topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading the metadata of {key_topic} did not finish")]
    MetadataTask { key_topic: String },
}

/// Everything the key topic holds for one topic right now.
#[derive(Debug, Clone, Default)]
pub struct TopicKeysSnapshot {
    pub policy: Option<Arc<PolicyRecord>>,
    /// Every EDEK record, ordered by (partition, version).
    pub edeks: Vec<Arc<EdekRecord>>,
    /// (partition, version) of EDEK record keys the key topic holds only in refused records:
    /// a version the operator must never issue (it would overwrite them).
    pub occupied: std::collections::BTreeSet<(i32, u32)>,
}

/// Counters a caller can export as metrics.
#[derive(Debug, Default)]
pub struct KeyDirectoryStats {
    /// Key-topic records applied.
    pub applied: AtomicU64,
    /// Records of topics this reader does not read, passed over.
    pub skipped: AtomicU64,
    /// Signed records that could not be decoded, and records without a key.
    pub malformed: AtomicU64,
    /// Records without a signature.
    pub unsigned: AtomicU64,
    /// Records with a signature header that does not parse.
    pub malformed_signature: AtomicU64,
    /// Records signed by a key not trusted (forged, or signed by a retired key).
    pub unknown_signer: AtomicU64,
    /// Records signed by a key this reader retired.
    pub retired_signer: AtomicU64,
    /// Records whose signature does not verify (altered).
    pub bad_signature: AtomicU64,
    /// Validly signed records older than what their slot holds (a rollback).
    pub stale_generation: AtomicU64,
}

/// The directory's counters as Prometheus metrics, read at each scrape:
/// `kafka_e2ee_key_records_applied_total` and `kafka_e2ee_key_records_rejected_total{reason}`.
#[derive(Debug, Clone)]
pub struct KeyDirectoryMetrics(Arc<KeyDirectoryStats>);

impl KeyDirectoryMetrics {
    pub fn register(self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl prometheus_client::collector::Collector for KeyDirectoryMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::TypedMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        let applied = ConstCounter::new(self.0.applied.load(Ordering::Relaxed));
        applied.encode(encoder.encode_descriptor(
            "kafka_e2ee_key_records_applied",
            "Verified key-topic records applied to the key directory",
            None,
            ConstCounter::<u64>::TYPE,
        )?)?;
        let mut family = encoder.encode_descriptor(
            "kafka_e2ee_key_records_rejected",
            "Key-topic records refused (unsigned, unknown or retired signer, bad signature, stale generation, malformed), by reason",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for (reason, count) in self.0.rejected() {
            ConstCounter::new(count).encode(family.encode_family(&ReasonLabel { reason })?)?;
        }
        Ok(())
    }
}

impl KeyDirectoryMetrics {
    /// The counters of several directories (one per key topic), summed now: a collector of
    /// a changing set of directories builds one at every scrape.
    pub fn sum<'a>(stats: impl IntoIterator<Item = &'a KeyDirectoryStats>) -> Self {
        let total = KeyDirectoryStats::default();
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        for s in stats {
            for (to, from) in [
                (&total.applied, &s.applied),
                (&total.skipped, &s.skipped),
                (&total.malformed, &s.malformed),
                (&total.unsigned, &s.unsigned),
                (&total.malformed_signature, &s.malformed_signature),
                (&total.unknown_signer, &s.unknown_signer),
                (&total.retired_signer, &s.retired_signer),
                (&total.bad_signature, &s.bad_signature),
                (&total.stale_generation, &s.stale_generation),
            ] {
                add(to, from);
            }
        }
        Self(Arc::new(total))
    }
}

impl KeyDirectoryStats {
    /// Refused records by reason (bounded labels, for a metric).
    pub fn rejected(&self) -> [(&'static str, u64); 7] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("malformed", get(&self.malformed)),
            ("unsigned", get(&self.unsigned)),
            ("malformed_signature", get(&self.malformed_signature)),
            ("unknown_signer", get(&self.unknown_signer)),
            ("retired_signer", get(&self.retired_signer)),
            ("bad_signature", get(&self.bad_signature)),
            ("stale_generation", get(&self.stale_generation)),
        ]
    }

    fn count(&self, reason: &str) {
        let counter = match reason {
            "unsigned" => &self.unsigned,
            "malformed_signature" => &self.malformed_signature,
            "unknown_signer" => &self.unknown_signer,
            "retired_signer" => &self.retired_signer,
            "bad_signature" => &self.bad_signature,
            "stale_generation" => &self.stale_generation,
            _ => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A live, in-memory index of the key topic. Reading stops when it is dropped.
pub struct KeyDirectory {
    key_topic: String,
    /// For the broker's view of the key topic's end (see [`KeyDirectory::policy`]).
    connection: KafkaConnection,
    state: Arc<RwLock<State>>,
    /// Bumped after every batch of records read; waiters watch it.
    changes: watch::Receiver<u64>,
    /// The same count as a plain atomic: producers compare it on every record.
    generation: Arc<AtomicU64>,
    stats: Arc<KeyDirectoryStats>,
    trust: Arc<RwLock<Arc<Trust>>>,
    /// Tells the reader to read the key topic again from its beginning (the trust changed).
    reread: Arc<Notify>,
    bump: Arc<Bump>,
    reader: JoinHandle<()>,
}

impl Drop for KeyDirectory {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl KeyDirectory {
    /// Starts reading `key_topic` from the beginning, believing what `trust` verifies. Returns
    /// at once; lookups wait (bounded) for the first read to reach the end.
    pub async fn start(
        connection: &KafkaConnection,
        key_topic: &str,
        trust: Trust,
    ) -> Result<Self, KeyDirectoryError> {
        let marks = key_topic_watermarks(connection, key_topic, Duration::from_secs(10)).await?;
        let partitions: Vec<i32> = marks.keys().copied().collect();
        // Read to its end once = every record up to the last offset of each partition now.
        let initial_ends = last_offsets(&marks);
        let mut config = connection.client_config();
        // No group: every client reads the whole key topic; nothing is committed.
        config
            .set(
                "group.id",
                format!("kafka-e2ee-keys-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer<QuietEof> =
            config.create_with_context(QuietEof).map_err(|source| {
                KeyDirectoryError::CreateConsumer {
                    key_topic: key_topic.to_owned(),
                    source,
                }
            })?;
        assign_from_beginning(&consumer, key_topic, &partitions).map_err(|source| {
            KeyDirectoryError::Assign {
                key_topic: key_topic.to_owned(),
                source,
            }
        })?;

        let mut state = State::default();
        state.caught_up = initial_ends.is_empty();
        let state = Arc::new(RwLock::new(state));
        let stats = Arc::new(KeyDirectoryStats::default());
        let trust = Arc::new(RwLock::new(Arc::new(trust)));
        let reread = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(0u64);
        let generation = Arc::new(AtomicU64::new(0));
        let bump = Arc::new(Bump {
            changes: tx,
            generation: Arc::clone(&generation),
        });
        let reader = tokio::spawn(
            Reader {
                consumer,
                key_topic: key_topic.to_owned(),
                partitions,
                state: Arc::clone(&state),
                stats: Arc::clone(&stats),
                trust: Arc::clone(&trust),
                reread: Arc::clone(&reread),
                bump: Arc::clone(&bump),
                initial_ends,
            }
            .run(),
        );
        Ok(Self {
            key_topic: key_topic.to_owned(),
            connection: connection.clone(),
            state,
            changes: rx,
            generation,
            stats,
            trust,
            reread,
            bump,
            reader,
        })
    }

    /// The trust in force.
    pub fn trust(&self) -> Arc<Trust> {
        Arc::clone(&self.trust.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the trust (a reloaded configuration, a signing-key rotation). Records signed
    /// by keys no longer trusted are forgotten at once, and the key topic is read again from
    /// its beginning, so records of newly trusted keys that were refused before apply now.
    pub fn set_trust(&self, trust: Trust) {
        let mut current = self.trust.write().unwrap_or_else(PoisonError::into_inner);
        if **current == trust {
            return;
        }
        let keys_changed = current.keys != trust.keys;
        let trusted: BTreeSet<KeyId> = trust.keys.ids().collect();
        *current = Arc::new(trust);
        drop(current);
        if keys_changed {
            self.state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .forget_signers(|k| trusted.contains(&k));
            self.reread.notify_one();
        }
        // Producers rebuild what they derived from the state; waiters look again.
        self.bump.bump();
    }

    /// Whether plaintext records of `topic` pass: only if the trusted configuration names the
    /// topic *and* its verified policy says `Allow`. A key-topic record alone never relaxes
    /// `Reject`, and a topic without a verified policy rejects plaintext.
    pub async fn plaintext_allowed(&self, topic: &str, wait: Duration) -> bool {
        if !self.trust().allow_plaintext.contains(topic) {
            return false;
        }
        matches!(
            self.policy(topic, wait).await,
            Ok(policy) if policy.plaintext == PlaintextPolicy::Allow
        )
    }

    /// The highest generation of any record applied (a restarted operator signs above it).
    pub fn max_generation(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .max_generation
    }

    /// Refused key records of `topic` (counted only once the topic has verified records).
    pub fn rejected(&self, topic: &str) -> RejectedKeyRecords {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .topics
            .get(topic)
            .map(|t| t.rejected.clone())
            .unwrap_or_default()
    }

    /// Every live record not signed by `key`: what must be signed again before another key
    /// can be retired.
    pub fn signed_by_others(&self, key: KeyId) -> Vec<KeyRecord> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for keys in state.topics.values() {
            if let Some(policy) = &keys.policy
                && keys.signer_of_policy().is_some_and(|s| s.signer != key)
            {
                out.push(KeyRecord::Policy((**policy).clone()));
            }
            for edek in keys.edeks.values() {
                if keys
                    .signer_of_edek(edek.partition, edek.version)
                    .is_some_and(|s| s.signer != key)
                {
                    out.push(KeyRecord::Edek((**edek).clone()));
                }
            }
        }
        out
    }

    pub fn key_topic(&self) -> &str {
        &self.key_topic
    }

    pub fn stats(&self) -> &KeyDirectoryStats {
        &self.stats
    }

    /// The directory's counters as Prometheus metrics (register once).
    pub fn metrics(&self) -> KeyDirectoryMetrics {
        KeyDirectoryMetrics(Arc::clone(&self.stats))
    }

    /// A number that changes whenever the directory changes: cheap to compare on a hot path.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Waits (up to `wait`) until the key topic has been read to its end once.
    pub async fn wait_caught_up(&self, wait: Duration) -> Result<(), KeyLookupError> {
        self.wait_for(wait, |s| s.caught_up.then_some(()))
            .await
            .ok_or_else(|| KeyLookupError::NotCaughtUp {
                key_topic: self.key_topic.clone(),
                waited: wait,
            })
    }

    /// `topic`'s policy, once the key topic has been read to its end.
    ///
    /// A policy this reader does not know may have been written after its last fetch (a topic
    /// encrypted a moment ago), so "no policy" is only answered after reading up to the key
    /// topic's end as the broker reports it now: one metadata round trip, on this miss path only.
    pub async fn policy(
        &self,
        topic: &str,
        wait: Duration,
    ) -> Result<Arc<PolicyRecord>, KeyLookupError> {
        self.wait_caught_up(wait).await?;
        if let Some(policy) = self.policy_now(topic) {
            return Ok(policy);
        }
        self.sync(wait).await?;
        self.policy_now(topic)
            .ok_or_else(|| KeyLookupError::NoPolicy {
                topic: topic.to_owned(),
                key_topic: self.key_topic.clone(),
            })
    }

    /// Waits (up to `wait`) until every record the key topic holds now, as the broker reports
    /// its end, has been read: one metadata round trip.
    pub async fn sync(&self, wait: Duration) -> Result<(), KeyLookupError> {
        let deadline = Instant::now() + wait;
        let not_caught_up = || KeyLookupError::NotCaughtUp {
            key_topic: self.key_topic.clone(),
            waited: wait,
        };
        self.wait_caught_up(wait).await?;
        let ends = self
            .current_ends(deadline.saturating_duration_since(Instant::now()))
            .await
            .ok_or_else(not_caught_up)?;
        self.wait_read_through(&ends, deadline.saturating_duration_since(Instant::now()))
            .await
            .map_err(|_| not_caught_up())
    }

    /// The offset of the last record in each non-empty key-topic partition, as the broker
    /// reports it now; `None` if it cannot be asked within `wait`.
    async fn current_ends(&self, wait: Duration) -> Option<BTreeMap<i32, i64>> {
        let timeout = wait.max(Duration::from_millis(1));
        let marks = key_topic_watermarks(&self.connection, &self.key_topic, timeout)
            .await
            .ok()?;
        Some(last_offsets(&marks))
    }

    /// `topic`'s policy as known right now, without waiting.
    pub fn policy_now(&self, topic: &str) -> Option<Arc<PolicyRecord>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.topics.get(topic)?.policy.clone()
    }

    /// The EDEK record of (topic, partition, version), waiting up to `wait` for it to arrive.
    pub async fn edek(
        &self,
        topic: &str,
        partition: i32,
        version: u32,
        wait: Duration,
    ) -> Result<Arc<EdekRecord>, KeyLookupError> {
        self.wait_for(wait, |s| {
            s.topics
                .get(topic)?
                .edeks
                .get(&(partition, version))
                .cloned()
        })
        .await
        .ok_or_else(|| KeyLookupError::UnknownKey {
            topic: topic.to_owned(),
            partition,
            version,
            key_topic: self.key_topic.clone(),
            waited: wait,
        })
    }

    /// Waits (up to `wait`) until every record up to the given offsets (per key-topic
    /// partition, e.g. [`KeyTopicWriter::written_through`]) has been applied: read-your-writes
    /// for the operator.
    ///
    /// [`KeyTopicWriter::written_through`]: crate::key_management::KeyTopicWriter::written_through
    pub async fn wait_read_through(
        &self,
        offsets: &BTreeMap<i32, i64>,
        wait: Duration,
    ) -> Result<(), KeyLookupError> {
        self.wait_for(wait, |s| {
            offsets
                .iter()
                .all(|(p, &o)| s.applied_through.get(p).is_some_and(|&a| a >= o))
                .then_some(())
        })
        .await
        .ok_or_else(|| KeyLookupError::NotCaughtUp {
            key_topic: self.key_topic.clone(),
            waited: wait,
        })
    }

    /// Everything known about `topic` right now.
    pub fn topic_keys(&self, topic: &str) -> TopicKeysSnapshot {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let occupied = state.occupied.get(topic).cloned().unwrap_or_default();
        let Some(keys) = state.topics.get(topic) else {
            return TopicKeysSnapshot {
                occupied,
                ..TopicKeysSnapshot::default()
            };
        };
        let mut edeks: Vec<Arc<EdekRecord>> = keys.edeks.values().cloned().collect();
        edeks.sort_by_key(|e| (e.partition, e.version));
        TopicKeysSnapshot {
            policy: keys.policy.clone(),
            edeks,
            occupied,
        }
    }

    /// Names of every topic with a policy or EDEK records right now.
    pub fn topics(&self) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.topics.keys().cloned().collect()
    }

    /// The EDEK record of (topic, partition, version) if it is known right now.
    pub fn edek_now(&self, topic: &str, partition: i32, version: u32) -> Option<Arc<EdekRecord>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .topics
            .get(topic)?
            .edeks
            .get(&(partition, version))
            .cloned()
    }

    async fn wait_for<T>(
        &self,
        wait: Duration,
        mut find: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + wait;
        let mut changes = self.changes.clone();
        loop {
            // Mark the current generation seen before looking, so no change is missed between.
            changes.borrow_and_update();
            if let Some(found) = find(&self.state.read().unwrap_or_else(PoisonError::into_inner)) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the reader stopped: one last look, then give up.
                _ => return find(&self.state.read().unwrap_or_else(PoisonError::into_inner)),
            }
        }
    }
}

/// librdkafka also reports reaching a partition's end as a client-level error; the reader
/// handles that itself (it is how it knows it caught up), so it is not logged as one.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(%error, reason, "key-topic reader: librdkafka error");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// The offset of the last record of each non-empty partition.
fn last_offsets(marks: &BTreeMap<i32, (i64, i64)>) -> BTreeMap<i32, i64> {
    marks
        .iter()
        .filter(|&(_, &(low, high))| high > low)
        .map(|(&p, &(_, high))| (p, high - 1))
        .collect()
}

/// (low, high) watermarks of every key-topic partition, as the broker reports them now.
async fn key_topic_watermarks(
    connection: &KafkaConnection,
    key_topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, (i64, i64)>, KeyDirectoryError> {
    let connection = connection.clone();
    let topic = key_topic.to_owned();
    // Metadata calls block; keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let consumer = connection.metadata_consumer()?;
        kafka::partition_watermarks(&consumer, &topic, timeout)
    })
    .await
    .map_err(|_| KeyDirectoryError::MetadataTask {
        key_topic: key_topic.to_owned(),
    })?
    .map_err(KeyDirectoryError::from)
}

fn assign_from_beginning(
    consumer: &StreamConsumer<QuietEof>,
    key_topic: &str,
    partitions: &[i32],
) -> Result<(), KafkaError> {
    let mut assignment = TopicPartitionList::new();
    for &p in partitions {
        assignment.add_partition_offset(key_topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)
}

/// The task that reads the key topic into the state.
struct Reader {
    consumer: StreamConsumer<QuietEof>,
    key_topic: String,
    partitions: Vec<i32>,
    state: Arc<RwLock<State>>,
    stats: Arc<KeyDirectoryStats>,
    trust: Arc<RwLock<Arc<Trust>>>,
    reread: Arc<Notify>,
    bump: Arc<Bump>,
    /// Where the key topic ended when reading began: reaching it is being caught up (without
    /// waiting for librdkafka's end-of-partition event, which comes a fetch wait later).
    initial_ends: BTreeMap<i32, i64>,
}

impl Reader {
    async fn run(self) {
        let mut at_end = vec![false; self.partitions.len()];
        // One verifier per trust: it remembers the batches whose signature it checked.
        let mut verifier: Option<(Arc<Trust>, Verifier)> = None;
        loop {
            let received = tokio::select! {
                biased;
                () = self.reread.notified() => {
                    if let Err(e) = assign_from_beginning(&self.consumer, &self.key_topic, &self.partitions) {
                        tracing::warn!(key_topic = %self.key_topic, error = %e, "cannot read the key topic again; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        self.reread.notify_one();
                    }
                    continue;
                }
                received = self.consumer.recv() => received,
            };
            // Everything already fetched is verified together (the signature checks of new
            // batches on several threads) and applied before waiters are woken: one wake-up
            // per batch, not per record.
            let mut drained = vec![received];
            while drained.len() < DRAIN {
                match ready_now(self.consumer.recv()) {
                    Some(received) => drained.push(received),
                    None => break,
                }
            }
            let trust = Arc::clone(&self.trust.read().unwrap_or_else(PoisonError::into_inner));
            let verifier = match &mut verifier {
                Some((for_trust, v)) if Arc::ptr_eq(for_trust, &trust) => v,
                slot => {
                    &mut slot
                        .insert((Arc::clone(&trust), Verifier::new(trust.keys.clone())))
                        .1
                }
            };
            let failed = self.handle_all(&drained, &mut at_end, &trust, verifier);
            drop(drained);
            self.note_caught_up();
            self.bump.bump();
            if failed {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Marks the first read done once every record up to the initial ends has been read.
    fn note_caught_up(&self) {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !s.caught_up
            && self
                .initial_ends
                .iter()
                .all(|(p, &end)| s.applied_through.get(p).is_some_and(|&at| at >= end))
        {
            s.caught_up = true;
            tracing::debug!(key_topic = %self.key_topic, "key topic read to its end");
        }
    }

    /// Handles what the consumer returned, in order; `true` if an error is worth a pause.
    fn handle_all(
        &self,
        received: &[Result<BorrowedMessage<'_>, KafkaError>],
        at_end: &mut [bool],
        trust: &Trust,
        verifier: &mut Verifier,
    ) -> bool {
        // Records of topics this reader does not read are passed over unverified.
        let read = |m: &BorrowedMessage<'_>| trust.reads(m.key().unwrap_or_default());
        let messages: Vec<&BorrowedMessage<'_>> =
            received.iter().flatten().filter(|m| read(m)).collect();
        let headers: Vec<Result<Option<&[u8]>, SignatureError>> =
            messages.iter().map(|m| signature_header(*m)).collect();
        let to_verify: Vec<ToVerify<'_>> = messages
            .iter()
            .zip(&headers)
            .map(|(m, h)| {
                (
                    m.key().unwrap_or_default(),
                    m.payload(),
                    h.clone().ok().flatten(),
                )
            })
            .collect();
        let mut verified = verifier.verify_all(&to_verify).into_iter().zip(headers);
        let mut failed = false;
        for received in received {
            match received {
                Ok(message) if !read(message) => {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    self.state
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .mark_read(Position {
                            partition: message.partition(),
                            offset: message.offset(),
                        });
                }
                Ok(message) => {
                    let Some((outcome, header)) = verified.next() else {
                        break;
                    };
                    // A malformed header list (two signature headers) is refused as such.
                    let outcome = header.and(outcome);
                    self.read(message, outcome, trust);
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    if let Some(flag) = usize::try_from(*p).ok().and_then(|p| at_end.get_mut(p)) {
                        *flag = true;
                    }
                    if at_end.iter().all(|&f| f) {
                        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
                        if !s.caught_up {
                            s.caught_up = true;
                            tracing::debug!(key_topic = %self.key_topic, "key topic read to its end");
                        }
                    }
                }
                Err(e) => {
                    // librdkafka reconnects by itself; lookups meanwhile time out with typed
                    // errors.
                    tracing::warn!(key_topic = %self.key_topic, error = %e, "reading the key topic failed; retrying");
                    failed = true;
                }
            }
        }
        failed
    }

    /// Decodes and applies one record whose signature check gave `verified`; anything refused
    /// is counted and logged by its record key (never its value).
    fn read(
        &self,
        message: &impl Message,
        verified: Result<crate::signing::Signed, SignatureError>,
        trust: &Trust,
    ) {
        let at = Position {
            partition: message.partition(),
            offset: message.offset(),
        };
        let key = message.key().unwrap_or_default();
        // Verified before anything else is looked at: an unsigned record costs no parsing.
        let verified = verified
            .map_err(|e| match e {
                SignatureError::UnknownSigner(k) if trust.retired.contains(&k) => "retired_signer",
                e => e.reason(),
            })
            .and_then(|signed| {
                key_records::decode(key, message.payload())
                    .map(|record| (record, signed))
                    .map_err(|e| {
                        tracing::warn!(key_topic = %self.key_topic, partition = at.partition, offset = at.offset, error = %e, "a signed key-topic record does not decode; ignored");
                        "malformed"
                    })
            });
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let refused = match verified {
            Ok((record, signed)) => match state.ingest(record, signed, at) {
                Outcome::Applied => {
                    self.stats.applied.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Outcome::Repeated => None,
                Outcome::Stale => Some("stale_generation"),
            },
            Err(reason) => Some(reason),
        };
        if let Some(reason) = refused {
            self.stats.count(reason);
            // A retired key's records are this reader's own history, not an attack.
            if reason != "retired_signer" {
                let record_key = String::from_utf8_lossy(key);
                state.reject(&record_key, reason);
                tracing::warn!(key_topic = %self.key_topic, partition = at.partition, offset = at.offset, record_key = %truncated(&record_key), reason, "key-topic record refused");
            }
        }
        state.mark_read(at);
    }
}

/// Records handled between two wake-ups of waiters (and between two yields of the task:
/// verifying them holds its worker thread for a few milliseconds at most).
const DRAIN: usize = 256;

/// The future's output if it is ready without waiting (it is dropped otherwise: only for
/// cancellation-safe futures, such as rdkafka's `recv`).
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// The signature header of a record, if it has exactly one.
fn signature_header(message: &impl Message) -> Result<Option<&[u8]>, SignatureError> {
    let mut found = None;
    if let Some(headers) = message.headers() {
        for h in headers.iter().filter(|h| h.key == SIGNATURE_HEADER) {
            if found.is_some() {
                return Err(SignatureError::DuplicateHeader);
            }
            found = Some(h.value.unwrap_or_default());
        }
    }
    Ok(found)
}

/// A record key for a log line: attackers choose it, so it is cut short.
fn truncated(text: &str) -> &str {
    let end = text.char_indices().nth(120).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// Announces a change to waiters and to [`KeyDirectory::generation`] readers.
struct Bump {
    changes: watch::Sender<u64>,
    generation: Arc<AtomicU64>,
}

impl Bump {
    fn bump(&self) {
        // The atomic first: whoever a waiter wakes sees the new generation too.
        let next = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changes.send_replace(next);
    }
}
