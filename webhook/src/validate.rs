//! The validating half: every rule the CRD schema cannot express on Kubernetes 1.20 (no
//! CEL), from `kafka_e2ee_crds::validation`, the same functions the operator runs before it
//! acts, so the webhook and the operator never disagree.

use kafka_e2ee_crds::validation::{
    ConnectionScope, SpecError, validate_backend, validate_encrypted_topic, validate_pairing,
    validate_update,
};
use kafka_e2ee_crds::{ClusterKmsConnection, EncryptedTopic, KmsConnection, KmsRef};
use kube::core::object::HasSpec;
use serde_json::value::RawValue;

use crate::review::Operation;

/// A refusal: the reasons (bounded, for metrics) and one message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reasons: Vec<&'static str>,
    pub message: String,
}

/// The kinds this webhook validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EncryptedTopic,
    KmsConnection,
    ClusterKmsConnection,
}

impl Kind {
    pub fn from_name(kind: &str) -> Option<Self> {
        match kind {
            "EncryptedTopic" => Some(Self::EncryptedTopic),
            "KmsConnection" => Some(Self::KmsConnection),
            "ClusterKmsConnection" => Some(Self::ClusterKmsConnection),
            _ => None,
        }
    }
}

/// Validates a CREATE or UPDATE of `kind`. Other operations pass. `connection_kind` tells an
/// EncryptedTopic's backend kind where its connection is known (rules that need both).
pub fn review(
    kind: Kind,
    operation: Operation,
    object: Option<&RawValue>,
    old: Option<&RawValue>,
    connection_kind: impl Fn(&KmsRef) -> Option<&'static str>,
) -> Result<(), Refusal> {
    if !matches!(operation, Operation::Create | Operation::Update) {
        return Ok(());
    }
    let Some(object) = object else {
        return Err(malformed("the request has no object"));
    };
    let (name, errors) = match kind {
        Kind::EncryptedTopic => {
            let new: EncryptedTopic = parse(object)?;
            let mut errors = match validate_encrypted_topic(&new) {
                Ok(valid) => connection_kind(&new.spec.kms_ref)
                    .and_then(|backend| validate_pairing(&valid, backend).err())
                    .into_iter()
                    .collect(),
                Err(errors) => errors,
            };
            if let (Operation::Update, Some(old)) = (operation, old) {
                let old: EncryptedTopic = parse(old)?;
                if old.spec == new.spec {
                    // Metadata-only (finalizers, labels): never blocked, even if the
                    // stored spec predates a rule.
                    return Ok(());
                }
                errors.extend(validate_update(&old, &new));
            }
            (new.metadata.name, errors)
        }
        Kind::KmsConnection => {
            let conn: KmsConnection = parse(object)?;
            if unchanged_spec(operation, old, &conn)? {
                return Ok(());
            }
            let errors = validate_backend(conn.spec.backend(), ConnectionScope::Namespaced).err();
            (conn.metadata.name, errors.unwrap_or_default())
        }
        Kind::ClusterKmsConnection => {
            let conn: ClusterKmsConnection = parse(object)?;
            if unchanged_spec(operation, old, &conn)? {
                return Ok(());
            }
            let errors = validate_backend(conn.spec.backend(), ConnectionScope::Cluster).err();
            (conn.metadata.name, errors.unwrap_or_default())
        }
    };
    if errors.is_empty() {
        return Ok(());
    }
    Err(refusal(kind, name.as_deref().unwrap_or_default(), &errors))
}

/// Whether an UPDATE leaves the spec as it was (finalizers, labels, status): never blocked,
/// even if the stored spec predates a rule, so deletion and status writes always go through.
fn unchanged_spec<K>(operation: Operation, old: Option<&RawValue>, new: &K) -> Result<bool, Refusal>
where
    K: HasSpec + for<'de> serde::Deserialize<'de>,
    K::Spec: PartialEq,
{
    let (Operation::Update, Some(old)) = (operation, old) else {
        return Ok(false);
    };
    let old: K = parse(old)?;
    Ok(old.spec() == new.spec())
}

fn refusal(kind: Kind, name: &str, errors: &[SpecError]) -> Refusal {
    let mut reasons: Vec<&'static str> = errors.iter().map(SpecError::reason).collect();
    reasons.dedup();
    let details: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Refusal {
        reasons,
        message: format!("{kind:?} {name} is invalid: {}", details.join("; ")),
    }
}

fn parse<K: for<'de> serde::Deserialize<'de>>(object: &RawValue) -> Result<K, Refusal> {
    serde_json::from_str(object.get())
        .map_err(|e| malformed(&format!("the object does not parse: {e}")))
}

fn malformed(message: &str) -> Refusal {
    Refusal {
        reasons: vec!["Malformed"],
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use kafka_e2ee_crds::{EncryptedTopicSpec, KmsRef, KmsRefKind};
    use serde_json::json;

    use super::*;

    /// No connection known (the webhook has not seen it, or it does not exist yet).
    fn unknown(_: &KmsRef) -> Option<&'static str> {
        None
    }

    fn dynamic(value: serde_json::Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).unwrap()
    }

    fn topic(edit: impl FnOnce(&mut EncryptedTopicSpec)) -> Box<RawValue> {
        let mut spec = EncryptedTopicSpec::new(
            6,
            KmsRef {
                kind: KmsRefKind::KmsConnection,
                name: "vault".into(),
            },
        );
        edit(&mut spec);
        let mut t = EncryptedTopic::new("orders", spec);
        t.metadata.namespace = Some("shop".into());
        dynamic(serde_json::to_value(t).unwrap())
    }

    #[test]
    fn creates_get_the_spec_rules_with_one_message() {
        let bad = topic(|s| {
            s.partitions = 0;
            s.dek_rollover.max_age = "1s".into();
        });
        let refusal = review(
            Kind::EncryptedTopic,
            Operation::Create,
            Some(&*bad),
            None,
            unknown,
        )
        .unwrap_err();
        assert_eq!(refusal.reasons, ["Partitions", "Rollover"]);
        assert_eq!(
            refusal.message,
            "EncryptedTopic orders is invalid: spec.partitions: 0 is outside 1..=10000; \
             spec.dekRollover.maxAge: 1s is shorter than the minimum 5s"
        );
        let good = topic(|_| {});
        assert_eq!(
            review(
                Kind::EncryptedTopic,
                Operation::Create,
                Some(&*good),
                None,
                unknown
            ),
            Ok(())
        );
    }

    #[test]
    fn updates_get_the_update_rules_and_metadata_only_updates_pass() {
        let old = topic(|_| {});
        let shrunk = topic(|s| s.partitions = 3);
        let refusal = review(
            Kind::EncryptedTopic,
            Operation::Update,
            Some(&shrunk),
            Some(&old),
            unknown,
        )
        .unwrap_err();
        assert_eq!(refusal.reasons, ["PartitionsDecreased"]);
        // An object stored before a rule existed can still lose its finalizer.
        let stale = topic(|s| s.partitions = 0);
        let mut removed: serde_json::Value = serde_json::from_str(stale.get()).unwrap();
        removed["metadata"]["finalizers"] = serde_json::json!([]);
        let finalizer_removed = dynamic(removed);
        assert_eq!(
            review(
                Kind::EncryptedTopic,
                Operation::Update,
                Some(&finalizer_removed),
                Some(&stale),
                unknown
            ),
            Ok(())
        );
        assert_eq!(
            review(
                Kind::EncryptedTopic,
                Operation::Delete,
                None,
                Some(&*old),
                unknown
            ),
            Ok(())
        );
    }

    /// Rules that need the connection apply when the webhook knows it; the operator applies
    /// them too (it knows it always).
    #[test]
    fn a_keystore_topic_cannot_ask_for_crypto_shredding() {
        let shredding = topic(|s| {
            s.deletion_policy = kafka_e2ee_crds::DeletionPolicy::Delete;
            s.confirm_deletion = Some("orders".into());
        });
        let keystore = |_: &KmsRef| Some("keystore");
        let refusal = review(
            Kind::EncryptedTopic,
            Operation::Create,
            Some(&*shredding),
            None,
            keystore,
        )
        .unwrap_err();
        assert_eq!(refusal.reasons, ["KeystoreDelete"]);
        assert_eq!(
            review(
                Kind::EncryptedTopic,
                Operation::Create,
                Some(&*shredding),
                None,
                |_| Some("vault")
            ),
            Ok(())
        );
        assert_eq!(
            review(
                Kind::EncryptedTopic,
                Operation::Create,
                Some(&*shredding),
                None,
                unknown
            ),
            Ok(())
        );
    }

    #[test]
    fn connections_need_exactly_one_wellformed_backend() {
        let two = dynamic(json!({
            "apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "ClusterKmsConnection",
            "metadata": {"name": "shared"},
            "spec": {"awsKms": {}, "hadoopKms": {"url": "ftp://x", "user": "u"}},
        }));
        let refusal = review(
            Kind::ClusterKmsConnection,
            Operation::Create,
            Some(&*two),
            None,
            unknown,
        )
        .unwrap_err();
        assert_eq!(refusal.reasons, ["KmsConnection"]);
        assert!(
            refusal.message.contains("2 backends set"),
            "{}",
            refusal.message
        );
        let vault = dynamic(json!({
            "apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "KmsConnection",
            "metadata": {"name": "vault", "namespace": "shop"},
            "spec": {"vault": {"address": "vault:8200", "auth": {}}},
        }));
        let refusal = review(
            Kind::KmsConnection,
            Operation::Create,
            Some(&*vault),
            None,
            unknown,
        )
        .unwrap_err();
        assert!(
            refusal
                .message
                .contains("vault.address: 'vault:8200' is not an http"),
            "{}",
            refusal.message
        );
        assert!(
            refusal
                .message
                .contains("exactly one of tokenSecretRef and kubernetes"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn objects_of_the_wrong_shape_are_refused_not_panicked_on() {
        let wrong = dynamic(json!({
            "apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "EncryptedTopic",
            "metadata": {"name": "orders"}, "spec": {"partitions": "many"},
        }));
        let refusal = review(
            Kind::EncryptedTopic,
            Operation::Create,
            Some(&*wrong),
            None,
            unknown,
        )
        .unwrap_err();
        assert_eq!(refusal.reasons, ["Malformed"]);
        assert_eq!(
            review(Kind::EncryptedTopic, Operation::Create, None, None, unknown)
                .unwrap_err()
                .reasons,
            ["Malformed"]
        );
    }
}
