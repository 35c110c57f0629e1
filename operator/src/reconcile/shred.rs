//! Deletion: with our finalizer present (deletionPolicy Delete, managed), crypto-shred, then
//! let the object go.
//!
//! Crypto-shredding is three steps, each recorded in the `Deleting` condition before the next
//! starts, so that a crash anywhere resumes where it stopped:
//! 1. the TEK is deleted in the KMS (AWS: scheduled), the one status says the operator created
//!    for this uid (never a name read from the key topic, which anyone with write access to it
//!    could change) - once it is gone no EDEK of the topic unwraps again;
//! 2. the key records (policy, EDEKs) are tombstoned;
//! 3. the topic is deleted.
//!
//! Then `CryptoShredded` is announced and the finalizer removed. Whenever a step cannot be
//! done (connection gone, KMS refuses, TEK not this object's), the object stays, with
//! `Deleting=False` naming why and a `NotShredded` warning; nothing reports success while the
//! TEK may still exist.

use std::time::SystemTime;

use kafka_e2ee_client::key_records::{edek_key, policy_key};
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_crds::validation::validate_encrypted_topic;
use kafka_e2ee_crds::{DeletionPolicy, EncryptedTopic};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::connection::Connection;
use super::failure::{RETRY, ReconcileFailure};
use super::status::{self, DELETING};
use super::{Context, FINALIZER, ReconcileError, events, writes};
use crate::crash;
use crate::ownership::{self, ShredRefusal};

/// `Deleting` condition reasons: the last step done, in order.
pub mod step {
    pub const TEK_DELETED: &str = "TekDeleted";
    pub const KEYS_TOMBSTONED: &str = "KeysTombstoned";
    pub const TOPIC_DELETED: &str = "TopicDeleted";
    /// Why it cannot go on.
    pub const TEK_NOT_OWNED: &str = "TekNotOwned";
}

/// How far shredding got, from the `Deleting` condition.
fn done(obj: &EncryptedTopic) -> usize {
    let reached = status::find(obj.status.as_ref(), DELETING)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.as_str());
    match reached {
        Some(step::TEK_DELETED) => 1,
        Some(step::KEYS_TOMBSTONED) => 2,
        Some(step::TOPIC_DELETED) => 3,
        _ => 0,
    }
}

pub async fn finalize(obj: &EncryptedTopic, ctx: &Context) -> Result<Action, ReconcileError> {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let Ok(valid) = validate_encrypted_topic(obj) else {
        // The spec became invalid (e.g. the confirmation was removed): shredding needs a
        // confirmed, valid spec, so the object goes without touching topic or keys.
        events::publish(obj, ctx, EventType::Warning, "NotShredded", "Delete", "the spec is not valid (is confirmDeletion still set?): topic, keys and TEK were left in place".into()).await;
        writes::finalizer(obj, ctx, false).await?;
        return Ok(Action::await_change());
    };
    if !obj.is_managed() || obj.spec.deletion_policy != DeletionPolicy::Delete {
        writes::finalizer(obj, ctx, false).await?;
        return Ok(Action::await_change());
    }
    match crypto_shred(obj, ctx, &valid.topic).await {
        Ok(Shredded::Done(message)) => {
            events::publish(
                obj,
                ctx,
                EventType::Normal,
                "CryptoShredded",
                "Delete",
                message,
            )
            .await;
            writes::finalizer(obj, ctx, false).await?;
            Ok(Action::await_change())
        }
        Ok(Shredded::Step(reason_, message)) => {
            let new =
                status::with_condition(obj, DELETING, "True", reason_, &message, SystemTime::now());
            writes::status(obj, ctx, new).await?;
            // Our status write wakes the controller; this is the fallback.
            Ok(Action::requeue(std::time::Duration::from_secs(1)))
        }
        Err(blocked) => {
            let (reason_, message) = (blocked.reason(), blocked.message());
            tracing::warn!(object = %obj.name_any(), reason = reason_, %message, "crypto-shredding blocked");
            let before = status::find(obj.status.as_ref(), DELETING);
            if before.is_none_or(|c| c.reason != reason_) {
                events::publish(
                    obj,
                    ctx,
                    EventType::Warning,
                    "NotShredded",
                    "Delete",
                    format!("crypto-shredding waits: {message}"),
                )
                .await;
            }
            let new = status::with_condition(
                obj,
                DELETING,
                "False",
                reason_,
                &message,
                SystemTime::now(),
            );
            writes::status(obj, ctx, new).await?;
            Ok(Action::requeue(blocked.requeue().unwrap_or(RETRY * 3)))
        }
    }
}

/// One step taken (recorded before the next), or all done.
enum Shredded {
    Step(&'static str, String),
    Done(String),
}

/// Why shredding cannot go on now.
enum Blocked {
    Failure(ReconcileFailure),
    NotOwned(ShredRefusal),
}

impl Blocked {
    fn reason(&self) -> &'static str {
        match self {
            Self::Failure(f) => f.reason(),
            Self::NotOwned(ShredRefusal::NotCreatedHere { .. }) => step::TEK_NOT_OWNED,
            Self::NotOwned(ShredRefusal::Claim(c)) => ReconcileFailure::Claim(c.clone()).reason(),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Failure(f) => f.message(),
            Self::NotOwned(r) => r.to_string(),
        }
    }

    fn requeue(&self) -> Option<std::time::Duration> {
        match self {
            Self::Failure(f) => f.requeue(),
            Self::NotOwned(_) => Some(RETRY * 6),
        }
    }
}

impl From<ReconcileFailure> for Blocked {
    fn from(f: ReconcileFailure) -> Self {
        Self::Failure(f)
    }
}

impl From<crate::kafka_ops::KafkaOpsError> for Blocked {
    fn from(e: crate::kafka_ops::KafkaOpsError) -> Self {
        Self::Failure(e.into())
    }
}

/// The next step of crypto-shredding `obj`.
async fn crypto_shred(
    obj: &EncryptedTopic,
    ctx: &Context,
    topic: &str,
) -> Result<Shredded, Blocked> {
    let done = done(obj);
    let owns_topic = obj.status.as_ref().and_then(|s| s.topic.as_deref()) == Some(topic);
    if done == 0 {
        return delete_tek(obj, ctx, topic).await;
    }
    if done == 1 {
        let tombstoned = if owns_topic {
            tombstone_keys(ctx, &obj.namespace().unwrap_or_default(), topic).await?
        } else {
            0
        };
        crash::point("shred-after-keys");
        return Ok(Shredded::Step(
            step::KEYS_TOMBSTONED,
            format!("{tombstoned} key record(s) of topic {topic} tombstoned"),
        ));
    }
    if done == 2 {
        if owns_topic {
            ctx.kafka.delete_topic(topic).await?;
        }
        crash::point("shred-after-topic");
        return Ok(Shredded::Step(
            step::TOPIC_DELETED,
            if owns_topic {
                format!("topic {topic} deleted")
            } else {
                format!("topic {topic} was never this object's: left alone")
            },
        ));
    }
    let tek = obj
        .status
        .as_ref()
        .and_then(|s| s.tek.as_ref())
        .map_or_else(
            || "no TEK (never provisioned)".to_owned(),
            |t| format!("TEK {}", t.reference),
        );
    Ok(Shredded::Done(format!(
        "{tek} deleted, key records tombstoned, topic {topic} deleted"
    )))
}

/// Step 1: the TEK this object's status records, if the operator created it for this uid.
async fn delete_tek(obj: &EncryptedTopic, ctx: &Context, topic: &str) -> Result<Shredded, Blocked> {
    let recorded = obj.status.as_ref().and_then(|s| s.tek.as_ref());
    let Some(recorded) = recorded else {
        return Ok(Shredded::Step(
            step::TEK_DELETED,
            "never provisioned: no TEK was created for this object".into(),
        ));
    };
    let connection = Connection::fetch(obj, ctx).await?;
    let backend = connection.backend()?;
    let targets = ownership::shred_targets(
        obj,
        topic,
        backend,
        connection.any_tek_name(),
        &ctx.topics.state(),
    );
    let provider = connection.provider(ctx, backend).await?;
    let tek = match targets {
        Ok(targets) => targets.tek,
        // Adopted, but already gone from the KMS (its owner deleted it): nothing to protect.
        Err(refusal @ ShredRefusal::NotCreatedHere { .. }) => {
            match provider.describe_tek(&recorded.reference).await {
                Err(ProviderError::NotFound { .. }) => None,
                Ok(_) => return Err(Blocked::NotOwned(refusal)),
                Err(e) => return Err(ReconcileFailure::Kms(e).into()),
            }
        }
        Err(other) => return Err(Blocked::NotOwned(other)),
    };
    let Some(tek) = tek else {
        return Ok(Shredded::Step(
            step::TEK_DELETED,
            format!("TEK {} is gone from the KMS", recorded.reference),
        ));
    };
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let object = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let owner = kafka_e2ee_client::provider::TekOwner {
        uid: &uid,
        object: &object,
    };
    provider
        .delete_tek_of(&tek, &owner)
        .await
        .map_err(|e| Blocked::Failure(ReconcileFailure::Kms(e)))?;
    events::publish(
        obj,
        ctx,
        EventType::Normal,
        "TekDeleted",
        "CryptoShred",
        format!("TEK {tek} deleted (scheduled for deletion where the KMS has a waiting period)"),
    )
    .await;
    crash::point("shred-after-tek");
    Ok(Shredded::Step(
        step::TEK_DELETED,
        format!("TEK {tek} deleted (AWS: scheduled); no EDEK of the topic unwraps again"),
    ))
}

/// Step 2: tombstones for the topic's policy and every EDEK the key directory holds.
async fn tombstone_keys(ctx: &Context, namespace: &str, topic: &str) -> Result<usize, Blocked> {
    let key_topic = ctx.kafka.keys(namespace).await?;
    let _writing = ctx.kafka.writes.read().await;
    let keys = key_topic.directory.topic_keys(topic);
    let mut records: Vec<String> = keys
        .edeks
        .iter()
        .map(|e| edek_key(topic, e.partition, e.version))
        .collect();
    if keys.policy.is_some() {
        records.push(policy_key(topic));
    }
    key_topic
        .writer
        .tombstones(&records)
        .await
        .map_err(ReconcileFailure::from)?;
    ctx.metrics.key_topic_writes.inc_by(records.len() as u64);
    key_topic.read_own_writes().await?;
    Ok(records.len())
}
