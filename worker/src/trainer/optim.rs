//! Optimizers on the flat parameter vector, each a direction rule (the gradient, momentum or
//! Nesterov, Adam) times a rate rule (the schedule's value, or hypergradient descent adapting
//! it). SGD-HD, SGDN-HD and Adam-HD are the hypergradient rate on the plain, Nesterov and Adam
//! directions (Baydin et al. 2018, method.md §3), so each formula is written once.

use lrsweep_proto::domain::OptimizerSpec;

/// Turns the gradient g_t into the step direction d_t.
#[derive(Debug)]
enum Direction {
    /// d = g. Plain SGD keeps no velocity: a diverged (infinite) gradient cannot turn into
    /// 0·∞ = NaN, so the trace shows the same blow-up plain SGD really has.
    Gradient,
    /// v = μ·v + g; d = v (heavy ball) or d = g + μ·v (Nesterov).
    Momentum {
        mu: f64,
        nesterov: bool,
        velocity: Vec<f64>,
    },
    /// m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²; d = m̂/(√v̂ + ε) with the bias
    /// corrections m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t).
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        m: Vec<f64>,
        v: Vec<f64>,
        /// β1^t and β2^t, kept as running products.
        beta1_t: f64,
        beta2_t: f64,
    },
}

impl Direction {
    fn momentum(mu: f64, nesterov: bool, parameters: usize) -> Direction {
        if mu == 0.0 {
            return Direction::Gradient;
        }
        Direction::Momentum {
            mu,
            nesterov,
            velocity: vec![0.0; parameters],
        }
    }

    fn adam(beta1: f64, beta2: f64, eps: f64, parameters: usize) -> Direction {
        Direction::Adam {
            beta1,
            beta2,
            eps,
            m: vec![0.0; parameters],
            v: vec![0.0; parameters],
            beta1_t: 1.0,
            beta2_t: 1.0,
        }
    }

    /// Overwrites the gradient `g` with this step's direction, advancing the state.
    fn apply(&mut self, g: &mut [f64]) {
        match self {
            Direction::Gradient => {}
            Direction::Momentum {
                mu,
                nesterov,
                velocity,
            } => {
                for (g, v) in g.iter_mut().zip(velocity.iter_mut()) {
                    *v = *mu * *v + *g;
                    *g = if *nesterov { *g + *mu * *v } else { *v };
                }
            }
            Direction::Adam {
                beta1,
                beta2,
                eps,
                m,
                v,
                beta1_t,
                beta2_t,
            } => {
                *beta1_t *= *beta1;
                *beta2_t *= *beta2;
                let (c1, c2) = (1.0 - *beta1_t, 1.0 - *beta2_t);
                for ((g, m), v) in g.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = *beta1 * *m + (1.0 - *beta1) * *g;
                    *v = *beta2 * *v + (1.0 - *beta2) * *g * *g;
                    *g = (*m / c1) / ((*v / c2).sqrt() + *eps);
                }
            }
        }
    }
}

/// Hypergradient descent on the rate: α_t = α_{t−1} + β·⟨g_t, d_{t−1}⟩, before the step.
#[derive(Debug)]
struct Hypergradient {
    /// β.
    hypergrad_lr: f64,
    /// α_{t−1}; starts at the trial's rate.
    lr: f64,
    /// d_{t−1}; zero before the first step, which therefore uses α_0 unchanged.
    previous: Vec<f64>,
}

#[derive(Debug)]
pub(crate) struct Optimizer {
    direction: Direction,
    weight_decay: f64,
    /// Some for the HD variants, which ignore the schedule.
    hypergradient: Option<Hypergradient>,
}

impl Optimizer {
    /// The optimizer `spec` for `parameters` parameters; `lr` is the hypergradient variants'
    /// initial rate α_0 (fixed-rate optimizers take their rate at every step).
    pub(crate) fn new(spec: &OptimizerSpec, lr: f64, parameters: usize) -> Optimizer {
        let direction = match *spec {
            OptimizerSpec::Sgd {
                momentum, nesterov, ..
            } => Direction::momentum(momentum, nesterov, parameters),
            OptimizerSpec::SgdHd { .. } => Direction::Gradient,
            OptimizerSpec::SgdnHd { momentum, .. } => {
                Direction::momentum(momentum, true, parameters)
            }
            OptimizerSpec::Adam {
                beta1, beta2, eps, ..
            }
            | OptimizerSpec::AdamHd {
                beta1, beta2, eps, ..
            } => Direction::adam(beta1, beta2, eps, parameters),
        };
        Optimizer {
            direction,
            weight_decay: spec.weight_decay(),
            hypergradient: spec.hypergrad_lr().map(|hypergrad_lr| Hypergradient {
                hypergrad_lr,
                lr,
                previous: vec![0.0; parameters],
            }),
        }
    }

    /// One update of `params` from their gradient `grad` (same layout), which is used up as
    /// scratch. `scheduled_lr` is this step's rate for fixed-rate optimizers. Returns the rate
    /// the update used.
    pub(crate) fn step(&mut self, params: &mut [f64], grad: &mut [f64], scheduled_lr: f64) -> f64 {
        let wd = self.weight_decay;
        // Skipped at 0, so that a diverged (infinite) weight cannot make the gradient 0·∞ = NaN.
        if wd != 0.0 {
            for (g, p) in grad.iter_mut().zip(params.iter()) {
                *g += wd * *p;
            }
        }
        let lr = match &mut self.hypergradient {
            None => scheduled_lr,
            Some(hd) => {
                // One dot product over all parameters, with this step's gradient.
                let mut dot = 0.0;
                for (g, d) in grad.iter().zip(&hd.previous) {
                    dot += g * d;
                }
                hd.lr += hd.hypergrad_lr * dot;
                hd.lr
            }
        };
        self.direction.apply(grad);
        for (p, d) in params.iter_mut().zip(grad.iter()) {
            *p -= lr * *d;
        }
        if let Some(hd) = &mut self.hypergradient {
            hd.previous.copy_from_slice(grad);
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every test starts at w = [1, 2] and sees the gradients g1 = [0.5, −1], g2 = [1, −0.5].
    const G1: [f64; 2] = [0.5, -1.0];
    const G2: [f64; 2] = [1.0, -0.5];

    /// Two steps of `spec` at scheduled rate 0.1 (also α_0): the final weights and both rates.
    fn two_steps(spec: OptimizerSpec) -> ([f64; 2], [f64; 2]) {
        let mut w = [1.0, 2.0];
        let mut optim = Optimizer::new(&spec, 0.1, 2);
        let mut rates = [0.0; 2];
        for (rate, g) in rates.iter_mut().zip([G1, G2]) {
            let mut g = g;
            *rate = optim.step(&mut w, &mut g, 0.1);
        }
        (w, rates)
    }

    fn assert_close(got: [f64; 2], want: [f64; 2]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> OptimizerSpec {
        OptimizerSpec::Sgd {
            momentum,
            nesterov,
            weight_decay,
        }
    }

    #[test]
    fn sgd_two_steps_by_hand() {
        // w −= 0.1·g1 → [0.95, 2.1]; w −= 0.1·g2 → [0.85, 2.15].
        let (w, rates) = two_steps(sgd(0.0, false, 0.0));
        assert_close(w, [0.85, 2.15]);
        assert_eq!(rates, [0.1, 0.1]);
    }

    #[test]
    fn momentum_two_steps_by_hand() {
        // v = g1 = [0.5, −1] → w = [0.95, 2.1];
        // v = 0.9·v + g2 = [1.45, −1.4] → w = [0.95 − 0.145, 2.1 + 0.14].
        let (w, _) = two_steps(sgd(0.9, false, 0.0));
        assert_close(w, [0.805, 2.24]);
    }

    #[test]
    fn nesterov_two_steps_by_hand() {
        // v = [0.5, −1], d = g1 + 0.9·v = [0.95, −1.9] → w = [0.905, 2.19];
        // v = [1.45, −1.4], d = g2 + 0.9·v = [2.305, −1.76] → w = [0.905 − 0.2305, 2.19 + 0.176].
        let (w, _) = two_steps(sgd(0.9, true, 0.0));
        assert_close(w, [0.6745, 2.366]);
    }

    #[test]
    fn weight_decay_adds_l2_to_the_gradient() {
        // g = g1 + 0.5·[1, 2] = [1, 0] → w = [0.9, 2];
        // g = g2 + 0.5·[0.9, 2] = [1.45, 0.5] → w = [0.9 − 0.145, 2 − 0.05].
        let (w, _) = two_steps(sgd(0.0, false, 0.5));
        assert_close(w, [0.755, 1.95]);
    }

    #[test]
    fn adam_two_steps_by_hand() {
        // Step 1: m̂ = g1, v̂ = g1², d = g1/(|g1| + 1e-8) = [0.99999998, −0.99999999]
        //         → w = [0.900000002, 2.099999999].
        // Step 2: m = 0.9·[0.05, −0.1] + 0.1·g2 = [0.145, −0.14];  m̂ = m/0.19;
        //         v = 0.999·[0.00025, 0.001] + 0.001·g2² = [0.00124975, 0.001249];  v̂ = v/0.001999;
        //         d = m̂/(√v̂ + 1e-8) = [0.965182013614905, −0.932179627018389];  w −= 0.1·d.
        let spec = OptimizerSpec::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let (w, rates) = two_steps(spec);
        assert_close(w, [0.803_481_800_638_509_4, 2.193_217_961_701_839]);
        assert_eq!(rates, [0.1, 0.1]);
    }

    #[test]
    fn sgd_hd_two_steps_by_hand() {
        // Step 1: no previous gradient, α = 0.1 → w = [0.95, 2.1].
        // Step 2: α = 0.1 + 0.01·⟨g2, g1⟩ = 0.1 + 0.01·1 = 0.11 → w = [0.95 − 0.11, 2.1 + 0.055].
        let spec = OptimizerSpec::SgdHd {
            hypergrad_lr: 0.01,
            weight_decay: 0.0,
        };
        let (w, rates) = two_steps(spec);
        assert_close(w, [0.84, 2.155]);
        assert_close(rates, [0.1, 0.11]);
    }

    #[test]
    fn sgdn_hd_two_steps_by_hand() {
        // Step 1: α = 0.1; v = g1, d1 = g1 + 0.9·v = [0.95, −1.9] → w = [0.905, 2.19].
        // Step 2: α = 0.1 + 0.01·⟨g2, d1⟩ = 0.1 + 0.01·1.9 = 0.119;
        //         v = [1.45, −1.4], d2 = [2.305, −1.76] → w = [0.905 − 0.274295, 2.19 + 0.20944].
        let spec = OptimizerSpec::SgdnHd {
            momentum: 0.9,
            hypergrad_lr: 0.01,
            weight_decay: 0.0,
        };
        let (w, rates) = two_steps(spec);
        assert_close(w, [0.630_705, 2.399_44]);
        assert_close(rates, [0.1, 0.119]);
    }

    #[test]
    fn adam_hd_two_steps_by_hand() {
        // Step 1 is Adam's with α = 0.1: u1 = m̂/(√v̂ + ε) = [0.99999998, −0.99999999].
        // Step 2: α = 0.1 + 0.01·⟨g2, u1⟩ = 0.1 + 0.01·1.499999975 = 0.11499999975, then Adam's
        //         second direction [0.965182013614905, −0.932179627018389] times that α.
        let spec = OptimizerSpec::AdamHd {
            hypergrad_lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let (w, rates) = two_steps(spec);
        assert_close(w, [0.789_004_070_675_581_3, 2.207_200_655_874_07]);
        assert_close(rates, [0.1, 0.114_999_999_75]);
    }

    #[test]
    fn fixed_rate_optimizers_follow_the_schedule_and_hd_ignores_it() {
        let mut w = [1.0, 2.0];
        let mut fixed = Optimizer::new(&sgd(0.0, false, 0.0), 0.1, 2);
        assert_eq!(fixed.step(&mut w, &mut G1.clone(), 0.5), 0.5);
        assert_close(w, [0.75, 2.5]);
        let hd = OptimizerSpec::SgdHd {
            hypergrad_lr: 0.01,
            weight_decay: 0.0,
        };
        let mut adaptive = Optimizer::new(&hd, 0.1, 2);
        assert_eq!(adaptive.step(&mut w, &mut G1.clone(), 0.5), 0.1);
    }
}
