//! Stateless, seedable randomness for the data pipeline: every random choice is a hash of
//! (seed, domain, epoch, position), so a batch is the same whichever worker builds it and a
//! resumed run sees exactly the batches an uninterrupted one would.

/// SplitMix64's finaliser: a good 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small generator seeded from a tuple of values.
pub struct Rng(u64);

impl Rng {
    pub fn from_parts(parts: &[u64]) -> Self {
        Rng(parts.iter().fold(0x5EED_u64, |acc, &p| mix(acc ^ mix(p))))
    }

    /// The generator's whole state, to save it (checkpoints) ...
    pub fn state(&self) -> u64 {
        self.0
    }

    /// ... and to continue from it.
    pub fn from_state(state: u64) -> Self {
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n] (inclusive), like `random.randint(0, n)`.
    pub fn int_inclusive(&mut self, n: u32) -> u32 {
        (self.next_u64() % (n as u64 + 1)) as u32
    }

    /// A Fisher-Yates permutation of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        let a: Vec<u64> = (0..4).map(|_| Rng::from_parts(&[1, 2, 3]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::from_parts(&[1, 2, 3]).next_u64(), Rng::from_parts(&[1, 2, 4]).next_u64());
        let mut r = Rng::from_parts(&[7]);
        let heads = (0..10_000).filter(|_| r.uniform() < 0.5).count();
        assert!((4700..5300).contains(&heads));
        let mut p = Rng::from_parts(&[9]).permutation(100);
        p.sort();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }
}
