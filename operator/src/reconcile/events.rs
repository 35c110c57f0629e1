//! Kubernetes events on EncryptedTopics: what the operator did, in words. Best effort: a
//! failure to record one never fails key management.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kafka_e2ee_crds::EncryptedTopic;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::Context;
use crate::apply::Applied;

/// Publishes events.k8s.io Events. Warnings go through kube's [`Recorder`]. Normal events
/// record an action (a topic created, keys rolled over): the recorder would keep each whole
/// Event in memory for six minutes and walk them all on every publish, 10,000 Events while
/// 5,000 topics are provisioned (docs/performance.md). They are created directly, and only
/// their names are remembered (`Repeats`), so that the same action announced again soon (a
/// reconcile resumed after a crash) counts up one Event's series instead of adding another.
pub struct Events {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
    repeats: std::sync::Mutex<Repeats>,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
            repeats: std::sync::Mutex::new(Repeats::default()),
        }
    }

    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        if matches!(event.type_, EventType::Warning) {
            return self.warnings.publish(event, regarding).await;
        }
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api = Api::<K8sEvent>::namespaced(self.client.clone(), namespace);
        let now = Timestamp::now();
        let key = RepeatKey::of(event, regarding);
        let seen = self.repeats().seen(&key, now);
        if let Some((name, count)) = seen {
            let series = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(now)},
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(()),
                // Expired or deleted meanwhile: announce it anew.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let created = once(&self.reporter, event, regarding, now);
        let name = created.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &created).await?;
        self.repeats().created(key, name, now);
        Ok(())
    }

    fn repeats(&self) -> std::sync::MutexGuard<'_, Repeats> {
        // A panic while holding it leaves at worst a stale name: keep going.
        self.repeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a Normal event counts as repeated rather than new (kube's recorder: 6 minutes).
const REPEAT_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What makes two announcements the same: the object, the reason and the action.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RepeatKey {
    uid: Option<String>,
    reason: String,
    action: String,
}

impl RepeatKey {
    fn of(event: &Event, regarding: &ObjectReference) -> Self {
        Self {
            uid: regarding.uid.clone(),
            reason: event.reason.clone(),
            action: event.action.clone(),
        }
    }
}

/// The Normal events published in the last [`REPEAT_WINDOW`]: names and counts only.
#[derive(Debug, Default)]
struct Repeats {
    recent: std::collections::HashMap<RepeatKey, Recent>,
    /// Expired entries are dropped when the map reaches this size (amortised, not per call).
    sweep_at: usize,
}

#[derive(Debug)]
struct Recent {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Repeats {
    /// The Event to count up and its new count, if `key` was announced within the window.
    fn seen(&mut self, key: &RepeatKey, now: Timestamp) -> Option<(String, i32)> {
        let recent = self.recent.get_mut(key)?;
        if now.duration_since(recent.last) >= REPEAT_WINDOW {
            return None;
        }
        recent.count += 1;
        recent.last = now;
        Some((recent.name.clone(), recent.count))
    }

    fn created(&mut self, key: RepeatKey, name: String, now: Timestamp) {
        if self.recent.len() >= self.sweep_at {
            self.recent
                .retain(|_, r| now.duration_since(r.last) < REPEAT_WINDOW);
            self.sweep_at = (self.recent.len() * 2).max(1024);
        }
        self.recent.insert(
            key,
            Recent {
                name,
                count: 1,
                last: now,
            },
        );
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

    fn key(uid: &str, reason: &str) -> RepeatKey {
        RepeatKey {
            uid: Some(uid.into()),
            reason: reason.into(),
            action: "Delete".into(),
        }
    }

    #[test]
    fn the_same_announcement_within_the_window_counts_up_one_event() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let mut repeats = Repeats::default();
        let shredded = key("u1", "CryptoShredded");
        assert_eq!(repeats.seen(&shredded, t0), None);
        repeats.created(shredded.clone(), "s0.1".into(), t0);
        let soon = t0 + SignedDuration::from_secs(30);
        assert_eq!(repeats.seen(&shredded, soon), Some(("s0.1".into(), 2)));
        assert_eq!(
            repeats.seen(&shredded, soon + SignedDuration::from_secs(1)),
            Some(("s0.1".into(), 3))
        );
        // Another object, or another reason, is a new Event.
        assert_eq!(repeats.seen(&key("u2", "CryptoShredded"), soon), None);
        assert_eq!(repeats.seen(&key("u1", "TopicCreated"), soon), None);
        // The window runs from the last announcement.
        let later = soon + SignedDuration::from_secs(1) + REPEAT_WINDOW;
        assert_eq!(repeats.seen(&shredded, later), None);
    }

    #[test]
    fn expired_announcements_are_forgotten_as_the_map_grows() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let mut repeats = Repeats::default();
        for i in 0..1_024 {
            repeats.created(key(&format!("u{i}"), "TopicCreated"), format!("t{i}"), t0);
        }
        let later = t0 + REPEAT_WINDOW;
        repeats.created(key("new", "TopicCreated"), "n".into(), later);
        assert_eq!(repeats.recent.len(), 1, "only the live one is kept");
        assert_eq!(repeats.sweep_at, 1024);
    }

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
