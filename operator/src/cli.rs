//! Command-line arguments (each run flag also reads an environment variable, for the chart).
//! Flag groups the commands share (Kafka, the operator's home) are flattened into each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use kafka_e2ee_client::kafka::KafkaConnection;

/// Command-line arguments of `kafka-e2ee-operator`.
#[derive(Debug, Parser)]
#[command(
    name = "kafka-e2ee-operator",
    version,
    about = "kafka-e2ee operator: reconciles EncryptedTopics into TEKs, topics and data keys"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds,
    /// Run the controller (uses KUBECONFIG or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Sign the key records a version without signatures wrote, once, when upgrading to this
    /// one: until then its clients refuse them, and data sealed under them cannot be read.
    /// Trust on first use: whatever the key topic holds now is signed, so run it right after
    /// the upgrade (docs/operations.md, "Upgrades"). Records already signed are left alone.
    AdoptKeyRecords(Box<AdoptArgs>),
}

/// How the operator reaches Kafka and its key topic.
#[derive(Debug, ClapArgs)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// How to talk to the brokers.
    #[arg(
        long,
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "plaintext"
    )]
    pub kafka_security_protocol: SecurityProtocol,
    /// CA certificate (PEM) that signed the brokers' certificates.
    #[arg(long, env = "KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "KAFKA_CERT_FILE", requires = "kafka_key_file")]
    pub kafka_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, env = "KAFKA_KEY_FILE", requires = "kafka_cert_file")]
    pub kafka_key_file: Option<PathBuf>,
    /// SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// File holding the SASL password (mounted from a Secret).
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// Any other librdkafka property, `key=value`; repeatable.
    #[arg(long = "kafka-property", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// The key topic.
    #[arg(long, env = "KAFKA_E2EE_KEY_TOPIC", default_value = kafka_e2ee_client::DEFAULT_KEY_TOPIC)]
    pub key_topic: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(Debug, ClapArgs)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub home: HomeArgs,
    /// One key topic per namespace instead of the shared --key-topic: a name with
    /// `{namespace}` in it (e.g. `__encryption_keys.{namespace}`), so that Kafka ACLs can give
    /// each namespace's principals read access to its own key records only (docs/security.md).
    #[arg(long, env = "KAFKA_E2EE_KEY_TOPIC_TEMPLATE", value_parser = parse_key_topic_template)]
    pub key_topic_template: Option<String>,
    /// Replication factor of a key topic when the operator creates it (broker default when
    /// unset).
    #[arg(long, env = "KAFKA_E2EE_KEY_TOPIC_REPLICATION")]
    pub key_topic_replication: Option<i32>,
    /// Elect a leader through a Lease (run 2 replicas safely). Disable only for one replica.
    #[arg(long, env = "KAFKA_E2EE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, default_value = "kafka-e2ee-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "KAFKA_E2EE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// How often each topic's end offsets are checked for rollover by record count (the
    /// offsets of all topics are read together, at most every half interval).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub count_check_interval: Duration,
    /// How often each (Cluster)KmsConnection is checked (KMS reached, credentials accepted)
    /// for its Ready condition; also checked whenever it changes.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub kms_check_interval: Duration,
    /// How long a KMS client built from a connection is kept before its Secrets are re-read.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub provider_cache_ttl: Duration,
    /// KMS calls per second the operator allows itself per KMS connection (DEK generation
    /// dominates provisioning: 3 partitions = 3 calls). Keep it under your KMS quota.
    #[arg(long, env = "KAFKA_E2EE_KMS_RATE_LIMIT", default_value_t = 200.0)]
    pub kms_rate_limit: f64,
    /// KMS calls allowed at once above the rate.
    #[arg(long, default_value_t = 100)]
    pub kms_burst: u32,
    /// The operator's service-account token, for Vault Kubernetes auth.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub service_account_token_file: PathBuf,
    /// Reconcile EncryptedTopics (and keep the status of KmsConnections) of this namespace
    /// only (default: all namespaces, and ClusterKmsConnections).
    #[arg(long, env = "KAFKA_E2EE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Reconcile only EncryptedTopics with these labels (a label selector, e.g.
    /// `team=payments`): for a canary operator beside the main one. The selections of two
    /// operators must not share a namespace (each publishes its namespaces' client
    /// ConfigMaps), nor a Kafka topic or TEK name (each sees only its own objects' claims).
    /// KMS connections carrying these labels are the ones whose status this operator keeps.
    #[arg(long, env = "KAFKA_E2EE_WATCH_SELECTOR")]
    pub watch_selector: Option<String>,
    /// Bootstrap servers written into client pods' configuration (default: --bootstrap-servers;
    /// set it when clients reach Kafka by another address than the operator).
    #[arg(long, env = "KAFKA_E2EE_CLIENT_BOOTSTRAP_SERVERS")]
    pub client_bootstrap_servers: Option<String>,
    /// A non-secret librdkafka property for client pods' configuration, `key=value`;
    /// repeatable (e.g. security.protocol=ssl). Keys that look like credentials (`*password*`,
    /// `*secret*`, `sasl.jaas.config`, `ssl.key.*`) are refused: the ConfigMap is published
    /// in every namespace with EncryptedTopics.
    #[arg(long = "client-property", value_parser = parse_property)]
    pub client_properties: Vec<(String, String)>,
    /// How often every namespace's client ConfigMap is compared with the apiserver (changes
    /// from reconciles are published at once).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub client_config_resync: Duration,
    /// EncryptedTopics reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// How long a signing key signs before a new one replaces it.
    #[arg(long, env = "KAFKA_E2EE_SIGNING_KEY_ROTATION", default_value = "90d", value_parser = parse_duration)]
    pub signing_key_rotation: Duration,
    /// How long a new signing key is published before it signs, and an old one stays
    /// published after: longer than mounted ConfigMaps take to reach pods plus the clients'
    /// 30 s re-read.
    #[arg(long, env = "KAFKA_E2EE_SIGNING_KEY_OVERLAP", default_value = "10m", value_parser = parse_duration)]
    pub signing_key_overlap: Duration,
}

/// Where the operator keeps its own state.
#[derive(Debug, ClapArgs)]
pub struct HomeArgs {
    /// The operator's namespace: its leader Lease, its signing keys, and the Secrets of
    /// ClusterKmsConnections.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kafka-e2ee")]
    pub namespace: String,
    /// The Secret (in --namespace) holding the operator's signing keys; created on first
    /// start. Every key record is signed; clients trust only the public keys the operator
    /// publishes through the Kubernetes API.
    #[arg(
        long,
        env = "KAFKA_E2EE_SIGNING_SECRET",
        default_value = "kafka-e2ee-signing-keys"
    )]
    pub signing_secret: String,
}

#[derive(Debug, ClapArgs)]
pub struct AdoptArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub home: HomeArgs,
    /// List what would be signed; sign nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not key=value"))?;
    if secret_looking(&key) {
        return Err(format!(
            "'{key}' looks like a credential, and client properties are published in every namespace's client ConfigMap; give credentials to workloads through their own Secrets"
        ));
    }
    Ok((key, value))
}

/// librdkafka properties that carry credentials or private keys.
fn secret_looking(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key == "sasl.jaas.config"
        || key.starts_with("ssl.key.")
        || key == "sasl.oauthbearer.config"
}

fn parse_key_topic_template(s: &str) -> Result<String, String> {
    use crate::kafka_ops::NAMESPACE_PLACEHOLDER;
    if s.matches(NAMESPACE_PLACEHOLDER).count() != 1 {
        return Err(format!(
            "'{s}' must contain {NAMESPACE_PLACEHOLDER} exactly once"
        ));
    }
    // The longest namespace name (63 characters) must still give a valid topic name.
    let longest = s.replace(NAMESPACE_PLACEHOLDER, &"n".repeat(63));
    kafka_e2ee_crds::validate_topic_name(&longest)
        .map_err(|e| format!("'{s}' does not make valid topic names: {e}"))?;
    Ok(s.to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    kafka_e2ee_crds::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Why the Kafka settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSettingsError {
    #[error("cannot read the SASL password file {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RunArgs {
    /// What the client ConfigMaps carry besides each KMS connection's provider.
    /// Where key records go: the shared key topic, or one per namespace.
    pub fn key_topic_names(&self) -> crate::kafka_ops::KeyTopicNames {
        match &self.key_topic_template {
            Some(template) => crate::kafka_ops::KeyTopicNames::PerNamespace(template.clone()),
            None => crate::kafka_ops::KeyTopicNames::Shared(self.kafka.key_topic.clone()),
        }
    }

    pub fn client_settings(&self) -> crate::client_config::ClientSettings {
        crate::client_config::ClientSettings {
            bootstrap_servers: self
                .client_bootstrap_servers
                .clone()
                .unwrap_or_else(|| self.kafka.bootstrap_servers.clone()),
            properties: self.client_properties.iter().cloned().collect(),
            key_topics: self.key_topic_names(),
            cluster_namespace: self.home.namespace.clone(),
        }
    }
}

impl KafkaArgs {
    /// The Kafka connection these flags describe, as librdkafka properties.
    pub fn connection(&self) -> Result<KafkaConnection, KafkaSettingsError> {
        let mut props = BTreeMap::new();
        let protocol = match self.kafka_security_protocol {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        };
        props.insert("security.protocol".to_owned(), protocol.to_owned());
        let mut path = |key: &str, p: &Option<PathBuf>| {
            if let Some(p) = p {
                props.insert(key.to_owned(), p.display().to_string());
            }
        };
        path("ssl.ca.location", &self.kafka_ca_file);
        path("ssl.certificate.location", &self.kafka_cert_file);
        path("ssl.key.location", &self.kafka_key_file);
        if let Some(m) = &self.kafka_sasl_mechanism {
            props.insert("sasl.mechanisms".to_owned(), m.clone());
        }
        if let Some(u) = &self.kafka_sasl_username {
            props.insert("sasl.username".to_owned(), u.clone());
        }
        if let Some(file) = &self.kafka_sasl_password_file {
            let password = std::fs::read_to_string(file).map_err(|source| {
                KafkaSettingsError::PasswordFile {
                    path: file.clone(),
                    source,
                }
            })?;
            props.insert("sasl.password".to_owned(), password.trim().to_owned());
        }
        for (k, v) in &self.kafka_properties {
            props.insert(k.clone(), v.clone());
        }
        Ok(KafkaConnection {
            bootstrap_servers: self.bootstrap_servers.clone(),
            properties: props,
        })
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
    fn kafka_flags_become_librdkafka_properties() {
        let args = Args::parse_from([
            "kafka-e2ee-operator",
            "run",
            "--bootstrap-servers",
            "b:9093",
            "--kafka-security-protocol",
            "sasl-ssl",
            "--kafka-ca-file",
            "/etc/kafka/ca.crt",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "operator",
            "--kafka-property",
            "client.id=ke",
        ]);
        let Command::Run(run) = args.command else {
            panic!("run")
        };
        let conn = run.kafka.connection().unwrap();
        assert_eq!(conn.bootstrap_servers, "b:9093");
        let get = |k: &str| conn.properties.get(k).map(String::as_str);
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("ssl.ca.location"), Some("/etc/kafka/ca.crt"));
        assert_eq!(get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username"), Some("operator"));
        assert_eq!(get("client.id"), Some("ke"));
        assert_eq!(run.count_check_interval, Duration::from_secs(60));
        assert!(run.leader_election);
    }

    #[test]
    fn a_missing_password_file_is_a_clear_error() {
        let args = Args::parse_from([
            "kafka-e2ee-operator",
            "run",
            "--bootstrap-servers",
            "b:9093",
            "--kafka-sasl-password-file",
            "/nonexistent/password",
        ]);
        let Command::Run(run) = args.command else {
            panic!("run")
        };
        let err = run.kafka.connection().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/password"), "{err}");
    }

    #[test]
    fn key_topic_templates_name_one_valid_topic_per_namespace() {
        assert!(parse_key_topic_template("__encryption_keys.{namespace}").is_ok());
        assert!(parse_key_topic_template("__encryption_keys").is_err());
        assert!(parse_key_topic_template("{namespace}.{namespace}").is_err());
        assert!(parse_key_topic_template("keys/{namespace}").is_err());
        assert!(parse_key_topic_template(&format!("{}{{namespace}}", "k".repeat(200))).is_err());
    }

    #[test]
    fn client_properties_refuse_credentials() {
        assert_eq!(
            parse_property("security.protocol=ssl"),
            Ok(("security.protocol".into(), "ssl".into()))
        );
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "SASL.Password",
        ] {
            let refused = parse_property(&format!("{key}=x")).unwrap_err();
            assert!(
                refused.contains("looks like a credential"),
                "{key}: {refused}"
            );
        }
    }
}
