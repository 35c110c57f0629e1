//! Client configuration: the file the webhook injects (or one built in code), parsed and
//! checked. `kafka_e2ee_core::config::EncryptionClient` wires it into producers and consumers.
//!
//! A workload gets its configuration one of two ways, never both (KIP-317): injected by the
//! admission webhook (a file whose path is in `KAFKA_E2EE_CONFIG`), or built locally by the
//! application. If both are present the client refuses to start: silently preferring one
//! would let a pod run with keys or a KMS nobody intended.
//!
//! The file is YAML (JSON is YAML too). It holds references and addresses only; secrets are
//! files the provider reads (a keystore mounted from a Secret, a service-account token).
//! Relative file paths are relative to the configuration file's folder (as in kubeconfig).
//!
//! ```yaml
//! format: 1
//! bootstrapServers: kafka.example:9092
//! properties: { security.protocol: SSL }   # librdkafka settings, verbatim
//! keyTopic: __encryption_keys              # the default
//! provider: { kind: keystore, path: /var/run/kafka-e2ee/keystore/keystore.json }
//! trustedKeys: [ "ed25519:..." ]           # the operator's public signing keys (required)
//! allowPlaintext: [ legacy-orders ]        # topics whose plaintext may pass (default none)
//! keyWaitMs: 10000                         # bounded wait for the key topic; the default
//! dekCache: { capacity: 4096, ttlSeconds: 3600 }
//! ```
//!
//! `trustedKeys` and `allowPlaintext` are the trust the key topic cannot give: nothing read
//! from Kafka is believed unless one of these keys signed it, and plaintext passes only for
//! topics listed here whose verified policy also says `Allow`. An injected file is re-read
//! every [`TRUST_RELOAD`] so that a signing-key rotation reaches running pods (the kubelet
//! updates mounted ConfigMaps in place).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::connection::KafkaConnection;
use crate::dek_cache::DekCacheConfig;
use crate::engine::CryptoLibrary;
use crate::signing::{PublicKey, TrustedKeys};
use crate::trust::Trust;

/// How long producers and consumers wait for the key topic by default: its first read, or an
/// EDEK a record names that has not arrived yet.
pub const DEFAULT_KEY_WAIT: Duration = Duration::from_secs(10);

/// How often an injected configuration file is read again for its trust settings.
pub const TRUST_RELOAD: Duration = Duration::from_secs(30);

/// The environment variable holding the injected configuration file's path.
pub const CONFIG_ENV: &str = "KAFKA_E2EE_CONFIG";
/// The only configuration format this version reads.
pub const CONFIG_FORMAT: u32 = 1;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "both an injected configuration ({CONFIG_ENV}={path}) and a locally built one are present; \
         remove one (KIP-317: a client takes its key configuration from exactly one place)"
    )]
    Conflict { path: PathBuf },
    #[error(
        "no client configuration: set {CONFIG_ENV} to a configuration file or build one in code"
    )]
    Missing,
    #[error("cannot read the client configuration {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the client configuration {origin} is invalid: {reason}")]
    Invalid { origin: String, reason: String },
    /// The mounted Kafka credentials ([`KAFKA_CREDENTIALS_ENV`]) are unreadable, incomplete,
    /// or do not fit the configuration's `security.protocol`.
    #[error("the Kafka credentials in {dir}: {reason}")]
    Credentials { dir: PathBuf, reason: String },
}

/// The environment variable naming a directory of Kafka credentials (a Secret the webhook
/// mounted for the pod annotation `kafka-e2ee.io/kafka-secret`): `username` and `password`
/// (SASL), `ca.crt` (the brokers' CA), `user.crt` and `user.key` (a client certificate).
pub const KAFKA_CREDENTIALS_ENV: &str = "KAFKA_E2EE_KAFKA_CREDENTIALS";

/// Which KeyProvider the client unwraps DEKs with, and where it is (docs/kms.md). Secrets are
/// files (mounted Secrets, projected tokens), never values in this configuration. Every kind
/// parses in every build; a build without the backend's cargo feature refuses it at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum ProviderConfig {
    /// A keystore file (docs/keystore.md), typically mounted from a Secret.
    Keystore { path: PathBuf },
    /// Vault / OpenBao transit: token auth from a file, or Kubernetes auth. Exactly one.
    #[serde(rename_all = "camelCase")]
    Vault {
        address: String,
        #[serde(default = "default_transit_mount")]
        mount: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kubernetes_auth: Option<VaultKubernetesAuth>,
        /// A PEM file of the CA(s) that signed Vault's certificate (instead of the system's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
    },
    /// AWS KMS; credentials from the SDK's default chain (web identity / IRSA included).
    #[serde(rename_all = "camelCase")]
    AwsKms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// Hadoop KMS, simple auth; for https, a CA file and optionally a client certificate.
    #[serde(rename_all = "camelCase")]
    HadoopKms {
        url: String,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_cert_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_key_file: Option<PathBuf>,
    },
}

impl ProviderConfig {
    /// Makes relative file paths relative to `dir` (the configuration file's folder), as
    /// kubeconfig does: the injected configuration names its neighbours in the same volume.
    fn resolve_relative_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        match self {
            Self::Keystore { path } => fix(path),
            Self::Vault {
                token_file,
                kubernetes_auth,
                ca_file,
                ..
            } => {
                token_file.iter_mut().for_each(fix);
                ca_file.iter_mut().for_each(fix);
                if let Some(auth) = kubernetes_auth {
                    fix(&mut auth.token_file);
                }
            }
            Self::AwsKms { .. } => {}
            Self::HadoopKms {
                ca_file,
                client_cert_file,
                client_key_file,
                ..
            } => {
                for file in [ca_file, client_cert_file, client_key_file] {
                    file.iter_mut().for_each(fix);
                }
            }
        }
    }
}

/// Vault's Kubernetes auth method, logged in with the pod's service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultKubernetesAuth {
    pub role: String,
    #[serde(default = "default_kubernetes_mount")]
    pub mount: String,
    /// A projected service-account token with Vault's audience (the webhook mounts one).
    pub token_file: PathBuf,
}

fn default_kubernetes_mount() -> String {
    "kubernetes".to_owned()
}

fn default_transit_mount() -> String {
    "transit".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DekCacheSettings {
    pub capacity: usize,
    pub ttl_seconds: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    pub format: u32,
    pub bootstrap_servers: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka settings for producers only, over `properties` (e.g. `linger.ms`, `acks`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producer_properties: BTreeMap<String, String>,
    /// librdkafka settings for consumers only, over `properties` (e.g. `auto.offset.reset`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer_properties: BTreeMap<String, String>,
    #[serde(default = "default_key_topic")]
    pub key_topic: String,
    pub provider: ProviderConfig,
    /// The operator's public signing keys: key records are believed only if one of these
    /// signed them.
    pub trusted_keys: Vec<PublicKey>,
    /// Topics whose plaintext records may pass (migration), if their verified policy also
    /// says `Allow`. Every other topic rejects plaintext.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub allow_plaintext: BTreeSet<String>,
    /// The topics whose key records this client reads (the injected configuration names
    /// those of its profile); the rest of the key topic is skipped unread. Empty: all.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub topics: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dek_cache: Option<DekCacheSettings>,
    /// Which library implements AES-256-GCM (`awsLc`, the default, or `ring`): the same
    /// record format either way, so producers and consumers may differ.
    #[serde(default, skip_serializing_if = "is_default_library")]
    pub crypto_library: CryptoLibrary,
}

fn is_default_library(library: &CryptoLibrary) -> bool {
    *library == CryptoLibrary::default()
}

/// Secret properties (a SASL password from mounted credentials) are not printed.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("format", &self.format)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &crate::connection::redacted(&self.properties))
            .field(
                "producer_properties",
                &crate::connection::redacted(&self.producer_properties),
            )
            .field(
                "consumer_properties",
                &crate::connection::redacted(&self.consumer_properties),
            )
            .field("key_topic", &self.key_topic)
            .field("provider", &self.provider)
            .field("trusted_keys", &self.trusted_keys)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("topics", &self.topics)
            .field("key_wait_ms", &self.key_wait_ms)
            .field("dek_cache", &self.dek_cache)
            .field("crypto_library", &self.crypto_library)
            .finish()
    }
}

fn default_key_topic() -> String {
    crate::DEFAULT_KEY_TOPIC.to_owned()
}

/// Where the configuration in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Injected(PathBuf),
    Local,
}

impl ClientConfig {
    /// A locally built configuration with defaults for everything optional. `trusted_keys`
    /// are the operator's public signing keys (`kubectl get configmap kafka-e2ee-trusted-keys
    /// -n <operator namespace>`).
    pub fn new(
        bootstrap_servers: impl Into<String>,
        provider: ProviderConfig,
        trusted_keys: Vec<PublicKey>,
    ) -> Self {
        Self {
            format: CONFIG_FORMAT,
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            key_topic: default_key_topic(),
            provider,
            trusted_keys,
            allow_plaintext: BTreeSet::new(),
            topics: BTreeSet::new(),
            key_wait_ms: None,
            dek_cache: None,
            crypto_library: CryptoLibrary::default(),
        }
    }

    /// What this configuration lets the client believe.
    pub fn trust(&self) -> Trust {
        Trust {
            keys: TrustedKeys::new(self.trusted_keys.iter().cloned()),
            allow_plaintext: self.allow_plaintext.clone(),
            retired: BTreeSet::new(),
            topics: (!self.topics.is_empty()).then(|| self.topics.clone()),
        }
    }

    /// Parses and validates a configuration file's contents; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            reason,
        };
        let config: Self = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            config.provider.resolve_relative_paths(dir);
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != CONFIG_FORMAT {
            return Err(format!(
                "format {} is not supported (this client reads {CONFIG_FORMAT})",
                self.format
            ));
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err("bootstrapServers is empty".into());
        }
        if self.key_topic.is_empty() {
            return Err("keyTopic is empty".into());
        }
        if self.trusted_keys.is_empty() {
            return Err(
                "trustedKeys is empty: the client would believe nothing from the key \
                        topic; list the operator's public signing keys (kubectl get configmap \
                        kafka-e2ee-trusted-keys in the operator's namespace)"
                    .into(),
            );
        }
        if self.key_wait_ms == Some(0) {
            return Err("keyWaitMs must be positive".into());
        }
        if let ProviderConfig::Vault {
            token_file,
            kubernetes_auth,
            ..
        } = &self.provider
            && token_file.is_some() == kubernetes_auth.is_some()
        {
            return Err("provider vault needs exactly one of tokenFile and kubernetesAuth".into());
        }
        if let Some(cache) = &self.dek_cache
            && (cache.capacity == 0 || cache.ttl_seconds == 0)
        {
            return Err("dekCache capacity and ttlSeconds must be positive".into());
        }
        Ok(())
    }

    pub fn key_wait(&self) -> Duration {
        self.key_wait_ms
            .map_or(DEFAULT_KEY_WAIT, Duration::from_millis)
    }

    /// How every client of this configuration reaches Kafka (the key directory's reader too).
    pub fn connection(&self) -> KafkaConnection {
        KafkaConnection {
            bootstrap_servers: self.bootstrap_servers.clone(),
            properties: self.properties.clone(),
        }
    }

    /// [`Self::connection`] with `producerProperties` over `properties`.
    pub fn producer_connection(&self) -> KafkaConnection {
        self.connection_with(&self.producer_properties)
    }

    /// [`Self::connection`] with `consumerProperties` over `properties`.
    pub fn consumer_connection(&self) -> KafkaConnection {
        self.connection_with(&self.consumer_properties)
    }

    fn connection_with(&self, specific: &BTreeMap<String, String>) -> KafkaConnection {
        let mut connection = self.connection();
        connection
            .properties
            .extend(specific.iter().map(|(k, v)| (k.clone(), v.clone())));
        connection
    }

    pub fn dek_cache_config(&self) -> DekCacheConfig {
        self.dek_cache
            .as_ref()
            .map_or_else(DekCacheConfig::default, |c| DekCacheConfig {
                capacity: c.capacity,
                ttl: Duration::from_secs(c.ttl_seconds),
                ..DekCacheConfig::default()
            })
    }
}

/// The configuration to use: the injected one (`KAFKA_E2EE_CONFIG`, with the Kafka
/// credentials of `KAFKA_E2EE_KAFKA_CREDENTIALS` if set) or `local`, refusing both.
pub fn resolve(local: Option<ClientConfig>) -> Result<(ClientConfig, ConfigSource), ConfigError> {
    resolve_with(
        std::env::var_os(CONFIG_ENV),
        std::env::var_os(KAFKA_CREDENTIALS_ENV),
        local,
    )
}

/// [`resolve`] with the environment variables' values passed in: `credentials` applies to an
/// injected configuration only (a locally built one names its own properties).
pub fn resolve_with(
    injected: Option<OsString>,
    credentials: Option<OsString>,
    local: Option<ClientConfig>,
) -> Result<(ClientConfig, ConfigSource), ConfigError> {
    let (config, source) = resolve_from(injected, local)?;
    match (&source, credentials) {
        (ConfigSource::Injected(_), Some(dir)) if !dir.is_empty() => {
            Ok((config.with_kafka_credentials(Path::new(&dir))?, source))
        }
        _ => Ok((config, source)),
    }
}

impl ClientConfig {
    /// The configuration with the Kafka credentials of `dir` (a mounted Secret) added as
    /// librdkafka properties: `ssl.ca.location`, `ssl.certificate.location` and
    /// `ssl.key.location` name the files (librdkafka reads them; nothing is copied), and
    /// `sasl.username`/`sasl.password` take the contents of `username` and `password`.
    /// Properties the configuration already sets win. The protocol and SASL mechanism are the
    /// configuration's (`security.protocol`, `sasl.mechanisms`): credentials that cannot be
    /// used with it are an error, not something silently unused.
    pub fn with_kafka_credentials(mut self, dir: &Path) -> Result<Self, ConfigError> {
        let fail = |reason: String| ConfigError::Credentials {
            dir: dir.to_owned(),
            reason,
        };
        let present = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map(|v| v.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| fail(format!("reading {name}: {e}")))
        };
        let protocol = self
            .properties
            .get("security.protocol")
            .map_or_else(|| "plaintext".to_owned(), |p| p.to_ascii_lowercase());
        let (tls, sasl) = (
            matches!(protocol.as_str(), "ssl" | "sasl_ssl"),
            protocol.starts_with("sasl_"),
        );
        let (ca, cert, key) = (present("ca.crt"), present("user.crt"), present("user.key"));
        let (user, password) = (present("username"), present("password"));
        if [&ca, &cert, &key, &user, &password]
            .iter()
            .all(|f| f.is_none())
        {
            return Err(fail(
                "it holds none of username and password (SASL), ca.crt, user.crt and user.key (TLS)"
                    .into(),
            ));
        }
        if cert.is_some() != key.is_some() {
            return Err(fail(
                "a client certificate needs both user.crt and user.key".into(),
            ));
        }
        if user.is_some() != password.is_some() {
            return Err(fail("SASL needs both username and password".into()));
        }
        if (ca.is_some() || cert.is_some()) && !tls {
            return Err(fail(format!(
                "it holds TLS files, but security.protocol is {protocol}: set ssl or sasl_ssl in the namespace's client properties"
            )));
        }
        if user.is_some() && !sasl {
            return Err(fail(format!(
                "it holds SASL credentials, but security.protocol is {protocol}: set sasl_plaintext or sasl_ssl (and sasl.mechanisms) in the namespace's client properties"
            )));
        }
        let mechanism = ["sasl.mechanisms", "sasl.mechanism"]
            .iter()
            .find_map(|k| self.properties.get(*k));
        if user.is_some() && mechanism.is_none_or(|m| m.eq_ignore_ascii_case("GSSAPI")) {
            return Err(fail(
                "it holds a username and password, but no sasl.mechanisms names PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (librdkafka's default is GSSAPI)"
                    .into(),
            ));
        }
        let mut set = |key: &str, value: String| {
            self.properties.entry(key.to_owned()).or_insert(value);
        };
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        if let Some(ca) = ca {
            set("ssl.ca.location", path(ca));
        }
        if let (Some(cert), Some(key)) = (cert, key) {
            set("ssl.certificate.location", path(cert));
            set("ssl.key.location", path(key));
        }
        if user.is_some() {
            set("sasl.username", read("username")?);
            set("sasl.password", read("password")?);
        }
        Ok(self)
    }
}

/// [`resolve`] with the environment variable's value passed in.
pub fn resolve_from(
    injected: Option<OsString>,
    local: Option<ClientConfig>,
) -> Result<(ClientConfig, ConfigSource), ConfigError> {
    let injected = injected.filter(|v| !v.is_empty()).map(PathBuf::from);
    match (injected, local) {
        (Some(path), Some(_)) => Err(ConfigError::Conflict { path }),
        (Some(path), None) => Ok((
            ClientConfig::from_file(&path)?,
            ConfigSource::Injected(path),
        )),
        (None, Some(local)) => {
            local.validate().map_err(|reason| ConfigError::Invalid {
                origin: "built locally".into(),
                reason,
            })?;
            Ok((local, ConfigSource::Local))
        }
        (None, None) => Err(ConfigError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032's first Ed25519 test public key, as configuration writes it.
    const TRUSTED: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    fn local() -> ClientConfig {
        ClientConfig::new(
            "127.0.0.1:9092",
            ProviderConfig::Keystore {
                path: "/keys/keystore.json".into(),
            },
            vec![TRUSTED.parse().unwrap()],
        )
    }

    #[test]
    fn injected_and_local_together_are_refused() {
        let err = resolve_from(Some("/etc/kafka-e2ee/client.yaml".into()), Some(local()));
        assert!(
            matches!(err, Err(ConfigError::Conflict { path }) if path == Path::new("/etc/kafka-e2ee/client.yaml"))
        );
    }

    #[test]
    fn neither_is_missing_and_local_alone_is_used() {
        assert!(matches!(
            resolve_from(None, None),
            Err(ConfigError::Missing)
        ));
        assert!(matches!(
            resolve_from(Some("".into()), None),
            Err(ConfigError::Missing)
        ));
        let (config, source) = resolve_from(None, Some(local())).unwrap();
        assert_eq!((config, source), (local(), ConfigSource::Local));
    }

    #[test]
    fn an_injected_file_is_parsed_with_defaults() {
        let dir = std::env::temp_dir().join(format!("ke-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client.yaml");
        std::fs::write(
            &path,
            format!("format: 1\nbootstrapServers: kafka:9092\nprovider: {{kind: keystore, path: /keys/ks.json}}\ntrustedKeys: ['{TRUSTED}']\n"),
        )
        .unwrap();
        let (config, source) = resolve_from(Some(path.clone().into()), None).unwrap();
        assert_eq!(source, ConfigSource::Injected(path));
        assert_eq!(config.key_topic, "__encryption_keys");
        assert_eq!(config.key_wait(), Duration::from_secs(10));
        let trust = config.trust();
        assert_eq!(
            trust
                .keys
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [TRUSTED]
        );
        assert!(
            trust.allow_plaintext.is_empty(),
            "no topic passes plaintext by default"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn relative_paths_in_a_file_are_relative_to_its_folder() {
        let dir = std::env::temp_dir().join(format!("ke-config-rel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client.yaml");
        let write_and_load = |provider: &str| {
            std::fs::write(
                &path,
                format!("format: 1\nbootstrapServers: kafka:9092\nprovider: {provider}\ntrustedKeys: ['{TRUSTED}']\n"),
            )
            .unwrap();
            ClientConfig::from_file(&path).unwrap().provider
        };
        assert_eq!(
            write_and_load("{kind: keystore, path: keystore.json}"),
            ProviderConfig::Keystore {
                path: dir.join("keystore.json")
            }
        );
        let vault = write_and_load(
            "{kind: vault, address: 'http://v:8200', kubernetesAuth: {role: r, tokenFile: vault-token}}",
        );
        let ProviderConfig::Vault {
            kubernetes_auth: Some(auth),
            ..
        } = vault
        else {
            panic!("{vault:?}")
        };
        assert_eq!(auth.token_file, dir.join("vault-token"));
        let hadoop = write_and_load(
            "{kind: hadoopKms, url: 'https://h', user: u, caFile: ca.crt, clientCertFile: /abs/tls.crt}",
        );
        let ProviderConfig::HadoopKms {
            ca_file,
            client_cert_file,
            ..
        } = hadoop
        else {
            panic!("{hadoop:?}")
        };
        assert_eq!(ca_file, Some(dir.join("ca.crt")));
        assert_eq!(client_cert_file, Some(PathBuf::from("/abs/tls.crt")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_are_typed_errors_naming_the_problem() {
        let trusted = format!("trustedKeys: ['{TRUSTED}']\n");
        let cases = [
            (
                format!("format: 2\nbootstrapServers: k:1\nprovider: {{kind: keystore, path: /k}}\n{trusted}"),
                "format 2",
            ),
            (
                format!("format: 1\nbootstrapServers: ''\nprovider: {{kind: keystore, path: /k}}\n{trusted}"),
                "bootstrapServers",
            ),
            (
                format!("format: 1\nbootstrapServers: k:1\nprovider: {{kind: vaultish}}\n{trusted}"),
                "vaultish",
            ),
            (
                format!("format: 1\nbootstrapServers: k:1\nprovider: {{kind: keystore, path: /k}}\nkeyWaitMs: 0\n{trusted}"),
                "keyWaitMs",
            ),
            (
                format!("format: 1\nbootstrapServers: k:1\nprovider: {{kind: keystore, path: /k}}\nextra: 1\n{trusted}"),
                "extra",
            ),
            (
                "format: 1\nbootstrapServers: k:1\nprovider: {kind: keystore, path: /k}\n".to_owned(),
                "trustedKeys",
            ),
            (
                "format: 1\nbootstrapServers: k:1\nprovider: {kind: keystore, path: /k}\ntrustedKeys: []\n".to_owned(),
                "trustedKeys is empty",
            ),
            (
                "format: 1\nbootstrapServers: k:1\nprovider: {kind: keystore, path: /k}\ntrustedKeys: ['ed25519:AAAA']\n".to_owned(),
                "ed25519:AAAA",
            ),
        ];
        for (text, needle) in cases {
            let text = text.as_str();
            match ClientConfig::parse(text, "test.yaml") {
                Err(ConfigError::Invalid { origin, reason }) => {
                    assert_eq!(origin, "test.yaml");
                    assert!(
                        reason.contains(needle),
                        "{reason:?} should mention {needle}"
                    );
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            resolve_from(Some("/nonexistent/kafka-e2ee.yaml".into()), None),
            Err(ConfigError::Read { .. })
        ));
    }

    /// A mounted credentials directory with `files`, fresh per test.
    fn credentials(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ke-creds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, contents) in files {
            std::fs::write(dir.join(file), contents).unwrap();
        }
        dir
    }

    fn with_properties(props: &[(&str, &str)]) -> ClientConfig {
        let mut c = local();
        for (k, v) in props {
            c.properties.insert((*k).into(), (*v).into());
        }
        c
    }

    #[test]
    fn mounted_credentials_become_librdkafka_properties_and_are_never_printed() {
        let dir = credentials(
            "sasl",
            &[
                ("username", "orders-app\n"),
                ("password", "s3cret\n"),
                ("ca.crt", "PEM"),
            ],
        );
        let config = with_properties(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
        ])
        .with_kafka_credentials(&dir)
        .unwrap();
        let p = &config.properties;
        assert_eq!(p["sasl.username"], "orders-app");
        assert_eq!(p["sasl.password"], "s3cret");
        assert_eq!(p["ssl.ca.location"], dir.join("ca.crt").to_str().unwrap());
        assert!(!p.contains_key("ssl.certificate.location"));
        assert!(!format!("{config:?}").contains("s3cret"));

        let dir = credentials(
            "mtls",
            &[("user.crt", "C"), ("user.key", "K"), ("ca.crt", "A")],
        );
        let config = with_properties(&[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/etc/own-ca.pem"),
        ])
        .with_kafka_credentials(&dir)
        .unwrap();
        assert_eq!(
            config.properties["ssl.certificate.location"],
            dir.join("user.crt").to_str().unwrap()
        );
        assert_eq!(
            config.properties["ssl.key.location"],
            dir.join("user.key").to_str().unwrap()
        );
        // What the configuration itself names wins.
        assert_eq!(config.properties["ssl.ca.location"], "/etc/own-ca.pem");
    }

    #[test]
    fn credentials_that_cannot_be_used_are_refused_naming_why() {
        /// Files of the Secret, the configuration's properties, what the error says.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 6] = [
            (&[], &[("security.protocol", "ssl")], "holds none"),
            (
                &[("user.crt", "C")],
                &[("security.protocol", "ssl")],
                "both user.crt and user.key",
            ),
            (
                &[("username", "u")],
                &[
                    ("security.protocol", "sasl_ssl"),
                    ("sasl.mechanisms", "PLAIN"),
                ],
                "both username and password",
            ),
            (&[("ca.crt", "A")], &[], "security.protocol is plaintext"),
            (
                &[("username", "u"), ("password", "p")],
                &[("security.protocol", "ssl")],
                "security.protocol is ssl",
            ),
            (
                &[("username", "u"), ("password", "p")],
                &[("security.protocol", "sasl_ssl")],
                "GSSAPI",
            ),
        ];
        for (i, (files, props, needle)) in cases.into_iter().enumerate() {
            let dir = credentials(&format!("bad{i}"), files);
            let err = with_properties(props)
                .with_kafka_credentials(&dir)
                .unwrap_err();
            assert!(
                matches!(&err, ConfigError::Credentials { .. }) && err.to_string().contains(needle),
                "case {i}: {err}"
            );
        }
    }

    #[test]
    fn producer_and_consumer_properties_apply_over_the_shared_ones_to_their_side_only() {
        let mut c = with_properties(&[("security.protocol", "ssl"), ("client.id", "orders")]);
        c.producer_properties.insert("linger.ms".into(), "5".into());
        c.producer_properties
            .insert("client.id".into(), "orders-producer".into());
        c.consumer_properties
            .insert("auto.offset.reset".into(), "earliest".into());
        let (p, k) = (
            c.producer_connection().properties,
            c.consumer_connection().properties,
        );
        assert_eq!(
            (p["client.id"].as_str(), p["linger.ms"].as_str()),
            ("orders-producer", "5")
        );
        assert!(!p.contains_key("auto.offset.reset"));
        assert_eq!(
            (k["client.id"].as_str(), k["auto.offset.reset"].as_str()),
            ("orders", "earliest")
        );
        assert!(!k.contains_key("linger.ms"));
        assert_eq!(c.connection().properties.len(), 2);
        // Parsed from the file's camelCase names.
        let text = format!(
            "format: 1\nbootstrapServers: k:9092\nprovider: {{kind: keystore, path: /k.json}}\ntrustedKeys: ['{TRUSTED}']\nproducerProperties: {{acks: all}}\nconsumerProperties: {{fetch.min.bytes: '1024'}}\n"
        );
        let parsed = ClientConfig::parse(&text, "test").unwrap();
        assert_eq!(parsed.producer_properties["acks"], "all");
        assert_eq!(parsed.consumer_properties["fetch.min.bytes"], "1024");
    }
}
