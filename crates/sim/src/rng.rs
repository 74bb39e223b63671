//! The simulator's only source of randomness: a seeded SplitMix64 generator.
//!
//! Invariant: every random choice in a run comes from a `SimRng` derived from the run's seed, so a
//! seed replays bit for bit. Independent concerns (the swarm's fault mix, the run itself) use
//! separate streams (`fork`), so drawing more numbers in one does not shift the other.

/// SplitMix64 (the core's `splitmix64` step) with the simulator's seeding and stream forking.
#[derive(Clone, Debug)]
pub struct SimRng {
    /// The generator's whole state.
    state: u64,
}

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = SimRng {
            state: seed ^ 0x5EED_5EED_5EED_5EED,
        };
        rng.next_u64();
        rng
    }

    /// An independent generator for sub-stream `stream` of this one's seed.
    pub fn fork(&self, stream: u64) -> Self {
        SimRng::new(self.state ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        raftkv_raft::splitmix64(&mut self.state)
    }

    /// A value in `[low, high]` (inclusive); `low` when the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low + 1;
        if span == 0 {
            return self.next_u64();
        }
        low + self.next_u64() % span
    }

    /// A value in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p` (clamped to [0, 1]).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits give a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// A uniformly chosen element of `items`, if any.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.below(items.len())])
    }

    /// A probability drawn from `choices` (the swarm's way of mixing "none", "some" and "a lot").
    pub fn pick_f64(&mut self, choices: &[f64]) -> f64 {
        self.pick(choices).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn range_stays_inside() {
        let mut rng = SimRng::new(1);
        for _ in 0..1000 {
            let v = rng.range(3, 9);
            assert!((3..=9).contains(&v));
            assert!(rng.below(5) < 5);
        }
    }
}
