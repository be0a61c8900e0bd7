//! Domain types shared by coordinator and worker. The trainer configuration is part of the user's
//! search spec (TOML) and travels to workers as JSON, so it carries serde derives.

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
    /// How the rate moves within a trial; the trial's rate is the schedule's peak.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Seeds the validation split, the replicate subsets, weight init and minibatch order.
    #[serde(default)]
    pub seed: u64,
    /// Share of the dataset held out for validation, the same for every trial.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
}

fn default_batch_size() -> u32 {
    32
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
            seed: 0,
            validation_fraction: default_validation_fraction(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// The 8×8 handwritten digits (1,797 images, 10 classes) bundled with the worker.
    #[default]
    Digits,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Multinomial logistic regression.
    Softmax,
    /// Fully connected network with ReLU hidden layers and a softmax output.
    Mlp { hidden: Vec<u32> },
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Mlp { hidden: vec![32] }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Minibatch SGD; heavy-ball momentum when `momentum` > 0 (v = μv + g, w -= lr·v).
    Sgd {
        #[serde(default)]
        momentum: f64,
    },
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Sgd { momentum: 0.0 }
    }
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

impl TrainerConfig {
    /// Checks values serde cannot: returns the offending field (relative to the trainer
    /// section) and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, why: &str| Err((field.to_string(), why.to_string()));
        if self.batch_size == 0 {
            return err("batch_size", "must be at least 1");
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return err("validation_fraction", "must lie in (0, 1)");
        }
        if let ModelSpec::Mlp { hidden } = &self.model {
            if hidden.is_empty() {
                return err("model.hidden", "an MLP needs at least one hidden layer");
            }
            if hidden.contains(&0) {
                return err("model.hidden", "layer sizes must be at least 1");
            }
        }
        let OptimizerSpec::Sgd { momentum } = self.optimizer;
        if !(0.0..1.0).contains(&momentum) {
            return err("optimizer.momentum", "must lie in [0, 1)");
        }
        Ok(())
    }
}
