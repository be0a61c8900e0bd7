//! Reconnect delays: capped exponential backoff with jitter, as a small state machine.

use std::time::Duration;

use lrsweep_proto::rng::SplitMix64;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    /// Jitter only needs to differ between workers, not be unpredictable.
    jitter: SplitMix64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
            jitter: SplitMix64::new(seed),
        }
    }

    /// After a successful connection the next failure starts from the base delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt: base·2^failures capped at max, then scaled by a
    /// random factor in [0.5, 1] so that many workers cut off together do not return together.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        exp.mul_f64(0.5 + 0.5 * self.jitter.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(base, max, 7);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = base.saturating_mul(1 << i).min(max);
            assert!(*d <= ceiling && *d >= ceiling / 2, "delay {i} = {d:?}");
        }
        assert!(delays[9] >= max / 2);
        assert_eq!(b.failures(), 10);
        b.reset();
        assert!(b.next_delay() <= base);
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let d =
            |seed| Backoff::new(Duration::from_secs(1), Duration::from_secs(1), seed).next_delay();
        assert_ne!(d(1), d(2));
    }
}
