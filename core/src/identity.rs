//! Where a KeyProvider gets a Kubernetes service-account token (a JWT) to prove who it is:
//! Vault's Kubernetes auth and AWS web identity. Asked again at every login, because tokens
//! expire: a projected token file the kubelet rotates (workloads), or the operator's
//! TokenRequest for a ServiceAccount of a tenant's namespace.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use zeroize::Zeroizing;

use crate::provider::ProviderError;

/// A future of a token.
pub type JwtFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Zeroizing<String>, ProviderError>> + Send + 'a>>;

/// A source of service-account tokens.
pub trait JwtSource: Send + Sync {
    /// A current token. Errors are `Misconfigured` (it cannot be had here) or
    /// `AccessDenied` (it was refused).
    fn jwt(&self) -> JwtFuture<'_>;
    /// What it is, for logs and errors (never the token).
    fn describe(&self) -> String;
}

/// A token file, read again at every use (the kubelet rotates projected tokens).
#[derive(Debug, Clone)]
pub struct JwtFile(pub PathBuf);

impl JwtSource for JwtFile {
    fn jwt(&self) -> JwtFuture<'_> {
        Box::pin(async move {
            std::fs::read_to_string(&self.0)
                .map(|t| Zeroizing::new(t.trim().to_owned()))
                .map_err(|e| ProviderError::Misconfigured {
                    backend: "service-account token",
                    reason: format!("cannot read {}: {e}", self.0.display()),
                })
        })
    }

    fn describe(&self) -> String {
        format!("token file {}", self.0.display())
    }
}
