//! The per-process secret that keys the rate limiter's hash, so that nobody outside can aim collisions.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// A 384-bit secret made once at start and shared (copied) by every worker, so that all workers place a
/// source in the same bucket position of their own tables (which keeps benches and logs comparable) while
/// no sender can predict where.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GuardKey([u64; 6]);

impl GuardKey {
    /// A fresh secret from the operating system's randomness (through std's `RandomState`, whose SipHash
    /// keys are seeded from `getrandom`; no file, no error path).
    pub fn random() -> Self {
        let mut words = [0u64; 6];
        for (index, word) in words.iter_mut().enumerate() {
            // Every `RandomState` has its own keys; hashing a counter through it gives an unpredictable word.
            *word = RandomState::new().hash_one(index as u64 ^ 0x9e37_79b9_7f4a_7c15);
        }
        GuardKey(words)
    }

    /// A key from fixed words, for tests and benches that need the same placement on every run.
    pub fn from_words(words: [u64; 6]) -> Self {
        GuardKey(words)
    }

    /// Keyed 64-bit hash of an IPv4 prefix (host bits already cleared).
    #[inline]
    pub(crate) fn hash_v4(&self, prefix: u32) -> u64 {
        let k = &self.0;
        finish(folded_multiply(u64::from(prefix) ^ k[4], k[5]), k)
    }

    /// Keyed 64-bit hash of an IPv6 prefix (host bits already cleared). IPv4 and IPv6 use different key
    /// words, so no IPv6 prefix hashes like an IPv4 one by construction.
    #[inline]
    pub(crate) fn hash_v6(&self, prefix: u128) -> u64 {
        let k = &self.0;
        let (high, low) = ((prefix >> 64) as u64, prefix as u64);
        finish(folded_multiply(low ^ k[0], high ^ k[1]), k)
    }
}

impl std::fmt::Debug for GuardKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardKey(..)")
    }
}

/// Second round: mixes the first round's word with two more key words, so that every output bit depends
/// on every input bit and on the whole key.
#[inline]
fn finish(first: u64, k: &[u64; 6]) -> u64 {
    folded_multiply(first ^ k[2], k[3] | 1)
}

/// The full 128-bit product of `a` and `b`, its two halves xored (the mixing step of wyhash and foldhash).
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_differ_and_hide_themselves() {
        let (a, b) = (GuardKey::random(), GuardKey::random());
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "GuardKey(..)");
        assert_ne!(a.hash_v4(0x0a00_0001), b.hash_v4(0x0a00_0001));
    }

    #[test]
    fn hashes_spread_neighbouring_prefixes() {
        let key = GuardKey::random();
        let mut seen = std::collections::HashSet::new();
        for n in 0..10_000u32 {
            assert!(seen.insert(key.hash_v4(n << 8)));
            assert!(seen.insert(key.hash_v6(u128::from(n) << 72)));
        }
        // The high bits pick a set: neighbouring prefixes must not pile into a few of them.
        let mut sets = [0u32; 64];
        for n in 0..64_000u32 {
            sets[(key.hash_v4(n) >> 58) as usize] += 1;
            sets[(key.hash_v6(u128::from(n) << 72) >> 58) as usize] += 1;
        }
        assert!(
            sets.iter().all(|&count| (1600..2400).contains(&count)),
            "{sets:?}"
        );
    }
}
