//! The serving certificate, swappable at runtime: every new TLS handshake gets the current
//! one, so a rotation (cert-manager renewing a mounted Secret, or our own renewal) takes
//! effect without a restart and without dropping open connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;

use crate::metrics::Metrics;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the certificate PEM holds no usable certificate: {0}")]
    Certificate(String),
    #[error("the private key PEM holds no usable key: {0}")]
    Key(String),
    #[error("rustls refused the configuration")]
    Rustls(#[from] rustls::Error),
}

/// Hands the current certificate to each handshake.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertResolver {
    pub fn set(&self, key: CertifiedKey) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Some(Arc::new(key));
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or_default()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

/// A certificate chain and its key, from PEM.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    // A renewal written file by file is briefly a new key with the old certificate: serving
    // that would fail every handshake, so refuse it (the caller keeps the previous pair).
    certified
        .keys_match()
        .map_err(|e| TlsError::Key(format!("it does not match the certificate: {e}")))?;
    Ok(certified)
}

/// TLS 1.2+ with aws-lc-rs, HTTP/1.1 (what the apiserver speaks to webhooks either way).
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Certificate and key files (a mounted Secret: cert-manager's `tls.crt` / `tls.key`).
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Loads the files once; fails if they are unusable (the webhook must not start without
    /// a certificate).
    pub fn load(&self, resolver: &CertResolver, metrics: &Metrics) -> Result<(), TlsError> {
        let (cert, key) = self.read()?;
        resolver.set(certified_key(&cert, &key)?);
        metrics.tls_reloads.inc();
        Ok(())
    }

    /// Re-reads the files every `interval` and swaps the certificate when they changed. A
    /// half-written or broken pair is logged and skipped: the old certificate stays in use.
    pub async fn watch(self, resolver: Arc<CertResolver>, metrics: Metrics, interval: Duration) {
        let mut last = self.read().ok();
        loop {
            tokio::time::sleep(interval).await;
            let current = match self.read() {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the serving certificate; keeping the current one");
                    continue;
                }
            };
            if last.as_ref() == Some(&current) {
                continue;
            }
            match certified_key(&current.0, &current.1) {
                Ok(key) => {
                    resolver.set(key);
                    metrics.tls_reloads.inc();
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    last = Some(current);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the new serving certificate is unusable; keeping the current one")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::certs::issue;

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let names = ["127.0.0.1".to_owned()];
        let a = issue(&names, Duration::from_secs(3600), None, 1_700_000_000).unwrap();
        let b = issue(&names, Duration::from_secs(3600), None, 1_700_000_000).unwrap();
        assert!(certified_key(a.cert.as_bytes(), a.key.as_bytes()).is_ok());
        let err = certified_key(a.cert.as_bytes(), b.key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(matches!(
            certified_key(b"junk", a.key.as_bytes()),
            Err(TlsError::Certificate(_))
        ));
        assert!(matches!(
            certified_key(a.cert.as_bytes(), b"junk"),
            Err(TlsError::Key(_))
        ));
    }
}
