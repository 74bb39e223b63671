//! A small deterministic pseudo-random generator (SplitMix64) for election timeouts.
//!
//! The core must replay bit for bit from a seed, so it takes no randomness from the outside world:
//! each node derives its generator from `Config::seed` and its own id.

/// SplitMix64 (Steele, Lea, Flood 2014): one u64 of state, full period, good enough to spread
/// election timeouts; not for cryptography.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for node `id` in a run seeded with `seed`: different nodes draw different timeouts.
    ///
    /// Seed and id are each scrambled before they are combined: SplitMix64 steps its state by a
    /// constant, so two states that differ by a small multiple of it (as `seed ^ id * constant` did
    /// for many small seeds) give the same stream shifted by a few draws, and two nodes could then
    /// time out in lockstep forever, splitting every vote.
    pub fn for_node(seed: u64, id: u64) -> Self {
        let mut seed_state = seed;
        let mut id_state = id ^ 0x6A09_E667_F3BC_C908;
        Rng {
            state: splitmix64(&mut seed_state) ^ splitmix64(&mut id_state),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }

    /// A value in `[low, high)`; `high` must be greater than `low`.
    pub fn in_range(&mut self, low: u64, high: u64) -> u64 {
        assert!(high > low, "empty range [{low}, {high})");
        low + self.next_u64() % (high - low)
    }
}

/// One SplitMix64 step: advances `state` and returns the next 64 random bits. Shared with the
/// simulator, whose generators keep their own state and stream-forking rules.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
