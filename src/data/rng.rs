//! The random numbers of augmentation and shuffling: xoshiro256++ seeded through SplitMix64.
//!
//! Every image gets its own stream, derived from (seed, epoch, item position), so the same
//! run sees the same augmentations whatever the number of worker threads or the order in
//! which they finish. (Python's split shuffle is reproduced separately in `pyrandom`.)

pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A stream determined by `parts` (e.g. `[seed, epoch, index]`).
    pub fn seeded(parts: &[u64]) -> Rng {
        let mut state = 0x6d65_6466_6d5f_7267u64; // "medfm_rg"
        for &p in parts {
            state ^= p;
            state = splitmix64(&mut state);
        }
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) (`torch.rand(1)`).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi) (`torch.empty(1).uniform_(lo, hi)`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n), unbiased; n >= 1.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n >= 1);
        let zone = u64::MAX - (u64::MAX - n + 1) % n;
        loop {
            let v = self.next_u64();
            if v <= zone {
                return v % n;
            }
        }
    }

    /// Uniform integer in [lo, hi) (`torch.randint(lo, hi)`); hi > lo.
    pub fn int_range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Fisher-Yates shuffle (`torch.randperm` order for a list).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::seeded(&[1, 2, 3]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::seeded(&[1, 2, 3]).next_u64(),
            Rng::seeded(&[1, 2, 4]).next_u64()
        );
        assert_ne!(
            Rng::seeded(&[1, 2]).next_u64(),
            Rng::seeded(&[2, 1]).next_u64()
        );
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::seeded(&[7]);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            let k = r.int_range(-2, 3);
            assert!((-2..3).contains(&k));
            seen[(k + 2) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }
}
