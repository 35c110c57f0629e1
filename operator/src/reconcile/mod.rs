//! One reconciliation of an EncryptedTopic: fetch -> validate (pure) -> plan (pure) -> apply
//! (ordered, idempotent) -> status (pure, then server-side apply only when it changed).
//! Failures become a Ready=False condition with a reason a user can act on, and a requeue.
//!
//! - `connection`: the KMS connection an object names, and its provider;
//! - [`failure`]: why a reconciliation did not converge (reason and retry per variant);
//! - [`status`]: the status, as pure functions;
//! - `shred`: deletion and crypto-shredding;
//! - [`events`], `writes`: what the operator tells and writes about the object.

pub(crate) mod connection;
pub mod events;
pub mod failure;
mod shred;
pub mod status;
mod writes;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kafka_e2ee_client::key_records::{PlaintextPolicy as WirePlaintext, ProviderRef};
use kafka_e2ee_client::nonce::MAX_RECORDS_PER_DEK;
use kafka_e2ee_client::provider::{ProviderError, TekManager};
use kafka_e2ee_crds::validation::{validate_encrypted_topic, validate_pairing};
use kafka_e2ee_crds::{
    DeletionPolicy, EncryptedTopic, KmsBackend, MAX_REQUEST_AHEAD_SECONDS, PlaintextPolicy, Request,
};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use thiserror::Error;

use crate::apply::{ApplyError, apply};
use crate::crash;
use crate::kafka_ops::{KafkaOps, TopicKafka};
use crate::kms::{ProviderCache, public_config};
use crate::metrics::Metrics;
use crate::ownership;
use crate::plan::{Desired, Observed, Owner, plan};
use crate::watermarks::{end_offsets, log_starts};
use connection::Connection;
pub use events::Events;
pub use failure::{RETRY, ReconcileFailure, reason};
use kafka_e2ee_telemetry::chain;
pub use status::{KEY_RECORDS_VERIFIED, READY};

/// The finalizer that makes deletion crypto-shred (only on objects with deletionPolicy Delete).
pub const FINALIZER: &str = "kafka-e2ee.io/crypto-shred";
/// The field manager of every write the operator makes.
pub const MANAGER: &str = "kafka-e2ee-operator";

pub struct Context {
    pub client: kube::Client,
    pub kafka: KafkaOps,
    pub providers: ProviderCache,
    pub metrics: Metrics,
    pub events: events::Events,
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
        return shred::finalize(obj, ctx).await;
    }
    if !obj.is_managed() {
        writes::finalizer(obj, ctx, false).await?;
        let new = status::with_ready(
            obj,
            "Unknown",
            reason::UNMANAGED,
            "annotated kafka-e2ee.io/managed=false: the operator leaves this topic and its keys alone",
            now,
        );
        writes::status(obj, ctx, new).await?;
        ctx.metrics.reconciled(reason::UNMANAGED);
        return Ok(Action::await_change());
    }
    if obj.is_paused() {
        let new = status::paused(
            obj,
            "annotated kafka-e2ee.io/pause-reconciliation=true: keys are neither rolled over nor rotated",
            now,
        );
        writes::status(obj, ctx, new).await?;
        ctx.metrics.reconciled(reason::PAUSED);
        return Ok(Action::await_change());
    }
    match converge(obj, ctx, now).await {
        Ok((new, requeue)) => {
            writes::status(obj, ctx, new).await?;
            ctx.metrics.reconciled("ok");
            Ok(Action::requeue(requeue))
        }
        Err(failure) => {
            let (reason_, mut message) = (failure.reason(), failure.message());
            if failure.concerns_connection() {
                let kms_ref = &obj.spec.kms_ref;
                message = format!("{}/{}: {message}", kms_ref.kind.as_str(), kms_ref.name);
            }
            tracing::warn!(object = %obj.name_any(), namespace = ?obj.namespace(), reason = reason_, %message, "not ready");
            let new = status::failed(obj, reason_, &message, failure.stalls(), now);
            writes::status(obj, ctx, new).await?;
            ctx.metrics.reconciled(reason_);
            Ok(failure
                .requeue()
                .map_or_else(Action::await_change, Action::requeue))
        }
    }
}

/// Everything between validation and the new status; a failure names its reason.
async fn converge(
    obj: &EncryptedTopic,
    ctx: &Context,
    now: SystemTime,
) -> Result<(kafka_e2ee_crds::EncryptedTopicStatus, Duration), ReconcileFailure> {
    let invalid = |errors: Vec<kafka_e2ee_crds::validation::SpecError>| {
        ReconcileFailure::InvalidSpec(errors.iter().map(ToString::to_string).collect())
    };
    let valid = validate_encrypted_topic(obj).map_err(invalid)?;

    let namespace = obj.namespace().unwrap_or_default();
    let connection = Connection::fetch(obj, ctx).await?;
    let backend = connection.backend()?;
    validate_pairing(&valid, backend.kind()).map_err(|e| invalid(vec![e]))?;
    // The TEK and topic are this object's to act on: in its namespace's names, unchanged
    // since provisioning, and held by no older EncryptedTopic (one being deleted included).
    let tek = ownership::tek_name(obj, backend);
    let wants = ownership::Wants {
        topic: &valid.topic,
        tek: &tek,
        backend,
        any_tek_name: connection.any_tek_name(),
    };
    let others = ctx
        .topics
        .state_filter(|other| ownership::may_conflict(other, &wants));
    ownership::check(obj, &wants, &others)?;
    // Only a valid spec gets the finalizer: deletion never shreds without the confirmation.
    writes::finalizer(obj, ctx, obj.spec.deletion_policy == DeletionPolicy::Delete)
        .await
        .map_err(
            |ReconcileError::Kube { what, source, .. }| ReconcileFailure::Kubernetes {
                what,
                source,
            },
        )?;
    let provider = connection.provider(ctx, backend).await?;

    let mut desired = desired(obj, &valid, backend, tek);
    (
        desired.rollover_request,
        desired.rotate_request,
        desired.prune_request,
    ) = checked_requests(obj, ctx, now).await;
    // Pruning is carried out once per request: not again once status echoes it.
    let pruned_before = obj
        .status
        .as_ref()
        .and_then(|s| s.requests.as_ref())
        .and_then(|r| r.prune.as_deref());
    if desired.prune_request.as_ref().map(|r| r.raw.as_str()) == pruned_before {
        desired.prune_request = None;
    }
    let key_topic = ctx.kafka.keys(&namespace).await?;
    let kafka = TopicKafka {
        ops: &ctx.kafka,
        keys: &key_topic,
    };
    let mut observed = observe(&*provider, kafka, obj, &desired).await?;
    let mut the_plan = plan(&desired, &observed, now)?;
    let uid = &desired.owner.uid;
    if the_plan.create_tek {
        // Recorded before the KMS call: a crash right after it must not leave a TEK this
        // object created looking adopted (then deletion would not destroy it).
        let claim = status::tek_claimed(obj, &desired.provider.tek, uid, &connection.label(), now);
        writes::status(obj, ctx, claim).await.map_err(
            |ReconcileError::Kube { source, .. }| ReconcileFailure::Kubernetes {
                what: "recording the TEK about to be created",
                source,
            },
        )?;
        crash::point("after-tek-claimed");
    }
    if the_plan.rotate_tek {
        // The last rotation is known from status only, and the cached object can predate the
        // status this operator wrote moments ago: confirm with a fresh read before rotating.
        let api: Api<EncryptedTopic> = Api::namespaced(ctx.client.clone(), &namespace);
        let fresh =
            api.get(&obj.name_any())
                .await
                .map_err(|source| ReconcileFailure::Kubernetes {
                    what: "reading the object before a TEK rotation",
                    source,
                })?;
        observed.last_tek_rotation = last_rotation(&fresh, &desired);
        the_plan = plan(&desired, &observed, now)?;
    }
    let next_due = the_plan.next_due;
    let extra_partitions = the_plan.extra_partitions;
    let applied = apply(
        &*provider,
        kafka,
        &ctx.metrics,
        &desired,
        &observed,
        the_plan,
        now,
    )
    .await
    .map_err(|e| match e {
        ApplyError::Kms(p) => ReconcileFailure::Kms(p),
        ApplyError::Kafka(k) => k.into(),
    })?;
    events::applied(obj, ctx, &applied).await;

    let keys = key_topic.directory.topic_keys(&desired.topic);
    let rejected = key_topic.directory.rejected(&desired.topic);
    let new = status::converged_status(
        obj,
        &status::Converged {
            desired: &desired,
            last_tek_rotation: observed.last_tek_rotation,
            applied: &applied,
            keys: &keys,
            extra_partitions,
            rejected: &rejected,
            key_topic: &key_topic.name,
            created_for: (applied.tek_created || ownership::created_for_this(obj, backend))
                .then_some(uid.as_str()),
            connection: &connection.label(),
            requests: carried_out(obj, &desired, now),
        },
        now,
    );
    let verified = status::find(Some(&new), KEY_RECORDS_VERIFIED);
    let before = status::find(obj.status.as_ref(), KEY_RECORDS_VERIFIED);
    if let Some(v) = verified
        && v.status == "False"
        && before.is_none_or(|b| b.message != v.message)
    {
        events::publish(
            obj,
            ctx,
            EventType::Warning,
            reason::UNVERIFIED_KEY_RECORDS,
            "VerifyKeyRecords",
            v.message.clone(),
        )
        .await;
    }
    let until_due = next_due
        .and_then(|due| due.duration_since(now).ok())
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1));
    Ok((new, until_due.min(ctx.count_check_interval)))
}

fn desired(
    obj: &EncryptedTopic,
    valid: &kafka_e2ee_crds::validation::ValidSpec,
    backend: KmsBackend<'_>,
    tek: String,
) -> Desired {
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
        owner: Owner {
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            object: format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        },
        rollover_request: None,
        rotate_request: None,
        prune_request: None,
        prune_unused: obj.spec.keys.prune_unused,
    }
}

/// The on-demand requests to act on: a malformed one, or one too far ahead of this clock, is
/// reported as a Warning event and ignored (the schedule goes on).
async fn checked_requests(
    obj: &EncryptedTopic,
    ctx: &Context,
    now: SystemTime,
) -> (Option<Request>, Option<Request>, Option<Request>) {
    let requests = obj.requests();
    let limit = crate::plan::to_millis(now) + MAX_REQUEST_AHEAD_SECONDS * 1000;
    let rollover = usable_request(obj, ctx, limit, requests.rollover).await;
    let rotate = usable_request(obj, ctx, limit, requests.rotate).await;
    let prune = usable_request(obj, ctx, limit, requests.prune).await;
    (rollover, rotate, prune)
}

/// `request` if it can be honoured; otherwise `None`, and a Warning event saying why.
async fn usable_request(
    obj: &EncryptedTopic,
    ctx: &Context,
    limit_ms: i64,
    request: Option<Result<Request, String>>,
) -> Option<Request> {
    let refusal = match request? {
        Ok(r) if r.at_ms <= limit_ms => return Some(r),
        Ok(r) => format!(
            "request time '{}' is more than {MAX_REQUEST_AHEAD_SECONDS} s ahead of the operator's clock: ignored (check the clock of whoever set it)",
            r.raw
        ),
        Err(message) => message,
    };
    events::publish(
        obj,
        ctx,
        EventType::Warning,
        reason::INVALID_REQUEST,
        "Request",
        refusal,
    )
    .await;
    None
}

/// The requests carried out once this reconciliation converged: those whose time has come
/// (the plan acted on them, or had already), else what status said before.
fn carried_out(
    obj: &EncryptedTopic,
    desired: &Desired,
    now: SystemTime,
) -> kafka_e2ee_crds::RequestsStatus {
    let mut done = obj
        .status
        .as_ref()
        .and_then(|s| s.requests.clone())
        .unwrap_or_default();
    let now_ms = crate::plan::to_millis(now);
    if let Some(r) = desired
        .rollover_request
        .as_ref()
        .filter(|r| r.at_ms <= now_ms)
    {
        done.rollover = Some(r.raw.clone());
    }
    if let Some(r) = desired
        .rotate_request
        .as_ref()
        .filter(|r| r.at_ms <= now_ms)
    {
        done.rotate = Some(r.raw.clone());
    }
    if let Some(r) = desired.prune_request.as_ref().filter(|r| r.at_ms <= now_ms) {
        done.prune = Some(r.raw.clone());
    }
    done
}

async fn observe<P: TekManager>(
    provider: &P,
    kafka: TopicKafka<'_>,
    obj: &EncryptedTopic,
    desired: &Desired,
) -> Result<Observed, ReconcileFailure> {
    let tek = match provider.describe_tek(&desired.provider.tek).await {
        Ok(info) => Some(info),
        Err(ProviderError::NotFound { .. }) => None,
        Err(e) => return Err(ReconcileFailure::Kms(e)),
    };
    let marks = kafka.ops.watermarks(&desired.topic).await?;
    Ok(Observed {
        tek,
        last_tek_rotation: last_rotation(obj, desired),
        topic_partitions: marks
            .as_ref()
            .map(|o| i32::try_from(o.len()).unwrap_or(i32::MAX)),
        end_offsets: marks.as_ref().map(end_offsets).unwrap_or_default(),
        log_start: marks.as_ref().map(log_starts).unwrap_or_default(),
        keys: kafka.keys.directory.topic_keys(&desired.topic),
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
