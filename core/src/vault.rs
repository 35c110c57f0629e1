//! The Vault (and OpenBao) transit KeyProvider, behind the `vault` cargo feature.
//!
//! The TEK is a transit key of type `aes256-gcm96`, not exportable, with key derivation
//! (`derived: true`): it never leaves Vault. DEKs come from `datakey/plaintext` (the plaintext
//! DEK and its wrapping in one call), unwrap with `decrypt`, and are re-wrapped by Vault itself
//! (`rewrap`) after a rotation. An EDEK is the transit ciphertext string
//! (`vault:v<N>:<base64>`), whose `N` is the TEK version.
//!
//! Every call passes the DEK's slot (topic, partition, version) as the derivation `context`, so
//! Vault wraps each DEK under a key derived for its slot: an EDEK presented for another slot
//! fails in Vault itself (`message authentication failed`), before the commitment in the EDEK
//! record is even checked. Transit's `associated_data` would bind the slot too, but `datakey`
//! and `rewrap` do not take it (checked on OpenBao 2.7), so derivation is the binding that
//! covers every call. A TEK without derivation (made by hand, or by an earlier version) keeps
//! working: Vault ignores the context for it, and its EDEKs are bound by the operator's
//! signature alone (a warning is logged).
//! Auth: a token, or Kubernetes auth with the pod's projected service-account token (logged in
//! again after two thirds of each lease, re-reading the token file).
//! Keys are never created implicitly: `create_tek` reads first and creates only what is absent,
//! and every other call fails with `NotFound` for a missing key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::{
    CreateKeyRequestBuilder, DataKeyType, DecryptDataRequestBuilder, GenerateDataKeyRequestBuilder,
    RewrapDataRequestBuilder, UpdateKeyConfigurationRequestBuilder,
};
use vaultrs::api::transit::responses::ReadKeyData;

use tokio::sync::{RwLock, RwLockReadGuard};
use tokio::time::Instant;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use vaultrs::transit;
use zeroize::Zeroizing;

pub use crate::identity::{JwtFile, JwtSource};
use crate::provider::{DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager};
use crate::secret::KeyMaterial;

const BACKEND: &str = "vault";

/// How to authenticate to Vault. Its `Debug` never shows the token.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token (read from a file by the client configuration).
    Token(Zeroizing<String>),
    /// Kubernetes auth: log in with a service-account token from `jwt` for `role` at auth
    /// `mount`. The Vault token is renewed by logging in again after two thirds of its lease.
    Kubernetes {
        mount: String,
        role: String,
        jwt: Arc<dyn JwtSource>,
    },
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Kubernetes { mount, role, jwt } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .field("jwt", &jwt.describe())
                .finish(),
        }
    }
}

/// Where transit is and how to authenticate. Nothing is taken from `VAULT_*` environment
/// variables: a process's environment must not redirect or weaken the connection.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub address: String,
    /// Vault Enterprise / OpenBao namespace, if any.
    pub namespace: Option<String>,
    /// The transit mount path, `transit` by default.
    pub mount: String,
    pub auth: VaultAuth,
    /// The PEM CA bundle that signed Vault's certificate, trusted instead of the system's
    /// roots.
    pub ca_pem: Option<Vec<u8>>,
}

pub struct VaultTransit {
    client: RwLock<VaultClient>,
    mount: String,
    auth: VaultAuth,
    /// When the current login should be renewed (Kubernetes auth only).
    renew_at: Mutex<Option<Instant>>,
}

impl VaultTransit {
    pub fn new(settings: &VaultSettings) -> Result<Self, ProviderError> {
        let misconfigured = |reason: String| ProviderError::Misconfigured {
            backend: BACKEND,
            reason,
        };
        if url::Url::parse(&settings.address).is_err() {
            return Err(misconfigured(format!(
                "'{}' is not a URL",
                settings.address
            )));
        }
        let mut builder = VaultClientSettingsBuilder::default();
        // Every setting explicit: vaultrs would otherwise take VAULT_TOKEN, VAULT_CACERT,
        // VAULT_SKIP_VERIFY and client certificates from the environment.
        builder
            .address(&settings.address)
            .token(match &settings.auth {
                VaultAuth::Token(token) => token.as_str(),
                VaultAuth::Kubernetes { .. } => "",
            })
            .verify(true)
            .identity(None)
            .ca_certs(Vec::new());
        if let Some(ns) = &settings.namespace {
            builder.set_namespace(ns.clone());
        }
        let client_settings = builder
            .build()
            .map_err(|e| misconfigured(format!("Vault client settings: {e}")))?;
        let mut client = VaultClient::new(client_settings)
            .map_err(|e| misconfigured(format!("Vault client: {e}")))?;
        if let Some(pem) = &settings.ca_pem {
            // Only this bundle is trusted, not the system's roots; and the PEM comes from
            // memory (vaultrs reads CA files only).
            let cas = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| misconfigured(format!("the CA bundle does not parse: {e}")))?;
            if cas.is_empty() {
                return Err(misconfigured("the CA bundle holds no certificate".into()));
            }
            let http = reqwest::Client::builder()
                .tls_certs_only(cas)
                .build()
                .map_err(|e| misconfigured(format!("Vault HTTP client: {e}")))?;
            client.http = rustify::clients::reqwest::Client::new(&settings.address, http);
        }
        Ok(Self {
            client: RwLock::new(client),
            mount: settings.mount.clone(),
            auth: settings.auth.clone(),
            renew_at: Mutex::new(None),
        })
    }

    /// The client, logged in: with Kubernetes auth, logs in first when there is no token yet
    /// or two thirds of its lease have passed.
    async fn client(&self, tek: &str) -> Result<RwLockReadGuard<'_, VaultClient>, ProviderError> {
        let VaultAuth::Kubernetes { mount, role, jwt } = &self.auth else {
            return Ok(self.client.read().await);
        };
        let due = self
            .renew_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|at| Instant::now() >= at);
        if due {
            let mut client = self.client.write().await;
            // Another caller may have logged in while this one waited for the lock.
            let still_due = self
                .renew_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none_or(|at| Instant::now() >= at);
            if still_due {
                let jwt = jwt.jwt().await?;
                let login = vaultrs::auth::kubernetes::login(&*client, mount, role, jwt.trim())
                    .await
                    .map_err(|e| match classify(e, tek, None) {
                        // A refused login is a permission problem whatever the status says.
                        ProviderError::NotFound { .. } | ProviderError::Misconfigured { .. } => {
                            ProviderError::AccessDenied {
                                backend: BACKEND,
                                tek: format!("{tek} (kubernetes login as role {role})"),
                            }
                        }
                        other => other,
                    })?;
                client.set_token(&login.client_token);
                // A lease of 0 means the token does not expire; re-login hourly anyway.
                let lease = match login.lease_duration {
                    0 => Duration::from_secs(3600),
                    seconds => Duration::from_secs(seconds),
                };
                *self.renew_at.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now() + lease * 2 / 3);
                tracing::debug!(role, lease_seconds = lease.as_secs(), "logged in to Vault");
            }
        }
        Ok(self.client.read().await)
    }

    async fn info(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        let key = transit::key::read(&*self.client(tek).await?, &self.mount, tek)
            .await
            .map_err(|e| classify(e, tek, None))?;
        if !matches!(key.key_type, KeyType::Aes256Gcm96) || key.exportable {
            return Err(ProviderError::Misconfigured {
                backend: BACKEND,
                reason: format!(
                    "transit key '{tek}' exists but is not a non-exportable aes256-gcm96 key"
                ),
            });
        }
        if !key.derived {
            // Vault ignores the context for such a key: it keeps working (TEKs from before
            // derivation, or made by hand), its EDEKs bound to their slot by the operator's
            // signature alone.
            tracing::warn!(
                tek,
                "transit key without derivation: Vault does not bind its EDEKs to their slot; create TEKs with derived=true"
            );
        }
        let latest = match &key.keys {
            ReadKeyData::Symmetric(versions) => {
                versions.keys().filter_map(|v| v.parse::<u64>().ok()).max()
            }
            ReadKeyData::Asymmetric(versions) => {
                versions.keys().filter_map(|v| v.parse::<u64>().ok()).max()
            }
        };
        Ok(TekInfo {
            tek: tek.to_owned(),
            latest_version: latest.map(|v| v.to_string()),
            min_decryption_version: Some(key.min_decryption_version.to_string()),
        })
    }
}

/// The derivation context of a DEK's slot: a label, then the length-prefixed topic,
/// partition and version (the one encoding every binding of a slot uses), base64.
fn derivation_context(context: DekContext<'_>) -> String {
    let mut bytes = b"kafka-e2ee dek v1\0".to_vec();
    context.write_to(&mut bytes);
    STANDARD.encode(bytes)
}

fn context_label(context: DekContext<'_>) -> String {
    format!(
        "{}/{} v{}",
        context.topic, context.partition, context.version
    )
}

/// Vault errors by class. Transit answers a missing key on decrypt/datakey with 400 and an
/// "encryption key not found" message, and bad ciphertext with 400 too: the message decides.
/// An error and its causes, `: `-separated (reqwest's TLS detail is a few levels down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

fn classify(error: ClientError, tek: &str, context: Option<DekContext<'_>>) -> ProviderError {
    let tek = tek.to_owned();
    match error {
        ClientError::APIError { code, errors } => {
            let text = errors.join("; ").to_lowercase();
            match code {
                404 => ProviderError::NotFound {
                    backend: BACKEND,
                    tek,
                },
                400 if text.contains("not found") => ProviderError::NotFound {
                    backend: BACKEND,
                    tek,
                },
                401 | 403 => ProviderError::AccessDenied {
                    backend: BACKEND,
                    tek,
                },
                429 => ProviderError::Throttled {
                    backend: BACKEND,
                    tek,
                },
                400 if context.is_some()
                    && (text.contains("ciphertext")
                        || text.contains("authentication failed")
                        || text.contains("decrypt")
                        || text.contains("invalid")) =>
                {
                    ProviderError::InvalidCiphertext {
                        backend: BACKEND,
                        tek,
                        context: context.map(context_label).unwrap_or_default(),
                    }
                }
                500.. => ProviderError::Unavailable {
                    backend: BACKEND,
                    tek,
                    reason: format!("HTTP {code}: {text}"),
                },
                _ => ProviderError::Misconfigured {
                    backend: BACKEND,
                    reason: format!("TEK '{tek}': HTTP {code}: {text}"),
                },
            }
        }
        other => {
            let reason = error_chain(&other);
            if reason.contains("invalid peer certificate") {
                // Not an outage: retrying will not make the certificate trusted.
                ProviderError::Misconfigured {
                    backend: BACKEND,
                    reason: format!(
                        "Vault's TLS certificate is not trusted ({reason}): give the connection the CA bundle that signed it"
                    ),
                }
            } else {
                ProviderError::Unavailable {
                    backend: BACKEND,
                    tek,
                    reason,
                }
            }
        }
    }
}

fn edek_text<'a>(
    edek: &'a Edek,
    tek: &str,
    context: DekContext<'_>,
) -> Result<&'a str, ProviderError> {
    std::str::from_utf8(&edek.0)
        .ok()
        .filter(|t| t.starts_with("vault:v"))
        .ok_or_else(|| ProviderError::InvalidCiphertext {
            backend: BACKEND,
            tek: tek.to_owned(),
            context: context_label(context),
        })
}

fn decode_dek(
    plaintext_b64: Zeroizing<String>,
    tek: &str,
    context: DekContext<'_>,
) -> Result<KeyMaterial, ProviderError> {
    STANDARD
        .decode(plaintext_b64.as_bytes())
        .map(KeyMaterial::from_vec)
        .map_err(|_| ProviderError::InvalidCiphertext {
            backend: BACKEND,
            tek: tek.to_owned(),
            context: context_label(context),
        })
}

impl KeyProvider for VaultTransit {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        let response = transit::generate::data_key(
            &*self.client(tek).await?,
            &self.mount,
            tek,
            DataKeyType::Plaintext,
            Some(GenerateDataKeyRequestBuilder::default().context(derivation_context(context))),
        )
        .await
        .map_err(|e| classify(e, tek, None))?;
        let plaintext =
            Zeroizing::new(
                response
                    .plaintext
                    .ok_or_else(|| ProviderError::Unavailable {
                        backend: BACKEND,
                        tek: tek.to_owned(),
                        reason: "datakey/plaintext returned no plaintext".into(),
                    })?,
            );
        let dek = decode_dek(plaintext, tek, context)?;
        Ok((dek, Edek(response.ciphertext.into_bytes())))
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        let ciphertext = edek_text(edek, tek, context)?;
        let response = transit::data::decrypt(
            &*self.client(tek).await?,
            &self.mount,
            tek,
            ciphertext,
            Some(DecryptDataRequestBuilder::default().context(derivation_context(context))),
        )
        .await
        .map_err(|e| classify(e, tek, Some(context)))?;
        decode_dek(Zeroizing::new(response.plaintext), tek, context)
    }
}

impl TekManager for VaultTransit {
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        match self.info(tek).await {
            Err(ProviderError::NotFound { .. }) => {}
            other => return other,
        }
        transit::key::create(
            &*self.client(tek).await?,
            &self.mount,
            tek,
            Some(
                CreateKeyRequestBuilder::default()
                    .key_type(KeyType::Aes256Gcm96)
                    .derived(true)
                    .exportable(false),
            ),
        )
        .await
        .map_err(|e| classify(e, tek, None))?;
        self.info(tek).await
    }

    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.info(tek).await
    }

    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        // Rotating a missing key would create nothing useful: check first.
        self.info(tek).await?;
        transit::key::rotate(&*self.client(tek).await?, &self.mount, tek)
            .await
            .map_err(|e| classify(e, tek, None))?;
        self.info(tek).await
    }

    async fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        let ciphertext = edek_text(edek, tek, context)?;
        let response = transit::data::rewrap(
            &*self.client(tek).await?,
            &self.mount,
            tek,
            ciphertext,
            Some(RewrapDataRequestBuilder::default().context(derivation_context(context))),
        )
        .await
        .map_err(|e| classify(e, tek, Some(context)))?;
        Ok(Edek(response.ciphertext.into_bytes()))
    }

    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        match self.info(tek).await {
            Err(ProviderError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let client = self.client(tek).await?;
        // Transit refuses to delete a key until deletion is explicitly allowed on it.
        transit::key::update(
            &*client,
            &self.mount,
            tek,
            Some(UpdateKeyConfigurationRequestBuilder::default().deletion_allowed(true)),
        )
        .await
        .map_err(|e| classify(e, tek, None))?;
        transit::key::delete(&*client, &self.mount, tek)
            .await
            .map_err(|e| classify(e, tek, None))
    }

    fn edek_tek_version(&self, edek: &Edek) -> Option<String> {
        let text = std::str::from_utf8(&edek.0).ok()?;
        let rest = text.strip_prefix("vault:v")?;
        let (version, _) = rest.split_once(':')?;
        version.parse::<u64>().ok().map(|v| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_token() {
        let settings = VaultSettings {
            address: "http://127.0.0.1:8200".into(),
            namespace: None,
            mount: "transit".into(),
            auth: VaultAuth::Token(Zeroizing::new("s.super-secret-token".into())),
            ca_pem: None,
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
