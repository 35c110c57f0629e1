//! A record of the key topic (`__encryption_keys`): key and value bytes from the broker.
#![no_main]

use kafka_e2ee_core::key_records::{KeyRecord, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = rest.split_at((split as usize).min(rest.len()));
    let value = (!value.is_empty()).then_some(value);
    // A decoded record re-encodes to a value that decodes to the same record.
    match decode(key, value) {
        Ok(KeyRecord::Policy(p)) => {
            let (k, v) = p.encode().expect("a decoded policy encodes");
            assert_eq!(decode(k.as_bytes(), Some(&v)), Ok(KeyRecord::Policy(p)));
        }
        Ok(KeyRecord::Edek(e)) => {
            let (k, v) = e.encode().expect("a decoded EDEK record encodes");
            assert_eq!(decode(k.as_bytes(), Some(&v)), Ok(KeyRecord::Edek(e)));
        }
        _ => {}
    }
});
