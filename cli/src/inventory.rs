//! `kubectl e2ee inventory` and `prune --dry-run`: which key versions retained data still
//! needs, computed with the caller's own reader of the key topic and the topic's watermarks
//! (`kafka_e2ee_client::inventory`, the rule the operator prunes by).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use kafka_e2ee_client::config::{EncryptionClient, TRUST_RELOAD};
use kafka_e2ee_client::inventory::{Inventory, StoredVersion, inventory};
use kafka_e2ee_client::kafka::{Connect as _, partition_watermarks};
use kafka_e2ee_crds::EncryptedTopic;
use kube::Api;
use serde::Serialize;

use crate::Kube;
use crate::args::Output;
use crate::error::CliError;
use crate::status::write_table;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub topic: String,
    #[serde(flatten)]
    pub inventory: Inventory,
}

/// The EncryptedTopic's Kafka topic, from the apiserver.
pub async fn topic_of(kube: &Kube, name: &str) -> Result<String, CliError> {
    let ns = kube.namespace.as_str();
    let api: Api<EncryptedTopic> = Api::namespaced(kube.client.clone(), ns);
    let obj = api
        .get(name)
        .await
        .map_err(|e| CliError::kube(e, "get", "encryptedtopics", ns, Some(name)))?;
    obj.status
        .and_then(|s| s.topic)
        .ok_or_else(|| CliError::NoTopic {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        })
}

/// A client of `config`, its key directory read to the end.
pub async fn reader(config: &Path) -> Result<EncryptionClient, CliError> {
    let client = EncryptionClient::from_file(config, TRUST_RELOAD)
        .await
        .map_err(|source| CliError::Client {
            path: config.display().to_string(),
            source: Box::new(source),
        })?;
    client
        .key_directory()
        .wait_caught_up(client.config().key_wait())
        .await
        .map_err(|e| CliError::KeyTopic(crate::error::chain(&e)))?;
    Ok(client)
}

pub async fn compute(kube: &Kube, name: &str, config: &Path) -> Result<Report, CliError> {
    let topic = topic_of(kube, name).await?;
    let client = reader(config).await?;
    let keys = client.key_directory().topic_keys(&topic);
    let current = keys
        .policy
        .as_ref()
        .map(|p| p.current_versions.clone())
        .unwrap_or_default();
    let consumer = client
        .config()
        .connection()
        .metadata_consumer()
        .map_err(|e| CliError::KeyTopic(crate::error::chain(&e)))?;
    let marks = partition_watermarks(&consumer, &topic, Duration::from_secs(10))
        .map_err(|e| CliError::KeyTopic(crate::error::chain(&e)))?;
    let log_start = marks.iter().map(|(&p, &(start, _))| (p, start)).collect();
    Ok(Report {
        inventory: inventory(keys.edeks.iter().map(|e| &**e), &current, &log_start),
        topic,
    })
}

fn list(versions: &[StoredVersion]) -> String {
    if versions.is_empty() {
        return "-".into();
    }
    versions
        .iter()
        .map(|v| match v.first_offset {
            Some(o) => format!("v{}@{o}", v.version),
            None => format!("v{}", v.version),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn print(report: &Report, output: Output, out: &mut impl Write) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Output(e.into());
    if crate::write_structured(report, output, out)? {
        return Ok(());
    }
    let mut rows = vec![
        [
            "PARTITION",
            "LOG-START",
            "CURRENT",
            "NEEDED (version@first offset)",
            "UNUSED",
        ]
        .iter()
        .map(|h| (*h).to_owned())
        .collect::<Vec<_>>(),
    ];
    for p in &report.inventory.partitions {
        rows.push(vec![
            p.partition.to_string(),
            p.log_start.map_or_else(|| "?".into(), |s| s.to_string()),
            p.current.map_or_else(|| "-".into(), |c| format!("v{c}")),
            list(&p.needed),
            list(&p.unused),
        ]);
    }
    write_table(&rows, out)?;
    let teks: Vec<&str> = report
        .inventory
        .tek_versions_needed
        .iter()
        .map(String::as_str)
        .collect();
    writeln!(
        out,
        "{} unused EDEKs of {}; TEK versions the kept EDEKs need: {}",
        report.inventory.unused().len(),
        report.topic,
        if teks.is_empty() {
            "-".to_owned()
        } else {
            teks.join(", ")
        }
    )
    .map_err(io)
}
