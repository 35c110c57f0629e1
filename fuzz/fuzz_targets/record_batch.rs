//! A produce request's or fetch response's records field, as the proxy receives it from a
//! client or a broker (docs/proxy.md): batches split, CRCs checked, records decompressed and
//! parsed. Must return batches or a typed error, never panic or over-allocate; a batch that
//! parses re-encodes (as the proxy does) into one that parses to the same records.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_e2ee_proxy::batch::{encode, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((batches, _partial)) = split(&Bytes::copy_from_slice(data)) else {
        return;
    };
    for batch in batches {
        let _ = batch.verify_crc();
        let Ok(records) = batch.records() else {
            continue;
        };
        let mut out = BytesMut::new();
        if encode(&mut out, &batch, &records).is_ok() {
            let (again, rest) = split(&out.freeze()).expect("our own batch splits");
            assert!(rest.is_empty() && again.len() == 1);
            again[0].verify_crc().expect("our own CRC");
            assert_eq!(again[0].records().expect("our own records"), records);
        }
    }
});
