//! The network a built-in trial trains.

use serde::{Deserialize, Serialize};

use super::check::{default_true, invalid, Checked};
use super::Task;

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

impl ModelSpec {
    /// Checks values serde cannot; fields are named relative to the trainer section.
    pub fn validate(&self) -> Checked {
        if let ModelSpec::Mlp { hidden, .. } = self {
            if hidden.is_empty() {
                return invalid("model.hidden", "an MLP needs at least one hidden layer");
            }
            if hidden.contains(&0) {
                return invalid("model.hidden", "layer sizes must be at least 1");
            }
        }
        Ok(())
    }
}
