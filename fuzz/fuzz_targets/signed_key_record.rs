//! A signed key-topic record as the broker serves it: record key, value and signature header,
//! from anyone. Verification must answer Ok or a typed refusal, never panic; and nothing but
//! the exact signed bytes may verify.
#![no_main]

use std::sync::OnceLock;

use kafka_e2ee_core::signing::{SIGNATURE_HEADER_FIXED_LEN, SigningKey, TrustedKeys};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static (SigningKey, TrustedKeys) {
    static KEY: OnceLock<(SigningKey, TrustedKeys)> = OnceLock::new();
    KEY.get_or_init(|| {
        let (key, _) = SigningKey::generate().expect("a key");
        let trusted = TrustedKeys::new([key.public_key().clone()]);
        (key, trusted)
    })
}

fuzz_target!(|data: &[u8]| {
    let (signer, trusted) = key();
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (record_key, rest) = rest.split_at((split as usize % 32).min(rest.len()));
    // A header of a batch of up to four (two path hashes), then the value.
    let (header, value) = rest.split_at(rest.len().min(SIGNATURE_HEADER_FIXED_LEN + 64));
    let value = (!value.is_empty()).then_some(value);
    // Arbitrary headers: a typed answer. (A forgery of a fresh key is beyond a fuzzer.)
    let _ = trusted.verify(record_key, value, Some(header));
    // A genuine signature (its record the third of a batch of four) verifies for exactly its
    // record, not for the fuzzer's variant of its header.
    let batch = [
        (&b"a"[..], None),
        (&b"b"[..], Some(&b"1"[..])),
        (record_key, value),
        (&b"d"[..], None),
    ];
    let signed = signer.sign_batch(7, &batch).swap_remove(2);
    assert!(trusted.verify(record_key, value, Some(&signed)).is_ok());
    if header != signed.as_slice() {
        let mut altered = signed.clone();
        for (a, b) in altered.iter_mut().zip(header) {
            *a ^= b;
        }
        if altered != signed {
            assert!(trusted.verify(record_key, value, Some(&altered)).is_err());
        }
    }
});
