//! The operator's signing keys: every key record it writes is signed, and clients believe only
//! what a key of their trusted configuration verifies (docs/security.md).
//!
//! The keys live in one Secret in the operator's namespace (never a ConfigMap, never a log),
//! generated on first start. Their public halves are published through the Kubernetes API:
//! the per-namespace client ConfigMaps the webhook injects, and the `kafka-e2ee-trusted-keys`
//! ConfigMap beside the Secret for clients configured by hand.
//!
//! ## Rotation, with overlap
//!
//! Each key is in one state: `Next` (published, not yet signing), `Active` (signs), `Retiring`
//! (still published, no longer signing), `Retired` (its private half deleted; its id kept so
//! the operator's own reader knows the old records for history, not forgeries).
//!
//! 1. **Prepare**: when the active key is older than the rotation period, a new key is stored
//!    as `Next` and published. Clients pick it up (the kubelet refreshes mounted ConfigMaps,
//!    clients re-read their file) during the overlap.
//! 2. **Activate**: after the overlap, `Next` signs (`Active`), the old key is `Retiring`.
//! 3. **Re-sign**: every live key record still signed by another key is written again, same
//!    content, new signature and generation.
//! 4. **Retire**: once none is left and the overlap has passed again, the old key's private
//!    half is deleted and it is no longer published.
//!
//! Every step is stored before it takes effect and is idempotent, so a crash anywhere is
//! resumed by the next pass (`operator/tests/signing_rotation.rs` crashes at each step). The
//! decision is a pure function of the stored keys and the time ([`next_step`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kafka_e2ee_client::signing::{KeyId, PublicKey, SigningKey, SigningKeyError};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::plan::{from_millis, to_millis};

/// The key of the Secret's data that holds the keys.
pub const SECRET_KEY: &str = "signing-keys.json";
/// The ConfigMap (in the operator's namespace) publishing the trusted public keys.
pub const TRUSTED_KEYS_CONFIGMAP: &str = "kafka-e2ee-trusted-keys";
/// Its data key: one `ed25519:<base64>` per line.
pub const TRUSTED_KEYS_KEY: &str = "trustedKeys";
const FORMAT: u32 = 1;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SigningKeysError {
    #[error("reading Secret {namespace}/{name} failed")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing Secret {namespace}/{name} failed")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("publishing ConfigMap {namespace}/{TRUSTED_KEYS_CONFIGMAP} failed")]
    Publish {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} holds no valid signing keys: {reason}")]
    Invalid {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(transparent)]
    Key(#[from] SigningKeyError),
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Next,
    Active,
    Retiring,
    Retired,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Stored {
    format: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredKey {
    public_key: PublicKey,
    /// PKCS#8, base64; deleted when the key retires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<Zeroizing<String>>,
    state: KeyState,
    /// When the key entered its state (ms since the epoch).
    since_ms: i64,
}

/// One key as the operator holds it.
pub struct Key {
    pub public: PublicKey,
    /// `None` once retired.
    private: Option<Arc<SigningKey>>,
    pub state: KeyState,
    pub since: SystemTime,
}

/// Every signing key the operator has, in the order they were made.
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<Key>,
}

/// Ids and states only: never a private key.
impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.public.id(), k.state)))
            .finish()
    }
}

impl KeyRing {
    /// A ring with one fresh active key.
    pub fn generate(now: SystemTime) -> Result<Self, SigningKeysError> {
        let mut ring = Self::default();
        ring.add(KeyState::Active, now)?;
        Ok(ring)
    }

    fn add(&mut self, state: KeyState, now: SystemTime) -> Result<(), SigningKeysError> {
        let (key, _) = SigningKey::generate()?;
        self.keys.push(Key {
            public: key.public_key().clone(),
            private: Some(Arc::new(key)),
            state,
            since: now,
        });
        Ok(())
    }

    fn in_state(&self, state: KeyState) -> Option<&Key> {
        self.keys.iter().find(|k| k.state == state)
    }

    /// The key that signs now.
    pub fn active(&self) -> Option<Arc<SigningKey>> {
        self.in_state(KeyState::Active)?.private.clone()
    }

    /// The public keys clients must trust: next, active and retiring.
    pub fn published(&self) -> Vec<PublicKey> {
        self.keys
            .iter()
            .filter(|k| k.state != KeyState::Retired)
            .map(|k| k.public.clone())
            .collect()
    }

    /// Ids of retired keys (their records are history to the operator's own reader).
    pub fn retired(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys
            .iter()
            .filter(|k| k.state == KeyState::Retired)
            .map(|k| k.public.id())
    }

    pub fn states(&self) -> Vec<(KeyId, KeyState, SystemTime)> {
        self.keys
            .iter()
            .map(|k| (k.public.id(), k.state, k.since))
            .collect()
    }

    /// Applies `step` (Prepare, Activate or Retire) to the ring.
    pub fn apply(&mut self, step: RotationStep, now: SystemTime) -> Result<(), SigningKeysError> {
        match step {
            RotationStep::Prepare => self.add(KeyState::Next, now)?,
            RotationStep::Activate => {
                for key in &mut self.keys {
                    let next = match key.state {
                        KeyState::Active => KeyState::Retiring,
                        KeyState::Next => KeyState::Active,
                        other => other,
                    };
                    if next != key.state {
                        key.state = next;
                        key.since = now;
                    }
                }
            }
            RotationStep::Retire(id) => {
                for key in self.keys.iter_mut().filter(|k| k.public.id() == id) {
                    key.state = KeyState::Retired;
                    key.private = None;
                    key.since = now;
                }
            }
            RotationStep::Resign | RotationStep::Wait(_) => {}
        }
        Ok(())
    }

    fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, SigningKeysError> {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let private_key = match &k.private {
                    Some(key) => Some(Zeroizing::new(STANDARD.encode(&*key.to_pkcs8()?))),
                    None => None,
                };
                Ok(StoredKey {
                    public_key: k.public.clone(),
                    private_key,
                    state: k.state,
                    since_ms: to_millis(k.since),
                })
            })
            .collect::<Result<Vec<_>, SigningKeyError>>()?;
        let json = serde_json::to_vec(&Stored {
            format: FORMAT,
            keys,
        })
        .map_err(|e| SigningKeysError::Invalid {
            namespace: String::new(),
            name: String::new(),
            reason: e.to_string(),
        })?;
        Ok(Zeroizing::new(json))
    }

    /// Parses the stored document; `Err(reason)` when it is not one this operator wrote.
    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if stored.format != FORMAT {
            return Err(format!("format {} is not supported", stored.format));
        }
        let mut keys = Vec::new();
        for k in stored.keys {
            let private = match &k.private_key {
                Some(b64) => {
                    let der = Zeroizing::new(
                        STANDARD
                            .decode(b64.as_bytes())
                            .map_err(|_| "a private key is not base64".to_owned())?,
                    );
                    let key = SigningKey::from_pkcs8(&der).map_err(|e| e.to_string())?;
                    if key.public_key() != &k.public_key {
                        return Err(format!(
                            "key {} does not match its public key",
                            k.public_key.id()
                        ));
                    }
                    Some(Arc::new(key))
                }
                None if k.state == KeyState::Retired => None,
                None => return Err(format!("key {} has no private key", k.public_key.id())),
            };
            keys.push(Key {
                public: k.public_key,
                private,
                state: k.state,
                since: from_millis(k.since_ms),
            });
        }
        let count = |state| keys.iter().filter(|k: &&Key| k.state == state).count();
        if count(KeyState::Active) != 1
            || count(KeyState::Next) > 1
            || count(KeyState::Retiring) > 1
        {
            return Err("exactly one active key, at most one next and one retiring".into());
        }
        Ok(Self { keys })
    }
}

/// How keys rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationSettings {
    /// An active key older than this is replaced.
    pub period: Duration,
    /// How long a new key is published before it signs, and an old one stays published
    /// after it stopped signing: longer than it takes a mounted ConfigMap to reach every pod
    /// and the client to re-read it.
    pub overlap: Duration,
}

/// What the rotation should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    Prepare,
    Activate,
    /// Sign again every record another key signed.
    Resign,
    Retire(KeyId),
    /// Nothing until then (`None`: nothing scheduled).
    Wait(Option<SystemTime>),
}

/// The next rotation step. `others_signed`: the key topic still holds live records signed by
/// a key other than the active one.
pub fn next_step(
    ring: &KeyRing,
    settings: RotationSettings,
    others_signed: bool,
    now: SystemTime,
) -> RotationStep {
    if let Some(retiring) = ring.in_state(KeyState::Retiring) {
        if others_signed {
            return RotationStep::Resign;
        }
        let due = retiring.since + settings.overlap;
        return if due <= now {
            RotationStep::Retire(retiring.public.id())
        } else {
            RotationStep::Wait(Some(due))
        };
    }
    if let Some(next) = ring.in_state(KeyState::Next) {
        let due = next.since + settings.overlap;
        return if due <= now {
            RotationStep::Activate
        } else {
            RotationStep::Wait(Some(due))
        };
    }
    if others_signed {
        // Records of an earlier key outlived its retirement (e.g. written while it retired):
        // sign them again.
        return RotationStep::Resign;
    }
    match ring.in_state(KeyState::Active) {
        Some(active) if active.since + settings.period <= now => RotationStep::Prepare,
        Some(active) => RotationStep::Wait(Some(active.since + settings.period)),
        None => RotationStep::Wait(None),
    }
}

/// The Secret that holds the ring, read and written with optimistic concurrency.
pub struct KeyStore {
    api: Api<Secret>,
    configmaps: Api<ConfigMap>,
    namespace: String,
    name: String,
}

impl KeyStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            configmaps: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The stored ring and its resourceVersion; a new ring (one active key) is created and
    /// stored on first start.
    pub async fn load_or_create(&self) -> Result<(KeyRing, String), SigningKeysError> {
        loop {
            if let Some(found) = self.read().await? {
                return Ok(found);
            }
            let ring = KeyRing::generate(SystemTime::now())?;
            match self
                .api
                .create(&PostParams::default(), &self.secret(&ring, None)?)
                .await
            {
                Ok(created) => {
                    tracing::info!(secret = %self.name, key = %ring.published()[0].id(), "signing key generated");
                    return Ok((ring, created.resource_version().unwrap_or_default()));
                }
                // Another replica created it first: use theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(source) => return Err(self.write_error(source)),
            }
        }
    }

    async fn read(&self) -> Result<Option<(KeyRing, String)>, SigningKeysError> {
        let secret =
            self.api
                .get_opt(&self.name)
                .await
                .map_err(|source| SigningKeysError::Read {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    source,
                })?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let invalid = |reason: String| SigningKeysError::Invalid {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason,
        };
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(SECRET_KEY))
            .ok_or_else(|| invalid(format!("no key {SECRET_KEY}")))?;
        let ring = KeyRing::from_json(&data.0).map_err(invalid)?;
        Ok(Some((ring, secret.resource_version().unwrap_or_default())))
    }

    /// Stores `ring` if the Secret is still at `resource_version`; returns the new version.
    pub async fn store(
        &self,
        ring: &KeyRing,
        resource_version: &str,
    ) -> Result<String, SigningKeysError> {
        let secret = self.secret(ring, Some(resource_version))?;
        let stored = self
            .api
            .replace(&self.name, &PostParams::default(), &secret)
            .await
            .map_err(|source| self.write_error(source))?;
        Ok(stored.resource_version().unwrap_or_default())
    }

    fn secret(
        &self,
        ring: &KeyRing,
        resource_version: Option<&str>,
    ) -> Result<Secret, SigningKeysError> {
        let json = ring.to_json()?;
        Ok(Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: resource_version.map(str::to_owned),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    crate::reconcile::MANAGER.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                SECRET_KEY.to_owned(),
                ByteString(json.to_vec()),
            )])),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        })
    }

    fn write_error(&self, source: kube::Error) -> SigningKeysError {
        SigningKeysError::Write {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// Publishes `keys` in the trusted-keys ConfigMap beside the Secret.
    pub async fn publish(&self, keys: &[PublicKey]) -> Result<(), SigningKeysError> {
        let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(TRUSTED_KEYS_CONFIGMAP.into()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    crate::reconcile::MANAGER.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(TRUSTED_KEYS_KEY.to_owned(), text)])),
            ..ConfigMap::default()
        };
        self.configmaps
            .patch(
                TRUSTED_KEYS_CONFIGMAP,
                &PatchParams::apply(crate::reconcile::MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await
            .map_err(|source| SigningKeysError::Publish {
                namespace: self.namespace.clone(),
                source,
            })?;
        Ok(())
    }
}

/// The public keys in a trusted-keys ConfigMap's text (one per line; blank lines ignored).
pub fn parse_trusted_keys(text: &str) -> Result<Vec<PublicKey>, SigningKeyError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const SETTINGS: RotationSettings = RotationSettings {
        period: Duration::from_secs(90 * 24 * 3600),
        overlap: Duration::from_secs(600),
    };

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn a_rotation_walks_prepare_activate_resign_retire_with_overlaps() {
        let mut ring = KeyRing::generate(t0()).unwrap();
        let first = ring.active().unwrap().id();
        let period_end = t0() + SETTINGS.period;
        assert_eq!(
            next_step(&ring, SETTINGS, false, t0()),
            RotationStep::Wait(Some(period_end))
        );

        // Due: a new key is published first, and does not sign yet.
        assert_eq!(
            next_step(&ring, SETTINGS, false, period_end),
            RotationStep::Prepare
        );
        ring.apply(RotationStep::Prepare, period_end).unwrap();
        assert_eq!(ring.published().len(), 2);
        assert_eq!(ring.active().unwrap().id(), first);
        let activate_at = period_end + SETTINGS.overlap;
        assert_eq!(
            next_step(&ring, SETTINGS, false, period_end + HOUR / 60),
            RotationStep::Wait(Some(activate_at))
        );

        // After the overlap it signs; the old key keeps being published.
        assert_eq!(
            next_step(&ring, SETTINGS, false, activate_at),
            RotationStep::Activate
        );
        ring.apply(RotationStep::Activate, activate_at).unwrap();
        let second = ring.active().unwrap().id();
        assert_ne!(second, first);
        assert_eq!(ring.published().len(), 2);

        // Records the old key signed are signed again before it can go.
        assert_eq!(
            next_step(&ring, SETTINGS, true, activate_at + SETTINGS.overlap),
            RotationStep::Resign
        );
        assert_eq!(
            next_step(&ring, SETTINGS, false, activate_at),
            RotationStep::Wait(Some(activate_at + SETTINGS.overlap))
        );
        let retire_at = activate_at + SETTINGS.overlap;
        assert_eq!(
            next_step(&ring, SETTINGS, false, retire_at),
            RotationStep::Retire(first)
        );
        ring.apply(RotationStep::Retire(first), retire_at).unwrap();
        assert_eq!(
            ring.published()
                .iter()
                .map(PublicKey::id)
                .collect::<Vec<_>>(),
            [second]
        );
        assert_eq!(ring.retired().collect::<Vec<_>>(), [first]);
        // The new key's period counts from when it started signing.
        assert_eq!(
            next_step(&ring, SETTINGS, false, retire_at),
            RotationStep::Wait(Some(activate_at + SETTINGS.period))
        );
        // A straggler signed by a retired key is signed again.
        assert_eq!(
            next_step(&ring, SETTINGS, true, retire_at),
            RotationStep::Resign
        );
    }

    #[test]
    fn the_stored_ring_round_trips_and_retired_keys_keep_no_private_half() {
        let mut ring = KeyRing::generate(t0()).unwrap();
        ring.apply(RotationStep::Prepare, t0()).unwrap();
        ring.apply(RotationStep::Activate, t0()).unwrap();
        let old = ring.states()[0].0;
        ring.apply(RotationStep::Retire(old), t0()).unwrap();
        let json = ring.to_json().unwrap();
        let text = String::from_utf8(json.to_vec()).unwrap();
        assert_eq!(text.matches("privateKey").count(), 1, "{text}");
        let loaded = KeyRing::from_json(&json).unwrap();
        assert_eq!(loaded.published(), ring.published());
        assert_eq!(loaded.retired().collect::<Vec<_>>(), [old]);
        assert_eq!(
            loaded.active().unwrap().public_key(),
            ring.active().unwrap().public_key()
        );
        assert_eq!(loaded.states(), ring.states());
    }

    #[test]
    fn a_tampered_or_inconsistent_store_is_refused() {
        let ring = KeyRing::generate(t0()).unwrap();
        let text = String::from_utf8(ring.to_json().unwrap().to_vec()).unwrap();
        let other = KeyRing::generate(t0()).unwrap();
        let swapped = text.replace(
            &ring.published()[0].to_string(),
            &other.published()[0].to_string(),
        );
        assert!(
            KeyRing::from_json(swapped.as_bytes())
                .unwrap_err()
                .contains("does not match")
        );
        let two_active = format!(
            "{{\"format\":1,\"keys\":[{},{}]}}",
            &text[text.find("[{").unwrap() + 1..text.rfind("}]").unwrap() + 1],
            &text[text.find("[{").unwrap() + 1..text.rfind("}]").unwrap() + 1]
        );
        assert!(KeyRing::from_json(two_active.as_bytes()).is_err());
        assert!(KeyRing::from_json(b"{\"format\":2,\"keys\":[]}").is_err());
        assert!(KeyRing::from_json(b"not json").is_err());
    }

    #[test]
    fn trusted_keys_text_parses_line_by_line() {
        let ring = KeyRing::generate(t0()).unwrap();
        let text = format!("\n{}\n\n", ring.published()[0]);
        assert_eq!(parse_trusted_keys(&text).unwrap(), ring.published());
        assert!(parse_trusted_keys("ed25519:nope").is_err());
    }
}
