//! The log start and end offsets of the topics the operator manages, read for all of them at
//! once and shared between reconciles.
//!
//! Asking librdkafka topic by topic (a metadata request and two ListOffsets per partition)
//! made it keep a topic handle and partition state per topic, whose upkeep in its broker
//! threads grew with the number of topics: at 5,000 topics the operator spent most of its CPU
//! there (docs/performance.md).
//!
//! - A **full read** lists the cluster's topics (one metadata request) and reads the offsets of
//!   every topic asked about (ListOffsets in lists of `PARTITIONS_PER_LIST`, one per leader).
//!   It happens when the last one is older than `max_age`.
//! - A **partial read** reads the offsets of the topics asked about since, that the listing
//!   knows.
//! - This operator's own changes update what is known without a read: a topic it created has
//!   its partitions, empty. A topic it finds already created (someone else made it after the
//!   last listing) is read again in full before it is answered.
//!
//! A reconcile takes an answer at most `max_age` old, or waits for the next read, which every
//! reconcile waiting with it shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;

/// Topics not asked about for this many max ages are no longer read (a deleted object's).
const FORGET_AFTER: u32 = 4;

/// (log start, end) offset of each partition.
pub type Marks = BTreeMap<i32, (i64, i64)>;

/// The end offset of each partition.
pub fn end_offsets(marks: &Marks) -> BTreeMap<i32, i64> {
    marks.iter().map(|(&p, &(_, end))| (p, end)).collect()
}

/// The log start offset of each partition.
pub fn log_starts(marks: &Marks) -> BTreeMap<i32, i64> {
    marks.iter().map(|(&p, &(start, _))| (p, start)).collect()
}

#[derive(Debug, Clone, Error)]
pub enum WatermarksError {
    #[error("reading the topics' metadata failed")]
    Metadata(#[source] KafkaError),
    #[error("reading the topics' {which} offsets failed")]
    Offsets {
        which: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("reading the {which} offset of topic {topic} partition {partition} failed")]
    Partition {
        which: &'static str,
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("the broker gave no {which} offset for topic {topic} partition {partition}")]
    Missing {
        which: &'static str,
        topic: String,
        partition: i32,
    },
    #[error("the offset reader stopped")]
    Stopped,
}

/// Shared (log start, end) offsets of the topics asked about.
pub struct Watermarks {
    consumer: Arc<BaseConsumer>,
    max_age: Duration,
    timeout: Duration,
    state: Mutex<State>,
    /// One read at a time: those who wait for it share the next.
    reading: tokio::sync::Mutex<()>,
    reads: Counter,
}

#[derive(Default)]
struct State {
    /// Every topic asked about, and when it was last asked (reads cover those asked within
    /// `FORGET_AFTER` max ages: reconciles ask at least every two).
    interest: HashMap<String, Instant>,
    /// Every topic of the cluster and its partitions, from the last full read.
    listing: Option<Listing>,
    /// The offsets of the topics asked about, each with when its read started.
    entries: HashMap<String, Entry>,
    /// Topics this operator changed without learning their partitions (e.g. it found one
    /// already created): their next answer needs a full read started after the change.
    unknown: HashMap<String, Instant>,
    /// The last read that failed, and when it started.
    failure: Option<(Instant, WatermarksError)>,
}

struct Listing {
    at: Instant,
    partitions: Partitions,
}

#[derive(Clone)]
struct Entry {
    at: Instant,
    marks: Result<Marks, WatermarksError>,
}

/// Which topics the next read covers.
enum Scope {
    /// The cluster's topics, and the offsets of these topics (every one asked about).
    Full(Vec<String>),
    /// The offsets of these topics, whose partitions the listing knows.
    Topics(Vec<(String, Vec<i32>)>),
}

impl Watermarks {
    /// `max_age`: how old an answer may be; `reads` counts the reads.
    pub fn new(
        consumer: Arc<BaseConsumer>,
        max_age: Duration,
        timeout: Duration,
        reads: Counter,
    ) -> Self {
        Self {
            consumer,
            max_age,
            timeout,
            state: Mutex::new(State::default()),
            reading: tokio::sync::Mutex::new(()),
            reads,
        }
    }

    /// The (log start, end) offsets of each partition of `topic` (at most `max_age` old), or
    /// `None` if it did not exist at the last full read and this operator has not created it
    /// since. A topic someone else created meanwhile is found when creating it says it exists
    /// ([`Watermarks::unknown`]).
    pub async fn get(&self, topic: &str) -> Result<Option<Marks>, WatermarksError> {
        let asked = Instant::now();
        self.lock().interest.insert(topic.to_owned(), asked);
        loop {
            if let Some(answer) = self.lock().answer(topic, asked, self.max_age) {
                return answer;
            }
            let _one_read = self.reading.lock().await;
            // The read this one waited for may have answered.
            if let Some(answer) = self.lock().answer(topic, asked, self.max_age) {
                return answer;
            }
            self.read(asked).await;
        }
    }

    /// This operator created `topic` with `partitions` empty partitions.
    pub fn created(&self, topic: &str, partitions: i32) {
        self.lock().created(topic, partitions, Instant::now());
    }

    /// This operator grew `topic` to `to` partitions; those added are empty.
    pub fn grown(&self, topic: &str, to: i32) {
        self.lock().grown(topic, to);
    }

    /// This operator deleted `topic`.
    pub fn deleted(&self, topic: &str) {
        self.lock().deleted(topic);
    }

    /// What this operator knows of `topic` is wrong (it found the topic already created, or a
    /// change failed): the next answer comes from a full read.
    pub fn unknown(&self, topic: &str) {
        self.lock().unknown.insert(topic.to_owned(), Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn read(&self, asked: Instant) {
        let started = Instant::now();
        let scope = self.lock().scope(asked, self.max_age, started);
        let consumer = Arc::clone(&self.consumer);
        let timeout = self.timeout;
        let full = matches!(scope, Scope::Full(_));
        let outcome = tokio::task::spawn_blocking(move || match scope {
            Scope::Full(interest) => read_full(&consumer, &interest, timeout),
            Scope::Topics(topics) => Ok((None, read_offsets(&consumer, &topics, timeout)?)),
        })
        .await
        .unwrap_or(Err(WatermarksError::Stopped));
        self.reads.inc();
        tracing::debug!(elapsed = ?started.elapsed(), full, ok = outcome.is_ok(), "partition offsets read");
        let mut state = self.lock();
        match outcome {
            Ok((listing, marks)) => {
                if let Some(mut partitions) = listing {
                    // What this operator created or grew while the read ran stays known.
                    state.entries.retain(|_, e| e.at > started);
                    for (topic, entry) in &state.entries {
                        if let Ok(m) = &entry.marks {
                            partitions.insert(topic.clone(), m.keys().copied().collect());
                        }
                    }
                    state.listing = Some(Listing {
                        at: started,
                        partitions,
                    });
                    state.unknown.retain(|_, changed| *changed > started);
                }
                for (topic, marks) in marks {
                    if state.entries.get(&topic).is_none_or(|e| e.at <= started) {
                        state.entries.insert(topic, Entry { at: started, marks });
                    }
                }
                state.failure = None;
            }
            Err(e) => state.failure = Some((started, e)),
        }
    }
}

impl State {
    fn created(&mut self, topic: &str, partitions: i32, now: Instant) {
        let ids: Vec<i32> = (0..partitions).collect();
        if let Some(listing) = &mut self.listing {
            listing.partitions.insert(topic.to_owned(), ids.clone());
        }
        let marks = ids.into_iter().map(|p| (p, (0, 0))).collect();
        self.entries.insert(
            topic.to_owned(),
            Entry {
                at: now,
                marks: Ok(marks),
            },
        );
    }

    fn grown(&mut self, topic: &str, to: i32) {
        if let Some(ids) = self
            .listing
            .as_mut()
            .and_then(|l| l.partitions.get_mut(topic))
        {
            let from = ids.iter().max().map_or(0, |p| p + 1);
            ids.extend(from..to);
        }
        if let Some(Entry { marks: Ok(m), .. }) = self.entries.get_mut(topic) {
            let from = m.keys().max().map_or(0, |p| p + 1);
            m.extend((from..to).map(|p| (p, (0, 0))));
        }
    }

    fn deleted(&mut self, topic: &str) {
        if let Some(listing) = &mut self.listing {
            listing.partitions.remove(topic);
        }
        self.entries.remove(topic);
    }

    /// What the state answers about `topic` for a question asked at `asked` (`None`: read).
    /// Failures count only when read after the question.
    fn answer(
        &self,
        topic: &str,
        asked: Instant,
        max_age: Duration,
    ) -> Option<Result<Option<Marks>, WatermarksError>> {
        let fresh = |at: Instant| asked.saturating_duration_since(at) <= max_age;
        let listing = self.listing.as_ref().filter(|l| fresh(l.at));
        let known = self
            .unknown
            .get(topic)
            .is_none_or(|changed| listing.is_some_and(|l| l.at >= *changed));
        if let Some(listing) = listing.filter(|_| known) {
            match self.entries.get(topic).filter(|e| fresh(e.at)) {
                Some(Entry { marks: Ok(m), .. }) => return Some(Ok(Some(m.clone()))),
                Some(Entry { at, marks: Err(e) }) if *at >= asked => return Some(Err(e.clone())),
                Some(_) => {}
                None if !listing.partitions.contains_key(topic) => return Some(Ok(None)),
                None => {}
            }
        }
        match &self.failure {
            Some((at, e)) if *at >= asked => Some(Err(e.clone())),
            _ => None,
        }
    }

    /// What the next read covers: everything when the listing is old or a topic's partitions
    /// are unknown; else the listed topics asked about without a usable answer.
    fn scope(&mut self, asked: Instant, max_age: Duration, now: Instant) -> Scope {
        let forget_before = now.checked_sub(max_age * FORGET_AFTER);
        self.interest
            .retain(|_, at| forget_before.is_none_or(|before| *at >= before));
        let full = || Scope::Full(self.interest.keys().cloned().collect());
        let Some(listing) = self
            .listing
            .as_ref()
            .filter(|l| asked.saturating_duration_since(l.at) <= max_age)
        else {
            return full();
        };
        if self.unknown.values().any(|changed| listing.at < *changed) {
            return full();
        }
        let pending = self
            .interest
            .keys()
            .filter(|t| {
                self.entries.get(*t).is_none_or(|e| {
                    e.marks.is_err() || asked.saturating_duration_since(e.at) > max_age
                })
            })
            .filter_map(|t| Some((t.clone(), listing.partitions.get(t)?.clone())))
            .collect();
        Scope::Topics(pending)
    }
}

type TopicMarks = Vec<(String, Result<Marks, WatermarksError>)>;
/// Each topic of the cluster and its partition ids.
type Partitions = HashMap<String, Vec<i32>>;

/// Every topic of the cluster with its partitions, and the offsets of those of `interest`
/// that exist. Blocking.
fn read_full(
    consumer: &BaseConsumer,
    interest: &[String],
    timeout: Duration,
) -> Result<(Option<Partitions>, TopicMarks), WatermarksError> {
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(WatermarksError::Metadata)?;
    // A topic still being created (or in error) counts as absent, as it did per topic.
    let listing: Partitions = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| {
            (
                t.name().to_owned(),
                t.partitions().iter().map(|p| p.id()).collect(),
            )
        })
        .collect();
    let wanted: Vec<(String, Vec<i32>)> = interest
        .iter()
        .filter_map(|t| Some((t.clone(), listing.get(t)?.clone())))
        .collect();
    let marks = read_offsets(consumer, &wanted, timeout)?;
    Ok((Some(listing), marks))
}

/// The (log start, end) offsets of each partition of `topics`. Blocking.
fn read_offsets(
    consumer: &BaseConsumer,
    topics: &[(String, Vec<i32>)],
    timeout: Duration,
) -> Result<TopicMarks, WatermarksError> {
    let partitions: Vec<(&str, i32)> = topics
        .iter()
        .flat_map(|(topic, ids)| ids.iter().map(move |&p| (topic.as_str(), p)))
        .collect();
    let ends = offsets(consumer, Offset::End, &partitions, timeout)?;
    let starts = offsets(consumer, Offset::Beginning, &partitions, timeout)?;
    let mut by_topic: HashMap<String, Result<Marks, WatermarksError>> = HashMap::new();
    // Each answer list is its question list with the offsets filled in: the same order.
    for ((topic, partition), (start, end)) in partitions.iter().zip(starts.into_iter().zip(ends)) {
        let slot = by_topic
            .entry((*topic).to_owned())
            .or_insert_with(|| Ok(Marks::new()));
        let Ok(marks) = slot else { continue };
        match (start, end) {
            (Ok(start), Ok(end)) => {
                marks.insert(*partition, (start, end));
            }
            (Err(err), _) | (_, Err(err)) => *slot = Err(err),
        }
    }
    Ok(by_topic.into_iter().collect())
}

/// librdkafka matches each answer to its question by a linear search of the list: a list of
/// 15,000 partitions took seconds of CPU. Lists of this many partitions keep that small.
const PARTITIONS_PER_LIST: usize = 500;

/// The offset of each of `partitions` at `at` (`Offset::End` or `Offset::Beginning`), in
/// their order, asked in lists of at most `PARTITIONS_PER_LIST`.
fn offsets(
    consumer: &BaseConsumer,
    at: Offset,
    partitions: &[(&str, i32)],
    timeout: Duration,
) -> Result<Vec<Result<i64, WatermarksError>>, WatermarksError> {
    let which = if at == Offset::End { "end" } else { "start" };
    let failed = |source| WatermarksError::Offsets { which, source };
    let mut answers = Vec::with_capacity(partitions.len());
    for chunk in partitions.chunks(PARTITIONS_PER_LIST) {
        let mut list = TopicPartitionList::with_capacity(chunk.len());
        for &(topic, partition) in chunk {
            list.add_partition_offset(topic, partition, at)
                .map_err(failed)?;
        }
        let answered = consumer.offsets_for_times(list, timeout).map_err(failed)?;
        let elements = answered.elements();
        if elements.len() != chunk.len() {
            return Err(WatermarksError::Missing {
                which,
                topic: chunk[0].0.to_owned(),
                partition: chunk[0].1,
            });
        }
        for (e, &(topic, partition)) in elements.iter().zip(chunk) {
            answers.push(if (e.topic(), e.partition()) == (topic, partition) {
                offset_of(which, e)
            } else {
                Err(WatermarksError::Missing {
                    which,
                    topic: topic.to_owned(),
                    partition,
                })
            });
        }
    }
    Ok(answers)
}

fn offset_of(
    which: &'static str,
    e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
) -> Result<i64, WatermarksError> {
    let partition_error = |source| WatermarksError::Partition {
        which,
        topic: e.topic().to_owned(),
        partition: e.partition(),
        source,
    };
    e.error().map_err(partition_error)?;
    match e.offset() {
        Offset::Offset(n) => Ok(n),
        _ => Err(WatermarksError::Missing {
            which,
            topic: e.topic().to_owned(),
            partition: e.partition(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(30);

    fn marks() -> Marks {
        Marks::from([(0, (0, 5)), (1, (2, 7))])
    }

    /// A full read at `at` listing `a` (2 partitions, offsets known) and `b` (not asked about).
    fn state_at(at: Instant) -> State {
        State {
            interest: HashMap::from([("a".to_owned(), at)]),
            listing: Some(Listing {
                at,
                partitions: HashMap::from([("a".into(), vec![0, 1]), ("b".into(), vec![0])]),
            }),
            entries: HashMap::from([(
                "a".to_owned(),
                Entry {
                    at,
                    marks: Ok(marks()),
                },
            )]),
            ..State::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_read_answers_until_it_is_older_than_the_max_age() {
        let t0 = Instant::now();
        let state = state_at(t0);
        assert_eq!(
            state.answer("a", t0 + AGE, AGE).unwrap().unwrap(),
            Some(marks())
        );
        assert!(state.answer("a", t0 + AGE + ms(1), AGE).is_none());
        assert!(matches!(
            state_at(t0).clone_scope(t0 + AGE + ms(1)),
            Scope::Full(_)
        ));
    }

    #[test]
    fn a_topic_the_listing_lacks_is_absent_and_one_it_has_is_read() {
        let t0 = Instant::now();
        let mut state = state_at(t0);
        assert_eq!(state.answer("new", t0 + ms(5), AGE).unwrap().unwrap(), None);
        // Listed but never asked about: a partial read of it alone.
        assert!(state.answer("b", t0 + ms(5), AGE).is_none());
        state.interest.insert("b".into(), t0 + ms(5));
        match state.scope(t0 + ms(5), AGE, t0 + ms(6)) {
            Scope::Topics(topics) => assert_eq!(topics, vec![("b".to_owned(), vec![0])]),
            Scope::Full(_) => panic!("a partial read was enough"),
        }
    }

    #[test]
    fn what_the_operator_created_or_grew_is_known_without_a_read() {
        let t0 = Instant::now();
        let mut state = state_at(t0);
        state.created("new", 3, t0 + ms(1));
        assert_eq!(
            state.answer("new", t0 + ms(2), AGE).unwrap().unwrap(),
            Some(Marks::from([(0, (0, 0)), (1, (0, 0)), (2, (0, 0))]))
        );
        state.grown("a", 4);
        let grown = state
            .answer("a", t0 + ms(2), AGE)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(grown.len(), 4);
        assert_eq!(grown[&1], (2, 7), "known partitions keep their offsets");
        assert_eq!(grown[&3], (0, 0), "new partitions are empty");
    }

    #[test]
    fn a_topic_found_already_created_waits_for_a_full_read_after_that() {
        let t0 = Instant::now();
        let mut state = state_at(t0);
        state.unknown.insert("new".into(), t0 + ms(1));
        assert!(state.answer("new", t0 + ms(2), AGE).is_none());
        match state.scope(t0 + ms(2), AGE, t0 + ms(3)) {
            Scope::Full(topics) => {
                assert_eq!(topics, vec!["a".to_owned()], "every topic asked about")
            }
            Scope::Topics(_) => panic!("a partial read cannot learn the partitions"),
        }
        // Others are still answered from what is known.
        assert!(state.answer("a", t0 + ms(2), AGE).is_some());
    }

    #[test]
    fn failures_count_only_when_read_after_the_question() {
        let t0 = Instant::now();
        let mut state = State {
            failure: Some((t0, WatermarksError::Stopped)),
            ..State::default()
        };
        assert!(state.answer("a", t0 + ms(1), AGE).is_none());
        assert!(matches!(
            state.answer("a", t0, AGE),
            Some(Err(WatermarksError::Stopped))
        ));
        state = state_at(t0);
        state.entries.insert(
            "a".into(),
            Entry {
                at: t0,
                marks: Err(WatermarksError::Stopped),
            },
        );
        assert!(state.answer("a", t0 + ms(1), AGE).is_none());
        assert!(state.answer("a", t0, AGE).unwrap().is_err());
    }

    #[test]
    fn topics_not_asked_about_for_a_while_are_no_longer_read() {
        let t0 = Instant::now();
        let mut state = state_at(t0);
        let later = t0 + AGE * FORGET_AFTER + ms(1);
        let _ = state.scope(later, AGE, later);
        assert!(state.interest.is_empty());
    }

    impl State {
        fn clone_scope(mut self, asked: Instant) -> Scope {
            self.scope(asked, AGE, asked)
        }
    }
}
