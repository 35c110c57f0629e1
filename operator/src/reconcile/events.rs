//! Kubernetes events on EncryptedTopics: what the operator did, in words. Best effort: a
//! failure to record one never fails key management.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kafka_e2ee_crds::EncryptedTopic;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::Context;
use crate::apply::Applied;

/// Publishes events.k8s.io Events. Warnings go through kube's [`Recorder`], which folds a
/// warning that repeats while a problem lasts into one Event with a count. Normal events
/// record an action done once (a topic created, keys rolled over); the recorder would keep
/// each of them in memory for six minutes to fold repeats that do not come: 10,000 Events
/// while 5,000 topics are provisioned (docs/performance.md). They are created directly.
pub struct Events {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        match event.type_ {
            EventType::Warning => self.warnings.publish(event, regarding).await,
            EventType::Normal => {
                let namespace = regarding.namespace.as_deref().unwrap_or("default");
                Api::<K8sEvent>::namespaced(self.client.clone(), namespace)
                    .create(
                        &PostParams::default(),
                        &once(&self.reporter, event, regarding, Timestamp::now()),
                    )
                    .await
                    .map(drop)
            }
        }
    }
}

/// The Event kube's recorder would create for `event` the first time (same name scheme and
/// fields), with no series.
fn once(
    reporter: &Reporter,
    event: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> K8sEvent {
    let controller = &reporter.controller;
    K8sEvent {
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_ref().unwrap_or(controller),
                now.as_nanosecond()
            )),
            ..ObjectMeta::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| controller.clone()),
        ),
        type_: Some(match event.type_ {
            EventType::Normal => "Normal".into(),
            EventType::Warning => "Warning".into(),
        }),
        ..K8sEvent::default()
    }
}

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
    if let Err(e) = ctx.events.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_event_is_the_one_kubes_recorder_would_create_first() {
        let reporter = Reporter {
            controller: "kafka-e2ee-operator".into(),
            instance: Some("operator-0".into()),
        };
        let regarding = ObjectReference {
            api_version: Some("kafka-e2ee.io/v1alpha1".into()),
            kind: Some("EncryptedTopic".into()),
            name: Some("orders".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: "TopicCreated".into(),
            note: Some("Kafka topic created".into()),
            action: "CreateTopic".into(),
            secondary: None,
        };
        let now = Timestamp::from_nanosecond(1_700_000_000_123_456_789).unwrap();
        let made = once(&reporter, &event, &regarding, now);
        assert_eq!(
            made.metadata.name.as_deref(),
            Some("orders.17979cfe3d85cd15")
        );
        assert_eq!(made.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            (
                made.type_.as_deref(),
                made.reason.as_deref(),
                made.action.as_deref()
            ),
            (Some("Normal"), Some("TopicCreated"), Some("CreateTopic"))
        );
        assert_eq!(made.note.as_deref(), Some("Kafka topic created"));
        assert_eq!(made.regarding, Some(regarding));
        assert_eq!(made.event_time, Some(MicroTime(now)));
        assert_eq!(
            (
                made.reporting_controller.as_deref(),
                made.reporting_instance.as_deref()
            ),
            (Some("kafka-e2ee-operator"), Some("operator-0"))
        );
        assert!(made.series.is_none());
    }
}
