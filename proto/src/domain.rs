//! Domain types shared by coordinator and worker. The trainer configuration is part of the user's
//! search spec (TOML) and travels to workers as JSON, so it carries serde derives.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub type TrialId = u64;

/// Everything a worker needs to train one trial.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialAssignment {
    pub trial_id: TrialId,
    /// Starts at 1; a trial handed out again after a worker was lost gets the next number.
    pub attempt: u32,
    pub lr: f64,
    pub steps: u64,
    /// Validation loss is measured every `eval_every` steps and after the last step.
    pub eval_every: u64,
    pub subset: Subset,
    pub trainer: TrainerConfig,
}

/// Part `replicate` of `replicates` disjoint parts that together make up `fraction` of the
/// training split. Which examples fall in a part depends only on the trainer seed, so every
/// learning rate with the same replicate sees the same data (paired comparison).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subset {
    pub fraction: f64,
    pub replicate: u32,
    pub replicates: u32,
}

/// One training step as streamed from worker to coordinator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// Number of updates done, starting at 1 for the first minibatch.
    pub step: u64,
    /// Minibatch loss at this step, before the update. May be NaN or infinite: that is data.
    pub train_loss: f64,
    /// Learning rate used for this step's update.
    pub lr: f64,
    /// Loss on the whole validation split after this step's update, when measured.
    pub val_loss: Option<f64>,
}

/// Why the coordinator stops a running trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// The trial's own trace condemned it (diverged, NaN, worse than its peers).
    Prune,
    /// Something else made it pointless (a smaller rate diverged, the sweep is ending).
    Cancel,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    #[serde(default)]
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    /// How the rate moves within a trial; the trial's rate is the schedule's start (range test)
    /// or peak (cyclical, 1cycle). Hypergradient optimizers adapt the rate themselves and accept
    /// only the constant schedule.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// Examples per update (at least 1); a batch at least as large as the trial's data subset
    /// is the whole subset. Ignored with `full_batch`.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Every update uses the trial's whole data subset: full-batch gradient descent, whatever
    /// the subset's size. A switch of its own, rather than `batch_size = 0`, so that a zero
    /// batch size stays an error that catches typos.
    #[serde(default)]
    pub full_batch: bool,
    /// Standardise every feature with the mean and standard deviation of the training split.
    /// Off, features are used as loaded, so e.g. a synthetic problem keeps its exact curvature.
    #[serde(default = "default_true")]
    pub standardize: bool,
    /// Seeds the validation split, the replicate subsets, weight init, minibatch order and
    /// synthetic data.
    #[serde(default)]
    pub seed: u64,
    /// Share of the dataset held out for validation, the same for every trial.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
}

fn default_batch_size() -> u32 {
    32
}

fn default_true() -> bool {
    true
}

fn default_validation_fraction() -> f64 {
    0.2
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            dataset: DatasetSpec::default(),
            model: ModelSpec::default(),
            optimizer: OptimizerSpec::default(),
            schedule: ScheduleSpec::default(),
            batch_size: default_batch_size(),
            full_batch: false,
            standardize: true,
            seed: 0,
            validation_fraction: default_validation_fraction(),
        }
    }
}

/// What a dataset's labels mean, and so which models can learn from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Integer class labels. Non-negative integers are the class ids themselves (k = largest
    /// label + 1); the binary SVM convention, labels exactly −1 and +1, maps −1 → 0, +1 → 1.
    #[default]
    Classification,
    /// Real-valued targets, kept as they are.
    Regression,
}

/// Where the examples come from. Relative paths are relative to the worker's working directory;
/// every file may be gzip-compressed (recognised by its magic bytes, whatever its name).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// The 8×8 handwritten digits (1,797 images, 10 classes) bundled with the worker.
    #[default]
    Digits,
    /// Comma-separated numbers under a header line that names the columns; column `label` holds
    /// the targets, every other column is a feature.
    Csv {
        path: PathBuf,
        label: String,
        #[serde(default)]
        task: Task,
    },
    /// SVMlight text, one example per line: `label index:value ...` with 1-based, increasing
    /// feature indices; missing features are 0, `#` starts a comment.
    Libsvm {
        path: PathBuf,
        #[serde(default)]
        task: Task,
    },
    /// MNIST's IDX format: unsigned-byte images (magic 0x00000803) and labels (0x00000801).
    /// Pixels are used as they are (0–255) and labels are class ids.
    Idx { images: PathBuf, labels: PathBuf },
    /// Least squares with a known curvature: `n` examples with `d` features whose training
    /// split has XᵀX/n with eigenvalues log-spaced from 1 down to 1/`condition_number`, and
    /// targets X·w* + `noise`·N(0, 1). Drawn from the trainer seed.
    SyntheticLeastSquares {
        n: u32,
        d: u32,
        condition_number: f64,
        #[serde(default)]
        noise: f64,
    },
}

impl DatasetSpec {
    /// What the dataset's labels mean.
    pub fn task(&self) -> Task {
        match self {
            DatasetSpec::Digits | DatasetSpec::Idx { .. } => Task::Classification,
            DatasetSpec::Csv { task, .. } | DatasetSpec::Libsvm { task, .. } => *task,
            DatasetSpec::SyntheticLeastSquares { .. } => Task::Regression,
        }
    }
}

/// Most cells (examples × features) a synthetic dataset may have: 128 MiB of f64.
pub const MAX_SYNTHETIC_CELLS: u64 = 1 << 24;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Linear regression on f = (1/2n)‖Xw + b − y‖². The ½ makes the Hessian exactly XᵀX/n,
    /// so full-batch gradient descent diverges above 2/λ_max(XᵀX/n) (method.md §5).
    Linear {
        #[serde(default = "default_true")]
        intercept: bool,
    },
    /// Binary logistic regression (labels 0/1) on the mean log-loss.
    Logistic {
        #[serde(default = "default_true")]
        intercept: bool,
    },
    /// Multinomial logistic regression on the mean cross-entropy.
    Softmax {
        #[serde(default = "default_true")]
        intercept: bool,
    },
    /// Fully connected network: `hidden` layer widths, `activation` after each hidden layer,
    /// a softmax output, mean cross-entropy.
    Mlp {
        hidden: Vec<u32>,
        #[serde(default)]
        activation: Activation,
    },
}

impl ModelSpec {
    /// The kind of targets the model learns.
    pub fn task(&self) -> Task {
        match self {
            ModelSpec::Linear { .. } => Task::Regression,
            _ => Task::Classification,
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Mlp {
            hidden: vec![32],
            activation: Activation::Relu,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
}

/// How the weights move, given the minibatch gradient g. Every optimizer takes `weight_decay`
/// (default 0): an L2 penalty added to the gradient, g + weight_decay·w, on every parameter.
/// The hypergradient variants (Baydin et al. 2018, method.md §3) start their rate at the
/// trial's lr and adapt it every step by `hypergrad_lr` times one dot product over all
/// parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Minibatch SGD; heavy-ball momentum when `momentum` > 0 (v = μv + g, w −= lr·v), and
    /// with `nesterov` the look-ahead step w −= lr·(g + μv).
    Sgd {
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with bias-corrected moments: w −= lr·m̂/(√v̂ + eps).
    Adam {
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// SGD-HD: lr_t = lr_{t−1} + hypergrad_lr·⟨g_t, g_{t−1}⟩, then w −= lr_t·g_t.
    SgdHd {
        #[serde(default = "default_hypergrad_lr")]
        hypergrad_lr: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// SGDN-HD: Nesterov momentum with direction d_t = g_t + μ·v_t;
    /// lr_t = lr_{t−1} + hypergrad_lr·⟨g_t, d_{t−1}⟩, then w −= lr_t·d_t.
    SgdnHd {
        #[serde(default = "default_hd_momentum")]
        momentum: f64,
        #[serde(default = "default_hypergrad_lr")]
        hypergrad_lr: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam-HD: lr_t = lr_{t−1} + hypergrad_lr·⟨g_t, m̂_{t−1}/(√v̂_{t−1} + eps)⟩, then an
    /// Adam step with lr_t.
    AdamHd {
        #[serde(default = "default_adam_hypergrad_lr")]
        hypergrad_lr: f64,
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
}

impl OptimizerSpec {
    pub fn weight_decay(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { weight_decay, .. }
            | OptimizerSpec::Adam { weight_decay, .. }
            | OptimizerSpec::SgdHd { weight_decay, .. }
            | OptimizerSpec::SgdnHd { weight_decay, .. }
            | OptimizerSpec::AdamHd { weight_decay, .. } => *weight_decay,
        }
    }

    /// The hypergradient step size β of the HD variants; None for fixed-rate optimizers.
    pub fn hypergrad_lr(&self) -> Option<f64> {
        match self {
            OptimizerSpec::SgdHd { hypergrad_lr, .. }
            | OptimizerSpec::SgdnHd { hypergrad_lr, .. }
            | OptimizerSpec::AdamHd { hypergrad_lr, .. } => Some(*hypergrad_lr),
            OptimizerSpec::Sgd { .. } | OptimizerSpec::Adam { .. } => None,
        }
    }
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

// Defaults of Kingma & Ba (Adam) and of Baydin et al.'s experiments (method.md §3).
fn default_beta1() -> f64 {
    0.9
}

fn default_beta2() -> f64 {
    0.999
}

fn default_eps() -> f64 {
    1e-8
}

fn default_hypergrad_lr() -> f64 {
    1e-3
}

fn default_adam_hypergrad_lr() -> f64 {
    1e-7
}

fn default_hd_momentum() -> f64 {
    0.9
}

/// The learning rate at each step of a trial, as a pure function of the step. `lr` below is the
/// trial's rate; `steps` its step budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// `lr` at every step.
    #[default]
    Constant,
    /// LR range test: grows every step from `lr` to `end_lr` over the trial's steps.
    RangeTest {
        end_lr: f64,
        #[serde(default)]
        ramp: Ramp,
    },
    /// Cyclical (Smith 2017): between `lr·base_fraction` and `lr`, half-cycle `step_size` steps.
    Cyclical {
        step_size: u64,
        #[serde(default = "default_base_fraction")]
        base_fraction: f64,
        #[serde(default)]
        mode: CyclicalMode,
    },
    /// 1cycle (Smith 2018): up to `lr` over `pct_start` of the steps, then down far below.
    OneCycle {
        #[serde(default = "default_pct_start")]
        pct_start: f64,
        #[serde(default = "default_div_factor")]
        div_factor: f64,
        #[serde(default = "default_final_div_factor")]
        final_div_factor: f64,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ramp {
    /// lr_k = start·(end/start)^(k/N) (fastai).
    #[default]
    Exponential,
    /// lr_k = start + k/(N−1)·(end − start) (Smith's original).
    Linear,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CyclicalMode {
    #[default]
    Triangular,
    /// Amplitude halves every cycle.
    Triangular2,
    /// Amplitude scaled by gamma^step.
    ExpRange { gamma: f64 },
}

fn default_base_fraction() -> f64 {
    0.25
}

fn default_pct_start() -> f64 {
    0.3
}

fn default_div_factor() -> f64 {
    25.0
}

fn default_final_div_factor() -> f64 {
    1e4
}

type Invalid = (String, String);

fn invalid(field: &str, why: &str) -> Result<(), Invalid> {
    Err((field.to_string(), why.to_string()))
}

/// `value` must be finite and at least `min`.
fn at_least(field: &str, value: f64, min: f64) -> Result<(), Invalid> {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        Err((
            field.to_string(),
            format!("must be finite and at least {min}"),
        ))
    }
}

/// `value` must lie in [0, 1): momentum and moment decay rates.
fn decay_rate(field: &str, value: f64) -> Result<(), Invalid> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        invalid(field, "must lie in [0, 1)")
    }
}

fn non_empty_path(field: &str, path: &Path) -> Result<(), Invalid> {
    if path.as_os_str().is_empty() {
        invalid(field, "must name a file")
    } else {
        Ok(())
    }
}

impl TrainerConfig {
    /// Checks values serde cannot: returns the offending field (relative to the trainer
    /// section) and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.batch_size == 0 {
            return invalid(
                "batch_size",
                "must be at least 1 (for full-batch descent set full_batch = true)",
            );
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return invalid("validation_fraction", "must lie in (0, 1)");
        }
        self.validate_dataset()?;
        self.validate_model()?;
        self.validate_optimizer()?;
        self.validate_schedule()
    }

    fn validate_dataset(&self) -> Result<(), Invalid> {
        match &self.dataset {
            DatasetSpec::Digits => Ok(()),
            DatasetSpec::Csv { path, label, .. } => {
                non_empty_path("dataset.path", path)?;
                if label.trim().is_empty() {
                    return invalid("dataset.label", "must name the label column");
                }
                Ok(())
            }
            DatasetSpec::Libsvm { path, .. } => non_empty_path("dataset.path", path),
            DatasetSpec::Idx { images, labels } => {
                non_empty_path("dataset.images", images)?;
                non_empty_path("dataset.labels", labels)
            }
            &DatasetSpec::SyntheticLeastSquares {
                n,
                d,
                condition_number,
                noise,
            } => {
                if n < 2 {
                    return invalid("dataset.n", "needs at least 2 examples to split");
                }
                if d == 0 {
                    return invalid("dataset.d", "must be at least 1");
                }
                if u64::from(n) * u64::from(d) > MAX_SYNTHETIC_CELLS {
                    return invalid(
                        "dataset.n",
                        &format!("n·d must not exceed {MAX_SYNTHETIC_CELLS} values"),
                    );
                }
                at_least("dataset.condition_number", condition_number, 1.0)?;
                if d == 1 && condition_number != 1.0 {
                    return invalid(
                        "dataset.condition_number",
                        "must be 1 with one feature (one eigenvalue)",
                    );
                }
                at_least("dataset.noise", noise, 0.0)
            }
        }
    }

    fn validate_model(&self) -> Result<(), Invalid> {
        if let ModelSpec::Mlp { hidden, .. } = &self.model {
            if hidden.is_empty() {
                return invalid("model.hidden", "an MLP needs at least one hidden layer");
            }
            if hidden.contains(&0) {
                return invalid("model.hidden", "layer sizes must be at least 1");
            }
        }
        match (self.model.task(), self.dataset.task()) {
            (Task::Regression, Task::Classification) => invalid(
                "model",
                "linear regression needs real-valued targets: a synthetic-least-squares dataset \
                 or task = \"regression\"",
            ),
            (Task::Classification, Task::Regression) => invalid(
                "model",
                "this model needs class labels, the dataset has real-valued targets: use \
                 kind = \"linear\"",
            ),
            _ => Ok(()),
        }
    }

    fn validate_optimizer(&self) -> Result<(), Invalid> {
        match self.optimizer {
            OptimizerSpec::Sgd {
                momentum, nesterov, ..
            } => {
                decay_rate("optimizer.momentum", momentum)?;
                if nesterov && momentum == 0.0 {
                    return invalid("optimizer.nesterov", "needs momentum > 0");
                }
            }
            OptimizerSpec::SgdnHd { momentum, .. } => {
                decay_rate("optimizer.momentum", momentum)?;
            }
            OptimizerSpec::Adam {
                beta1, beta2, eps, ..
            }
            | OptimizerSpec::AdamHd {
                beta1, beta2, eps, ..
            } => {
                decay_rate("optimizer.beta1", beta1)?;
                decay_rate("optimizer.beta2", beta2)?;
                if !(eps.is_finite() && eps > 0.0) {
                    return invalid("optimizer.eps", "must be finite and positive");
                }
            }
            OptimizerSpec::SgdHd { .. } => {}
        }
        at_least("optimizer.weight_decay", self.optimizer.weight_decay(), 0.0)?;
        if let Some(beta) = self.optimizer.hypergrad_lr() {
            at_least("optimizer.hypergrad_lr", beta, 0.0)?;
        }
        Ok(())
    }

    fn validate_schedule(&self) -> Result<(), Invalid> {
        if self.optimizer.hypergrad_lr().is_some() && self.schedule != ScheduleSpec::Constant {
            return invalid(
                "schedule",
                "hypergradient optimizers adapt the rate themselves: use the constant schedule",
            );
        }
        match self.schedule {
            ScheduleSpec::Constant => Ok(()),
            ScheduleSpec::RangeTest { end_lr, .. } => {
                if end_lr.is_finite() && end_lr > 0.0 {
                    Ok(())
                } else {
                    invalid("schedule.end_lr", "must be finite and positive")
                }
            }
            ScheduleSpec::Cyclical {
                step_size,
                base_fraction,
                mode,
            } => {
                if step_size == 0 {
                    return invalid("schedule.step_size", "must be at least 1");
                }
                if !(0.0..=1.0).contains(&base_fraction) {
                    return invalid("schedule.base_fraction", "must lie in [0, 1]");
                }
                match mode {
                    CyclicalMode::ExpRange { gamma } if !(gamma > 0.0 && gamma <= 1.0) => {
                        invalid("schedule.mode.gamma", "must lie in (0, 1]")
                    }
                    _ => Ok(()),
                }
            }
            ScheduleSpec::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                if !(pct_start > 0.0 && pct_start < 1.0) {
                    return invalid("schedule.pct_start", "must lie in (0, 1)");
                }
                // The trial's rate is the peak: the start and the end lie below it.
                at_least("schedule.div_factor", div_factor, 1.0)?;
                at_least("schedule.final_div_factor", final_div_factor, 1.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: TrainerConfig) -> String {
        config.validate().expect_err("accepted").0
    }

    fn synthetic(n: u32, d: u32, condition_number: f64, noise: f64) -> TrainerConfig {
        TrainerConfig {
            dataset: DatasetSpec::SyntheticLeastSquares {
                n,
                d,
                condition_number,
                noise,
            },
            model: ModelSpec::Linear { intercept: false },
            ..TrainerConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_spelled_out() {
        let config = TrainerConfig::default();
        config.validate().unwrap();
        let parsed: TrainerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, config);
        assert!(config.standardize && !config.full_batch);
        let model: ModelSpec = serde_json::from_str(r#"{"kind": "softmax"}"#).unwrap();
        assert_eq!(model, ModelSpec::Softmax { intercept: true });
        let optim: OptimizerSpec = serde_json::from_str(r#"{"kind": "adam-hd"}"#).unwrap();
        assert_eq!(
            optim,
            OptimizerSpec::AdamHd {
                hypergrad_lr: 1e-7,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0
            }
        );
        let optim: OptimizerSpec = serde_json::from_str(r#"{"kind": "sgdn-hd"}"#).unwrap();
        assert_eq!(
            optim,
            OptimizerSpec::SgdnHd {
                momentum: 0.9,
                hypergrad_lr: 1e-3,
                weight_decay: 0.0
            }
        );
    }

    #[test]
    fn new_options_round_trip_through_json() {
        let config = TrainerConfig {
            dataset: DatasetSpec::Libsvm {
                path: "a.svm".into(),
                task: Task::Regression,
            },
            model: ModelSpec::Linear { intercept: false },
            optimizer: OptimizerSpec::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
            },
            schedule: ScheduleSpec::Cyclical {
                step_size: 10,
                base_fraction: 0.1,
                mode: CyclicalMode::ExpRange { gamma: 0.99 },
            },
            full_batch: true,
            standardize: false,
            ..TrainerConfig::default()
        };
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<TrainerConfig>(&json).unwrap(),
            config
        );
        let mlp: ModelSpec =
            serde_json::from_str(r#"{"kind": "mlp", "hidden": [4], "activation": "tanh"}"#)
                .unwrap();
        assert_eq!(
            mlp,
            ModelSpec::Mlp {
                hidden: vec![4],
                activation: Activation::Tanh
            }
        );
        assert!(serde_json::from_str::<ModelSpec>(
            r#"{"kind": "mlp", "hidden": [4], "activation": "sigmoid"}"#
        )
        .is_err());
    }

    #[test]
    fn impossible_values_name_their_field() {
        let with_optimizer = |optimizer| TrainerConfig {
            optimizer,
            ..TrainerConfig::default()
        };
        let with_schedule = |schedule| TrainerConfig {
            schedule,
            ..TrainerConfig::default()
        };
        let sgd = |momentum, nesterov, weight_decay| OptimizerSpec::Sgd {
            momentum,
            nesterov,
            weight_decay,
        };
        let adam = |beta1, beta2, eps| OptimizerSpec::Adam {
            beta1,
            beta2,
            eps,
            weight_decay: 0.0,
        };
        let cases = [
            (
                TrainerConfig {
                    batch_size: 0,
                    ..TrainerConfig::default()
                },
                "batch_size",
            ),
            (with_optimizer(sgd(1.0, false, 0.0)), "optimizer.momentum"),
            (with_optimizer(sgd(0.0, true, 0.0)), "optimizer.nesterov"),
            (
                with_optimizer(sgd(0.5, false, -1.0)),
                "optimizer.weight_decay",
            ),
            (
                with_optimizer(sgd(0.5, false, f64::NAN)),
                "optimizer.weight_decay",
            ),
            (with_optimizer(adam(1.0, 0.999, 1e-8)), "optimizer.beta1"),
            (with_optimizer(adam(0.9, -0.1, 1e-8)), "optimizer.beta2"),
            (with_optimizer(adam(0.9, 0.999, 0.0)), "optimizer.eps"),
            (
                with_optimizer(OptimizerSpec::SgdHd {
                    hypergrad_lr: -1e-3,
                    weight_decay: 0.0,
                }),
                "optimizer.hypergrad_lr",
            ),
            (
                with_optimizer(OptimizerSpec::SgdnHd {
                    momentum: 1.5,
                    hypergrad_lr: 1e-3,
                    weight_decay: 0.0,
                }),
                "optimizer.momentum",
            ),
            (
                with_schedule(ScheduleSpec::RangeTest {
                    end_lr: 0.0,
                    ramp: Ramp::Linear,
                }),
                "schedule.end_lr",
            ),
            (
                with_schedule(ScheduleSpec::Cyclical {
                    step_size: 0,
                    base_fraction: 0.25,
                    mode: CyclicalMode::Triangular,
                }),
                "schedule.step_size",
            ),
            (
                with_schedule(ScheduleSpec::Cyclical {
                    step_size: 5,
                    base_fraction: 1.5,
                    mode: CyclicalMode::Triangular,
                }),
                "schedule.base_fraction",
            ),
            (
                with_schedule(ScheduleSpec::Cyclical {
                    step_size: 5,
                    base_fraction: 0.25,
                    mode: CyclicalMode::ExpRange { gamma: 1.5 },
                }),
                "schedule.mode.gamma",
            ),
            (
                with_schedule(ScheduleSpec::OneCycle {
                    pct_start: 1.0,
                    div_factor: 25.0,
                    final_div_factor: 1e4,
                }),
                "schedule.pct_start",
            ),
            (
                with_schedule(ScheduleSpec::OneCycle {
                    pct_start: 0.3,
                    div_factor: 0.5,
                    final_div_factor: 1e4,
                }),
                "schedule.div_factor",
            ),
            (
                with_schedule(ScheduleSpec::OneCycle {
                    pct_start: 0.3,
                    div_factor: 25.0,
                    final_div_factor: f64::INFINITY,
                }),
                "schedule.final_div_factor",
            ),
            (
                TrainerConfig {
                    optimizer: OptimizerSpec::SgdHd {
                        hypergrad_lr: 1e-3,
                        weight_decay: 0.0,
                    },
                    schedule: ScheduleSpec::OneCycle {
                        pct_start: 0.3,
                        div_factor: 25.0,
                        final_div_factor: 1e4,
                    },
                    ..TrainerConfig::default()
                },
                "schedule",
            ),
            (synthetic(1, 3, 10.0, 0.0), "dataset.n"),
            (synthetic(100, 0, 10.0, 0.0), "dataset.d"),
            (synthetic(1 << 20, 1 << 10, 10.0, 0.0), "dataset.n"),
            (synthetic(100, 3, 0.5, 0.0), "dataset.condition_number"),
            (synthetic(100, 1, 10.0, 0.0), "dataset.condition_number"),
            (synthetic(100, 3, 10.0, -1.0), "dataset.noise"),
            (
                TrainerConfig {
                    dataset: DatasetSpec::Csv {
                        path: "x.csv".into(),
                        label: " ".into(),
                        task: Task::Classification,
                    },
                    ..TrainerConfig::default()
                },
                "dataset.label",
            ),
            (
                TrainerConfig {
                    dataset: DatasetSpec::Idx {
                        images: "".into(),
                        labels: "l".into(),
                    },
                    ..TrainerConfig::default()
                },
                "dataset.images",
            ),
            (
                TrainerConfig {
                    model: ModelSpec::Linear { intercept: true },
                    ..TrainerConfig::default()
                },
                "model",
            ),
            (
                TrainerConfig {
                    model: ModelSpec::Softmax { intercept: true },
                    ..synthetic(100, 3, 10.0, 0.0)
                },
                "model",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(config.clone()), field, "{config:?}");
        }
        synthetic(100, 1, 1.0, 0.0).validate().unwrap();
    }
}
