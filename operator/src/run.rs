//! Wiring: Kubernetes client, metrics and health endpoints, leader election, Kafka, and the
//! controller; graceful shutdown on SIGTERM / Ctrl-C.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kafka_e2ee_client::resilient::{KmsMetrics, ResiliencePolicy};
use kafka_e2ee_crds::{ClusterKmsConnection, EncryptedTopic, KmsConnection, KmsRefKind};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt};
use prometheus_client::registry::Registry;
use thiserror::Error;

use crate::cli::{AdoptArgs, Args, Command, KafkaSettingsError, RunArgs};
use crate::kafka_ops::{KafkaOps, KafkaOpsError, KeyTopics, KeyTopicsMetrics, OffsetReads};
use crate::kms::ProviderCache;
use crate::leader::{LeaderElector, LeaderError, LeaseSettings};
use crate::metrics::Metrics;
use crate::reconcile::{Context, Events, MANAGER, error_policy, reconcile};
use crate::signing_keys::{KeyStore, RotationSettings};
use crate::signing_rotation::{RotationError, SigningRotation};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    RenderCrds(#[from] kafka_e2ee_crds::CrdYamlError),
    #[error("failed to write to stdout")]
    Stdout(#[source] std::io::Error),
    #[error("cannot reach the Kubernetes API (KUBECONFIG or in-cluster config)")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    KafkaSettings(#[from] KafkaSettingsError),
    #[error("cannot connect to Kafka or read the key topic")]
    Kafka(#[source] KafkaOpsError),
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error("cannot load or create the signing keys")]
    SigningKeys(#[source] RotationError),
    #[error("adopting the key records failed")]
    Adopt(#[source] crate::adopt::AdoptError),
    #[error("the health/metrics server failed")]
    Http(#[source] std::io::Error),
}

/// Runs one command. `out` receives printed output (the CRDs).
pub async fn run(args: Args, out: &mut (impl Write + Send)) -> Result<(), Error> {
    match args.command {
        Command::Crds => {
            let yaml = kafka_e2ee_crds::crds_yaml()?;
            out.write_all(yaml.as_bytes()).map_err(Error::Stdout)
        }
        Command::Run(run_args) => run_controller(*run_args).await,
        Command::AdoptKeyRecords(adopt_args) => {
            let report = adopt_key_records(*adopt_args).await?;
            report.write(out).map_err(Error::Stdout)
        }
    }
}

async fn adopt_key_records(args: AdoptArgs) -> Result<crate::adopt::Adopted, Error> {
    let client = kube::Client::try_default().await.map_err(Error::Kube)?;
    let connection = args.kafka.connection()?;
    let store = KeyStore::new(client, &args.home.namespace, &args.home.signing_secret);
    crate::adopt::adopt(&connection, &args.kafka.key_topic, &store, args.dry_run)
        .await
        .map_err(Error::Adopt)
}

async fn run_controller(args: RunArgs) -> Result<(), Error> {
    let client = kube::Client::try_default().await.map_err(Error::Kube)?;
    let connection = args.kafka.connection()?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into()),
            std::process::id()
        )
    });

    let metrics = Metrics::default();
    let kms_metrics = KmsMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    kms_metrics.register(&mut registry);
    // Key topics open once the operator leads (and more as namespaces come): the collector
    // sums over whatever is open at each scrape.
    let key_topics = Arc::new(KeyTopics::default());
    registry.register_collector(Box::new(KeyTopicsMetrics(Arc::clone(&key_topics))));
    let ready = Arc::new(AtomicBool::new(false));
    let http = tokio::spawn(kafka_e2ee_telemetry::serve(
        args.http_addr,
        Arc::new(registry),
        Arc::clone(&ready),
    ));

    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            client.clone(),
            LeaseSettings {
                namespace: args.home.namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: std::time::Duration::from_secs(15),
                renew: std::time::Duration::from_secs(5),
            },
        )
    });
    if let Some(elector) = &elector {
        // A standby is healthy and ready: it is doing its job, waiting.
        ready.store(true, Ordering::Release);
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            () = kafka_e2ee_telemetry::shutdown_signal() => return Ok(()),
        }
        ready.store(false, Ordering::Release);
        tracing::info!(%identity, "leading");
    }
    metrics.leader.set(1);

    // The signing keys come first: the key topic is read believing only what they signed.
    let rotation = SigningRotation::start(
        KeyStore::new(
            client.clone(),
            &args.home.namespace,
            &args.home.signing_secret,
        ),
        RotationSettings {
            period: args.signing_key_rotation,
            overlap: args.signing_key_overlap,
        },
    )
    .await
    .map_err(Error::SigningKeys)?;
    let kafka = KafkaOps::connect(
        &connection,
        args.key_topic_names(),
        args.key_topic_replication,
        rotation.signer(),
        rotation.trust(),
        key_topics,
        OffsetReads {
            // Half the interval: a count is noticed within 1.5 intervals of being reached.
            max_age: args.count_check_interval / 2,
            reads: metrics.offset_reads.clone(),
        },
    )
    .await
    .map_err(Error::Kafka)?;

    let topics: Api<EncryptedTopic> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let connections: Api<KmsConnection> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // One unpaginated list from the apiserver's watch cache: in a 5,000-object run, a paginated
    // relist left exactly the first 500-object page out of the cache.
    let mut list_config = watcher::Config {
        page_size: None,
        ..watcher::Config::default().any_semantic()
    };
    if let Some(selector) = &args.watch_selector {
        list_config = list_config.labels(selector);
    }
    let (store, writer) = reflector::store();
    let trigger =
        reflector(writer, watcher(topics, list_config).modify(trim_for_cache)).applied_objects();
    let controller = Controller::for_stream(trigger, store.clone())
        .with_config(controller::Config::default().concurrency(args.concurrency));
    let by_connection = {
        let store = store.clone();
        move |conn: KmsConnection| {
            referencing(
                &store,
                KmsRefKind::KmsConnection,
                &conn.name_any(),
                conn.namespace(),
            )
        }
    };
    let by_cluster_connection = {
        let store = store.clone();
        move |conn: ClusterKmsConnection| {
            referencing(
                &store,
                KmsRefKind::ClusterKmsConnection,
                &conn.name_any(),
                None,
            )
        }
    };
    let trusted = rotation.published();
    let client_config_changed = Arc::new(tokio::sync::Notify::new());
    let ctx = Arc::new(Context {
        client: client.clone(),
        kafka,
        providers: ProviderCache::new(
            client.clone(),
            kms_metrics,
            ResiliencePolicy {
                rate_per_second: args.kms_rate_limit.max(0.1),
                burst: args.kms_burst.max(1),
                ..ResiliencePolicy::default()
            },
            args.provider_cache_ttl,
            args.service_account_token_file.clone(),
        ),
        metrics,
        events: Events::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(identity.clone()),
            },
        ),
        cluster_namespace: args.home.namespace.clone(),
        count_check_interval: args.count_check_interval,
        topics: store.clone(),
        client_config_changed: Arc::clone(&client_config_changed),
    });
    let publisher = crate::client_config::Publisher {
        client: client.clone(),
        topics: store,
        settings: args.client_settings(),
        changed: client_config_changed,
        resync: args.client_config_resync,
        watch_namespace: args.watch_namespace.clone(),
        selector: args.watch_selector.clone(),
        trusted,
    }
    .run();
    let connections_checked = crate::connection_status::run(
        Arc::clone(&ctx),
        args.kms_check_interval,
        crate::connection_status::Scope {
            namespace: args.watch_namespace.clone(),
            selector: args.watch_selector.clone(),
        },
    );
    let rotating = {
        let ctx = Arc::clone(&ctx);
        async move { rotation.run(&ctx.kafka, &ctx.metrics).await }
    };
    ready.store(true, Ordering::Release);

    let controller = controller
        .watches(connections, watcher::Config::default(), by_connection)
        .watches(
            Api::<ClusterKmsConnection>::all(client.clone()),
            watcher::Config::default(),
            by_cluster_connection,
        )
        .graceful_shutdown_on(kafka_e2ee_telemetry::shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });

    // Without leader election there is no lease to lose.
    let lease_lost = async {
        match &elector {
            Some(elector) => elector.hold().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = controller => Ok(()),
        () = publisher => Ok(()),
        () = rotating => Ok(()),
        () = connections_checked => Ok(()),
        lost = lease_lost => Err(Error::Leader(lost)),
        served = http => Err(Error::Http(match served {
            Ok(Err(e)) => e,
            Ok(Ok(())) => std::io::Error::other("the server stopped"),
            Err(join) => std::io::Error::other(join),
        })),
    };
    if let Some(elector) = &elector {
        elector.release().await;
    }
    tracing::info!("stopped");
    outcome
}

/// Drops what no reconcile reads before an object enters the cache: managed fields (at 5,000
/// objects the cache's largest part, docs/performance.md) and annotations other than ours
/// (pause, requests; a client-side `kubectl apply` or Argo CD keeps a copy of the whole
/// manifest in one). Status writes and finalizer patches name their fields, so nothing
/// dropped here is written back.
fn trim_for_cache(topic: &mut EncryptedTopic) {
    topic.managed_fields_mut().clear();
    topic.annotations_mut().retain(|key, _| {
        key.strip_prefix(kafka_e2ee_crds::GROUP)
            .is_some_and(|name| name.starts_with('/'))
    });
}

/// EncryptedTopics that use a given connection (to re-reconcile them when it changes).
fn referencing(
    store: &Store<EncryptedTopic>,
    kind: KmsRefKind,
    name: &str,
    namespace: Option<String>,
) -> Vec<ObjectRef<EncryptedTopic>> {
    store
        .state()
        .iter()
        .filter(|t| {
            t.spec.kms_ref.kind == kind
                && t.spec.kms_ref.name == name
                && (namespace.is_none() || t.namespace() == namespace)
        })
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_cache_keeps_what_reconcile_reads_and_drops_managed_fields_and_foreign_annotations() {
        let mut topic: EncryptedTopic = serde_json::from_value(serde_json::json!({
            "apiVersion": "kafka-e2ee.io/v1alpha1",
            "kind": "EncryptedTopic",
            "metadata": {
                "name": "orders", "namespace": "shop", "uid": "u1", "generation": 3,
                "resourceVersion": "42", "labels": {"team": "shop"},
                "finalizers": ["kafka-e2ee.io/cleanup"],
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}",
                    "kafka-e2ee.io.example/other": "x",
                    "kafka-e2ee.io/pause-reconciliation": "true",
                    "kafka-e2ee.io/rollover-requested-at": "2026-12-06T00:00:00Z",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"partitions": 3, "kmsRef": {"kind": "KmsConnection", "name": "vault"}},
            "status": {"observedGeneration": 3, "topic": "orders"},
        }))
        .unwrap();
        let before = topic.clone();
        trim_for_cache(&mut topic);
        assert!(topic.managed_fields().is_empty());
        assert_eq!(
            topic.annotations().keys().collect::<Vec<_>>(),
            [
                kafka_e2ee_crds::PAUSE_ANNOTATION,
                kafka_e2ee_crds::ROLLOVER_REQUEST_ANNOTATION
            ]
        );
        assert!(topic.is_paused());
        assert!(before.requests().rollover.is_some());
        assert_eq!(topic.requests(), before.requests());
        let kept = |t: &EncryptedTopic| {
            let m = t.metadata.clone();
            (
                (m.name, m.namespace, m.uid, m.generation, m.resource_version),
                (m.labels, m.finalizers, m.owner_references),
                serde_json::to_value(&t.spec).unwrap(),
                serde_json::to_value(&t.status).unwrap(),
            )
        };
        assert_eq!(kept(&topic), kept(&before));
    }

    #[tokio::test]
    async fn crds_command_prints_the_generated_yaml() {
        let mut out = Vec::new();
        run(Args::parse_from(["kafka-e2ee-operator", "crds"]), &mut out)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            kafka_e2ee_crds::crds_yaml().unwrap()
        );
    }
}
