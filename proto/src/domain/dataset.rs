//! Where a trial's examples come from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::{at_least, invalid, non_empty_path, Checked};

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

impl DatasetSpec {
    /// Checks values serde cannot; fields are named relative to the trainer section.
    pub fn validate(&self) -> Checked {
        match self {
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
}
