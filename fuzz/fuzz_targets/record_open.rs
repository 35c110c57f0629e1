//! A record as it arrives from the broker: `encryption_key` header bytes and a sealed value
//! (or a tombstone's header), from anyone. Must return a record or a typed error, never panic
//! or over-allocate.
#![no_main]

use kafka_e2ee_core::engine::{Aes256Gcm, EncryptionEngine};
use kafka_e2ee_core::record::{
    RecordLocation, decode_key_header, decode_tombstone_header, open, open_tombstone,
};
use kafka_e2ee_core::secret::KeyMaterial;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&header_len, rest)) = data.split_first() else {
        return;
    };
    let (header, value) = rest.split_at((header_len as usize % 8).min(rest.len()));
    let version = decode_key_header(header).unwrap_or(1);
    let Ok(key) = Aes256Gcm.prepare(&KeyMaterial::from_vec(vec![7; 32])) else {
        return;
    };
    let location = RecordLocation {
        topic: "fuzz",
        partition: 0,
    };
    let _ = open(key.as_ref(), location, version, None, value);
    // The same bytes as a tombstone's key header (reference + authenticator).
    if let Ok((version, authenticator)) = decode_tombstone_header(rest) {
        let _ = open_tombstone(key.as_ref(), location, version, None, authenticator);
    }
});
