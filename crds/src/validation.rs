//! Rules the CRD schema cannot express (Kubernetes 1.20 has no CEL): checked by the operator
//! before it acts, and by the validating webhook before the API server stores an object.
//! Parse, don't validate: a valid spec comes back as [`ValidSpec`] with typed values.

use std::time::Duration;

use thiserror::Error;

use crate::duration::{DurationError, format_duration, parse_duration};
use crate::encrypted_topic::{DeletionPolicy, EncryptedTopic};
use crate::kms_connection::{BackendSelectionError, KmsBackend};
use crate::topic_name::{TopicNameError, validate_topic_name};

/// The shortest DEK rollover age accepted: shorter would make the operator a key generator.
pub const MIN_DEK_MAX_AGE: Duration = Duration::from_secs(5);
/// The shortest TEK rotation period accepted.
pub const MIN_TEK_ROTATION: Duration = Duration::from_secs(3600);
/// AES-GCM with random 96-bit nonces: at most 2^32 records under one key.
pub const MAX_RECORDS_PER_DEK: i64 = 1 << 32;

/// One reason a spec is invalid, worded for the person who wrote it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    #[error("metadata.name or spec.topicName must name the topic")]
    NoTopicName,
    #[error("spec.topicName: {0}")]
    TopicName(#[from] TopicNameError),
    #[error("spec.topicName: '{0}' is reserved for Kafka internals and the key topic")]
    ReservedTopic(String),
    #[error("{field}: {source}")]
    Duration {
        field: &'static str,
        #[source]
        source: DurationError,
    },
    #[error("{field}: {got} is shorter than the minimum {min}")]
    TooShort {
        field: &'static str,
        got: String,
        min: String,
    },
    #[error("spec.dekRollover.maxRecords: {0} is outside 1..=4294967296")]
    MaxRecords(i64),
    #[error("spec.partitions: {0} is outside 1..=10000")]
    Partitions(i32),
    #[error(
        "spec.deletionPolicy is Delete, which destroys the topic's data: set spec.confirmDeletion to '{topic}' to confirm"
    )]
    DeleteNotConfirmed { topic: String },
    #[error("spec.tek: '{0}' may contain only letters, digits, '-', '_', '.' and '/'")]
    TekName(String),
    #[error("kms connection: {0}")]
    Backend(#[from] BackendSelectionError),
    #[error("kms connection vault.auth: set exactly one of tokenSecretRef and kubernetes")]
    VaultAuth,
    #[error("kms connection {field}: '{value}' is not an http:// or https:// URL")]
    Url { field: &'static str, value: String },
    #[error(
        "kms connection {field}: '{value}' is plain http; use https (a ClusterKmsConnection may set allowInsecureHttp)"
    )]
    InsecureHttp { field: &'static str, value: String },
    #[error("kms connection {field}: only a ClusterKmsConnection may set it")]
    ClusterOnly { field: &'static str },
    #[error(
        "kms connection {field}: a ClusterKmsConnection authenticates as the operator; name no ServiceAccount"
    )]
    NamespacedOnly { field: &'static str },
    #[error(
        "kms connection vault.auth.kubernetes.serviceAccountRef: a KmsConnection must name the ServiceAccount of its namespace that the operator logs in as (it never uses its own)"
    )]
    ServiceAccountRequired,
    #[error(
        "kms connection awsKms: a KmsConnection needs credentialsSecretRef or webIdentity (exactly one); the operator never uses its own AWS identity for it"
    )]
    AwsIdentity,
    #[error(
        "kms connection hadoopKms: simple authentication (user alone) is spoofable; set tlsSecretRef with a client certificate (tls.crt, tls.key), or, on a ClusterKmsConnection, allowSimpleAuth"
    )]
    HadoopIdentity,
    #[error("kms connection {field}: set exactly one of secretRef and configMapRef")]
    CaBundle { field: &'static str },
    #[error(
        "kms connection {field}: '{value}' cannot be a token audience here (empty, or the Kubernetes API server's: such a token would let the KMS address act as the ServiceAccount in the cluster)"
    )]
    Audience { field: &'static str, value: String },
    #[error(
        "spec.tekRotation: keystore TEKs are rotated in the keystore Secret, not by the operator"
    )]
    KeystoreRotation,
    #[error(
        "spec.topicName: the topic is '{from}' and cannot become '{to}'; create a new EncryptedTopic for a new topic"
    )]
    TopicNameChanged { from: String, to: String },
    #[error(
        "spec.kmsRef: {from} cannot become {to}; the TEK lives in the KMS the topic was created with"
    )]
    KmsRefChanged { from: String, to: String },
    #[error(
        "spec.tek: {from} cannot become {to}; the topic's keys are wrapped under the TEK it was created with"
    )]
    TekChanged { from: String, to: String },
    #[error(
        "spec.deletionPolicy: Delete cannot crypto-shred a keystore TEK (the keystore Secret is yours: delete the key from it); use Retain"
    )]
    KeystoreDelete,
    #[error("spec.cipher: {from} cannot be downgraded to {to}")]
    CipherDowngrade { from: String, to: String },
    #[error(
        "spec.partitions: {from} cannot decrease to {to}; Kafka cannot remove partitions (their records and keys would be lost)"
    )]
    PartitionsDecreased { from: i32, to: i32 },
}

impl SpecError {
    /// A short, bounded name for metrics (denials by reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoTopicName | Self::TopicName(_) | Self::ReservedTopic(_) => "TopicName",
            Self::Duration { .. } | Self::TooShort { .. } | Self::MaxRecords(_) => "Rollover",
            Self::Partitions(_) => "Partitions",
            Self::DeleteNotConfirmed { .. } => "DeleteNotConfirmed",
            Self::TekName(_) => "TekName",
            Self::Backend(_)
            | Self::VaultAuth
            | Self::Url { .. }
            | Self::ClusterOnly { .. }
            | Self::NamespacedOnly { .. }
            | Self::CaBundle { .. }
            | Self::Audience { .. } => "KmsConnection",
            Self::InsecureHttp { .. } => "InsecureHttp",
            Self::ServiceAccountRequired | Self::AwsIdentity | Self::HadoopIdentity => {
                "KmsIdentity"
            }
            Self::KeystoreRotation => "KeystoreRotation",
            Self::TopicNameChanged { .. } => "TopicNameChanged",
            Self::KmsRefChanged { .. } => "KmsRefChanged",
            Self::TekChanged { .. } => "TekChanged",
            Self::KeystoreDelete => "KeystoreDelete",
            Self::CipherDowngrade { .. } => "CipherDowngrade",
            Self::PartitionsDecreased { .. } => "PartitionsDecreased",
        }
    }
}

/// A spec that passed every rule, with its values parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    pub topic: String,
    pub partitions: i32,
    pub tek_rotation: Option<Duration>,
    pub dek_max_age: Duration,
    pub dek_max_records: u64,
    pub deletion_policy: DeletionPolicy,
}

const RESERVED_TOPICS: &[&str] = &[
    "__consumer_offsets",
    "__transaction_state",
    "__cluster_metadata",
];

/// Every problem with `topic`'s spec (not its connection), or the parsed spec.
pub fn validate_encrypted_topic(topic: &EncryptedTopic) -> Result<ValidSpec, Vec<SpecError>> {
    let spec = &topic.spec;
    let mut errors = Vec::new();
    let name = match topic.kafka_topic_name() {
        None => {
            errors.push(SpecError::NoTopicName);
            String::new()
        }
        Some(name) => {
            if let Err(e) = validate_topic_name(name) {
                errors.push(e.into());
            } else if RESERVED_TOPICS.contains(&name) || name == "__encryption_keys" {
                errors.push(SpecError::ReservedTopic(name.to_owned()));
            }
            name.to_owned()
        }
    };
    if !(1..=10_000).contains(&spec.partitions) {
        errors.push(SpecError::Partitions(spec.partitions));
    }
    let mut duration = |field, text: &str, min: Duration| match parse_duration(text) {
        Ok(d) if d < min => {
            errors.push(SpecError::TooShort {
                field,
                got: text.to_owned(),
                min: format_duration(min),
            });
            None
        }
        Ok(d) => Some(d),
        Err(source) => {
            errors.push(SpecError::Duration { field, source });
            None
        }
    };
    let tek_rotation = spec
        .tek_rotation
        .as_ref()
        .map(|r| duration("spec.tekRotation.period", &r.period, MIN_TEK_ROTATION));
    let dek_max_age = duration(
        "spec.dekRollover.maxAge",
        &spec.dek_rollover.max_age,
        MIN_DEK_MAX_AGE,
    );
    let max_records = spec.dek_rollover.max_records;
    if !(1..=MAX_RECORDS_PER_DEK).contains(&max_records) {
        errors.push(SpecError::MaxRecords(max_records));
    }
    if spec.deletion_policy == DeletionPolicy::Delete
        && spec.confirm_deletion.as_deref() != Some(name.as_str())
    {
        errors.push(SpecError::DeleteNotConfirmed {
            topic: name.clone(),
        });
    }
    if let Some(tek) = &spec.tek
        && (tek.is_empty()
            || !tek
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        errors.push(SpecError::TekName(tek.clone()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Without errors, every duration parsed.
    match (dek_max_age, tek_rotation) {
        (Some(dek_max_age), None | Some(Some(_))) => Ok(ValidSpec {
            topic: name,
            partitions: spec.partitions,
            tek_rotation: tek_rotation.flatten(),
            dek_max_age,
            dek_max_records: u64::try_from(max_records).unwrap_or(1),
            deletion_policy: spec.deletion_policy,
        }),
        _ => Err(errors),
    }
}

/// Rules on changing an existing EncryptedTopic, beyond `validate_encrypted_topic(new)`: the
/// things that, once keys and data exist, cannot change without losing them. An unchanged spec
/// always passes (metadata-only updates, such as removing a finalizer, must never be blocked).
pub fn validate_update(old: &EncryptedTopic, new: &EncryptedTopic) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if old.spec == new.spec {
        return errors;
    }
    if let (Some(from), Some(to)) = (old.kafka_topic_name(), new.kafka_topic_name())
        && from != to
    {
        errors.push(SpecError::TopicNameChanged {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    let (from, to) = (&old.spec.kms_ref, &new.spec.kms_ref);
    if from != to {
        errors.push(SpecError::KmsRefChanged {
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    if old.spec.tek != new.spec.tek {
        let show = |t: &Option<String>| {
            t.as_deref()
                .map_or("unset (the default name)".to_owned(), |t| format!("'{t}'"))
        };
        errors.push(SpecError::TekChanged {
            from: show(&old.spec.tek),
            to: show(&new.spec.tek),
        });
    }
    let (from, to) = (old.spec.cipher, new.spec.cipher);
    if to.strength() < from.strength() {
        errors.push(SpecError::CipherDowngrade {
            from: from.engine_name().to_owned(),
            to: to.engine_name().to_owned(),
        });
    }
    if new.spec.partitions < old.spec.partitions {
        errors.push(SpecError::PartitionsDecreased {
            from: old.spec.partitions,
            to: new.spec.partitions,
        });
    }
    errors
}

/// A token audience the operator may request for a connection: never empty (the apiserver
/// then issues a token for its own audiences) nor one of the apiserver's usual audiences. The
/// token goes to the connection's address, which its author chose.
fn audience(field: &'static str, value: &str, errors: &mut Vec<SpecError>) {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.contains("kubernetes.default.svc") {
        errors.push(SpecError::Audience {
            field,
            value: value.to_owned(),
        });
    }
}

/// Which kind of object holds a connection. The rules differ: a namespaced KmsConnection is a
/// tenant's, so the operator must authenticate there only as something of that namespace and
/// never send a credential over plain http; a ClusterKmsConnection is a cluster
/// administrator's, and uses the operator's own identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionScope {
    Namespaced,
    Cluster,
}

/// Problems with a connection's backend: exactly one, well-formed URLs (https unless a
/// ClusterKmsConnection allows http), one auth method, and the identity rules of `scope`.
pub fn validate_backend<'a>(
    selected: Result<KmsBackend<'a>, BackendSelectionError>,
    scope: ConnectionScope,
) -> Result<KmsBackend<'a>, Vec<SpecError>> {
    let backend = selected.map_err(|e| vec![e.into()])?;
    let cluster = scope == ConnectionScope::Cluster;
    let mut errors = Vec::new();
    let url = |field, value: &str, https_only: bool, errors: &mut Vec<SpecError>| {
        let secure = value.starts_with("https://");
        if !(secure || value.starts_with("http://")) || value.len() <= "https://".len() {
            errors.push(SpecError::Url {
                field,
                value: value.to_owned(),
            });
        } else if https_only && !secure {
            errors.push(SpecError::InsecureHttp {
                field,
                value: value.to_owned(),
            });
        }
    };
    let cluster_only = |set: bool, field, errors: &mut Vec<SpecError>| {
        if set && !cluster {
            errors.push(SpecError::ClusterOnly { field });
        }
    };
    match backend {
        KmsBackend::Vault(v) => {
            cluster_only(
                v.allow_insecure_http,
                "vault.allowInsecureHttp",
                &mut errors,
            );
            url(
                "vault.address",
                &v.address,
                !(cluster && v.allow_insecure_http),
                &mut errors,
            );
            if v.auth.token_secret_ref.is_some() == v.auth.kubernetes.is_some() {
                errors.push(SpecError::VaultAuth);
            }
            if let Some(k8s) = &v.auth.kubernetes {
                audience(
                    "vault.auth.kubernetes.audience",
                    k8s.audience_or_default(),
                    &mut errors,
                );
                match (scope, &k8s.service_account_ref) {
                    (ConnectionScope::Namespaced, None) => {
                        errors.push(SpecError::ServiceAccountRequired);
                    }
                    (ConnectionScope::Cluster, Some(_)) => errors.push(SpecError::NamespacedOnly {
                        field: "vault.auth.kubernetes.serviceAccountRef",
                    }),
                    _ => {}
                }
            }
            if let Some(ca) = &v.ca
                && ca.secret_ref.is_some() == ca.config_map_ref.is_some()
            {
                errors.push(SpecError::CaBundle { field: "vault.ca" });
            }
        }
        KmsBackend::AwsKms(a) => {
            if let Some(endpoint) = &a.endpoint {
                url("awsKms.endpoint", endpoint, false, &mut errors);
            }
            if let Some(web) = &a.web_identity {
                if let Some(sts) = &web.sts_endpoint {
                    url("awsKms.webIdentity.stsEndpoint", sts, false, &mut errors);
                }
                audience(
                    "awsKms.webIdentity.audience",
                    web.audience_or_default(),
                    &mut errors,
                );
            }
            let both = a.credentials_secret_ref.is_some() && a.web_identity.is_some();
            let neither = a.credentials_secret_ref.is_none() && a.web_identity.is_none();
            if both || (neither && !cluster) {
                errors.push(SpecError::AwsIdentity);
            }
        }
        KmsBackend::HadoopKms(h) => {
            cluster_only(
                h.allow_insecure_http,
                "hadoopKms.allowInsecureHttp",
                &mut errors,
            );
            cluster_only(
                h.allow_simple_auth,
                "hadoopKms.allowSimpleAuth",
                &mut errors,
            );
            url(
                "hadoopKms.url",
                &h.url,
                !(cluster && h.allow_insecure_http),
                &mut errors,
            );
            if h.tls_secret_ref.is_none() && !(cluster && h.allow_simple_auth) {
                errors.push(SpecError::HadoopIdentity);
            }
        }
        KmsBackend::Keystore(_) => {}
    }
    if errors.is_empty() {
        Ok(backend)
    } else {
        Err(errors)
    }
}

/// Rules that need both the topic and its connection's backend kind ([`KmsBackend::kind`]).
pub fn validate_pairing(spec: &ValidSpec, backend_kind: &str) -> Result<(), SpecError> {
    let keystore = backend_kind == "keystore";
    if spec.tek_rotation.is_some() && keystore {
        return Err(SpecError::KeystoreRotation);
    }
    if spec.deletion_policy == DeletionPolicy::Delete && keystore {
        return Err(SpecError::KeystoreDelete);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::encrypted_topic::{EncryptedTopicSpec, KmsRef, KmsRefKind, TekRotation};
    use crate::kms_connection::{
        AwsKmsBackend, AwsWebIdentity, CaBundleRef, HadoopKmsBackend, KeystoreBackend,
        KmsConnectionSpec, SecretKeyRef, SecretRef, ServiceAccountRef, VaultAuthSpec, VaultBackend,
        VaultKubernetesAuthSpec,
    };

    fn topic(edit: impl FnOnce(&mut EncryptedTopicSpec)) -> EncryptedTopic {
        let mut spec = EncryptedTopicSpec::new(
            3,
            KmsRef {
                kind: KmsRefKind::KmsConnection,
                name: "vault".into(),
            },
        );
        edit(&mut spec);
        EncryptedTopic {
            metadata: ObjectMeta {
                name: Some("orders".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec,
            status: None,
        }
    }

    #[test]
    fn defaults_are_valid_and_parsed() {
        let valid = validate_encrypted_topic(&topic(|_| {})).unwrap();
        assert_eq!(
            valid,
            ValidSpec {
                topic: "orders".into(),
                partitions: 3,
                tek_rotation: None,
                dek_max_age: Duration::from_secs(30 * 86_400),
                dek_max_records: 1_000_000_000,
                deletion_policy: DeletionPolicy::Retain,
            }
        );
        let valid = validate_encrypted_topic(&topic(|s| {
            s.topic_name = Some("orders.v2".into());
            s.tek_rotation = Some(TekRotation {
                period: "90d".into(),
            });
            s.deletion_policy = DeletionPolicy::Delete;
            s.confirm_deletion = Some("orders.v2".into());
            s.tek = Some("alias/orders".into());
        }))
        .unwrap();
        assert_eq!(valid.topic, "orders.v2");
        assert_eq!(valid.tek_rotation, Some(Duration::from_secs(90 * 86_400)));
    }

    #[test]
    fn every_invalid_spec_gets_its_reason() {
        type Edit = fn(&mut EncryptedTopicSpec);
        let cases: &[(Edit, SpecError)] = &[
            (
                |s| s.topic_name = Some("a/b".into()),
                SpecError::TopicName(TopicNameError::IllegalChar {
                    name: "a/b".into(),
                    ch: '/',
                }),
            ),
            (
                |s| s.topic_name = Some("__consumer_offsets".into()),
                SpecError::ReservedTopic("__consumer_offsets".into()),
            ),
            (
                |s| s.topic_name = Some("__encryption_keys".into()),
                SpecError::ReservedTopic("__encryption_keys".into()),
            ),
            (|s| s.partitions = 0, SpecError::Partitions(0)),
            (
                |s| s.dek_rollover.max_age = "soon".into(),
                SpecError::Duration {
                    field: "spec.dekRollover.maxAge",
                    source: DurationError {
                        input: "soon".into(),
                    },
                },
            ),
            (
                |s| s.dek_rollover.max_age = "1s".into(),
                SpecError::TooShort {
                    field: "spec.dekRollover.maxAge",
                    got: "1s".into(),
                    min: "5s".into(),
                },
            ),
            (
                |s| {
                    s.tek_rotation = Some(TekRotation {
                        period: "10m".into(),
                    })
                },
                SpecError::TooShort {
                    field: "spec.tekRotation.period",
                    got: "10m".into(),
                    min: "1h".into(),
                },
            ),
            (|s| s.dek_rollover.max_records = 0, SpecError::MaxRecords(0)),
            (
                |s| s.dek_rollover.max_records = MAX_RECORDS_PER_DEK + 1,
                SpecError::MaxRecords(MAX_RECORDS_PER_DEK + 1),
            ),
            (
                |s| s.deletion_policy = DeletionPolicy::Delete,
                SpecError::DeleteNotConfirmed {
                    topic: "orders".into(),
                },
            ),
            (
                |s| {
                    s.deletion_policy = DeletionPolicy::Delete;
                    s.confirm_deletion = Some("payments".into());
                },
                SpecError::DeleteNotConfirmed {
                    topic: "orders".into(),
                },
            ),
            (
                |s| s.tek = Some("my key".into()),
                SpecError::TekName("my key".into()),
            ),
        ];
        for (edit, want) in cases {
            let got = validate_encrypted_topic(&topic(edit)).unwrap_err();
            assert_eq!(got, vec![want.clone()], "{want}");
        }
    }

    #[test]
    fn reports_all_problems_at_once() {
        let got = validate_encrypted_topic(&topic(|s| {
            s.partitions = -1;
            s.dek_rollover.max_records = -5;
        }))
        .unwrap_err();
        assert_eq!(
            got,
            vec![SpecError::Partitions(-1), SpecError::MaxRecords(-5)]
        );
    }

    #[test]
    fn updates_that_would_lose_keys_or_data_are_refused() {
        let old = topic(|s| s.partitions = 6);
        type Edit = fn(&mut EncryptedTopicSpec);
        let cases: &[(Edit, SpecError)] = &[
            (
                |s| s.topic_name = Some("orders.v2".into()),
                SpecError::TopicNameChanged {
                    from: "orders".into(),
                    to: "orders.v2".into(),
                },
            ),
            (
                |s| s.kms_ref.kind = KmsRefKind::ClusterKmsConnection,
                SpecError::KmsRefChanged {
                    from: "KmsConnection/vault".into(),
                    to: "ClusterKmsConnection/vault".into(),
                },
            ),
            (
                |s| s.kms_ref.name = "other".into(),
                SpecError::KmsRefChanged {
                    from: "KmsConnection/vault".into(),
                    to: "KmsConnection/other".into(),
                },
            ),
            (
                |s| s.tek = Some("another-tek".into()),
                SpecError::TekChanged {
                    from: "unset (the default name)".into(),
                    to: "'another-tek'".into(),
                },
            ),
            (
                |s| s.partitions = 5,
                SpecError::PartitionsDecreased { from: 6, to: 5 },
            ),
        ];
        for (edit, want) in cases {
            let mut new = old.clone();
            edit(&mut new.spec);
            assert_eq!(validate_update(&old, &new), vec![want.clone()], "{want}");
        }
    }

    #[test]
    fn updates_that_keep_keys_and_data_pass() {
        let old = topic(|s| s.partitions = 6);
        // Unchanged spec (e.g. a finalizer removed), even if it would fail today's rules.
        let mut same = old.clone();
        same.metadata.finalizers = Some(vec![]);
        assert!(validate_update(&old, &same).is_empty());
        type Edit = fn(&mut EncryptedTopicSpec);
        let allowed: &[Edit] = &[
            |s| s.partitions = 12,
            // Naming the topic explicitly as what metadata.name already implied.
            |s| s.topic_name = Some("orders".into()),
            |s| s.dek_rollover.max_age = "7d".into(),
            |s| s.plaintext_policy = crate::PlaintextPolicy::Allow,
            |s| s.cipher = crate::Cipher::Aes256Gcm,
        ];
        for edit in allowed {
            let mut new = old.clone();
            edit(&mut new.spec);
            assert_eq!(validate_update(&old, &new), vec![], "{:?}", new.spec);
        }
    }

    fn connection(edit: impl FnOnce(&mut KmsConnectionSpec)) -> KmsConnectionSpec {
        let mut spec = KmsConnectionSpec {
            vault: None,
            aws_kms: None,
            hadoop_kms: None,
            keystore: None,
        };
        edit(&mut spec);
        spec
    }

    fn vault(auth: VaultAuthSpec) -> VaultBackend {
        VaultBackend {
            address: "https://127.0.0.1:8200".into(),
            mount: None,
            namespace: None,
            auth,
            ca: None,
            allow_insecure_http: false,
        }
    }

    fn k8s_auth(service_account: Option<&str>) -> VaultAuthSpec {
        VaultAuthSpec {
            token_secret_ref: None,
            kubernetes: Some(VaultKubernetesAuthSpec {
                role: "r".into(),
                client_role: None,
                mount: None,
                audience: None,
                service_account_ref: service_account
                    .map(|name| ServiceAccountRef { name: name.into() }),
            }),
        }
    }

    fn hadoop(url: &str, tls: bool, simple: bool, http: bool) -> HadoopKmsBackend {
        HadoopKmsBackend {
            url: url.into(),
            user: "u".into(),
            tls_secret_ref: tls.then(|| SecretRef { name: "tls".into() }),
            allow_simple_auth: simple,
            allow_insecure_http: http,
        }
    }

    fn aws(secret: bool, web: bool) -> AwsKmsBackend {
        AwsKmsBackend {
            region: None,
            endpoint: Some("http://127.0.0.1:5000".into()),
            credentials_secret_ref: secret.then(|| SecretRef { name: "aws".into() }),
            web_identity: web.then(|| AwsWebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                service_account_ref: ServiceAccountRef { name: "sa".into() },
                audience: None,
                sts_endpoint: None,
            }),
        }
    }

    /// The tenant's connection authenticates only as something of its namespace, never in
    /// the clear; the cluster administrator's may use the operator's identity, and opt in to
    /// http and simple auth explicitly.
    #[test]
    fn each_scope_has_its_identity_and_transport_rules() {
        use ConnectionScope::{Cluster, Namespaced};
        let check = |backend: KmsBackend<'_>, scope| validate_backend(Ok(backend), scope).err();
        // Vault Kubernetes auth: a namespaced connection names its ServiceAccount; a cluster one
        // must not (it logs in as the operator).
        let tenant = vault(k8s_auth(Some("kms-login")));
        assert_eq!(check(KmsBackend::Vault(&tenant), Namespaced), None);
        assert_eq!(
            check(KmsBackend::Vault(&vault(k8s_auth(None))), Namespaced),
            Some(vec![SpecError::ServiceAccountRequired])
        );
        assert_eq!(
            check(KmsBackend::Vault(&vault(k8s_auth(None))), Cluster),
            None
        );
        assert!(check(KmsBackend::Vault(&tenant), Cluster).is_some());
        // http: never namespaced; on a cluster connection only when allowed.
        let mut plain = vault(k8s_auth(None));
        plain.address = "http://vault:8200".into();
        assert_eq!(
            check(KmsBackend::Vault(&plain), Cluster),
            Some(vec![SpecError::InsecureHttp {
                field: "vault.address",
                value: "http://vault:8200".into()
            }])
        );
        plain.allow_insecure_http = true;
        assert_eq!(check(KmsBackend::Vault(&plain), Cluster), None);
        let mut tenant_plain = tenant.clone();
        tenant_plain.address = "http://vault:8200".into();
        tenant_plain.allow_insecure_http = true;
        assert_eq!(
            check(KmsBackend::Vault(&tenant_plain), Namespaced),
            Some(vec![
                SpecError::ClusterOnly {
                    field: "vault.allowInsecureHttp"
                },
                SpecError::InsecureHttp {
                    field: "vault.address",
                    value: "http://vault:8200".into()
                }
            ])
        );
        // AWS: a tenant names its credentials or its web identity, one of them.
        assert_eq!(
            check(KmsBackend::AwsKms(&aws(true, false)), Namespaced),
            None
        );
        assert_eq!(
            check(KmsBackend::AwsKms(&aws(false, true)), Namespaced),
            None
        );
        for (secret, web) in [(false, false), (true, true)] {
            assert_eq!(
                check(KmsBackend::AwsKms(&aws(secret, web)), Namespaced),
                Some(vec![SpecError::AwsIdentity])
            );
        }
        assert_eq!(check(KmsBackend::AwsKms(&aws(false, false)), Cluster), None);
        // Hadoop: mutual TLS for tenants; simple auth and http only where a cluster
        // connection says so.
        let https = "https://kms:9600/kms";
        assert_eq!(
            check(
                KmsBackend::HadoopKms(&hadoop(https, true, false, false)),
                Namespaced
            ),
            None
        );
        assert_eq!(
            check(
                KmsBackend::HadoopKms(&hadoop(https, false, false, false)),
                Namespaced
            ),
            Some(vec![SpecError::HadoopIdentity])
        );
        assert_eq!(
            check(
                KmsBackend::HadoopKms(&hadoop(https, false, true, false)),
                Namespaced
            ),
            Some(vec![
                SpecError::ClusterOnly {
                    field: "hadoopKms.allowSimpleAuth"
                },
                SpecError::HadoopIdentity
            ])
        );
        assert_eq!(
            check(
                KmsBackend::HadoopKms(&hadoop(https, false, true, false)),
                Cluster
            ),
            None
        );
        assert_eq!(
            check(
                KmsBackend::HadoopKms(&hadoop("http://kms:9600/kms", false, true, true)),
                Cluster
            ),
            None
        );
        // A token for the apiserver's own audience would act as the ServiceAccount there.
        let mut apiserver = tenant.clone();
        if let Some(k8s) = &mut apiserver.auth.kubernetes {
            k8s.audience = Some("https://kubernetes.default.svc.cluster.local".into());
        }
        assert!(matches!(
            check(KmsBackend::Vault(&apiserver), Namespaced).as_deref(),
            Some([SpecError::Audience { .. }])
        ));
        // A CA bundle names exactly one source.
        let mut with_ca = tenant.clone();
        with_ca.ca = Some(CaBundleRef {
            secret_ref: None,
            config_map_ref: None,
        });
        assert_eq!(
            check(KmsBackend::Vault(&with_ca), Namespaced),
            Some(vec![SpecError::CaBundle { field: "vault.ca" }])
        );
    }

    fn secret_key() -> SecretKeyRef {
        SecretKeyRef {
            name: "s".into(),
            key: "k".into(),
        }
    }

    #[test]
    fn connections_hold_exactly_one_wellformed_backend() {
        let ok = connection(|c| {
            c.vault = Some(vault(VaultAuthSpec {
                token_secret_ref: Some(secret_key()),
                kubernetes: None,
            }))
        });
        assert_eq!(
            validate_backend(ok.backend(), ConnectionScope::Namespaced)
                .unwrap()
                .kind(),
            "vault"
        );
        let cases: Vec<(KmsConnectionSpec, SpecError)> = vec![
            (
                connection(|_| {}),
                SpecError::Backend(BackendSelectionError::None),
            ),
            (
                connection(|c| {
                    c.keystore = Some(KeystoreBackend {
                        secret_ref: secret_key(),
                    });
                    c.hadoop_kms = Some(hadoop("https://kms:9600/kms", true, false, false));
                }),
                SpecError::Backend(BackendSelectionError::Several(2)),
            ),
            (
                connection(|c| {
                    c.vault = Some(vault(VaultAuthSpec {
                        token_secret_ref: None,
                        kubernetes: None,
                    }))
                }),
                SpecError::VaultAuth,
            ),
            (
                connection(|c| {
                    c.vault = Some(vault(VaultAuthSpec {
                        token_secret_ref: Some(secret_key()),
                        kubernetes: k8s_auth(Some("sa")).kubernetes,
                    }))
                }),
                SpecError::VaultAuth,
            ),
            (
                connection(|c| c.hadoop_kms = Some(hadoop("kms:9600", true, false, false))),
                SpecError::Url {
                    field: "hadoopKms.url",
                    value: "kms:9600".into(),
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                validate_backend(spec.backend(), ConnectionScope::Namespaced).unwrap_err(),
                vec![want.clone()],
                "{want}"
            );
        }
    }

    #[test]
    fn keystore_topics_cannot_ask_for_rotation_or_shredding() {
        let keystore = KeystoreBackend {
            secret_ref: secret_key(),
        };
        let mut spec = validate_encrypted_topic(&topic(|_| {})).unwrap();
        assert_eq!(
            validate_pairing(&spec, KmsBackend::Keystore(&keystore).kind()),
            Ok(())
        );
        spec.tek_rotation = Some(Duration::from_secs(3600));
        assert_eq!(
            validate_pairing(&spec, KmsBackend::Keystore(&keystore).kind()),
            Err(SpecError::KeystoreRotation)
        );
        spec.tek_rotation = None;
        spec.deletion_policy = DeletionPolicy::Delete;
        assert_eq!(
            validate_pairing(&spec, KmsBackend::Keystore(&keystore).kind()),
            Err(SpecError::KeystoreDelete)
        );
    }
}
