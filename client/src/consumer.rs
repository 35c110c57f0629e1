//! `DecryptingConsumer`: KIP-317's decrypting consumer over rdkafka's `StreamConsumer`.
//!
//! Each record is opened with the DEK its `encryption_key` header names, found through the key
//! directory (waiting a bounded time for an EDEK that has not arrived yet) and the DEK cache.
//! The original headers and value are restored exactly.
//!
//! Nothing is skipped silently. A record that cannot be opened (tampered, moved, unknown key,
//! plaintext on a topic whose policy rejects it) is returned as a typed error naming topic,
//! partition and offset, and the consumer rewinds to it: the next `recv` returns the same error
//! until the application calls [`DecryptingConsumer::skip`], or the cause is fixed (a late EDEK
//! arrives, a KMS recovers). Offsets are stored for commit only for records returned
//! successfully or skipped explicitly, so a restart never commits past an unread record.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rdkafka::consumer::{Consumer, ConsumerContext, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig as RdKafkaConfig, Offset};
use thiserror::Error;

use crate::dek_cache::{DekCache, DekCacheError};
use crate::engine::PreparedKey;
use crate::kafka::Connect as _;
use crate::kafka::{self, KafkaConnection};
use crate::key_directory::{DEFAULT_KEY_WAIT, KeyDirectory, KeyLookupError};
use crate::nonce::{NONCE_LEN, SealId};
use crate::provider::KeyProvider;
use crate::record::{self, Header, KEY_HEADER, RecordError, RecordLocation, ReusedBuffer};

/// Where a record is: what every per-record error names (never key bytes or plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for RecordPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The record failed authentication: altered, moved to another topic or partition, its
    /// key or key header swapped, or sealed under another DEK.
    #[error("record {at} failed authentication (tampered, moved, or under another key)")]
    Tampered {
        at: RecordPosition,
        #[source]
        source: RecordError,
    },
    /// The record's `encryption_key` header or layout is not something this client reads.
    #[error("record {at} is malformed")]
    Malformed {
        at: RecordPosition,
        #[source]
        source: RecordError,
    },
    /// An encrypted record carries headers outside the encryption, which nobody authenticated.
    #[error("record {at} carries {count} unencrypted header(s) beside {KEY_HEADER}")]
    UnauthenticatedHeaders { at: RecordPosition, count: usize },
    #[error("record {at} names DEK version {version}, which is not known")]
    UnknownKey {
        at: RecordPosition,
        version: u32,
        #[source]
        source: KeyLookupError,
    },
    #[error("record {at}: its DEK could not be obtained")]
    KeyUnavailable {
        at: RecordPosition,
        #[source]
        source: Box<DekCacheError>,
    },
    /// A plaintext record on a topic whose policy rejects plaintext (or that has no policy).
    #[error("record {at} is plaintext, which the topic's policy rejects")]
    PlaintextRejected { at: RecordPosition },
    /// A tombstone without the producer's authenticator on a topic that rejects plaintext:
    /// anyone who can write to the topic could have made it.
    #[error("record {at} is a tombstone nobody authenticated, which the topic's policy rejects")]
    UnauthenticatedTombstone { at: RecordPosition },
    #[error("the Kafka consumer failed")]
    Kafka(#[source] KafkaError),
    #[error(transparent)]
    Connection(#[from] kafka::Error),
}

impl ConsumeError {
    /// The record this error concerns, if it concerns one.
    pub fn position(&self) -> Option<&RecordPosition> {
        match self {
            Self::Tampered { at, .. }
            | Self::Malformed { at, .. }
            | Self::UnauthenticatedHeaders { at, .. }
            | Self::UnknownKey { at, .. }
            | Self::KeyUnavailable { at, .. }
            | Self::PlaintextRejected { at }
            | Self::UnauthenticatedTombstone { at } => Some(at),
            Self::Kafka(_) | Self::Connection(_) => None,
        }
    }
}

/// A record as the producing application sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// True when the producer sealed the record (or, for a tombstone, authenticated it);
    /// false for plaintext passed through on a topic that allows it.
    pub was_encrypted: bool,
    /// Which sealing made the record (its authenticated nonce), for applications that flag
    /// duplicates: a sealed record copied to a new offset opens again, with the same id
    /// (docs/security.md, "Replays").
    pub seal_id: Option<SealId>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// How long to wait for the key topic to deliver an EDEK a record names.
    pub key_wait: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            key_wait: DEFAULT_KEY_WAIT,
        }
    }
}

thread_local! {
    /// Per-thread buffer records are decrypted in; only the value is copied out. It holds
    /// plaintext between records, so it is wiped when dropped or replaced.
    static OPEN_BUFFER: std::cell::RefCell<ReusedBuffer> = const { std::cell::RefCell::new(ReusedBuffer::new()) };
}

/// The seal id of an opened record or tombstone (its first bytes are the nonce).
fn seal_id_of(sealed: &[u8]) -> Option<SealId> {
    sealed
        .get(..NONCE_LEN)
        .and_then(|n| <&[u8; NONCE_LEN]>::try_from(n).ok())
        .map(SealId::of_nonce)
}

/// What `open_with` must be given before it can finish a record.
enum Need {
    /// The DEK of this version of the record's partition.
    Key(u32),
    /// Whether the topic's policy lets plaintext through.
    Policy,
}

/// What has been fetched for the record being opened.
#[derive(Default)]
struct Known {
    key: Option<Arc<dyn PreparedKey>>,
    plaintext_allowed: Option<bool>,
}

/// A record that opened (or plaintext its topic allows), borrowed for the call of
/// [`RecordOpener::open_then`] that receives it: the value may still be in the buffer it was
/// decrypted in.
pub struct Opened<'a, R: ?Sized> {
    /// The record as read from Kafka.
    pub record: &'a R,
    headers: OpenedHeaders<'a>,
    /// The original value; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// Which sealing made it; `None` for plaintext passed through.
    pub seal_id: Option<SealId>,
}

/// Where an opened record's original headers are.
enum OpenedHeaders<'a> {
    /// Plaintext: the record's own headers are the original ones.
    Record,
    /// Sealed in the frame.
    Frame(record::Frame<'a>),
    /// An authenticated tombstone has none.
    None,
}

impl<R: IncomingRecord + ?Sized> Opened<'_, R> {
    /// True when the producer sealed the record (or, for a tombstone, authenticated it).
    pub fn was_encrypted(&self) -> bool {
        self.seal_id.is_some()
    }

    /// The original headers, owned.
    pub fn headers(&self) -> Vec<Header> {
        match &self.headers {
            OpenedHeaders::Record => {
                let mut headers = Vec::new();
                self.record.for_each_header(&mut |key, value| {
                    headers.push(Header {
                        key: key.to_owned(),
                        value: value.map(<[u8]>::to_vec),
                    });
                });
                headers
            }
            OpenedHeaders::Frame(frame) => frame.to_headers(),
            OpenedHeaders::None => Vec::new(),
        }
    }

    /// The record, owned.
    pub fn to_consumed(&self) -> ConsumedRecord {
        ConsumedRecord {
            topic: self.record.topic().to_owned(),
            partition: self.record.partition(),
            offset: self.record.offset(),
            timestamp_ms: self.record.timestamp_ms(),
            key: self.record.key().map(<[u8]>::to_vec),
            headers: self.headers(),
            value: self.value.map(<[u8]>::to_vec),
            was_encrypted: self.was_encrypted(),
            seal_id: self.seal_id,
        }
    }
}

/// A record as read from Kafka, before opening: what [`RecordOpener`] needs of it, whoever
/// read it (rdkafka here, the proxy's own Fetch decoding there).
pub trait IncomingRecord {
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn timestamp_ms(&self) -> Option<i64>;
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    /// Calls `each` with every header, in order.
    fn for_each_header<'a>(&'a self, each: &mut dyn FnMut(&'a str, Option<&'a [u8]>));
}

impl IncomingRecord for BorrowedMessage<'_> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }
    fn partition(&self) -> i32 {
        Message::partition(self)
    }
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn timestamp_ms(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }
    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }
    fn for_each_header<'a>(&'a self, each: &mut dyn FnMut(&'a str, Option<&'a [u8]>)) {
        if let Some(headers) = Message::headers(self) {
            for h in headers.iter() {
                each(h.key, h.value);
            }
        }
    }
}

/// Opens records: the one decrypting path, shared by [`DecryptingConsumer`] and the proxy.
pub struct RecordOpener<P> {
    keys: Arc<KeyDirectory>,
    deks: Arc<DekCache<P>>,
    settings: ConsumerSettings,
}

pub struct DecryptingConsumer<P, C: ConsumerContext + 'static = DefaultConsumerContext> {
    consumer: StreamConsumer<C>,
    opener: RecordOpener<P>,
}

impl<P: KeyProvider + 'static> DecryptingConsumer<P> {
    /// A consumer in consumer group `group_id`. The connection's properties apply, except that
    /// offsets are stored only for records returned or skipped (`enable.auto.offset.store`).
    pub fn new(
        connection: &KafkaConnection,
        group_id: &str,
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ConsumerSettings,
    ) -> Result<Self, ConsumeError> {
        let mut config = connection.client_config();
        config.set("group.id", group_id);
        Self::from_rdkafka(config, keys, deks, settings)
    }

    /// A consumer from an rdkafka configuration the application built (its `group.id`,
    /// security, tuning), as it would make a `StreamConsumer`; offsets are stored only for
    /// records returned or skipped (`enable.auto.offset.store` is set to false).
    pub fn from_rdkafka(
        config: RdKafkaConfig,
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ConsumerSettings,
    ) -> Result<Self, ConsumeError> {
        DecryptingConsumer::with_context(config, DefaultConsumerContext, keys, deks, settings)
    }
}

impl<P: KeyProvider + 'static, C: ConsumerContext + 'static> DecryptingConsumer<P, C> {
    /// [`DecryptingConsumer::from_rdkafka`] with the application's own rdkafka context (for
    /// OAUTHBEARER tokens, rebalance callbacks, statistics).
    pub fn with_context(
        mut config: RdKafkaConfig,
        context: C,
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ConsumerSettings,
    ) -> Result<Self, ConsumeError> {
        config.set("enable.auto.offset.store", "false");
        let consumer = kafka::create_with_context(&config, context, "decrypting consumer")?;
        Ok(Self {
            consumer,
            opener: RecordOpener::new(keys, deks, settings),
        })
    }

    /// The records, opened, as a `futures::Stream` (each item what [`Self::recv`] returns;
    /// after an error the stream stays at that record until [`Self::skip`]). It never ends.
    pub fn stream(&self) -> impl Stream<Item = Result<ConsumedRecord, ConsumeError>> + '_ {
        futures::stream::unfold(self, |consumer| async move {
            Some((consumer.recv().await, consumer))
        })
    }

    pub fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumeError> {
        self.consumer.subscribe(topics).map_err(ConsumeError::Kafka)
    }

    /// The underlying rdkafka consumer, for assignment, commits and metadata.
    pub fn inner(&self) -> &StreamConsumer<C> {
        &self.consumer
    }

    /// The next record, decrypted. On a per-record error the consumer stays at that record.
    pub async fn recv(&self) -> Result<ConsumedRecord, ConsumeError> {
        let message = self.consumer.recv().await.map_err(ConsumeError::Kafka)?;
        match self.opener.open(&message).await {
            Ok(record) => {
                if let Err(e) = self.consumer.store_offset_from_message(&message) {
                    // Revoked in a rebalance meanwhile: the new owner reads it again.
                    tracing::debug!(error = %e, "could not store an offset");
                }
                Ok(record)
            }
            Err(err) => {
                if let Some(at) = err.position() {
                    self.rewind(at);
                }
                Err(err)
            }
        }
    }

    /// Moves past the record `at` (after an error the application has dealt with) and marks
    /// it consumed for the next commit.
    pub fn skip(&self, at: &RecordPosition) -> Result<(), ConsumeError> {
        self.consumer
            .seek(
                &at.topic,
                at.partition,
                Offset::Offset(at.offset + 1),
                Duration::ZERO,
            )
            .map_err(ConsumeError::Kafka)?;
        self.consumer
            .store_offset(&at.topic, at.partition, at.offset)
            .map_err(ConsumeError::Kafka)
    }

    fn rewind(&self, at: &RecordPosition) {
        if let Err(e) = self.consumer.seek(
            &at.topic,
            at.partition,
            Offset::Offset(at.offset),
            Duration::ZERO,
        ) {
            tracing::warn!(record = %at, error = %e, "could not rewind to a failed record");
        }
    }
}

impl<P: KeyProvider + 'static> RecordOpener<P> {
    pub fn new(
        keys: Arc<KeyDirectory>,
        deks: Arc<DekCache<P>>,
        settings: ConsumerSettings,
    ) -> Self {
        Self {
            keys,
            deks,
            settings,
        }
    }

    /// Opens `record`: its original headers and value, or a typed error naming where it is.
    pub async fn open(
        &self,
        record: &(impl IncomingRecord + ?Sized),
    ) -> Result<ConsumedRecord, ConsumeError> {
        self.open_then(record, |opened| opened.to_consumed()).await
    }

    /// Opens `record` and hands the result, borrowed (the value where it was decrypted), to
    /// `read`: for callers that need less than an owned [`ConsumedRecord`] (verify counts,
    /// and copies nothing). The steady state (DEK cached) opens synchronously; only a record
    /// that needs a key fetched or the topic's policy read takes the (boxed, so that the
    /// future of every call stays small) waiting path.
    pub async fn open_then<R: IncomingRecord + ?Sized, T>(
        &self,
        record: &R,
        mut read: impl FnMut(Opened<'_, R>) -> T,
    ) -> Result<T, ConsumeError> {
        match self.open_with(record, &Known::default(), &mut read) {
            Ok(opened) => opened,
            Err(need) => Box::pin(self.open_waiting(record, need, &mut read)).await,
        }
    }

    /// Opens `message` after fetching what [`Self::open_with`] said it needs: a DEK that is
    /// not cached or, for a plaintext record, the topic's policy.
    async fn open_waiting<R: IncomingRecord + ?Sized, T>(
        &self,
        message: &R,
        mut need: Need,
        read: &mut impl FnMut(Opened<'_, R>) -> T,
    ) -> Result<T, ConsumeError> {
        let at = || RecordPosition {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let mut known = Known::default();
        loop {
            match need {
                Need::Key(version) => {
                    let location = RecordLocation {
                        topic: message.topic(),
                        partition: message.partition(),
                    };
                    known.key = Some(self.dek(location, version, at).await?);
                }
                Need::Policy => {
                    known.plaintext_allowed = Some(self.plaintext_allowed(message.topic()).await);
                }
            }
            match self.open_with(message, &known, read) {
                Ok(result) => return result,
                Err(next) => need = next,
            }
        }
    }

    /// Everything of opening that needs no waiting; `Err(Need)` says what to fetch first.
    /// Nothing is allocated on the success path: `read` gets the record borrowed.
    fn open_with<R: IncomingRecord + ?Sized, T>(
        &self,
        message: &R,
        known: &Known,
        read: &mut impl FnMut(Opened<'_, R>) -> T,
    ) -> Result<Result<T, ConsumeError>, Need> {
        let topic = message.topic();
        // Built only for an error.
        let at = || RecordPosition {
            topic: topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let mut key_header = None;
        let mut key_headers = 0;
        let mut others = 0;
        message.for_each_header(&mut |key, value| {
            if key == KEY_HEADER {
                key_headers += 1;
                key_header = value;
            } else {
                others += 1;
            }
        });
        let malformed = |source| ConsumeError::Malformed { at: at(), source };
        match (key_headers, message.payload()) {
            // Unsealed: plaintext, or a tombstone nobody authenticated. Either passes only
            // where the trusted configuration and the verified policy both allow plaintext
            // (on a compacted topic, an unauthenticated tombstone would delete state).
            (0, value) => match known.plaintext_allowed {
                None => Err(Need::Policy),
                Some(true) => Ok(Ok(read(Opened {
                    record: message,
                    headers: OpenedHeaders::Record,
                    value,
                    seal_id: None,
                }))),
                Some(false) if value.is_none() && others == 0 => {
                    Ok(Err(ConsumeError::UnauthenticatedTombstone { at: at() }))
                }
                Some(false) => Ok(Err(ConsumeError::PlaintextRejected { at: at() })),
            },
            (1, payload) => {
                if others > 0 {
                    return Ok(Err(ConsumeError::UnauthenticatedHeaders {
                        at: at(),
                        count: others,
                    }));
                }
                let Some(header) = key_header else {
                    return Ok(Err(malformed(RecordError::MalformedKeyHeader)));
                };
                let parsed = match payload {
                    Some(_) => record::decode_key_header(header).map(|v| (v, None)),
                    None => record::decode_tombstone_header(header).map(|(v, a)| (v, Some(a))),
                };
                let (version, tombstone) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => return Ok(Err(malformed(e))),
                };
                let location = RecordLocation {
                    topic,
                    partition: message.partition(),
                };
                let key = match &known.key {
                    Some(key) => Arc::clone(key),
                    None => self
                        .deks
                        .get_cached(topic, location.partition, version)
                        .ok_or(Need::Key(version))?,
                };
                let tampered = |source| match source {
                    RecordError::Authentication
                    | RecordError::TooShort { .. }
                    | RecordError::MalformedFrame(_) => ConsumeError::Tampered { at: at(), source },
                    source => malformed(source),
                };
                let (Some(sealed), None) = (payload, tombstone) else {
                    let authenticator = tombstone.unwrap_or_default();
                    return Ok(record::open_tombstone(
                        key.as_ref(),
                        location,
                        version,
                        message.key(),
                        authenticator,
                    )
                    .map(|()| {
                        read(Opened {
                            record: message,
                            headers: OpenedHeaders::None,
                            value: None,
                            seal_id: seal_id_of(authenticator),
                        })
                    })
                    .map_err(tampered));
                };
                Ok(OPEN_BUFFER.with_borrow_mut(|reused| {
                    let opened = record::open_frame(
                        key.as_ref(),
                        location,
                        version,
                        message.key(),
                        sealed,
                        reused.get(),
                    )
                    .map(|frame| {
                        read(Opened {
                            record: message,
                            headers: OpenedHeaders::Frame(frame),
                            value: Some(frame.value()),
                            seal_id: seal_id_of(sealed),
                        })
                    })
                    .map_err(tampered);
                    reused.shrink();
                    opened
                }))
            }
            (n, _) => Ok(Err(malformed(RecordError::DuplicateKeyHeader(n)))),
        }
    }

    /// Plaintext passes only where the trusted configuration lists the topic and its verified
    /// policy says `Allow`; a topic without a policy (or whose policy cannot be read) is
    /// treated as `Reject`.
    async fn plaintext_allowed(&self, topic: &str) -> bool {
        self.keys
            .plaintext_allowed(topic, self.settings.key_wait)
            .await
    }

    async fn dek(
        &self,
        location: RecordLocation<'_>,
        version: u32,
        at: impl Fn() -> RecordPosition,
    ) -> Result<Arc<dyn PreparedKey>, ConsumeError> {
        let RecordLocation { topic, partition } = location;
        let edek = self
            .keys
            .edek(topic, partition, version, self.settings.key_wait)
            .await
            .map_err(|source| ConsumeError::UnknownKey {
                at: at(),
                version,
                source,
            })?;
        let key = self
            .deks
            .get(&edek)
            .await
            .map_err(|source| ConsumeError::KeyUnavailable {
                at: at(),
                source: Box::new(source),
            })?;
        // Producers move to the next version soon after it is published: have it ready.
        if let Some(next) = version
            .checked_add(1)
            .and_then(|v| self.keys.edek_now(topic, partition, v))
        {
            self.deks.prefetch((*next).clone());
        }
        Ok(key)
    }
}
