//! `kubectl e2ee status`: EncryptedTopics as a table (kubectl's style), JSON or YAML; for one
//! object also its conditions and recent events.

use std::io::Write;
use std::time::SystemTime;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kafka_e2ee_crds::{EncryptedTopic, EncryptedTopicStatus};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::args::Output;
use crate::error::CliError;
use crate::{Kube, human};

/// What `-o json|yaml` prints for each EncryptedTopic.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicView {
    pub namespace: String,
    pub name: String,
    pub topic: Option<String>,
    pub paused: bool,
    pub managed: bool,
    pub status: EncryptedTopicStatus,
    /// Only for one named object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    pub last_seen: Option<Time>,
}

pub async fn run(
    kube: &Kube,
    name: Option<&str>,
    all_namespaces: bool,
    output: Output,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let ns = kube.namespace.as_str();
    let (api, scope): (Api<EncryptedTopic>, &str) = if all_namespaces {
        (Api::all(kube.client.clone()), "all namespaces")
    } else {
        (Api::namespaced(kube.client.clone(), ns), ns)
    };
    let objects = match name {
        Some(name) => vec![
            api.get(name)
                .await
                .map_err(|e| CliError::kube(e, "get", "encryptedtopics", scope, Some(name)))?,
        ],
        None => {
            api.list(&ListParams::default())
                .await
                .map_err(|e| CliError::kube(e, "list", "encryptedtopics", scope, None))?
                .items
        }
    };
    let mut views: Vec<TopicView> = objects.iter().map(view).collect();
    if let (Some(name), Some(v)) = (name, views.first_mut()) {
        v.events = events(kube, &v.namespace, name).await?;
    }
    let now = SystemTime::now();
    if crate::write_structured(&views, output, out)? {
        Ok(())
    } else if name.is_some() {
        describe(&views, now, out)
    } else {
        table(&views, all_namespaces, now, out)
    }
}

fn view(obj: &EncryptedTopic) -> TopicView {
    let status = obj.status.clone().unwrap_or_default();
    TopicView {
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        topic: status
            .topic
            .clone()
            .or_else(|| obj.kafka_topic_name().map(str::to_owned)),
        paused: obj.is_paused(),
        managed: obj.is_managed(),
        status,
        events: Vec::new(),
    }
}

async fn events(kube: &Kube, namespace: &str, name: &str) -> Result<Vec<EventView>, CliError> {
    // events.k8s.io, as the operator records them; filtered here (field selectors on
    // `regarding` differ between API versions).
    let api: Api<Event> = Api::namespaced(kube.client.clone(), namespace);
    let mut list: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| CliError::kube(e, "list", "events", namespace, None))?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("EncryptedTopic")
            })
        })
        .collect();
    list.sort_by_key(last_seen_secs);
    Ok(list
        .iter()
        .rev()
        .take(10)
        .map(|e| EventView {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.note.clone().unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .map(|s| s.count)
                .or(e.deprecated_count)
                .unwrap_or(1),
            last_seen: last_seen(e),
        })
        .collect())
}

fn last_seen(e: &Event) -> Option<Time> {
    e.series
        .as_ref()
        .map(|s| Time(s.last_observed_time.0))
        .or_else(|| e.event_time.as_ref().map(|t| Time(t.0)))
        .or_else(|| e.deprecated_last_timestamp.clone())
        .or_else(|| e.metadata.creation_timestamp.clone())
}

fn last_seen_secs(e: &Event) -> i64 {
    last_seen(e).map_or(0, |t| t.0.as_second())
}

fn ready(status: &EncryptedTopicStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == "Ready")
}

/// `5m` ago (or `in 5m` for a time ahead), `<none>` when absent.
fn when(t: Option<&Time>, now: SystemTime) -> String {
    let Some(t) = t else {
        return "<none>".into();
    };
    let then = SystemTime::from(t.0);
    match now.duration_since(then) {
        Ok(ago) => format!("{} ago", human(ago)),
        Err(ahead) => format!("in {}", human(ahead.duration())),
    }
}

fn table(
    views: &[TopicView],
    all_namespaces: bool,
    now: SystemTime,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut rows = vec![
        vec![
            "NAMESPACE",
            "NAME",
            "TOPIC",
            "READY",
            "TEK",
            "DEKS",
            "EDEKS",
            "LAST ROLLOVER",
            "NEXT ROLLOVER",
            "NEXT ROTATION",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>(),
    ];
    for v in views {
        let s = &v.status;
        let ready = ready(s).map_or_else(
            || "Unknown".to_owned(),
            |c| {
                if c.status == "True" {
                    "True".to_owned()
                } else {
                    format!("{} ({})", c.status, c.reason)
                }
            },
        );
        let tek = s.tek.as_ref().map_or_else(
            || "<none>".to_owned(),
            |t| match &t.version {
                Some(version) => format!("{} v{version}", t.reference),
                None => t.reference.clone(),
            },
        );
        rows.push(vec![
            v.namespace.clone(),
            v.name.clone(),
            v.topic.clone().unwrap_or_default(),
            ready,
            tek,
            s.keys
                .as_ref()
                .map_or_else(|| "<none>".to_owned(), |k| k.summary.clone()),
            s.keys
                .as_ref()
                .map_or_else(|| "0".to_owned(), |k| k.stored_edeks.to_string()),
            when(s.last_rollover.as_ref(), now),
            when(s.next_rollover.as_ref(), now),
            when(s.tek.as_ref().and_then(|t| t.next_rotation.as_ref()), now),
        ]);
    }
    if !all_namespaces {
        for row in &mut rows {
            row.remove(0);
        }
    }
    if views.is_empty() {
        return writeln!(out, "No EncryptedTopics found.").map_err(|e| CliError::Output(e.into()));
    }
    write_table(&rows, out)
}

/// Columns padded to their widest cell, three spaces apart, as kubectl prints.
pub fn write_table(rows: &[Vec<String>], out: &mut impl Write) -> Result<(), CliError> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end()).map_err(|e| CliError::Output(e.into()))?;
    }
    Ok(())
}

fn describe(views: &[TopicView], now: SystemTime, out: &mut impl Write) -> Result<(), CliError> {
    let w = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| CliError::Output(e.into()))
    };
    for v in views {
        let s = &v.status;
        w(out, format!("Name:           {}", v.name))?;
        w(out, format!("Namespace:      {}", v.namespace))?;
        w(
            out,
            format!("Topic:          {}", v.topic.as_deref().unwrap_or("<none>")),
        )?;
        if v.paused {
            w(
                out,
                "Paused:         true (kafka-e2ee.io/pause-reconciliation)".into(),
            )?;
        }
        if !v.managed {
            w(out, "Managed:        false (kafka-e2ee.io/managed)".into())?;
        }
        match &s.tek {
            Some(t) => {
                w(
                    out,
                    format!(
                        "TEK:            {} (version {})",
                        t.reference,
                        t.version.as_deref().unwrap_or("-")
                    ),
                )?;
                w(
                    out,
                    format!("  Connection:   {}", t.connection.as_deref().unwrap_or("-")),
                )?;
                w(
                    out,
                    format!("  Last rotation: {}", when(t.last_rotation.as_ref(), now)),
                )?;
                w(
                    out,
                    format!("  Next rotation: {}", when(t.next_rotation.as_ref(), now)),
                )?;
            }
            None => w(out, "TEK:            <none>".into())?,
        }
        match &s.keys {
            Some(k) => w(
                out,
                format!(
                    "DEKs:           {} over {} partitions; {} EDEKs stored",
                    k.summary, k.partitions, k.stored_edeks
                ),
            )?,
            None => w(out, "DEKs:           <none>".into())?,
        }
        w(
            out,
            format!("Last rollover:  {}", when(s.last_rollover.as_ref(), now)),
        )?;
        w(
            out,
            format!(
                "Next rollover:  {} (by age; by record count as it comes)",
                when(s.next_rollover.as_ref(), now)
            ),
        )?;
        if let Some(r) = &s.requests {
            w(
                out,
                format!(
                    "Requests done:  rollover {}, rotate {}",
                    r.rollover.as_deref().unwrap_or("-"),
                    r.rotate.as_deref().unwrap_or("-")
                ),
            )?;
        }
        w(out, "Conditions:".into())?;
        let mut rows = vec![vec![
            "  TYPE".to_owned(),
            "STATUS".into(),
            "REASON".into(),
            "SINCE".into(),
            "MESSAGE".into(),
        ]];
        for c in &s.conditions {
            rows.push(vec![
                format!("  {}", c.type_),
                c.status.clone(),
                c.reason.clone(),
                when(Some(&c.last_transition_time), now),
                c.message.clone(),
            ]);
        }
        write_table(&rows, out)?;
        w(out, "Events:".into())?;
        if v.events.is_empty() {
            w(out, "  <none>".into())?;
        } else {
            let mut rows = vec![vec![
                "  TYPE".to_owned(),
                "REASON".into(),
                "LAST SEEN".into(),
                "COUNT".into(),
                "MESSAGE".into(),
            ]];
            for e in &v.events {
                rows.push(vec![
                    format!("  {}", e.type_),
                    e.reason.clone(),
                    when(e.last_seen.as_ref(), now),
                    e.count.to_string(),
                    e.message.clone(),
                ]);
            }
            write_table(&rows, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_padded_like_kubectl() {
        let rows = vec![
            vec!["NAME".to_owned(), "READY".into(), "DEKS".into()],
            vec!["orders".to_owned(), "True".into(), "v2".into()],
            vec!["a".to_owned(), "False (KmsDenied)".into(), "<none>".into()],
        ];
        let mut out = Vec::new();
        write_table(&rows, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME     READY               DEKS\norders   True                v2\na        False (KmsDenied)   <none>\n"
        );
    }
}
