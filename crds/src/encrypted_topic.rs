use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kafka topic whose record values and headers are encrypted end to end (KIP-317).
///
/// The operator provisions the topic encryption key (TEK) in the referenced KMS, creates or
/// adopts the Kafka topic, and publishes one wrapped data key (EDEK) per partition to the key
/// topic before any client uses it. It then rolls data keys over by age and record count and
/// rotates the TEK on schedule.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kafka-e2ee.io",
    version = "v1alpha1",
    kind = "EncryptedTopic",
    namespaced,
    status = "EncryptedTopicStatus",
    shortname = "etopic",
    category = "kafka-e2ee",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topic"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Keys","type":"string","jsonPath":".status.keys.summary","description":"Current DEK versions across partitions"}"#,
    printcolumn = r#"{"name":"TEK","type":"string","jsonPath":".status.tek.version","description":"Current TEK version","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    // A string, not a date: kubectl renders a future date as "<invalid>" (it only does ages).
    printcolumn = r#"{"name":"Next Rollover","type":"string","jsonPath":".status.nextRollover","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedTopicSpec {
    /// Name of the Kafka topic. Defaults to metadata.name. Immutable once set. Kafka's
    /// characters only (letters, digits, `.`, `_`, `-`), at most 249.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic_name: Option<String>,
    /// Number of partitions. May grow (new partitions get their own data keys), never shrink.
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    /// Replication factor for a topic the operator creates. Broker default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replicas: Option<i32>,
    /// Extra Kafka topic configuration (e.g. retention.ms) applied when the operator creates
    /// the topic. An adopted topic keeps its configuration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The KMS connection object that holds this topic's encryption key.
    pub kms_ref: KmsRef,
    /// Name of the TEK in the KMS (for AWS KMS an alias, `alias/...`). Defaults to
    /// `kafka-e2ee_<namespace>_<name>` (AWS KMS: `alias/kafka-e2ee/<namespace>/<name>`, dots
    /// as `_`). On a ClusterKmsConnection it must start with that same namespace prefix
    /// unless the connection sets `allowAnyTekName`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 250))]
    pub tek: Option<String>,
    /// When the operator rotates the TEK (wrapped data keys are then re-wrapped under the new
    /// version; no record data is rewritten). Unset: never (rotate in the KMS yourself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tek_rotation: Option<TekRotation>,
    /// When each partition gets a new data key (DEK). Both limits apply; whichever is reached
    /// first rolls the partition over.
    #[serde(default)]
    pub dek_rollover: DekRollover,
    /// The record cipher.
    #[serde(default)]
    pub cipher: Cipher,
    /// What consumers do with a record that is not encrypted: Reject (an error naming the
    /// record) or Allow (pass it through, for migrating a topic that already holds plaintext).
    /// Producers never write plaintext either way.
    #[serde(default)]
    pub plaintext_policy: PlaintextPolicy,
    /// What deleting this object does. Retain: nothing (topic, keys and TEK stay). Delete:
    /// crypto-shredding — the TEK is scheduled for deletion in the KMS, the key records are
    /// tombstoned and the topic is deleted; no record can be decrypted afterwards. Delete needs
    /// `confirmDeletion` set to the topic name.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Must equal the Kafka topic name for deletionPolicy Delete: an explicit confirmation that
    /// deleting this object destroys the topic's data for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_deletion: Option<String>,
    /// Housekeeping of the stored keys.
    #[serde(default, skip_serializing_if = "KeysSpec::is_default")]
    pub keys: KeysSpec,
}

/// What the operator does with stored EDEKs beyond rollover.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysSpec {
    /// Delete (tombstone) EDEKs no retained record needs, on the operator's own schedule (every
    /// reconciliation: at least every count-check interval), by the rule of `kubectl e2ee
    /// prune` (docs/cli.md "What can be deleted"). Default false: only on request.
    #[serde(default)]
    pub prune_unused: bool,
}

impl KeysSpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

impl EncryptedTopicSpec {
    /// A spec with every optional field at its default.
    pub fn new(partitions: i32, kms_ref: KmsRef) -> Self {
        Self {
            topic_name: None,
            partitions,
            replicas: None,
            config: BTreeMap::new(),
            kms_ref,
            tek: None,
            tek_rotation: None,
            dek_rollover: DekRollover::default(),
            cipher: Cipher::default(),
            plaintext_policy: PlaintextPolicy::default(),
            deletion_policy: DeletionPolicy::default(),
            confirm_deletion: None,
            keys: KeysSpec::default(),
        }
    }
}

/// A reference to a KMS connection object, namespaced or cluster-scoped
/// (like cert-manager's Issuer and ClusterIssuer).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KmsRef {
    /// Kind of the referenced object. Immutable.
    pub kind: KmsRefKind,
    /// Name of the referenced object (in this namespace for KmsConnection). Immutable.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl std::fmt::Display for KmsRef {
    /// `Kind/name`, as in `KmsConnection/vault`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

impl KmsRefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KmsConnection => "KmsConnection",
            Self::ClusterKmsConnection => "ClusterKmsConnection",
        }
    }
}

/// The two scopes a KMS connection object comes in.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum KmsRefKind {
    /// Namespaced: usable only by EncryptedTopics in its namespace.
    KmsConnection,
    /// Cluster-scoped: usable from every namespace.
    ClusterKmsConnection,
}

/// TEK rotation schedule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TekRotation {
    /// Time between rotations, e.g. `2160h` or `90d` (units s, m, h, d). At least 1h.
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub period: String,
}

/// DEK rollover limits, per partition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DekRollover {
    /// Maximum age of a partition's current DEK, e.g. `720h` or `30d` (units s, m, h, d;
    /// at least 5s). Default 30d.
    #[serde(default = "default_max_age")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub max_age: String,
    /// Maximum records written to a partition under one DEK, counted from the partition's end
    /// offset when the DEK was created; at most 2^32 (AES-GCM's limit with random nonces).
    /// Default 1,000,000,000. Producers refuse to exceed 2^32 on their own.
    #[serde(default = "default_max_records")]
    #[schemars(range(min = 1, max = 4_294_967_296_i64))]
    pub max_records: i64,
}

impl Default for DekRollover {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_records: default_max_records(),
        }
    }
}

fn default_max_age() -> String {
    "30d".to_owned()
}

/// Default DEK record limit: well below 2^32, so the operator rolls over long before
/// producers would fail closed at the hard cap.
pub const DEFAULT_MAX_RECORDS: i64 = 1_000_000_000;

fn default_max_records() -> i64 {
    DEFAULT_MAX_RECORDS
}

/// Record ciphers. AES-256-GCM is the only one today; the field exists so a future cipher is
/// a spec change, and so a downgrade can be refused.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Cipher {
    #[default]
    #[serde(rename = "AES-256-GCM")]
    Aes256Gcm,
}

impl Cipher {
    /// The engine name in the policy record.
    pub fn engine_name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "AES-256-GCM",
        }
    }

    /// Orders ciphers by security, so an update can refuse a downgrade. Equal strengths are
    /// interchangeable; a new cipher gets its rank here when it is added.
    pub fn strength(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
        }
    }
}

/// What consumers do with plaintext records.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PlaintextPolicy {
    #[default]
    Reject,
    Allow,
}

/// What deleting an EncryptedTopic does to its topic and keys.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// What the operator last observed and did. Written with server-side apply; the spec is never
/// mutated.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedTopicStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (with a reason when it is not: InvalidSpec, KmsConnectionNotFound,
    /// KmsConnectionInvalid, KmsConnectionNotAdmitted, KmsUnavailable, KmsDenied,
    /// KafkaUnavailable, TopicConflict, TekConflict, TekNotInNamespace, WaitingForDeletion,
    /// ImmutableFieldChanged, Paused, Unmanaged, ...; docs/operator.md lists them all),
    /// KeyRecordsVerified, TekOwned, and Deleting while crypto-shredding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Kafka topic this object manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The topic encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tek: Option<TekStatus>,
    /// Data keys, summarised over partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeysStatus>,
    /// When a partition last got a new DEK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollover: Option<Time>,
    /// When the next rollover by age is due (rollover by record count comes on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rollover: Option<Time>,
    /// The on-demand requests (annotations `kafka-e2ee.io/rollover-requested-at`,
    /// `kafka-e2ee.io/rotate-requested-at`) the operator has carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestsStatus>,
}

/// The last on-demand requests carried out, as their annotations said them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestsStatus {
    /// The value of `kafka-e2ee.io/rollover-requested-at` last carried out: every partition it
    /// named has a DEK created at or after that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollover: Option<String>,
    /// The value of `kafka-e2ee.io/rotate-requested-at` last carried out: the TEK was rotated at
    /// or after that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<String>,
    /// The value of `kafka-e2ee.io/prune-requested-at` last carried out: EDEKs no retained
    /// record needs were deleted (tombstoned) then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<String>,
}

/// The TEK as the KMS reports it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TekStatus {
    /// The TEK reference in the KMS (never key material).
    pub reference: String,
    /// Its current version, where the KMS has versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the operator last rotated it (or created it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<Time>,
    /// When the next scheduled rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Time>,
    /// The uid of the EncryptedTopic the operator created this TEK for. Only such a TEK is
    /// deleted by crypto-shredding; an adopted one (it existed before) is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_for: Option<String>,
    /// The connection it lives in, `Kind/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

/// DEK versions over all partitions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysStatus {
    /// Partitions with a current DEK.
    pub partitions: i32,
    /// Lowest and highest current DEK version over partitions.
    pub min_version: u32,
    pub max_version: u32,
    /// `v3`, or `v2-v5` when partitions differ.
    pub summary: String,
    /// EDEK records held in the key topic for this topic (current and older versions).
    pub stored_edeks: u32,
}

/// Annotation that pauses reconciliation while it is `"true"` (Strimzi's
/// `strimzi.io/pause-reconciliation`).
pub const PAUSE_ANNOTATION: &str = "kafka-e2ee.io/pause-reconciliation";
/// Annotation that, when `"false"`, makes the operator leave the topic and its keys alone, also
/// on deletion (Strimzi's `strimzi.io/managed`).
pub const MANAGED_ANNOTATION: &str = "kafka-e2ee.io/managed";

/// Annotation requesting a DEK rollover now (Strimzi's `strimzi.io/force-renew`): an RFC 3339
/// time, which `kubectl e2ee rollover` sets to the current time. Honoured once: each partition
/// it names whose current DEK is older than that time gets a new DEK version; then
/// `status.requests.rollover` echoes the value. A time in the future waits for it (more than
/// [`MAX_REQUEST_AHEAD_SECONDS`] ahead is refused as a clock error).
pub const ROLLOVER_REQUEST_ANNOTATION: &str = "kafka-e2ee.io/rollover-requested-at";
/// With a rollover request: the partitions to roll over, comma-separated (default: all).
pub const ROLLOVER_PARTITIONS_ANNOTATION: &str = "kafka-e2ee.io/rollover-partitions";
/// Annotation requesting a TEK rotation now (then a re-wrap of every EDEK): an RFC 3339 time,
/// honoured once (the TEK's last rotation is older than it), echoed in
/// `status.requests.rotate`.
pub const ROTATE_REQUEST_ANNOTATION: &str = "kafka-e2ee.io/rotate-requested-at";
/// Annotation requesting that EDEKs no retained record needs be deleted (tombstoned in the key
/// topic, with a safety margin of one version; docs/cli.md "What can be deleted"): an RFC 3339
/// time, carried out once and echoed in `status.requests.prune`.
pub const PRUNE_REQUEST_ANNOTATION: &str = "kafka-e2ee.io/prune-requested-at";
/// How far ahead of the operator's clock a request time may be.
pub const MAX_REQUEST_AHEAD_SECONDS: i64 = 3600;

/// An on-demand request, parsed from its annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The annotation's value, echoed in status when carried out.
    pub raw: String,
    /// Its time, in milliseconds since the epoch.
    pub at_ms: i64,
    /// Rollover only: the partitions named, `None` for all.
    pub partitions: Option<std::collections::BTreeSet<i32>>,
}

/// The on-demand requests an object carries; each `Err` says why its annotation is unusable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub rollover: Option<Result<Request, String>>,
    pub rotate: Option<Result<Request, String>>,
    pub prune: Option<Result<Request, String>>,
}

fn parse_request(raw: &str, key: &str) -> Result<Request, String> {
    let at: k8s_openapi::jiff::Timestamp = raw.trim().parse().map_err(|e| {
        format!(
            "{key} is '{raw}', which is not an RFC 3339 time such as 2026-12-05T10:00:00Z ({e})"
        )
    })?;
    Ok(Request {
        raw: raw.to_owned(),
        at_ms: at.as_millisecond(),
        partitions: None,
    })
}

impl EncryptedTopic {
    /// The on-demand rollover and rotation requests in the annotations.
    pub fn requests(&self) -> Requests {
        let rollover = self.annotation(ROLLOVER_REQUEST_ANNOTATION).map(|raw| {
            let mut request = parse_request(raw, ROLLOVER_REQUEST_ANNOTATION)?;
            if let Some(list) = self.annotation(ROLLOVER_PARTITIONS_ANNOTATION) {
                let partitions = list
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse::<i32>().ok().filter(|n| *n >= 0))
                    .collect::<Option<std::collections::BTreeSet<i32>>>()
                    .filter(|set| !set.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "{ROLLOVER_PARTITIONS_ANNOTATION} is '{list}': comma-separated partition numbers are expected"
                        )
                    })?;
                request.partitions = Some(partitions);
            }
            Ok(request)
        });
        let rotate = self
            .annotation(ROTATE_REQUEST_ANNOTATION)
            .map(|raw| parse_request(raw, ROTATE_REQUEST_ANNOTATION));
        let prune = self
            .annotation(PRUNE_REQUEST_ANNOTATION)
            .map(|raw| parse_request(raw, PRUNE_REQUEST_ANNOTATION));
        Requests {
            rollover,
            rotate,
            prune,
        }
    }

    /// The Kafka topic this resource manages: `spec.topicName`, else `metadata.name`.
    pub fn kafka_topic_name(&self) -> Option<&str> {
        self.spec
            .topic_name
            .as_deref()
            .or(self.metadata.name.as_deref())
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// Whether reconciliation is paused by annotation.
    pub fn is_paused(&self) -> bool {
        self.annotation(PAUSE_ANNOTATION) == Some("true")
    }

    /// Whether the operator may act on the topic (false when annotated unmanaged).
    pub fn is_managed(&self) -> bool {
        self.annotation(MANAGED_ANNOTATION) != Some("false")
    }
}
