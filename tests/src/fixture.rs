//! An encrypted topic on the test bed's broker, set up the way the operator does it: a key
//! topic, a keystore TEK, one DEK per partition generated and published through the client
//! crate's key-management functions, then the policy record, all signed with the fixture's own
//! signing key (which the fixture's clients trust, as clients trust the operator's).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kafka_e2ee_client::config::{ClientConfig, ProviderConfig};
use kafka_e2ee_client::kafka::{KafkaConnection, TopicSpec, ensure_topic};
use kafka_e2ee_client::key_directory::Trust;
use kafka_e2ee_client::key_management::{KeyTopicWriter, ensure_key_topic, provision};
use kafka_e2ee_client::key_records::{PlaintextPolicy, PolicyRecord, ProviderRef};
use kafka_e2ee_client::keystore::LocalKeystore;
use kafka_e2ee_client::provider::{DekContext, Edek, KeyProvider, ProviderError};
use kafka_e2ee_client::secret::KeyMaterial;
use kafka_e2ee_client::signing::{PublicKey, Signer, SigningKey, TrustedKeys};
use rand::RngCore;

use crate::{Server, require, unique};
use kafka_e2ee_client::kafka::Connect as _;

/// A provider that counts unwraps: provider calls must scale with key versions, not records.
pub struct Counting<P> {
    inner: P,
    unwraps: Arc<AtomicUsize>,
}

impl<P> Counting<P> {
    pub fn new(inner: P, unwraps: Arc<AtomicUsize>) -> Self {
        Self { inner, unwraps }
    }
}

impl<P: KeyProvider> KeyProvider for Counting<P> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn generate_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
    ) -> Result<(KeyMaterial, Edek), ProviderError> {
        self.inner.generate_dek(tek, context).await
    }

    async fn unwrap_dek(
        &self,
        tek: &str,
        context: DekContext<'_>,
        edek: &Edek,
    ) -> Result<KeyMaterial, ProviderError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_dek(tek, context, edek).await
    }
}

/// Which provider and TEK a topic's DEKs come from.
#[derive(Clone, Copy)]
pub struct TekRef<'a, P> {
    pub provider: &'a P,
    /// The policy record's provider kind (`keystore`, `vault`, ...).
    pub kind: &'a str,
    pub tek: &'a str,
}

/// The TEK alias every fixture's keystore defines.
pub const TEK: &str = "test-tek";

pub struct Fixture {
    pub connection: KafkaConnection,
    pub key_topic: String,
    pub keystore_path: PathBuf,
    /// The same keystore the client loads, for the key-management side (shared, so a topic
    /// can be provisioned through it while the fixture itself is borrowed mutably).
    pub keystore: Arc<LocalKeystore>,
    pub writer: KeyTopicWriter,
    /// The public half of the key the writer signs with: what the fixture's clients trust.
    pub trusted_key: PublicKey,
    /// Current policy of every topic this fixture encrypted.
    pub policies: BTreeMap<String, PolicyRecord>,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// A fresh key topic and keystore on the test bed's broker.
    pub async fn new(prefix: &str) -> Result<Self> {
        Self::on(prefix, KafkaConnection::new(require(Server::Kafka))).await
    }

    /// The same on the cluster `connection` reaches (with its TLS or SASL properties).
    pub async fn on(prefix: &str, connection: KafkaConnection) -> Result<Self> {
        let key_topic = unique(&format!("{prefix}-keys"));
        ensure_key_topic(&connection, &key_topic, None).await?;
        let dir = std::env::temp_dir().join(unique("kafka-e2ee-keystore"));
        std::fs::create_dir_all(&dir)?;
        let mut material = [0u8; 32];
        rand::rng().fill_bytes(&mut material);
        let json = format!(
            r#"{{"format": 1, "keys": [{{"id": "k1", "material": "{}"}}], "aliases": {{"{TEK}": "k1"}}}}"#,
            STANDARD.encode(material)
        );
        let keystore_path = dir.join("keystore.json");
        std::fs::write(&keystore_path, &json)?;
        let (signing_key, _) = SigningKey::generate()?;
        let trusted_key = signing_key.public_key().clone();
        Ok(Self {
            writer: KeyTopicWriter::new(
                &connection,
                &key_topic,
                Arc::new(Signer::new(signing_key)),
            )?,
            trusted_key,
            keystore: Arc::new(LocalKeystore::from_json(json.as_bytes())?),
            connection,
            key_topic,
            keystore_path,
            policies: BTreeMap::new(),
            dir,
        })
    }

    /// Creates a data topic and provisions version 1 of every partition's DEK.
    pub async fn encrypt_topic(
        &mut self,
        prefix: &str,
        partitions: i32,
        plaintext: PlaintextPolicy,
        max_records_per_dek: u64,
        config: BTreeMap<String, String>,
    ) -> Result<String> {
        let keystore = Arc::clone(&self.keystore);
        let tek = TekRef {
            provider: &*keystore,
            kind: "keystore",
            tek: TEK,
        };
        self.encrypt_topic_with(
            tek,
            prefix,
            partitions,
            plaintext,
            max_records_per_dek,
            config,
        )
        .await
    }

    /// [`Self::encrypt_topic`] with DEKs from another KeyProvider (a KMS backend).
    pub async fn encrypt_topic_with<P: KeyProvider>(
        &mut self,
        tek: TekRef<'_, P>,
        prefix: &str,
        partitions: i32,
        plaintext: PlaintextPolicy,
        max_records_per_dek: u64,
        config: BTreeMap<String, String>,
    ) -> Result<String> {
        let topic = unique(prefix);
        let admin = self.connection.admin()?;
        let spec = TopicSpec {
            name: topic.clone(),
            partitions,
            replication: None,
            config,
        };
        ensure_topic(&admin, &spec, Duration::from_secs(10)).await?;
        let policy = PolicyRecord {
            topic: topic.clone(),
            provider: ProviderRef {
                kind: tek.kind.into(),
                tek: tek.tek.into(),
                config: BTreeMap::new(),
            },
            engine: "AES-256-GCM".into(),
            plaintext,
            max_records_per_dek,
            current_versions: BTreeMap::new(),
        };
        let (policy, _) = provision(tek.provider, &self.writer, policy, 0..partitions, 1).await?;
        self.policies.insert(topic.clone(), policy);
        Ok(topic)
    }

    /// An encrypted topic with the defaults: plaintext rejected, the largest per-DEK cap, no
    /// topic settings. Panics on failure (test helper).
    #[expect(
        clippy::panic,
        reason = "test support: setup failure must fail the test"
    )]
    pub async fn reject_topic(&mut self, prefix: &str, partitions: i32) -> String {
        match self
            .encrypt_topic(
                prefix,
                partitions,
                PlaintextPolicy::Reject,
                kafka_e2ee_client::nonce::MAX_RECORDS_PER_DEK,
                BTreeMap::new(),
            )
            .await
        {
            Ok(topic) => topic,
            Err(e) => panic!("could not set up encrypted topic {prefix}: {e:#}"),
        }
    }

    /// Rolls every partition of `topic` to the next DEK version; returns it.
    pub async fn rollover(&mut self, topic: &str) -> Result<u32> {
        let policy = self
            .policies
            .get(topic)
            .context("not a fixture topic")?
            .clone();
        let next = policy.current_versions.values().max().copied().unwrap_or(0) + 1;
        let partitions: Vec<i32> = policy.current_versions.keys().copied().collect();
        let (policy, _) =
            provision(&*self.keystore, &self.writer, policy, partitions, next).await?;
        self.policies.insert(topic.to_owned(), policy);
        Ok(next)
    }

    /// What a reader of this fixture's key topic trusts: the fixture's signing key, and
    /// plaintext of the topics the fixture encrypted with `Allow`.
    pub fn trust(&self) -> Trust {
        Trust {
            keys: TrustedKeys::new([self.trusted_key.clone()]),
            allow_plaintext: self
                .policies
                .values()
                .filter(|p| p.plaintext == PlaintextPolicy::Allow)
                .map(|p| p.topic.clone())
                .collect(),
            retired: Default::default(),
            topics: None,
        }
    }

    /// A client configuration as a local application would build it.
    pub fn client_config(&self, key_wait: Duration) -> ClientConfig {
        let trust = self.trust();
        let mut config = ClientConfig::new(
            self.connection.bootstrap_servers.clone(),
            ProviderConfig::Keystore {
                path: self.keystore_path.clone(),
            },
            vec![self.trusted_key.clone()],
        );
        config.allow_plaintext = trust.allow_plaintext;
        config.properties = self.connection.properties.clone();
        config.key_topic = self.key_topic.clone();
        config.key_wait_ms = Some(key_wait.as_millis() as u64);
        config
    }
}
