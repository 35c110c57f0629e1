//! `kafka-e2ee-operator adopt-key-records`: signs, once, the key records that a version without
//! signatures wrote, so that an upgrade loses access to nothing.
//!
//! Clients of this version believe only signed key records. Records written before signing
//! existed are refused like forgeries, and data sealed under their DEKs could not be read; the
//! operator never writes over their record keys (it skips those versions), but it cannot tell
//! them from forgeries on its own. This command is the explicit, one-time decision to trust the
//! key topic as it is now (trust on first use): for every record key whose last record has a
//! value that no trusted key signed, it writes the same record again, signed by the active key.
//! Records already signed are left alone; tombstones need nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use kafka_e2ee_client::kafka::{self, KafkaConnection};
use kafka_e2ee_client::key_directory::{KeyDirectory, KeyDirectoryError, KeyLookupError, Trust};
use kafka_e2ee_client::key_management::{KeyManagementError, KeyTopicWriter};
use kafka_e2ee_client::key_records::{self, EdekRecord, KeyRecord, PolicyRecord};
use kafka_e2ee_client::signing::{KeyId, Signer, TrustedKeys};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use thiserror::Error;

use crate::signing_keys::{KeyStore, SigningKeysError};
use kafka_e2ee_client::kafka::Connect as _;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AdoptError {
    #[error(transparent)]
    Keys(#[from] SigningKeysError),
    #[error("the signing keys have no active key")]
    NoActiveKey,
    #[error(transparent)]
    Directory(#[from] KeyDirectoryError),
    #[error(transparent)]
    Lookup(#[from] KeyLookupError),
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("reading the key topic {key_topic} failed")]
    Read {
        key_topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the key topic {key_topic} was not read to its end within {WAIT:?}")]
    ReadTimeout { key_topic: String },
    #[error("a blocking read of the key topic did not finish")]
    Blocking,
    #[error(transparent)]
    Write(#[from] Box<KeyManagementError>),
}

impl From<KeyManagementError> for AdoptError {
    fn from(e: KeyManagementError) -> Self {
        Self::Write(Box::new(e))
    }
}

/// What was (or, in a dry run, would be) signed.
#[derive(Debug)]
pub struct Adopted {
    pub signer: KeyId,
    pub dry_run: bool,
    /// Record keys signed.
    pub signed: Vec<String>,
    /// Record keys whose value does not decode: left alone.
    pub undecodable: Vec<String>,
}

impl Adopted {
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let verb = if self.dry_run { "would sign" } else { "signed" };
        for key in &self.signed {
            writeln!(out, "{verb} {key}")?;
        }
        for key in &self.undecodable {
            writeln!(
                out,
                "left alone (not a key record this version reads): {key}"
            )?;
        }
        writeln!(
            out,
            "{} key record(s) {verb} with key {}",
            self.signed.len(),
            self.signer
        )
    }
}

/// Signs every unsigned (or not verifiable) live key record of `key_topic`.
pub async fn adopt(
    connection: &KafkaConnection,
    key_topic: &str,
    store: &KeyStore,
    dry_run: bool,
) -> Result<Adopted, AdoptError> {
    let (ring, _) = store.load_or_create().await?;
    let active = ring.active().ok_or(AdoptError::NoActiveKey)?;
    let trust = Trust {
        keys: TrustedKeys::new(ring.published()),
        retired: ring.retired().collect(),
        ..Trust::default()
    };
    let believed = KeyDirectory::start(connection, key_topic, trust).await?;
    believed.sync(WAIT).await?;
    let latest = {
        let (connection, topic) = (connection.clone(), key_topic.to_owned());
        tokio::task::spawn_blocking(move || read_latest(&connection, &topic))
            .await
            .map_err(|_| AdoptError::Blocking)??
    };
    let mut policies: Vec<PolicyRecord> = Vec::new();
    let mut edeks: Vec<EdekRecord> = Vec::new();
    let mut undecodable = Vec::new();
    for (key, value) in latest {
        let Some(value) = value else { continue };
        match key_records::decode(&key, Some(&value)) {
            Ok(KeyRecord::Policy(p)) if believed.policy_now(&p.topic).is_none() => policies.push(p),
            Ok(KeyRecord::Edek(e))
                if believed
                    .edek_now(&e.topic, e.partition, e.version)
                    .is_none() =>
            {
                edeks.push(e)
            }
            Ok(_) => {}
            Err(_) => undecodable.push(String::from_utf8_lossy(&key).into_owned()),
        }
    }
    let mut signed: Vec<String> = edeks
        .iter()
        .map(|e| key_records::edek_key(&e.topic, e.partition, e.version))
        .collect();
    signed.extend(policies.iter().map(|p| key_records::policy_key(&p.topic)));
    if !dry_run {
        let signer = Arc::new(Signer::new(Arc::clone(&active)));
        signer.observe_generation(believed.max_generation());
        let writer = KeyTopicWriter::new(connection, key_topic, signer)?;
        // EDEKs before the policies that name them, as always.
        writer.publish_edeks(&edeks).await?;
        for policy in &policies {
            writer.publish_policy(policy).await?;
        }
        tracing::warn!(records = signed.len(), key = %active.id(), %key_topic, "key records adopted (trust on first use)");
    }
    Ok(Adopted {
        signer: active.id(),
        dry_run,
        signed,
        undecodable,
    })
}

/// The last record of every record key, as compaction would keep it (`None`: a tombstone).
fn read_latest(
    connection: &KafkaConnection,
    key_topic: &str,
) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, AdoptError> {
    let metadata = connection.metadata_consumer()?;
    let marks = kafka::partition_watermarks(&metadata, key_topic, WAIT)?;
    let consumer: BaseConsumer = connection
        .client_config()
        .set(
            "group.id",
            format!("kafka-e2ee-adopt-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|source| kafka::Error::CreateClient {
            role: "key-topic reader",
            bootstrap: connection.bootstrap_servers.clone(),
            source,
        })?;
    let read = |source| AdoptError::Read {
        key_topic: key_topic.to_owned(),
        source,
    };
    let mut assignment = TopicPartitionList::new();
    for &partition in marks.keys() {
        assignment
            .add_partition_offset(key_topic, partition, Offset::Beginning)
            .map_err(read)?;
    }
    consumer.assign(&assignment).map_err(read)?;
    // Read up to each partition's end as it is now.
    let mut remaining: BTreeMap<i32, i64> = marks
        .into_iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (_, high))| (p, high - 1))
        .collect();
    let mut latest = BTreeMap::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(AdoptError::ReadTimeout {
                key_topic: key_topic.to_owned(),
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(read)?;
        if let Some(key) = message.key() {
            latest.insert(key.to_vec(), message.payload().map(<[u8]>::to_vec));
        }
        if remaining
            .get(&message.partition())
            .is_some_and(|&last| message.offset() >= last)
        {
            remaining.remove(&message.partition());
        }
    }
    Ok(latest)
}
