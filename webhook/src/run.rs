//! Wiring: Kubernetes client, TLS source, the ConfigMap cache, health/metrics, HTTPS.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::registry::Registry;
use thiserror::Error;

use crate::certs::SelfManaged;
use crate::cli::Args;
use crate::index::ClusterCache;
use crate::inject;
use crate::metrics::Metrics;
use crate::review::Admission;
use crate::server::{AppState, router, serve_tls};
use crate::tls::{CertFiles, CertResolver, TlsError, server_config};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot reach the Kubernetes API (KUBECONFIG or in-cluster config)")]
    Kube(#[source] kube::Error),
    #[error("the serving certificate is unusable")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTPS server failed")]
    Serve(#[source] std::io::Error),
}

pub async fn run(args: Args) -> Result<(), Error> {
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(kafka_e2ee_telemetry::serve(
        args.http_addr,
        Arc::new(registry),
        Arc::clone(&ready),
    ));

    let client = kube::Client::try_default().await.map_err(Error::Kube)?;
    let resolver = Arc::new(CertResolver::default());
    match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            files.load(&resolver, &metrics)?;
            tokio::spawn(files.watch(
                Arc::clone(&resolver),
                metrics.clone(),
                args.tls_reload_interval,
            ));
        }
        _ => {
            let self_managed = SelfManaged {
                client: client.clone(),
                namespace: args.namespace.clone(),
                secret_name: args.tls_secret_name.clone(),
                names: args.certificate_names(),
                validity: args.cert_validity,
                check_interval: args.cert_check_interval,
                mutating_configurations: args.mutating_configurations.clone(),
                validating_configurations: args.validating_configurations.clone(),
            };
            tokio::spawn(self_managed.run(Arc::clone(&resolver), metrics.clone(), None));
        }
    }

    let (indexes, watch) = ClusterCache::watch(client.clone());
    tokio::spawn(watch);
    let mut excluded: BTreeSet<String> = args.excluded_namespaces.iter().cloned().collect();
    excluded.insert("kube-system".into());
    excluded.insert(args.namespace.clone());
    let proxy = match &args.proxy_image {
        None => None,
        Some(image) => {
            let server = client.apiserver_version().await.ok().and_then(|v| {
                // Minor versions may carry a suffix ("29+" on some distributions).
                let minor = v.minor.trim_end_matches(|c: char| !c.is_ascii_digit());
                Some((v.major.parse().ok()?, minor.parse().ok()?))
            });
            let native = args.native_sidecars.resolve(server);
            tracing::info!(%image, native, ?server, "proxy mode enabled");
            Some(inject::ProxySidecar {
                image: image.clone(),
                native,
            })
        }
    };
    let state = Arc::new(AppState {
        admission: Admission {
            indexes: indexes.clone(),
            policy: inject::Policy { excluded, proxy },
            problem_mode: args.on_problem,
        },
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .map_err(|source| Error::Listen {
            addr: args.listen_addr,
            source,
        })?;
    tracing::info!(addr = %args.listen_addr, "serving /mutate and /validate over HTTPS");
    {
        // Ready once injection has its data and TLS has a certificate.
        let ready = Arc::clone(&ready);
        let resolver = Arc::clone(&resolver);
        tokio::spawn(async move {
            indexes.ready().await;
            while !resolver.is_loaded() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            ready.store(true, Ordering::Release);
            tracing::info!("ready");
        });
    }
    serve_tls(
        listener,
        server_config(resolver)?,
        router(state),
        args.connection_limits(),
        kafka_e2ee_telemetry::shutdown_signal(),
    )
    .await
    .map_err(Error::Serve)
}
