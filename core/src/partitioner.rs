//! Choosing a record's partition before it is encrypted.
//!
//! The partition is part of every record's AAD, so the producer must know it before sealing;
//! it cannot leave the choice to librdkafka. Keyed records land where Apache Kafka's Java
//! client (and librdkafka's `murmur2_random`) would put them: `toPositive(murmur2(key)) % n`.
//! So an encrypted topic co-partitions with plaintext topics written by any Java producer.

use std::sync::atomic::{AtomicU32, Ordering};

/// Apache Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`, little-endian
/// blocks, as the Java client computes it (signed result).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    debug_assert!(partitions > 0);
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partitions.max(1)) as i32
}

/// Spreads unkeyed records over partitions in turn. (The Java client's sticky partitioner
/// batches unkeyed records per partition for throughput; librdkafka batches per partition
/// anyway, so round-robin loses nothing here and keeps partitions even.)
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicU32,
}

impl RoundRobin {
    pub fn next_partition(&self, partitions: u32) -> i32 {
        (self.next.fetch_add(1, Ordering::Relaxed) % partitions.max(1)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's `UtilsTest.testMurmur2` vectors.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keyed_partition_is_positive_hash_modulo_count() {
        // -973932308 & 0x7fffffff = 1173551340; % 7 = 6.
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        for n in 1..50 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n as i32).contains(&p));
        }
    }

    #[test]
    fn round_robin_cycles_through_every_partition() {
        let rr = RoundRobin::default();
        let got: Vec<i32> = (0..6).map(|_| rr.next_partition(3)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }
}
