//! Seal-path benchmark (docs/performance.md). Run: `cargo bench -p kafka-e2ee-core --bench seal`.
//!
//! Machines here are noisy, so every number is a ratio of two measurements taken back to back,
//! interleaved, repeated PAIRS times; the median ratio is reported.
//! 1. envelope seal (PartitionSealer::seal: nonce, frame, AAD, AEAD) / bare aws-lc-rs AES-256-GCM seal of
//!    the same bytes into a fresh buffer, at 100 B and 1 KiB;
//! 2. ring / aws-lc-rs for the bare AES-256-GCM seal, and for the envelope seal through each
//!    `cryptoLibrary` (the engine choice);
//! 3. envelope open (open_with_scratch: AAD, AEAD, frame parse, the value returned in its own
//!    buffer) / bare aws-lc-rs AES-256-GCM open of the same payload copied into a fresh buffer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::hint::black_box;
use std::time::Instant;

use kafka_e2ee_core::engine::{Aes256Gcm, EncryptionEngine, PreparedKey, RingAes256Gcm};
use kafka_e2ee_core::nonce::{MAX_RECORDS_PER_DEK, NonceSequence};
use kafka_e2ee_core::record::{PartitionSealer, RecordLocation, aad, open_with_scratch};
use kafka_e2ee_core::secret::KeyMaterial;

const PAIRS: usize = 21;
const LOC: RecordLocation<'static> = RecordLocation {
    topic: "orders",
    partition: 3,
};

fn time_per_op(iters: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One bare aws-lc-rs AES-256-GCM seal into a fresh buffer: the baseline.
fn bare_seal(
    key: &aws_lc_rs::aead::LessSafeKey,
    counter: u32,
    aad: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&counter.to_be_bytes());
    let mut buf = Vec::with_capacity(payload.len() + 16);
    buf.extend_from_slice(payload);
    let tag = key
        .seal_in_place_separate_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aws_lc_rs::aead::Aad::from(aad),
            &mut buf,
        )
        .unwrap();
    buf.extend_from_slice(tag.as_ref());
    buf
}

/// One bare aws-lc-rs AES-256-GCM open of `sealed` (ciphertext and tag), copied into a fresh
/// buffer as the baseline consumer would: the plaintext is that buffer, truncated.
fn bare_open(key: &aws_lc_rs::aead::LessSafeKey, sealed: &[u8]) -> Vec<u8> {
    let mut buf = sealed.to_vec();
    let len = key
        .open_in_place(
            aws_lc_rs::aead::Nonce::assume_unique_for_key([0u8; 12]),
            aws_lc_rs::aead::Aad::empty(),
            &mut buf,
        )
        .unwrap()
        .len();
    buf.truncate(len);
    buf
}

/// `--profile envelope|bare SIZE ITERS`: only one side, for `valgrind --tool=callgrind`
/// (instruction counts are stable on a noisy machine; docs/performance.md).
fn profile(args: &[String], sealer: &PartitionSealer, lc_key: &aws_lc_rs::aead::LessSafeKey) {
    let side = args[0].as_str();
    let size: usize = args[1].parse().unwrap();
    let iters: u32 = args[2].parse().unwrap();
    let payload = vec![0x5au8; size];
    let record_key = b"customer-000042".to_vec();
    for i in 0..iters {
        match side {
            "envelope" => {
                black_box(
                    sealer
                        .seal(Some(&record_key), &[], black_box(&payload))
                        .unwrap(),
                );
            }
            "bare" => {
                black_box(bare_seal(lc_key, i, &[], black_box(&payload)));
            }
            other => panic!("unknown side {other}"),
        }
    }
}

fn main() {
    let key_bytes = [7u8; 32];
    let prepare = || {
        Aes256Gcm
            .prepare(&KeyMaterial::from_vec(key_bytes.to_vec()))
            .unwrap()
    };
    // The sealer's DEK, and the same key again for opening what it seals.
    let dek = prepare();
    let sealer = PartitionSealer::new(
        prepare(),
        NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap(),
        LOC,
        1,
    );
    // The same envelope through ring (`cryptoLibrary: ring`).
    let ring_sealer = PartitionSealer::new(
        RingAes256Gcm
            .prepare(&KeyMaterial::from_vec(key_bytes.to_vec()))
            .unwrap(),
        NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap(),
        LOC,
        1,
    );
    let lc_key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key_bytes).unwrap(),
    );
    let ring_key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key_bytes).unwrap(),
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        profile(&args[i + 1..], &sealer, &lc_key);
        return;
    }
    let record_key = b"customer-000042".to_vec();
    // The AAD the envelope binds for this record: how much of the ratio is the binding itself.
    let envelope_aad = aad(LOC, 1, Some(&record_key));

    println!(
        "| payload | envelope ns | bare aws-lc-rs ns | envelope / bare (median of {PAIRS}) | bare with the envelope's AAD / bare | ring ns | ring / aws-lc-rs (median of {PAIRS}) | envelope with ring / with aws-lc-rs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut open_rows = Vec::new();
    for size in [100usize, 1024] {
        let payload = vec![0x5au8; size];
        let iters = if size < 512 { 200_000 } else { 100_000 };
        open_rows.push(open_row(
            &sealer,
            dek.as_ref(),
            &lc_key,
            &record_key,
            &payload,
            iters,
        ));
        let (mut env_ratio, mut ring_ratio, mut aad_ratio, mut env_ns, mut bare_ns, mut ring_ns) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut ring_env_ratio = vec![];
        let mut counter: u32 = 0;
        for _ in 0..PAIRS {
            let e = time_per_op(iters, || {
                black_box(
                    sealer
                        .seal(Some(&record_key), &[], black_box(&payload))
                        .unwrap(),
                );
            });
            let b = time_per_op(iters, || {
                counter = counter.wrapping_add(1);
                black_box(bare_seal(&lc_key, counter, &[], black_box(&payload)));
            });
            let a = time_per_op(iters, || {
                counter = counter.wrapping_add(1);
                black_box(bare_seal(
                    &lc_key,
                    counter,
                    &envelope_aad,
                    black_box(&payload),
                ));
            });
            let r = time_per_op(iters, || {
                counter = counter.wrapping_add(1);
                let mut nonce = [0u8; 12];
                nonce[8..].copy_from_slice(&counter.to_be_bytes());
                let mut buf = Vec::with_capacity(size + 16);
                buf.extend_from_slice(black_box(&payload));
                let tag = ring_key
                    .seal_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::empty(),
                        &mut buf,
                    )
                    .unwrap();
                buf.extend_from_slice(tag.as_ref());
                black_box(buf);
            });
            let re = time_per_op(iters, || {
                black_box(
                    ring_sealer
                        .seal(Some(&record_key), &[], black_box(&payload))
                        .unwrap(),
                );
            });
            ring_env_ratio.push(re / e);
            env_ratio.push(e / b);
            ring_ratio.push(r / b);
            aad_ratio.push(a / b);
            env_ns.push(e);
            bare_ns.push(b);
            ring_ns.push(r);
        }
        println!(
            "| {size} B | {:.0} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |",
            median(env_ns),
            median(bare_ns),
            median(env_ratio),
            median(aad_ratio),
            median(ring_ns),
            median(ring_ratio),
            median(ring_env_ratio)
        );
    }
    println!();
    println!(
        "| payload | envelope open ns | bare aws-lc-rs open ns | envelope open / bare open (median of {PAIRS}) |"
    );
    println!("|---|---|---|---|");
    for row in open_rows {
        println!("{row}");
    }
}

/// Envelope open vs bare open of one payload size, as a table row.
fn open_row(
    sealer: &PartitionSealer,
    dek: &dyn PreparedKey,
    lc_key: &aws_lc_rs::aead::LessSafeKey,
    record_key: &[u8],
    payload: &[u8],
    iters: u32,
) -> String {
    let sealed = sealer.seal(Some(record_key), &[], payload).unwrap();
    let bare_sealed = bare_seal(lc_key, 0, &[], payload);
    let mut scratch = Vec::new();
    let (mut ratio, mut env_ns, mut bare_ns) = (vec![], vec![], vec![]);
    for _ in 0..PAIRS {
        let e = time_per_op(iters, || {
            let opened = open_with_scratch(
                dek,
                LOC,
                1,
                Some(record_key),
                black_box(&sealed),
                &mut scratch,
            )
            .unwrap();
            black_box(opened);
        });
        let b = time_per_op(iters, || {
            black_box(bare_open(lc_key, black_box(&bare_sealed)));
        });
        ratio.push(e / b);
        env_ns.push(e);
        bare_ns.push(b);
    }
    format!(
        "| {} B | {:.0} | {:.0} | {:.3} |",
        payload.len(),
        median(env_ns),
        median(bare_ns),
        median(ratio)
    )
}
