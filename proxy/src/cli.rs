//! The command line, and the start-up it drives (the binary stays thin).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser;
use kafka_e2ee_client::config::{EncryptionClient, TRUST_RELOAD};
use prometheus_client::registry::Registry;

use crate::crypto::{Crypto, Metrics, TopicRules};
use crate::sasl::Mechanism;
use crate::server::{ConnectionMetrics, Proxy, Settings};
use crate::upstream::{Connector, SecurityProtocol, UpstreamConfigError, UpstreamSettings};

/// Encrypting Kafka proxy for one pod: point the application's bootstrap servers at
/// --listen; records of the configuration's topics are sealed on their way to the broker and
/// opened on their way back, in the kafka-e2ee record format (docs/proxy.md).
///
/// Example: kafka-e2ee-proxy --config /var/run/kafka-e2ee/client.yaml --listen 127.0.0.1:9092
#[derive(Debug, Parser)]
#[command(name = "kafka-e2ee-proxy", version)]
pub struct Args {
    /// The client configuration (the file the webhook injects): brokers, key topic, KMS,
    /// trusted signing keys and the topics to encrypt (`topics`; empty: every topic).
    #[arg(long, env = "KAFKA_E2EE_CONFIG")]
    pub config: PathBuf,
    /// The bootstrap address the application connects to. Loopback only: plaintext never
    /// leaves the pod.
    #[arg(long, env = "KAFKA_E2EE_PROXY_LISTEN", default_value = "127.0.0.1:9092", value_parser = loopback)]
    pub listen: SocketAddr,
    /// Broker node n is served on this port + n (default: the --listen port + 1).
    #[arg(long, env = "KAFKA_E2EE_PROXY_BROKER_PORT_BASE")]
    pub broker_port_base: Option<u16>,
    /// The brokers to connect to (default: the configuration's bootstrapServers).
    #[arg(long, env = "KAFKA_E2EE_PROXY_UPSTREAM")]
    pub upstream: Option<String>,
    /// A topic forwarded untouched both ways (it is not encrypted, by design); repeatable.
    /// Every other topic outside the configuration's `topics` is refused.
    #[arg(
        long = "passthrough-topic",
        env = "KAFKA_E2EE_PROXY_PASSTHROUGH_TOPICS",
        value_delimiter = ','
    )]
    pub passthrough_topics: Vec<String>,
    /// Kafka's security.protocol to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    /// (default: the configuration's `properties`, as librdkafka reads them, else PLAINTEXT).
    #[arg(long, env = "KAFKA_E2EE_PROXY_UPSTREAM_SECURITY_PROTOCOL")]
    pub upstream_security_protocol: Option<SecurityProtocol>,
    /// PEM CA bundle for the brokers' certificates (default: `ssl.ca.location`, else the
    /// system's CAs).
    #[arg(long, env = "KAFKA_E2EE_PROXY_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// PEM client certificate for brokers that require mTLS (with --upstream-key).
    #[arg(
        long,
        env = "KAFKA_E2EE_PROXY_UPSTREAM_CERT",
        requires = "upstream_key"
    )]
    pub upstream_cert: Option<PathBuf>,
    /// PEM private key of --upstream-cert.
    #[arg(
        long,
        env = "KAFKA_E2EE_PROXY_UPSTREAM_KEY",
        requires = "upstream_cert"
    )]
    pub upstream_key: Option<PathBuf>,
    /// The proxy authenticates to the brokers itself with this mechanism: PLAIN,
    /// SCRAM-SHA-256 or SCRAM-SHA-512 (with --upstream-credentials). Without it, an
    /// application's own SASL passes through.
    #[arg(long, env = "KAFKA_E2EE_PROXY_UPSTREAM_SASL_MECHANISM")]
    pub upstream_sasl_mechanism: Option<Mechanism>,
    /// A directory holding `username` and `password` files (a mounted Secret), read at every
    /// new broker connection, so a rotated password needs no restart.
    #[arg(long, env = "KAFKA_E2EE_PROXY_UPSTREAM_CREDENTIALS")]
    pub upstream_credentials: Option<PathBuf>,
    /// `/healthz`, `/readyz` (ready once listening with the key topic read) and `/metrics`.
    #[arg(
        long,
        env = "KAFKA_E2EE_PROXY_HTTP_ADDR",
        default_value = "127.0.0.1:9190"
    )]
    pub http_addr: SocketAddr,
}

fn loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|e| format!("{e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "{addr} is not a loopback address: plaintext must not leave the pod"
        ))
    }
}

impl Args {
    /// The configuration's Kafka properties, overridden by the command line.
    pub fn upstream_settings(
        &self,
        properties: &std::collections::BTreeMap<String, String>,
    ) -> Result<UpstreamSettings, UpstreamConfigError> {
        let mut s = UpstreamSettings::from_properties(properties)?;
        if let Some(p) = self.upstream_security_protocol {
            s.protocol = p;
        }
        if let Some(ca) = &self.upstream_ca {
            s.ca_file = Some(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.upstream_cert, &self.upstream_key) {
            s.cert_file = Some(cert.clone());
            s.key_file = Some(key.clone());
        }
        if let Some(m) = self.upstream_sasl_mechanism {
            s.sasl_mechanism = Some(m);
        }
        if let Some(dir) = &self.upstream_credentials {
            s.credentials_dir = Some(dir.clone());
        }
        Ok(s)
    }
}

/// Runs the proxy until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::default();
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    let connection_metrics = ConnectionMetrics::default();
    connection_metrics.register(&mut registry);
    let registry = Arc::new(registry);
    tokio::spawn(kafka_e2ee_telemetry::serve(
        args.http_addr,
        Arc::clone(&registry),
        Arc::clone(&ready),
    ));

    let client = EncryptionClient::from_file(&args.config, TRUST_RELOAD)
        .await
        .with_context(|| format!("starting from {}", args.config.display()))?;
    let config = client.config();
    let rules = TopicRules {
        encrypted: config.topics.clone(),
        passthrough: args.passthrough_topics.iter().cloned().collect(),
    };
    let upstream = args
        .upstream
        .clone()
        .unwrap_or_else(|| config.bootstrap_servers.clone());
    let connector = Connector::new(&args.upstream_settings(&config.properties)?)
        .context("upstream TLS/SASL settings")?;
    let settings = Settings {
        listen: args.listen,
        broker_port_base: args
            .broker_port_base
            .unwrap_or_else(|| args.listen.port().saturating_add(1)),
        upstream: upstream
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        connector,
    };
    let crypto = Crypto::new(
        Arc::clone(client.key_directory()),
        Arc::clone(client.dek_cache()),
        config.key_wait(),
        rules,
        metrics,
    );
    let proxy = Proxy::new(settings, crypto, connection_metrics);
    let serving = proxy.bind().await?;
    ready.store(true, Ordering::Release);
    tokio::select! {
        () = serving => {},
        () = kafka_e2ee_telemetry::shutdown_signal() => {},
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(loopback("127.0.0.1:9092").is_ok());
        assert!(loopback("[::1]:9092").is_ok());
        assert!(loopback("0.0.0.0:9092").unwrap_err().contains("loopback"));
        assert!(loopback("10.0.0.5:9092").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
