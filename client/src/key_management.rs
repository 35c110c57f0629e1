//! KIP-317's key-management functions, which the operator schedules: generate a DEK per
//! partition through a KeyProvider, publish the EDEK records, and only then publish the policy
//! record that points at them. That order means a client that sees a policy version can always
//! find its EDEK (possibly after a bounded wait), and a crash between the steps leaves at worst
//! unused EDEKs, never a policy pointing at nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use thiserror::Error;
use tokio::time::Instant;

use crate::kafka::Connect as _;
use crate::kafka::{self, EnsureOutcome, KafkaConnection, TopicSpec};
use crate::key_records::{EdekRecord, KeyRecordError, PolicyRecord};
use crate::provider::{DekCommitment, DekContext, KeyProvider, ProviderError};
use crate::signing::{MAX_BATCH, SIGNATURE_HEADER, Signer};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyManagementError {
    #[error("could not generate the DEK of {topic}/{partition} v{version}")]
    Generate {
        topic: String,
        partition: i32,
        version: u32,
        #[source]
        source: ProviderError,
    },
    #[error(transparent)]
    Encode(#[from] KeyRecordError),
    #[error("failed to publish {record_key} to {key_topic}")]
    Publish {
        key_topic: String,
        record_key: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
}

/// The key topic's settings: compacted (the latest record per key is kept for ever), one
/// partition (so a policy is always behind its EDEKs in the log), and never time-deleted.
pub fn key_topic_spec(name: &str, replication: Option<i32>) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions: 1,
        replication,
        config: BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("retention.ms".to_owned(), "-1".to_owned()),
        ]),
    }
}

/// Creates the key topic if it does not exist.
pub async fn ensure_key_topic(
    connection: &KafkaConnection,
    name: &str,
    replication: Option<i32>,
) -> Result<EnsureOutcome, KeyManagementError> {
    let admin = connection.admin()?;
    Ok(kafka::ensure_topic(
        &admin,
        &key_topic_spec(name, replication),
        Duration::from_secs(30),
    )
    .await?)
}

/// Generates one DEK for (topic, partition, version) under `tek` and returns its EDEK record
/// (wrapped DEK and commitment). The plaintext DEK is dropped, zeroized, before returning.
pub async fn generate_edek<P: KeyProvider>(
    provider: &P,
    tek: &str,
    topic: &str,
    partition: i32,
    version: u32,
) -> Result<EdekRecord, KeyManagementError> {
    let context = DekContext {
        topic,
        partition,
        version,
    };
    let (dek, edek) = provider
        .generate_dek(tek, context)
        .await
        .map_err(|source| KeyManagementError::Generate {
            topic: topic.to_owned(),
            partition,
            version,
            source,
        })?;
    Ok(EdekRecord {
        topic: topic.to_owned(),
        partition,
        version,
        tek: tek.to_owned(),
        tek_version: None,
        commitment: DekCommitment::compute(&dek, context),
        edek,
        created_at_ms: now_ms(),
        created_at_offset: None,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Writes key records with `acks=all` and idempotence, each confirmed before the call returns,
/// and each signed ([`Signer`]): readers believe nothing from the key topic that the
/// operator did not sign.
pub struct KeyTopicWriter {
    producer: FutureProducer,
    key_topic: String,
    signer: Arc<Signer>,
    /// Highest acknowledged offset per key-topic partition: a reader that has applied up to
    /// here has seen everything this writer wrote ([`KeyDirectory::wait_read_through`]).
    ///
    /// [`KeyDirectory::wait_read_through`]: crate::key_directory::KeyDirectory::wait_read_through
    written: Mutex<BTreeMap<i32, i64>>,
}

impl KeyTopicWriter {
    pub fn new(
        connection: &KafkaConnection,
        key_topic: &str,
        signer: Arc<Signer>,
    ) -> Result<Self, kafka::Error> {
        let producer = connection
            .client_config()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|source| kafka::Error::CreateClient {
                role: "key-topic producer",
                bootstrap: connection.bootstrap_servers.clone(),
                source,
            })?;
        Ok(Self {
            producer,
            key_topic: key_topic.to_owned(),
            signer,
            written: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn key_topic(&self) -> &str {
        &self.key_topic
    }

    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// Highest acknowledged offset of each key-topic partition this writer wrote to.
    pub fn written_through(&self) -> BTreeMap<i32, i64> {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes every EDEK record and waits until the broker has acknowledged all of them.
    /// They are enqueued together, so the broker sees batches, not one round trip per record,
    /// and signed together (one signature per [`MAX_BATCH`] records).
    pub async fn publish_edeks(&self, records: &[EdekRecord]) -> Result<(), KeyManagementError> {
        let encoded = records
            .iter()
            .map(|r| r.encode().map(|(k, v)| (k, Some(v))))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish(&encoded).await
    }

    /// Publishes the policy. Call it only after every EDEK it names has been published
    /// ([`provision`] does this in order).
    pub async fn publish_policy(&self, policy: &PolicyRecord) -> Result<(), KeyManagementError> {
        let (key, value) = policy.encode()?;
        self.publish(&[(key, Some(value))]).await
    }

    /// Writes a tombstone for each record key (compaction then forgets the entries), signed
    /// like every other record.
    pub async fn tombstones(&self, record_keys: &[String]) -> Result<(), KeyManagementError> {
        let records: Vec<(String, Option<Vec<u8>>)> =
            record_keys.iter().map(|k| (k.clone(), None)).collect();
        self.publish(&records).await
    }

    /// Signs `records` (record key, value or tombstone) in batches, enqueues them all, then
    /// waits for every acknowledgement.
    async fn publish(
        &self,
        records: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), KeyManagementError> {
        let mut pending = Vec::with_capacity(records.len());
        for batch in records.chunks(MAX_BATCH) {
            let to_sign: Vec<(&[u8], Option<&[u8]>)> = batch
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .collect();
            let signatures = self.signer.sign_batch(&to_sign);
            for ((key, value), signature) in batch.iter().zip(&signatures) {
                pending.push((self.enqueue(key, value.as_ref(), signature).await?, key));
            }
        }
        for (delivery, key) in pending {
            self.confirm(delivery, key).await?;
        }
        Ok(())
    }

    async fn enqueue(
        &self,
        key: &str,
        value: Option<&Vec<u8>>,
        signature: &[u8],
    ) -> Result<DeliveryFuture, KeyManagementError> {
        let mut record: FutureRecord<'_, str, Vec<u8>> = FutureRecord::to(&self.key_topic)
            .key(key)
            .headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: SIGNATURE_HEADER,
                value: Some(signature),
            }));
        if let Some(v) = value {
            record = record.payload(v);
        }
        let deadline = Instant::now() + ENQUEUE_TIMEOUT;
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((source, _)) => return Err(self.publish_error(key, source)),
            }
        }
    }

    async fn confirm(&self, delivery: DeliveryFuture, key: &str) -> Result<(), KeyManagementError> {
        match delivery.await {
            Ok(Ok(delivered)) => {
                let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
                let high = written
                    .entry(delivered.partition)
                    .or_insert(delivered.offset);
                *high = (*high).max(delivered.offset);
                Ok(())
            }
            Ok(Err((source, _))) => Err(self.publish_error(key, source)),
            Err(_) => Err(self.publish_error(key, KafkaError::Canceled)),
        }
    }

    fn publish_error(&self, key: &str, source: KafkaError) -> KeyManagementError {
        KeyManagementError::Publish {
            key_topic: self.key_topic.clone(),
            record_key: key.to_owned(),
            source,
        }
    }
}

/// How long to wait for room in the producer queue before failing.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Provisions version `version` of every partition in `partitions`: one DEK each through
/// `provider`, the EDEK records published, then `policy` (with those versions set as
/// current) published. Returns the EDEK records written.
///
/// `version` must be new for every partition named: publishing an existing version again would
/// replace its DEK, and records sealed under the old one would no longer open. The caller (the
/// operator) plans versions from what the key topic already holds.
pub async fn provision<P: KeyProvider>(
    provider: &P,
    writer: &KeyTopicWriter,
    mut policy: PolicyRecord,
    partitions: impl IntoIterator<Item = i32>,
    version: u32,
) -> Result<(PolicyRecord, Vec<EdekRecord>), KeyManagementError> {
    let mut edeks = Vec::new();
    for partition in partitions {
        edeks.push(
            generate_edek(
                provider,
                &policy.provider.tek,
                &policy.topic,
                partition,
                version,
            )
            .await?,
        );
    }
    writer.publish_edeks(&edeks).await?;
    for e in &edeks {
        policy.current_versions.insert(e.partition, e.version);
    }
    writer.publish_policy(&policy).await?;
    Ok((policy, edeks))
}
