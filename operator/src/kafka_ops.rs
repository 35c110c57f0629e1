//! The operator's Kafka side: topic administration, partition end offsets, and the key topics
//! (one shared, or one per namespace; each with its writer and the live directory the plans
//! are made from).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_e2ee_client::kafka::Connect as _;
use kafka_e2ee_client::kafka::{self, EnsureOutcome, KafkaConnection, TopicSpec};
use kafka_e2ee_client::key_directory::{
    KeyDirectory, KeyDirectoryError, KeyDirectoryMetrics, KeyLookupError, Trust,
};
use kafka_e2ee_client::key_management::{KeyManagementError, KeyTopicWriter, ensure_key_topic};
use kafka_e2ee_client::signing::Signer;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

use crate::watermarks::{Marks, Watermarks, WatermarksError};

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
    #[error(transparent)]
    Watermarks(#[from] Box<WatermarksError>),
    #[error(
        "topic {topic} was created by someone else meanwhile, with {found:?} partitions: planning again"
    )]
    TopicAppeared { topic: String, found: Option<usize> },
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

/// Stands for the namespace in a key-topic template.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

/// Which key topic holds a namespace's key records: one shared by all, or one per namespace
/// (so that Kafka ACLs can give each tenant's principals only its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTopicNames {
    Shared(String),
    /// A name with `{namespace}` in it.
    PerNamespace(String),
}

impl KeyTopicNames {
    pub fn for_namespace(&self, namespace: &str) -> String {
        match self {
            Self::Shared(name) => name.clone(),
            Self::PerNamespace(template) => template.replace(NAMESPACE_PLACEHOLDER, namespace),
        }
    }

    /// Whether `topic` is one of these key topics (existing ones are opened at start).
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Shared(name) => topic == name,
            Self::PerNamespace(template) => {
                let (before, after) = template
                    .split_once(NAMESPACE_PLACEHOLDER)
                    .unwrap_or((template, ""));
                topic.len() > before.len() + after.len()
                    && topic.starts_with(before)
                    && topic.ends_with(after)
            }
        }
    }
}

/// One key topic: the writer of the operator's records and the live directory the plans are
/// made from.
pub struct KeyTopic {
    pub name: String,
    pub writer: KeyTopicWriter,
    pub directory: KeyDirectory,
}

impl KeyTopic {
    /// Waits until the directory shows everything this operator wrote.
    pub async fn read_own_writes(&self) -> Result<(), KafkaOpsError> {
        Ok(self
            .directory
            .wait_read_through(&self.writer.written_through(), DIRECTORY_WAIT)
            .await?)
    }
}

/// The Kafka side of one EncryptedTopic: the cluster, and its namespace's key topic.
#[derive(Clone, Copy)]
pub struct TopicKafka<'a> {
    pub ops: &'a KafkaOps,
    pub keys: &'a KeyTopic,
}

/// The key topics opened so far, shared with the metrics collector.
#[derive(Default)]
pub struct KeyTopics {
    open: std::sync::RwLock<BTreeMap<String, Arc<KeyTopic>>>,
}

impl KeyTopics {
    pub fn all(&self) -> Vec<Arc<KeyTopic>> {
        self.open
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn get(&self, name: &str) -> Option<Arc<KeyTopic>> {
        self.open
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn insert(&self, topic: Arc<KeyTopic>) {
        self.open
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.name.clone(), topic);
    }
}

/// Every open key topic's directory counters, summed at each scrape.
pub struct KeyTopicsMetrics(pub Arc<KeyTopics>);

impl std::fmt::Debug for KeyTopicsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyTopicsMetrics")
    }
}

impl prometheus_client::collector::Collector for KeyTopicsMetrics {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let open = self.0.all();
        let sum = KeyDirectoryMetrics::sum(open.iter().map(|t| t.directory.stats()));
        prometheus_client::collector::Collector::encode(&sum, encoder)
    }
}

/// How the operator reads partition offsets (for rollover by count and pruning).
pub struct OffsetReads {
    /// How old a read may be when a reconcile takes its offsets.
    pub max_age: Duration,
    /// Counts the reads (each covers every topic).
    pub reads: prometheus_client::metrics::counter::Counter,
}

pub struct KafkaOps {
    admin: AdminClient<DefaultClientContext>,
    metadata: Arc<BaseConsumer>,
    watermarks: Watermarks,
    connection: KafkaConnection,
    names: KeyTopicNames,
    replication: Option<i32>,
    signer: Arc<Signer>,
    /// What every key-topic reader believes (a signing-key rotation changes it).
    trust: std::sync::RwLock<Trust>,
    pub key_topics: Arc<KeyTopics>,
    /// Serializes opening a key topic (two reconciles of one new namespace open it once).
    opening: tokio::sync::Mutex<()>,
    /// Reconciles write key records under the shared half; signing records again after a
    /// signing-key rotation takes the exclusive half (it rewrites what the directory holds,
    /// which must not race a newer record of the same key).
    pub writes: tokio::sync::RwLock<()>,
}

impl KafkaOps {
    /// Connects and opens the key topics that exist (the shared one is created if needed),
    /// each read to its end believing what `trust` verifies; `signer` signs what the
    /// operator writes, with generations above any read.
    pub async fn connect(
        connection: &KafkaConnection,
        names: KeyTopicNames,
        replication: Option<i32>,
        signer: Arc<Signer>,
        trust: Trust,
        key_topics: Arc<KeyTopics>,
        offsets: OffsetReads,
    ) -> Result<Self, KafkaOpsError> {
        let metadata = Arc::new(connection.metadata_consumer()?);
        let ops = Self {
            admin: connection.admin()?,
            watermarks: Watermarks::new(
                Arc::clone(&metadata),
                offsets.max_age,
                CALL_TIMEOUT,
                offsets.reads,
            ),
            metadata,
            connection: connection.clone(),
            names,
            replication,
            signer,
            trust: std::sync::RwLock::new(trust),
            key_topics,
            opening: tokio::sync::Mutex::new(()),
            writes: tokio::sync::RwLock::new(()),
        };
        // Every key topic there is, so that a signing-key rotation re-signs their records
        // before it retires a key (not only those of namespaces reconciled since).
        let existing = match &ops.names {
            KeyTopicNames::Shared(name) => vec![name.clone()],
            KeyTopicNames::PerNamespace(_) => ops.existing_key_topics().await?,
        };
        for name in existing {
            ops.open(&name).await?;
        }
        Ok(ops)
    }

    /// The key topic of `namespace`, opened (created, read to its end) on first use.
    pub async fn keys(&self, namespace: &str) -> Result<Arc<KeyTopic>, KafkaOpsError> {
        let name = self.names.for_namespace(namespace);
        if let Some(open) = self.key_topics.get(&name) {
            return Ok(open);
        }
        self.open(&name).await
    }

    /// The name of `namespace`'s key topic.
    pub fn key_topic_name(&self, namespace: &str) -> String {
        self.names.for_namespace(namespace)
    }

    async fn open(&self, name: &str) -> Result<Arc<KeyTopic>, KafkaOpsError> {
        let _one_at_a_time = self.opening.lock().await;
        if let Some(open) = self.key_topics.get(name) {
            return Ok(open);
        }
        ensure_key_topic(&self.connection, name, self.replication)
            .await
            .map_err(Box::new)?;
        let trust = self
            .trust
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let directory = KeyDirectory::start(&self.connection, name, trust).await?;
        directory.wait_caught_up(DIRECTORY_WAIT).await?;
        self.signer.observe_generation(directory.max_generation());
        let topic = Arc::new(KeyTopic {
            name: name.to_owned(),
            writer: KeyTopicWriter::new(&self.connection, name, Arc::clone(&self.signer))?,
            directory,
        });
        self.key_topics.insert(Arc::clone(&topic));
        tracing::info!(key_topic = %name, "key topic read to its end");
        Ok(topic)
    }

    /// Changes what every key-topic reader believes (each reads its topic again).
    pub fn set_trust(&self, trust: Trust) {
        for topic in self.key_topics.all() {
            topic.directory.set_trust(trust.clone());
        }
        *self
            .trust
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = trust;
    }

    /// The per-namespace key topics the broker has.
    async fn existing_key_topics(&self) -> Result<Vec<String>, KafkaOpsError> {
        let consumer = Arc::clone(&self.metadata);
        let metadata = tokio::task::spawn_blocking(move || {
            consumer.fetch_metadata(None, CALL_TIMEOUT).map(|m| {
                m.topics()
                    .iter()
                    .map(|t| t.name().to_owned())
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|_| KafkaOpsError::Blocking)?
        .map_err(|source| KafkaOpsError::Admin {
            op: "listing",
            topic: "key topics".into(),
            source,
        })?;
        Ok(metadata
            .into_iter()
            .filter(|name| self.names.matches(name))
            .collect())
    }

    /// (log start, end) offsets of each partition of `topic`, or `None` if it does not exist;
    /// read for every topic at once and shared (`crate::watermarks`).
    pub async fn watermarks(&self, topic: &str) -> Result<Option<Marks>, KafkaOpsError> {
        Ok(self.watermarks.get(topic).await.map_err(Box::new)?)
    }

    /// Creates `spec`'s topic; if it exists already, its offsets are read again before the
    /// next answer.
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<EnsureOutcome, KafkaOpsError> {
        let outcome = kafka::ensure_topic(&self.admin, spec, CALL_TIMEOUT).await;
        match outcome {
            Ok(EnsureOutcome::Created) => self.watermarks.created(&spec.name, spec.partitions),
            _ => self.watermarks.unknown(&spec.name),
        }
        Ok(outcome?)
    }

    pub async fn grow_topic(&self, topic: &str, to: i32) -> Result<(), KafkaOpsError> {
        let count = usize::try_from(to).unwrap_or(0);
        let results = self
            .admin
            .create_partitions([&NewPartitions::new(topic, count)], &options())
            .await;
        let grown = results
            .map_err(|source| KafkaOpsError::Admin {
                op: "growing partitions",
                topic: topic.to_owned(),
                source,
            })
            .and_then(|results| admin_result(results.into_iter().next(), "grow", topic));
        match grown {
            Ok(()) => self.watermarks.grown(topic, to),
            Err(_) => self.watermarks.unknown(topic),
        }
        grown
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), KafkaOpsError> {
        let results = self.admin.delete_topics(&[topic], &options()).await;
        let deleted = results
            .map_err(|source| KafkaOpsError::Admin {
                op: "deletion",
                topic: topic.to_owned(),
                source,
            })
            .and_then(
                |results| match admin_result(results.into_iter().next(), "delete", topic) {
                    Err(KafkaOpsError::Refused {
                        code: RDKafkaErrorCode::UnknownTopicOrPartition,
                        ..
                    }) => Ok(()),
                    other => other,
                },
            );
        match deleted {
            Ok(()) => self.watermarks.deleted(topic),
            Err(_) => self.watermarks.unknown(topic),
        }
        deleted
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
