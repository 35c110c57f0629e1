//! Deletion: with our finalizer present (deletionPolicy Delete, managed), crypto-shred, then
//! let the object go.

use std::time::SystemTime;

use kafka_e2ee_client::key_records::{edek_key, policy_key};
use kafka_e2ee_client::provider::TekManager;
use kafka_e2ee_crds::validation::validate_encrypted_topic;
use kafka_e2ee_crds::{DeletionPolicy, EncryptedTopic};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::connection::Connection;
use super::failure::{RETRY, ReconcileFailure};
use super::{Context, FINALIZER, ReconcileError, events, status, writes};

pub async fn finalize(obj: &EncryptedTopic, ctx: &Context) -> Result<Action, ReconcileError> {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let valid = validate_encrypted_topic(obj);
    if valid.is_err() {
        // The spec became invalid (e.g. the confirmation was removed): shredding needs a
        // confirmed, valid spec, so the object goes without touching topic or keys.
        events::publish(obj, ctx, EventType::Warning, "NotShredded", "Delete", "the spec is not valid (is confirmDeletion still set?): topic, keys and TEK were left in place".into()).await;
    } else if obj.is_managed()
        && obj.spec.deletion_policy == DeletionPolicy::Delete
        && let Ok(valid) = &valid
        && let Err(failure) = crypto_shred(obj, ctx, &valid.topic).await
    {
        tracing::warn!(object = %obj.name_any(), reason = failure.reason(), message = %failure.message(), "crypto-shredding not finished; retrying");
        let new = status::with_ready(
            obj,
            "False",
            failure.reason(),
            &failure.message(),
            SystemTime::now(),
        );
        writes::status(obj, ctx, new).await?;
        return Ok(Action::requeue(RETRY));
    }
    writes::finalizer(obj, ctx, false).await?;
    Ok(Action::await_change())
}

/// Policy tombstone first (producers stop), then the TEK is deleted in the KMS (no EDEK can be
/// unwrapped again), then the EDEK tombstones, then the topic.
async fn crypto_shred(
    obj: &EncryptedTopic,
    ctx: &Context,
    topic: &str,
) -> Result<(), ReconcileFailure> {
    let _writing = ctx.kafka.writes.read().await;
    let keys = ctx.kafka.directory.topic_keys(topic);
    let writer = &ctx.kafka.writer;
    let tek = keys.policy.as_ref().map(|p| p.provider.tek.clone());
    if keys.policy.is_some() {
        writer.tombstones(&[policy_key(topic)]).await?;
    }
    if let Some(tek) = tek {
        let connection = Connection::fetch(obj, ctx).await?;
        let backend = connection
            .holder
            .backend()
            .map_err(|e| ReconcileFailure::ConnectionInvalid(e.to_string()))?;
        let provider = connection.provider(ctx, backend).await?;
        provider
            .delete_tek(&tek)
            .await
            .map_err(ReconcileFailure::Kms)?;
        events::publish(
            obj,
            ctx,
            EventType::Normal,
            "TekDeleted",
            "CryptoShred",
            format!(
                "TEK {tek} deleted (scheduled for deletion where the KMS has a waiting period)"
            ),
        )
        .await;
    }
    let edek_keys: Vec<String> = keys
        .edeks
        .iter()
        .map(|e| edek_key(topic, e.partition, e.version))
        .collect();
    writer.tombstones(&edek_keys).await?;
    ctx.metrics
        .key_topic_writes
        .inc_by(keys.edeks.len() as u64 + u64::from(keys.policy.is_some()));
    ctx.kafka.delete_topic(topic).await?;
    ctx.kafka.read_own_writes().await?;
    events::publish(
        obj,
        ctx,
        EventType::Normal,
        "CryptoShredded",
        "Delete",
        format!(
            "topic {topic} deleted, {} key records tombstoned",
            keys.edeks.len() + 1
        ),
    )
    .await;
    Ok(())
}
