//! AdmissionReview bodies as the webhook receives them, for both endpoints.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use kafka_e2ee_crds::injection::{ClientIndex, INDEX_FORMAT, IndexedTopic, Profile};
use kafka_e2ee_webhook::inject::PreparedIndex;
use kafka_e2ee_webhook::review::{Admission, IndexSource, ProblemMode, Webhook};
use libfuzzer_sys::fuzz_target;

/// Every namespace has topic `orders` on a keystore connection.
struct OneIndex(Arc<PreparedIndex>);

impl IndexSource for OneIndex {
    fn index(&self, _namespace: &str) -> Option<Arc<PreparedIndex>> {
        Some(Arc::clone(&self.0))
    }
}

fn admission() -> &'static Admission<OneIndex> {
    static ADMISSION: OnceLock<Admission<OneIndex>> = OnceLock::new();
    ADMISSION.get_or_init(|| Admission {
        indexes: OneIndex(Arc::new(PreparedIndex::new(ClientIndex {
            format: INDEX_FORMAT,
            topics: BTreeMap::from([(
                "orders".to_owned(),
                IndexedTopic {
                    encrypted_topic: "orders".into(),
                    profile: "kmsconnection.ks.yaml".into(),
                },
            )]),
            profiles: BTreeMap::from([(
                "kmsconnection.ks.yaml".to_owned(),
                Profile {
                    kms_ref: "KmsConnection/ks".into(),
                    provider: "keystore".into(),
                    sources: vec![],
                    unavailable: None,
                },
            )]),
        }))),
        // Proxy mode on: its injection is parsed and patched too.
        policy: kafka_e2ee_webhook::inject::Policy {
            excluded: BTreeSet::from(["kube-system".to_owned()]),
            proxy: Some(kafka_e2ee_webhook::inject::ProxySidecar {
                image: "kafka-e2ee-proxy:fuzz".into(),
                native: true,
            }),
        },
        problem_mode: ProblemMode::Deny,
    })
}

fuzz_target!(|data: &[u8]| {
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        let handled = admission().handle(webhook, data);
        assert!(
            handled.status == 200 || handled.status == 400,
            "status {}",
            handled.status
        );
    }
});
