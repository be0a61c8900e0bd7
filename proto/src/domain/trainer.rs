//! The built-in trainer's configuration: the `[trainer]` table of a search spec.

use serde::{Deserialize, Serialize};

use super::check::{default_true, invalid, Checked};
use super::{DatasetSpec, ModelSpec, OptimizerSpec, ScheduleSpec, Task};

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

impl TrainerConfig {
    /// Checks values serde cannot: the error names the offending field (relative to the trainer
    /// section) and why.
    pub fn validate(&self) -> Checked {
        if self.batch_size == 0 {
            return invalid(
                "batch_size",
                "must be at least 1 (for full-batch descent set full_batch = true)",
            );
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return invalid("validation_fraction", "must lie in (0, 1)");
        }
        self.dataset.validate()?;
        self.model.validate()?;
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
        }?;
        self.optimizer.validate()?;
        if self.optimizer.hypergrad_lr().is_some() && self.schedule != ScheduleSpec::Constant {
            return invalid(
                "schedule",
                "hypergradient optimizers adapt the rate themselves: use the constant schedule",
            );
        }
        self.schedule.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Activation, CyclicalMode, Ramp};

    fn field_of(config: TrainerConfig) -> String {
        config.validate().expect_err("accepted").field
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
