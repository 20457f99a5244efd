//! A worker's own random numbers: xorshift64*, a few instructions a draw, in a `Cell`
//! because each worker owns its generator and nothing crosses threads. For spreading load
//! (the benchmark routes' random ids, the pauses after a 503), never for secrets.

use std::cell::Cell;

pub(crate) struct Rng(Cell<u64>);

impl Rng {
    /// Worker `worker`'s generator from the process's random seed: distinct per worker, and
    /// never the all-zero state xorshift cannot leave.
    pub(crate) fn for_worker(seed: u64, worker: usize) -> Rng {
        Rng(Cell::new((seed ^ ((worker as u64) << 32)) | 1))
    }

    /// The next 64 bits (xorshift64*: the high bits are the best).
    pub(crate) fn next_u64(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A fraction in [0, 1), from the top 32 bits.
    pub(crate) fn fraction(&self) -> f64 {
        (self.next_u64() >> 32) as f64 / (1u64 << 32) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_draw_different_sequences_and_fractions_stay_in_range() {
        let (a, b) = (Rng::for_worker(7, 0), Rng::for_worker(7, 1));
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
        assert!(Rng::for_worker(0, 0).next_u64() != 0, "the zero seed still moves");
        assert!((0..10_000).map(|_| a.fraction()).all(|f| (0.0..1.0).contains(&f)));
    }
}
