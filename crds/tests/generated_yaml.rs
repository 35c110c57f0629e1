//! The committed CRD YAML must match the Rust types (GitOps users apply the file, not the code).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

#[test]
fn committed_crd_yaml_matches_types() {
    let generated = kafka_e2ee_crds::crds_yaml().unwrap();
    for path in [
        concat!(env!("CARGO_MANIFEST_DIR"), "/yaml/kafka-e2ee.crds.yaml"),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/kafka-e2ee/crds/kafka-e2ee.crds.yaml"
        ),
    ] {
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} is out of date with the Rust types: run `cargo run -p kafka-e2ee-crds --bin crdgen`"
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
