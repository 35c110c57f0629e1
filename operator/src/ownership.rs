//! What an EncryptedTopic may act on, decided from the objects alone (pure, unit-tested): the
//! TEK it uses, whether another EncryptedTopic (of any namespace) already holds that TEK or
//! Kafka topic, whether its spec changed under keys that exist, and what deleting it may
//! destroy.
//!
//! The rules (docs/security.md, "Tenancy"):
//! - default TEK names cannot collide: `kafka-e2ee_<namespace>_<name>` (`_` occurs in neither a
//!   namespace nor an object name; AWS aliases: `alias/kafka-e2ee/<namespace>/<name>`);
//! - on a ClusterKmsConnection (the operator's own KMS identity) a chosen `spec.tek` must start
//!   with the namespace's prefix, unless the connection allows any name;
//! - a TEK or topic is held by the oldest EncryptedTopic that names it, including one being
//!   deleted (its finalizer may still destroy them): a newer one waits;
//! - crypto-shredding deletes only the TEK the operator created for this object's uid, named
//!   in its status, never one named by the key topic.

use std::sync::Arc;

use kafka_e2ee_crds::{EncryptedTopic, KmsBackend, KmsRefKind};
use kube::ResourceExt;
use thiserror::Error;

/// Why an EncryptedTopic may not act on a TEK or topic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClaimError {
    #[error("{what} {value} is held by EncryptedTopic {namespace}/{name}{}", if *.deleting { " (being deleted: this object waits until it is gone)" } else { "" })]
    Held {
        what: &'static str,
        value: String,
        namespace: String,
        name: String,
        deleting: bool,
    },
    #[error(
        "spec.tek '{tek}' does not start with this namespace's prefix '{prefix}': on a ClusterKmsConnection a namespace names only its own TEKs (unless the connection sets allowAnyTekName)"
    )]
    OutsideNamespace { tek: String, prefix: String },
    #[error(
        "{field} changed after the keys were created ({from} -> {to}); restore it (it is immutable: the keys and data belong to the original)"
    )]
    Changed {
        field: &'static str,
        from: String,
        to: String,
    },
}

impl ClaimError {
    /// Whether waiting may resolve it (another object's deletion finishing).
    pub fn is_wait(&self) -> bool {
        matches!(self, Self::Held { deleting: true, .. })
    }
}

/// The default TEK name of `name` in `namespace`.
pub fn default_tek_name(backend: KmsBackend<'_>, namespace: &str, name: &str) -> String {
    format!(
        "{}{}",
        tenant_prefix(backend, namespace),
        aws_safe(backend, name)
    )
}

/// What every TEK of `namespace` starts with on a ClusterKmsConnection.
pub fn tenant_prefix(backend: KmsBackend<'_>, namespace: &str) -> String {
    match backend {
        KmsBackend::AwsKms(_) => format!("alias/kafka-e2ee/{namespace}/"),
        _ => format!("kafka-e2ee_{namespace}_"),
    }
}

/// The TEK name a connection's check reads (and expects not to find): inside the tenant's
/// names (so a policy scoped to them covers the read), and never a topic's TEK, since `_`
/// occurs in neither a namespace nor an object name. `None`: a ClusterKmsConnection.
pub fn probe_tek_name(backend: KmsBackend<'_>, namespace: Option<&str>) -> String {
    match (backend, namespace) {
        (KmsBackend::AwsKms(_), None) => "alias/kafka-e2ee/_connection-check".to_owned(),
        (_, None) => "kafka-e2ee__connection-check".to_owned(),
        (_, Some(namespace)) => format!("{}_connection-check", tenant_prefix(backend, namespace)),
    }
}

/// Before 0.2 the default was `kafka-e2ee-<namespace>-<name>`, ambiguous (`a-b/c` and `a/b-c`
/// share it). Objects provisioned under it keep it.
fn legacy_default_tek_name(backend: KmsBackend<'_>, namespace: &str, name: &str) -> String {
    let base = format!("kafka-e2ee-{namespace}-{name}");
    match backend {
        KmsBackend::AwsKms(_) => format!("alias/{}", base.replace('.', "_")),
        _ => base,
    }
}

/// AWS aliases allow no dots.
fn aws_safe(backend: KmsBackend<'_>, name: &str) -> String {
    match backend {
        KmsBackend::AwsKms(_) => name.replace('.', "_"),
        _ => name.to_owned(),
    }
}

/// The TEK `obj` uses: `spec.tek`, else the default name (or the pre-0.2 default its status
/// already records).
pub fn tek_name(obj: &EncryptedTopic, backend: KmsBackend<'_>) -> String {
    if let Some(tek) = &obj.spec.tek {
        return tek.clone();
    }
    let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let legacy = legacy_default_tek_name(backend, &namespace, &name);
    if recorded_tek(obj) == Some(legacy.as_str()) {
        return legacy;
    }
    default_tek_name(backend, &namespace, &name)
}

fn recorded_tek(obj: &EncryptedTopic) -> Option<&str> {
    obj.status
        .as_ref()
        .and_then(|s| s.tek.as_ref())
        .map(|t| t.reference.as_str())
}

/// Whether the operator created `obj`'s recorded TEK for it: its status says so for its uid, or
/// the TEK has the pre-0.2 default name of this very object (that version recorded no owner and
/// created such TEKs itself; documented as grandfathered).
pub fn created_for_this(obj: &EncryptedTopic, backend: KmsBackend<'_>) -> bool {
    let Some(tek) = obj.status.as_ref().and_then(|s| s.tek.as_ref()) else {
        return false;
    };
    match (&tek.created_for, &obj.metadata.uid) {
        (Some(owner), Some(uid)) => owner == uid,
        (None, _) => {
            obj.spec.tek.is_none()
                && tek.reference
                    == legacy_default_tek_name(
                        backend,
                        &obj.namespace().unwrap_or_default(),
                        &obj.name_any(),
                    )
        }
        (Some(_), None) => false,
    }
}

/// Where `obj` stands among all EncryptedTopics for one thing it wants (a TEK or a topic).
/// One whose status records it holds it before one that does not (two objects created in the
/// same second must not take it from the one already provisioned); then the oldest; ties by
/// uid.
fn holder<'a>(
    obj: &EncryptedTopic,
    others: &[&'a EncryptedTopic],
    wants_same: impl Fn(&EncryptedTopic) -> bool,
    recorded: impl Fn(&EncryptedTopic) -> bool,
) -> Option<&'a EncryptedTopic> {
    let rank = |o: &EncryptedTopic| {
        (
            !recorded(o),
            o.metadata.creation_timestamp.clone(),
            o.metadata.uid.clone(),
        )
    };
    let mine = rank(obj);
    others
        .iter()
        .copied()
        .filter(|other| other.metadata.uid != obj.metadata.uid && wants_same(other))
        .filter(|other| rank(other) < mine)
        .min_by_key(|other| rank(other))
}

fn held(what: &'static str, value: &str, by: &EncryptedTopic) -> ClaimError {
    ClaimError::Held {
        what,
        value: value.to_owned(),
        namespace: by.namespace().unwrap_or_default(),
        name: by.name_any(),
        deleting: by.metadata.deletion_timestamp.is_some(),
    }
}

/// The one KMS a reference resolves to, for telling TEKs of different KMSs apart: a
/// namespaced connection is per namespace.
fn connection_of(obj: &EncryptedTopic) -> (KmsRefKind, Option<String>, &str) {
    let r = &obj.spec.kms_ref;
    let namespace = match r.kind {
        KmsRefKind::KmsConnection => obj.namespace(),
        KmsRefKind::ClusterKmsConnection => None,
    };
    (r.kind, namespace, r.name.as_str())
}

/// What `obj` wants, checked against every other EncryptedTopic (`others` may include `obj`).
pub struct Wants<'a> {
    pub topic: &'a str,
    pub tek: &'a str,
    pub backend: KmsBackend<'a>,
    /// The connection is a ClusterKmsConnection that lets namespaces name any TEK.
    pub any_tek_name: bool,
}

/// Whether `obj` may act on what it wants: within its namespace's names, unchanged since
/// provisioning, and held by no older EncryptedTopic.
pub fn check(
    obj: &EncryptedTopic,
    wants: &Wants<'_>,
    others: &[Arc<EncryptedTopic>],
) -> Result<(), ClaimError> {
    let namespace = obj.namespace().unwrap_or_default();
    if obj.spec.kms_ref.kind == KmsRefKind::ClusterKmsConnection
        && !wants.any_tek_name
        && obj.spec.tek.is_some()
    {
        let prefix = tenant_prefix(wants.backend, &namespace);
        if !wants.tek.starts_with(&prefix) {
            return Err(ClaimError::OutsideNamespace {
                tek: wants.tek.to_owned(),
                prefix,
            });
        }
    }
    unchanged(obj, wants)?;
    let others: Vec<&EncryptedTopic> = others
        .iter()
        .map(|o| &**o)
        .filter(|o| may_conflict(o, wants))
        .collect();
    let others = others.as_slice();
    let records_topic = |o: &EncryptedTopic| {
        o.status.as_ref().and_then(|s| s.topic.as_deref()) == Some(wants.topic)
    };
    if let Some(by) = holder(
        obj,
        others,
        |o| o.kafka_topic_name() == Some(wants.topic),
        records_topic,
    ) {
        return Err(held("topic", wants.topic, by));
    }
    let mine = connection_of(obj);
    if let Some(by) = holder(
        obj,
        others,
        |o| connection_of(o) == mine && holds_tek(o, wants.backend, wants.tek),
        |o| recorded_tek(o) == Some(wants.tek),
    ) {
        return Err(held("TEK", wants.tek, by));
    }
    Ok(())
}

/// A cheap necessary condition (no allocation) for `other` to hold what `wants` wants: it
/// names or recorded the topic, or names, recorded or may default to the TEK (default names
/// end with the object's name). The reconciler filters the whole cache with it, so that a
/// reconcile costs little per other object.
pub fn may_conflict(other: &EncryptedTopic, wants: &Wants<'_>) -> bool {
    other.kafka_topic_name() == Some(wants.topic)
        || other.status.as_ref().and_then(|s| s.topic.as_deref()) == Some(wants.topic)
        || recorded_tek(other) == Some(wants.tek)
        || match &other.spec.tek {
            Some(tek) => tek == wants.tek,
            None => other
                .metadata
                .name
                .as_deref()
                .is_some_and(|name| ends_with_name(wants.tek, name)),
        }
}

/// Whether `tek` ends with `name`, where `aws_safe` may have made its dots underscores.
fn ends_with_name(tek: &str, name: &str) -> bool {
    tek.len() >= name.len()
        && tek.as_bytes()[tek.len() - name.len()..]
            .iter()
            .zip(name.as_bytes())
            .all(|(t, n)| t == n || (*n == b'.' && *t == b'_'))
}

/// Whether `other` holds `tek` exclusively: the operator created it for `other`, or `other`
/// is not provisioned yet and may be about to create it. A TEK that existed before (adopted,
/// e.g. a keystore alias or a key an administrator made) may be shared: no object deletes it.
fn holds_tek(other: &EncryptedTopic, backend: KmsBackend<'_>, tek: &str) -> bool {
    match recorded_tek(other) {
        Some(recorded) => recorded == tek && created_for_this(other, backend),
        None => tek_name(other, backend) == tek,
    }
}

/// The immutable fields, against what status recorded when the keys were made (they could
/// have changed while the admission webhook was absent).
fn unchanged(obj: &EncryptedTopic, wants: &Wants<'_>) -> Result<(), ClaimError> {
    let Some(status) = &obj.status else {
        return Ok(());
    };
    let changed = |field, from: &str, to: &str| ClaimError::Changed {
        field,
        from: from.to_owned(),
        to: to.to_owned(),
    };
    if let Some(topic) = &status.topic
        && topic != wants.topic
    {
        return Err(changed("spec.topicName", topic, wants.topic));
    }
    if let Some(tek) = &status.tek {
        if tek.reference != wants.tek {
            return Err(changed("spec.tek", &tek.reference, wants.tek));
        }
        let now = obj.spec.kms_ref.to_string();
        if let Some(connection) = &tek.connection
            && *connection != now
        {
            return Err(changed("spec.kmsRef", connection, &now));
        }
    }
    Ok(())
}

/// What deleting `obj` may destroy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShredTargets {
    /// The TEK to delete: the one its status records, created for it.
    pub tek: Option<String>,
    /// The Kafka topic, if this object held it.
    pub topic: Option<String>,
}

/// Why deleting `obj` may not crypto-shred.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShredRefusal {
    #[error(
        "TEK {tek} was not created for this object (it existed before and was adopted): the operator deletes only TEKs it created; delete it in the KMS yourself, or set deletionPolicy: Retain"
    )]
    NotCreatedHere { tek: String },
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

/// The TEK and topic deleting `obj` destroys. The TEK comes from status (never the key
/// topic), must be one the operator created for this uid, and must still pass the naming rules
/// (status can be written by others than the operator).
pub fn shred_targets(
    obj: &EncryptedTopic,
    topic: &str,
    backend: KmsBackend<'_>,
    any_tek_name: bool,
    others: &[Arc<EncryptedTopic>],
) -> Result<ShredTargets, ShredRefusal> {
    let Some(recorded) = recorded_tek(obj) else {
        // Never provisioned: nothing of its own exists.
        return Ok(ShredTargets {
            tek: None,
            topic: None,
        });
    };
    let wants = Wants {
        topic,
        tek: recorded,
        backend,
        any_tek_name,
    };
    check(obj, &wants, others)?;
    if tek_name(obj, backend) != recorded {
        return Err(ClaimError::Changed {
            field: "spec.tek",
            from: recorded.to_owned(),
            to: tek_name(obj, backend),
        }
        .into());
    }
    if !created_for_this(obj, backend) {
        return Err(ShredRefusal::NotCreatedHere {
            tek: recorded.to_owned(),
        });
    }
    let topic_held = obj.status.as_ref().and_then(|s| s.topic.as_deref()) == Some(topic);
    Ok(ShredTargets {
        tek: Some(recorded.to_owned()),
        topic: topic_held.then(|| topic.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kafka_e2ee_crds::{
        AwsKmsBackend, EncryptedTopicSpec, EncryptedTopicStatus, KeystoreBackend, KmsRef,
        SecretKeyRef, TekStatus,
    };

    use super::*;

    fn keystore() -> KeystoreBackend {
        KeystoreBackend {
            secret_ref: SecretKeyRef {
                name: "ks".into(),
                key: "keystore.json".into(),
            },
        }
    }

    fn aws() -> AwsKmsBackend {
        AwsKmsBackend {
            region: None,
            endpoint: None,
            credentials_secret_ref: None,
            web_identity: None,
        }
    }

    /// An object of `namespace/name`, created at second `age_rank`, on a cluster connection.
    fn object(namespace: &str, name: &str, uid: &str, created: i64) -> EncryptedTopic {
        let mut t = EncryptedTopic::new(
            name,
            EncryptedTopicSpec::new(
                3,
                KmsRef {
                    kind: KmsRefKind::ClusterKmsConnection,
                    name: "shared".into(),
                },
            ),
        );
        t.metadata.namespace = Some(namespace.into());
        t.metadata.uid = Some(uid.into());
        t.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        t
    }

    fn provisioned(mut t: EncryptedTopic, tek: &str, created_for: Option<&str>) -> EncryptedTopic {
        t.status = Some(EncryptedTopicStatus {
            topic: t.kafka_topic_name().map(str::to_owned),
            tek: Some(TekStatus {
                reference: tek.into(),
                created_for: created_for.map(str::to_owned),
                connection: Some(t.spec.kms_ref.to_string()),
                ..TekStatus::default()
            }),
            ..EncryptedTopicStatus::default()
        });
        t
    }

    fn wants<'a>(obj: &'a EncryptedTopic, backend: KmsBackend<'a>, tek: &'a str) -> Wants<'a> {
        Wants {
            topic: obj.kafka_topic_name().unwrap(),
            tek,
            backend,
            any_tek_name: false,
        }
    }

    #[test]
    fn the_cheap_filter_keeps_every_object_that_could_hold_the_topic_or_tek() {
        let ks = keystore();
        let a = aws();
        for backend in [KmsBackend::Keystore(&ks), KmsBackend::AwsKms(&a)] {
            let mut explicit = object("a", "explicit", "u1", 1);
            explicit.spec.tek = Some("named".into());
            let dotted = object("a", "orders.v1", "u2", 2);
            let legacy = provisioned(
                object("a", "legacy", "u3", 3),
                &legacy_default_tek_name(backend, "a", "legacy"),
                None,
            );
            let mut renamed = object("a", "renamed", "u4", 4);
            renamed.spec.topic_name = Some("the-topic".into());
            let candidates = [explicit, dotted, legacy, renamed];
            let asker = object("b", "asker", "u9", 9);
            for holder in &candidates {
                let tek = tek_name(holder, backend);
                let topic = holder.kafka_topic_name().unwrap();
                for w in [
                    Wants {
                        topic,
                        tek: "unrelated",
                        backend,
                        any_tek_name: true,
                    },
                    Wants {
                        topic: "unrelated",
                        tek: &tek,
                        backend,
                        any_tek_name: true,
                    },
                ] {
                    assert!(may_conflict(holder, &w), "{tek} / {topic}");
                    // check() filters internally: the holder is still found.
                    let all = [Arc::new(holder.clone())];
                    assert!(check(&asker, &w, &all).is_err(), "{tek} / {topic}");
                }
            }
            let w = Wants {
                topic: "elsewhere",
                tek: "other-tek",
                backend,
                any_tek_name: true,
            };
            assert!(candidates.iter().all(|c| !may_conflict(c, &w)));
        }
    }

    #[test]
    fn default_names_cannot_collide_across_namespaces() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        // The old scheme gave both the same name.
        assert_eq!(
            legacy_default_tek_name(backend, "a-b", "c"),
            legacy_default_tek_name(backend, "a", "b-c")
        );
        assert_ne!(
            default_tek_name(backend, "a-b", "c"),
            default_tek_name(backend, "a", "b-c")
        );
        assert_eq!(
            default_tek_name(backend, "shop", "orders.v1"),
            "kafka-e2ee_shop_orders.v1"
        );
        let a = aws();
        assert_eq!(
            default_tek_name(KmsBackend::AwsKms(&a), "shop", "orders.v1"),
            "alias/kafka-e2ee/shop/orders_v1"
        );
        // Objects provisioned under the old default keep it.
        let old = provisioned(
            object("shop", "orders", "u1", 1),
            "kafka-e2ee-shop-orders",
            None,
        );
        assert_eq!(tek_name(&old, backend), "kafka-e2ee-shop-orders");
        assert!(created_for_this(&old, backend), "grandfathered");
        let fresh = object("shop", "orders", "u1", 1);
        assert_eq!(tek_name(&fresh, backend), "kafka-e2ee_shop_orders");
    }

    #[test]
    fn a_namespace_names_only_its_own_teks_on_a_cluster_connection() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        let mut thief = object("b", "steal", "ub", 1);
        thief.spec.tek = Some("kafka-e2ee_a_orders".into());
        let none: [Arc<EncryptedTopic>; 0] = [];
        assert!(matches!(
            check(
                &thief,
                &wants(&thief, backend, "kafka-e2ee_a_orders"),
                &none
            ),
            Err(ClaimError::OutsideNamespace { .. })
        ));
        // Allowed where the administrator says so, and always on the tenant's own connection
        // (there the KMS knows the tenant, not the operator).
        let mut any = wants(&thief, backend, "kafka-e2ee_a_orders");
        any.any_tek_name = true;
        assert_eq!(check(&thief, &any, &none), Ok(()));
        thief.spec.kms_ref.kind = KmsRefKind::KmsConnection;
        assert_eq!(
            check(
                &thief,
                &wants(&thief, backend, "kafka-e2ee_a_orders"),
                &none
            ),
            Ok(())
        );
        let mut own = object("b", "mine", "ub2", 1);
        own.spec.tek = Some("kafka-e2ee_b_custom".into());
        assert_eq!(
            check(&own, &wants(&own, backend, "kafka-e2ee_b_custom"), &none),
            Ok(())
        );
    }

    #[test]
    fn the_oldest_object_holds_a_tek_and_a_topic_even_while_being_deleted() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        let mut old = provisioned(
            object("a", "orders", "old", 1),
            "kafka-e2ee_a_orders",
            Some("old"),
        );
        old.metadata.deletion_timestamp = old.metadata.creation_timestamp.clone();
        // Re-applied with the same name right after the delete: a new uid, the same names.
        let new = object("a", "orders", "new", 2);
        let all = [Arc::new(old.clone()), Arc::new(new.clone())];
        let got = check(&new, &wants(&new, backend, &tek_name(&new, backend)), &all);
        assert!(
            matches!(&got, Err(e @ ClaimError::Held { deleting: true, what: "topic", .. }) if e.is_wait()),
            "{got:?}"
        );
        // The old one may still finish its deletion.
        assert_eq!(
            shred_targets(&old, "orders", backend, false, &all),
            Ok(ShredTargets {
                tek: Some("kafka-e2ee_a_orders".into()),
                topic: Some("orders".into())
            })
        );
        // Another namespace's object on another topic asking for a held TEK (any names allowed).
        let mut other = object("b", "copy", "ub", 3);
        other.spec.tek = Some("kafka-e2ee_a_orders".into());
        let mut w = wants(&other, backend, "kafka-e2ee_a_orders");
        w.any_tek_name = true;
        assert!(matches!(
            check(&other, &w, &all),
            Err(ClaimError::Held { what: "TEK", .. })
        ));
        // The same TEK name in the tenant's own connection is another KMS's key.
        other.spec.kms_ref.kind = KmsRefKind::KmsConnection;
        assert_eq!(
            check(&other, &wants(&other, backend, "kafka-e2ee_a_orders"), &all),
            Ok(())
        );
    }

    #[test]
    fn immutable_fields_changed_behind_the_webhook_are_refused() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        let mut obj = provisioned(
            object("a", "orders", "u", 1),
            "kafka-e2ee_a_orders",
            Some("u"),
        );
        obj.spec.tek = Some("kafka-e2ee_a_other".into());
        let none: [Arc<EncryptedTopic>; 0] = [];
        assert!(matches!(
            check(&obj, &wants(&obj, backend, "kafka-e2ee_a_other"), &none),
            Err(ClaimError::Changed {
                field: "spec.tek",
                ..
            })
        ));
        obj.spec.tek = None;
        obj.spec.kms_ref.name = "elsewhere".into();
        assert!(matches!(
            check(&obj, &wants(&obj, backend, "kafka-e2ee_a_orders"), &none),
            Err(ClaimError::Changed {
                field: "spec.kmsRef",
                ..
            })
        ));
        obj.spec.kms_ref.name = "shared".into();
        obj.spec.topic_name = Some("orders.v2".into());
        assert!(matches!(
            check(&obj, &wants(&obj, backend, "kafka-e2ee_a_orders"), &none),
            Err(ClaimError::Changed {
                field: "spec.topicName",
                ..
            })
        ));
    }

    #[test]
    fn shredding_deletes_only_a_tek_created_for_this_uid() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        let none: [Arc<EncryptedTopic>; 0] = [];
        // Adopted (it existed when this object came): not deleted.
        let adopted = provisioned(object("a", "orders", "u", 1), "kafka-e2ee_a_orders", None);
        assert_eq!(
            shred_targets(&adopted, "orders", backend, false, &none),
            Err(ShredRefusal::NotCreatedHere {
                tek: "kafka-e2ee_a_orders".into()
            })
        );
        // Created for an earlier object of the same name (another uid): not this one's.
        let successor = provisioned(
            object("a", "orders", "new", 1),
            "kafka-e2ee_a_orders",
            Some("old"),
        );
        assert!(shred_targets(&successor, "orders", backend, false, &none).is_err());
        // A status pointing at another namespace's TEK (status is writable by whoever has
        // encryptedtopics/status): refused by the same naming rules as the spec.
        let mut forged = provisioned(object("b", "x", "ub", 1), "kafka-e2ee_a_orders", Some("ub"));
        forged.spec.tek = Some("kafka-e2ee_a_orders".into());
        assert!(matches!(
            shred_targets(&forged, "x", backend, false, &none),
            Err(ShredRefusal::Claim(ClaimError::OutsideNamespace { .. }))
        ));
        let mut forged = provisioned(object("b", "x", "ub", 1), "kafka-e2ee_a_orders", Some("ub"));
        forged.spec.tek = None;
        assert!(matches!(
            shred_targets(&forged, "x", backend, false, &none),
            Err(ShredRefusal::Claim(ClaimError::Changed { .. }))
        ));
        // Never provisioned: nothing to destroy.
        let fresh = object("a", "orders", "u", 1);
        assert_eq!(
            shred_targets(&fresh, "orders", backend, false, &none),
            Ok(ShredTargets {
                tek: None,
                topic: None
            })
        );
    }

    /// Created in the same second (the apiserver's resolution): the one already provisioned
    /// keeps the topic, whatever the uids say.
    #[test]
    fn the_provisioned_object_keeps_a_topic_claimed_in_the_same_second() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        let owner = provisioned(
            object("a", "orders", "zzz", 5),
            "kafka-e2ee_a_orders",
            Some("zzz"),
        );
        let mut squatter = object("b", "squat", "aaa", 5);
        squatter.spec.topic_name = Some("orders".into());
        let all = [Arc::new(owner.clone()), Arc::new(squatter.clone())];
        assert!(matches!(
            check(
                &squatter,
                &wants(&squatter, backend, "kafka-e2ee_b_squat"),
                &all
            ),
            Err(ClaimError::Held { what: "topic", .. })
        ));
        assert_eq!(
            check(&owner, &wants(&owner, backend, "kafka-e2ee_a_orders"), &all),
            Ok(())
        );
    }

    #[test]
    fn a_tek_that_existed_before_may_be_shared_one_created_for_an_object_not() {
        let ks = keystore();
        let backend = KmsBackend::Keystore(&ks);
        let named = |t: EncryptedTopic| {
            let mut t = t;
            t.spec.tek = Some("team-key".into());
            t
        };
        let sharer = named(object("a", "payments", "u2", 2));
        let mut w = wants(&sharer, backend, "team-key");
        w.any_tek_name = true;
        // Adopted by `orders` (it existed before): nobody deletes it, so it may be shared.
        let adopter = named(provisioned(
            object("a", "orders", "u1", 1),
            "team-key",
            None,
        ));
        let all = [Arc::new(adopter), Arc::new(sharer.clone())];
        assert_eq!(check(&sharer, &w, &all), Ok(()));
        // Created by the operator for `orders`: exclusive.
        let owner = named(provisioned(
            object("a", "orders", "u1", 1),
            "team-key",
            Some("u1"),
        ));
        let all = [Arc::new(owner), Arc::new(sharer.clone())];
        assert!(matches!(
            check(&sharer, &w, &all),
            Err(ClaimError::Held { what: "TEK", .. })
        ));
        // Not provisioned yet: it may be about to create it.
        let pending = named(object("a", "orders", "u1", 1));
        let all = [Arc::new(pending), Arc::new(sharer.clone())];
        assert!(check(&sharer, &w, &all).is_err());
    }
}
