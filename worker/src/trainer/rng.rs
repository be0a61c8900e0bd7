//! A tiny deterministic PRNG (xoshiro256** seeded through SplitMix64). Results must be
//! reproducible from the trainer seed on any worker, so we own the generator rather than depend
//! on a crate whose streams may change between versions.

/// What a random stream is used for. Each purpose gets an independent stream, so that e.g.
/// changing the model's architecture (more init draws) does not change the minibatch order.
/// The discriminants are part of the reproducibility contract: never renumber them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    /// Which rows go to validation.
    Split = 1,
    /// The order of the training split that replicate subsets are cut from.
    TrainOrder = 2,
    /// Weight initialisation.
    Init = 3,
    /// Minibatch order.
    Batches = 4,
    /// Generated datasets.
    Synthetic = 5,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective avalanche mix of one word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman & Vigna).
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The stream for `purpose` under `seed`; `index` separates e.g. replicates.
    pub(crate) fn new(seed: u64, purpose: Stream, index: u64) -> Rng {
        // Hash the words into one SplitMix64 state, then expand it into xoshiro's 256-bit state
        // as its authors recommend (consecutive SplitMix64 outputs are never all zero).
        let mut h = 0;
        for word in [seed, purpose as u64, index] {
            h = mix(h ^ mix(word.wrapping_add(GOLDEN_GAMMA)));
        }
        let mut s = [0; 4];
        for slot in &mut s {
            h = h.wrapping_add(GOLDEN_GAMMA);
            *slot = mix(h);
        }
        Rng { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits (every value is an exact f64).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box–Muller (the second variate is dropped to keep no state).
    pub(crate) fn normal(&mut self) -> f64 {
        // 1 - uniform lies in (0, 1], so the log is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        r * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Uniform in 0..n (n > 0). Multiply-shift: the bias is below n / 2^64, negligible for
    /// dataset-sized n.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_reference_outputs() {
        // Reference outputs of xoshiro256** from state {1, 2, 3, 4}.
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let draw = |seed, purpose, index| {
            let mut rng = Rng::new(seed, purpose, index);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, Stream::Init, 1), draw(7, Stream::Init, 1));
        assert_ne!(draw(7, Stream::Init, 1), draw(8, Stream::Init, 1));
        assert_ne!(draw(7, Stream::Init, 1), draw(7, Stream::Batches, 1));
        assert_ne!(draw(7, Stream::Init, 1), draw(7, Stream::Init, 2));
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut rng = Rng::new(1, Stream::Init, 0);
        let n = 100_000;
        let u: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean_u = u.iter().sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.01, "uniform mean {mean_u}");

        let z: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "normal mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "normal variance {var}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_mixes() {
        let mut rng = Rng::new(3, Stream::Batches, 0);
        let mut v: Vec<usize> = (0..1000).collect();
        rng.shuffle(&mut v);
        let fixed = v.iter().enumerate().filter(|&(i, &x)| i == x).count();
        assert!(fixed < 10, "{fixed} fixed points");
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }
}
