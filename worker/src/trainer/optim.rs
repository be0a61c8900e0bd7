//! Minibatch SGD with heavy-ball momentum: v = μ·v + g; w -= lr·v.

use ndarray::Zip;

use super::model::Model;

#[derive(Debug)]
pub(crate) struct Sgd {
    lr: f64,
    momentum: f64,
    /// None for plain SGD: then v = g exactly, and a diverged (infinite) v cannot turn into
    /// 0·∞ = NaN, so the trace shows the same blow-up plain SGD really has.
    velocity: Option<Model>,
}

impl Sgd {
    pub(crate) fn new(lr: f64, momentum: f64, params: &Model) -> Sgd {
        Sgd {
            lr,
            momentum,
            velocity: (momentum != 0.0).then(|| params.zeros_like()),
        }
    }

    pub(crate) fn lr(&self) -> f64 {
        self.lr
    }

    /// Applies one update to `params` from their gradient `grads` (same shapes).
    pub(crate) fn step(&mut self, params: &mut Model, grads: &Model) {
        let (lr, mu) = (self.lr, self.momentum);
        match &mut self.velocity {
            None => {
                for (p, g) in params.layers_mut().zip(grads.layers()) {
                    p.w.scaled_add(-lr, &g.w);
                    p.b.scaled_add(-lr, &g.b);
                }
            }
            Some(velocity) => {
                let layers = params.layers_mut().zip(velocity.layers_mut());
                for ((p, v), g) in layers.zip(grads.layers()) {
                    Zip::from(&mut p.w)
                        .and(&mut v.w)
                        .and(&g.w)
                        .for_each(|p, v, &g| {
                            *v = mu * *v + g;
                            *p -= lr * *v;
                        });
                    Zip::from(&mut p.b)
                        .and(&mut v.b)
                        .and(&g.b)
                        .for_each(|p, v, &g| {
                            *v = mu * *v + g;
                            *p -= lr * *v;
                        });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Layer;
    use super::*;
    use ndarray::{array, Array1, Array2};

    fn single_layer(w: Array2<f64>, b: Array1<f64>) -> Model {
        Model {
            hidden: Vec::new(),
            output: Layer { w, b },
        }
    }

    fn assert_close(got: &Model, want: &Model) {
        for (g, w) in got.layers().zip(want.layers()) {
            let near = |d: f64| d.abs() < 1e-12;
            assert!((&g.w - &w.w).iter().all(|&d| near(d)), "w = {}", g.w);
            assert!((&g.b - &w.b).iter().all(|&d| near(d)), "b = {}", g.b);
        }
    }

    #[test]
    fn momentum_two_steps_by_hand() {
        let mut params = single_layer(array![[1.0, 2.0]], array![0.5]);
        let g1 = single_layer(array![[0.5, -1.0]], array![2.0]);
        let g2 = single_layer(array![[1.0, 1.0]], array![-4.0]);
        let mut sgd = Sgd::new(0.1, 0.9, &params);

        // Step 1: v = g1 = [0.5, -1], 2;  w = [1 - 0.05, 2 + 0.1] = [0.95, 2.1];  b = 0.5 - 0.2.
        sgd.step(&mut params, &g1);
        // Step 2: v = 0.9·g1 + g2 = [1.45, 0.1], -2.2;  w = [0.95 - 0.145, 2.1 - 0.01];
        //         b = 0.3 + 0.22.
        sgd.step(&mut params, &g2);
        assert_close(&params, &single_layer(array![[0.805, 2.09]], array![0.52]));
    }

    #[test]
    fn zero_momentum_is_plain_sgd() {
        let mut params = single_layer(array![[1.0, 2.0]], array![0.5]);
        let g1 = single_layer(array![[0.5, -1.0]], array![2.0]);
        let g2 = single_layer(array![[1.0, 1.0]], array![-4.0]);
        let mut sgd = Sgd::new(0.1, 0.0, &params);
        sgd.step(&mut params, &g1);
        sgd.step(&mut params, &g2);
        // w -= 0.1·(g1 + g2) = [1 - 0.15, 2 - 0.0];  b = 0.5 - 0.1·(-2).
        assert_close(&params, &single_layer(array![[0.85, 2.0]], array![0.7]));
    }
}
