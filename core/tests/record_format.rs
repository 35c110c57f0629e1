//! Record format v1: round trips, the tamper matrix, parser robustness, overhead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use kafka_e2ee_core::engine::{Aes256Gcm, EncryptionEngine, PreparedKey};
use kafka_e2ee_core::nonce::{MAX_RECORDS_PER_DEK, NonceError, NonceSequence};
use kafka_e2ee_core::record::{
    FORMAT_V1, Header, PartitionSealer, RecordError, RecordLocation, TOMBSTONE_AUTH_LEN,
    decode_key_header, decode_tombstone_header, encode_key_header, open, open_tombstone, seal,
};
use kafka_e2ee_core::secret::KeyMaterial;
use proptest::prelude::*;

const ORDERS_0: RecordLocation<'static> = RecordLocation {
    topic: "orders",
    partition: 0,
};

fn dek(byte: u8) -> Box<dyn PreparedKey> {
    Aes256Gcm
        .prepare(&KeyMaterial::from_vec(vec![byte; 32]))
        .unwrap()
}

fn nonces() -> NonceSequence {
    NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap()
}

fn sample_headers() -> Vec<Header> {
    vec![
        Header {
            key: "trace".into(),
            value: Some(b"abc".to_vec()),
        },
        Header {
            key: "trace".into(),
            value: Some(b"def".to_vec()),
        },
        Header {
            key: "null".into(),
            value: None,
        },
        Header {
            key: "empty".into(),
            value: Some(vec![]),
        },
    ]
}

/// Keys and values long enough for one- and two-byte length varints (127 and 128 bytes).
fn header_strategy() -> impl Strategy<Value = Header> {
    (
        ".{0,140}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
    )
        .prop_map(|(key, value)| Header { key, value })
}

proptest! {
    #[test]
    fn round_trips_any_value_headers_and_key(
        value in proptest::collection::vec(any::<u8>(), 0..2048),
        headers in proptest::collection::vec(header_strategy(), 0..6),
        record_key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        partition in 0i32..1000,
        version in any::<u32>(),
    ) {
        let key = dek(7);
        let loc = RecordLocation { topic: "t.any", partition };
        let sealed = seal(key.as_ref(), &nonces(), loc, version, record_key.as_deref(), &headers, &value).unwrap();
        prop_assert_eq!(decode_key_header(&sealed.key_header).unwrap(), version);
        let opened = open(key.as_ref(), loc, version, record_key.as_deref(), &sealed.value).unwrap();
        prop_assert_eq!(opened.headers, headers);
        prop_assert_eq!(opened.value, value);
    }

    /// One reused seal buffer and one reused open buffer (what producers and consumers keep
    /// per thread) restore every record of a sequence of growing and shrinking sizes exactly.
    #[test]
    fn reused_buffers_round_trip_records_of_varying_sizes(
        records in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..600), proptest::collection::vec(header_strategy(), 0..3)),
            1..8,
        ),
    ) {
        use kafka_e2ee_core::record::{PartitionSealer, open_frame, open_with_scratch};
        let key = dek(3);
        let sealer = PartitionSealer::new(dek(3), nonces(), ORDERS_0, 4);
        let (mut sealed, mut scratch) = (Vec::new(), Vec::new());
        for (value, headers) in &records {
            sealer.seal_into(&mut sealed, Some(b"k"), headers, value).unwrap();
            let opened =
                open_with_scratch(key.as_ref(), ORDERS_0, 4, Some(b"k"), &sealed, &mut scratch).unwrap();
            prop_assert_eq!(&opened.headers, headers);
            prop_assert_eq!(&opened.value, value);
            // The borrowed frame (what verify and `open_then` read) says the same.
            let frame =
                open_frame(key.as_ref(), ORDERS_0, 4, Some(b"k"), &sealed, &mut scratch).unwrap();
            prop_assert_eq!(frame.header_count(), headers.len());
            prop_assert_eq!(&frame.to_headers(), headers);
            prop_assert_eq!(frame.value(), value.as_slice());
        }
    }

    /// Whatever bytes arrive, opening returns a typed error or a record; it never panics.
    #[test]
    fn open_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256), header in proptest::collection::vec(any::<u8>(), 0..8)) {
        let _ = decode_key_header(&header);
        let _ = open(dek(1).as_ref(), ORDERS_0, 1, None, &bytes);
    }
}

#[test]
fn every_tampering_fails_with_a_typed_error() {
    let key = dek(1);
    let record_key = Some(b"customer-42".as_slice());
    let sealed = seal(
        key.as_ref(),
        &nonces(),
        ORDERS_0,
        3,
        record_key,
        &sample_headers(),
        b"{\"amount\":100}",
    )
    .unwrap();
    let opens = |loc: RecordLocation<'_>,
                 version: u32,
                 rk: Option<&[u8]>,
                 value: &[u8],
                 k: &dyn PreparedKey| open(k, loc, version, rk, value);
    assert!(
        opens(ORDERS_0, 3, record_key, &sealed.value, key.as_ref()).is_ok(),
        "the untouched record opens"
    );

    // A flipped bit anywhere in nonce, ciphertext or tag.
    for i in 0..sealed.value.len() {
        for bit in [0x01u8, 0x80] {
            let mut v = sealed.value.clone();
            v[i] ^= bit;
            assert_eq!(
                opens(ORDERS_0, 3, record_key, &v, key.as_ref()),
                Err(RecordError::Authentication),
                "byte {i}"
            );
        }
    }
    let cases: Vec<(&str, Result<_, RecordError>)> = vec![
        (
            "moved to another partition",
            opens(
                RecordLocation {
                    topic: "orders",
                    partition: 1,
                },
                3,
                record_key,
                &sealed.value,
                key.as_ref(),
            ),
        ),
        (
            "moved to another topic",
            opens(
                RecordLocation {
                    topic: "orders2",
                    partition: 0,
                },
                3,
                record_key,
                &sealed.value,
                key.as_ref(),
            ),
        ),
        (
            "key version header swapped",
            opens(ORDERS_0, 4, record_key, &sealed.value, key.as_ref()),
        ),
        (
            "record key changed",
            opens(
                ORDERS_0,
                3,
                Some(b"customer-43"),
                &sealed.value,
                key.as_ref(),
            ),
        ),
        (
            "record key removed",
            opens(ORDERS_0, 3, None, &sealed.value, key.as_ref()),
        ),
        (
            "another DEK (replaced EDEK)",
            opens(ORDERS_0, 3, record_key, &sealed.value, dek(2).as_ref()),
        ),
        (
            "value truncated",
            opens(
                ORDERS_0,
                3,
                record_key,
                &sealed.value[..sealed.value.len() - 1],
                key.as_ref(),
            ),
        ),
    ];
    for (what, result) in cases {
        assert_eq!(result.err(), Some(RecordError::Authentication), "{what}");
    }
    assert_eq!(
        opens(ORDERS_0, 3, record_key, &sealed.value[..27], key.as_ref()).err(),
        Some(RecordError::TooShort { len: 27, min: 28 })
    );
}

#[test]
fn key_header_is_versioned_and_strict() {
    assert_eq!(encode_key_header(5), vec![FORMAT_V1, 5]);
    assert_eq!(encode_key_header(300), vec![FORMAT_V1, 0xac, 0x02]);
    for v in [0, 1, 127, 128, 16_384, u32::MAX] {
        assert_eq!(decode_key_header(&encode_key_header(v)), Ok(v));
    }
    assert_eq!(
        decode_key_header(&[2, 5]),
        Err(RecordError::UnsupportedFormat(2))
    );
    assert_eq!(decode_key_header(&[]), Err(RecordError::MalformedKeyHeader));
    assert_eq!(
        decode_key_header(&[FORMAT_V1]),
        Err(RecordError::MalformedKeyHeader)
    );
    assert_eq!(
        decode_key_header(&[FORMAT_V1, 5, 0]),
        Err(RecordError::MalformedKeyHeader),
        "trailing bytes"
    );
    assert_eq!(
        decode_key_header(&[FORMAT_V1, 0x80, 0x80, 0x80, 0x80, 0x10]),
        Err(RecordError::MalformedKeyHeader),
        "beyond u32"
    );
    // One encoding per version: padded varints would let the same record carry two headers.
    for padded in [
        &[FORMAT_V1, 0x87, 0x00][..],
        &[FORMAT_V1, 0x80, 0x00],
        &[FORMAT_V1, 0xac, 0x82, 0x00],
    ] {
        assert_eq!(
            decode_key_header(padded),
            Err(RecordError::MalformedKeyHeader),
            "{padded:02x?} is not minimal"
        );
    }
}

/// A tombstone stays null but is authenticated: its key header carries `nonce || tag` over an
/// empty plaintext under the record's AAD. Moved, re-keyed, under another key or version, or
/// with any bit flipped, it fails; a record's value can never pass for it.
#[test]
fn tombstones_are_authenticated_for_their_location_key_and_version() {
    let sealer = PartitionSealer::new(dek(1), nonces(), ORDERS_0, 9);
    let header = sealer.seal_tombstone(Some(b"customer-7")).unwrap();
    assert_eq!(
        header.len(),
        2 + TOMBSTONE_AUTH_LEN,
        "46 bytes with the 2-byte reference"
    );
    assert_eq!(
        decode_key_header(&header),
        Err(RecordError::MalformedKeyHeader),
        "not a record's"
    );
    let (version, auth) = decode_tombstone_header(&header).unwrap();
    assert_eq!(version, 9);
    let check =
        |key: &dyn PreparedKey, location, version, record_key: Option<&[u8]>, auth: &[u8]| {
            open_tombstone(key, location, version, record_key, auth)
        };
    assert_eq!(
        check(dek(1).as_ref(), ORDERS_0, 9, Some(b"customer-7"), auth),
        Ok(())
    );
    let orders_1 = RecordLocation {
        topic: "orders",
        partition: 1,
    };
    let payments_0 = RecordLocation {
        topic: "payments",
        partition: 0,
    };
    for (what, result) in [
        (
            "another key",
            check(dek(2).as_ref(), ORDERS_0, 9, Some(b"customer-7"), auth),
        ),
        (
            "another partition",
            check(dek(1).as_ref(), orders_1, 9, Some(b"customer-7"), auth),
        ),
        (
            "another topic",
            check(dek(1).as_ref(), payments_0, 9, Some(b"customer-7"), auth),
        ),
        (
            "another version",
            check(dek(1).as_ref(), ORDERS_0, 8, Some(b"customer-7"), auth),
        ),
        (
            "another record key",
            check(dek(1).as_ref(), ORDERS_0, 9, Some(b"customer-8"), auth),
        ),
        (
            "no record key",
            check(dek(1).as_ref(), ORDERS_0, 9, None, auth),
        ),
        (
            "too short",
            check(
                dek(1).as_ref(),
                ORDERS_0,
                9,
                Some(b"customer-7"),
                &auth[..20],
            ),
        ),
    ] {
        assert_eq!(result, Err(RecordError::Authentication), "{what}");
    }
    for byte in 0..auth.len() {
        let mut flipped = auth.to_vec();
        flipped[byte] ^= 0x04;
        assert_eq!(
            check(dek(1).as_ref(), ORDERS_0, 9, Some(b"customer-7"), &flipped),
            Err(RecordError::Authentication),
            "byte {byte}"
        );
    }
    // A sealed record's value is never a tombstone authenticator (its frame is not empty).
    let value = sealer.seal(Some(b"customer-7"), &[], b"").unwrap();
    assert_eq!(value.len(), TOMBSTONE_AUTH_LEN + 1);
    assert_eq!(
        check(dek(1).as_ref(), ORDERS_0, 9, Some(b"customer-7"), &value),
        Err(RecordError::Authentication)
    );
    assert_eq!(
        decode_tombstone_header(&encode_key_header(9)),
        Err(RecordError::MalformedKeyHeader),
        "a record's header is not a tombstone's"
    );
    assert_eq!(sealer.sealed(), 2, "each seal uses a nonce");
}

#[test]
fn an_exhausted_nonce_sequence_fails_closed() {
    let key = dek(1);
    let seq = NonceSequence::new(2).unwrap();
    for _ in 0..2 {
        seal(key.as_ref(), &seq, ORDERS_0, 1, None, &[], b"x").unwrap();
    }
    assert_eq!(
        seal(key.as_ref(), &seq, ORDERS_0, 1, None, &[], b"x").err(),
        Some(RecordError::Nonce(NonceError::Exhausted { cap: 2 }))
    );
}

/// Payload overhead: nonce (12) + tag (16) + one frame byte when there are no headers; the
/// key header value is 2 bytes for DEK versions below 128. docs/wire-format.md adds Kafka's
/// own framing to get the wire total.
#[test]
fn payload_overhead_is_29_bytes_plus_a_two_byte_key_header() {
    let key = dek(1);
    for len in [0usize, 1, 100, 1024, 100_000] {
        let value = vec![0x5a; len];
        let sealed = seal(
            key.as_ref(),
            &nonces(),
            ORDERS_0,
            1,
            Some(b"k"),
            &[],
            &value,
        )
        .unwrap();
        assert_eq!(
            sealed.value.len(),
            len + 12 + 16 + 1,
            "value of {len} bytes"
        );
        assert_eq!(sealed.key_header.len(), 2);
        // Nothing of the plaintext survives in the sealed value.
        if len >= 16 {
            assert!(!sealed.value.windows(16).any(|w| w == &value[..16]));
        }
    }
}

/// The per-partition sealer produces exactly what `open` (and the one-off `seal`) agree on,
/// for record keys that fit the stack AAD buffer and ones that do not.
#[test]
fn partition_sealer_output_opens_and_binds_the_same_fields() {
    let sealer = PartitionSealer::new(dek(1), nonces(), ORDERS_0, 9);
    assert_eq!(sealer.key_header(), encode_key_header(9).as_slice());
    for record_key in [
        None,
        Some(vec![]),
        Some(vec![b'k'; 10]),
        Some(vec![b'k'; 1000]),
    ] {
        let value = sealer
            .seal(record_key.as_deref(), &sample_headers(), b"payload")
            .unwrap();
        let opened = open(dek(1).as_ref(), ORDERS_0, 9, record_key.as_deref(), &value).unwrap();
        assert_eq!(
            (opened.headers, opened.value),
            (sample_headers(), b"payload".to_vec())
        );
        let moved = open(
            dek(1).as_ref(),
            RecordLocation {
                topic: "orders",
                partition: 1,
            },
            9,
            record_key.as_deref(),
            &value,
        );
        assert_eq!(moved.err(), Some(RecordError::Authentication));
    }
    assert_eq!(sealer.sealed(), 4);
}
