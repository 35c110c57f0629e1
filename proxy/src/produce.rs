//! Produce requests: every record bound for an encrypted topic is sealed exactly as the Rust
//! client seals it (the same `PartitionSealer`: AAD, `encryption_key` header, nonces, per-DEK
//! cap), in its batch, keeping the batch's producer id, epoch and sequence numbers (idempotent
//! and transactional producers keep working). A partition that cannot be sealed is taken out
//! of the request and answered with an error code; its records never reach the broker.

use bytes::{Bytes, BytesMut};
use kafka_e2ee_client::producer::ProduceError;
use kafka_e2ee_client::provider::KeyProvider;
use kafka_e2ee_client::record::{Header, KEY_HEADER, PartitionSealer};
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::batch::{self, BatchError};
use crate::crypto::{Crypto, RefusedLabels, Rule, code, produce_code};

/// A partition of a produce request answered by the proxy instead of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub topic: String,
    pub partition: i32,
    pub code: i16,
    pub message: String,
}

/// Seals `request` in place; returns the partitions taken out of it, refused.
pub async fn seal_request<P: KeyProvider + 'static>(
    crypto: &Crypto<P>,
    request: &mut ProduceRequest,
) -> Vec<Refused> {
    let mut refused = Vec::new();
    for topic in &mut request.topic_data {
        let name = topic.name.0.to_string();
        let rule = crypto.rules.rule(&name);
        if rule == Rule::Passthrough {
            continue;
        }
        let mut kept = Vec::with_capacity(topic.partition_data.len());
        for mut partition in std::mem::take(&mut topic.partition_data) {
            let outcome = match rule {
                Rule::Refused => Err((
                    code::TOPIC_AUTHORIZATION_FAILED,
                    format!(
                        "kafka-e2ee proxy: topic {name} is not one this pod encrypts (kafka-e2ee.io/topics) nor passes through"
                    ),
                )),
                _ => {
                    seal_partition(crypto, &name, partition.index, partition.records.as_ref()).await
                }
            };
            match outcome {
                Ok(sealed) => {
                    partition.records = sealed;
                    kept.push(partition);
                }
                Err((code, message)) => {
                    tracing::warn!(topic = %name, partition = partition.index, code, %message, "produce refused");
                    crypto
                        .metrics
                        .refused
                        .get_or_create(&RefusedLabels {
                            direction: "produce",
                            code,
                        })
                        .inc();
                    refused.push(Refused {
                        topic: name.clone(),
                        partition: partition.index,
                        code,
                        message,
                    });
                }
            }
        }
        topic.partition_data = kept;
    }
    request.topic_data.retain(|t| !t.partition_data.is_empty());
    refused
}

type Refusal = (i16, String);

fn produce_refusal(e: &ProduceError) -> Refusal {
    (
        produce_code(e),
        format!("kafka-e2ee proxy: {}", kafka_e2ee_telemetry::chain(e)),
    )
}

fn batch_refusal(e: &BatchError) -> Refusal {
    (code::CORRUPT_MESSAGE, format!("kafka-e2ee proxy: {e}"))
}

async fn seal_partition<P: KeyProvider + 'static>(
    crypto: &Crypto<P>,
    topic: &str,
    partition: i32,
    records: Option<&Bytes>,
) -> Result<Option<Bytes>, Refusal> {
    let Some(records) = records else {
        return Ok(None);
    };
    let (batches, rest) = batch::split(records).map_err(|e| batch_refusal(&e))?;
    if !rest.is_empty() {
        return Err(batch_refusal(&BatchError::Truncated(
            "a produce request ends in a partial batch",
        )));
    }
    let state = crypto
        .sealers
        .state(topic)
        .await
        .map_err(|e| produce_refusal(&e))?;
    let sealer = crypto
        .sealers
        .sealer(&state, partition)
        .await
        .map_err(|e| produce_refusal(&e))?;
    let mut out = BytesMut::with_capacity(records.len() + 64);
    for batch in batches {
        batch.verify_crc().map_err(|e| batch_refusal(&e))?;
        if batch.is_control() {
            out.extend_from_slice(batch.bytes());
            continue;
        }
        let mut records = batch.records().map_err(|e| batch_refusal(&e))?;
        for record in &mut records {
            seal_record(&sealer, topic, partition, record).map_err(|e| produce_refusal(&e))?;
        }
        batch::encode(&mut out, &batch, &records).map_err(|e| batch_refusal(&e))?;
        crypto.metrics.sealed.inc_by(records.len() as u64);
    }
    Ok(Some(out.freeze()))
}

fn seal_record(
    sealer: &PartitionSealer,
    topic: &str,
    partition: i32,
    record: &mut batch::Record,
) -> Result<(), ProduceError> {
    let seal_error = |source| ProduceError::Seal {
        topic: topic.to_owned(),
        partition,
        source,
    };
    let key = record.key.as_deref();
    let header = match record.value.as_deref() {
        None => {
            if !record.headers.is_empty() {
                return Err(ProduceError::TombstoneWithHeaders {
                    topic: topic.to_owned(),
                });
            }
            // Still null (compaction deletes the key), but authenticated.
            Bytes::from(sealer.seal_tombstone(key).map_err(seal_error)?)
        }
        Some(value) => {
            let headers: Vec<Header> = record
                .headers
                .iter()
                .map(|(k, v)| Header {
                    key: String::from_utf8_lossy(k).into_owned(),
                    value: v.as_deref().map(<[u8]>::to_vec),
                })
                .collect();
            let sealed = sealer.seal(key, &headers, value).map_err(seal_error)?;
            record.value = Some(Bytes::from(sealed));
            Bytes::copy_from_slice(sealer.key_header())
        }
    };
    record.headers = vec![(Bytes::from_static(KEY_HEADER.as_bytes()), Some(header))];
    Ok(())
}

/// Adds the refused partitions to the broker's answer.
pub fn merge_refused(response: &mut ProduceResponse, refused: &[Refused]) {
    for r in refused {
        let partition = PartitionProduceResponse::default()
            .with_index(r.partition)
            .with_error_code(r.code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(StrBytes::from_string(r.message.clone())));
        match response
            .responses
            .iter_mut()
            .find(|t| *t.name.0 == *r.topic)
        {
            Some(topic) => topic.partition_responses.push(partition),
            None => response.responses.push(
                TopicProduceResponse::default()
                    .with_name(StrBytes::from_string(r.topic.clone()).into())
                    .with_partition_responses(vec![partition]),
            ),
        }
    }
}
