//! CA bundles that connections name (`vault.ca`, a Hadoop KMS TLS Secret's `ca.crt`): read
//! from a Secret or ConfigMap key and reduced to their certificates. A bundle is also copied
//! into the client ConfigMap of every namespace the connection serves, so a reference that
//! names anything else (a private key, a token) must never be published: only CERTIFICATE
//! blocks pass, and a bundle with anything else is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kafka_e2ee_crds::{CaBundleRef, KmsBackend, SecretKeyRef};
use kube::Api;
use rustls_pki_types::pem::{PemObject, SectionKind};
use thiserror::Error;

/// Why a CA bundle cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaBundleError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} has no key '{key}'")]
    KeyMissing { what: String, key: String },
    #[error("{what}: {problem}")]
    Invalid {
        what: String,
        problem: BundleProblem,
    },
    #[error("reading {what} failed")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("vault.ca names neither a Secret nor a ConfigMap")]
    NoSource,
}

/// What is wrong with a bundle's contents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleProblem {
    #[error("the CA bundle is not valid PEM")]
    NotPem,
    #[error("the CA bundle holds no certificate")]
    Empty,
    #[error(
        "the CA bundle holds a {0} besides certificates; name a key with certificates only (it is published to client pods)"
    )]
    NotOnlyCertificates(&'static str),
}

/// The certificates of a PEM bundle, re-encoded (comments and other text dropped).
pub fn certificates_only(pem: &[u8]) -> Result<String, BundleProblem> {
    let mut out = String::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|_| BundleProblem::NotPem)?;
        if kind != SectionKind::Certificate {
            return Err(BundleProblem::NotOnlyCertificates(describe(kind)));
        }
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = STANDARD.encode(der);
        for line in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    if out.is_empty() {
        // A private key in a label rustls does not know is skipped above; nothing is
        // published from such a bundle either.
        return Err(if looks_like_pem(pem) {
            BundleProblem::NotOnlyCertificates("PEM block of another kind")
        } else {
            BundleProblem::Empty
        });
    }
    Ok(out)
}

fn looks_like_pem(pem: &[u8]) -> bool {
    pem.windows(11).any(|w| w == b"-----BEGIN ")
}

fn describe(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "certificate",
        SectionKind::PublicKey => "public key",
        SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => {
            "private key"
        }
        SectionKind::Crl => "revocation list",
        SectionKind::Csr => "certificate request",
        _ => "PEM block of another kind",
    }
}

/// The CA bundle a connection's backend names, if any: `vault.ca`, or the `ca.crt` of a
/// Hadoop KMS TLS Secret.
pub fn reference(backend: KmsBackend<'_>) -> Option<CaBundleRef> {
    match backend {
        KmsBackend::Vault(v) => v.ca.clone(),
        KmsBackend::HadoopKms(h) => h.tls_secret_ref.as_ref().map(|s| CaBundleRef {
            secret_ref: Some(SecretKeyRef {
                name: s.name.clone(),
                key: "ca.crt".into(),
            }),
            config_map_ref: None,
        }),
        KmsBackend::AwsKms(_) | KmsBackend::Keystore(_) => None,
    }
}

/// Reads the bundle `reference` names, from `namespace`.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    reference: &CaBundleRef,
) -> Result<String, CaBundleError> {
    let (what, key, raw) = match (&reference.secret_ref, &reference.config_map_ref) {
        (Some(s), _) => {
            let what = format!("Secret {namespace}/{}", s.name);
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let found = get(&api, &s.name, &what).await?;
            let raw = found.data.and_then(|mut d| d.remove(&s.key)).map(|v| v.0);
            (what, &s.key, raw)
        }
        (None, Some(c)) => {
            let what = format!("ConfigMap {namespace}/{}", c.name);
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let found = get(&api, &c.name, &what).await?;
            let raw = found
                .data
                .and_then(|mut d| d.remove(&c.key))
                .map(String::into_bytes);
            (what, &c.key, raw)
        }
        (None, None) => return Err(CaBundleError::NoSource),
    };
    let raw = raw.ok_or_else(|| CaBundleError::KeyMissing {
        what: what.clone(),
        key: key.clone(),
    })?;
    certificates_only(&raw).map_err(|problem| CaBundleError::Invalid { what, problem })
}

async fn get<K>(api: &Api<K>, name: &str, what: &str) -> Result<K, CaBundleError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|source| CaBundleError::Kube {
            what: what.to_owned(),
            source,
        })?
        .ok_or_else(|| CaBundleError::NotFound {
            what: what.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";

    #[test]
    fn only_certificates_are_published() {
        let bundle = format!("# Issuer: test CA\n{CERT}\n{CERT}");
        assert_eq!(
            certificates_only(bundle.as_bytes()),
            Ok(format!("{CERT}{CERT}"))
        );
        let with_key =
            format!("{CERT}-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n");
        assert_eq!(
            certificates_only(with_key.as_bytes()),
            Err(BundleProblem::NotOnlyCertificates("private key"))
        );
        let unknown =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nMAMCAQA=\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(matches!(
            certificates_only(unknown.as_bytes()),
            Err(BundleProblem::NotOnlyCertificates(_))
        ));
        assert_eq!(
            certificates_only(b"s.hvs-some-token"),
            Err(BundleProblem::Empty)
        );
        assert_eq!(
            certificates_only(b"-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n"),
            Err(BundleProblem::NotPem)
        );
    }
}
