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
