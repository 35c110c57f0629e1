//! The operator's writes to the EncryptedTopic itself: its status and its finalizer.

use kafka_e2ee_crds::{EncryptedTopic, EncryptedTopicStatus};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, FINALIZER, MANAGER, ReconcileError};

/// Server-side applies the status, unless it is what the object already says (a settled
/// object costs no writes).
pub async fn status(
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
pub async fn finalizer(
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
