//! Linear, logistic and softmax regression, and MLPs with a softmax output. Every parameter
//! lives in one flat vector (layer by layer: weights row-major, then biases), so optimizers are
//! plain element-wise loops and hypergradient descent's dot product spans all parameters at
//! once; layers are 2-D views into it for the matrix products.

use std::ops::Range;

use lrsweep_proto::domain::{Activation, ModelSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Zip};

use super::data::Targets;
use crate::WorkerError;
use lrsweep_proto::rng::Rng;

/// Refuse models beyond this many parameters: a typo in `hidden` must be an error, not an
/// allocation that aborts the worker (params, gradient and optimizer state each hold this many).
const MAX_PARAMETERS: usize = 1 << 25;

/// Where a fully connected layer `x·W + b` keeps its parameters in the flat vector.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dense {
    inputs: usize,
    outputs: usize,
    /// Offset of W (inputs × outputs, row-major).
    w: usize,
    /// Offset of b (outputs values); None for a linear model without intercept.
    b: Option<usize>,
}

impl Dense {
    fn w_range(&self) -> Range<usize> {
        self.w..self.w + self.inputs * self.outputs
    }

    fn b_range(&self) -> Option<Range<usize>> {
        self.b.map(|b| b..b + self.outputs)
    }
}

/// The loss applied to the last layer's outputs z.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Head {
    /// Half mean squared error (1/2n)·Σ(z − y)² on one output.
    Squared,
    /// Mean log-loss of σ(z) against labels 0/1, one output.
    Logistic,
    /// Mean cross-entropy of softmax(z) against class ids.
    Softmax,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Model {
    /// In forward order; the activation follows every layer but the last.
    layers: Vec<Dense>,
    activation: Activation,
    head: Head,
    params: Vec<f64>,
}

/// Buffers of the forward and backward pass for one batch size, kept between steps so a step
/// allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Each layer's output after its activation; the last holds z, then d(loss)/dz.
    outs: Vec<Array2<f64>>,
    /// d(loss)/d(pre-activation) of each hidden layer.
    deltas: Vec<Array2<f64>>,
}

impl Scratch {
    /// Shapes the buffers for `rows` examples through `model`, unless they already are.
    fn fit(&mut self, model: &Model, rows: usize) {
        let shapes = || model.layers.iter().map(|l| (rows, l.outputs));
        if !self.outs.iter().map(Array2::dim).eq(shapes()) {
            self.outs = shapes().map(Array2::zeros).collect();
            let hidden = model.layers.len() - 1;
            self.deltas = shapes().take(hidden).map(Array2::zeros).collect();
        }
    }
}

impl Model {
    /// Builds `spec` (validated) for `features` inputs and the data's `targets`, drawing the
    /// MLP's weights from `rng`. Refuses a model that cannot learn these targets.
    pub(crate) fn new(
        spec: &ModelSpec,
        features: usize,
        targets: Targets,
        rng: &mut Rng,
    ) -> Result<Model, WorkerError> {
        // Models without hidden layers never apply their activation: any value does.
        let (hidden, activation, outputs, head, intercept) = match (spec, targets) {
            (&ModelSpec::Linear { intercept }, Targets::Values) => {
                (&[][..], Activation::Relu, 1, Head::Squared, intercept)
            }
            (&ModelSpec::Logistic { intercept }, Targets::Classes(k)) if k <= 2 => {
                (&[][..], Activation::Relu, 1, Head::Logistic, intercept)
            }
            (ModelSpec::Logistic { .. }, Targets::Classes(k)) => {
                return Err(WorkerError::InvalidTrial(format!(
                    "logistic regression needs labels 0/1, the data has {k} classes: use softmax"
                )))
            }
            (&ModelSpec::Softmax { intercept }, Targets::Classes(k)) => {
                (&[][..], Activation::Relu, k, Head::Softmax, intercept)
            }
            (ModelSpec::Mlp { hidden, activation }, Targets::Classes(k)) => {
                (&hidden[..], *activation, k, Head::Softmax, true)
            }
            (spec, targets) => {
                return Err(WorkerError::InvalidTrial(format!(
                    "model {spec:?} cannot learn {}",
                    match targets {
                        Targets::Classes(_) => "class labels",
                        Targets::Values => "real-valued targets",
                    }
                )))
            }
        };
        let sizes: Vec<usize> = std::iter::once(features)
            .chain(hidden.iter().map(|&h| h as usize))
            .chain(std::iter::once(outputs))
            .collect();
        let too_big = || {
            WorkerError::InvalidTrial(format!(
                "model with layer sizes {sizes:?} exceeds {MAX_PARAMETERS} parameters"
            ))
        };
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        let mut count = 0usize;
        for io in sizes.windows(2) {
            let (inputs, outputs) = (io[0], io[1]);
            let w = count;
            let b = inputs
                .checked_mul(outputs)
                .and_then(|n| n.checked_add(w))
                .ok_or_else(too_big)?;
            count = if intercept {
                b.checked_add(outputs).ok_or_else(too_big)?
            } else {
                b
            };
            if count > MAX_PARAMETERS {
                return Err(too_big());
            }
            layers.push(Dense {
                inputs,
                outputs,
                w,
                b: intercept.then_some(b),
            });
        }

        // Hidden layers: He init keeps the activations' scale through ReLU, LeCun (1/fan_in)
        // through tanh, which is linear near 0. The output layer has no activation after it:
        // LeCun keeps the initial logits moderate. Models without hidden layers are convex and
        // start at zero (uniform softmax, σ = 1/2, prediction 0): a clean, seed-free start.
        let mut params = vec![0.0; count];
        let last = layers.len() - 1;
        if last > 0 {
            let hidden_gain = match activation {
                Activation::Relu => 2.0,
                Activation::Tanh => 1.0,
            };
            for (i, layer) in layers.iter().enumerate() {
                let gain = if i < last { hidden_gain } else { 1.0 };
                let scale = (gain / layer.inputs as f64).sqrt();
                for p in &mut params[layer.w_range()] {
                    *p = scale * rng.normal();
                }
            }
        }
        Ok(Model {
            layers,
            activation,
            head,
            params,
        })
    }

    pub(crate) fn params(&self) -> &[f64] {
        &self.params
    }

    pub(crate) fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }

    fn weights(&self, layer: &Dense) -> ArrayView2<'_, f64> {
        ArrayView2::from_shape((layer.inputs, layer.outputs), &self.params[layer.w_range()])
            .expect("a layer's range holds inputs × outputs values")
    }

    /// Runs batch `x` through every layer into `s.outs`.
    fn forward(&self, x: ArrayView2<f64>, s: &mut Scratch) {
        s.fit(self, x.nrows());
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let (before, rest) = s.outs.split_at_mut(i);
            let input = before.last().map_or(x, |a| a.view());
            let out = &mut rest[0];
            general_mat_mul(1.0, &input, &self.weights(layer), 0.0, out);
            if let Some(b) = layer.b_range() {
                *out += &ArrayView1::from(&self.params[b]);
            }
            if i < last {
                activate(self.activation, out);
            }
        }
    }

    /// Mean loss of batch `x` with targets `y` (class ids or values, one per row).
    pub(crate) fn loss(&self, x: ArrayView2<f64>, y: &[f64]) -> f64 {
        let mut s = Scratch::default();
        self.forward(x, &mut s);
        let z = s.outs.last_mut().expect("a model has at least one layer");
        head_loss(self.head, z, y, false)
    }

    /// Mean loss of batch `x` with targets `y`; writes its gradient with respect to every
    /// parameter into `grad` (same layout as the parameters).
    pub(crate) fn loss_and_grad(
        &self,
        x: ArrayView2<f64>,
        y: &[f64],
        grad: &mut [f64],
        s: &mut Scratch,
    ) -> f64 {
        self.forward(x, s);
        let Scratch { outs, deltas } = s;
        let last = self.layers.len() - 1;
        let loss = head_loss(self.head, &mut outs[last], y, true);
        // Walk back from the output: `delta` is d(loss)/d(pre-activation) of layer i.
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let (below, here) = deltas.split_at_mut(i.min(last));
            let delta = if i == last { &outs[last] } else { &here[0] };
            let input = if i == 0 { x } else { outs[i - 1].view() };
            let mut grad_w = ArrayViewMut2::from_shape(
                (layer.inputs, layer.outputs),
                &mut grad[layer.w_range()],
            )
            .expect("a layer's range holds inputs × outputs values");
            general_mat_mul(1.0, &input.t(), delta, 0.0, &mut grad_w);
            if let Some(b) = layer.b_range() {
                let grad_b = &mut grad[b];
                grad_b.fill(0.0);
                for row in delta.rows() {
                    for (g, d) in grad_b.iter_mut().zip(row) {
                        *g += d;
                    }
                }
            }
            if i > 0 {
                let below = &mut below[i - 1];
                general_mat_mul(1.0, delta, &self.weights(layer).t(), 0.0, below);
                activation_grad(self.activation, below, &outs[i - 1]);
            }
        }
        loss
    }
}

fn activate(activation: Activation, z: &mut Array2<f64>) {
    match activation {
        // A select rather than a branch, so it vectorises; written so NaN stays NaN (f64::max
        // would turn it into 0 and hide a divergence).
        Activation::Relu => z.mapv_inplace(|v| if v < 0.0 { 0.0 } else { v }),
        Activation::Tanh => z.mapv_inplace(f64::tanh),
    }
}

/// Multiplies `delta` by the activation's derivative, written in terms of its output `a`.
fn activation_grad(activation: Activation, delta: &mut Array2<f64>, a: &Array2<f64>) {
    match activation {
        Activation::Relu => Zip::from(delta)
            .and(a)
            .for_each(|d, &a| *d = if a <= 0.0 { 0.0 } else { *d }),
        Activation::Tanh => Zip::from(delta).and(a).for_each(|d, &a| *d *= 1.0 - a * a),
    }
}

/// The head's mean loss over the batch `z` (batch × outputs) against `y`. With `grad`,
/// overwrites `z` with d(mean loss)/dz. Non-finite outputs give a non-finite loss, never a
/// panic.
fn head_loss(head: Head, z: &mut Array2<f64>, y: &[f64], grad: bool) -> f64 {
    let batch = z.nrows() as f64;
    let mut total = 0.0;
    match head {
        Head::Squared => {
            for (z, &y) in z.iter_mut().zip(y) {
                let r = *z - y;
                total += 0.5 * r * r;
                if grad {
                    *z = r / batch;
                }
            }
        }
        Head::Logistic => {
            for (z, &y) in z.iter_mut().zip(y) {
                // −log σ(z) for y = 1 and −log(1 − σ(z)) for y = 0 are both softplus(±z).
                total += softplus((1.0 - 2.0 * y) * *z);
                if grad {
                    *z = (sigmoid(*z) - y) / batch;
                }
            }
        }
        Head::Softmax => {
            for (mut row, &label) in z.axis_iter_mut(Axis(0)).zip(y) {
                let label = label as usize;
                // Log-sum-exp around the row's max so large logits do not overflow.
                let mut max = f64::NEG_INFINITY;
                for &v in row.iter() {
                    max = max.max(v);
                }
                let mut sum = 0.0;
                for &v in row.iter() {
                    sum += (v - max).exp();
                }
                let lse = max + sum.ln();
                total += lse - row[label];
                if grad {
                    for v in row.iter_mut() {
                        *v = (*v - lse).exp() / batch;
                    }
                    row[label] -= 1.0 / batch;
                }
            }
        }
    }
    total / batch
}

/// ln(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    // `x > 0` rather than max(x, 0), so that NaN stays NaN.
    (if x > 0.0 { x } else { 0.0 }) + (-x.abs()).exp().ln_1p()
}

/// 1/(1 + e^−x) without overflow.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_proto::rng::Stream;
    use ndarray::array;

    fn random_x(rows: usize, features: usize) -> Array2<f64> {
        let mut rng = Rng::new(11, Stream::Batches, 0);
        Array2::from_shape_simple_fn((rows, features), || rng.normal())
    }

    fn class_ids(rows: usize, classes: usize) -> Vec<f64> {
        (0..rows).map(|i| ((i * 7 + 3) % classes) as f64).collect()
    }

    /// `spec` with every parameter drawn from N(0, 0.5²): zero init would make the check easy.
    fn randomised(spec: &ModelSpec, features: usize, targets: Targets) -> Model {
        let mut model = Model::new(spec, features, targets, &mut Rng::new(1, Stream::Init, 0))
            .expect("a valid model");
        let mut rng = Rng::new(2, Stream::Init, 0);
        for p in model.params_mut() {
            *p = 0.5 * rng.normal();
        }
        model
    }

    /// Compares the analytic gradient with central differences, parameter by parameter.
    fn check_gradient(mut model: Model, x: &Array2<f64>, y: &[f64]) {
        let mut grad = vec![f64::NAN; model.params().len()];
        model.loss_and_grad(x.view(), y, &mut grad, &mut Scratch::default());
        let h = 1e-5;
        let mut checked = 0;
        for (k, &analytic) in grad.iter().enumerate() {
            let original = model.params()[k];
            model.params_mut()[k] = original + h;
            let plus = model.loss(x.view(), y);
            model.params_mut()[k] = original - h;
            let minus = model.loss(x.view(), y);
            model.params_mut()[k] = original;
            let numeric = (plus - minus) / (2.0 * h);
            let rel = (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(1e-8);
            assert!(
                rel < 1e-5,
                "param {k}: analytic {analytic}, numeric {numeric}, rel {rel}"
            );
            checked += usize::from(analytic.abs() > 1e-6);
        }
        assert!(
            checked * 4 >= grad.len() * 3,
            "only {checked} of {} parameters had a gradient",
            grad.len()
        );
    }

    #[test]
    fn gradient_check_linear_regression_with_intercept() {
        let model = randomised(&ModelSpec::Linear { intercept: true }, 4, Targets::Values);
        assert_eq!(model.params().len(), 5);
        let y: Vec<f64> = (0..6).map(|i| i as f64 - 2.5).collect();
        check_gradient(model, &random_x(6, 4), &y);
    }

    #[test]
    fn gradient_check_linear_regression_without_intercept() {
        let model = randomised(&ModelSpec::Linear { intercept: false }, 4, Targets::Values);
        assert_eq!(model.params().len(), 4, "no bias parameter");
        let y: Vec<f64> = (0..6).map(|i| i as f64 - 2.5).collect();
        check_gradient(model, &random_x(6, 4), &y);
    }

    #[test]
    fn gradient_check_logistic_regression() {
        let spec = ModelSpec::Logistic { intercept: true };
        let model = randomised(&spec, 5, Targets::Classes(2));
        assert_eq!(model.params().len(), 6);
        check_gradient(model, &random_x(7, 5), &class_ids(7, 2));
    }

    #[test]
    fn gradient_check_softmax_regression() {
        let model = randomised(
            &ModelSpec::Softmax { intercept: true },
            5,
            Targets::Classes(3),
        );
        assert_eq!(model.params().len(), 18);
        check_gradient(model, &random_x(4, 5), &class_ids(4, 3));
        let model = randomised(
            &ModelSpec::Softmax { intercept: false },
            5,
            Targets::Classes(3),
        );
        assert_eq!(model.params().len(), 15);
        check_gradient(model, &random_x(4, 5), &class_ids(4, 3));
    }

    #[test]
    fn gradient_check_relu_mlp() {
        let spec = ModelSpec::Mlp {
            hidden: vec![6, 5],
            activation: Activation::Relu,
        };
        let model = randomised(&spec, 4, Targets::Classes(3));
        assert_eq!(model.layers.len(), 3);
        check_gradient(model, &random_x(5, 4), &class_ids(5, 3));
    }

    #[test]
    fn gradient_check_tanh_mlp() {
        let spec = ModelSpec::Mlp {
            hidden: vec![6, 5],
            activation: Activation::Tanh,
        };
        let model = randomised(&spec, 4, Targets::Classes(3));
        check_gradient(model, &random_x(5, 4), &class_ids(5, 3));
    }

    #[test]
    fn scratch_follows_the_batch_size() {
        let spec = ModelSpec::Mlp {
            hidden: vec![3],
            activation: Activation::Tanh,
        };
        let model = randomised(&spec, 4, Targets::Classes(2));
        let mut grad = vec![0.0; model.params().len()];
        let mut s = Scratch::default();
        let (x, y) = (random_x(5, 4), class_ids(5, 2));
        let first = model.loss_and_grad(x.view(), &y, &mut grad, &mut s);
        let small = model.loss_and_grad(x.slice(ndarray::s![..2, ..]), &y[..2], &mut grad, &mut s);
        assert_eq!(s.outs[0].nrows(), 2);
        assert_eq!(model.loss_and_grad(x.view(), &y, &mut grad, &mut s), first);
        assert_eq!(small, model.loss(x.slice(ndarray::s![..2, ..]), &y[..2]));
    }

    #[test]
    fn heads_compute_their_losses_stably() {
        // Squared: residuals 1 and −3 → (1 + 9)/(2·2); gradient r/n.
        let mut z = array![[2.0], [0.0]];
        assert_eq!(head_loss(Head::Squared, &mut z, &[1.0, 3.0], true), 2.5);
        assert_eq!(z, array![[0.5], [-1.5]]);

        // Logistic: z = 0 costs ln 2 whatever the label; ±1000 costs 0 or 1000.
        let mut z = array![[0.0], [1000.0], [1000.0], [-1000.0]];
        let loss = head_loss(Head::Logistic, &mut z, &[1.0, 1.0, 0.0, 0.0], true);
        assert!((loss - (2f64.ln() + 1000.0) / 4.0).abs() < 1e-9, "{loss}");
        assert_eq!(z, array![[-0.125], [0.0], [0.25], [0.0]]);

        let mut logits = array![[0.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]];
        let loss = head_loss(Head::Softmax, &mut logits, &[0.0, 0.0, 0.0], true);
        // ln 2, 0 and 1000 nats.
        assert!((loss - (2f64.ln() + 1000.0) / 3.0).abs() < 1e-9, "{loss}");
        // Gradient rows sum to zero: softmax sums to one, minus the one-hot.
        for row in logits.rows() {
            assert!(row.sum().abs() < 1e-12);
        }
        for head in [Head::Squared, Head::Logistic, Head::Softmax] {
            let mut nan = array![[f64::NAN, 0.0]];
            assert!(head_loss(head, &mut nan, &[1.0], true).is_nan(), "{head:?}");
        }
        let mut inf = array![[f64::INFINITY, 0.0]];
        assert!(!head_loss(Head::Softmax, &mut inf, &[1.0], false).is_finite());
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let mlp = |activation| ModelSpec::Mlp {
            hidden: vec![200, 100],
            activation,
        };
        let make = |spec: &ModelSpec, seed| {
            Model::new(
                spec,
                64,
                Targets::Classes(10),
                &mut Rng::new(seed, Stream::Init, 0),
            )
            .unwrap()
        };
        let relu = mlp(Activation::Relu);
        let (a, b, c) = (make(&relu, 1), make(&relu, 1), make(&relu, 2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let var = |m: &Model, layer: usize| {
            let w = &m.params[m.layers[layer].w_range()];
            w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64
        };
        // He for ReLU hidden layers, LeCun for tanh ones and for the output.
        assert!((var(&a, 1) * 200.0 / 2.0 - 1.0).abs() < 0.05);
        assert!((var(&a, 2) * 100.0 - 1.0).abs() < 0.1);
        let tanh = make(&mlp(Activation::Tanh), 1);
        assert!((var(&tanh, 1) * 200.0 - 1.0).abs() < 0.05);
        for m in [&a, &tanh] {
            let biases = m.layers.iter().filter_map(Dense::b_range);
            assert!(biases.flat_map(|r| &m.params[r]).all(|&v| v == 0.0));
        }
        let linear = Model::new(
            &ModelSpec::Softmax { intercept: true },
            64,
            Targets::Classes(10),
            &mut Rng::new(1, Stream::Init, 0),
        );
        assert!(linear.unwrap().params.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn models_refuse_targets_they_cannot_learn() {
        let mut rng = Rng::new(0, Stream::Init, 0);
        let cases = [
            (ModelSpec::Linear { intercept: true }, Targets::Classes(2)),
            (ModelSpec::Logistic { intercept: true }, Targets::Classes(3)),
            (ModelSpec::Logistic { intercept: true }, Targets::Values),
            (ModelSpec::Softmax { intercept: true }, Targets::Values),
            (ModelSpec::default(), Targets::Values),
            (
                ModelSpec::Mlp {
                    hidden: vec![u32::MAX, u32::MAX],
                    activation: Activation::Relu,
                },
                Targets::Classes(10),
            ),
        ];
        for (spec, targets) in cases {
            assert!(
                matches!(
                    Model::new(&spec, 64, targets, &mut rng),
                    Err(WorkerError::InvalidTrial(_))
                ),
                "{spec:?} on {targets:?}"
            );
        }
    }
}
