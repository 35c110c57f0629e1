//! Hadoop KMS smoke test against the test bed's KMS stand-in (tests/hadoop-kms-server), over
//! the KMS v1 REST API with reqwest; plus Hadoop's own Java client and KeyShell against it, so
//! the stand-in stays faithful to what Hadoop speaks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use kafka_e2ee_tests::{Server, env, require, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};

const USER: &str = "kafka-e2ee";

struct Kms {
    http: reqwest::Client,
    base: String,
}

impl Kms {
    fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/v1", require(Server::HadoopKms)),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .query(&[("user.name", USER)])
            .query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    /// `num_keys` fresh EEKs (wrapped DEKs) under the current version of `key`.
    async fn generate(&self, key: &str, num_keys: u32) -> (StatusCode, Value) {
        let n = num_keys.to_string();
        let query = [("eek_op", "generate"), ("num_keys", n.as_str())];
        self.call(
            reqwest::Method::GET,
            &format!("key/{key}/_eek"),
            &query,
            None,
        )
        .await
    }

    async fn decrypt(&self, key: &str, eek: &Value) -> (StatusCode, Value) {
        let version = eek["versionName"].as_str().unwrap();
        let body = json!({"name": key, "iv": eek["iv"], "material": eek["encryptedKeyVersion"]["material"]});
        self.call(
            reqwest::Method::POST,
            &format!("keyversion/{version}/_eek"),
            &[("eek_op", "decrypt")],
            Some(body),
        )
        .await
    }
}

fn material(v: &Value) -> Vec<u8> {
    B64.decode(v["material"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn creates_generates_decrypts_rolls_and_reencrypts() {
    use reqwest::Method;
    let kms = Kms::new();
    let key = unique("tek");

    let (status, created) = kms
        .call(
            Method::POST,
            "keys",
            &[],
            Some(json!({"name": key, "cipher": "AES/CTR/NoPadding", "length": 256})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["versionName"], format!("{key}@0"));
    assert!(
        created.get("material").is_none(),
        "the TEK must never leave the KMS"
    );

    let (_, meta) = kms
        .call(Method::GET, &format!("key/{key}/_metadata"), &[], None)
        .await;
    assert_eq!(
        (meta["length"].as_i64(), meta["versions"].as_i64()),
        (Some(256), Some(1)),
        "{meta}"
    );

    // Generate two EEKs (wrapped DEKs) in one call, unwrap one.
    let (status, eeks) = kms.generate(&key, 2).await;
    assert_eq!(status, StatusCode::OK, "{eeks}");
    let eeks = eeks.as_array().unwrap();
    assert_eq!(eeks.len(), 2);
    assert_ne!(
        eeks[0]["encryptedKeyVersion"]["material"],
        eeks[1]["encryptedKeyVersion"]["material"]
    );
    let (status, dek) = kms.decrypt(&key, &eeks[0]).await;
    assert_eq!(status, StatusCode::OK, "{dek}");
    let dek = material(&dek);
    assert_eq!(dek.len(), 32);

    // Roll the TEK; re-encrypt one EEK and batch-re-encrypt the other onto the new version.
    let (status, rolled) = kms
        .call(Method::POST, &format!("key/{key}"), &[], Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["versionName"], format!("{key}@1"));
    let body = json!({"name": key, "iv": eeks[0]["iv"], "material": eeks[0]["encryptedKeyVersion"]["material"]});
    let version = eeks[0]["versionName"].as_str().unwrap();
    let (status, re) = kms
        .call(
            Method::POST,
            &format!("keyversion/{version}/_eek"),
            &[("eek_op", "reencrypt")],
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{re}");
    assert_eq!(re["versionName"], format!("{key}@1"));
    assert_eq!(material(&kms.decrypt(&key, &re).await.1), dek);

    let (status, batch) = kms
        .call(
            Method::POST,
            &format!("key/{key}/_reencryptbatch"),
            &[],
            Some(json!([eeks[1]])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch[0]["versionName"], format!("{key}@1"));
    let (_, dek1_before) = kms.decrypt(&key, &eeks[1]).await;
    assert_eq!(
        material(&kms.decrypt(&key, &batch[0]).await.1),
        material(&dek1_before)
    );

    // EEKs are AES-CTR: a flipped bit "decrypts" (200) to a different key. This is why the
    // record format stores a commitment to every DEK and checks it after unwrapping.
    let mut tampered = eeks[0].clone();
    let mut raw = B64
        .decode(
            tampered["encryptedKeyVersion"]["material"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    raw[0] ^= 0x01;
    tampered["encryptedKeyVersion"]["material"] = json!(B64.encode(raw));
    let (status, garbage) = kms.decrypt(&key, &tampered).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(material(&garbage), dek);
}

#[tokio::test]
async fn errors_come_back_as_remote_exceptions() {
    use reqwest::Method;
    let kms = Kms::new();
    let missing = unique("missing");

    // An unknown key's metadata is an empty object, as the real KMS answers.
    let (status, meta) = kms
        .call(Method::GET, &format!("key/{missing}/_metadata"), &[], None)
        .await;
    assert_eq!((status, meta), (StatusCode::OK, json!({})));

    let (status, err) = kms.generate(&missing, 1).await;
    assert!(
        status.is_server_error() || status.is_client_error(),
        "{status}"
    );
    assert!(
        err["RemoteException"]["message"]
            .as_str()
            .unwrap()
            .contains(&missing),
        "{err}"
    );

    // Without user.name (simple auth) nothing is served.
    let resp = reqwest::get(format!("{}/keys/names", kms.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["RemoteException"]["exception"], "SecurityException");
}

fn hadoop_java(class: &str, args: &[&str]) -> (bool, String) {
    let classpath = env(Server::HadoopKms, "KE_HADOOP_CLASSPATH");
    let out = Command::new("java")
        .args(["-cp", &classpath, "-Dlog4j2.level=error", class])
        .args(args)
        .output()
        .expect("java must be on PATH (scripts/testbed install hkms installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn provider_uri() -> String {
    let url = require(Server::HadoopKms); // http://127.0.0.1:PORT/kms
    let rest = url.strip_prefix("http://").unwrap();
    format!("kms://http@{rest}")
}

#[test]
fn hadoop_kms_client_provider_round_trips_against_our_server() {
    let (ok, out) = hadoop_java("HadoopKmsClientCheck", &[&provider_uri(), &unique("java")]);
    assert!(
        ok,
        "Hadoop's KMSClientProvider failed against our server:\n{out}"
    );
    for step in [
        "ok createKey",
        "ok generateEncryptedKey+decrypt",
        "ok rollNewVersion",
        "ok reencryptEncryptedKey",
        "ok getMetadata versions=2",
        "ok deleteKey",
    ] {
        assert!(out.contains(step), "missing '{step}' in:\n{out}");
    }
}

#[test]
fn hadoop_key_shell_creates_and_lists_keys() {
    let key = unique("shell");
    let uri = provider_uri();
    let (ok, out) = hadoop_java(
        "org.apache.hadoop.crypto.key.KeyShell",
        &["create", &key, "-provider", &uri],
    );
    assert!(ok && out.contains("has been successfully created"), "{out}");
    let (ok, out) = hadoop_java(
        "org.apache.hadoop.crypto.key.KeyShell",
        &["list", "-metadata", "-provider", &uri],
    );
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key} :")))
        .unwrap_or_else(|| panic!("{key} not listed:\n{out}"));
    assert!(
        line.contains("cipher: AES/CTR/NoPadding") && line.contains("version: 1"),
        "{line}"
    );
}
