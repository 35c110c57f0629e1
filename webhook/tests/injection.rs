//! The mutating webhook, called by the real kube-apiserver over TLS: what a stored pod holds
//! after injection, that nothing is injected twice, who is left alone, how problems are
//! reported, what happens when the webhook is down, and that an injected configuration
//! really produces and consumes through the operator's keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kafka_e2ee_crds::injection::{
    INJECTED_ANNOTATION, InjectionRecord, NAMESPACE_LABEL, REQUIRE_INJECTION_LABEL,
};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;

/// The injected parts of a stored pod, as JSON, for exact comparison.
fn injected_parts(pod: &Pod) -> Value {
    let pod = serde_json::to_value(pod).unwrap();
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({"name": c["name"], "env": c["env"], "volumeMounts": c["volumeMounts"]}))
        .collect();
    json!({"volumes": pod["spec"]["volumes"], "containers": containers})
}

/// The value of the metric line starting with `line` (0 when absent).
fn metric(text: &str, line: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A world with a Ready keystore EncryptedTopic `orders`, its client ConfigMap published by
/// the operator, and the webhook registered. Returns the Kafka topic name.
async fn injected_world(prefix: &str, failure_policy: &str) -> (World, Operator, Webhook, String) {
    injected_world_with(prefix, failure_policy, &[]).await
}

async fn injected_world_with(
    prefix: &str,
    failure_policy: &str,
    webhook_args: &[&str],
) -> (World, Operator, Webhook, String) {
    let world = World::new(prefix).await;
    world.keystore().await;
    let operator = world.start_operator(&[]);
    let mut spec = world.spec("orders", 2, "keystore");
    spec.tek = Some(KEYSTORE_TEK.into());
    world.apply_topic("orders", spec).await;
    world.wait_topic_ready("orders").await;
    let topic = world.topic_name("orders");
    world.wait_published(&topic).await;
    let webhook = world.start_webhook(webhook_args);
    world.register(webhook.port, failure_policy).await;
    webhook.wait_ready().await;
    world.wait_injecting(&topic).await;
    (world, operator, webhook, topic)
}

#[tokio::test]
async fn an_opted_in_pod_gets_exactly_its_config_once_and_it_works() {
    let (world, _operator, webhook, topic) = injected_world("wh-inject", "Fail").await;
    let ns = world.namespace.clone();
    let before = webhook.metrics().await;
    let stored = world
        .create_pod(&ns, "app", json!({"kafka-e2ee.io/topics": topic}))
        .await
        .unwrap();

    let mount =
        json!([{"name": "kafka-e2ee", "mountPath": "/var/run/kafka-e2ee", "readOnly": true}]);
    let config_env =
        json!({"name": "KAFKA_E2EE_CONFIG", "value": "/var/run/kafka-e2ee/client.yaml"});
    let want = json!({
        "volumes": [{"name": "kafka-e2ee", "projected": {
            "defaultMode": kafka_e2ee_webhook::inject::INJECTED_FILE_MODE,
            "sources": [
                {"configMap": {"name": "kafka-e2ee-client",
                    "items": [{"key": "kmsconnection.keystore.yaml", "path": "client.yaml"}]}},
                {"secret": {"name": "keystore", "items": [{"key": "keystore.json", "path": "keystore.json"}]}},
            ],
        }}],
        "containers": [
            {"name": "app", "env": [config_env], "volumeMounts": mount},
            {"name": "sidecar", "env": [{"name": "A", "value": "1"}, config_env], "volumeMounts": mount},
        ],
    });
    assert_eq!(
        injected_parts(&stored),
        want,
        "the stored pod holds exactly the injection"
    );
    let record: InjectionRecord =
        serde_json::from_str(&stored.annotations()[INJECTED_ANNOTATION]).unwrap();
    assert_eq!(record.topics.as_slice(), std::slice::from_ref(&topic));
    assert_eq!(record.containers, ["app", "sidecar"]);
    // Two webhook entries called /mutate: the second saw the first's output and added
    // nothing; the metrics say one patch and one plain admission for this pod.
    let after = webhook.metrics().await;
    for (outcome, delta) in [("patched", 1.0), ("allowed", 1.0)] {
        let line =
            format!(r#"kafka_e2ee_webhook_requests_total{{webhook="mutate",outcome="{outcome}"}}"#);
        assert_eq!(
            metric(&after, &line) - metric(&before, &line),
            delta,
            "{outcome}"
        );
    }

    // Re-submitting the injected spec (a copy, a re-apply of an exported pod) adds nothing.
    let mut copy: Pod = stored.clone();
    copy.metadata = kube::api::ObjectMeta {
        name: Some("app-copy".into()),
        annotations: stored.metadata.annotations.clone(),
        ..Default::default()
    };
    let copy = world
        .pods(&ns)
        .create(&PostParams::default(), &copy)
        .await
        .unwrap();
    assert_eq!(injected_parts(&copy), want);

    // The whole path minus a kubelet: the projected files, the env var, the client crate.
    let root = world.dir().join("app");
    let config = materialize(&world.client, &stored, &root).await;
    let client = client_from_injected(&config).await;
    let mut sent = produce(&client, &topic, "injected", 8, None).await;
    sent.sort();
    assert_eq!(consume(&client, &topic, 8).await, sent);

    // The namespace's last EncryptedTopic deleted: the operator removes its ConfigMap, and
    // pods naming the topic are refused.
    kube::Api::<kafka_e2ee_crds::EncryptedTopic>::namespaced(world.client.clone(), &ns)
        .delete("orders", &Default::default())
        .await
        .unwrap();
    let configmaps =
        kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(world.client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    while configmaps
        .get_opt("kafka-e2ee-client")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "client ConfigMap not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let refused = world
        .create_pod(&ns, "late", json!({"kafka-e2ee.io/topics": topic}))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("has no EncryptedTopics"),
        "{refused}"
    );
}

#[tokio::test]
async fn pods_that_do_not_opt_in_and_protected_namespaces_are_left_alone() {
    let (world, _operator, webhook, topic) = injected_world("wh-alone", "Fail").await;
    let plain = |pod: &Pod| {
        pod.spec.as_ref().unwrap().volumes.is_none()
            && !pod.annotations().contains_key(INJECTED_ANNOTATION)
    };
    let ns = world.namespace.clone();
    // Opted-in namespace, pod without topics / opted out.
    let pod = world.create_pod(&ns, "no-topics", json!({})).await.unwrap();
    assert!(plain(&pod));
    let pod = world
        .create_pod(
            &ns,
            "opted-out",
            json!({"kafka-e2ee.io/topics": topic, "kafka-e2ee.io/inject": "false"}),
        )
        .await
        .unwrap();
    assert!(plain(&pod));
    // A namespace without the label: the apiserver never calls us.
    let other = format!("{}-plain", world.id);
    create_namespace(&world.client, &other, &[(TEST_LABEL, &world.id)]).await;
    let pod = world
        .create_pod(&other, "app", json!({"kafka-e2ee.io/topics": topic}))
        .await
        .unwrap();
    assert!(plain(&pod));
    // kube-system, even if someone labels it: the webhook itself refuses to touch it.
    let namespaces = kube::Api::<Namespace>::all(world.client.clone());
    let label = |on: bool| {
        let value = if on { json!("enabled") } else { Value::Null };
        let id = if on { json!(world.id) } else { Value::Null };
        json!({"metadata": {"labels": {NAMESPACE_LABEL: value, TEST_LABEL: id}}})
    };
    namespaces
        .patch(
            "kube-system",
            &PatchParams::default(),
            &Patch::Merge(label(true)),
        )
        .await
        .unwrap();
    let system_pod = format!("{}-app", world.id);
    let created = world
        .create_pod(
            "kube-system",
            &system_pod,
            json!({"kafka-e2ee.io/topics": topic}),
        )
        .await;
    namespaces
        .patch(
            "kube-system",
            &PatchParams::default(),
            &Patch::Merge(label(false)),
        )
        .await
        .unwrap();
    assert!(plain(&created.unwrap()));
    let _ = world
        .pods("kube-system")
        .delete(&system_pod, &Default::default())
        .await;

    // The webhook down: namespaces that did not opt in still admit pods; in an opted-in one
    // a pod labelled to require injection is refused (failurePolicy Fail: it never runs
    // without the encryption it asked for), and every other pod is admitted as it is (its
    // client, finding no configuration, refuses to run unencrypted).
    webhook.kill().await;
    let pod = world
        .create_pod(&other, "while-down", json!({"kafka-e2ee.io/topics": topic}))
        .await
        .unwrap();
    assert!(plain(&pod));
    let refused = world
        .create_labelled_pod(
            &ns,
            "required-while-down",
            json!({REQUIRE_INJECTION_LABEL: "true"}),
            json!({"kafka-e2ee.io/topics": topic}),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("failed calling webhook"),
        "{refused}"
    );
    let unrelated = world
        .create_pod(&ns, "unrelated-while-down", json!({}))
        .await
        .unwrap();
    assert!(plain(&unrelated));
    let best_effort = world
        .create_pod(
            &ns,
            "asking-while-down",
            json!({"kafka-e2ee.io/topics": topic}),
        )
        .await
        .unwrap();
    assert!(
        plain(&best_effort),
        "admitted uninjected: it did not require injection"
    );
}

#[tokio::test]
async fn problems_are_refused_with_their_reason_or_warned_about() {
    let (world, _operator, webhook, topic) = injected_world("wh-problems", "Fail").await;
    let ns = world.namespace.clone();
    let manifest = |name: &str, topics: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    kafka-e2ee.io/topics: \"{topics}\"\nspec:\n  containers:\n  - name: app\n    image: example.invalid/app:1\n    env:\n    - name: KAFKA_E2EE_CONFIG\n      value: /etc/mine.yaml\n"
        )
    };
    let (ok, out) = kubectl(&["create", "-f", "-"], Some(&manifest("unknown", "nope")));
    assert!(!ok, "{out}");
    assert!(
        out.contains("kafka-e2ee.io/topics names topic 'nope' that no EncryptedTopic in namespace"),
        "{out}"
    );
    let (ok, out) = kubectl(&["create", "-f", "-"], Some(&manifest("conflict", &topic)));
    assert!(!ok, "{out}");
    assert!(
        out.contains("container app sets KAFKA_E2EE_CONFIG itself"),
        "{out}"
    );
    let metrics = webhook.metrics().await;
    for reason in ["UnknownTopic", "ConflictingConfig"] {
        assert!(
            metrics.contains(&format!(
                r#"kafka_e2ee_webhook_problems_total{{webhook="mutate",outcome="denied",reason="{reason}"}}"#
            )),
            "{reason}: {metrics}"
        );
    }

    // Configured to warn: admitted uninjected, the client sees the reason.
    webhook.kill().await;
    let warning = world.start_webhook(&["--on-problem", "warn"]);
    world.register(warning.port, "Fail").await;
    warning.wait_ready().await;
    world.wait_injecting(&topic).await;
    let (ok, out) = kubectl(&["create", "-f", "-"], Some(&manifest("warned", "nope")));
    assert!(ok, "{out}");
    assert!(
        out.contains("Warning: kafka-e2ee did not inject encryption settings"),
        "{out}"
    );
    let pod = world.pods(&ns).get("warned").await.unwrap();
    assert!(pod.spec.unwrap().volumes.is_none());
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Proxy mode, end to end minus a kubelet: the stored pod has the proxy sidecar (a regular
/// container on this 1.20 apiserver) and the application only its address; the proxy runs on
/// the materialized volume with the sidecar's own environment, and a stock Python client
/// (kafka-python) produces and consumes through it; the Rust client of the same injected
/// configuration reads the same records.
#[tokio::test]
async fn a_pod_in_proxy_mode_gets_the_proxy_and_a_stock_client_encrypts_through_it() {
    use kafka_e2ee_crds::injection::{
        KAFKA_SECRET_PATH, KAFKA_SECRET_VOLUME, MODE_ANNOTATION, PROXY_BOOTSTRAP, PROXY_CONTAINER,
        PROXY_KAFKA_SECRET_ANNOTATION,
    };
    let (world, _operator, _webhook, topic) = injected_world_with(
        "wh-proxy",
        "Fail",
        &["--proxy-image", "registry.example/kafka-e2ee-proxy:test"],
    )
    .await;
    let ns = world.namespace.clone();
    let stored = world
        .create_pod(
            &ns,
            "py-app",
            json!({"kafka-e2ee.io/topics": topic, MODE_ANNOTATION: "proxy",
                   PROXY_KAFKA_SECRET_ANNOTATION: "py-app-kafka"}),
        )
        .await
        .unwrap();
    let spec = stored.spec.clone().unwrap();
    // The proxy's own Kafka credentials: the named Secret, mounted into the proxy only (the
    // apiserver accepts the patch; the Secret itself need not exist for that).
    let secret_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == KAFKA_SECRET_VOLUME)
        .expect("the Kafka Secret volume");
    assert_eq!(
        secret_volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("py-app-kafka")
    );
    let proxy = spec
        .containers
        .iter()
        .find(|c| c.name == PROXY_CONTAINER)
        .expect("the proxy sidecar");
    assert_eq!(
        proxy.image.as_deref(),
        Some("registry.example/kafka-e2ee-proxy:test")
    );
    assert!(
        proxy
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == KAFKA_SECRET_VOLUME && m.mount_path == KAFKA_SECRET_PATH)
    );
    let app = &spec.containers[0];
    assert!(
        app.volume_mounts.is_none(),
        "the application mounts no key material"
    );
    let bootstrap = app
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "KAFKA_BOOTSTRAP_SERVERS");
    assert_eq!(
        bootstrap.and_then(|e| e.value.as_deref()),
        Some(PROXY_BOOTSTRAP)
    );

    // The sidecar as the kubelet would run it: its files, its environment, its arguments
    // (loopback ports of this test instead of 9092).
    let root = world.dir().join("py-app");
    let config = materialize(&world.client, &stored, &root).await;
    let port = kafka_e2ee_tests::kube_env::proxy_ports();
    let http = free_port();
    let mut command = tokio::process::Command::new(sibling_binary("kafka-e2ee-proxy"));
    for var in proxy.env.iter().flatten() {
        if var.name == "KAFKA_E2EE_CONFIG" {
            command.env(&var.name, &config);
        } else if let Some(value) = &var.value {
            command.env(&var.name, value);
        }
    }
    let mut running = command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--broker-port-base", &(port + 1).to_string()])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{http}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy never got ready"
        );
        assert!(running.try_wait().unwrap().is_none(), "the proxy exited");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let python = std::env::var("KE_CLIENTS_PYTHON")
        .expect("KE_CLIENTS_PYTHON (scripts/test installs the Python Kafka clients)");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/py_client.py");
    let records = root.join("records.jsonl");
    let lines: String = (0..3)
        .map(|i| format!("{}\n", json!({"key": format!("{i:02x}"), "value": hex(format!("py-{i}")), "headers": [["lang", hex("python")]]})))
        .collect();
    std::fs::write(&records, lines).unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    let run = |args: Vec<String>| {
        let python = python.clone();
        let script = script.clone();
        async move {
            let out = tokio::process::Command::new(python)
                .arg(script)
                .args(["--lib", "kafka-python"])
                .args(args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let acks = run(vec![
        "produce".into(),
        "--bootstrap".into(),
        bootstrap.clone(),
        "--topic".into(),
        topic.clone(),
        "--records".into(),
        records.display().to_string(),
    ])
    .await;
    assert!(!acks.contains("error"), "{acks}");
    let got = run(vec![
        "consume".into(),
        "--bootstrap".into(),
        bootstrap,
        "--topic".into(),
        topic.clone(),
        "--group".into(),
        format!("{ns}-py"),
        "--expect".into(),
        "3".into(),
        "--timeout".into(),
        "45".into(),
    ])
    .await;
    for i in 0..3 {
        assert!(got.contains(&hex(format!("py-{i}"))), "{got}");
    }

    // The same records, opened by the Rust client of the injected configuration.
    let client = client_from_injected(&config).await;
    let mut values = consume(&client, &topic, 3).await;
    values.sort();
    assert_eq!(values, ["py-0", "py-1", "py-2"]);
}
