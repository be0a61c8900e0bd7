//! The learning rate at each step of a built-in trial.

use serde::{Deserialize, Serialize};

use super::check::{at_least, invalid, Checked};

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

impl ScheduleSpec {
    /// Checks values serde cannot; fields are named relative to the trainer section.
    pub fn validate(&self) -> Checked {
        match *self {
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
