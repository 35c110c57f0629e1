//! Kubernetes events on EncryptedTopics: what the operator did, in words. Best effort: a
//! failure to record one never fails key management.

use kafka_e2ee_crds::EncryptedTopic;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::Context;
use crate::apply::Applied;

/// The events of what applying a plan did.
pub async fn applied(obj: &EncryptedTopic, ctx: &Context, applied: &Applied) {
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    if applied.tek_created {
        events.push((
            "TekReady",
            "CreateTek",
            "TEK created (or found) in the KMS".into(),
        ));
    }
    if applied.tek_rotated {
        let version = applied
            .tek
            .as_ref()
            .and_then(|t| t.latest_version.clone())
            .unwrap_or_default();
        events.push((
            "TekRotated",
            "RotateTek",
            format!("TEK rotated to version {version}"),
        ));
    }
    if applied.rewrapped > 0 {
        events.push((
            "EdeksRewrapped",
            "Rewrap",
            format!(
                "{} EDEKs re-wrapped under the current TEK version",
                applied.rewrapped
            ),
        ));
    }
    if applied.topic_created {
        events.push(("TopicCreated", "CreateTopic", "Kafka topic created".into()));
    }
    if let Some(to) = applied.topic_grown_to {
        events.push((
            "PartitionsAdded",
            "GrowTopic",
            format!("topic grown to {to} partitions"),
        ));
    }
    if !applied.keys.is_empty() {
        let list: Vec<String> = applied
            .keys
            .iter()
            .map(|k| format!("{}:v{} ({})", k.partition, k.version, k.trigger.as_str()))
            .collect();
        events.push((
            "KeysRolledOver",
            "Rollover",
            format!("new DEK versions: {}", list.join(", ")),
        ));
    }
    if !applied.pruned.is_empty() {
        let list: Vec<String> = applied
            .pruned
            .iter()
            .map(|(p, v)| format!("{p}:v{v}"))
            .collect();
        events.push((
            "EdeksPruned",
            "Prune",
            format!(
                "EDEKs no retained record needs deleted: {}",
                list.join(", ")
            ),
        ));
    }
    for (reason, action, note) in events {
        publish(obj, ctx, EventType::Normal, reason, action, note).await;
    }
}

pub async fn publish(
    obj: &EncryptedTopic,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish an event");
    }
}
