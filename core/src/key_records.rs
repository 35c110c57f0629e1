//! Records of the key topic (`__encryption_keys`, compacted): one policy record per topic and
//! one EDEK record per (topic, partition, DEK version). docs/wire-format.md specifies them.
//!
//! Record keys are stable text so compaction keeps exactly the latest of each:
//! `policy/<topic>` and `edek/<topic>/<partition>/<version>` (Kafka topic names cannot contain
//! `/`). Values are versioned JSON (`"format": 1`); they are few (keys scale with partitions and
//! versions, never with records), and operators can read them with any Kafka tool. A null value
//! (tombstone) deletes the entry. A value whose fields disagree with its record key (e.g. an
//! EDEK copied under another partition's key) is rejected.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::provider::{DekCommitment, Edek};

/// The only key-record format this version writes and reads.
pub const KEY_RECORD_FORMAT: u32 = 1;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRecordError {
    #[error(
        "key-topic record key {0:?} is not policy/<topic> or edek/<topic>/<partition>/<version>"
    )]
    UnknownKey(String),
    #[error(
        "key-topic record {key}: value is not valid JSON of format {KEY_RECORD_FORMAT}: {reason}"
    )]
    MalformedValue { key: String, reason: String },
    #[error(
        "key-topic record {key}: format {format} is not supported (this client reads {KEY_RECORD_FORMAT})"
    )]
    UnsupportedFormat { key: String, format: u32 },
    #[error("key-topic record {key}: could not encode the value")]
    Encode { key: String, reason: String },
    #[error("key-topic record {key}: its value names {field} {found}, its key says otherwise")]
    KeyMismatch {
        key: String,
        field: &'static str,
        found: String,
    },
}

/// What a topic's records may be when they are not encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaintextPolicy {
    /// Producers never write plaintext; consumers treat a plaintext record as an error.
    Reject,
    /// Consumers pass plaintext records through (migration of an existing topic).
    Allow,
}

/// Which KeyProvider to use for a topic and its non-secret configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// `keystore`, `vault`, `awsKms` or `hadoopKms`.
    pub kind: String,
    /// The TEK reference in that provider (alias, key name, key ARN).
    pub tek: String,
    /// Non-secret settings (addresses, mount paths, regions). Never credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// The policy record: how a topic is encrypted and which DEK version each partition uses now.
/// Written after every EDEK it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRecord {
    pub topic: String,
    pub provider: ProviderRef,
    /// `AES-256-GCM`.
    pub engine: String,
    pub plaintext: PlaintextPolicy,
    pub max_records_per_dek: u64,
    /// Partition -> current DEK version.
    pub current_versions: BTreeMap<i32, u32>,
}

#[derive(Serialize)]
struct PolicyJson<'a> {
    format: u32,
    #[serde(flatten)]
    policy: &'a PolicyRecord,
}

/// One wrapped DEK and what is needed to unwrap and check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdekRecord {
    pub topic: String,
    pub partition: i32,
    pub version: u32,
    /// The TEK reference and, where the KMS reports one, its version at wrapping time.
    pub tek: String,
    pub tek_version: Option<String>,
    pub edek: Edek,
    pub commitment: DekCommitment,
    pub created_at_ms: i64,
    /// The data partition's end offset when the DEK was generated: rollover by record count
    /// counts from here. `None` when unknown (e.g. the topic did not exist yet: offset 0).
    pub created_at_offset: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EdekJson {
    format: u32,
    topic: String,
    partition: i32,
    version: u32,
    tek: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tek_version: Option<String>,
    edek: String,
    commitment: String,
    created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at_offset: Option<i64>,
}

/// A decoded key-topic record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRecord {
    Policy(PolicyRecord),
    PolicyDeleted {
        topic: String,
    },
    Edek(EdekRecord),
    EdekDeleted {
        topic: String,
        partition: i32,
        version: u32,
    },
}

enum ParsedKey {
    Policy {
        topic: String,
    },
    Edek {
        topic: String,
        partition: i32,
        version: u32,
    },
}

pub fn policy_key(topic: &str) -> String {
    format!("policy/{topic}")
}

pub fn edek_key(topic: &str, partition: i32, version: u32) -> String {
    format!("edek/{topic}/{partition}/{version}")
}

/// The topic a key-topic record key names (`policy/<topic>`, `edek/<topic>/...`), if any.
pub fn topic_of_key(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    match parts.next()? {
        "policy" | "edek" => parts.next().filter(|t| !t.is_empty()),
        _ => None,
    }
}

/// The (topic, partition, version) an EDEK record key names, if it is one.
pub fn edek_slot_of_key(key: &str) -> Option<(&str, i32, u32)> {
    let mut parts = key.split('/');
    match (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next(),
    ) {
        ("edek", topic, partition, version, None) if !topic.is_empty() => Some((
            topic,
            partition.parse().ok().filter(|p: &i32| *p >= 0)?,
            version.parse().ok()?,
        )),
        _ => None,
    }
}

fn parse_key(key: &str) -> Result<ParsedKey, KeyRecordError> {
    let unknown = || KeyRecordError::UnknownKey(key.to_owned());
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["policy", topic] if !topic.is_empty() => Ok(ParsedKey::Policy {
            topic: (*topic).to_owned(),
        }),
        ["edek", topic, partition, version] if !topic.is_empty() => Ok(ParsedKey::Edek {
            topic: (*topic).to_owned(),
            partition: partition
                .parse()
                .ok()
                .filter(|p: &i32| *p >= 0)
                .ok_or_else(unknown)?,
            version: version.parse().map_err(|_| unknown())?,
        }),
        _ => Err(unknown()),
    }
}

impl PolicyRecord {
    /// `(record key, value)` to produce to the key topic.
    pub fn encode(&self) -> Result<(String, Vec<u8>), KeyRecordError> {
        let key = policy_key(&self.topic);
        let encode_error = |e: serde_json::Error| KeyRecordError::Encode {
            key: key.clone(),
            reason: e.to_string(),
        };
        // The format is a property of the wire value, not of the policy: added here, as for
        // EDEK records, so callers never set or see it.
        let value = serde_json::to_vec(&PolicyJson {
            format: KEY_RECORD_FORMAT,
            policy: self,
        })
        .map_err(encode_error)?;
        Ok((key, value))
    }

    /// The policy of a format-1 value, `format` already checked.
    fn decode_value(value: &[u8]) -> Result<Self, String> {
        let mut json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(value).map_err(|e| e.to_string())?;
        json.remove("format");
        serde_json::from_value(serde_json::Value::Object(json)).map_err(|e| e.to_string())
    }
}

impl EdekRecord {
    pub fn encode(&self) -> Result<(String, Vec<u8>), KeyRecordError> {
        let json = EdekJson {
            format: KEY_RECORD_FORMAT,
            topic: self.topic.clone(),
            partition: self.partition,
            version: self.version,
            tek: self.tek.clone(),
            tek_version: self.tek_version.clone(),
            edek: STANDARD.encode(&self.edek.0),
            commitment: STANDARD.encode(self.commitment.0),
            created_at_ms: self.created_at_ms,
            created_at_offset: self.created_at_offset,
        };
        let key = edek_key(&self.topic, self.partition, self.version);
        let value = serde_json::to_vec(&json).map_err(|e| KeyRecordError::Encode {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        Ok((key, value))
    }
}

/// Decodes one key-topic record; `value` is `None` for a tombstone.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<KeyRecord, KeyRecordError> {
    let key_str = std::str::from_utf8(key)
        .map_err(|_| KeyRecordError::UnknownKey(String::from_utf8_lossy(key).into_owned()))?;
    let parsed = parse_key(key_str)?;
    let malformed = |reason: String| KeyRecordError::MalformedValue {
        key: key_str.to_owned(),
        reason,
    };
    let mismatch = |field, found: String| KeyRecordError::KeyMismatch {
        key: key_str.to_owned(),
        field,
        found,
    };
    let check_format = |format| {
        if format == KEY_RECORD_FORMAT {
            Ok(())
        } else {
            Err(KeyRecordError::UnsupportedFormat {
                key: key_str.to_owned(),
                format,
            })
        }
    };
    match (parsed, value) {
        (ParsedKey::Policy { topic }, None) => Ok(KeyRecord::PolicyDeleted { topic }),
        (
            ParsedKey::Edek {
                topic,
                partition,
                version,
            },
            None,
        ) => Ok(KeyRecord::EdekDeleted {
            topic,
            partition,
            version,
        }),
        (ParsedKey::Policy { topic }, Some(v)) => {
            check_format(format_of(v).map_err(malformed)?)?;
            let policy = PolicyRecord::decode_value(v).map_err(malformed)?;
            if policy.topic != topic {
                return Err(mismatch("topic", policy.topic));
            }
            Ok(KeyRecord::Policy(policy))
        }
        (
            ParsedKey::Edek {
                topic,
                partition,
                version,
            },
            Some(v),
        ) => {
            check_format(format_of(v).map_err(malformed)?)?;
            let json: EdekJson = serde_json::from_slice(v).map_err(|e| malformed(e.to_string()))?;
            if json.topic != topic {
                return Err(mismatch("topic", json.topic));
            }
            if json.partition != partition {
                return Err(mismatch("partition", json.partition.to_string()));
            }
            if json.version != version {
                return Err(mismatch("version", json.version.to_string()));
            }
            let edek = STANDARD
                .decode(&json.edek)
                .map_err(|_| malformed("edek is not base64".into()))?;
            let commitment: [u8; 32] = STANDARD
                .decode(&json.commitment)
                .ok()
                .and_then(|c| c.try_into().ok())
                .ok_or_else(|| malformed("commitment is not 32 bytes of base64".into()))?;
            Ok(KeyRecord::Edek(EdekRecord {
                topic,
                partition,
                version,
                tek: json.tek,
                tek_version: json.tek_version,
                edek: Edek(edek),
                commitment: DekCommitment(commitment),
                created_at_ms: json.created_at_ms,
                created_at_offset: json.created_at_offset,
            }))
        }
    }
}

/// Reads only `format` first, so a future format is reported as unsupported, not malformed.
fn format_of(value: &[u8]) -> Result<u32, String> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    serde_json::from_slice::<Format>(value)
        .map(|f| f.format)
        .map_err(|e| e.to_string())
}
