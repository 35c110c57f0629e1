//! The committed CRD YAML must match the Rust types (GitOps users apply the file, not the code).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

/// This crate's folder at run time (cargo sets `CARGO_MANIFEST_DIR` for the tests it runs, and
/// runs them from there). Not `env!("CARGO_MANIFEST_DIR")`: that is baked in at build time, and
/// clones of the workspace sharing one target folder reuse each other's test binaries, so a
/// binary built in another clone would compare that clone's files (or fail once it is gone).
fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap())
}

#[test]
fn committed_crd_yaml_matches_types() {
    let generated = kafka_e2ee_crds::crds_yaml().unwrap();
    let dir = crate_dir();
    for path in [
        dir.join("yaml/kafka-e2ee.crds.yaml"),
        dir.join("../charts/kafka-e2ee/crds/kafka-e2ee.crds.yaml"),
    ] {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the Rust types: run `cargo run -p kafka-e2ee-crds --bin crdgen`",
            path.display()
        );
    }
}

#[test]
fn encrypted_topic_crd_is_namespaced_v1alpha1_with_status() {
    let crds = kafka_e2ee_crds::all_crds();
    let crd = crds
        .iter()
        .find(|c| c.spec.names.kind == "EncryptedTopic")
        .unwrap();
    assert_eq!(crd.spec.group, kafka_e2ee_crds::GROUP);
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let spec = &v
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap()
        .properties
        .as_ref()
        .unwrap()["spec"];
    let required = spec.required.as_ref().unwrap();
    assert!(
        required.contains(&"partitions".to_string()) && required.contains(&"kmsRef".to_string())
    );
}
