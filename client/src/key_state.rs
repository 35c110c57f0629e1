//! The key directory's state and the rules for changing it, without any I/O: what a verified
//! key record may change, and what it may not.
//!
//! - Only records whose signature verified get here (the reader checks it first).
//! - **Generations only grow.** Each slot (a topic's policy, one EDEK version) remembers the
//!   generation of the last record applied to it, also after a tombstone deleted it. A record
//!   whose generation is not higher is never applied: an older, validly signed policy or EDEK
//!   that the broker serves again (a rollback) changes nothing.
//! - Seeing an older record again is not always an attack: after the trusted keys change, the
//!   reader reads the key topic again from its start and meets the history of every slot.
//!   A lower generation at an offset *below* the one the slot was last applied from is that
//!   history; at an offset above it (or in another partition) it is a replay.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::FastMap;
use crate::key_records::{EdekRecord, KeyRecord, PolicyRecord};
use crate::signing::{KeyId, Signed};

/// One entry of a topic in the key topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Policy,
    Edek(i32, u32),
}

impl Slot {
    fn record_key(self, topic: &str) -> String {
        match self {
            Self::Policy => crate::key_records::policy_key(topic),
            Self::Edek(partition, version) => {
                crate::key_records::edek_key(topic, partition, version)
            }
        }
    }
}

/// Where a key record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// The last record applied to a slot.
#[derive(Debug, Clone, Copy)]
struct Applied {
    signed: Signed,
    at: Position,
}

/// What became of a verified record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    /// The same record again, or history met while reading the key topic again.
    Repeated,
    /// An older record served after a newer one: a rollback, refused.
    Stale,
}

/// Key records of one topic that were refused, for the operator to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectedKeyRecords {
    /// Every refusal counted against this topic.
    pub total: u64,
    /// Record key -> reason, for refused records that no later verified record of the same
    /// key superseded (at most [`MAX_PENDING_REJECTIONS`](crate::key_directory::MAX_PENDING_REJECTIONS);
    /// beyond that they are only counted).
    pub pending: BTreeMap<String, &'static str>,
}

/// Refused record keys remembered per topic; beyond this they are only counted.
pub const MAX_PENDING_REJECTIONS: usize = 64;

/// EDEK record keys remembered as occupied by refused records, across all topics.
pub const MAX_OCCUPIED: usize = 100_000;

#[derive(Default)]
pub(crate) struct TopicKeys {
    pub policy: Option<Arc<PolicyRecord>>,
    pub edeks: FastMap<(i32, u32), Arc<EdekRecord>>,
    /// Signer of each live record, for signing-key rotation.
    signers: FastMap<Slot, Signed>,
    /// The last record applied per slot, kept after deletion so nothing older comes back.
    applied: FastMap<Slot, Applied>,
    pub rejected: RejectedKeyRecords,
}

impl TopicKeys {
    pub fn signer_of_policy(&self) -> Option<Signed> {
        self.signers.get(&Slot::Policy).copied()
    }

    pub fn signer_of_edek(&self, partition: i32, version: u32) -> Option<Signed> {
        self.signers.get(&Slot::Edek(partition, version)).copied()
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub topics: FastMap<String, TopicKeys>,
    /// EDEK slots whose record key the key topic holds only in records that were refused
    /// (unsigned, forged, or written before signing existed). The operator never issues such
    /// a version: publishing under that record key would let compaction drop what is there.
    /// At most [`MAX_OCCUPIED`].
    pub occupied: FastMap<String, std::collections::BTreeSet<(i32, u32)>>,
    occupied_count: usize,
    pub caught_up: bool,
    /// Offset of the last record read, per key-topic partition.
    pub applied_through: FastMap<i32, i64>,
    /// The highest generation of any record applied.
    pub max_generation: u64,
}

impl State {
    /// Applies a verified record if its generation is new for its slot.
    pub fn ingest(&mut self, record: KeyRecord, signed: Signed, at: Position) -> Outcome {
        let (topic, slot) = match &record {
            KeyRecord::Policy(p) => (p.topic.as_str(), Slot::Policy),
            KeyRecord::PolicyDeleted { topic } => (topic.as_str(), Slot::Policy),
            KeyRecord::Edek(e) => (e.topic.as_str(), Slot::Edek(e.partition, e.version)),
            KeyRecord::EdekDeleted {
                topic,
                partition,
                version,
            } => (topic.as_str(), Slot::Edek(*partition, *version)),
        };
        let keys = match self.topics.get_mut(topic) {
            Some(keys) => keys,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        if let Some(previous) = keys.applied.get(&slot)
            && previous.signed.generation >= signed.generation
        {
            let same = previous.signed == signed;
            let history = previous.at.partition == at.partition && at.offset < previous.at.offset;
            return if same || history {
                Outcome::Repeated
            } else {
                Outcome::Stale
            };
        }
        keys.applied.insert(slot, Applied { signed, at });
        if let Slot::Edek(partition, version) = slot
            && let Some(occupied) = self.occupied.get_mut(topic)
            && occupied.remove(&(partition, version))
        {
            self.occupied_count -= 1;
        }
        // A refused record of this key is superseded by this one.
        if !keys.rejected.pending.is_empty() {
            keys.rejected.pending.remove(&slot.record_key(topic));
        }
        self.max_generation = self.max_generation.max(signed.generation);
        match record {
            KeyRecord::Policy(policy) => {
                keys.policy = Some(Arc::new(policy));
                keys.signers.insert(slot, signed);
            }
            KeyRecord::PolicyDeleted { .. } => {
                keys.policy = None;
                keys.signers.remove(&slot);
            }
            KeyRecord::Edek(edek) => {
                keys.edeks
                    .insert((edek.partition, edek.version), Arc::new(edek));
                keys.signers.insert(slot, signed);
            }
            KeyRecord::EdekDeleted {
                partition, version, ..
            } => {
                keys.edeks.remove(&(partition, version));
                keys.signers.remove(&slot);
            }
        }
        Outcome::Applied
    }

    /// Counts a refused record against its topic, if the topic is one the directory knows
    /// (so forged records naming made-up topics cannot grow the state).
    pub fn reject(&mut self, record_key: &str, reason: &'static str) {
        if let Some((topic, partition, version)) = crate::key_records::edek_slot_of_key(record_key)
            && self.occupied_count < MAX_OCCUPIED
            && self
                .occupied
                .entry(topic.to_owned())
                .or_default()
                .insert((partition, version))
        {
            self.occupied_count += 1;
        }
        let Some(topic) = crate::key_records::topic_of_key(record_key) else {
            return;
        };
        if let Some(keys) = self.topics.get_mut(topic) {
            keys.rejected.total += 1;
            let pending = &mut keys.rejected.pending;
            if pending.len() < MAX_PENDING_REJECTIONS || pending.contains_key(record_key) {
                pending.insert(record_key.to_owned(), reason);
            }
        }
    }

    /// Forgets what keys no longer trusted signed: live records, and the generations they set
    /// (so that what the remaining keys signed can be applied again when the key topic is
    /// read again). A compromised signing key's records, however high their generation, stop
    /// counting the moment it leaves the trusted configuration.
    pub fn forget_signers(&mut self, still_trusted: impl Fn(KeyId) -> bool) {
        for keys in self.topics.values_mut() {
            keys.applied.retain(|_, a| still_trusted(a.signed.signer));
            let gone: Vec<Slot> = keys
                .signers
                .iter()
                .filter(|(_, s)| !still_trusted(s.signer))
                .map(|(slot, _)| *slot)
                .collect();
            for slot in gone {
                keys.signers.remove(&slot);
                match slot {
                    Slot::Policy => keys.policy = None,
                    Slot::Edek(partition, version) => {
                        keys.edeks.remove(&(partition, version));
                    }
                }
            }
        }
    }

    /// Notes that a record was read (applied or not), for read-your-writes waiters. Never
    /// moves back (reading the key topic again starts from its beginning).
    pub fn mark_read(&mut self, at: Position) {
        let through = self
            .applied_through
            .entry(at.partition)
            .or_insert(at.offset);
        *through = (*through).max(at.offset);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::key_records::{PlaintextPolicy, ProviderRef};
    use crate::provider::{DekCommitment, Edek};

    fn signer() -> KeyId {
        crate::signing::SigningKey::generate().unwrap().0.id()
    }

    fn policy(plaintext: PlaintextPolicy) -> KeyRecord {
        KeyRecord::Policy(PolicyRecord {
            topic: "orders".into(),
            provider: ProviderRef {
                kind: "keystore".into(),
                tek: "tek".into(),
                config: BTreeMap::new(),
            },
            engine: "AES-256-GCM".into(),
            plaintext,
            max_records_per_dek: 10,
            current_versions: BTreeMap::from([(0, 1)]),
        })
    }

    fn edek(version: u32) -> KeyRecord {
        KeyRecord::Edek(EdekRecord {
            topic: "orders".into(),
            partition: 0,
            version,
            tek: "tek".into(),
            tek_version: None,
            edek: Edek(vec![1]),
            commitment: DekCommitment([0; 32]),
            created_at_ms: 0,
            created_at_offset: None,
        })
    }

    fn at(offset: i64) -> Position {
        Position {
            partition: 0,
            offset,
        }
    }

    fn plaintext_of(state: &State) -> Option<PlaintextPolicy> {
        state.topics["orders"].policy.as_ref().map(|p| p.plaintext)
    }

    #[test]
    fn a_newer_generation_replaces_an_older_one_never_the_reverse() {
        let k = signer();
        let s = |generation| Signed {
            signer: k,
            generation,
        };
        let mut state = State::default();
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Allow), s(1), at(0)),
            Outcome::Applied
        );
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Reject), s(2), at(1)),
            Outcome::Applied
        );
        // The broker serves the older policy again, at a new offset: refused.
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Allow), s(1), at(2)),
            Outcome::Stale
        );
        assert_eq!(plaintext_of(&state), Some(PlaintextPolicy::Reject));
        // The same record again is no attack; nor is history met on a re-read.
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Reject), s(2), at(3)),
            Outcome::Repeated
        );
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Allow), s(1), at(0)),
            Outcome::Repeated
        );
        assert_eq!(state.max_generation, 2);
    }

    #[test]
    fn a_tombstone_is_remembered_so_the_record_cannot_come_back() {
        let k = signer();
        let s = |generation| Signed {
            signer: k,
            generation,
        };
        let mut state = State::default();
        state.ingest(edek(1), s(5), at(0));
        assert!(state.topics["orders"].signer_of_edek(0, 1).is_some());
        let deleted = KeyRecord::EdekDeleted {
            topic: "orders".into(),
            partition: 0,
            version: 1,
        };
        assert_eq!(state.ingest(deleted.clone(), s(6), at(1)), Outcome::Applied);
        assert!(state.topics["orders"].edeks.is_empty());
        assert_eq!(state.topics["orders"].signer_of_edek(0, 1), None);
        assert_eq!(state.ingest(edek(1), s(5), at(2)), Outcome::Stale);
        assert!(state.topics["orders"].edeks.is_empty());
        // An older tombstone cannot delete a newer record either.
        state.ingest(edek(2), s(9), at(3));
        let old_delete = KeyRecord::EdekDeleted {
            topic: "orders".into(),
            partition: 0,
            version: 2,
        };
        assert_eq!(state.ingest(old_delete, s(8), at(4)), Outcome::Stale);
        assert_eq!(state.topics["orders"].edeks.len(), 1);
    }

    #[test]
    fn rejections_count_only_against_known_topics() {
        let mut state = State::default();
        state.reject("policy/made-up", "unsigned");
        assert!(
            state.topics.is_empty(),
            "forged topics do not grow the state"
        );
        state.ingest(
            edek(1),
            Signed {
                signer: signer(),
                generation: 1,
            },
            at(0),
        );
        state.reject("edek/orders/0/99", "unsigned");
        state.reject("not a key", "unsigned");
        assert_eq!(
            state.topics["orders"].rejected,
            RejectedKeyRecords {
                total: 1,
                pending: BTreeMap::from([("edek/orders/0/99".into(), "unsigned")]),
            }
        );
        // A verified record of the same key supersedes the refused one; the total stays.
        state.reject("edek/orders/0/1", "bad_signature");
        state.ingest(
            edek(1),
            Signed {
                signer: signer(),
                generation: 2,
            },
            at(1),
        );
        assert_eq!(state.topics["orders"].rejected.total, 2);
        assert_eq!(
            state.topics["orders"]
                .rejected
                .pending
                .keys()
                .collect::<Vec<_>>(),
            ["edek/orders/0/99"]
        );
    }

    #[test]
    fn forgetting_a_signer_drops_its_records_and_lets_older_ones_back() {
        let (ours, compromised) = (signer(), signer());
        let mut state = State::default();
        let old = Signed {
            signer: ours,
            generation: 1,
        };
        state.ingest(policy(PlaintextPolicy::Reject), old, at(0));
        // A compromised key signs a policy with a huge generation.
        let forged = Signed {
            signer: compromised,
            generation: u64::MAX,
        };
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Allow), forged, at(1)),
            Outcome::Applied
        );
        state.forget_signers(|k| k == ours);
        assert!(state.topics["orders"].policy.is_none());
        // Reading the key topic again brings the record of the still-trusted key back.
        assert_eq!(
            state.ingest(policy(PlaintextPolicy::Reject), old, at(0)),
            Outcome::Applied
        );
        assert_eq!(plaintext_of(&state), Some(PlaintextPolicy::Reject));
    }

    #[test]
    fn reads_are_marked_without_moving_back() {
        let mut state = State::default();
        state.mark_read(at(7));
        state.mark_read(at(3));
        assert_eq!(state.applied_through[&0], 7);
    }
}
