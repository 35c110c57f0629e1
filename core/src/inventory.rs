//! Which key versions retained data still needs: the pure rule behind `kubectl e2ee inventory`
//! and the operator's pruning (docs/cli.md "What can be deleted").
//!
//! Version v of a partition seals the records from its EDEK's `createdAtOffset` (the
//! partition's end offset when the DEK was made) until producers switch to v+1, shortly after
//! v+1's `createdAtOffset`. So v is needed while v+1 started after the partition's log start
//! offset (some retained record may be v's), and always when it is the current version. A
//! producer may lag behind a new policy, so one more version below the oldest needed is kept
//! (the safety margin). A version whose successor's start is unknown is kept.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::key_records::EdekRecord;

/// One stored key version of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredVersion {
    pub version: u32,
    /// The first offset it may have sealed (`createdAtOffset`), when recorded.
    pub first_offset: Option<i64>,
    /// The TEK version that wraps it, where the KMS has versions.
    pub tek_version: Option<String>,
}

/// The key versions of one partition, against its retained data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionInventory {
    pub partition: i32,
    /// The partition's log start offset (`None`: the partition does not exist or is unknown,
    /// and every version is kept).
    pub log_start: Option<i64>,
    pub current: Option<u32>,
    /// Versions retained data may need (the current one, and the safety margin, included).
    pub needed: Vec<StoredVersion>,
    /// Versions no retained record can need: their EDEKs may be deleted.
    pub unused: Vec<StoredVersion>,
}

/// The inventory of a topic: per partition, and the TEK versions the EDEKs kept still need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub partitions: Vec<PartitionInventory>,
    pub tek_versions_needed: BTreeSet<String>,
}

impl Inventory {
    /// (partition, version) of every unused EDEK.
    pub fn unused(&self) -> Vec<(i32, u32)> {
        self.partitions
            .iter()
            .flat_map(|p| p.unused.iter().map(move |v| (p.partition, v.version)))
            .collect()
    }
}

/// The inventory of `edeks` (one topic's), given its policy's current versions and each
/// partition's log start offset.
pub fn inventory<'a>(
    edeks: impl IntoIterator<Item = &'a EdekRecord>,
    current: &BTreeMap<i32, u32>,
    log_start: &BTreeMap<i32, i64>,
) -> Inventory {
    let mut by_partition: BTreeMap<i32, BTreeMap<u32, &EdekRecord>> = BTreeMap::new();
    for e in edeks {
        by_partition
            .entry(e.partition)
            .or_default()
            .insert(e.version, e);
    }
    let mut partitions = Vec::new();
    let mut tek_versions_needed = BTreeSet::new();
    for (partition, versions) in by_partition {
        let start = log_start.get(&partition).copied();
        let cur = current.get(&partition).copied();
        let list: Vec<&EdekRecord> = versions.values().copied().collect();
        // Needed by range: the current version and above (or everything without a policy or
        // a known log start), and each version whose successor started after the log start
        // (or at an unknown offset).
        let in_range = |i: usize, e: &EdekRecord| {
            let Some(start) = start else { return true };
            if cur.is_none_or(|c| e.version >= c) {
                return true;
            }
            list.get(i + 1)
                .is_none_or(|next| next.created_at_offset.is_none_or(|s| s > start))
        };
        // Only the oldest versions, up to the first one needed, can go; the last of them stays
        // as the safety margin.
        let prefix = list
            .iter()
            .enumerate()
            .take_while(|(i, e)| !in_range(*i, e))
            .count();
        let removable = prefix.saturating_sub(1);
        let mut inv = PartitionInventory {
            partition,
            log_start: start,
            current: cur,
            needed: Vec::new(),
            unused: Vec::new(),
        };
        for (i, e) in list.iter().enumerate() {
            let needed = i >= removable;
            let v = StoredVersion {
                version: e.version,
                first_offset: e.created_at_offset,
                tek_version: e.tek_version.clone(),
            };
            if needed {
                if let Some(t) = &e.tek_version {
                    tek_versions_needed.insert(t.clone());
                }
                inv.needed.push(v);
            } else {
                inv.unused.push(v);
            }
        }
        partitions.push(inv);
    }
    Inventory {
        partitions,
        tek_versions_needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{DekCommitment, Edek};

    fn edek(partition: i32, version: u32, offset: Option<i64>, tek: &str) -> EdekRecord {
        EdekRecord {
            topic: "t".into(),
            partition,
            version,
            tek: "tek".into(),
            tek_version: Some(tek.into()),
            edek: Edek(vec![1]),
            commitment: DekCommitment([0; 32]),
            created_at_ms: 0,
            created_at_offset: offset,
        }
    }

    fn versions(vs: &[StoredVersion]) -> Vec<u32> {
        vs.iter().map(|v| v.version).collect()
    }

    /// Partition 0 rolled at offsets 0, 100, 200, 300 (v1-v4, v4 current).
    fn rolled() -> Vec<EdekRecord> {
        vec![
            edek(0, 1, Some(0), "1"),
            edek(0, 2, Some(100), "1"),
            edek(0, 3, Some(200), "2"),
            edek(0, 4, Some(300), "2"),
        ]
    }

    #[test]
    fn every_version_is_needed_while_the_log_starts_at_zero() {
        let inv = inventory(
            &rolled(),
            &BTreeMap::from([(0, 4)]),
            &BTreeMap::from([(0, 0)]),
        );
        assert_eq!(versions(&inv.partitions[0].needed), [1, 2, 3, 4]);
        assert!(inv.unused().is_empty());
        assert_eq!(
            inv.tek_versions_needed,
            BTreeSet::from(["1".into(), "2".into()])
        );
    }

    #[test]
    fn versions_before_the_log_start_go_but_one_more_is_kept() {
        // Log start 250: v3 (from 200) may hold retained records, v2 is the margin, v1 goes.
        let inv = inventory(
            &rolled(),
            &BTreeMap::from([(0, 4)]),
            &BTreeMap::from([(0, 250)]),
        );
        assert_eq!(versions(&inv.partitions[0].needed), [2, 3, 4]);
        assert_eq!(inv.unused(), [(0, 1)]);
        // Log start exactly at v3's start: v2's records are all gone, v2 is the margin.
        let inv = inventory(
            &rolled(),
            &BTreeMap::from([(0, 4)]),
            &BTreeMap::from([(0, 200)]),
        );
        assert_eq!(inv.unused(), [(0, 1)]);
        // Everything before the current version's start is gone: v3 is the margin.
        let inv = inventory(
            &rolled(),
            &BTreeMap::from([(0, 4)]),
            &BTreeMap::from([(0, 1000)]),
        );
        assert_eq!(versions(&inv.partitions[0].needed), [3, 4]);
        assert_eq!(inv.unused(), [(0, 1), (0, 2)]);
        assert_eq!(inv.tek_versions_needed, BTreeSet::from(["2".into()]));
    }

    #[test]
    fn unknown_starts_and_partitions_keep_everything() {
        let mut e = rolled();
        e[2].created_at_offset = None; // v3's start unknown: v2 may hold anything
        let inv = inventory(&e, &BTreeMap::from([(0, 4)]), &BTreeMap::from([(0, 1000)]));
        // Only v1 lies below (v3 cannot go while v2's end is unknown), and it is the margin.
        assert!(inv.unused().is_empty(), "{:?}", inv.unused());
        // No log start known for the partition: nothing goes.
        let inv = inventory(&rolled(), &BTreeMap::from([(0, 4)]), &BTreeMap::new());
        assert!(inv.unused().is_empty());
        // A version above the current one (written before a crash, not yet pointed at) stays.
        let inv = inventory(
            &rolled(),
            &BTreeMap::from([(0, 3)]),
            &BTreeMap::from([(0, 1000)]),
        );
        assert_eq!(versions(&inv.partitions[0].needed), [2, 3, 4]);
    }
}
