//! Self-managed TLS (when cert-manager is not used): the webhook keeps its own CA and serving
//! certificate in a Secret of its namespace, renews the serving certificate when two thirds
//! of its life have passed, and writes the CA into its webhook configurations' `caBundle`.
//!
//! Every replica runs the same loop against the same Secret; the apiserver's optimistic
//! concurrency (create conflicts, resourceVersion on replace) makes exactly one writer win
//! and the others adopt its result. The CA lives ten years and is kept across renewals, so
//! the caBundle changes only when the Secret is deleted (then every replica follows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::de::DeserializeOwned;
use thiserror::Error;
use time::OffsetDateTime;

use crate::metrics::Metrics;
use crate::tls::{CertResolver, certified_key};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const NOT_BEFORE: &str = "kafka-e2ee.io/not-before";
const NOT_AFTER: &str = "kafka-e2ee.io/not-after";
const NAMES: &str = "kafka-e2ee.io/names";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Clock skew allowance: certificates are valid from a minute before they are made.
const BACKDATE: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("{what} failed")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A CA and a serving certificate signed by it, in PEM, with the serving certificate's
/// validity as Unix seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    pub not_before: u64,
    pub not_after: u64,
    pub names: Vec<String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("names", &self.names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn unix(seconds: u64) -> Result<OffsetDateTime, rcgen::Error> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX))
        .map_err(|_| rcgen::Error::Time)
}

/// The CA's parameters. Deterministic apart from validity, so a CA key read back from the
/// Secret signs with the same issuer name the CA certificate has.
fn ca_params(now: u64) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kafka-e2ee-webhook-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = unix(now.saturating_sub(BACKDATE.as_secs()))?;
    params.not_after = unix(now + CA_VALIDITY.as_secs())?;
    Ok(params)
}

/// A new serving certificate for `names`, signed by the CA in `ca` (cert, key PEM), or by a
/// new CA if there is none or it is unusable.
pub fn issue(
    names: &[String],
    validity: Duration,
    ca: Option<(&str, &str)>,
    now: u64,
) -> Result<Bundle, rcgen::Error> {
    let reused = ca.and_then(|(cert, key)| Some((cert.to_owned(), KeyPair::from_pem(key).ok()?)));
    let (ca_cert, ca_key) = match reused {
        Some(pair) => pair,
        None => {
            let key = KeyPair::generate()?;
            (ca_params(now)?.self_signed(&key)?.pem(), key)
        }
    };
    let issuer = Issuer::new(ca_params(now)?, &ca_key);
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names
            .first()
            .cloned()
            .unwrap_or_else(|| "kafka-e2ee-webhook".into()),
    );
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Backdated for clock skew, but never by more than a quarter of a (short) lifetime.
    let not_before = now.saturating_sub(BACKDATE.min(validity / 4).as_secs());
    let not_after = now + validity.as_secs();
    params.not_before = unix(not_before)?;
    params.not_after = unix(not_after)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_cert,
        ca_key: ca_key.serialize_pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
        not_before,
        not_after,
        names: names.to_vec(),
    })
}

/// Whether a serving certificate valid over `[not_before, not_after]` for `names` should be
/// replaced at `now`: two thirds of its life gone, or made for other names.
pub fn needs_renewal(bundle: &Bundle, names: &[String], now: u64) -> bool {
    let life = bundle.not_after.saturating_sub(bundle.not_before);
    now >= bundle.not_before + life / 3 * 2 || bundle.names != names
}

fn to_secret(
    bundle: &Bundle,
    namespace: &str,
    name: &str,
    resource_version: Option<String>,
) -> Secret {
    let data = [
        (CA_CERT, &bundle.ca_cert),
        (CA_KEY, &bundle.ca_key),
        (TLS_CERT, &bundle.cert),
        (TLS_KEY, &bundle.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            resource_version,
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "kafka-e2ee-webhook".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([
                (NOT_BEFORE.to_owned(), bundle.not_before.to_string()),
                (NOT_AFTER.to_owned(), bundle.not_after.to_string()),
                (NAMES.to_owned(), bundle.names.join(",")),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn from_secret(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    let annotations = secret.metadata.annotations.as_ref()?;
    let number = |key: &str| annotations.get(key)?.parse::<u64>().ok();
    Some(Bundle {
        ca_cert: text(CA_CERT)?,
        ca_key: text(CA_KEY)?,
        cert: text(TLS_CERT)?,
        key: text(TLS_KEY)?,
        not_before: number(NOT_BEFORE)?,
        not_after: number(NOT_AFTER)?,
        names: annotations
            .get(NAMES)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The self-managed certificate loop's settings.
#[derive(Clone)]
pub struct SelfManaged {
    pub client: kube::Client,
    pub namespace: String,
    pub secret_name: String,
    /// DNS names and IP addresses the serving certificate is for.
    pub names: Vec<String>,
    pub validity: Duration,
    pub check_interval: Duration,
    pub mutating_configurations: Vec<String>,
    pub validating_configurations: Vec<String>,
}

impl SelfManaged {
    /// Makes sure a usable certificate is loaded (creating or renewing the Secret as needed)
    /// and the caBundles are current. Returns whether another step should follow soon (a
    /// write lost a race, or a webhook configuration does not exist yet).
    pub async fn step(
        &self,
        resolver: &CertResolver,
        loaded: &mut Option<Bundle>,
        metrics: &Metrics,
    ) -> Result<bool, CertError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let kube_err = |what: &str| {
            let what = format!("{what} Secret {}/{}", self.namespace, self.secret_name);
            move |source| CertError::Kube { what, source }
        };
        let now = now();
        let secret = api
            .get_opt(&self.secret_name)
            .await
            .map_err(kube_err("reading"))?;
        let current = secret.as_ref().and_then(from_secret);
        let bundle = match (&secret, current) {
            (_, Some(b)) if !needs_renewal(&b, &self.names, now) => b,
            (existing, old) => {
                let ca = old
                    .as_ref()
                    .map(|b| (b.ca_cert.as_str(), b.ca_key.as_str()));
                let fresh = issue(&self.names, self.validity, ca, now)?;
                let written = match existing {
                    None => {
                        let s = to_secret(&fresh, &self.namespace, &self.secret_name, None);
                        api.create(&PostParams::default(), &s).await
                    }
                    Some(existing) => {
                        let rv = existing.metadata.resource_version.clone();
                        let s = to_secret(&fresh, &self.namespace, &self.secret_name, rv);
                        api.replace(&self.secret_name, &PostParams::default(), &s)
                            .await
                    }
                };
                match written {
                    Ok(_) => {
                        tracing::info!(secret = %self.secret_name, names = ?self.names, not_after = fresh.not_after, "serving certificate issued");
                        fresh
                    }
                    // Another replica wrote first: adopt its certificate on the next step.
                    Err(kube::Error::Api(e)) if e.code == 409 => return Ok(true),
                    Err(e) => return Err(kube_err("writing")(e)),
                }
            }
        };
        if loaded.as_ref() != Some(&bundle) {
            resolver.set(certified_key(
                bundle.cert.as_bytes(),
                bundle.key.as_bytes(),
            )?);
            metrics.tls_reloads.inc();
            metrics
                .certificate_not_after
                .set(i64::try_from(bundle.not_after).unwrap_or(i64::MAX));
            *loaded = Some(bundle.clone());
        }
        let ca = ByteString(bundle.ca_cert.as_bytes().to_vec());
        let mut pending = false;
        for name in &self.mutating_configurations {
            let api = Api::<MutatingWebhookConfiguration>::all(self.client.clone());
            pending |= !set_ca_bundle(&api, name, &ca, |c| {
                c.webhooks
                    .iter_mut()
                    .flatten()
                    .map(|w| &mut w.client_config)
                    .collect()
            })
            .await?;
        }
        for name in &self.validating_configurations {
            let api = Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
            pending |= !set_ca_bundle(&api, name, &ca, |c| {
                c.webhooks
                    .iter_mut()
                    .flatten()
                    .map(|w| &mut w.client_config)
                    .collect()
            })
            .await?;
        }
        Ok(pending)
    }

    /// Runs `step` forever: every check interval, or a second after a lost race.
    pub async fn run(
        self,
        resolver: Arc<CertResolver>,
        metrics: Metrics,
        mut loaded: Option<Bundle>,
    ) {
        loop {
            let wait = match self.step(&resolver, &mut loaded, &metrics).await {
                Ok(false) => self.check_interval,
                Ok(true) => Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %crate::chain(&e), "self-managed certificate step failed");
                    Duration::from_secs(5).min(self.check_interval)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Writes `ca` into every webhook of configuration `name`. False if it does not exist (yet)
/// or the write lost a race (the caller tries again soon).
async fn set_ca_bundle<K>(
    api: &Api<K>,
    name: &str,
    ca: &ByteString,
    client_configs: impl Fn(&mut K) -> Vec<&mut WebhookClientConfig>,
) -> Result<bool, CertError>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let what = |verb: &str| format!("{verb} webhook configuration {name}");
    let Some(mut config) = api.get_opt(name).await.map_err(|source| CertError::Kube {
        what: what("reading"),
        source,
    })?
    else {
        tracing::warn!(
            configuration = name,
            "webhook configuration not found; its caBundle will be set when it exists"
        );
        return Ok(false);
    };
    let mut changed = false;
    for client_config in client_configs(&mut config) {
        if client_config.ca_bundle.as_ref() != Some(ca) {
            client_config.ca_bundle = Some(ca.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(true);
    }
    match api.replace(name, &PostParams::default(), &config).await {
        Ok(_) => {
            tracing::info!(configuration = name, "caBundle updated");
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(source) => Err(CertError::Kube {
            what: what("updating"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec![
            "kafka-e2ee-webhook.kafka-e2ee.svc".into(),
            "127.0.0.1".into(),
        ]
    }

    #[test]
    fn renewal_keeps_the_ca_and_the_result_serves() {
        let first = issue(
            &names(),
            Duration::from_secs(90 * 86_400),
            None,
            1_700_000_000,
        )
        .unwrap();
        assert!(certified_key(first.cert.as_bytes(), first.key.as_bytes()).is_ok());
        let renewed = issue(
            &names(),
            Duration::from_secs(90 * 86_400),
            Some((&first.ca_cert, &first.ca_key)),
            1_700_000_000 + 61 * 86_400,
        )
        .unwrap();
        assert_eq!(
            renewed.ca_cert, first.ca_cert,
            "the caBundle must not change"
        );
        assert_ne!(renewed.cert, first.cert);
        assert_ne!(renewed.key, first.key);
        // A CA key that does not parse is replaced by a new CA (and so a new caBundle).
        let replaced = issue(
            &names(),
            Duration::from_secs(3600),
            Some((&first.ca_cert, "junk")),
            1_700_000_000,
        )
        .unwrap();
        assert_ne!(replaced.ca_cert, first.ca_cert);
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_life_or_for_new_names() {
        let b = issue(&names(), Duration::from_secs(3000), None, 1_000_000).unwrap();
        // Backdated a minute: life 3060 s, renew from not_before + 2040 s.
        assert!(!needs_renewal(&b, &names(), b.not_before + 2039));
        assert!(needs_renewal(&b, &names(), b.not_before + 2040));
        assert!(needs_renewal(&b, &["other.svc".to_owned()], b.not_before));
    }

    #[test]
    fn the_secret_round_trips_and_never_debug_prints_keys() {
        let b = issue(&names(), Duration::from_secs(3600), None, 1_700_000_000).unwrap();
        let secret = to_secret(&b, "kafka-e2ee", "webhook-tls", None);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(from_secret(&secret), Some(b.clone()));
        let shown = format!("{b:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
    }
}
