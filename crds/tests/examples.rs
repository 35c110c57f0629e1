//! Every manifest under `examples/` is one the operator accepts: connections pass the identity
//! rules of their scope, topics validate, and each topic pairs with the connection it names.
//! Examples are what users copy; one the operator refuses teaches the wrong thing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kafka_e2ee_crds::validation::{
    ConnectionScope, validate_backend, validate_encrypted_topic, validate_pairing,
};
use kafka_e2ee_crds::{ClusterKmsConnection, EncryptedTopic, KmsConnection, KmsRefKind};
use serde::Deserialize;

/// As in generated_yaml.rs: the folder cargo runs the tests from, not the one baked in.
fn examples_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap())
        .join("../examples")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// Every document of every example, with the file it came from.
fn documents() -> Vec<(PathBuf, serde_yaml::Value)> {
    let mut files = Vec::new();
    yaml_files(&examples_dir(), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

fn kind(doc: &serde_yaml::Value) -> &str {
    doc.get("kind").and_then(|k| k.as_str()).unwrap_or("")
}

fn parse<T: serde::de::DeserializeOwned>(file: &Path, doc: &serde_yaml::Value) -> T {
    serde_yaml::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {} does not parse: {e}", file.display(), kind(doc)))
}

#[test]
fn every_example_is_accepted_by_the_operator() {
    // (kind, namespace or "", name) -> backend kind
    let mut connections = HashMap::new();
    let mut topics = Vec::new();
    for (file, doc) in documents() {
        match kind(&doc) {
            "KmsConnection" => {
                let c: KmsConnection = parse(&file, &doc);
                let backend = validate_backend(c.spec.backend(), ConnectionScope::Namespaced)
                    .unwrap_or_else(|e| panic!("{}: refused: {e:?}", file.display()));
                let ns = c.metadata.namespace.clone().unwrap_or_default();
                let name = c.metadata.name.clone().unwrap_or_default();
                connections.insert((KmsRefKind::KmsConnection, ns, name), backend.kind());
            }
            "ClusterKmsConnection" => {
                let c: ClusterKmsConnection = parse(&file, &doc);
                let backend = validate_backend(c.spec.backend(), ConnectionScope::Cluster)
                    .unwrap_or_else(|e| panic!("{}: refused: {e:?}", file.display()));
                let name = c.metadata.name.clone().unwrap_or_default();
                connections.insert(
                    (KmsRefKind::ClusterKmsConnection, String::new(), name),
                    backend.kind(),
                );
            }
            "EncryptedTopic" => topics.push((file.clone(), parse::<EncryptedTopic>(&file, &doc))),
            _ => {}
        }
    }
    // Each backend has an example connection, and each connection a topic.
    let kinds: std::collections::BTreeSet<_> = connections.values().copied().collect();
    assert_eq!(kinds.len(), 4, "one example per backend: {kinds:?}");
    assert!(topics.len() >= 4, "{} example topics", topics.len());

    for (file, topic) in topics {
        let valid = validate_encrypted_topic(&topic)
            .unwrap_or_else(|e| panic!("{}: refused: {e:?}", file.display()));
        let r = &topic.spec.kms_ref;
        let ns = match r.kind {
            KmsRefKind::KmsConnection => topic.metadata.namespace.clone().unwrap_or_default(),
            KmsRefKind::ClusterKmsConnection => String::new(),
        };
        let backend = connections
            .get(&(r.kind, ns, r.name.clone()))
            .unwrap_or_else(|| panic!("{}: names {r}, which no example defines", file.display()));
        validate_pairing(&valid, backend)
            .unwrap_or_else(|e| panic!("{}: with {r}: {e}", file.display()));
    }
}
