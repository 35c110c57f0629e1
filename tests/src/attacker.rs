//! What a broker administrator can do without any key: write any record to any topic (the key
//! topic included), and read everything the broker stores. The untrusted-broker tests act with
//! exactly these rights.

use std::time::Duration;

use kafka_e2ee_client::kafka::KafkaConnection;
use kafka_e2ee_client::signing::SIGNATURE_HEADER;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::unique;
use kafka_e2ee_client::kafka::Connect as _;

const WAIT: Duration = Duration::from_secs(10);

/// A record as the attacker writes it: any key, value and headers, to any partition.
pub struct Raw<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Raw<'a> {
    /// A record of partition 0 of `topic`, without headers.
    pub fn to(topic: &'a str, key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Self {
        Self {
            topic,
            partition: 0,
            key,
            value,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, key: &'a str, value: &'a [u8]) -> Self {
        self.headers.push((key, value));
        self
    }
}

/// Writes `raw` with a plain producer; returns its offset.
#[expect(
    clippy::expect_used,
    reason = "test support: a failed write fails the test"
)]
pub async fn inject(connection: &KafkaConnection, raw: Raw<'_>) -> i64 {
    let producer: FutureProducer = connection.client_config().create().expect("a raw producer");
    let mut headers = OwnedHeaders::new();
    for (key, value) in &raw.headers {
        headers = headers.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(raw.topic)
        .partition(raw.partition)
        .headers(headers);
    if let Some(k) = raw.key {
        record = record.key(k);
    }
    if let Some(v) = raw.value {
        record = record.payload(v);
    }
    producer
        .send(record, WAIT)
        .await
        .map_err(|(e, _)| e)
        .expect("the broker accepts the record")
        .offset
}

/// Every record of partition 0 of `topic` as the broker stores it.
pub fn read_all(connection: &KafkaConnection, topic: &str) -> Vec<OwnedMessage> {
    read_partition(connection, topic, 0)
}

/// Every record of `partition` of `topic` as the broker stores it.
#[expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: an unreadable topic fails the test"
)]
pub fn read_partition(
    connection: &KafkaConnection,
    topic: &str,
    partition: i32,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = connection
        .client_config()
        .set("group.id", unique("attacker"))
        .set("enable.partition.eof", "true")
        .create()
        .expect("a raw consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .expect("the partition");
    consumer.assign(&tpl).expect("assigned");
    let mut out = Vec::new();
    let mut last_error = None;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => last_error = Some(e),
            None => {}
        }
    }
    panic!(
        "could not read {topic}/{partition} to its end (read {}; last error {last_error:?})",
        out.len()
    );
}

/// The last stored record with `record_key` in `topic`.
#[expect(clippy::expect_used, reason = "test support")]
pub fn last_stored(connection: &KafkaConnection, topic: &str, record_key: &str) -> OwnedMessage {
    read_all(connection, topic)
        .into_iter()
        .rev()
        .find(|m| m.key() == Some(record_key.as_bytes()))
        .expect("the record is stored")
}

/// The value of a stored record's header `name`, if it has one.
pub fn header(m: &OwnedMessage, name: &str) -> Option<Vec<u8>> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(<[u8]>::to_vec)
}

/// The signature header of a stored key record.
#[expect(clippy::expect_used, reason = "test support")]
pub fn signature_of(m: &OwnedMessage) -> Vec<u8> {
    header(m, SIGNATURE_HEADER).expect("a signed key record")
}
