//! The Hadoop KMS KeyProvider (KMS REST API v1), behind the `hadoop-kms` cargo feature.
//!
//! The TEK is a Hadoop KMS key (`AES/CTR/NoPadding`, 256 bits); a DEK is an "encrypted
//! encryption key" (EEK) generated under its current version (`_eek?eek_op=generate`) and
//! unwrapped with `eek_op=decrypt`. Rolling the key makes a new version; `eek_op=reencrypt`
//! moves an EEK onto it. EEKs are AES-CTR and carry no integrity: a tampered EEK "decrypts" to
//! a wrong key, which the DEK commitment of the EDEK record catches (always checked).
//!
//! EDEK bytes: JSON `{"v": versionName, "iv": ..., "m": ...}` (IV and material as the KMS encodes them) (the EEK's key version, IV
//! and material). Auth: Hadoop simple auth (`user.name`); TLS with a custom CA and client
//! certificate via the reqwest client passed in.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
// Hadoop encodes key material as URL-safe base64 without padding.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::provider::{DekContext, Edek, KeyProvider, ProviderError, TekInfo, TekManager};
use crate::secret::KeyMaterial;

const BACKEND: &str = "hadoop-kms";
const CIPHER: &str = "AES/CTR/NoPadding";
const KEY_BITS: u64 = 256;

#[derive(Debug, Clone)]
pub struct HadoopKmsSettings {
    /// `http(s)://host:port/kms`.
    pub url: String,
    /// Simple-auth user (`user.name`).
    pub user: String,
    /// For `https` URLs: which CA to trust and which client certificate to present.
    pub tls: Option<HadoopKmsTls>,
    /// Per-request timeout (the `Resilient` decorator adds its own per attempt).
    pub timeout: Duration,
}

/// TLS material in PEM: files mounted from a Secret (clients) or the Secret itself (the
/// operator reads it through the Kubernetes API).
#[derive(Clone)]
pub struct HadoopKmsTls {
    /// CA certificate(s) that signed the KMS's certificate; only these are trusted.
    pub ca_pem: Vec<u8>,
    /// For KMSs that require mutual TLS: the client certificate chain followed by its
    /// private key.
    pub identity_pem: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for HadoopKmsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HadoopKmsTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field(
                "identity_pem",
                &self.identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl HadoopKmsTls {
    /// Reads the CA and, if given, the client certificate and key from PEM files.
    pub fn from_files(
        ca_file: &Path,
        client_cert_file: Option<&Path>,
        client_key_file: Option<&Path>,
    ) -> Result<Self, ProviderError> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map(Zeroizing::new)
                .map_err(|e| ProviderError::Misconfigured {
                    backend: BACKEND,
                    reason: format!("cannot read {}: {e}", path.display()),
                })
        };
        let identity_pem = match (client_cert_file, client_key_file) {
            (Some(cert), Some(key)) => Some(Self::identity(&read(cert)?, &read(key)?)),
            (None, None) => None,
            _ => {
                return Err(ProviderError::Misconfigured {
                    backend: BACKEND,
                    reason: "clientCertFile and clientKeyFile go together".into(),
                });
            }
        };
        Ok(Self {
            ca_pem: read(ca_file)?.to_vec(),
            identity_pem,
        })
    }

    /// A client identity from a certificate chain and its key, both PEM.
    pub fn identity(cert_pem: &[u8], key_pem: &[u8]) -> Zeroizing<Vec<u8>> {
        let mut pem = Zeroizing::new(Vec::with_capacity(cert_pem.len() + key_pem.len() + 1));
        pem.extend_from_slice(cert_pem);
        pem.push(b'\n');
        pem.extend_from_slice(key_pem);
        pem
    }
}

pub struct HadoopKms {
    http: reqwest::Client,
    /// `<url>/v1`; every path below it is built from percent-encoded segments (TEK and
    /// version names come from key records).
    base: reqwest::Url,
    user: String,
}

#[derive(Serialize, Deserialize)]
struct EdekJson {
    v: String,
    iv: String,
    m: String,
}

fn context_label(context: DekContext<'_>) -> String {
    format!(
        "{}/{} v{}",
        context.topic, context.partition, context.version
    )
}

impl HadoopKms {
    /// A client for `settings`, with its TLS trust and identity loaded from the PEM files.
    pub fn new(settings: &HadoopKmsSettings) -> Result<Self, ProviderError> {
        let misconfigured = |reason: String| ProviderError::Misconfigured {
            backend: BACKEND,
            reason,
        };
        let mut builder = reqwest::Client::builder().timeout(settings.timeout);
        if let Some(tls) = &settings.tls {
            let cas = reqwest::Certificate::from_pem_bundle(&tls.ca_pem)
                .map_err(|e| misconfigured(format!("CA certificates: {e}")))?;
            builder = builder.tls_certs_only(cas);
            if let Some(pem) = &tls.identity_pem {
                let identity = reqwest::Identity::from_pem(pem)
                    .map_err(|e| misconfigured(format!("client certificate: {e}")))?;
                builder = builder.identity(identity);
            }
        }
        let http = builder
            .build()
            .map_err(|e| misconfigured(format!("HTTP client: {e}")))?;
        let base = reqwest::Url::parse(&format!("{}/v1", settings.url.trim_end_matches('/')))
            .ok()
            .filter(|u| !u.cannot_be_a_base())
            .ok_or_else(|| misconfigured(format!("'{}' is not an http(s) URL", settings.url)))?;
        Ok(Self {
            http,
            base,
            user: settings.user.clone(),
        })
    }

    /// `<base>/<segments...>`, each segment percent-encoded (a `/` or `?` in a name stays
    /// inside its segment).
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Value>,
        tek: &str,
        context: Option<DekContext<'_>>,
    ) -> Result<Value, ProviderError> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .query(&[("user.name", self.user.as_str())])
            .query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let unavailable = |reason: String| ProviderError::Unavailable {
            backend: BACKEND,
            tek: tek.to_owned(),
            reason,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| unavailable(format!("HTTP {status}: not JSON: {e}")))?
        };
        if status.is_success() {
            return Ok(value);
        }
        Err(classify(status, &value, tek, context))
    }

    async fn info(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        let meta = self
            .call(
                Method::GET,
                &["key", tek, "_metadata"],
                &[],
                None,
                tek,
                None,
            )
            .await?;
        // The KMS answers an unknown key's metadata with an empty object.
        let Some(versions) = meta.get("versions").and_then(Value::as_u64) else {
            return Err(ProviderError::NotFound {
                backend: BACKEND,
                tek: tek.to_owned(),
            });
        };
        let cipher = meta
            .get("cipher")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bits = meta
            .get("length")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        if cipher != CIPHER || bits != KEY_BITS {
            return Err(ProviderError::Misconfigured {
                backend: BACKEND,
                reason: format!(
                    "key '{tek}' exists but is {cipher} with {bits} bits, not {CIPHER} with {KEY_BITS}"
                ),
            });
        }
        Ok(TekInfo {
            tek: tek.to_owned(),
            latest_version: versions.checked_sub(1).map(|v| v.to_string()),
            min_decryption_version: None,
        })
    }

    fn eek_body(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<(String, Value), ProviderError> {
        let invalid = || ProviderError::InvalidCiphertext {
            backend: BACKEND,
            tek: tek.to_owned(),
            context: context_label(context),
        };
        let parsed: EdekJson = serde_json::from_slice(&edek.0).map_err(|_| invalid())?;
        // The EEK must belong to this TEK: a version name is `<key>@<n>`.
        let belongs = parsed
            .v
            .rsplit_once('@')
            .is_some_and(|(name, n)| name == tek && n.parse::<u64>().is_ok());
        if !belongs {
            return Err(invalid());
        }
        Ok((
            parsed.v,
            json!({"name": tek, "iv": parsed.iv, "material": parsed.m}),
        ))
    }

    /// [`Self::eek_body`], except that an EEK presented for a TEK that does not exist is
    /// reported as `NotFound` (the more useful error) rather than as a foreign EEK.
    async fn checked_eek_body(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<(String, Value), ProviderError> {
        match self.eek_body(tek, context, edek) {
            Err(invalid @ ProviderError::InvalidCiphertext { .. }) => match self.info(tek).await {
                Err(not_found @ ProviderError::NotFound { .. }) => Err(not_found),
                _ => Err(invalid),
            },
            other => other,
        }
    }

    fn edek_from(value: &Value, tek: &str) -> Result<Edek, ProviderError> {
        let eek = value.as_array().and_then(|a| a.first()).unwrap_or(value);
        let field = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        match (
            field(eek.get("versionName")),
            field(eek.get("iv")),
            field(
                eek.get("encryptedKeyVersion")
                    .and_then(|k| k.get("material")),
            ),
        ) {
            (Some(v), Some(iv), Some(m)) => serde_json::to_vec(&EdekJson { v, iv, m })
                .map(Edek)
                .map_err(|e| ProviderError::Unavailable {
                    backend: BACKEND,
                    tek: tek.to_owned(),
                    reason: e.to_string(),
                }),
            _ => Err(ProviderError::Unavailable {
                backend: BACKEND,
                tek: tek.to_owned(),
                reason: format!("unexpected EEK response: {value}"),
            }),
        }
    }
}

/// RemoteException bodies by class.
fn classify(
    status: StatusCode,
    body: &Value,
    tek: &str,
    context: Option<DekContext<'_>>,
) -> ProviderError {
    let remote = &body["RemoteException"];
    let exception = remote["exception"].as_str().unwrap_or_default();
    let message = remote["message"].as_str().unwrap_or_default();
    let lower = message.to_lowercase();
    let tek = tek.to_owned();
    if lower.contains("not found")
        || lower.contains("no keyversion")
        || lower.contains("does not exist")
        || lower.contains("doesn't exist")
    {
        return ProviderError::NotFound {
            backend: BACKEND,
            tek,
        };
    }
    match status.as_u16() {
        401 | 403 => ProviderError::AccessDenied {
            backend: BACKEND,
            tek,
        },
        429 | 503 => ProviderError::Throttled {
            backend: BACKEND,
            tek,
        },
        400 if context.is_some() => ProviderError::InvalidCiphertext {
            backend: BACKEND,
            tek,
            context: context.map(context_label).unwrap_or_default(),
        },
        500.. => ProviderError::Unavailable {
            backend: BACKEND,
            tek,
            reason: format!("HTTP {status}: {exception}: {message}"),
        },
        _ => ProviderError::Misconfigured {
            backend: BACKEND,
            reason: format!("key '{tek}': HTTP {status}: {exception}: {message}"),
        },
    }
}

impl KeyProvider for HadoopKms {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        let eeks = self
            .call(
                Method::GET,
                &["key", tek, "_eek"],
                &[("eek_op", "generate"), ("num_keys", "1")],
                None,
                tek,
                None,
            )
            .await?;
        let edek = Self::edek_from(&eeks, tek)?;
        // Hadoop hands out only the wrapping: the DEK itself comes from decrypting it.
        let dek = self.unwrap_dek(tek, context, &edek).await?;
        Ok((dek, edek))
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        let (version, body) = self.checked_eek_body(tek, context, edek).await?;
        let out = self
            .call(
                Method::POST,
                &["keyversion", &version, "_eek"],
                &[("eek_op", "decrypt")],
                Some(body),
                tek,
                Some(context),
            )
            .await?;
        let material = Zeroizing::new(out["material"].as_str().unwrap_or_default().to_owned());
        URL_SAFE_NO_PAD
            .decode(material.as_bytes())
            .ok()
            .filter(|dek| dek.len() == 32)
            .map(KeyMaterial::from_vec)
            .ok_or_else(|| ProviderError::InvalidCiphertext {
                backend: BACKEND,
                tek: tek.to_owned(),
                context: context_label(context),
            })
    }
}

impl TekManager for HadoopKms {
    async fn create_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        match self.info(tek).await {
            Err(ProviderError::NotFound { .. }) => {}
            other => return other,
        }
        let created = self
            .call(
                Method::POST,
                &["keys"],
                &[],
                Some(json!({"name": tek, "cipher": CIPHER, "length": KEY_BITS})),
                tek,
                None,
            )
            .await;
        match created {
            // Created, or created concurrently by someone else: either way, check what exists.
            Ok(_)
            | Err(ProviderError::Misconfigured { .. } | ProviderError::Unavailable { .. }) => {
                self.info(tek).await
            }
            Err(e) => Err(e),
        }
    }

    async fn describe_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.info(tek).await
    }

    async fn rotate_tek(&self, tek: &str) -> Result<TekInfo, ProviderError> {
        self.info(tek).await?;
        self.call(Method::POST, &["key", tek], &[], Some(json!({})), tek, None)
            .await?;
        self.info(tek).await
    }

    async fn delete_tek(&self, tek: &str) -> Result<(), ProviderError> {
        match self
            .call(Method::DELETE, &["key", tek], &[], None, tek, None)
            .await
        {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn rewrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<Edek, ProviderError> {
        let (version, body) = self.checked_eek_body(tek, context, edek).await?;
        let out = self
            .call(
                Method::POST,
                &["keyversion", &version, "_eek"],
                &[("eek_op", "reencrypt")],
                Some(body),
                tek,
                Some(context),
            )
            .await?;
        Self::edek_from(&out, tek)
    }

    /// One `_reencryptbatch` call for all of them.
    async fn rewrap_deks(
        &self,
        tek: &str,
        items: &[(DekContext<'_>, &Edek)],
    ) -> Result<Vec<Edek>, ProviderError> {
        let mut batch = Vec::with_capacity(items.len());
        for (context, edek) in items {
            let (version, body) = self.checked_eek_body(tek, *context, edek).await?;
            batch.push(json!({
                "versionName": version,
                "iv": body["iv"],
                "encryptedKeyVersion": {"versionName": "EEK", "material": body["material"]},
            }));
        }
        let out = self
            .call(
                Method::POST,
                &["key", tek, "_reencryptbatch"],
                &[],
                Some(Value::Array(batch)),
                tek,
                items.first().map(|(context, _)| *context),
            )
            .await?;
        let eeks = out.as_array().cloned().unwrap_or_default();
        if eeks.len() != items.len() {
            return Err(ProviderError::Unavailable {
                backend: BACKEND,
                tek: tek.to_owned(),
                reason: format!(
                    "_reencryptbatch answered {} of {} EEKs",
                    eeks.len(),
                    items.len()
                ),
            });
        }
        eeks.iter().map(|eek| Self::edek_from(eek, tek)).collect()
    }

    fn edek_tek_version(&self, edek: &Edek) -> Option<String> {
        let parsed: EdekJson = serde_json::from_slice(&edek.0).ok()?;
        let (_, n) = parsed.v.rsplit_once('@')?;
        n.parse::<u64>().ok().map(|n| n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_key_records_stay_inside_their_path_segment() {
        let kms = HadoopKms::new(&HadoopKmsSettings {
            url: "https://kms.example:9600/kms/".into(),
            user: "kafka".into(),
            tls: None,
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(
            kms.url(&["key", "../keys?x=1#y", "_metadata"]).as_str(),
            "https://kms.example:9600/kms/v1/key/..%2Fkeys%3Fx=1%23y/_metadata"
        );
        assert_eq!(
            kms.url(&["keyversion", "tek@0", "_eek"]).as_str(),
            "https://kms.example:9600/kms/v1/keyversion/tek@0/_eek"
        );
        assert!(
            HadoopKms::new(&HadoopKmsSettings {
                url: "not a url".into(),
                user: "kafka".into(),
                tls: None,
                timeout: Duration::from_secs(1),
            })
            .is_err()
        );
    }

    #[test]
    fn debug_output_never_contains_the_client_key() {
        let tls = HadoopKmsTls {
            ca_pem: b"-----BEGIN CERTIFICATE-----".to_vec(),
            identity_pem: Some(HadoopKmsTls::identity(b"CERT", b"PRIVATE-KEY-BYTES")),
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("PRIVATE-KEY-BYTES"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
