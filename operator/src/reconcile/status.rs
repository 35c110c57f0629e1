//! The status a reconciliation writes, as pure functions of what it found and did: unit-tested
//! without a cluster. Conditions keep their `lastTransitionTime` unless their status changes,
//! and every field is rounded to what the apiserver stores, so a settled object's status
//! compares equal and costs no write.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kafka_e2ee_client::key_directory::{RejectedKeyRecords, TopicKeysSnapshot};
use kafka_e2ee_crds::{
    EncryptedTopic, EncryptedTopicStatus, KeysStatus, RequestsStatus, TekStatus,
};

use super::failure::reason;
use crate::apply::{Applied, current_versions};
use crate::plan::{Desired, from_millis, summarize_versions};

/// The condition that says whether the topic's keys are in place.
pub const READY: &str = "Ready";
/// The condition that reports key records refused for this topic (unsigned, forged,
/// replayed): the topic keeps working on its verified records, but someone with write access
/// to the key topic tried something.
pub const KEY_RECORDS_VERIFIED: &str = "KeyRecordsVerified";
/// True while `kafka-e2ee.io/pause-reconciliation` holds the object; absent otherwise.
pub const PAUSED: &str = "Paused";
/// kstatus's abnormal-true conditions (what `flux --wait` and kstatus-based tools read): while
/// a failure is retried into success on its own, `Reconciling`; while only a person can fix
/// it, `Stalled`. Absent once converged, and while paused.
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// Whether the TEK was created for this object (so deletion with `Delete` destroys it).
pub const TEK_OWNED: &str = "TekOwned";
/// Deletion's progress: the last crypto-shredding step done, or why it cannot go on.
pub const DELETING: &str = "Deleting";

/// What a reconciliation that converged found and did.
pub struct Converged<'a> {
    pub desired: &'a Desired,
    /// The last TEK rotation status recorded, before this reconciliation.
    pub last_tek_rotation: Option<SystemTime>,
    pub applied: &'a Applied,
    /// The key topic's verified records of the topic, after applying.
    pub keys: &'a TopicKeysSnapshot,
    pub extra_partitions: Option<i32>,
    pub rejected: &'a RejectedKeyRecords,
    pub key_topic: &'a str,
    /// The uid the operator created the TEK for, when it is this object's.
    pub created_for: Option<&'a str>,
    /// The connection, `Kind/name`.
    pub connection: &'a str,
    /// The on-demand requests carried out.
    pub requests: RequestsStatus,
}

/// Kubernetes stores whole seconds: rounded so that a re-read status compares equal.
pub fn time(t: SystemTime) -> Option<Time> {
    Timestamp::try_from(t)
        .ok()
        .map(|ts| Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts)))
}

/// The status of a topic whose keys are in place (Ready, or PartitionsExceedSpec), with its
/// KeyRecordsVerified condition.
pub fn converged_status(
    obj: &EncryptedTopic,
    c: &Converged<'_>,
    now: SystemTime,
) -> EncryptedTopicStatus {
    let previous = obj.status.clone().unwrap_or_default();
    let desired = c.desired;
    let versions = current_versions(c.applied);
    // When each partition's current DEK was created.
    let current_created: Vec<SystemTime> = c
        .keys
        .edeks
        .iter()
        .filter(|e| versions.get(&e.partition) == Some(&e.version))
        .map(|e| from_millis(e.created_at_ms))
        .collect();
    let last_rollover = current_created.iter().max().copied();
    let next_rollover = current_created
        .iter()
        .map(|&created| created + desired.dek_max_age)
        .min();
    // Rotation is counted from the operator's last rotation or creation of the TEK; an adopted
    // TEK with no record starts counting now.
    let last_rotation = match c.last_tek_rotation {
        Some(last) if !c.applied.tek_rotated && !c.applied.tek_created => time(last),
        _ => time(now),
    };
    let next_rotation = desired
        .tek_rotation
        .zip(last_rotation.as_ref())
        .and_then(|(period, last)| time(SystemTime::from(last.0) + period));
    let (status_, reason_, message) = match c.extra_partitions {
        Some(n) => (
            "False",
            reason::PARTITIONS_EXCEED_SPEC,
            format!(
                "topic {} has {n} partitions, spec.partitions is {}: partitions never shrink; all {n} have keys",
                desired.topic, desired.partitions
            ),
        ),
        None => (
            "True",
            reason::READY,
            format!(
                "topic {} is encrypted; every partition has a current key",
                desired.topic
            ),
        ),
    };
    let generation = obj.metadata.generation;
    EncryptedTopicStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                &previous, READY, status_, reason_, &message, generation, now,
            ),
            verified_condition(&previous, desired, c, generation, now),
            owned_condition(&previous, desired, c, generation, now),
        ],
        topic: Some(desired.topic.clone()),
        tek: c.applied.tek.as_ref().map(|t| TekStatus {
            reference: t.tek.clone(),
            version: t.latest_version.clone(),
            last_rotation,
            next_rotation,
            created_for: c.created_for.map(str::to_owned),
            connection: Some(c.connection.to_owned()),
        }),
        keys: summarize_versions(&versions).map(|(min, max, summary)| KeysStatus {
            partitions: i32::try_from(versions.len()).unwrap_or(i32::MAX),
            min_version: min,
            max_version: max,
            summary,
            stored_edeks: u32::try_from(c.keys.edeks.len()).unwrap_or(u32::MAX),
        }),
        last_rollover: last_rollover.and_then(time),
        next_rollover: next_rollover.and_then(time),
        requests: (c.requests != RequestsStatus::default()).then(|| c.requests.clone()),
    }
}

/// The previous status with only the Ready condition replaced (for failures and pauses: the
/// last known keys, and the other conditions, stay visible).
pub fn with_ready(
    obj: &EncryptedTopic,
    status: &str,
    reason_: &str,
    message: &str,
    now: SystemTime,
) -> EncryptedTopicStatus {
    with_condition(obj, READY, status, reason_, message, now)
}

/// The previous status with only the condition `type_` replaced (or added).
pub fn with_condition(
    obj: &EncryptedTopic,
    type_: &str,
    status: &str,
    reason_: &str,
    message: &str,
    now: SystemTime,
) -> EncryptedTopicStatus {
    let previous = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let mut conditions = vec![condition(
        &previous, type_, status, reason_, message, generation, now,
    )];
    conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| c.type_ != type_)
            .cloned(),
    );
    EncryptedTopicStatus {
        observed_generation: generation,
        conditions,
        ..previous
    }
}

/// The status of a reconciliation that failed with `reason_`: Ready=False, and Stalled=True
/// (`stalls`) or Reconciling=True with the same reason and message; Paused gone.
pub fn failed(
    obj: &EncryptedTopic,
    reason_: &str,
    message: &str,
    stalls: bool,
    now: SystemTime,
) -> EncryptedTopicStatus {
    let mut status = with_ready(obj, "False", reason_, message, now);
    let (set, clear) = if stalls {
        (STALLED, RECONCILING)
    } else {
        (RECONCILING, STALLED)
    };
    status
        .conditions
        .retain(|c| ![PAUSED, set, clear].contains(&c.type_.as_str()));
    let previous = obj.status.clone().unwrap_or_default();
    status.conditions.insert(
        1,
        condition(
            &previous,
            set,
            "True",
            reason_,
            message,
            obj.metadata.generation,
            now,
        ),
    );
    status
}

/// The previous status with `Paused=True` added. Ready keeps what it said (so waits on it end
/// for a topic that was ready), or is `Unknown` if there was none; `observedGeneration` stays
/// the generation last reconciled, so a spec changed while paused is not reported as applied.
pub fn paused(obj: &EncryptedTopic, message: &str, now: SystemTime) -> EncryptedTopicStatus {
    let mut status = with_condition(obj, PAUSED, "True", reason::PAUSED, message, now);
    status
        .conditions
        .retain(|c| c.type_ != RECONCILING && c.type_ != STALLED);
    let previous = obj.status.as_ref();
    status.observed_generation = previous.and_then(|s| s.observed_generation);
    if find(previous, READY).is_none() {
        status.conditions.push(condition(
            &EncryptedTopicStatus::default(),
            READY,
            "Unknown",
            reason::PAUSED,
            "paused before it was ever reconciled",
            None,
            now,
        ));
    }
    status
}

/// The previous status recording that `tek` is about to be created for `uid` in
/// `connection` (written before the KMS call).
pub fn tek_claimed(
    obj: &EncryptedTopic,
    tek: &str,
    uid: &str,
    connection: &str,
    now: SystemTime,
) -> EncryptedTopicStatus {
    let previous = obj.status.clone().unwrap_or_default();
    EncryptedTopicStatus {
        tek: Some(TekStatus {
            reference: tek.to_owned(),
            created_for: Some(uid.to_owned()),
            connection: Some(connection.to_owned()),
            last_rotation: time(now),
            ..TekStatus::default()
        }),
        ..previous
    }
}

/// `TekOwned`: whether the operator created the TEK for this object. Deletion with `Delete`
/// destroys only such a TEK; an adopted one is named so that nobody is surprised later.
fn owned_condition(
    previous: &EncryptedTopicStatus,
    desired: &Desired,
    c: &Converged<'_>,
    generation: Option<i64>,
    now: SystemTime,
) -> Condition {
    let tek = &desired.provider.tek;
    let (status, reason_, message) = match c.created_for {
        Some(_) => (
            "True",
            reason::TEK_CREATED,
            format!(
                "TEK {tek} was created for this object; deletion with deletionPolicy Delete destroys it"
            ),
        ),
        None => (
            "False",
            reason::TEK_ADOPTED,
            format!(
                "TEK {tek} existed before this object and was adopted; deletion never destroys it (delete it in the KMS yourself if you mean to)"
            ),
        ),
    };
    condition(
        previous, TEK_OWNED, status, reason_, &message, generation, now,
    )
}

/// `KeyRecordsVerified`: True while no refused key record of the topic is pending; False
/// naming up to five of them (record key and reason) otherwise.
fn verified_condition(
    previous: &EncryptedTopicStatus,
    desired: &Desired,
    c: &Converged<'_>,
    generation: Option<i64>,
    now: SystemTime,
) -> Condition {
    let (topic, key_topic, pending) = (&desired.topic, c.key_topic, &c.rejected.pending);
    let (status, reason_, message) = if pending.is_empty() {
        (
            "True",
            reason::VERIFIED,
            format!("every key record of {topic} in {key_topic} in use is signed by the operator"),
        )
    } else {
        let named: Vec<String> = pending
            .iter()
            .take(5)
            .map(|(key, why)| format!("{key} ({why})"))
            .collect();
        let more = if pending.len() > named.len() {
            ", ..."
        } else {
            ""
        };
        (
            "False",
            reason::UNVERIFIED_KEY_RECORDS,
            format!(
                "{} record(s) for {topic} in {key_topic} were refused and ignored: {}{more}; someone with write access to the key topic wrote them (docs/security.md)",
                pending.len(),
                named.join(", "),
            ),
        )
    };
    condition(
        previous,
        KEY_RECORDS_VERIFIED,
        status,
        reason_,
        &message,
        generation,
        now,
    )
}

/// A condition of `type_`, its transition time kept from `previous` unless the status changed.
pub fn condition(
    previous: &EncryptedTopicStatus,
    type_: &str,
    status: &str,
    reason_: &str,
    message: &str,
    generation: Option<i64>,
    now: SystemTime,
) -> Condition {
    condition_among(
        &previous.conditions,
        type_,
        status,
        reason_,
        message,
        generation,
        now,
    )
}

/// [`condition`] for any object's conditions.
pub fn condition_among(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason_: &str,
    message: &str,
    generation: Option<i64>,
    now: SystemTime,
) -> Condition {
    let before = previous.iter().find(|c| c.type_ == type_);
    let last_transition_time = match before {
        Some(b) if b.status == status => b.last_transition_time.clone(),
        _ => time(now).unwrap_or(Time(Timestamp::UNIX_EPOCH)),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason_.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The condition of `type_` in a status, if any.
pub fn find<'a>(status: Option<&'a EncryptedTopicStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use kafka_e2ee_client::key_records::{EdekRecord, PolicyRecord};
    use kafka_e2ee_client::provider::{DekCommitment, Edek, TekInfo};
    use kafka_e2ee_crds::{EncryptedTopicSpec, KmsRef, KmsRefKind};

    use super::*;
    use crate::plan::to_millis;

    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn obj(generation: i64) -> EncryptedTopic {
        let mut o = EncryptedTopic::new(
            "orders",
            EncryptedTopicSpec::new(
                2,
                KmsRef {
                    kind: KmsRefKind::KmsConnection,
                    name: "vault".into(),
                },
            ),
        );
        o.metadata.generation = Some(generation);
        o
    }

    fn desired() -> Desired {
        Desired {
            tek_rotation: Some(48 * HOUR),
            ..crate::plan::tests::desired()
        }
    }

    fn applied(versions: &[(i32, u32)]) -> Applied {
        let d = desired();
        Applied {
            tek: Some(TekInfo {
                tek: "tek".into(),
                latest_version: Some("3".into()),
                min_decryption_version: None,
            }),
            policy: Some(PolicyRecord {
                topic: d.topic,
                provider: d.provider,
                engine: d.engine,
                plaintext: d.plaintext,
                max_records_per_dek: d.max_records_per_dek,
                current_versions: versions.iter().copied().collect(),
            }),
            ..Applied::default()
        }
    }

    fn keys(edeks: &[(i32, u32, Duration)]) -> TopicKeysSnapshot {
        TopicKeysSnapshot {
            edeks: edeks
                .iter()
                .map(|&(partition, version, age)| {
                    Arc::new(EdekRecord {
                        topic: "orders".into(),
                        partition,
                        version,
                        tek: "tek".into(),
                        tek_version: Some("3".into()),
                        edek: Edek(vec![1]),
                        commitment: DekCommitment([0; 32]),
                        created_at_ms: to_millis(now() - age),
                        created_at_offset: Some(0),
                    })
                })
                .collect(),
            ..TopicKeysSnapshot::default()
        }
    }

    #[test]
    fn a_converged_topic_is_ready_with_its_keys_and_next_dates() {
        let d = desired();
        let (a, k, r) = (
            applied(&[(0, 2), (1, 3)]),
            keys(&[(0, 1, 50 * HOUR), (0, 2, 10 * HOUR), (1, 3, 2 * HOUR)]),
            RejectedKeyRecords::default(),
        );
        let c = Converged {
            desired: &d,
            last_tek_rotation: Some(now() - HOUR),
            applied: &a,
            keys: &k,
            extra_partitions: None,
            rejected: &r,
            key_topic: "__encryption_keys",
            created_for: Some("uid-1"),
            connection: "KmsConnection/vault",
            requests: RequestsStatus::default(),
        };
        let s = converged_status(&obj(4), &c, now());
        assert_eq!(s.observed_generation, Some(4));
        let ready = find(Some(&s), READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Ready")
        );
        let verified = find(Some(&s), KEY_RECORDS_VERIFIED).unwrap();
        assert_eq!(verified.reason, "Verified");
        let keys = s.keys.clone().unwrap();
        assert_eq!((keys.summary.as_str(), keys.stored_edeks), ("v2-v3", 3));
        // Next rollover: the older current DEK (10 h) plus 24 h; last: the newest current one.
        assert_eq!(s.next_rollover, time(now() + 14 * HOUR));
        assert_eq!(s.last_rollover, time(now() - 2 * HOUR));
        let owned = find(Some(&s), TEK_OWNED).unwrap();
        assert_eq!(
            (owned.status.as_str(), owned.reason.as_str()),
            ("True", "Created")
        );
        let tek = s.tek.unwrap();
        assert_eq!(tek.created_for.as_deref(), Some("uid-1"));
        assert_eq!(tek.connection.as_deref(), Some("KmsConnection/vault"));
        assert_eq!(tek.last_rotation, time(now() - HOUR));
        assert_eq!(tek.next_rotation, time(now() + 47 * HOUR));
    }

    #[test]
    fn refused_records_make_the_verified_condition_false_naming_them() {
        let d = desired();
        let (a, k) = (applied(&[(0, 1), (1, 1)]), keys(&[]));
        let r = RejectedKeyRecords {
            total: 9,
            pending: (0..7)
                .map(|v| (format!("edek/orders/0/{}", 90 + v), "unsigned"))
                .collect(),
        };
        let c = Converged {
            desired: &d,
            last_tek_rotation: None,
            applied: &a,
            keys: &k,
            extra_partitions: Some(3),
            rejected: &r,
            key_topic: "__encryption_keys",
            created_for: None,
            connection: "KmsConnection/vault",
            requests: RequestsStatus::default(),
        };
        let s = converged_status(&obj(1), &c, now());
        let owned = find(Some(&s), TEK_OWNED).unwrap();
        assert_eq!(
            (owned.status.as_str(), owned.reason.as_str()),
            ("False", "Adopted")
        );
        assert_eq!(s.tek.as_ref().unwrap().created_for, None);
        let ready = find(Some(&s), READY).unwrap();
        assert_eq!(ready.reason, "PartitionsExceedSpec");
        let verified = find(Some(&s), KEY_RECORDS_VERIFIED).unwrap();
        assert_eq!(
            (verified.status.as_str(), verified.reason.as_str()),
            ("False", "UnverifiedKeyRecords")
        );
        assert!(
            verified.message.starts_with("7 record(s) for orders"),
            "{}",
            verified.message
        );
        assert!(
            verified
                .message
                .contains("edek/orders/0/94 (unsigned), ..."),
            "{}",
            verified.message
        );
        assert!(!verified.message.contains("/95"), "five named at most");
    }

    #[test]
    fn pausing_adds_its_own_condition_and_claims_no_new_generation() {
        // Never reconciled: Ready is Unknown, nothing observed.
        let fresh = obj(1);
        let s = paused(&fresh, "paused", now());
        let p = find(Some(&s), PAUSED).unwrap();
        assert_eq!((p.status.as_str(), p.reason.as_str()), ("True", "Paused"));
        assert_eq!(find(Some(&s), READY).unwrap().status, "Unknown");
        assert_eq!(s.observed_generation, None);

        // Ready at generation 1, spec changed (generation 2) while paused: Ready keeps its
        // value and time, and generation 2 is not reported as observed.
        let ready_at = now() - HOUR;
        let mut o = obj(2);
        o.status = Some(EncryptedTopicStatus {
            observed_generation: Some(1),
            conditions: vec![condition(
                &EncryptedTopicStatus::default(),
                READY,
                "True",
                reason::READY,
                "ok",
                Some(1),
                ready_at,
            )],
            ..EncryptedTopicStatus::default()
        });
        let s = paused(&o, "paused", now());
        let ready = find(Some(&s), READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Ready")
        );
        assert_eq!(ready.last_transition_time, time(ready_at).unwrap());
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(find(Some(&s), PAUSED).unwrap().status, "True");
    }

    #[test]
    fn a_failure_is_reconciling_or_stalled_as_kstatus_reads_them() {
        let o = obj(3);
        let s = failed(&o, "KmsUnavailable", "vault: timeout", false, now());
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING]);
        let r = find(Some(&s), RECONCILING).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "KmsUnavailable")
        );
        // The same object later fails for good: Stalled replaces Reconciling.
        let o = failed_obj(&o, &s);
        let s = failed(&o, "InvalidSpec", "spec.partitions", true, now());
        assert!(find(Some(&s), RECONCILING).is_none());
        assert_eq!(find(Some(&s), STALLED).unwrap().reason, "InvalidSpec");
        // Pausing ends both.
        let s = paused(&failed_obj(&o, &s), "paused", now());
        assert!(find(Some(&s), STALLED).is_none() && find(Some(&s), RECONCILING).is_none());
    }

    fn failed_obj(o: &EncryptedTopic, status: &EncryptedTopicStatus) -> EncryptedTopic {
        let mut o = o.clone();
        o.status = Some(status.clone());
        o
    }

    #[test]
    fn transition_times_move_only_when_a_status_changes_and_other_conditions_stay() {
        let earlier = now() - HOUR;
        let mut o = obj(2);
        let d = desired();
        let (a, k, r) = (
            applied(&[(0, 1), (1, 1)]),
            keys(&[]),
            RejectedKeyRecords::default(),
        );
        let c = Converged {
            desired: &d,
            last_tek_rotation: None,
            applied: &a,
            keys: &k,
            extra_partitions: None,
            rejected: &r,
            key_topic: "k",
            created_for: Some("u"),
            connection: "KmsConnection/vault",
            requests: RequestsStatus::default(),
        };
        o.status = Some(converged_status(&o, &c, earlier));
        // Ready again later: same transition time.
        let again = converged_status(&o, &c, now());
        assert_eq!(
            find(Some(&again), READY).unwrap().last_transition_time,
            time(earlier).unwrap()
        );
        // A failure replaces Ready only, with a new transition time, and keeps the rest.
        let failed = with_ready(&o, "False", "KmsUnavailable", "down", now());
        assert_eq!(
            find(Some(&failed), READY).unwrap().last_transition_time,
            time(now()).unwrap()
        );
        assert!(find(Some(&failed), KEY_RECORDS_VERIFIED).is_some());
        assert!(find(Some(&failed), TEK_OWNED).is_some());
        // Claiming a TEK before creating it keeps everything else.
        let claimed = tek_claimed(
            &failed_obj(&o, &failed),
            "tek-2",
            "u",
            "KmsConnection/vault",
            now(),
        );
        assert_eq!(claimed.conditions, failed.conditions);
        assert_eq!(
            claimed.tek.as_ref().unwrap().created_for.as_deref(),
            Some("u")
        );
        assert_eq!(
            failed.keys,
            o.status.as_ref().unwrap().keys,
            "last known keys stay"
        );
    }
}
