//! The operator's Kafka side: topic administration, partition end offsets, and the key topic
//! (its writer and the live directory the plans are made from).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_e2ee_client::kafka::{self, EnsureOutcome, KafkaConnection, TopicSpec};
use kafka_e2ee_client::key_directory::{KeyDirectory, KeyDirectoryError, KeyLookupError, Trust};
use kafka_e2ee_client::key_management::{KeyManagementError, KeyTopicWriter, ensure_key_topic};
use kafka_e2ee_client::signing::Signer;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

/// Broker-side failures; all are worth a retry (the broker may be down or electing).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KafkaOpsError {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(transparent)]
    KeyManagement(#[from] Box<KeyManagementError>),
    #[error(transparent)]
    Directory(#[from] KeyDirectoryError),
    #[error(transparent)]
    Lookup(#[from] KeyLookupError),
    #[error("{op} of topic {topic} failed")]
    Admin {
        op: &'static str,
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("broker refused to {op} topic {topic}: {code}")]
    Refused {
        op: &'static str,
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("a blocking Kafka call did not finish")]
    Blocking,
}

impl From<KeyManagementError> for KafkaOpsError {
    fn from(e: KeyManagementError) -> Self {
        Self::KeyManagement(Box::new(e))
    }
}

/// How long one admin or metadata call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the directory to show our own writes, or to first catch up.
pub const DIRECTORY_WAIT: Duration = Duration::from_secs(30);

pub struct KafkaOps {
    admin: AdminClient<DefaultClientContext>,
    metadata: Arc<BaseConsumer>,
    pub writer: KeyTopicWriter,
    pub directory: KeyDirectory,
    /// Reconciles write key records under the shared half; signing records again after a
    /// signing-key rotation takes the exclusive half (it rewrites what the directory holds,
    /// which must not race a newer record of the same key).
    pub writes: tokio::sync::RwLock<()>,
}

impl KafkaOps {
    /// Connects, creates the key topic if needed and reads it to its end, believing what
    /// `trust` verifies; `signer` signs what it writes, with generations above any read.
    pub async fn connect(
        connection: &KafkaConnection,
        key_topic: &str,
        key_topic_replication: Option<i32>,
        signer: Arc<Signer>,
        trust: Trust,
    ) -> Result<Self, KafkaOpsError> {
        ensure_key_topic(connection, key_topic, key_topic_replication)
            .await
            .map_err(Box::new)?;
        let directory = KeyDirectory::start(connection, key_topic, trust).await?;
        directory.wait_caught_up(DIRECTORY_WAIT).await?;
        signer.observe_generation(directory.max_generation());
        Ok(Self {
            admin: connection.admin()?,
            metadata: Arc::new(connection.metadata_consumer()?),
            writer: KeyTopicWriter::new(connection, key_topic, signer)?,
            directory,
            writes: tokio::sync::RwLock::new(()),
        })
    }

    /// Partition end offsets of `topic`, or `None` if it does not exist.
    pub async fn end_offsets(
        &self,
        topic: &str,
    ) -> Result<Option<BTreeMap<i32, i64>>, KafkaOpsError> {
        let consumer = Arc::clone(&self.metadata);
        let topic = topic.to_owned();
        let marks = tokio::task::spawn_blocking(move || {
            kafka::partition_watermarks(&consumer, &topic, CALL_TIMEOUT)
        })
        .await
        .map_err(|_| KafkaOpsError::Blocking)?;
        match marks {
            Ok(marks) => Ok(Some(
                marks.into_iter().map(|(p, (_, high))| (p, high)).collect(),
            )),
            Err(kafka::Error::TopicNotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<EnsureOutcome, KafkaOpsError> {
        Ok(kafka::ensure_topic(&self.admin, spec, CALL_TIMEOUT).await?)
    }

    pub async fn grow_topic(&self, topic: &str, to: i32) -> Result<(), KafkaOpsError> {
        let count = usize::try_from(to).unwrap_or(0);
        let results = self
            .admin
            .create_partitions([&NewPartitions::new(topic, count)], &options())
            .await
            .map_err(|source| KafkaOpsError::Admin {
                op: "growing partitions",
                topic: topic.to_owned(),
                source,
            })?;
        admin_result(results.into_iter().next(), "grow", topic)
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), KafkaOpsError> {
        let results = self
            .admin
            .delete_topics(&[topic], &options())
            .await
            .map_err(|source| KafkaOpsError::Admin {
                op: "deletion",
                topic: topic.to_owned(),
                source,
            })?;
        match admin_result(results.into_iter().next(), "delete", topic) {
            Err(KafkaOpsError::Refused {
                code: RDKafkaErrorCode::UnknownTopicOrPartition,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// Waits until the directory shows everything this operator wrote.
    pub async fn read_own_writes(&self) -> Result<(), KafkaOpsError> {
        Ok(self
            .directory
            .wait_read_through(&self.writer.written_through(), DIRECTORY_WAIT)
            .await?)
    }
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(CALL_TIMEOUT))
        .request_timeout(Some(CALL_TIMEOUT))
}

fn admin_result(
    result: Option<Result<String, (String, RDKafkaErrorCode)>>,
    op: &'static str,
    topic: &str,
) -> Result<(), KafkaOpsError> {
    match result {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(KafkaOpsError::Refused {
            op,
            topic: topic.to_owned(),
            code,
        }),
        None => Err(KafkaOpsError::Refused {
            op,
            topic: topic.to_owned(),
            code: RDKafkaErrorCode::Unknown,
        }),
    }
}
