//! Vault transit smoke test against the test bed's OpenBao server, through vaultrs: key
//! create, wrapped data key, decrypt, rotate, rewrap, and a tampered ciphertext refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kafka_e2ee_tests::{Server, env, require, unique};
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::{CreateKeyRequestBuilder, DataKeyType};
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::transit;

const MOUNT: &str = "transit";

fn client() -> VaultClient {
    let addr = require(Server::Vault);
    let token = env(Server::Vault, "VAULT_TOKEN");
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(addr)
            .token(token)
            .build()
            .unwrap(),
    )
    .unwrap()
}

fn versions(data: &ReadKeyData) -> usize {
    match data {
        ReadKeyData::Symmetric(v) => v.len(),
        ReadKeyData::Asymmetric(v) => v.len(),
    }
}

/// Unwraps an EDEK through transit and returns the raw DEK bytes.
async fn unwrap_dek(vault: &VaultClient, tek: &str, edek: &str) -> Vec<u8> {
    let plaintext = transit::data::decrypt(vault, MOUNT, tek, edek, None)
        .await
        .unwrap()
        .plaintext;
    B64.decode(plaintext).unwrap()
}

#[tokio::test]
async fn transit_wraps_unwraps_rotates_and_rewraps_data_keys() {
    let vault = client();
    let tek = unique("tek");
    transit::key::create(
        &vault,
        MOUNT,
        &tek,
        Some(
            CreateKeyRequestBuilder::default()
                .key_type(KeyType::Aes256Gcm96)
                .exportable(false),
        ),
    )
    .await
    .unwrap();
    let key = transit::key::read(&vault, MOUNT, &tek).await.unwrap();
    assert!(!key.exportable);
    assert_eq!(versions(&key.keys), 1);

    // A wrapped DEK: Vault returns only the ciphertext (no plaintext) for `wrapped`.
    let wrapped = transit::generate::data_key(&vault, MOUNT, &tek, DataKeyType::Wrapped, None)
        .await
        .unwrap();
    assert!(wrapped.plaintext.is_none());
    assert!(
        wrapped.ciphertext.starts_with("vault:v1:"),
        "{}",
        wrapped.ciphertext
    );
    let dek = unwrap_dek(&vault, &tek, &wrapped.ciphertext).await;
    assert_eq!(dek.len(), 32, "a 256-bit DEK");

    // Rotate the TEK, re-wrap the EDEK onto the new version: same DEK, new wrapping.
    transit::key::rotate(&vault, MOUNT, &tek).await.unwrap();
    assert_eq!(
        versions(&transit::key::read(&vault, MOUNT, &tek).await.unwrap().keys),
        2
    );
    let rewrapped = transit::data::rewrap(&vault, MOUNT, &tek, &wrapped.ciphertext, None)
        .await
        .unwrap()
        .ciphertext;
    assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    let dek_after = unwrap_dek(&vault, &tek, &rewrapped).await;
    assert_eq!(dek_after, dek);
    // The old wrapping still unwraps (min_decryption_version stays 1).
    let dek_old = unwrap_dek(&vault, &tek, &wrapped.ciphertext).await;
    assert_eq!(dek_old, dek);

    // A flipped bit in the wrapped key is refused by GCM, not "decrypted".
    let (prefix, body) = rewrapped.rsplit_once(':').unwrap();
    let mut raw = B64.decode(body).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    let tampered = format!("{prefix}:{}", B64.encode(raw));
    assert!(
        transit::data::decrypt(&vault, MOUNT, &tek, &tampered, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unknown_transit_key_is_an_error_for_decrypt() {
    let vault = client();
    let missing = unique("missing-tek");
    // Decrypting never auto-creates a key (encrypting would, which we never rely on).
    let err = transit::data::decrypt(&vault, MOUNT, &missing, "vault:v1:AAAA", None).await;
    assert!(err.is_err());
    assert!(
        transit::key::read(&vault, MOUNT, &missing).await.is_err(),
        "decrypt must not create the key"
    );
}
