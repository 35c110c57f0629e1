//! `EncryptingProducer`: KIP-317's encrypting producer over rdkafka's `FutureProducer`.
//!
//! Per record: choose the partition (explicit, Java-compatible murmur2 of the key, or round
//! robin), seal headers and value under that partition's current DEK, check the sealed size
//! against the topic's `max.message.bytes`, and enqueue. A topic without a policy record gets
//! an error, never plaintext. Tombstones (null values) stay null but carry an authenticator in
//! their `encryption_key` header (docs/wire-format.md); a tombstone with headers is refused,
//! because its headers would be sent in the clear.
//!
//! Per-partition sealers (`sealing::TopicSealers`, shared with the proxy) are cached and
//! rebuilt only when the key directory changes (an atomic compare per record), so KMS calls and
//! allocations scale with key versions, not records.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig as RdKafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use thiserror::Error;
use tokio::time::Instant;

use crate::dek_cache::{DekCache, DekCacheError};
use crate::kafka::Connect as _;
use crate::kafka::{self, KafkaConnection};
use crate::key_directory::{DEFAULT_KEY_WAIT, KeyDirectory, KeyLookupError};
use crate::nonce::NonceError;
use crate::partitioner::{RoundRobin, partition_for_key};
use crate::provider::KeyProvider;
use crate::record::{Header, KEY_HEADER, PartitionSealer, RecordError, ReusedBuffer};
use crate::sealing::{TopicKeys, TopicSealers};

thread_local! {
    /// Per-thread buffer records are sealed into before librdkafka copies them.
    static SEAL_BUFFER: std::cell::RefCell<ReusedBuffer> = const { std::cell::RefCell::new(ReusedBuffer::new()) };
}

/// Kafka's default `max.message.bytes` (1 MiB + batch overhead), used when the broker does not
/// report the topic's value.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The topic has no policy: it is not encrypted, and this producer never writes plaintext.
    #[error("refusing to produce to {topic}: {source}")]
    NotEncrypted {
        topic: String,
        #[source]
        source: KeyLookupError,
    },
    #[error("no usable key for {topic}/{partition}")]
    KeyLookup {
        topic: String,
        partition: i32,
        #[source]
        source: KeyLookupError,
    },
    #[error(transparent)]
    Key(#[from] DekCacheError),
    #[error(
        "topic {topic} has {partitions} encrypted partitions; partition {partition} is not one of them"
    )]
    UnknownPartition {
        topic: String,
        partition: i32,
        partitions: u32,
    },
    #[error(
        "policy of {topic} does not give partitions 0..{partitions} a key version each; waiting for the operator"
    )]
    IncompletePolicy { topic: String, partitions: usize },
    #[error(
        "record for {topic}/{partition} is {size} bytes sealed, over the topic's max.message.bytes of {limit} (encryption adds at most 48 bytes)"
    )]
    RecordTooLarge {
        topic: String,
        partition: i32,
        size: usize,
        limit: usize,
    },
    #[error("refusing a tombstone with headers on {topic}: its headers would travel unencrypted")]
    TombstoneWithHeaders { topic: String },
    /// The partition's DEK has sealed its maximum; the operator must roll a new version.
    #[error("{topic}/{partition} v{version}: {source}")]
    KeyExhausted {
        topic: String,
        partition: i32,
        version: u32,
        #[source]
        source: NonceError,
    },
    #[error("sealing a record for {topic}/{partition} failed")]
    Seal {
        topic: String,
        partition: i32,
        #[source]
        source: RecordError,
    },
    #[error("could not read the settings of topic {topic}")]
    TopicConfig {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka refused or failed a record for {topic}/{partition}")]
    Kafka {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Connection(#[from] kafka::Error),
}

/// A record as the application hands it over, before encryption.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    /// `None`: chosen from the key (murmur2) or round robin.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub headers: &'a [Header],
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    pub timestamp_ms: Option<i64>,
}

impl<'a> OutgoingRecord<'a> {
    pub fn new(topic: &'a str, value: &'a [u8]) -> Self {
        Self {
            topic,
            partition: None,
            key: None,
            headers: &[],
            value: Some(value),
            timestamp_ms: None,
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A record accepted into the producer queue; await [`Delivery::wait`] for the broker's ack.
pub struct Delivery {
    /// The topic state the record was sealed with: moved here from `send` (no extra reference
    /// count traffic per record), it names the topic in errors.
    state: Arc<TopicKeys>,
    partition: i32,
    inner: DeliveryFuture,
}

impl Delivery {
    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub async fn wait(self) -> Result<Delivered, ProduceError> {
        let failed = |source| ProduceError::Kafka {
            topic: self.state.topic.to_string(),
            partition: self.partition,
            source,
        };
        match self.inner.await {
            Ok(Ok(d)) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((source, _))) => Err(failed(source)),
            Err(_) => Err(failed(KafkaError::Canceled)),
        }
    }
}

/// Producer settings beyond the rdkafka properties of the connection.
#[derive(Debug, Clone, Copy)]
pub struct ProducerSettings {
    /// How long to wait for the key topic (first read, missing EDEKs) before failing.
    pub key_wait: Duration,
    /// How long to wait for room in a full producer queue before failing.
    pub queue_wait: Duration,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            key_wait: DEFAULT_KEY_WAIT,
            queue_wait: Duration::from_secs(30),
        }
    }
}

pub struct EncryptingProducer<P, C: ClientContext + 'static = DefaultClientContext> {
    producer: FutureProducer<C>,
    /// What the producer was made with: its admin client (a topic's `max.message.bytes`)
    /// connects the same way, with the same context (an OAUTHBEARER token callback, say).
    config: RdKafkaConfig,
    context: C,
    sealers: TopicSealers<P>,
    settings: ProducerSettings,
    round_robin: RoundRobin,
}

impl<P: KeyProvider + 'static> EncryptingProducer<P> {
    pub fn new(
        connection: &KafkaConnection,
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ProducerSettings,
    ) -> Result<Self, ProduceError> {
        Self::from_rdkafka(connection.client_config(), keys, deks, settings)
    }

    /// A producer from an rdkafka configuration the application built (bootstrap servers,
    /// security, tuning), as it would make a `FutureProducer`.
    pub fn from_rdkafka(
        config: RdKafkaConfig,
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ProducerSettings,
    ) -> Result<Self, ProduceError> {
        EncryptingProducer::with_context(config, DefaultClientContext, keys, deks, settings)
    }
}

impl<P: KeyProvider + 'static, C: ClientContext + Clone + 'static> EncryptingProducer<P, C> {
    /// [`EncryptingProducer::from_rdkafka`] with the application's own rdkafka context (for
    /// OAUTHBEARER tokens, statistics, logging), used by the producer and its admin client.
    pub fn with_context(
        config: RdKafkaConfig,
        context: C,
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ProducerSettings,
    ) -> Result<Self, ProduceError> {
        let producer = kafka::create_with_context(&config, context.clone(), "encrypting producer")?;
        Ok(Self {
            producer,
            config,
            context,
            sealers: TopicSealers::new(keys, deks, settings.key_wait),
            settings,
            round_robin: RoundRobin::default(),
        })
    }

    /// Encrypts `record` and enqueues it. Returns once it is queued; the returned
    /// [`Delivery`] resolves when the broker acknowledges it.
    ///
    /// In the steady state (topic state current, the partition's sealer built, room in the
    /// queue) nothing here waits: it seals and enqueues synchronously.
    pub async fn send(&self, record: OutgoingRecord<'_>) -> Result<Delivery, ProduceError> {
        let topic = record.topic;
        let state = match self.sealers.current(topic) {
            Some(state) if state.max_message_bytes.get().is_some() => state,
            // Slow paths are boxed so that the future of every `send` stays small: moving a
            // large future costs a memmove per record (docs/performance.md).
            _ => Box::pin(self.rebuild_topic_state(topic)).await?,
        };
        let partition = match (record.partition, record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, state.partitions),
            (None, None) => self.round_robin.next_partition(state.partitions),
        };
        if !(0..state.partitions as i32).contains(&partition) {
            return Err(ProduceError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: state.partitions,
            });
        }

        if record.value.is_none() && !record.headers.is_empty() {
            return Err(ProduceError::TombstoneWithHeaders {
                topic: topic.to_owned(),
            });
        }
        let built;
        let sealer: &PartitionSealer = match state.sealer(partition) {
            Some(sealer) => sealer,
            None => {
                built = Box::pin(self.sealers.build_sealer(&state, topic, partition)).await?;
                &built
            }
        };
        let Some(value) = record.value else {
            // Still null (compaction deletes the key), but authenticated, so that nobody else
            // can delete the application's state on a compacted topic.
            let header = sealer
                .seal_tombstone(record.key)
                .map_err(|source| seal_error(topic, partition, sealer, source))?;
            let out = outgoing(record, partition, None, Some(&header), &state)?;
            return Box::pin(self.enqueue(out, partition, state)).await;
        };
        // Sealed into this thread's reusable buffer: librdkafka copies the bytes while
        // enqueueing, so no allocation per record is needed on our side.
        let queued = SEAL_BUFFER.with_borrow_mut(|reused| {
            let buf = reused.get();
            sealer
                .seal_into(buf, record.key, record.headers, value)
                .map_err(|source| seal_error(topic, partition, sealer, source))?;
            let out = outgoing(
                record,
                partition,
                Some(buf),
                Some(sealer.key_header()),
                &state,
            )?;
            let queued = match self.producer.send_result(out) {
                Ok(inner) => Ok(inner),
                // Keep the sealed bytes and wait for room below, off this buffer.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    Err(buf.clone())
                }
                Err((source, _)) => {
                    return Err(ProduceError::Kafka {
                        topic: topic.to_owned(),
                        partition,
                        source,
                    });
                }
            };
            reused.shrink();
            Ok(queued)
        })?;
        match queued {
            Ok(inner) => Ok(Delivery {
                state,
                partition,
                inner,
            }),
            Err(sealed) => {
                let out = outgoing(
                    record,
                    partition,
                    Some(&sealed),
                    Some(sealer.key_header()),
                    &state,
                )?;
                Box::pin(self.enqueue(out, partition, state)).await
            }
        }
    }

    /// Encrypts, sends and waits for the broker's acknowledgement.
    pub async fn send_and_wait(
        &self,
        record: OutgoingRecord<'_>,
    ) -> Result<Delivered, ProduceError> {
        self.send(record).await?.wait().await
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer
            .flush(timeout)
            .map_err(|source| ProduceError::Kafka {
                topic: String::new(),
                partition: -1,
                source,
            })
    }

    /// Hands the record to librdkafka; waits (bounded) only while its queue is full.
    async fn enqueue(
        &self,
        mut out: FutureRecord<'_, [u8], [u8]>,
        partition: i32,
        state: Arc<TopicKeys>,
    ) -> Result<Delivery, ProduceError> {
        let mut deadline = None;
        loop {
            match self.producer.send_result(out) {
                Ok(inner) => {
                    return Ok(Delivery {
                        state,
                        partition,
                        inner,
                    });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if *deadline
                        .get_or_insert_with(|| Instant::now() + self.settings.queue_wait)
                        > Instant::now() =>
                {
                    out = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((source, _)) => {
                    return Err(ProduceError::Kafka {
                        topic: state.topic.to_string(),
                        partition,
                        source,
                    });
                }
            }
        }
    }

    /// The topic's sealing state, with its `max.message.bytes` read once.
    async fn rebuild_topic_state(&self, topic: &str) -> Result<Arc<TopicKeys>, ProduceError> {
        let state = self.sealers.state(topic).await?;
        if state.max_message_bytes.get().is_none() {
            let limit = self.max_message_bytes(topic).await?;
            let _ = state.max_message_bytes.set(limit);
        }
        Ok(state)
    }

    async fn max_message_bytes(&self, topic: &str) -> Result<usize, ProduceError> {
        let admin: AdminClient<C> =
            kafka::create_with_context(&self.config, self.context.clone(), "admin")?;
        let opts = AdminOptions::new().request_timeout(Some(self.settings.key_wait));
        let results = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await
            .map_err(|source| ProduceError::TopicConfig {
                topic: topic.to_owned(),
                source,
            })?;
        let value = results
            .into_iter()
            .flatten()
            .flat_map(|resource| resource.entries)
            .find(|entry| entry.name == "max.message.bytes")
            .and_then(|entry| entry.value)
            .and_then(|v| v.parse().ok());
        Ok(value.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES))
    }
}

/// The rdkafka record to enqueue, after checking its size against the topic's limit.
fn outgoing<'a>(
    record: OutgoingRecord<'a>,
    partition: i32,
    sealed_value: Option<&'a [u8]>,
    key_header: Option<&[u8]>,
    state: &TopicKeys,
) -> Result<FutureRecord<'a, [u8], [u8]>, ProduceError> {
    let size = wire_size(record.key, sealed_value, key_header);
    let limit = state
        .max_message_bytes
        .get()
        .copied()
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
    if size > limit {
        return Err(ProduceError::RecordTooLarge {
            topic: record.topic.to_owned(),
            partition,
            size,
            limit,
        });
    }
    let mut out: FutureRecord<'a, [u8], [u8]> = FutureRecord::to(record.topic).partition(partition);
    if let Some(key) = record.key {
        out = out.key(key);
    }
    if let Some(value) = sealed_value {
        out = out.payload(value);
    }
    if let Some(header) = key_header {
        out = out.headers(OwnedHeaders::new_with_capacity(1).insert(KafkaHeader {
            key: KEY_HEADER,
            value: Some(header),
        }));
    }
    if let Some(ts) = record.timestamp_ms {
        out = out.timestamp(ts);
    }
    Ok(out)
}

fn seal_error(
    topic: &str,
    partition: i32,
    sealer: &PartitionSealer,
    source: RecordError,
) -> ProduceError {
    match source {
        RecordError::Nonce(source @ NonceError::Exhausted { .. }) => ProduceError::KeyExhausted {
            topic: topic.to_owned(),
            partition,
            version: sealer.dek_version(),
            source,
        },
        source => ProduceError::Seal {
            topic: topic.to_owned(),
            partition,
            source,
        },
    }
}

/// An upper bound of the bytes a single-record batch takes on the wire: the v2 batch header
/// (61), the record's fixed fields and varints (<= 26), key, value and the key header.
pub fn wire_size(key: Option<&[u8]>, value: Option<&[u8]>, key_header: Option<&[u8]>) -> usize {
    const BATCH_HEADER: usize = 61;
    const RECORD_FIXED: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    let header = key_header.map_or(0, |h| 5 + KEY_HEADER.len() + 5 + h.len());
    BATCH_HEADER + RECORD_FIXED + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + header
}
