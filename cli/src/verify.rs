//! `kubectl e2ee verify`: proof that a topic's retained records are encrypted. Every record
//! from the start offset (the log start, or `--since`) to the end offset seen when the command
//! started is read and passed through the client's own opening path (`RecordOpener`, what
//! `DecryptingConsumer` and the proxy run), and the outcome counted per partition. Values are
//! never printed or kept.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kafka_e2ee_client::config::EncryptionClient;
use kafka_e2ee_client::consumer::{ConsumeError, ConsumerSettings, RecordOpener};
use kafka_e2ee_client::kafka::Connect as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::Kube;
use crate::args::Output;
use crate::error::CliError;
use crate::status::write_table;

/// How long without a record before the consumer's positions are checked against the ends.
const IDLE: Duration = Duration::from_secs(2);

pub struct Options {
    pub since: Option<Duration>,
    pub partitions: Vec<i32>,
    pub output: Output,
}

/// What the records of one partition turned out to be.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Sealed records that opened (and authenticated tombstones).
    pub opened: u64,
    /// Plaintext on a topic whose trusted policy allows it.
    pub plaintext_allowed: u64,
    /// Plaintext (or an unauthenticated tombstone) where the policy rejects it.
    pub plaintext_rejected: u64,
    /// Failed authentication: changed, moved, or sealed under another key.
    pub tampered: u64,
    /// Names a DEK version the key topic does not hold.
    pub unknown_key: u64,
    /// Its DEK could not be unwrapped now (KMS down or refusing).
    pub key_unavailable: u64,
    /// Not a record this format can read.
    pub malformed: u64,
}

impl Counts {
    pub fn failures(&self) -> u64 {
        self.plaintext_rejected
            + self.tampered
            + self.unknown_key
            + self.key_unavailable
            + self.malformed
    }

    fn total(&self) -> u64 {
        self.opened + self.plaintext_allowed + self.failures()
    }

    fn add(&mut self, o: &Self) {
        self.opened += o.opened;
        self.plaintext_allowed += o.plaintext_allowed;
        self.plaintext_rejected += o.plaintext_rejected;
        self.tampered += o.tampered;
        self.unknown_key += o.unknown_key;
        self.key_unavailable += o.key_unavailable;
        self.malformed += o.malformed;
    }

    /// Counts one outcome; `Err` for what is not about the record (Kafka itself failing).
    pub fn count(&mut self, outcome: Result<bool, ConsumeError>) -> Result<(), Box<ConsumeError>> {
        match outcome {
            Ok(true) => self.opened += 1,
            Ok(false) => self.plaintext_allowed += 1,
            Err(
                ConsumeError::PlaintextRejected { .. }
                | ConsumeError::UnauthenticatedTombstone { .. },
            ) => {
                self.plaintext_rejected += 1;
            }
            Err(ConsumeError::Tampered { .. }) => self.tampered += 1,
            Err(ConsumeError::UnknownKey { .. }) => self.unknown_key += 1,
            Err(ConsumeError::KeyUnavailable { .. }) => self.key_unavailable += 1,
            Err(ConsumeError::Malformed { .. } | ConsumeError::UnauthenticatedHeaders { .. }) => {
                self.malformed += 1;
            }
            Err(other) => return Err(Box::new(other)),
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub topic: String,
    pub partitions: BTreeMap<i32, Counts>,
    pub total: Counts,
    pub records: u64,
    pub seconds: f64,
}

impl Report {
    /// No record failed to open or was refused.
    pub fn clean(&self) -> bool {
        self.total.failures() == 0
    }
}

pub async fn run(
    kube: &Kube,
    name: &str,
    config: &Path,
    options: &Options,
    out: &mut impl Write,
) -> Result<Report, CliError> {
    let topic = crate::inventory::topic_of(kube, name).await?;
    // Once the key topic is read to its end, a key that is not there is unknown: no wait per
    // record.
    let client = crate::inventory::reader(config).await?;
    let report = verify_topic(&client, &topic, options).await?;
    print(&report, options.output, out)?;
    Ok(report)
}

/// Reads `topic` as `options` say with `client` (its key directory read to the end) and counts.
pub async fn verify_topic(
    client: &EncryptionClient,
    topic: &str,
    options: &Options,
) -> Result<Report, CliError> {
    let topic = topic.to_owned();
    let opener = RecordOpener::new(
        Arc::clone(client.key_directory()),
        Arc::clone(client.dek_cache()),
        ConsumerSettings {
            key_wait: Duration::ZERO,
        },
    );
    let kafka_err = |source| CliError::Kafka {
        topic: topic.clone(),
        source,
    };
    // Reading time counts from the consumer's creation, as a raw consumer's would.
    let started = Instant::now();
    let consumer: StreamConsumer = client
        .config()
        .connection()
        .client_config()
        .set("group.id", "kafka-e2ee-verify")
        .set("enable.auto.commit", "false")
        // Not partition EOF: the test bed's broker reports a high watermark that makes
        // librdkafka signal EOF mid-partition; the end offsets read at start decide instead.
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka_err)?;
    let ranges = ranges(&consumer, &topic, options).map_err(kafka_err)?;
    let total: u64 = ranges
        .values()
        .map(|(start, end)| (end - start).max(0) as u64)
        .sum();
    let mut assignment = TopicPartitionList::new();
    let mut pending = std::collections::BTreeSet::new();
    for (&p, &(start, end)) in &ranges {
        if end > start {
            assignment
                .add_partition_offset(&topic, p, Offset::Offset(start))
                .map_err(kafka_err)?;
            pending.insert(p);
        }
    }
    let mut report = Report {
        topic: topic.clone(),
        partitions: ranges.keys().map(|&p| (p, Counts::default())).collect(),
        total: Counts::default(),
        records: 0,
        seconds: 0.0,
    };
    let progress = Progress::new(total);
    if !pending.is_empty() {
        consumer.assign(&assignment).map_err(kafka_err)?;
    }
    while !pending.is_empty() {
        let message = match tokio::time::timeout(IDLE, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
                continue;
            }
            Ok(Err(e)) => return Err(kafka_err(e)),
            // Nothing for a while: a partition whose last offsets are transaction markers (never
            // delivered) is done once the consumer's position reached its end.
            Err(_) => {
                let position = consumer.position().map_err(kafka_err)?;
                for e in position.elements_for_topic(&topic) {
                    if let (Offset::Offset(at), Some(&(_, end))) =
                        (e.offset(), ranges.get(&e.partition()))
                        && at >= end
                    {
                        pending.remove(&e.partition());
                    }
                }
                continue;
            }
        };
        let partition = message.partition();
        let Some(&(_, end)) = ranges.get(&partition) else {
            continue;
        };
        if message.offset() >= end {
            pending.remove(&partition);
            continue;
        }
        // Counted without copying the opened record anywhere.
        let outcome = opener
            .open_then(&message, |opened| opened.was_encrypted())
            .await;
        let counts = report.partitions.entry(partition).or_default();
        if let Err(e) = counts.count(outcome) {
            return Err(CliError::Output(anyhow::anyhow!(
                "reading {topic}/{partition}: {}",
                crate::error::chain(&*e)
            )));
        }
        report.records += 1;
        progress.tick(report.records);
        if message.offset() + 1 >= end {
            pending.remove(&partition);
        }
    }
    progress.finish(report.records);
    report.seconds = started.elapsed().as_secs_f64();
    for c in report.partitions.values() {
        report.total.add(c);
    }
    Ok(report)
}

/// (start, end) offsets per partition: the log start (or the first offset at `--since`) to
/// the end offset now.
fn ranges(
    consumer: &StreamConsumer,
    topic: &str,
    options: &Options,
) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if !options.partitions.is_empty() {
        partitions.retain(|p| options.partitions.contains(p));
    }
    let mut ranges = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        ranges.insert(p, (low, high));
    }
    if let Some(since) = options.since {
        let from = SystemTime::now()
            .checked_sub(since)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut query = TopicPartitionList::new();
        for &p in &partitions {
            query.add_partition_offset(topic, p, Offset::Offset(from))?;
        }
        for e in consumer.offsets_for_times(query, timeout)?.elements() {
            if let Some(range) = ranges.get_mut(&e.partition()) {
                match e.offset() {
                    Offset::Offset(o) => range.0 = range.0.max(o),
                    // Nothing that recent.
                    _ => range.0 = range.1,
                }
            }
        }
    }
    Ok(ranges)
}

fn print(report: &Report, output: Output, out: &mut impl Write) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Output(e.into());
    if crate::write_structured(report, output, out)? {
        return Ok(());
    }
    let header = [
        "PARTITION",
        "OPENED",
        "PLAINTEXT-ALLOWED",
        "PLAINTEXT-REJECTED",
        "TAMPERED",
        "UNKNOWN-KEY",
        "KEY-UNAVAILABLE",
        "MALFORMED",
    ];
    let mut rows = vec![header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    let row = |label: String, c: &Counts| {
        vec![
            label,
            c.opened.to_string(),
            c.plaintext_allowed.to_string(),
            c.plaintext_rejected.to_string(),
            c.tampered.to_string(),
            c.unknown_key.to_string(),
            c.key_unavailable.to_string(),
            c.malformed.to_string(),
        ]
    };
    for (p, c) in &report.partitions {
        rows.push(row(p.to_string(), c));
    }
    rows.push(row("total".into(), &report.total));
    write_table(&rows, out)?;
    let rate = if report.seconds > 0.0 {
        report.records as f64 / report.seconds
    } else {
        0.0
    };
    let verdict = if report.clean() {
        "OK: every record opened or is plaintext the topic allows".to_owned()
    } else {
        format!(
            "FAILED: {} records do not open or are refused",
            report.total.failures()
        )
    };
    writeln!(
        out,
        "{} records of {} in {:.1} s ({rate:.0} records/s). {verdict}",
        report.total.total(),
        report.topic,
        report.seconds
    )
    .map_err(io)
}

/// A progress bar with records/s and ETA on a terminal; a plain line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: std::cell::Cell<Instant>,
    started: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{wide_bar} {pos}/{len} records {per_sec} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total,
            last_line: std::cell::Cell::new(Instant::now()),
            started: Instant::now(),
        }
    }

    fn tick(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            // The clock is read once per 1,024 records, not per record.
            None if done.is_multiple_of(1024)
                && self.last_line.get().elapsed() >= Duration::from_secs(5) =>
            {
                self.last_line.set(Instant::now());
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "verified {done}/{} records ({rate:.0} records/s)",
                    self.total
                );
            }
            None => {}
        }
    }

    fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_e2ee_client::consumer::RecordPosition;

    fn at() -> RecordPosition {
        RecordPosition {
            topic: "t".into(),
            partition: 0,
            offset: 7,
        }
    }

    #[test]
    fn outcomes_are_counted_by_kind_and_failures_make_it_unclean() {
        let mut c = Counts::default();
        c.count(Ok(true)).unwrap();
        c.count(Ok(true)).unwrap();
        c.count(Ok(false)).unwrap();
        assert_eq!(c.failures(), 0);
        c.count(Err(ConsumeError::PlaintextRejected { at: at() }))
            .unwrap();
        c.count(Err(ConsumeError::UnauthenticatedHeaders {
            at: at(),
            count: 1,
        }))
        .unwrap();
        assert_eq!(
            (
                c.opened,
                c.plaintext_allowed,
                c.plaintext_rejected,
                c.malformed
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(c.failures(), 2);
        assert_eq!(c.total(), 5);
    }
}
