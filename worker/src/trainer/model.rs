//! Softmax regression and ReLU MLPs with a softmax output, trained on mean cross-entropy.

use lrsweep_proto::domain::ModelSpec;
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

use super::rng::Rng;
use crate::WorkerError;

/// Refuse models beyond this many parameters: a typo in `hidden` must be an error, not an
/// allocation that aborts the worker (params, velocity and gradients each hold this many f64).
const MAX_PARAMETERS: usize = 1 << 25;

/// A fully connected layer computing `x·w + b` for a batch `x` (batch × inputs).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layer {
    /// inputs × outputs.
    pub(crate) w: Array2<f64>,
    pub(crate) b: Array1<f64>,
}

/// ReLU hidden layers followed by a linear output layer whose logits feed the softmax.
/// Softmax regression is the case without hidden layers. Gradients use the same type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Model {
    pub(crate) hidden: Vec<Layer>,
    pub(crate) output: Layer,
}

impl Model {
    /// Builds `spec` for `features` inputs and `classes` outputs, drawing weights from `rng`.
    pub(crate) fn new(
        spec: &ModelSpec,
        features: usize,
        classes: usize,
        rng: &mut Rng,
    ) -> Result<Model, WorkerError> {
        let widths: Vec<usize> = match spec {
            ModelSpec::Softmax => Vec::new(),
            ModelSpec::Mlp { hidden } if hidden.is_empty() => {
                return Err(WorkerError::InvalidTrial(
                    "an MLP needs at least one hidden layer".into(),
                ))
            }
            ModelSpec::Mlp { hidden } => hidden.iter().map(|&h| h as usize).collect(),
        };
        if widths.contains(&0) {
            return Err(WorkerError::InvalidTrial(
                "hidden layer sizes must be at least 1".into(),
            ));
        }
        let sizes: Vec<usize> = std::iter::once(features)
            .chain(widths)
            .chain(std::iter::once(classes))
            .collect();
        let parameters = sizes.windows(2).try_fold(0usize, |acc, io| {
            io[0]
                .checked_add(1)
                .and_then(|i| i.checked_mul(io[1]))
                .and_then(|p| acc.checked_add(p))
        });
        if parameters.is_none_or(|p| p > MAX_PARAMETERS) {
            return Err(WorkerError::InvalidTrial(format!(
                "model with layer sizes {sizes:?} exceeds {MAX_PARAMETERS} parameters"
            )));
        }

        // He init keeps activations' scale through ReLU layers; the output layer has no ReLU
        // after it, so LeCun scaling (1/fan_in) keeps the initial logits moderate. Softmax
        // regression starts at zero: its loss is convex and ln(classes) is a clean start.
        let mut layer = |fan_in: usize, fan_out: usize, scale: f64| Layer {
            w: Array2::from_shape_simple_fn((fan_in, fan_out), || scale * rng.normal()),
            b: Array1::zeros(fan_out),
        };
        let mut hidden = Vec::with_capacity(sizes.len() - 2);
        for io in sizes[..sizes.len() - 1].windows(2) {
            hidden.push(layer(io[0], io[1], (2.0 / io[0] as f64).sqrt()));
        }
        let fan_in = sizes[sizes.len() - 2];
        let scale = if hidden.is_empty() {
            0.0
        } else {
            (1.0 / fan_in as f64).sqrt()
        };
        let output = layer(fan_in, classes, scale);
        Ok(Model { hidden, output })
    }

    /// A model of the same shape with every parameter zero (momentum buffers).
    pub(crate) fn zeros_like(&self) -> Model {
        let zero = |l: &Layer| Layer {
            w: Array2::zeros(l.w.raw_dim()),
            b: Array1::zeros(l.b.raw_dim()),
        };
        Model {
            hidden: self.hidden.iter().map(zero).collect(),
            output: zero(&self.output),
        }
    }

    /// Layers in forward order.
    pub(crate) fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.hidden.iter().chain(std::iter::once(&self.output))
    }

    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        self.hidden
            .iter_mut()
            .chain(std::iter::once(&mut self.output))
    }

    /// Hidden activations (after ReLU) and the logits for batch `x`.
    fn forward(&self, x: ArrayView2<f64>) -> (Vec<Array2<f64>>, Array2<f64>) {
        let mut acts: Vec<Array2<f64>> = Vec::with_capacity(self.hidden.len());
        for layer in &self.hidden {
            let input = acts.last().map_or(x, |a| a.view());
            let mut z = input.dot(&layer.w) + &layer.b;
            // Written so NaN stays NaN (f64::max would turn it into 0 and hide a divergence).
            z.mapv_inplace(|v| if v < 0.0 { 0.0 } else { v });
            acts.push(z);
        }
        let input = acts.last().map_or(x, |a| a.view());
        let logits = input.dot(&self.output.w) + &self.output.b;
        (acts, logits)
    }

    /// Mean cross-entropy of the batch (`x` rows labelled `y`).
    pub(crate) fn loss(&self, x: ArrayView2<f64>, y: &[usize]) -> f64 {
        let (_, mut logits) = self.forward(x);
        softmax_cross_entropy(&mut logits, y, false)
    }

    /// Mean cross-entropy of the batch and its gradient with respect to every parameter.
    pub(crate) fn loss_and_grad(&self, x: ArrayView2<f64>, y: &[usize]) -> (f64, Model) {
        let (acts, mut delta) = self.forward(x);
        let loss = softmax_cross_entropy(&mut delta, y, true);
        // `delta` is now d(loss)/d(pre-activation) of the layer being walked, last to first.
        let input = |i: usize| if i == 0 { x } else { acts[i - 1].view() };
        let grad = |input: ArrayView2<f64>, delta: &Array2<f64>| Layer {
            w: input.t().dot(delta),
            b: delta.sum_axis(Axis(0)),
        };
        let output = grad(input(self.hidden.len()), &delta);
        let mut hidden = Vec::with_capacity(self.hidden.len());
        let mut above = &self.output;
        for (i, layer) in self.hidden.iter().enumerate().rev() {
            delta = delta.dot(&above.w.t());
            // ReLU passes gradient only where it was active.
            Zip::from(&mut delta)
                .and(&acts[i])
                .for_each(|d, &a| *d = if a > 0.0 { *d } else { 0.0 });
            hidden.push(grad(input(i), &delta));
            above = layer;
        }
        hidden.reverse();
        (loss, Model { hidden, output })
    }
}

/// Mean cross-entropy of `logits` (batch × classes) against `labels`, via log-sum-exp so large
/// logits do not overflow. With `grad`, overwrites `logits` with d(mean loss)/d(logits), i.e.
/// (softmax − one-hot) / batch. Non-finite logits give a non-finite loss, never a panic.
fn softmax_cross_entropy(logits: &mut Array2<f64>, labels: &[usize], grad: bool) -> f64 {
    let batch = logits.nrows() as f64;
    let mut total = 0.0;
    for (mut row, &label) in logits.rows_mut().into_iter().zip(labels) {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f64>().ln();
        total += lse - row[label];
        if grad {
            row.mapv_inplace(|v| (v - lse).exp() / batch);
            row[label] -= 1.0 / batch;
        }
    }
    total / batch
}

#[cfg(test)]
mod tests {
    use super::super::rng::Stream;
    use super::*;
    use ndarray::array;

    fn random_batch(rows: usize, features: usize, classes: usize) -> (Array2<f64>, Vec<usize>) {
        let mut rng = Rng::new(11, Stream::Batches, 0);
        let x = Array2::from_shape_simple_fn((rows, features), || rng.normal());
        let y = (0..rows).map(|i| (i * 7 + 3) % classes).collect();
        (x, y)
    }

    /// Compares the analytic gradient with central differences on a sample of parameters.
    fn check_gradient(mut model: Model, x: &Array2<f64>, y: &[usize]) {
        let (_, grads) = model.loss_and_grad(x.view(), y);
        let analytic: Vec<f64> = grads
            .layers()
            .flat_map(|l| l.w.iter().chain(l.b.iter()).copied().collect::<Vec<_>>())
            .collect();
        let count = analytic.len();
        let mut picker = Rng::new(5, Stream::Init, 9);
        let h = 1e-5;
        let mut checked = 0;
        for _ in 0..40 {
            let k = (picker.uniform() * count as f64) as usize;
            let bump = |model: &mut Model, delta: f64| {
                let mut params = model
                    .layers_mut()
                    .flat_map(|l| l.w.iter_mut().chain(l.b.iter_mut()));
                if let Some(p) = params.nth(k) {
                    *p += delta;
                }
            };
            bump(&mut model, h);
            let plus = model.loss(x.view(), y);
            bump(&mut model, -2.0 * h);
            let minus = model.loss(x.view(), y);
            bump(&mut model, h);
            let numeric = (plus - minus) / (2.0 * h);
            let a = analytic[k];
            let rel = (a - numeric).abs() / (a.abs() + numeric.abs()).max(1e-8);
            assert!(
                rel < 1e-5,
                "param {k}: analytic {a}, numeric {numeric}, rel {rel}"
            );
            checked += usize::from(a.abs() > 1e-6);
        }
        assert!(
            checked >= 20,
            "only {checked} checked parameters had a gradient"
        );
    }

    #[test]
    fn gradient_check_softmax_regression() {
        let mut model =
            Model::new(&ModelSpec::Softmax, 5, 3, &mut Rng::new(1, Stream::Init, 0)).unwrap();
        assert!(model.hidden.is_empty());
        // Zero init would make the check too easy: move the weights off zero.
        let mut rng = Rng::new(2, Stream::Init, 0);
        for l in model.layers_mut() {
            l.w.mapv_inplace(|_| 0.5 * rng.normal());
            l.b.mapv_inplace(|_| 0.5 * rng.normal());
        }
        let (x, y) = random_batch(4, 5, 3);
        check_gradient(model, &x, &y);
    }

    #[test]
    fn gradient_check_two_hidden_layer_mlp() {
        let spec = ModelSpec::Mlp { hidden: vec![6, 5] };
        let mut model = Model::new(&spec, 4, 3, &mut Rng::new(1, Stream::Init, 0)).unwrap();
        assert_eq!(model.hidden.len(), 2);
        // Non-zero biases so the bias gradients are exercised through active units.
        let mut rng = Rng::new(3, Stream::Init, 0);
        for l in model.layers_mut() {
            l.b.mapv_inplace(|_| 0.1 * rng.normal());
        }
        let (x, y) = random_batch(5, 4, 3);
        check_gradient(model, &x, &y);
    }

    #[test]
    fn cross_entropy_is_stable_and_correct() {
        let mut logits = array![[0.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]];
        let loss = softmax_cross_entropy(&mut logits, &[0, 0, 0], true);
        // ln 2, 0 and 1000 nats.
        assert!((loss - (2f64.ln() + 1000.0) / 3.0).abs() < 1e-9, "{loss}");
        // Gradient rows sum to zero: softmax sums to one, minus the one-hot.
        for row in logits.rows() {
            assert!(row.sum().abs() < 1e-12);
        }
        let mut nan = array![[f64::NAN, 0.0]];
        assert!(softmax_cross_entropy(&mut nan, &[1], true).is_nan());
        let mut inf = array![[f64::INFINITY, 0.0]];
        assert!(!softmax_cross_entropy(&mut inf, &[1], false).is_finite());
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let spec = ModelSpec::Mlp {
            hidden: vec![200, 100],
        };
        let make = |seed| Model::new(&spec, 64, 10, &mut Rng::new(seed, Stream::Init, 0));
        let (a, b, c) = (make(1).unwrap(), make(1).unwrap(), make(2).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let var = |w: &Array2<f64>| w.mapv(|v| v * v).mean().unwrap();
        assert!((var(&a.hidden[1].w) * 200.0 / 2.0 - 1.0).abs() < 0.05);
        assert!((var(&a.output.w) * 100.0 - 1.0).abs() < 0.1);
        assert!(a.layers().all(|l| l.b.iter().all(|&v| v == 0.0)));

        let softmax = Model::new(
            &ModelSpec::Softmax,
            64,
            10,
            &mut Rng::new(1, Stream::Init, 0),
        );
        assert!(softmax.unwrap().output.w.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn impossible_models_are_rejected() {
        let mut rng = Rng::new(0, Stream::Init, 0);
        for hidden in [vec![], vec![0], vec![u32::MAX, u32::MAX]] {
            let spec = ModelSpec::Mlp { hidden };
            assert!(matches!(
                Model::new(&spec, 64, 10, &mut rng),
                Err(WorkerError::InvalidTrial(_))
            ));
        }
    }
}
