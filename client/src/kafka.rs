//! Kafka connection settings and idempotent topic administration over rdkafka.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

/// Failures of Kafka administration, each naming what was being done.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("failed to create a Kafka {role} client for {bootstrap}")]
    CreateClient {
        role: &'static str,
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to create topic {topic}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("broker rejected creating topic {topic}: {code}")]
    CreateTopicRejected {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("failed to read metadata of topic {topic}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic} does not exist")]
    TopicNotFound { topic: String },
    #[error("failed to read offsets of {topic}/{partition}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use kafka_e2ee_core::connection::KafkaConnection;

/// rdkafka clients for a [`KafkaConnection`] (bring it into scope: `use
/// kafka_e2ee_client::kafka::Connect as _`).
pub trait Connect {
    /// An rdkafka config with the bootstrap servers and every extra property set.
    fn client_config(&self) -> ClientConfig;
    fn admin(&self) -> Result<AdminClient<DefaultClientContext>>;
    /// A consumer for metadata and watermark queries; it never subscribes.
    fn metadata_consumer(&self) -> Result<BaseConsumer>;
}

impl Connect for KafkaConnection {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.client_config()
            .create()
            .map_err(|source| Error::CreateClient {
                role: "admin",
                bootstrap: self.bootstrap_servers.clone(),
                source,
            })
    }

    fn metadata_consumer(&self) -> Result<BaseConsumer> {
        self.client_config()
            .create()
            .map_err(|source| Error::CreateClient {
                role: "metadata",
                bootstrap: self.bootstrap_servers.clone(),
                source,
            })
    }
}

/// An rdkafka client of type `T` made from `config` with `context`; `role` names it in the
/// error.
pub fn create_with_context<C: ClientContext, T: FromClientConfigAndContext<C>>(
    config: &ClientConfig,
    context: C,
    role: &'static str,
) -> Result<T> {
    config
        .create_with_context(context)
        .map_err(|source| Error::CreateClient {
            role,
            bootstrap: config
                .get("bootstrap.servers")
                .unwrap_or_default()
                .to_owned(),
            source,
        })
}

/// A topic to create if absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `None`: the broker's default replication factor.
    pub replication: Option<i32>,
    pub config: BTreeMap<String, String>,
}

/// What `ensure_topic` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsureOutcome {
    Created,
    AlreadyExisted,
}

/// Creates the topic, or accepts that it already exists. Settings of an existing topic are
/// not compared or changed here: adopting a topic is the caller's decision.
pub async fn ensure_topic(
    admin: &AdminClient<DefaultClientContext>,
    spec: &TopicSpec,
    timeout: Duration,
) -> Result<EnsureOutcome> {
    let replication = match spec.replication {
        Some(n) => TopicReplication::Fixed(n),
        None => TopicReplication::Fixed(-1),
    };
    let mut topic = NewTopic::new(&spec.name, spec.partitions, replication);
    for (k, v) in &spec.config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(|source| Error::CreateTopic {
            topic: spec.name.clone(),
            source,
        })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(EnsureOutcome::Created),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(EnsureOutcome::AlreadyExisted),
        Some(Err((_, code))) => Err(Error::CreateTopicRejected {
            topic: spec.name.clone(),
            code,
        }),
        None => Err(Error::CreateTopicRejected {
            topic: spec.name.clone(),
            code: RDKafkaErrorCode::Unknown,
        }),
    }
}

/// Low and high watermark of every partition of `topic`, by partition id. Blocking: call it
/// from `spawn_blocking` in async code.
pub fn partition_watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, (i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| Error::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
    let meta = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| Error::TopicNotFound {
            topic: topic.to_owned(),
        })?;
    let mut out = BTreeMap::new();
    for p in meta.partitions() {
        let marks = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(|source| Error::Watermarks {
                topic: topic.to_owned(),
                partition: p.id(),
                source,
            })?;
        out.insert(p.id(), marks);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_carries_bootstrap_and_properties() {
        let mut conn = KafkaConnection::new("127.0.0.1:9092");
        conn.properties
            .insert("security.protocol".into(), "SSL".into());
        let config = conn.client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(config.get("security.protocol"), Some("SSL"));
    }

    #[test]
    fn explicit_bootstrap_property_overrides_the_field() {
        // An explicit bootstrap.servers property overrides the field: users who set it in
        // `properties` (e.g. from a file) get what they wrote.
        let mut conn = KafkaConnection::new("a:1");
        conn.properties
            .insert("bootstrap.servers".into(), "b:2".into());
        assert_eq!(conn.client_config().get("bootstrap.servers"), Some("b:2"));
    }
}
