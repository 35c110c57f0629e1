//! Nonces that never repeat under one DEK, across producers, threads and restarts.
//!
//! A 96-bit AES-GCM nonce is `instance id (8 random bytes) || counter (u32, big endian)`. Each
//! `NonceSequence` draws its instance id from the OS RNG once, so two producers, two threads
//! with their own sequences, or one producer before and after a restart, collide only if two
//! 64-bit random ids collide (about 2^-64 per pair). Within a sequence the counter never
//! repeats: at the cap it fails closed instead of wrapping. No syscall per record.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// The most records one sequence may seal under one DEK (the counter's range).
pub const MAX_RECORDS_PER_DEK: u64 = 1 << 32;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NonceError {
    #[error("this data key has sealed its maximum of {cap} records; a new key version is required")]
    Exhausted { cap: u64 },
    #[error("the system random number generator failed")]
    Rng,
    #[error("a nonce cap of {0} is outside 1..=2^32")]
    InvalidCap(u64),
}

/// Which sealing produced a record: its nonce read as (sequence instance id, counter). Unique
/// per sealing (under one DEK, and across DEKs but for a 2^-64 chance), and authenticated: a
/// record whose nonce was changed does not open. Two records with the same `SealId` are one
/// sealing delivered twice: a replay, or a retry of a non-idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SealId {
    pub sequence: u64,
    pub counter: u32,
}

impl SealId {
    pub fn of_nonce(nonce: &[u8; NONCE_LEN]) -> Self {
        let mut sequence = [0u8; 8];
        let mut counter = [0u8; 4];
        sequence.copy_from_slice(&nonce[..8]);
        counter.copy_from_slice(&nonce[8..]);
        Self {
            sequence: u64::from_be_bytes(sequence),
            counter: u32::from_be_bytes(counter),
        }
    }
}

/// Hands out unique nonces for one DEK. Thread-safe; share it behind an `Arc`.
pub struct NonceSequence {
    instance: [u8; 8],
    next: AtomicU64,
    cap: u64,
}

impl NonceSequence {
    /// A sequence with a fresh random instance id that refuses to go past `cap` records.
    pub fn new(cap: u64) -> Result<Self, NonceError> {
        if cap == 0 || cap > MAX_RECORDS_PER_DEK {
            return Err(NonceError::InvalidCap(cap));
        }
        let mut instance = [0u8; 8];
        SystemRandom::new()
            .fill(&mut instance)
            .map_err(|_| NonceError::Rng)?;
        Ok(Self {
            instance,
            next: AtomicU64::new(0),
            cap,
        })
    }

    /// The next unused nonce, or `Exhausted` once `cap` nonces have been handed out.
    pub fn next_nonce(&self) -> Result<[u8; NONCE_LEN], NonceError> {
        // fetch_add on a u64 cannot wrap in practice (2^64 calls); the cap check is exact.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.cap {
            return Err(NonceError::Exhausted { cap: self.cap });
        }
        let counter = u32::try_from(n).map_err(|_| NonceError::Exhausted { cap: self.cap })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&self.instance);
        nonce[8..].copy_from_slice(&counter.to_be_bytes());
        Ok(nonce)
    }

    /// How many nonces have been handed out (saturating at the cap).
    pub fn used(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn fails_closed_at_the_cap_and_stays_closed() {
        let seq = NonceSequence::new(3).unwrap();
        for _ in 0..3 {
            seq.next_nonce().unwrap();
        }
        for _ in 0..2 {
            assert_eq!(seq.next_nonce(), Err(NonceError::Exhausted { cap: 3 }));
        }
        assert_eq!(seq.used(), 3);
    }

    #[test]
    fn rejects_caps_outside_the_counter_range() {
        assert_eq!(NonceSequence::new(0).err(), Some(NonceError::InvalidCap(0)));
        assert_eq!(
            NonceSequence::new(MAX_RECORDS_PER_DEK + 1).err(),
            Some(NonceError::InvalidCap(MAX_RECORDS_PER_DEK + 1))
        );
        assert!(NonceSequence::new(MAX_RECORDS_PER_DEK).is_ok());
    }

    /// 10^6 nonces from four sequences (four producers, or one producer restarted three
    /// times), half of them drawn concurrently from one shared sequence: all distinct.
    #[test]
    fn a_million_nonces_across_producers_threads_and_restarts_are_unique() {
        let shared = Arc::new(NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let seq = Arc::clone(&shared);
                std::thread::spawn(move || {
                    (0..125_000)
                        .map(|_| seq.next_nonce().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::with_capacity(1_000_000);
        for t in threads {
            for n in t.join().unwrap() {
                assert!(seen.insert(n), "nonce repeated across threads");
            }
        }
        for _restart in 0..4 {
            let seq = NonceSequence::new(MAX_RECORDS_PER_DEK).unwrap();
            for _ in 0..125_000 {
                assert!(
                    seen.insert(seq.next_nonce().unwrap()),
                    "nonce repeated across sequences"
                );
            }
        }
        assert_eq!(seen.len(), 1_000_000);
    }
}
