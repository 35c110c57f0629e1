//! The client's view of the key topic (`__encryption_keys`): every topic's policy and EDEK
//! records, read from the beginning and then followed live.
//!
//! Producers ask it for a topic's policy and a partition's current EDEK; consumers ask for the
//! EDEK a record header names. The operator publishes an EDEK before the policy or records that
//! use it, but a consumer may read a data record before its own view of the key topic has caught
//! up; so lookups wait a bounded time for an entry to arrive, then fail with a typed error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::FastMap;
use crate::kafka::{self, KafkaConnection};
use crate::key_records::{self, EdekRecord, KeyRecord, PolicyRecord};

/// How long producers and consumers wait for the key topic by default: its first read, or an
/// EDEK a record names that has not arrived yet.
pub const DEFAULT_KEY_WAIT: Duration = Duration::from_secs(10);

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

#[derive(Default)]
struct TopicKeys {
    policy: Option<Arc<PolicyRecord>>,
    edeks: FastMap<(i32, u32), Arc<EdekRecord>>,
}

#[derive(Default)]
struct State {
    topics: FastMap<String, TopicKeys>,
    caught_up: bool,
    /// Offset of the last record applied, per key-topic partition.
    applied_through: FastMap<i32, i64>,
}

/// Everything the key topic holds for one topic right now.
#[derive(Debug, Clone, Default)]
pub struct TopicKeysSnapshot {
    pub policy: Option<Arc<PolicyRecord>>,
    /// Every EDEK record, ordered by (partition, version).
    pub edeks: Vec<Arc<EdekRecord>>,
}

/// Counters a caller can export as metrics.
#[derive(Debug, Default)]
pub struct KeyDirectoryStats {
    /// Key-topic records applied.
    pub applied: AtomicU64,
    /// Key-topic records that could not be decoded (and were logged, then ignored: a lookup of
    /// what they would have held fails with a typed error).
    pub malformed: AtomicU64,
}

/// A live, in-memory index of the key topic. Reading stops when it is dropped.
pub struct KeyDirectory {
    key_topic: String,
    /// For the broker's view of the key topic's end (see [`KeyDirectory::policy`]).
    connection: KafkaConnection,
    state: Arc<RwLock<State>>,
    /// Bumped after every applied record; waiters watch it.
    changes: watch::Receiver<u64>,
    /// The same count as a plain atomic: producers compare it on every record.
    generation: Arc<AtomicU64>,
    stats: Arc<KeyDirectoryStats>,
    reader: JoinHandle<()>,
}

impl Drop for KeyDirectory {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl KeyDirectory {
    /// Starts reading `key_topic` from the beginning. Returns at once; lookups wait (bounded)
    /// for the first read to reach the end.
    pub async fn start(
        connection: &KafkaConnection,
        key_topic: &str,
    ) -> Result<Self, KeyDirectoryError> {
        let partitions = key_topic_partitions(connection, key_topic).await?;
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
        let mut assignment = TopicPartitionList::new();
        for &p in &partitions {
            assignment
                .add_partition_offset(key_topic, p, Offset::Beginning)
                .map_err(|source| KeyDirectoryError::Assign {
                    key_topic: key_topic.to_owned(),
                    source,
                })?;
        }
        consumer
            .assign(&assignment)
            .map_err(|source| KeyDirectoryError::Assign {
                key_topic: key_topic.to_owned(),
                source,
            })?;

        let state = Arc::new(RwLock::new(State::default()));
        let stats = Arc::new(KeyDirectoryStats::default());
        let (tx, rx) = watch::channel(0u64);
        let generation = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(read_key_topic(
            consumer,
            key_topic.to_owned(),
            partitions.len(),
            Arc::clone(&state),
            Arc::clone(&stats),
            Bump {
                changes: tx,
                generation: Arc::clone(&generation),
            },
        ));
        Ok(Self {
            key_topic: key_topic.to_owned(),
            connection: connection.clone(),
            state,
            changes: rx,
            generation,
            stats,
            reader,
        })
    }

    pub fn key_topic(&self) -> &str {
        &self.key_topic
    }

    pub fn stats(&self) -> &KeyDirectoryStats {
        &self.stats
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
        let deadline = Instant::now() + wait;
        self.wait_caught_up(wait).await?;
        if let Some(policy) = self.policy_now(topic) {
            return Ok(policy);
        }
        let not_caught_up = || KeyLookupError::NotCaughtUp {
            key_topic: self.key_topic.clone(),
            waited: wait,
        };
        let ends = self
            .current_ends(deadline.saturating_duration_since(Instant::now()))
            .await
            .ok_or_else(not_caught_up)?;
        self.wait_read_through(&ends, deadline.saturating_duration_since(Instant::now()))
            .await
            .map_err(|_| not_caught_up())?;
        self.policy_now(topic)
            .ok_or_else(|| KeyLookupError::NoPolicy {
                topic: topic.to_owned(),
                key_topic: self.key_topic.clone(),
            })
    }

    /// The offset of the last record in each non-empty key-topic partition, as the broker
    /// reports it now; `None` if it cannot be asked within `wait`.
    async fn current_ends(&self, wait: Duration) -> Option<BTreeMap<i32, i64>> {
        let timeout = wait.max(Duration::from_millis(1));
        let marks = key_topic_watermarks(&self.connection, &self.key_topic, timeout)
            .await
            .ok()?;
        Some(
            marks
                .into_iter()
                .filter(|&(_, (low, high))| high > low)
                .map(|(p, (_, high))| (p, high - 1))
                .collect(),
        )
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
        let Some(keys) = state.topics.get(topic) else {
            return TopicKeysSnapshot::default();
        };
        let mut edeks: Vec<Arc<EdekRecord>> = keys.edeks.values().cloned().collect();
        edeks.sort_by_key(|e| (e.partition, e.version));
        TopicKeysSnapshot {
            policy: keys.policy.clone(),
            edeks,
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

async fn key_topic_partitions(
    connection: &KafkaConnection,
    key_topic: &str,
) -> Result<Vec<i32>, KeyDirectoryError> {
    let marks = key_topic_watermarks(connection, key_topic, Duration::from_secs(10)).await?;
    Ok(marks.into_keys().collect())
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

async fn read_key_topic(
    consumer: StreamConsumer<QuietEof>,
    key_topic: String,
    partitions: usize,
    state: Arc<RwLock<State>>,
    stats: Arc<KeyDirectoryStats>,
    generation: Bump,
) {
    let mut at_end = vec![false; partitions];
    loop {
        match consumer.recv().await {
            Ok(message) => {
                let Some(key) = message.key() else {
                    mark_read(&state, &message, &generation);
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%key_topic, offset = message.offset(), "key-topic record without a key ignored");
                    continue;
                };
                match key_records::decode(key, message.payload()) {
                    Ok(record) => {
                        let mut s = state.write().unwrap_or_else(PoisonError::into_inner);
                        apply(&mut s, record);
                        s.applied_through
                            .insert(message.partition(), message.offset());
                        drop(s);
                        stats.applied.fetch_add(1, Ordering::Relaxed);
                        generation.bump();
                    }
                    Err(e) => {
                        mark_read(&state, &message, &generation);
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%key_topic, partition = message.partition(), offset = message.offset(), error = %e, "malformed key-topic record ignored");
                    }
                }
            }
            Err(KafkaError::PartitionEOF(p)) => {
                if let Some(flag) = usize::try_from(p).ok().and_then(|p| at_end.get_mut(p)) {
                    *flag = true;
                }
                if at_end.iter().all(|&f| f) {
                    let mut s = state.write().unwrap_or_else(PoisonError::into_inner);
                    if !s.caught_up {
                        s.caught_up = true;
                        drop(s);
                        tracing::debug!(%key_topic, "key topic read to its end");
                        generation.bump();
                    }
                }
            }
            Err(e) => {
                // librdkafka reconnects by itself; lookups meanwhile time out with typed errors.
                tracing::warn!(%key_topic, error = %e, "reading the key topic failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Records that a message was read even though nothing was applied (read-through waiters
/// must not wait for a malformed record forever).
fn mark_read(state: &RwLock<State>, message: &impl Message, generation: &Bump) {
    state
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .applied_through
        .insert(message.partition(), message.offset());
    generation.bump();
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

fn apply(state: &mut State, record: KeyRecord) {
    match record {
        KeyRecord::Policy(policy) => {
            let topic = policy.topic.clone();
            state.topics.entry(topic).or_default().policy = Some(Arc::new(policy));
        }
        KeyRecord::PolicyDeleted { topic } => {
            if let Some(t) = state.topics.get_mut(&topic) {
                t.policy = None;
            }
        }
        KeyRecord::Edek(edek) => {
            let topic = edek.topic.clone();
            state
                .topics
                .entry(topic)
                .or_default()
                .edeks
                .insert((edek.partition, edek.version), Arc::new(edek));
        }
        KeyRecord::EdekDeleted {
            topic,
            partition,
            version,
        } => {
            if let Some(t) = state.topics.get_mut(&topic) {
                t.edeks.remove(&(partition, version));
            }
        }
    }
}
