//! The rules for labels: what a classification label may be and how it becomes a class id.

use lrsweep_proto::domain::Task;

use super::data_error;
use crate::WorkerError;

/// Most classes a classification dataset may have: more is a regression column or a typo.
const MAX_CLASSES: usize = 10_000;

/// What the label vector holds. Class ids are stored as exact integers in the same f64 vector
/// as regression values, so batches of either kind use one buffer type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Class ids 0..k.
    Classes(usize),
    /// Real-valued regression targets.
    Values,
}

/// Checks the raw labels `y` (finite numbers) for `task` and turns class labels into class ids
/// by the rule of [`Task::Classification`]: non-negative integers are the ids themselves, and
/// the binary labelling −1/+1 maps −1 → 0, +1 → 1. `line_of(i)` is example i's line.
pub(super) fn targets_of(
    y: &mut [f64],
    task: Task,
    source_name: &str,
    line_of: impl Fn(usize) -> usize,
) -> Result<Targets, WorkerError> {
    if task == Task::Regression {
        return Ok(Targets::Values);
    }
    let signed = y.contains(&-1.0);
    for (i, &v) in y.iter().enumerate() {
        let reason = if signed {
            if v == -1.0 || v == 1.0 {
                continue;
            }
            format!(
                "label {v} mixes with labels −1: −1 is only allowed in a binary −1/+1 labelling"
            )
        } else {
            if v.fract() == 0.0 && (0.0..MAX_CLASSES as f64).contains(&v) {
                continue;
            }
            format!("label {v} is not a class id (an integer in 0..{MAX_CLASSES}, or ±1)")
        };
        return Err(data_error(source_name, line_of(i), reason));
    }
    if signed {
        for v in y.iter_mut() {
            *v = (*v + 1.0) / 2.0;
        }
    }
    let classes = y.iter().fold(0.0, |m: f64, &v| m.max(v)) as usize + 1;
    Ok(Targets::Classes(classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(labels: &[f64]) -> Result<(Vec<f64>, Targets), usize> {
        let mut y = labels.to_vec();
        match targets_of(&mut y, Task::Classification, "t", |i| i + 1) {
            Ok(targets) => Ok((y, targets)),
            Err(WorkerError::Data { line, .. }) => Err(line),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn class_ids_and_the_signed_binary_labelling() {
        assert_eq!(
            classes(&[0.0, 2.0]),
            Ok((vec![0.0, 2.0], Targets::Classes(3)))
        );
        assert_eq!(
            classes(&[-1.0, 1.0, -1.0]),
            Ok((vec![0.0, 1.0, 0.0], Targets::Classes(2)))
        );
        assert_eq!(classes(&[1.0, -1.0, 0.0]), Err(3), "−1 with 0");
        assert_eq!(classes(&[0.0, 0.5]), Err(2), "fractional");
        assert_eq!(
            classes(&[0.0, MAX_CLASSES as f64]),
            Err(2),
            "too many classes"
        );
        let mut y = vec![0.5, -3.0];
        assert_eq!(
            targets_of(&mut y, Task::Regression, "t", |i| i + 1).unwrap(),
            Targets::Values
        );
        assert_eq!(y, [0.5, -3.0], "regression targets are kept as they are");
    }
}
