//! Conversions between generated wire messages and domain types. Anything arriving from the
//! network goes through `TryFrom`, which rejects missing or impossible fields with a reason.

use crate::domain::{StopKind, Subset, TracePoint, Trainer, TrialAssignment};
use crate::v1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl From<&TrialAssignment> for v1::AssignTrial {
    fn from(a: &TrialAssignment) -> Self {
        v1::AssignTrial {
            trial_id: a.trial_id,
            attempt: a.attempt,
            round: a.round,
            lr: a.lr,
            steps: a.steps,
            eval_every: a.eval_every,
            subset: Some(v1::Subset {
                fraction: a.subset.fraction,
                replicate: a.subset.replicate,
                replicates: a.subset.replicates,
            }),
            // Serialising plain serde data types cannot fail.
            trainer_json: serde_json::to_string(&a.trainer).unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::AssignTrial> for TrialAssignment {
    type Error = ConvertError;

    fn try_from(m: v1::AssignTrial) -> Result<Self, Self::Error> {
        if !(m.lr.is_finite() && m.lr > 0.0) {
            return Err(invalid(
                "lr",
                format!("{} is not a positive finite rate", m.lr),
            ));
        }
        if m.steps == 0 {
            return Err(invalid("steps", "must be at least 1"));
        }
        if m.eval_every == 0 {
            return Err(invalid("eval_every", "must be at least 1"));
        }
        let s = m.subset.ok_or(ConvertError::Missing("subset"))?;
        if !(s.fraction > 0.0 && s.fraction <= 1.0) {
            return Err(invalid("subset.fraction", "must lie in (0, 1]"));
        }
        if s.replicates == 0 || s.replicate >= s.replicates {
            return Err(invalid(
                "subset.replicate",
                format!(
                    "replicate {} of {} does not exist",
                    s.replicate, s.replicates
                ),
            ));
        }
        let trainer: Trainer = serde_json::from_str(&m.trainer_json)
            .map_err(|e| invalid("trainer_json", e.to_string()))?;
        trainer
            .validate()
            .map_err(|e| invalid("trainer_json", format!("{}: {}", e.field, e.reason)))?;
        Ok(TrialAssignment {
            trial_id: m.trial_id,
            attempt: m.attempt,
            round: m.round,
            lr: m.lr,
            steps: m.steps,
            eval_every: m.eval_every,
            subset: Subset {
                fraction: s.fraction,
                replicate: s.replicate,
                replicates: s.replicates,
            },
            trainer,
        })
    }
}

impl From<TracePoint> for v1::TracePoint {
    fn from(p: TracePoint) -> Self {
        v1::TracePoint {
            step: p.step,
            train_loss: p.train_loss,
            lr: p.lr,
            val_loss: p.val_loss,
        }
    }
}

impl TryFrom<v1::TracePoint> for TracePoint {
    type Error = ConvertError;

    /// Losses and the rate are data, whatever their value: a diverging trial's loss is NaN, and
    /// a hypergradient optimizer's adapted rate may turn negative or blow up. Steps count from 1.
    fn try_from(p: v1::TracePoint) -> Result<Self, Self::Error> {
        if p.step == 0 {
            return Err(invalid("points.step", "steps count from 1"));
        }
        Ok(TracePoint {
            step: p.step,
            train_loss: p.train_loss,
            lr: p.lr,
            val_loss: p.val_loss,
        })
    }
}

impl From<StopKind> for v1::StopKind {
    fn from(k: StopKind) -> Self {
        match k {
            StopKind::Prune => v1::StopKind::Prune,
            StopKind::Cancel => v1::StopKind::Cancel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Activation, CommandSpec, ModelSpec, TrainerConfig};

    fn assignment() -> TrialAssignment {
        TrialAssignment {
            trial_id: 7,
            attempt: 1,
            round: 2,
            lr: 0.05,
            steps: 200,
            eval_every: 20,
            subset: Subset {
                fraction: 0.5,
                replicate: 1,
                replicates: 2,
            },
            trainer: TrainerConfig {
                model: ModelSpec::Mlp {
                    hidden: vec![16, 8],
                    activation: Activation::Tanh,
                },
                ..TrainerConfig::default()
            }
            .into(),
        }
    }

    #[test]
    fn assignment_round_trips() {
        let a = assignment();
        let wire = v1::AssignTrial::from(&a);
        assert_eq!(TrialAssignment::try_from(wire).unwrap(), a);
        let command = TrialAssignment {
            trainer: CommandSpec::new(vec!["python3".into(), "train.py".into()]).into(),
            ..assignment()
        };
        let wire = v1::AssignTrial::from(&command);
        assert!(wire.trainer_json.contains("\"command\""));
        assert_eq!(TrialAssignment::try_from(wire).unwrap(), command);
    }

    #[test]
    fn assignment_rejects_bad_fields() {
        let mut wire = v1::AssignTrial::from(&assignment());
        wire.lr = f64::NAN;
        assert!(matches!(
            TrialAssignment::try_from(wire),
            Err(ConvertError::Invalid { field: "lr", .. })
        ));
        let mut wire = v1::AssignTrial::from(&assignment());
        wire.subset.as_mut().unwrap().replicate = 2;
        assert!(TrialAssignment::try_from(wire).is_err());
        let mut wire = v1::AssignTrial::from(&assignment());
        wire.trainer_json = "{\"batch_size\": 0}".into();
        assert!(TrialAssignment::try_from(wire).is_err());
        let mut wire = v1::AssignTrial::from(&assignment());
        wire.trainer_json = "{\"command\": [\"x\", \"{rate}\"]}".into();
        let err = TrialAssignment::try_from(wire).unwrap_err().to_string();
        assert!(err.contains("command[1]"), "{err}");
        let mut wire = v1::AssignTrial::from(&assignment());
        wire.subset = None;
        assert_eq!(
            TrialAssignment::try_from(wire),
            Err(ConvertError::Missing("subset"))
        );
    }

    #[test]
    fn trace_points_keep_non_finite_losses() {
        let p = v1::TracePoint {
            step: 3,
            train_loss: f64::NAN,
            lr: 1.0,
            val_loss: Some(f64::INFINITY),
        };
        let d = TracePoint::try_from(p).unwrap();
        assert!(d.train_loss.is_nan());
        assert_eq!(d.val_loss, Some(f64::INFINITY));
        let zero = v1::TracePoint { step: 0, ..p };
        assert!(TracePoint::try_from(zero).is_err());
    }
}
