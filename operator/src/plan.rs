//! The pure middle of the reconciler: from what an EncryptedTopic asks for and what the KMS,
//! the broker and the key topic hold, decide which steps are due. No I/O here, so every rule
//! is a table-driven unit test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_e2ee_client::key_directory::TopicKeysSnapshot;
use kafka_e2ee_client::key_records::{EdekRecord, PolicyRecord, ProviderRef};
use kafka_e2ee_client::provider::TekInfo;
use kafka_e2ee_crds::Request;

/// What the object asks for, resolved (defaults applied, durations parsed).
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub topic: String,
    pub partitions: i32,
    pub replicas: Option<i32>,
    pub config: BTreeMap<String, String>,
    pub provider: ProviderRef,
    pub engine: String,
    pub plaintext: kafka_e2ee_client::key_records::PlaintextPolicy,
    /// The producers' hard cap (fail closed), written into the policy.
    pub max_records_per_dek: u64,
    pub dek_max_age: Duration,
    pub dek_max_records: u64,
    pub tek_rotation: Option<Duration>,
    /// The EncryptedTopic a TEK is created for.
    pub owner: Owner,
    /// An on-demand rollover (`kafka-e2ee.io/rollover-requested-at`), already checked.
    pub rollover_request: Option<Request>,
    /// An on-demand TEK rotation (`kafka-e2ee.io/rotate-requested-at`), already checked.
    pub rotate_request: Option<Request>,
    /// An on-demand pruning (`kafka-e2ee.io/prune-requested-at`) not carried out yet.
    pub prune_request: Option<Request>,
    /// `spec.keys.pruneUnused`: prune at every reconciliation.
    pub prune_unused: bool,
}

/// An EncryptedTopic, as the owner of a TEK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: String,
    /// `namespace/name`.
    pub object: String,
}

impl Owner {
    pub fn as_tek_owner(&self) -> kafka_e2ee_client::provider::TekOwner<'_> {
        kafka_e2ee_client::provider::TekOwner {
            uid: &self.uid,
            object: &self.object,
        }
    }
}

/// What exists right now.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The TEK, `None` when the KMS does not have it.
    pub tek: Option<TekInfo>,
    /// When the operator last rotated (or created) the TEK, from status.
    pub last_tek_rotation: Option<SystemTime>,
    /// Partition count of the Kafka topic, `None` when it does not exist.
    pub topic_partitions: Option<i32>,
    /// End offset of each partition (empty when the topic does not exist).
    pub end_offsets: BTreeMap<i32, i64>,
    /// Log start offset of each partition (empty when the topic does not exist).
    pub log_start: BTreeMap<i32, i64>,
    /// Everything the key topic holds for the topic.
    pub keys: TopicKeysSnapshot,
}

/// Why a partition gets a new DEK version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// The topic has no key for this partition yet (new topic or grown partition count).
    Initial,
    /// The current DEK reached `dekRollover.maxAge`.
    Age,
    /// The partition's end offset moved `dekRollover.maxRecords` past the DEK's creation.
    Count,
    /// `kafka-e2ee.io/rollover-requested-at` names a time after the DEK's creation.
    Requested,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Age => "age",
            Self::Count => "count",
            Self::Requested => "requested",
        }
    }
}

/// One partition moving to a new DEK version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStep {
    pub partition: i32,
    pub version: u32,
    pub trigger: Trigger,
    /// The EDEK of `version` is already in the key topic (written before a crash, never
    /// referenced by a policy, so never used): point the policy at it instead of generating.
    pub reuse_existing: bool,
}

/// What the topic needs from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStep {
    Create { partitions: i32 },
    Grow { from: i32, to: i32 },
}

/// The steps due now, applied in this order: TEK, topic, EDEKs, policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub create_tek: bool,
    pub rotate_tek: bool,
    pub topic: Option<TopicStep>,
    /// EDEKs (partition, version) wrapped under an older TEK version than the current one.
    /// After a rotation in this plan, the apply step recomputes this against the new version.
    pub rewrap: Vec<(i32, u32)>,
    pub keys: Vec<KeyStep>,
    /// Publish the policy (new key versions, or the policy's settings changed).
    pub publish_policy: bool,
    /// The policy to publish, current versions included.
    pub policy: Option<PolicyRecord>,
    /// When something will be due without any change: the next rollover by age or rotation.
    pub next_due: Option<SystemTime>,
    /// Partitions the topic has beyond the spec (spec.partitions cannot shrink a topic).
    pub extra_partitions: Option<i32>,
    /// EDEKs (partition, version) no retained record needs, to delete on request.
    pub prune: Vec<(i32, u32)>,
}

impl Plan {
    /// Whether applying this plan writes anything anywhere.
    pub fn is_noop(&self) -> bool {
        !self.create_tek
            && !self.rotate_tek
            && self.topic.is_none()
            && self.rewrap.is_empty()
            && self.keys.is_empty()
            && !self.publish_policy
            && self.prune.is_empty()
    }
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Conflict(#[from] PolicyConflict),
    /// A partition's key versions reached the largest version number: refusing is the only
    /// safe answer (a wrapped counter would reuse version numbers).
    #[error(
        "partition {partition} of topic {topic} has used every DEK version number (up to {max}); it cannot roll over again",
        max = u32::MAX
    )]
    VersionsExhausted { topic: String, partition: i32 },
}

/// The topic is already encrypted by someone else: we must not touch it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "topic {topic} is already encrypted under {found_kind} TEK '{found_tek}' (this object wants {wanted_kind} TEK '{wanted_tek}'): another EncryptedTopic or a manual setup owns it"
)]
pub struct PolicyConflict {
    pub topic: String,
    pub found_kind: String,
    pub found_tek: String,
    pub wanted_kind: String,
    pub wanted_tek: String,
}

pub fn to_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// EDEKs wrapped under another TEK version than `latest` (none when the KMS has no versions).
pub fn stale_edeks<'a>(
    edeks: impl IntoIterator<Item = &'a EdekRecord>,
    latest: Option<&str>,
) -> Vec<(i32, u32)> {
    let Some(latest) = latest else {
        return Vec::new();
    };
    edeks
        .into_iter()
        .filter(|e| e.tek_version.as_deref() != Some(latest))
        .map(|e| (e.partition, e.version))
        .collect()
}

/// Decides what is due. `now` is passed in so tests control time.
///
/// `observed.keys` holds only records the operator's signature verified: nothing another
/// party wrote to the key topic can become a version, be re-wrapped or be pointed at.
pub fn plan(desired: &Desired, observed: &Observed, now: SystemTime) -> Result<Plan, PlanError> {
    if let Some(existing) = &observed.keys.policy
        && (existing.provider.tek != desired.provider.tek
            || existing.provider.kind != desired.provider.kind)
    {
        return Err(PolicyConflict {
            topic: desired.topic.clone(),
            found_kind: existing.provider.kind.clone(),
            found_tek: existing.provider.tek.clone(),
            wanted_kind: desired.provider.kind.clone(),
            wanted_tek: desired.provider.tek.clone(),
        }
        .into());
    }
    let mut plan = Plan {
        create_tek: observed.tek.is_none(),
        ..Plan::default()
    };

    // TEK rotation: due a period after the last one; the first period counts from creation.
    if let Some(period) = desired.tek_rotation
        && !plan.create_tek
    {
        let due = observed.last_tek_rotation.map(|last| last + period);
        match due {
            Some(due) if due <= now => plan.rotate_tek = true,
            Some(due) => plan.next_due = earliest(plan.next_due, due),
            // Adopted TEK with no record of its last rotation: start counting now.
            None => plan.next_due = earliest(plan.next_due, now + period),
        }
    }
    // Rotation on request: once, while the last rotation is older than the request (compared
    // in whole seconds, as status records the rotation).
    if let Some(request) = &desired.rotate_request
        && !plan.create_tek
        && !plan.rotate_tek
    {
        let at = from_millis(request.at_ms);
        if at > now {
            plan.next_due = earliest(plan.next_due, at);
        } else if observed
            .last_tek_rotation
            .is_none_or(|last| to_millis(last).div_euclid(1000) < request.at_ms.div_euclid(1000))
        {
            plan.rotate_tek = true;
        }
    }
    if !plan.create_tek && !plan.rotate_tek {
        let latest = observed
            .tek
            .as_ref()
            .and_then(|t| t.latest_version.as_deref());
        plan.rewrap = stale_edeks(observed.keys.edeks.iter().map(|e| &**e), latest);
    }

    // Topic: create, or grow; never shrink.
    let partitions = match observed.topic_partitions {
        None => {
            plan.topic = Some(TopicStep::Create {
                partitions: desired.partitions,
            });
            desired.partitions
        }
        Some(n) if n < desired.partitions => {
            plan.topic = Some(TopicStep::Grow {
                from: n,
                to: desired.partitions,
            });
            desired.partitions
        }
        Some(n) => {
            if n > desired.partitions {
                plan.extra_partitions = Some(n);
            }
            n
        }
    };

    // Keys: every partition needs a current DEK, rolled over by age or count.
    let current = observed
        .keys
        .policy
        .as_ref()
        .map(|p| p.current_versions.clone())
        .unwrap_or_default();
    let mut by_partition: BTreeMap<i32, BTreeMap<u32, &EdekRecord>> = BTreeMap::new();
    for e in &observed.keys.edeks {
        by_partition
            .entry(e.partition)
            .or_default()
            .insert(e.version, e);
    }
    let mut versions = current.clone();
    for partition in 0..partitions {
        let stored = by_partition.get(&partition);
        let cur = current.get(&partition).copied();
        let cur_edek = cur.and_then(|v| stored.and_then(|s| s.get(&v)).copied());
        let trigger = match cur_edek {
            // No current key, or the policy names a version whose EDEK is gone: provision.
            None => Some(Trigger::Initial),
            Some(edek) => {
                let age_due = from_millis(edek.created_at_ms) + desired.dek_max_age;
                let written = observed
                    .end_offsets
                    .get(&partition)
                    .map(|end| end - edek.created_at_offset.unwrap_or(0))
                    .unwrap_or(0);
                if age_due <= now {
                    Some(Trigger::Age)
                } else if u64::try_from(written).unwrap_or(0) >= desired.dek_max_records {
                    Some(Trigger::Count)
                } else if requested(desired, partition, edek, now) {
                    Some(Trigger::Requested)
                } else {
                    plan.next_due = earliest(plan.next_due, age_due);
                    if let Some(r) = &desired.rollover_request
                        && from_millis(r.at_ms) > now
                    {
                        plan.next_due = earliest(plan.next_due, from_millis(r.at_ms));
                    }
                    None
                }
            }
        };
        let Some(trigger) = trigger else { continue };
        let highest = stored.and_then(|s| s.iter().next_back());
        let exhausted = || PlanError::VersionsExhausted {
            topic: desired.topic.clone(),
            partition,
        };
        // An EDEK above the current version was written before a crash and never pointed at:
        // reuse it, but only if it is under this object's TEK (else go above it). A fresh
        // version never lands on a record key the key topic already holds in a refused record
        // (compaction would drop what is there).
        let fresh_above = |v: u32| {
            let mut next = v.checked_add(1);
            while let Some(n) = next
                && observed.keys.occupied.contains(&(partition, n))
            {
                next = n.checked_add(1);
            }
            next.ok_or_else(exhausted)
        };
        let (version, reuse_existing) = match (highest, cur) {
            (Some((&h, edek)), c)
                if c.is_none_or(|c| h > c) && edek.tek == desired.provider.tek =>
            {
                (h, true)
            }
            (Some((&h, _)), c) => (fresh_above(h.max(c.unwrap_or(0)))?, false),
            (None, Some(c)) => (fresh_above(c)?, false),
            (None, None) => (fresh_above(0)?, false),
        };
        versions.insert(partition, version);
        plan.keys.push(KeyStep {
            partition,
            version,
            trigger,
            reuse_existing,
        });
    }

    // Pruning on request, against the versions in force before this plan's new ones (which
    // only raise the current versions: nothing it would keep becomes unused).
    let requested = match &desired.prune_request {
        Some(r) if from_millis(r.at_ms) > now => {
            plan.next_due = earliest(plan.next_due, from_millis(r.at_ms));
            false
        }
        Some(_) => true,
        None => false,
    };
    if requested || desired.prune_unused {
        plan.prune = crate::plan::prunable(observed, &current);
    }

    let policy = PolicyRecord {
        topic: desired.topic.clone(),
        provider: desired.provider.clone(),
        engine: desired.engine.clone(),
        plaintext: desired.plaintext,
        max_records_per_dek: desired.max_records_per_dek,
        current_versions: versions,
    };
    plan.publish_policy = observed.keys.policy.as_deref() != Some(&policy);
    plan.policy = Some(policy);
    Ok(plan)
}

/// EDEKs no retained record needs (`kafka_e2ee_client::inventory`), given the current versions.
pub fn prunable(observed: &Observed, current: &BTreeMap<i32, u32>) -> Vec<(i32, u32)> {
    kafka_e2ee_client::inventory::inventory(
        observed.keys.edeks.iter().map(|e| &**e),
        current,
        &observed.log_start,
    )
    .unused()
}

/// Whether an on-demand rollover asks for a new DEK on `partition`: its time has come, it names
/// the partition (or all), and the current DEK is older than it (so it is honoured once).
fn requested(desired: &Desired, partition: i32, current: &EdekRecord, now: SystemTime) -> bool {
    desired.rollover_request.as_ref().is_some_and(|r| {
        from_millis(r.at_ms) <= now
            && r.partitions.as_ref().is_none_or(|p| p.contains(&partition))
            && current.created_at_ms < r.at_ms
    })
}

fn earliest(a: Option<SystemTime>, b: SystemTime) -> Option<SystemTime> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Current versions summarised: `v3`, or `v2-v5`.
pub fn summarize_versions(versions: &BTreeMap<i32, u32>) -> Option<(u32, u32, String)> {
    let set: BTreeSet<u32> = versions.values().copied().collect();
    let (min, max) = (*set.first()?, *set.last()?);
    let summary = if min == max {
        format!("v{min}")
    } else {
        format!("v{min}-v{max}")
    };
    Some((min, max, summary))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use kafka_e2ee_client::key_records::PlaintextPolicy;
    use kafka_e2ee_client::provider::{DekCommitment, Edek};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    /// A two-partition Vault topic without TEK rotation (the status tests start from it).
    pub(crate) fn desired() -> Desired {
        Desired {
            topic: "orders".into(),
            partitions: 2,
            replicas: None,
            config: BTreeMap::new(),
            provider: ProviderRef {
                kind: "vault".into(),
                tek: "tek".into(),
                config: BTreeMap::new(),
            },
            engine: "AES-256-GCM".into(),
            plaintext: PlaintextPolicy::Reject,
            max_records_per_dek: 1 << 32,
            dek_max_age: 24 * HOUR,
            dek_max_records: 1000,
            tek_rotation: None,
            owner: Owner::default(),
            rollover_request: None,
            rotate_request: None,
            prune_request: None,
            prune_unused: false,
        }
    }

    fn tek(version: &str) -> Option<TekInfo> {
        Some(TekInfo {
            tek: "tek".into(),
            latest_version: Some(version.into()),
            min_decryption_version: None,
        })
    }

    fn edek(partition: i32, version: u32, age: Duration, offset: i64) -> Arc<EdekRecord> {
        Arc::new(EdekRecord {
            topic: "orders".into(),
            partition,
            version,
            tek: "tek".into(),
            tek_version: Some("1".into()),
            edek: Edek(vec![1]),
            commitment: DekCommitment([0; 32]),
            created_at_ms: to_millis(now() - age),
            created_at_offset: Some(offset),
        })
    }

    /// A settled topic: TEK v1, 2 partitions at version 1, created an hour ago at offset 0.
    fn settled() -> Observed {
        let d = desired();
        let versions = BTreeMap::from([(0, 1), (1, 1)]);
        Observed {
            tek: tek("1"),
            last_tek_rotation: Some(now() - HOUR),
            topic_partitions: Some(2),
            end_offsets: BTreeMap::from([(0, 10), (1, 10)]),
            log_start: BTreeMap::from([(0, 0), (1, 0)]),
            keys: TopicKeysSnapshot {
                policy: Some(Arc::new(PolicyRecord {
                    topic: d.topic,
                    provider: d.provider,
                    engine: d.engine,
                    plaintext: d.plaintext,
                    max_records_per_dek: d.max_records_per_dek,
                    current_versions: versions,
                })),
                edeks: vec![edek(0, 1, HOUR, 0), edek(1, 1, HOUR, 0)],
                occupied: BTreeSet::new(),
            },
        }
    }

    fn step(partition: i32, version: u32, trigger: Trigger, reuse: bool) -> KeyStep {
        KeyStep {
            partition,
            version,
            trigger,
            reuse_existing: reuse,
        }
    }

    #[test]
    fn an_empty_world_gets_everything_in_order() {
        let p = plan(&desired(), &Observed::default(), now()).unwrap();
        assert!(p.create_tek);
        assert_eq!(p.topic, Some(TopicStep::Create { partitions: 2 }));
        assert_eq!(
            p.keys,
            vec![
                step(0, 1, Trigger::Initial, false),
                step(1, 1, Trigger::Initial, false)
            ]
        );
        assert!(p.publish_policy);
        assert_eq!(
            p.policy.unwrap().current_versions,
            BTreeMap::from([(0, 1), (1, 1)])
        );
    }

    #[test]
    fn a_settled_topic_plans_nothing_and_wakes_for_the_next_rollover() {
        let p = plan(&desired(), &settled(), now()).unwrap();
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(p.next_due, Some(now() - HOUR + 24 * HOUR));
    }

    #[test]
    fn rollover_triggers_by_age_and_by_count_per_partition() {
        let mut o = settled();
        o.keys.edeks = vec![edek(0, 1, 25 * HOUR, 0), edek(1, 1, HOUR, 0)];
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.keys, vec![step(0, 2, Trigger::Age, false)]);
        assert_eq!(
            p.policy.unwrap().current_versions,
            BTreeMap::from([(0, 2), (1, 1)])
        );

        let mut o = settled();
        o.end_offsets = BTreeMap::from([(0, 999), (1, 1500)]);
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.keys, vec![step(1, 2, Trigger::Count, false)]);

        // Counting starts at the DEK's creation offset, not at 0.
        o.keys.edeks = vec![edek(0, 1, HOUR, 0), edek(1, 1, HOUR, 600)];
        assert!(plan(&desired(), &o, now()).unwrap().is_noop());
    }

    #[test]
    fn new_partitions_get_keys_and_the_topic_grows_but_never_shrinks() {
        let mut d = desired();
        d.partitions = 3;
        let p = plan(&d, &settled(), now()).unwrap();
        assert_eq!(p.topic, Some(TopicStep::Grow { from: 2, to: 3 }));
        assert_eq!(p.keys, vec![step(2, 1, Trigger::Initial, false)]);

        d.partitions = 1;
        let p = plan(&d, &settled(), now()).unwrap();
        assert_eq!(p.topic, None);
        assert_eq!(p.extra_partitions, Some(2));
        assert!(p.is_noop(), "both existing partitions keep their keys");
    }

    #[test]
    fn an_edek_written_before_a_crash_is_reused_not_duplicated() {
        // Crash after the EDEKs of a rollover, before the policy: v2 exists, unreferenced.
        let mut o = settled();
        o.keys.edeks = vec![
            edek(0, 1, 25 * HOUR, 0),
            edek(0, 2, Duration::from_secs(1), 0),
            edek(1, 1, HOUR, 0),
        ];
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.keys, vec![step(0, 2, Trigger::Age, true)]);
        // Crash during first provisioning: EDEKs exist, no policy at all.
        let mut o = Observed {
            tek: tek("1"),
            topic_partitions: Some(2),
            ..Observed::default()
        };
        o.keys.edeks = vec![edek(0, 1, HOUR, 0)];
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(
            p.keys,
            vec![
                step(0, 1, Trigger::Initial, true),
                step(1, 1, Trigger::Initial, false)
            ]
        );
    }

    #[test]
    fn an_older_version_above_none_is_never_reissued() {
        // The policy names v3; v1..v3 are stored; rollover must be v4, never an existing one.
        let mut o = settled();
        o.keys.edeks = vec![
            edek(0, 1, 99 * HOUR, 0),
            edek(0, 3, 25 * HOUR, 0),
            edek(0, 2, 50 * HOUR, 0),
            edek(1, 1, HOUR, 0),
        ];
        if let Some(policy) = &mut o.keys.policy {
            Arc::make_mut(policy).current_versions.insert(0, 3);
        }
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.keys, vec![step(0, 4, Trigger::Age, false)]);
    }

    #[test]
    fn version_numbers_never_wrap_and_foreign_teks_are_never_reused() {
        // The current version is the last number there is: refuse, do not wrap to 0.
        let mut o = settled();
        o.keys.edeks = vec![edek(0, u32::MAX, 25 * HOUR, 0), edek(1, 1, HOUR, 0)];
        if let Some(policy) = &mut o.keys.policy {
            Arc::make_mut(policy).current_versions.insert(0, u32::MAX);
        }
        assert_eq!(
            plan(&desired(), &o, now()).unwrap_err(),
            PlanError::VersionsExhausted {
                topic: "orders".into(),
                partition: 0
            }
        );
        // An unreferenced higher version under another TEK (an earlier life of the topic) is
        // not adopted: the next version goes above it.
        let mut o = settled();
        let mut foreign = (*edek(0, 5, Duration::from_secs(1), 0)).clone();
        foreign.tek = "another-tek".into();
        o.keys.edeks = vec![
            edek(0, 1, 25 * HOUR, 0),
            Arc::new(foreign),
            edek(1, 1, HOUR, 0),
        ];
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.keys, vec![step(0, 6, Trigger::Age, false)]);
        // Record keys the key topic holds in refused records (unsigned, or from before
        // signing) are never written over: the next versions skip them.
        let mut o = settled();
        o.keys.edeks = vec![edek(0, 1, 25 * HOUR, 0), edek(1, 1, HOUR, 0)];
        o.keys.occupied = BTreeSet::from([(0, 2), (0, 3), (1, 7)]);
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.keys, vec![step(0, 4, Trigger::Age, false)]);
        let o = Observed {
            keys: TopicKeysSnapshot {
                occupied: BTreeSet::from([(0, 1)]),
                ..TopicKeysSnapshot::default()
            },
            ..Observed::default()
        };
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(
            p.keys,
            vec![
                step(0, 2, Trigger::Initial, false),
                step(1, 1, Trigger::Initial, false)
            ]
        );
    }

    #[test]
    fn tek_rotation_is_scheduled_and_stale_edeks_rewrapped() {
        let mut d = desired();
        d.tek_rotation = Some(2 * HOUR);
        let p = plan(&d, &settled(), now()).unwrap();
        assert!(!p.rotate_tek);
        assert_eq!(
            p.next_due,
            Some(now() + HOUR),
            "rotation due before rollover"
        );

        let mut o = settled();
        o.last_tek_rotation = Some(now() - 3 * HOUR);
        let p = plan(&d, &o, now()).unwrap();
        assert!(p.rotate_tek);
        assert!(p.rewrap.is_empty(), "computed after the rotation");

        // The KMS is at v2 (rotated elsewhere, or before a crash): v1 wrappings are stale.
        let mut o = settled();
        o.tek = tek("2");
        let p = plan(&desired(), &o, now()).unwrap();
        assert_eq!(p.rewrap, vec![(0, 1), (1, 1)]);
        assert!(!p.publish_policy);
    }

    #[test]
    fn a_changed_setting_republishes_the_policy_without_new_keys() {
        let mut d = desired();
        d.plaintext = PlaintextPolicy::Allow;
        let p = plan(&d, &settled(), now()).unwrap();
        assert!(p.keys.is_empty());
        assert!(p.publish_policy);
    }

    #[test]
    fn a_topic_encrypted_under_another_tek_is_a_conflict() {
        let mut d = desired();
        d.provider.tek = "someone-elses".into();
        let PlanError::Conflict(err) = plan(&d, &settled(), now()).unwrap_err() else {
            panic!("not a conflict")
        };
        assert_eq!(err.found_tek, "tek");
        assert_eq!(err.wanted_tek, "someone-elses");
    }

    #[test]
    fn versions_are_summarised() {
        assert_eq!(summarize_versions(&BTreeMap::new()), None);
        assert_eq!(
            summarize_versions(&BTreeMap::from([(0, 3), (1, 3)])),
            Some((3, 3, "v3".into()))
        );
        assert_eq!(
            summarize_versions(&BTreeMap::from([(0, 2), (1, 5), (2, 3)])),
            Some((2, 5, "v2-v5".into()))
        );
    }

    fn request(at: SystemTime, partitions: Option<&[i32]>) -> Option<Request> {
        Some(Request {
            raw: "t".into(),
            at_ms: to_millis(at),
            partitions: partitions.map(|p| p.iter().copied().collect()),
        })
    }

    /// `kubectl e2ee rollover`: the named partitions whose DEK predates the request roll once;
    /// a request already carried out (the DEK is newer) or still in the future does nothing
    /// now, the latter wakes the operator at its time.
    #[test]
    fn a_requested_rollover_rolls_the_named_partitions_once() {
        let observed = settled(); // DEKs created an hour ago
        let mut d = desired();
        d.rollover_request = request(now() - Duration::from_secs(60), None);
        let p = plan(&d, &observed, now()).unwrap();
        let rolled: Vec<_> = p
            .keys
            .iter()
            .map(|k| (k.partition, k.version, k.trigger))
            .collect();
        assert_eq!(
            rolled,
            [(0, 2, Trigger::Requested), (1, 2, Trigger::Requested)]
        );

        d.rollover_request = request(now() - Duration::from_secs(60), Some(&[1]));
        let p = plan(&d, &observed, now()).unwrap();
        assert_eq!(p.keys.iter().map(|k| k.partition).collect::<Vec<_>>(), [1]);

        // Carried out: the DEKs are newer than the request.
        d.rollover_request = request(now() - 2 * HOUR, None);
        assert!(plan(&d, &observed, now()).unwrap().keys.is_empty());

        // Ahead of the clock: nothing yet, woken at its time.
        let at = now() + Duration::from_secs(30);
        d.rollover_request = request(at, None);
        let p = plan(&d, &observed, now()).unwrap();
        assert!(p.keys.is_empty());
        assert_eq!(p.next_due, Some(at));
    }

    #[test]
    fn a_requested_rotation_rotates_once_in_whole_seconds() {
        let mut observed = settled(); // last rotation an hour ago
        let mut d = desired();
        let at = now() - Duration::from_millis(1500);
        d.rotate_request = request(at, None);
        let p = plan(&d, &observed, now()).unwrap();
        assert!(p.rotate_tek);
        assert!(
            p.rewrap.is_empty(),
            "re-wrapping follows the rotation in apply"
        );
        // Status records the rotation in whole seconds: a rotation in the request's own second
        // counts as carried out.
        observed.last_tek_rotation =
            Some(UNIX_EPOCH + Duration::from_secs(to_millis(at) as u64 / 1000));
        assert!(!plan(&d, &observed, now()).unwrap().rotate_tek);
        // In the future: not yet.
        observed.last_tek_rotation = Some(now() - HOUR);
        d.rotate_request = request(now() + Duration::from_secs(5), None);
        let p = plan(&d, &observed, now()).unwrap();
        assert!(!p.rotate_tek);
        assert_eq!(p.next_due, Some(now() + Duration::from_secs(5)));
    }

    #[test]
    fn pruning_on_request_names_only_versions_no_retained_record_needs() {
        let mut observed = settled(); // v1 of both partitions, current
        let mut d = desired();
        d.prune_request = request(now() - Duration::from_secs(1), None);
        observed.log_start = BTreeMap::from([(0, 5), (1, 5)]);
        assert!(
            plan(&d, &observed, now()).unwrap().prune.is_empty(),
            "current versions stay"
        );
        // Partition 0 at v3 (v2 from offset 4, v3 from offset 8), log start 9: v1 goes, v2 is
        // the margin.
        let mut keys = observed.keys.clone();
        keys.edeks.push(edek(0, 2, HOUR, 4));
        keys.edeks.push(edek(0, 3, HOUR, 8));
        let mut policy = (*keys.policy.clone().unwrap()).clone();
        policy.current_versions.insert(0, 3);
        keys.policy = Some(Arc::new(policy));
        observed.keys = keys;
        observed.log_start = BTreeMap::from([(0, 9), (1, 9)]);
        let p = plan(&d, &observed, now()).unwrap();
        assert_eq!(p.prune, [(0, 1)]);
        assert!(!p.is_noop());
        // Not requested: nothing, unless spec.keys.pruneUnused says always.
        d.prune_request = None;
        assert!(plan(&d, &observed, now()).unwrap().prune.is_empty());
        d.prune_unused = true;
        assert_eq!(plan(&d, &observed, now()).unwrap().prune, [(0, 1)]);
    }
}
