//! How a built-in trial's weights move.

use serde::{Deserialize, Serialize};

use super::check::{at_least, decay_rate, invalid, Checked};

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

impl OptimizerSpec {
    /// Checks values serde cannot; fields are named relative to the trainer section.
    pub fn validate(&self) -> Checked {
        match *self {
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
        at_least("optimizer.weight_decay", self.weight_decay(), 0.0)?;
        if let Some(beta) = self.hypergrad_lr() {
            at_least("optimizer.hypergrad_lr", beta, 0.0)?;
        }
        Ok(())
    }
}
