//! Checks of values serde cannot make, shared by the trainer configuration's parts.

use std::path::Path;

/// A value the trainer cannot use: its dotted field (relative to the trainer section) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

pub(crate) type Checked = Result<(), InvalidField>;

pub(crate) fn invalid(field: &str, reason: &str) -> Checked {
    Err(InvalidField {
        field: field.to_string(),
        reason: reason.to_string(),
    })
}

/// `value` must be finite and at least `min`.
pub(crate) fn at_least(field: &str, value: f64, min: f64) -> Checked {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        invalid(field, &format!("must be finite and at least {min}"))
    }
}

/// `value` must lie in [0, 1): momentum and moment decay rates.
pub(crate) fn decay_rate(field: &str, value: f64) -> Checked {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        invalid(field, "must lie in [0, 1)")
    }
}

pub(crate) fn non_empty_path(field: &str, path: &Path) -> Checked {
    if path.as_os_str().is_empty() {
        invalid(field, "must name a file")
    } else {
        Ok(())
    }
}

pub(crate) fn default_true() -> bool {
    true
}
