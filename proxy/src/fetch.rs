//! Fetch responses: every record of an encrypted topic is opened with the Rust client's
//! opening path (`RecordOpener`), its original headers and value restored, and its batch
//! re-framed. A record that does not open is never delivered as ciphertext and never dropped
//! silently: the records before it are delivered, and once it is the first, the partition
//! answers an error code at its offset (logged with topic, partition and offset, and counted).

use bytes::{Bytes, BytesMut};
use kafka_e2ee_client::consumer::{ConsumedRecord, IncomingRecord};
use kafka_e2ee_client::provider::KeyProvider;
use kafka_protocol::messages::fetch_response::{FetchResponse, PartitionData};

use crate::batch::{self, Batch, Record};
use crate::crypto::{Crypto, RefusedLabels, Rule, code, fetch_code};

/// A record of a fetched batch, as the opening path reads it.
struct Fetched<'a> {
    topic: &'a str,
    partition: i32,
    batch: &'a Batch,
    record: &'a Record,
}

impl IncomingRecord for Fetched<'_> {
    fn topic(&self) -> &str {
        self.topic
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.batch
            .base_offset()
            .wrapping_add(i64::from(self.record.offset_delta))
    }
    fn timestamp_ms(&self) -> Option<i64> {
        Some(self.batch.timestamp_of(self.record))
    }
    fn key(&self) -> Option<&[u8]> {
        self.record.key.as_deref()
    }
    fn payload(&self) -> Option<&[u8]> {
        self.record.value.as_deref()
    }
    fn for_each_header<'a>(&'a self, each: &mut dyn FnMut(&'a str, Option<&'a [u8]>)) {
        for (key, value) in &self.record.headers {
            // A key that is not UTF-8 can never be `encryption_key`: it counts as another
            // header (refused beside a sealed value, as the client refuses it).
            each(
                std::str::from_utf8(key).unwrap_or("\u{fffd}"),
                value.as_deref(),
            );
        }
    }
}

/// The opened record in its batch's place.
fn restored(original: &Record, opened: ConsumedRecord) -> Record {
    Record {
        attributes: original.attributes,
        timestamp_delta: original.timestamp_delta,
        offset_delta: original.offset_delta,
        key: original.key.clone(),
        value: opened.value.map(Bytes::from),
        headers: opened
            .headers
            .into_iter()
            .map(|h| (Bytes::from(h.key), h.value.map(Bytes::from)))
            .collect(),
    }
}

/// Opens `response` in place.
pub async fn open_response<P: KeyProvider + 'static>(
    crypto: &Crypto<P>,
    response: &mut FetchResponse,
) {
    for topic in &mut response.responses {
        let name = topic.topic.0.to_string();
        match crypto.rules.rule(&name) {
            Rule::Passthrough => {}
            Rule::Refused => {
                for p in &mut topic.partitions {
                    if p.records.as_ref().is_some_and(|r| !r.is_empty()) {
                        tracing::warn!(topic = %name, partition = p.partition_index, "fetch of a topic this pod neither encrypts nor passes through: refused");
                        refuse(crypto, p, code::TOPIC_AUTHORIZATION_FAILED);
                    }
                }
            }
            Rule::Encrypted => {
                for p in &mut topic.partitions {
                    open_partition(crypto, &name, p).await;
                }
            }
        }
    }
}

fn refuse<P>(crypto: &Crypto<P>, p: &mut PartitionData, code: i16) {
    p.error_code = code;
    p.records = Some(Bytes::new());
    crypto
        .metrics
        .refused
        .get_or_create(&RefusedLabels {
            direction: "fetch",
            code,
        })
        .inc();
}

async fn open_partition<P: KeyProvider + 'static>(
    crypto: &Crypto<P>,
    topic: &str,
    p: &mut PartitionData,
) {
    let Some(records) = p.records.take() else {
        return;
    };
    let partition = p.partition_index;
    let (batches, _partial) = match batch::split(&records) {
        Ok(split) => split,
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "fetched records do not parse: partition answered CORRUPT_MESSAGE");
            refuse(crypto, p, code::CORRUPT_MESSAGE);
            return;
        }
    };
    let mut out = BytesMut::with_capacity(records.len());
    let mut failed = None;
    'batches: for b in &batches {
        if b.is_control() || b.record_count() == 0 {
            out.extend_from_slice(b.bytes());
            continue;
        }
        let parsed = b.verify_crc().and_then(|()| b.records());
        let originals = match parsed {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(topic, partition, offset = b.base_offset(), error = %e, "fetched batch is damaged");
                failed = Some(code::CORRUPT_MESSAGE);
                break;
            }
        };
        let mut opened = Vec::with_capacity(originals.len());
        for record in &originals {
            let fetched = Fetched {
                topic,
                partition,
                batch: b,
                record,
            };
            match crypto.opener.open(&fetched).await {
                Ok(plain) => opened.push(restored(record, plain)),
                Err(e) => {
                    tracing::warn!(topic, partition, offset = fetched.offset(), error = %kafka_e2ee_telemetry::chain(&e), "record did not open: delivered up to it, then the partition's fetch fails there");
                    failed = Some(fetch_code(&e));
                    if !opened.is_empty() && !encode(&mut out, b, &opened, crypto) {
                        failed = Some(code::UNKNOWN_SERVER_ERROR);
                    }
                    break 'batches;
                }
            }
        }
        if !encode(&mut out, b, &opened, crypto) {
            failed = Some(code::UNKNOWN_SERVER_ERROR);
            break;
        }
    }
    match failed {
        Some(code) if out.is_empty() => refuse(crypto, p, code),
        _ => p.records = Some(out.freeze()),
    }
}

/// Appends the opened batch; false if it could not be encoded (a codec failure: the partition
/// then stops there, as for a record that does not open, never skipping records).
fn encode<P>(out: &mut BytesMut, b: &Batch, records: &[Record], crypto: &Crypto<P>) -> bool {
    let mark = out.len();
    match batch::encode(out, b, records) {
        Ok(()) => {
            crypto.metrics.opened.inc_by(records.len() as u64);
            true
        }
        Err(e) => {
            out.truncate(mark);
            tracing::error!(offset = b.base_offset(), error = %e, "re-encoding an opened batch failed");
            false
        }
    }
}
