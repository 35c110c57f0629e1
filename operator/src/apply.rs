//! Carries out a [`Plan`] in the one safe order: TEK, topic, re-wrapped EDEKs, new EDEKs, then
//! the policy record. Every step is idempotent, so a crash anywhere is repaired by the next
//! reconciliation: a TEK that exists is described, not created twice; an EDEK written without
//! its policy is reused by the next plan; the policy, written last, only ever names EDEKs the
//! key topic already holds.

use std::collections::BTreeMap;
use std::time::SystemTime;

use kafka_e2ee_client::kafka::{EnsureOutcome, TopicSpec};
use kafka_e2ee_client::key_management::{KeyManagementError, generate_edek};
use kafka_e2ee_client::key_records::{EdekRecord, PolicyRecord};
use kafka_e2ee_client::provider::{DekContext, ProviderError, TekInfo, TekManager};
use thiserror::Error;

use crate::crash;
use crate::kafka_ops::{KafkaOpsError, TopicKafka};
use crate::metrics::{Metrics, TriggerLabels};
use crate::plan::{Desired, KeyStep, Observed, Plan, TopicStep, stale_edeks};
use crate::watermarks;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error(transparent)]
    Kms(#[from] ProviderError),
    #[error(transparent)]
    Kafka(#[from] KafkaOpsError),
}

impl From<KeyManagementError> for ApplyError {
    fn from(e: KeyManagementError) -> Self {
        match e {
            KeyManagementError::Generate { source, .. } => Self::Kms(source),
            other => Self::Kafka(other.into()),
        }
    }
}

/// What applying a plan did (for events and status).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub tek: Option<TekInfo>,
    pub tek_created: bool,
    pub tek_rotated: bool,
    pub topic_created: bool,
    pub topic_grown_to: Option<i32>,
    pub rewrapped: usize,
    pub keys: Vec<KeyStep>,
    pub policy_published: bool,
    /// The policy in force afterwards.
    pub policy: Option<PolicyRecord>,
    /// EDEKs (partition, version) deleted because no retained record needs them.
    pub pruned: Vec<(i32, u32)>,
}

pub async fn apply<P: TekManager>(
    provider: &P,
    kafka: TopicKafka<'_>,
    metrics: &Metrics,
    desired: &Desired,
    observed: &Observed,
    plan: Plan,
    now: SystemTime,
) -> Result<Applied, ApplyError> {
    let tek_name = &desired.provider.tek;
    // Shared with other reconciles; exclusive only while a signing-key rotation signs the
    // directory's records again.
    let _writing = kafka.ops.writes.read().await;
    let mut applied = Applied {
        policy: observed.keys.policy.as_deref().cloned(),
        ..Applied::default()
    };

    // 1. TEK.
    let mut tek = match &observed.tek {
        Some(info) if !plan.create_tek => info.clone(),
        _ => {
            applied.tek_created = true;
            provider
                .create_tek_for(tek_name, &desired.owner.as_tek_owner())
                .await?
        }
    };
    if plan.rotate_tek {
        tek = provider.rotate_tek(tek_name).await?;
        applied.tek_rotated = true;
        metrics.tek_rotations.inc();
    }
    if applied.tek_created || applied.tek_rotated {
        crash::point("after-tek");
    }

    // 2. Topic. Partitions it creates start empty: their DEKs count records from offset 0.
    let mut end_offsets = observed.end_offsets.clone();
    match plan.topic {
        Some(TopicStep::Create { partitions }) => {
            let outcome = kafka
                .ops
                .create_topic(&TopicSpec {
                    name: desired.topic.clone(),
                    partitions,
                    replication: desired.replicas,
                    config: desired.config.clone(),
                })
                .await?;
            if outcome == EnsureOutcome::Created {
                applied.topic_created = true;
                end_offsets = (0..partitions).map(|p| (p, 0)).collect();
            } else {
                // Created by someone else since the operator last listed the topics: go on if
                // it has the partitions planned for, from its real end offsets.
                let marks = kafka.ops.watermarks(&desired.topic).await?;
                let found = marks.as_ref().map(BTreeMap::len);
                if found != usize::try_from(partitions).ok() {
                    return Err(KafkaOpsError::TopicAppeared {
                        topic: desired.topic.clone(),
                        found,
                    }
                    .into());
                }
                end_offsets = marks
                    .as_ref()
                    .map(watermarks::end_offsets)
                    .unwrap_or_default();
            }
        }
        Some(TopicStep::Grow { from, to }) => {
            kafka.ops.grow_topic(&desired.topic, to).await?;
            applied.topic_grown_to = Some(to);
            end_offsets.extend((from..to).map(|p| (p, 0)));
        }
        None => {}
    }
    if plan.topic.is_some() {
        crash::point("after-topic");
    }
    // 3. Re-wrap EDEKs still wrapped under an older TEK version.
    let stale = if applied.tek_rotated {
        stale_edeks(
            observed.keys.edeks.iter().map(|e| &**e),
            tek.latest_version.as_deref(),
        )
    } else {
        plan.rewrap.clone()
    };
    if !stale.is_empty() {
        let records: Vec<&EdekRecord> = observed
            .keys
            .edeks
            .iter()
            .filter(|e| stale.contains(&(e.partition, e.version)))
            .map(|e| &**e)
            .collect();
        let items: Vec<(DekContext<'_>, &kafka_e2ee_client::provider::Edek)> = records
            .iter()
            .map(|e| {
                (
                    DekContext {
                        topic: &e.topic,
                        partition: e.partition,
                        version: e.version,
                    },
                    &e.edek,
                )
            })
            .collect();
        let rewrapped = provider.rewrap_deks(tek_name, &items).await?;
        let updated: Vec<EdekRecord> = records
            .iter()
            .zip(rewrapped)
            .map(|(old, edek)| EdekRecord {
                edek,
                tek_version: tek.latest_version.clone(),
                ..(*old).clone()
            })
            .collect();
        kafka.keys.writer.publish_edeks(&updated).await?;
        metrics.key_topic_writes.inc_by(updated.len() as u64);
        metrics.edeks_rewrapped.inc_by(updated.len() as u64);
        applied.rewrapped = updated.len();
        crash::point("after-rewrap");
    }

    // 4. New EDEKs (generated through the KMS; reused ones are already stored).
    let mut fresh = Vec::new();
    for step in plan.keys.iter().filter(|s| !s.reuse_existing) {
        let mut record = generate_edek(
            provider,
            tek_name,
            &desired.topic,
            step.partition,
            step.version,
        )
        .await?;
        record.tek_version = tek.latest_version.clone();
        record.created_at_ms = crate::plan::to_millis(now);
        record.created_at_offset = Some(end_offsets.get(&step.partition).copied().unwrap_or(0));
        fresh.push(record);
    }
    if !fresh.is_empty() {
        kafka.keys.writer.publish_edeks(&fresh).await?;
        metrics.keys_generated.inc_by(fresh.len() as u64);
        metrics.key_topic_writes.inc_by(fresh.len() as u64);
        crash::point("after-edeks");
    }

    // 5. The policy, last: it only names EDEKs written above or before.
    if plan.publish_policy
        && let Some(policy) = &plan.policy
    {
        kafka.keys.writer.publish_policy(policy).await?;
        metrics.key_topic_writes.inc();
        for step in &plan.keys {
            metrics
                .rollovers
                .get_or_create(&TriggerLabels {
                    trigger: step.trigger.as_str(),
                })
                .inc();
        }
        applied.policy_published = true;
        applied.policy = Some(policy.clone());
        crash::point("after-policy");
    }
    // 6. Pruning, after the policy: only versions below the ones in force, which no retained
    //    record needs; tombstones signed like every key record.
    if !plan.prune.is_empty() {
        let keys: Vec<String> = plan
            .prune
            .iter()
            .map(|&(p, v)| kafka_e2ee_client::key_records::edek_key(&desired.topic, p, v))
            .collect();
        kafka.keys.writer.tombstones(&keys).await?;
        metrics.key_topic_writes.inc_by(keys.len() as u64);
        applied.pruned = plan.prune.clone();
    }
    if !plan.is_noop() {
        kafka.keys.read_own_writes().await?;
    }
    applied.keys = plan.keys;
    applied.tek = Some(tek);
    Ok(applied)
}

/// Current versions in force after `applied` (for status).
pub fn current_versions(applied: &Applied) -> BTreeMap<i32, u32> {
    applied
        .policy
        .as_ref()
        .map(|p| p.current_versions.clone())
        .unwrap_or_default()
}
