//! Command-line flags (each also an environment variable where a chart sets it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser};

use crate::review::ProblemMode;

/// kafka-e2ee's admission webhook: injects KeyProvider configuration into pods that opt in
/// (/mutate) and validates EncryptedTopics and KMS connections (/validate). See
/// docs/webhook.md.
#[derive(Debug, Parser)]
#[command(name = "kafka-e2ee-webhook", version)]
#[command(group(ArgGroup::new("tls").required(true).args(["tls_cert_file", "self_managed_tls"])))]
pub struct Args {
    /// HTTPS address of /mutate and /validate.
    #[arg(long, env = "KAFKA_E2EE_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub listen_addr: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, env = "KAFKA_E2EE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// The webhook's own namespace: never injected into; holds the self-managed TLS Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kafka-e2ee")]
    pub namespace: String,
    /// More namespaces never injected into (kube-system and --namespace always are).
    #[arg(
        long = "exclude-namespace",
        env = "KAFKA_E2EE_EXCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub excluded_namespaces: Vec<String>,
    /// What to do with a pod that asks for injection it cannot get (unknown topic,
    /// conflicting settings, no access): deny it, or admit it uninjected with a warning.
    #[arg(
        long,
        env = "KAFKA_E2EE_WEBHOOK_ON_PROBLEM",
        value_enum,
        default_value = "deny"
    )]
    pub on_problem: ProblemMode,
    /// Serving certificate chain (PEM), e.g. a cert-manager Secret's tls.crt mounted as a
    /// file; re-read every --tls-reload-interval.
    #[arg(long, env = "KAFKA_E2EE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving private key (PEM), e.g. the Secret's tls.key.
    #[arg(long, env = "KAFKA_E2EE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for a new pair.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Manage TLS itself: a CA and serving certificate in --tls-secret-name, renewed before
    /// expiry, the CA written into the named webhook configurations' caBundle.
    #[arg(
        long,
        env = "KAFKA_E2EE_SELF_MANAGED_TLS",
        conflicts_with = "tls_cert_file"
    )]
    pub self_managed_tls: bool,
    #[arg(
        long,
        env = "KAFKA_E2EE_TLS_SECRET",
        default_value = "kafka-e2ee-webhook-tls"
    )]
    pub tls_secret_name: String,
    /// The webhook's Service: the certificate is for `SERVICE.NAMESPACE.svc` and its
    /// shorter and longer forms.
    #[arg(
        long,
        env = "KAFKA_E2EE_WEBHOOK_SERVICE",
        default_value = "kafka-e2ee-webhook"
    )]
    pub service_name: String,
    /// More names (DNS or IP) for the self-managed certificate; repeatable.
    #[arg(long = "tls-name", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Lifetime of a self-managed serving certificate; renewed after two thirds of it.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    pub cert_validity: Duration,
    /// How often the self-managed certificate and caBundles are checked.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub cert_check_interval: Duration,
    /// MutatingWebhookConfiguration(s) whose caBundle the self-managed CA goes into.
    #[arg(
        long = "mutating-webhook-configuration",
        env = "KAFKA_E2EE_MUTATING_CONFIGURATION",
        value_delimiter = ','
    )]
    pub mutating_configurations: Vec<String>,
    /// ValidatingWebhookConfiguration(s) whose caBundle the self-managed CA goes into.
    #[arg(
        long = "validating-webhook-configuration",
        env = "KAFKA_E2EE_VALIDATING_CONFIGURATION",
        value_delimiter = ','
    )]
    pub validating_configurations: Vec<String>,
    /// A TLS handshake not finished within this is dropped (half-open connections from any
    /// pod must not pile up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// Request headers not complete within this (also between requests on a kept-alive
    /// connection) close the connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// A kept-alive connection is closed (after its current request) at this age.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_connection_age: Duration,
    /// The encrypting proxy's image, injected beside pods annotated
    /// `kafka-e2ee.io/mode: proxy` (docs/proxy.md). Unset: such pods are refused
    /// (ProxyUnavailable).
    #[arg(long, env = "KAFKA_E2EE_PROXY_IMAGE")]
    pub proxy_image: Option<String>,
    /// Inject the proxy as a native sidecar (an init container with restartPolicy Always):
    /// `auto` does where the apiserver is 1.29 or later.
    #[arg(
        long,
        env = "KAFKA_E2EE_NATIVE_SIDECARS",
        value_enum,
        default_value = "auto"
    )]
    pub native_sidecars: NativeSidecars,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeSidecars {
    Auto,
    Always,
    Never,
}

impl NativeSidecars {
    /// Whether to inject native sidecars, given the apiserver's `major.minor`.
    pub fn resolve(self, server: Option<(u32, u32)>) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => server.is_some_and(|v| v >= (1, 29)),
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    kafka_e2ee_crds::duration::parse_duration(s).map_err(|e| e.to_string())
}

impl Args {
    /// What one client may hold of the HTTPS server.
    pub fn connection_limits(&self) -> crate::server::ConnectionLimits {
        crate::server::ConnectionLimits {
            handshake_timeout: self.tls_handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            max_connection_age: self.max_connection_age,
        }
    }

    /// The names the self-managed certificate is issued for.
    pub fn certificate_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service_name, &self.namespace);
        let mut names = vec![
            format!("{svc}.{ns}.svc"),
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        for name in &self.tls_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn args_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn exactly_one_tls_source_is_required() {
        let base = ["kafka-e2ee-webhook"];
        let err = Args::try_parse_from(base).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let both = Args::try_parse_from([
            "kafka-e2ee-webhook",
            "--self-managed-tls",
            "--tls-cert-file=c",
            "--tls-key-file=k",
        ]);
        assert!(both.is_err());
        let args = Args::try_parse_from([
            "kafka-e2ee-webhook",
            "--self-managed-tls",
            "--namespace=sys",
            "--tls-name=127.0.0.1,localhost",
        ])
        .unwrap();
        assert_eq!(
            args.certificate_names(),
            [
                "kafka-e2ee-webhook.sys.svc",
                "kafka-e2ee-webhook",
                "kafka-e2ee-webhook.sys",
                "kafka-e2ee-webhook.sys.svc.cluster.local",
                "127.0.0.1",
                "localhost"
            ]
        );
        assert_eq!(args.on_problem, ProblemMode::Deny);
    }
}
