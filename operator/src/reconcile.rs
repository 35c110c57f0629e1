//! One reconciliation of an EncryptedTopic: fetch -> validate (pure) -> plan (pure) -> apply
//! (ordered, idempotent) -> status (server-side apply, only when it changed). Errors become a
//! Ready=False condition with a reason a user can act on, and a requeue.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kafka_e2ee_client::key_records::{PlaintextPolicy as WirePlaintext, ProviderRef};
use kafka_e2ee_client::nonce::MAX_RECORDS_PER_DEK;
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_crds::validation::{validate_backend, validate_encrypted_topic, validate_pairing};
use kafka_e2ee_crds::{
    ClusterKmsConnection, DeletionPolicy, EncryptedTopic, EncryptedTopicStatus, KeysStatus,
    KmsBackend, KmsConnection, KmsRefKind, PlaintextPolicy, TekStatus,
};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use thiserror::Error;

use crate::apply::{Applied, ApplyError, apply, current_versions};
use crate::kafka_ops::{KafkaOps, KafkaOpsError};
use crate::kms::{
    ConnectionError, ConnectionKey, OperatorProvider, ProviderCache, default_tek_name,
    public_config,
};
use crate::metrics::Metrics;
use crate::plan::{Desired, Observed, from_millis, plan, summarize_versions};
use kafka_e2ee_telemetry::chain;

/// The finalizer that makes deletion crypto-shred (only on objects with deletionPolicy Delete).
pub const FINALIZER: &str = "kafka-e2ee.io/crypto-shred";
/// The field manager of every write the operator makes.
pub const MANAGER: &str = "kafka-e2ee-operator";

/// Ready condition reasons (docs/operator.md explains each and what to do).
pub mod reason {
    pub const READY: &str = "Ready";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const KMS_CONNECTION_NOT_FOUND: &str = "KmsConnectionNotFound";
    pub const KMS_CONNECTION_INVALID: &str = "KmsConnectionInvalid";
    pub const KMS_UNAVAILABLE: &str = "KmsUnavailable";
    pub const KMS_DENIED: &str = "KmsDenied";
    pub const KAFKA_UNAVAILABLE: &str = "KafkaUnavailable";
    pub const KAFKA_REFUSED: &str = "KafkaRefused";
    pub const TOPIC_CONFLICT: &str = "TopicConflict";
    pub const PARTITIONS_EXCEED_SPEC: &str = "PartitionsExceedSpec";
    pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
    pub const PAUSED: &str = "Paused";
    pub const UNMANAGED: &str = "Unmanaged";
    pub const KEY_VERSIONS_EXHAUSTED: &str = "KeyVersionsExhausted";
    /// KeyRecordsVerified condition reasons.
    pub const VERIFIED: &str = "Verified";
    pub const UNVERIFIED_KEY_RECORDS: &str = "UnverifiedKeyRecords";
}

/// The condition that reports key records refused for this topic (unsigned, forged,
/// replayed): the topic keeps working on its verified records, but someone with write access
/// to the key topic tried something.
pub const KEY_RECORDS_VERIFIED: &str = "KeyRecordsVerified";
const READY: &str = "Ready";

pub struct Context {
    pub client: kube::Client,
    pub kafka: KafkaOps,
    pub providers: ProviderCache,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Where ClusterKmsConnection Secrets live.
    pub cluster_namespace: String,
    /// How often to re-read end offsets for rollover by record count.
    pub count_check_interval: Duration,
    pub topics: Store<EncryptedTopic>,
    /// Tells the client ConfigMap publisher that an object was reconciled.
    pub client_config_changed: Arc<tokio::sync::Notify>,
}

/// Errors of the reconciler itself (status could not be written); everything else is turned
/// into a condition.
#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("writing {what} of {object} failed")]
    Kube {
        what: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// A failed step, with the reason it gets in the Ready condition.
struct Failure {
    reason: &'static str,
    message: String,
    retry: Option<Duration>,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>, retry: Option<Duration>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry,
        }
    }
}

const RETRY: Duration = Duration::from_secs(10);

fn kms_failure(e: &ProviderError) -> Failure {
    let reason = if e.is_transient() {
        reason::KMS_UNAVAILABLE
    } else {
        reason::KMS_DENIED
    };
    Failure::new(reason, e.to_string(), Some(RETRY))
}

fn kafka_failure(e: &KafkaOpsError) -> Failure {
    // The broker answered and said no (e.g. a broker without CreatePartitions): retrying soon
    // will not help, but a broker upgrade or a spec change may.
    let refused = match e {
        KafkaOpsError::Refused { .. } => true,
        KafkaOpsError::Admin { source, .. } => {
            matches!(source, rdkafka::error::KafkaError::AdminOp(_))
        }
        _ => false,
    };
    if refused {
        Failure::new(reason::KAFKA_REFUSED, chain(e), Some(RETRY * 6))
    } else {
        Failure::new(reason::KAFKA_UNAVAILABLE, chain(e), Some(RETRY))
    }
}

pub async fn reconcile(
    obj: Arc<EncryptedTopic>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.client_config_changed.notify_one();
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(obj: &EncryptedTopic, ctx: &Context) -> Result<Action, ReconcileError> {
    let now = SystemTime::now();
    if obj.metadata.deletion_timestamp.is_some() {
        return finalize(obj, ctx).await;
    }
    if !obj.is_managed() {
        set_finalizer(obj, ctx, false).await?;
        let status = condition_status(
            obj,
            "Unknown",
            reason::UNMANAGED,
            "annotated kafka-e2ee.io/managed=false: the operator leaves this topic and its keys alone",
            now,
        );
        write_status(obj, ctx, status).await?;
        ctx.metrics.reconciled(reason::UNMANAGED);
        return Ok(Action::await_change());
    }
    if obj.is_paused() {
        let status = condition_status(
            obj,
            "Unknown",
            reason::PAUSED,
            "annotated kafka-e2ee.io/pause-reconciliation=true: keys are neither rolled over nor rotated",
            now,
        );
        write_status(obj, ctx, status).await?;
        ctx.metrics.reconciled(reason::PAUSED);
        return Ok(Action::await_change());
    }
    match converge(obj, ctx, now).await {
        Ok((status, requeue)) => {
            write_status(obj, ctx, status).await?;
            ctx.metrics.reconciled("ok");
            Ok(Action::requeue(requeue))
        }
        Err(failure) => {
            tracing::warn!(object = %obj.name_any(), namespace = ?obj.namespace(), reason = failure.reason, message = %failure.message, "not ready");
            let status = condition_status(obj, "False", failure.reason, &failure.message, now);
            write_status(obj, ctx, status).await?;
            ctx.metrics.reconciled(failure.reason);
            Ok(failure
                .retry
                .map_or_else(Action::await_change, Action::requeue))
        }
    }
}

/// Everything between validation and the new status; a failure names its reason.
async fn converge(
    obj: &EncryptedTopic,
    ctx: &Context,
    now: SystemTime,
) -> Result<(EncryptedTopicStatus, Duration), Failure> {
    let invalid = |errors: Vec<kafka_e2ee_crds::validation::SpecError>| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Failure::new(reason::INVALID_SPEC, text.join("; "), None)
    };
    let valid = validate_encrypted_topic(obj).map_err(invalid)?;
    check_topic_claim(obj, &valid.topic, &ctx.topics)?;

    let namespace = obj.namespace().unwrap_or_default();
    let connection = fetch_connection(obj, ctx).await?;
    let backend = validate_backend(connection.holder.backend()).map_err(|errors| {
        let mut f = invalid(errors);
        f.reason = reason::KMS_CONNECTION_INVALID;
        f
    })?;
    validate_pairing(&valid, backend).map_err(|e| invalid(vec![e]))?;
    // Only a valid spec gets the finalizer: deletion never shreds without the confirmation.
    set_finalizer(obj, ctx, obj.spec.deletion_policy == DeletionPolicy::Delete)
        .await
        .map_err(|e| Failure::new(reason::KUBERNETES_API_ERROR, chain(&e), Some(RETRY)))?;
    let provider = connection.provider(ctx, backend).await?;

    let desired = desired(obj, &valid, backend, &namespace);
    let t_observe = std::time::Instant::now();
    let observed = observe(&*provider, &ctx.kafka, obj, &desired).await?;
    let observe_took = t_observe.elapsed();
    let conflict = |e: crate::plan::PlanError| match e {
        crate::plan::PlanError::Conflict(c) => {
            Failure::new(reason::TOPIC_CONFLICT, c.to_string(), Some(RETRY * 6))
        }
        e @ crate::plan::PlanError::VersionsExhausted { .. } => Failure::new(
            reason::KEY_VERSIONS_EXHAUSTED,
            e.to_string(),
            Some(RETRY * 6),
        ),
    };
    let mut observed = observed;
    let mut the_plan = plan(&desired, &observed, now).map_err(conflict)?;
    if the_plan.rotate_tek {
        // The last rotation is known from status only, and the cached object can predate the
        // status this operator wrote moments ago: confirm with a fresh read before rotating.
        let api: Api<EncryptedTopic> = Api::namespaced(ctx.client.clone(), &namespace);
        let fresh = api
            .get(&obj.name_any())
            .await
            .map_err(|e| Failure::new(reason::KUBERNETES_API_ERROR, chain(&e), Some(RETRY)))?;
        observed.last_tek_rotation = last_rotation(&fresh, &desired);
        the_plan = plan(&desired, &observed, now).map_err(conflict)?;
    }
    let next_due = the_plan.next_due;
    let extra = the_plan.extra_partitions;
    let applied = apply(
        &*provider,
        &ctx.kafka,
        &ctx.metrics,
        &desired,
        &observed,
        the_plan,
        now,
    )
    .await
    .map_err(|e| match &e {
        ApplyError::Kms(p) => kms_failure(p),
        ApplyError::Kafka(k) => kafka_failure(k),
    })?;
    let apply_took = t_observe.elapsed() - observe_took;
    publish_events(obj, ctx, &applied).await;
    let rejected = ctx.kafka.directory.rejected(&desired.topic);
    tracing::debug!(topic = %desired.topic, ?observe_took, ?apply_took, events_took = ?(t_observe.elapsed() - observe_took - apply_took), "reconciled");

    let mut status = ready_status(obj, ctx, &desired, &observed, &applied, now, extra);
    let verified = verified_condition(
        obj,
        &desired.topic,
        ctx.kafka.writer.key_topic(),
        &rejected,
        now,
    );
    let previous = obj.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == KEY_RECORDS_VERIFIED)
    });
    if verified.status == "False" && previous.is_none_or(|p| p.message != verified.message) {
        publish(
            obj,
            ctx,
            EventType::Warning,
            reason::UNVERIFIED_KEY_RECORDS,
            "VerifyKeyRecords",
            verified.message.clone(),
        )
        .await;
    }
    status.conditions.push(verified);
    let until_due = next_due
        .and_then(|due| due.duration_since(now).ok())
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1));
    Ok((status, until_due.min(ctx.count_check_interval)))
}

enum Holder {
    Namespaced(KmsConnection),
    Cluster(ClusterKmsConnection),
}

impl Holder {
    fn backend(&self) -> Result<KmsBackend<'_>, kafka_e2ee_crds::BackendSelectionError> {
        match self {
            Self::Namespaced(c) => c.spec.backend(),
            Self::Cluster(c) => c.spec.backend(),
        }
    }
}

/// The KMS connection an object names, as read now, and the key its provider is cached under.
struct Connection {
    key: ConnectionKey,
    resource_version: Option<String>,
    holder: Holder,
}

impl Connection {
    /// The connection's provider (built on first use, cached per resourceVersion).
    async fn provider(
        &self,
        ctx: &Context,
        backend: KmsBackend<'_>,
    ) -> Result<Arc<OperatorProvider>, Failure> {
        ctx.providers
            .get(&self.key, self.resource_version.as_deref(), backend)
            .await
            .map_err(|e| match e {
                ConnectionError::Provider(p) => kms_failure(&p),
                other => Failure::new(reason::KMS_CONNECTION_INVALID, chain(&other), Some(RETRY)),
            })
    }
}

/// Reads the (Cluster)KmsConnection `obj` references. Secrets of a namespaced connection live
/// beside it; those of a cluster-scoped one in the operator's namespace.
async fn fetch_connection(obj: &EncryptedTopic, ctx: &Context) -> Result<Connection, Failure> {
    let kms_ref = &obj.spec.kms_ref;
    let (secret_namespace, holder) = match kms_ref.kind {
        KmsRefKind::KmsConnection => {
            let namespace = obj.namespace().unwrap_or_default();
            let api: Api<KmsConnection> = Api::namespaced(ctx.client.clone(), &namespace);
            let conn = get_connection(&api, "KmsConnection", &kms_ref.name).await?;
            (namespace, Holder::Namespaced(conn))
        }
        KmsRefKind::ClusterKmsConnection => {
            let api: Api<ClusterKmsConnection> = Api::all(ctx.client.clone());
            let conn = get_connection(&api, "ClusterKmsConnection", &kms_ref.name).await?;
            (ctx.cluster_namespace.clone(), Holder::Cluster(conn))
        }
    };
    let resource_version = match &holder {
        Holder::Namespaced(c) => c.metadata.resource_version.clone(),
        Holder::Cluster(c) => c.metadata.resource_version.clone(),
    };
    Ok(Connection {
        key: ConnectionKey {
            kind: kms_ref.kind,
            name: kms_ref.name.clone(),
            secret_namespace,
        },
        resource_version,
        holder,
    })
}

async fn get_connection<K>(api: &Api<K>, kind: &'static str, name: &str) -> Result<K, Failure>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(Failure::new(
            reason::KMS_CONNECTION_NOT_FOUND,
            ConnectionError::NotFound {
                kind,
                name: name.to_owned(),
            }
            .to_string(),
            Some(RETRY * 3),
        )),
        Err(e) => Err(Failure::new(
            reason::KMS_CONNECTION_NOT_FOUND,
            format!("reading {kind} {name}: {e}"),
            Some(RETRY),
        )),
    }
}

/// Two EncryptedTopics (in any namespaces) must not manage one Kafka topic: the older one
/// keeps it; the newer one reports TopicConflict and touches nothing.
fn check_topic_claim(
    obj: &EncryptedTopic,
    topic: &str,
    store: &Store<EncryptedTopic>,
) -> Result<(), Failure> {
    let rank = |o: &EncryptedTopic| {
        (
            o.metadata.creation_timestamp.clone(),
            o.metadata.uid.clone(),
        )
    };
    let mine = rank(obj);
    let older = store.state().into_iter().find(|other| {
        other.metadata.uid != obj.metadata.uid
            && other.metadata.deletion_timestamp.is_none()
            && other.kafka_topic_name() == Some(topic)
            && rank(other) < mine
    });
    match older {
        Some(other) => Err(Failure::new(
            reason::TOPIC_CONFLICT,
            format!(
                "topic {topic} is managed by EncryptedTopic {}/{}",
                other.namespace().unwrap_or_default(),
                other.name_any()
            ),
            Some(RETRY * 6),
        )),
        None => Ok(()),
    }
}

fn desired(
    obj: &EncryptedTopic,
    valid: &kafka_e2ee_crds::validation::ValidSpec,
    backend: KmsBackend<'_>,
    namespace: &str,
) -> Desired {
    let tek = obj
        .spec
        .tek
        .clone()
        .unwrap_or_else(|| default_tek_name(backend, namespace, &obj.name_any()));
    Desired {
        topic: valid.topic.clone(),
        partitions: valid.partitions,
        replicas: obj.spec.replicas,
        config: obj.spec.config.clone(),
        provider: ProviderRef {
            kind: backend.kind().to_owned(),
            tek,
            config: public_config(backend),
        },
        engine: obj.spec.cipher.engine_name().to_owned(),
        plaintext: match obj.spec.plaintext_policy {
            PlaintextPolicy::Reject => WirePlaintext::Reject,
            PlaintextPolicy::Allow => WirePlaintext::Allow,
        },
        max_records_per_dek: MAX_RECORDS_PER_DEK,
        dek_max_age: valid.dek_max_age,
        dek_max_records: valid.dek_max_records,
        tek_rotation: valid.tek_rotation,
    }
}

async fn observe<P: TekManager>(
    provider: &P,
    kafka: &KafkaOps,
    obj: &EncryptedTopic,
    desired: &Desired,
) -> Result<Observed, Failure> {
    let tek = match provider.describe_tek(&desired.provider.tek).await {
        Ok(info) => Some(info),
        Err(ProviderError::NotFound { .. }) => None,
        Err(e) => return Err(kms_failure(&e)),
    };
    let end_offsets = kafka
        .end_offsets(&desired.topic)
        .await
        .map_err(|e| kafka_failure(&e))?;
    Ok(Observed {
        tek,
        last_tek_rotation: last_rotation(obj, desired),
        topic_partitions: end_offsets
            .as_ref()
            .map(|o| i32::try_from(o.len()).unwrap_or(i32::MAX)),
        end_offsets: end_offsets.unwrap_or_default(),
        keys: kafka.directory.topic_keys(&desired.topic),
    })
}

/// When the operator last rotated (or created) this TEK, as the object's status records it.
fn last_rotation(obj: &EncryptedTopic, desired: &Desired) -> Option<SystemTime> {
    obj.status
        .as_ref()
        .and_then(|s| s.tek.as_ref())
        .filter(|t| t.reference == desired.provider.tek)
        .and_then(|t| t.last_rotation.as_ref())
        .map(|t| SystemTime::from(t.0))
}

fn time(t: SystemTime) -> Option<Time> {
    Timestamp::try_from(t).ok().map(|ts| {
        // Kubernetes stores whole seconds: round so a re-read status compares equal.
        Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one status from every input of a reconcile"
)]
fn ready_status(
    obj: &EncryptedTopic,
    ctx: &Context,
    desired: &Desired,
    observed: &Observed,
    applied: &Applied,
    now: SystemTime,
    extra_partitions: Option<i32>,
) -> EncryptedTopicStatus {
    let previous = obj.status.clone().unwrap_or_default();
    let versions = current_versions(applied);
    let keys = ctx.kafka.directory.topic_keys(&desired.topic);
    // When each partition's current DEK was created.
    let current_created: Vec<SystemTime> = keys
        .edeks
        .iter()
        .filter(|e| versions.get(&e.partition) == Some(&e.version))
        .map(|e| from_millis(e.created_at_ms))
        .collect();
    let last_rollover = current_created.iter().max().copied();
    let next_rollover = current_created
        .iter()
        .map(|&created| created + desired.dek_max_age)
        .min();
    // Rotation is counted from the operator's last rotation or creation of the TEK; an adopted
    // TEK with no record starts counting now.
    let last_rotation = match observed.last_tek_rotation {
        Some(last) if !applied.tek_rotated && !applied.tek_created => time(last),
        _ => time(now),
    };
    let next_rotation = desired
        .tek_rotation
        .zip(last_rotation.as_ref())
        .and_then(|(period, last)| time(SystemTime::from(last.0) + period));
    let (reason_, status_, message) = match extra_partitions {
        Some(n) => (
            reason::PARTITIONS_EXCEED_SPEC,
            "False",
            format!(
                "topic {} has {n} partitions, spec.partitions is {}: partitions never shrink; all {n} have keys",
                desired.topic, desired.partitions
            ),
        ),
        None => (
            reason::READY,
            "True",
            format!(
                "topic {} is encrypted; every partition has a current key",
                desired.topic
            ),
        ),
    };
    EncryptedTopicStatus {
        observed_generation: obj.metadata.generation,
        conditions: vec![condition(
            &previous,
            READY,
            status_,
            reason_,
            &message,
            obj.metadata.generation,
            now,
        )],
        topic: Some(desired.topic.clone()),
        tek: applied.tek.as_ref().map(|t| TekStatus {
            reference: t.tek.clone(),
            version: t.latest_version.clone(),
            last_rotation,
            next_rotation,
        }),
        keys: summarize_versions(&versions).map(|(min, max, summary)| KeysStatus {
            partitions: i32::try_from(versions.len()).unwrap_or(i32::MAX),
            min_version: min,
            max_version: max,
            summary,
            stored_edeks: u32::try_from(keys.edeks.len()).unwrap_or(u32::MAX),
        }),
        last_rollover: last_rollover.and_then(time),
        next_rollover: next_rollover.and_then(time),
    }
}

/// The previous status with only the Ready condition replaced (for failures and pauses: the
/// last known keys, and the other conditions, stay visible).
fn condition_status(
    obj: &EncryptedTopic,
    status: &str,
    reason_: &str,
    message: &str,
    now: SystemTime,
) -> EncryptedTopicStatus {
    let previous = obj.status.clone().unwrap_or_default();
    let ready = condition(
        &previous,
        READY,
        status,
        reason_,
        message,
        obj.metadata.generation,
        now,
    );
    let mut conditions = vec![ready];
    conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| c.type_ != READY)
            .cloned(),
    );
    EncryptedTopicStatus {
        observed_generation: obj.metadata.generation,
        conditions,
        ..previous
    }
}

/// `KeyRecordsVerified`: True while no refused key record of the topic is pending; False
/// naming up to five of them (record key and reason) otherwise.
fn verified_condition(
    obj: &EncryptedTopic,
    topic: &str,
    key_topic: &str,
    rejected: &kafka_e2ee_client::key_directory::RejectedKeyRecords,
    now: SystemTime,
) -> Condition {
    let previous = obj.status.clone().unwrap_or_default();
    let (status, reason_, message) = if rejected.pending.is_empty() {
        (
            "True",
            reason::VERIFIED,
            format!("every key record of {topic} in {key_topic} in use is signed by the operator"),
        )
    } else {
        let named: Vec<String> = rejected
            .pending
            .iter()
            .take(5)
            .map(|(key, why)| format!("{key} ({why})"))
            .collect();
        (
            "False",
            reason::UNVERIFIED_KEY_RECORDS,
            format!(
                "{} record(s) for {topic} in {key_topic} were refused and ignored: {}{}; someone with write access to the key topic wrote them (docs/security.md)",
                rejected.pending.len(),
                named.join(", "),
                if rejected.pending.len() > named.len() {
                    ", ..."
                } else {
                    ""
                },
            ),
        )
    };
    condition(
        &previous,
        KEY_RECORDS_VERIFIED,
        status,
        reason_,
        &message,
        obj.metadata.generation,
        now,
    )
}

fn condition(
    previous: &EncryptedTopicStatus,
    type_: &str,
    status: &str,
    reason_: &str,
    message: &str,
    generation: Option<i64>,
    now: SystemTime,
) -> Condition {
    let before = previous.conditions.iter().find(|c| c.type_ == type_);
    let last_transition_time = match before {
        Some(b) if b.status == status => b.last_transition_time.clone(),
        _ => time(now).unwrap_or(Time(Timestamp::UNIX_EPOCH)),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason_.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Server-side applies the status, unless it is what the object already says (a settled
/// object costs no writes).
async fn write_status(
    obj: &EncryptedTopic,
    ctx: &Context,
    status: EncryptedTopicStatus,
) -> Result<(), ReconcileError> {
    if obj.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<EncryptedTopic> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "kafka-e2ee.io/v1alpha1",
        "kind": "EncryptedTopic",
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Kube {
        what: "status",
        object: obj.name_any(),
        source,
    })?;
    Ok(())
}

/// Adds or removes our finalizer. A JSON merge patch carrying the resourceVersion, so a
/// concurrent change to the list is a conflict (retried), not lost.
async fn set_finalizer(
    obj: &EncryptedTopic,
    ctx: &Context,
    wanted: bool,
) -> Result<(), ReconcileError> {
    let mut finalizers = obj.finalizers().to_vec();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    if has == wanted {
        return Ok(());
    }
    if wanted {
        finalizers.push(FINALIZER.to_owned());
    } else {
        finalizers.retain(|f| f != FINALIZER);
    }
    let api: Api<EncryptedTopic> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {
            "resourceVersion": obj.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Kube {
        what: "finalizers",
        object: obj.name_any(),
        source,
    })?;
    Ok(())
}

/// Deletion: with our finalizer present (deletionPolicy Delete, managed), crypto-shred, then
/// let the object go.
async fn finalize(obj: &EncryptedTopic, ctx: &Context) -> Result<Action, ReconcileError> {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let valid = validate_encrypted_topic(obj);
    if valid.is_err() {
        // The spec became invalid (e.g. the confirmation was removed): shredding needs a
        // confirmed, valid spec, so the object goes without touching topic or keys.
        publish(obj, ctx, EventType::Warning, "NotShredded", "Delete", "the spec is not valid (is confirmDeletion still set?): topic, keys and TEK were left in place".into()).await;
    } else if obj.is_managed()
        && obj.spec.deletion_policy == DeletionPolicy::Delete
        && let Ok(valid) = &valid
        && let Err(failure) = crypto_shred(obj, ctx, &valid.topic).await
    {
        tracing::warn!(object = %obj.name_any(), reason = failure.reason, message = %failure.message, "crypto-shredding not finished; retrying");
        let status = condition_status(
            obj,
            "False",
            failure.reason,
            &failure.message,
            SystemTime::now(),
        );
        write_status(obj, ctx, status).await?;
        return Ok(Action::requeue(RETRY));
    }
    set_finalizer(obj, ctx, false).await?;
    Ok(Action::await_change())
}

/// Policy tombstone first (producers stop), then the TEK is deleted in the KMS (no EDEK can be
/// unwrapped again), then the EDEK tombstones, then the topic.
async fn crypto_shred(obj: &EncryptedTopic, ctx: &Context, topic: &str) -> Result<(), Failure> {
    let _writing = ctx.kafka.writes.read().await;
    let keys = ctx.kafka.directory.topic_keys(topic);
    let writer = &ctx.kafka.writer;
    let tek = keys.policy.as_ref().map(|p| p.provider.tek.clone());
    if keys.policy.is_some() {
        writer
            .tombstones(&[kafka_e2ee_client::key_records::policy_key(topic)])
            .await
            .map_err(|e| kafka_failure(&e.into()))?;
    }
    if let Some(tek) = tek {
        let connection = fetch_connection(obj, ctx).await?;
        let backend = connection.holder.backend().map_err(|e| {
            Failure::new(reason::KMS_CONNECTION_INVALID, e.to_string(), Some(RETRY))
        })?;
        let provider = connection.provider(ctx, backend).await?;
        provider
            .delete_tek(&tek)
            .await
            .map_err(|e| kms_failure(&e))?;
        publish(
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
        .map(|e| kafka_e2ee_client::key_records::edek_key(topic, e.partition, e.version))
        .collect();
    writer
        .tombstones(&edek_keys)
        .await
        .map_err(|e| kafka_failure(&e.into()))?;
    ctx.metrics
        .key_topic_writes
        .inc_by(keys.edeks.len() as u64 + u64::from(keys.policy.is_some()));
    ctx.kafka
        .delete_topic(topic)
        .await
        .map_err(|e| kafka_failure(&e))?;
    ctx.kafka
        .read_own_writes()
        .await
        .map_err(|e| kafka_failure(&e))?;
    publish(
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

async fn publish_events(obj: &EncryptedTopic, ctx: &Context, applied: &Applied) {
    if applied.tek_created {
        publish(
            obj,
            ctx,
            EventType::Normal,
            "TekReady",
            "CreateTek",
            "TEK created (or found) in the KMS".into(),
        )
        .await;
    }
    if applied.tek_rotated {
        let version = applied
            .tek
            .as_ref()
            .and_then(|t| t.latest_version.clone())
            .unwrap_or_default();
        publish(
            obj,
            ctx,
            EventType::Normal,
            "TekRotated",
            "RotateTek",
            format!("TEK rotated to version {version}"),
        )
        .await;
    }
    if applied.rewrapped > 0 {
        publish(
            obj,
            ctx,
            EventType::Normal,
            "EdeksRewrapped",
            "Rewrap",
            format!(
                "{} EDEKs re-wrapped under the current TEK version",
                applied.rewrapped
            ),
        )
        .await;
    }
    if applied.topic_created {
        publish(
            obj,
            ctx,
            EventType::Normal,
            "TopicCreated",
            "CreateTopic",
            "Kafka topic created".into(),
        )
        .await;
    }
    if let Some(to) = applied.topic_grown_to {
        publish(
            obj,
            ctx,
            EventType::Normal,
            "PartitionsAdded",
            "GrowTopic",
            format!("topic grown to {to} partitions"),
        )
        .await;
    }
    if !applied.keys.is_empty() {
        let list: Vec<String> = applied
            .keys
            .iter()
            .map(|k| format!("{}:v{} ({})", k.partition, k.version, k.trigger.as_str()))
            .collect();
        publish(
            obj,
            ctx,
            EventType::Normal,
            "KeysRolledOver",
            "Rollover",
            format!("new DEK versions: {}", list.join(", ")),
        )
        .await;
    }
}

async fn publish(
    obj: &EncryptedTopic,
    ctx: &Context,
    type_: EventType,
    reason_: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason_.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    // Events are best effort: a failure to record one must not fail key management.
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish an event");
    }
}

/// For requeues after a reconcile error (status write failed).
pub fn error_policy(
    _obj: Arc<EncryptedTopic>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(error = %chain(error), "reconcile failed");
    ctx.metrics.reconciled("error");
    Action::requeue(RETRY)
}
