//! The decrypted frame (headers and value) of a record whose producer holds the DEK but is
//! hostile: arbitrary bytes, correctly sealed, so the frame parser itself is reached.
#![no_main]

use kafka_e2ee_core::engine::{Aes256Gcm, EncryptionEngine};
use kafka_e2ee_core::nonce::NONCE_LEN;
use kafka_e2ee_core::record::{RecordLocation, aad, open};
use kafka_e2ee_core::secret::KeyMaterial;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let Ok(key) = Aes256Gcm.prepare(&KeyMaterial::from_vec(vec![7; 32])) else {
        return;
    };
    let location = RecordLocation {
        topic: "fuzz",
        partition: 0,
    };
    let nonce = [3u8; NONCE_LEN];
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(frame);
    let Ok(tag) = key.seal(nonce, &aad(location, 1, None), &mut sealed[NONCE_LEN..]) else {
        return;
    };
    sealed.extend_from_slice(&tag);
    if let Ok(record) = open(key.as_ref(), location, 1, None, &sealed) {
        // Whatever parsed must account for no more bytes than the frame had.
        let parsed: usize = record.value.len()
            + record
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        assert!(parsed <= frame.len());
    }
});
