//! Keys and values: a small deterministic PRNG, zero-padded decimal keys, filler values.

use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64: tiny, fast and good enough to spread keys; not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed that differs per run and per worker.
    pub fn seeded_for(worker: u64) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng::new(now ^ worker.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (bias below 2^-64 * n, negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Number of decimal digits needed to write every index below `space`.
fn digits(space: u64) -> usize {
    let mut max = space.saturating_sub(1);
    let mut d = 1;
    while max >= 10 {
        max /= 10;
        d += 1;
    }
    d
}

/// Generates keys `0..key_space_size` as zero-padded decimal strings of exactly `key_size`
/// bytes, so they sort numerically and are readable in `etcdctl get`.
#[derive(Debug, Clone)]
pub struct KeyGen {
    size: usize,
    space: u64,
}

impl KeyGen {
    /// Fails when `size` is too small to write every index of the key space.
    pub fn new(size: usize, space: u64) -> Result<Self, String> {
        if space == 0 {
            return Err("--key-space-size must be at least 1".into());
        }
        let need = digits(space);
        if size < need {
            return Err(format!(
                "--key-size {size} is too small for --key-space-size {space}: keys are \
                 zero-padded decimal and need at least {need} bytes"
            ));
        }
        Ok(KeyGen { size, space })
    }

    pub fn space(&self) -> u64 {
        self.space
    }

    /// The key of index `i` (taken modulo the key space).
    pub fn key(&self, i: u64) -> Vec<u8> {
        format!("{:0width$}", i % self.space, width = self.size).into_bytes()
    }

    /// Key for request number `op`: sequential (`op` modulo the space) or uniformly random.
    pub fn pick(&self, op: u64, sequential: bool, rng: &mut Rng) -> Vec<u8> {
        if sequential {
            self.key(op)
        } else {
            self.key(rng.below(self.space))
        }
    }

    /// `n` distinct random keys (n <= key space), for a transaction's puts: etcd refuses a
    /// txn that puts the same key twice.
    pub fn distinct(&self, n: u64, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut picked: Vec<u64> = Vec::with_capacity(n as usize);
        while (picked.len() as u64) < n.min(self.space) {
            let i = rng.below(self.space);
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.into_iter().map(|i| self.key(i)).collect()
    }
}

/// A printable value of `size` bytes, fixed for the run (like etcd's benchmark).
pub fn value(size: usize, rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}

/// The exclusive end of the range of keys that start with `prefix` (etcd's `GetPrefixRangeEnd`):
/// increment the last byte below 0xff and cut after it; all 0xff (or empty) means "to the end",
/// written as a single zero byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_decimal_of_exact_size() {
        let g = KeyGen::new(8, 1000).unwrap();
        assert_eq!(g.key(0), b"00000000");
        assert_eq!(g.key(999), b"00000999");
        assert_eq!(g.key(1000), b"00000000", "wraps modulo the key space");
        assert!(KeyGen::new(3, 1000).is_ok());
        assert!(KeyGen::new(2, 1000).is_err());
        assert!(KeyGen::new(3, 1001).is_err());
        assert!(KeyGen::new(1, 1).is_ok());
        assert!(KeyGen::new(8, 0).is_err());
    }

    #[test]
    fn sequential_keys_cycle_and_random_keys_stay_in_the_space() {
        let g = KeyGen::new(4, 10).unwrap();
        let mut rng = Rng::new(7);
        let seq: Vec<_> = (0..12).map(|i| g.pick(i, true, &mut rng)).collect();
        assert_eq!(seq[0], b"0000");
        assert_eq!(seq[9], b"0009");
        assert_eq!(seq[10], b"0000");
        let mut seen = [0u32; 10];
        for i in 0..10_000 {
            let k = g.pick(i, false, &mut rng);
            let n: usize = std::str::from_utf8(&k).unwrap().parse().unwrap();
            seen[n] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn distinct_keys_are_distinct() {
        let g = KeyGen::new(2, 5).unwrap();
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let mut ks = g.distinct(5, &mut rng);
            ks.sort();
            ks.dedup();
            assert_eq!(ks.len(), 5);
        }
    }

    #[test]
    fn rng_unit_and_values() {
        let mut rng = Rng::new(3);
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        let v = value(16, &mut rng);
        assert_eq!(v.len(), 16);
        assert!(v.iter().all(u8::is_ascii_alphanumeric));
    }

    #[test]
    fn prefix_end_matches_etcd() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
