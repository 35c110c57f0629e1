//! Prints a worked example of record format v1 in hex (used for docs/wire-format.md).
//! Uses a fixed, public test key: never do this with a real key.

use kafka_e2ee_core::engine::{Aes256Gcm, EncryptionEngine};
use kafka_e2ee_core::nonce::NonceSequence;
use kafka_e2ee_core::record::{Header, RecordLocation, aad, open, seal};
use kafka_e2ee_core::secret::KeyMaterial;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> anyhow::Result<()> {
    let key = Aes256Gcm.prepare(&KeyMaterial::from_vec((0u8..32).collect()))?;
    let loc = RecordLocation {
        topic: "orders",
        partition: 2,
    };
    let headers = vec![Header {
        key: "trace".into(),
        value: Some(b"t1".to_vec()),
    }];
    let sealed = seal(
        key.as_ref(),
        &NonceSequence::new(1 << 32)?,
        loc,
        7,
        Some(b"c42"),
        &headers,
        b"hello",
    )?;
    println!("record key (plaintext): {}", hex(b"c42"));
    println!("encryption_key header:  {}", hex(&sealed.key_header));
    println!(
        "aad:                    {}",
        hex(&aad(loc, 7, Some(b"c42")))
    );
    println!("value: nonce            {}", hex(&sealed.value[..12]));
    println!(
        "       ciphertext       {}",
        hex(&sealed.value[12..sealed.value.len() - 16])
    );
    println!(
        "       tag              {}",
        hex(&sealed.value[sealed.value.len() - 16..])
    );
    let opened = open(key.as_ref(), loc, 7, Some(b"c42"), &sealed.value)?;
    println!(
        "opened: headers {:?}, value {:?}",
        opened.headers,
        String::from_utf8_lossy(&opened.value)
    );
    Ok(())
}
