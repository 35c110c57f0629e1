//! `kubectl e2ee rollover` and `rotate`: a request is an annotation holding the current time
//! (so GitOps can set the same), which the operator honours once and echoes in
//! `status.requests`; the command waits for that echo.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;
use kafka_e2ee_crds::{
    EncryptedTopic, PRUNE_REQUEST_ANNOTATION, ROLLOVER_PARTITIONS_ANNOTATION,
    ROLLOVER_REQUEST_ANNOTATION, ROTATE_REQUEST_ANNOTATION,
};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::Kube;
use crate::args::Wait;
use crate::error::CliError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The partitions to roll over; empty: all.
    Rollover(Vec<i32>),
    Rotate,
    Prune,
}

impl Kind {
    fn verb(&self) -> &'static str {
        match self {
            Self::Rollover(_) => "rollover",
            Self::Rotate => "rotation",
            Self::Prune => "pruning",
        }
    }
}

/// The merge patch that makes the request `at`.
pub fn patch(kind: &Kind, at: &str) -> serde_json::Value {
    match kind {
        Kind::Rollover(partitions) => {
            let list = (!partitions.is_empty()).then(|| {
                partitions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            });
            json!({"metadata": {"annotations": {
                ROLLOVER_REQUEST_ANNOTATION: at,
                // null removes an earlier request's partition list.
                ROLLOVER_PARTITIONS_ANNOTATION: list,
            }}})
        }
        Kind::Rotate => json!({"metadata": {"annotations": {ROTATE_REQUEST_ANNOTATION: at}}}),
        Kind::Prune => json!({"metadata": {"annotations": {PRUNE_REQUEST_ANNOTATION: at}}}),
    }
}

/// Whether the operator carried out the request `at` (its echo in status).
pub fn carried_out(obj: &EncryptedTopic, kind: &Kind, at: &str) -> bool {
    let done = obj.status.as_ref().and_then(|s| s.requests.as_ref());
    let echoed = match kind {
        Kind::Rollover(_) => done.and_then(|r| r.rollover.as_deref()),
        Kind::Rotate => done.and_then(|r| r.rotate.as_deref()),
        Kind::Prune => done.and_then(|r| r.prune.as_deref()),
    };
    echoed == Some(at)
}

pub async fn run(
    kube: &Kube,
    name: &str,
    kind: &Kind,
    wait: &Wait,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let ns = kube.namespace.as_str();
    let api: Api<EncryptedTopic> = Api::namespaced(kube.client.clone(), ns);
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    let at = Timestamp::from_millisecond(now_ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(patch(kind, &at)),
    )
    .await
    .map_err(|e| CliError::kube(e, "patch", "encryptedtopics", ns, Some(name)))?;
    let say = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| CliError::Output(e.into()))
    };
    say(
        out,
        format!("{} of {ns}/{name} requested at {at}", kind.verb()),
    )?;
    if wait.no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + wait.timeout;
    let mut last = "not reconciled since the request".to_owned();
    loop {
        let obj = api
            .get(name)
            .await
            .map_err(|e| CliError::kube(e, "get", "encryptedtopics", ns, Some(name)))?;
        if carried_out(&obj, kind, &at) {
            let status = obj.status.unwrap_or_default();
            let summary = match kind {
                Kind::Rollover(_) => format!(
                    "DEKs now {}",
                    status
                        .keys
                        .map_or_else(|| "<none>".to_owned(), |k| k.summary)
                ),
                Kind::Rotate => format!(
                    "TEK now at version {}",
                    status
                        .tek
                        .and_then(|t| t.version)
                        .unwrap_or_else(|| "-".into())
                ),
                Kind::Prune => format!(
                    "{} EDEKs stored (kubectl e2ee status {name} lists what went in its events)",
                    status.keys.map_or(0, |k| k.stored_edeks)
                ),
            };
            return say(out, format!("{} done: {summary}", kind.verb()));
        }
        if let Some(ready) = obj
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        {
            last = format!(
                "Ready={} ({}): {}",
                ready.status, ready.reason, ready.message
            );
        }
        if Instant::now() >= deadline {
            return Err(CliError::Timeout {
                timeout: wait.timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_annotations_and_done_when_echoed() {
        let at = "2026-12-05T10:00:00.123Z";
        assert_eq!(
            patch(&Kind::Rollover(vec![0, 2]), at),
            json!({"metadata": {"annotations": {
                ROLLOVER_REQUEST_ANNOTATION: at, ROLLOVER_PARTITIONS_ANNOTATION: "0,2"}}})
        );
        assert_eq!(
            patch(&Kind::Rollover(vec![]), at)["metadata"]["annotations"]
                [ROLLOVER_PARTITIONS_ANNOTATION],
            serde_json::Value::Null
        );
        let spec = kafka_e2ee_crds::EncryptedTopicSpec::new(
            1,
            kafka_e2ee_crds::KmsRef {
                kind: kafka_e2ee_crds::KmsRefKind::KmsConnection,
                name: "vault".into(),
            },
        );
        let mut obj = EncryptedTopic::new("orders", spec);
        assert!(!carried_out(&obj, &Kind::Rotate, at));
        obj.status = Some(kafka_e2ee_crds::EncryptedTopicStatus {
            requests: Some(kafka_e2ee_crds::RequestsStatus {
                rollover: Some(at.into()),
                rotate: Some("2026-12-04T00:00:00Z".into()),
                prune: None,
            }),
            ..Default::default()
        });
        assert!(carried_out(&obj, &Kind::Rollover(vec![]), at));
        assert!(
            !carried_out(&obj, &Kind::Rotate, at),
            "an older rotation is not this one"
        );
    }
}
