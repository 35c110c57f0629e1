//! The test bed's KMSs as a client reaches them: OpenBao over TLS with its own CA, and the
//! Hadoop KMS's mutual-TLS listener with the test bed's CA and client certificate.

use std::path::PathBuf;

use kafka_e2ee_client::vault::{VaultAuth, VaultSettings, VaultTransit};
use zeroize::Zeroizing;

use crate::{Server, env, require};

/// The CA that signed OpenBao's certificate (`VAULT_CACERT`).
pub fn vault_ca_file() -> PathBuf {
    PathBuf::from(env(Server::Vault, "VAULT_CACERT"))
}

#[expect(clippy::panic, reason = "test support: a missing file fails the test")]
pub fn vault_ca_pem() -> String {
    let path = vault_ca_file();
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the test bed's Vault CA {}: {e}",
            path.display()
        )
    })
}

/// Settings for the test bed's OpenBao with `auth`, trusting its CA.
pub fn vault_settings(auth: VaultAuth) -> VaultSettings {
    VaultSettings {
        address: require(Server::Vault),
        namespace: None,
        mount: "transit".into(),
        auth,
        ca_pem: Some(vault_ca_pem().into_bytes()),
    }
}

/// The test bed's root token.
pub fn vault_root_auth() -> VaultAuth {
    VaultAuth::Token(Zeroizing::new(env(Server::Vault, "VAULT_TOKEN")))
}

/// Transit with the root token.
#[expect(clippy::expect_used, reason = "test support")]
pub fn vault_root() -> VaultTransit {
    VaultTransit::new(&vault_settings(vault_root_auth())).expect("the test bed's Vault settings")
}

/// An HTTP client that trusts OpenBao's CA (for the test's own API calls).
#[expect(clippy::expect_used, reason = "test support")]
pub fn vault_http() -> reqwest::Client {
    let cas = reqwest::Certificate::from_pem_bundle(vault_ca_pem().as_bytes())
        .expect("the test bed's Vault CA parses");
    reqwest::Client::builder()
        .tls_certs_only(cas)
        .build()
        .expect("an HTTP client")
}

/// The Hadoop KMS's mutual-TLS URL.
pub fn hadoop_tls_url() -> String {
    require(Server::HadoopKms);
    env(Server::HadoopKms, "KE_HADOOP_KMS_TLS_URL")
}

/// The test bed's Hadoop KMS TLS files: CA, client certificate, client key.
pub struct HadoopTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn hadoop_tls_files() -> HadoopTlsFiles {
    let dir = PathBuf::from(env(Server::HadoopKms, "KE_HADOOP_KMS_TLS_DIR"));
    HadoopTlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("client.crt"),
        key: dir.join("client.key"),
    }
}

/// A token source that hands out one fixed token, or fails (as a TokenRequest the apiserver
/// refused would).
pub struct FixedJwt(pub Result<String, String>);

impl kafka_e2ee_client::identity::JwtSource for FixedJwt {
    fn jwt(&self) -> kafka_e2ee_client::identity::JwtFuture<'_> {
        let result = match &self.0 {
            Ok(token) => Ok(Zeroizing::new(token.clone())),
            Err(reason) => Err(kafka_e2ee_client::provider::ProviderError::Misconfigured {
                backend: "service-account token",
                reason: reason.clone(),
            }),
        };
        Box::pin(async move { result })
    }

    fn describe(&self) -> String {
        "a fixed test token".into()
    }
}

/// The test bed's Kafka behind TLS that requires a client certificate (`kafka-tls`: stunnel in
/// front of a second tansu), as librdkafka's properties name it, trusting the CA file `ca` of
/// the test bed's TLS directory.
pub fn kafka_tls_connection(ca: &str) -> kafka_e2ee_client::kafka::KafkaConnection {
    let dir = kafka_tls_dir();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut connection = kafka_e2ee_client::kafka::KafkaConnection::new(env(
        Server::Kafka,
        "KE_KAFKA_TLS_BOOTSTRAP",
    ));
    connection.properties = [
        ("security.protocol", "ssl".to_owned()),
        ("ssl.ca.location", file(ca)),
        ("ssl.certificate.location", file("client.crt")),
        ("ssl.key.location", file("client.key")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    connection
}

/// Where the test bed keeps `kafka-tls`'s CA (`ca.crt`) and client certificate
/// (`client.crt`, `client.key`).
pub fn kafka_tls_dir() -> PathBuf {
    PathBuf::from(env(Server::Kafka, "KE_KAFKA_TLS_DIR"))
}
