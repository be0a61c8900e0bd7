//! Trace points and pruning specs the pruning tests share.

use lrsweep_proto::domain::TracePoint;
use lrsweep_proto::spec::{PruningSpec, RungRule};

pub(crate) fn point(step: u64, train_loss: f64) -> TracePoint {
    TracePoint {
        step,
        train_loss,
        lr: 0.1,
        val_loss: None,
    }
}

pub(crate) fn with_val(step: u64, val_loss: f64) -> TracePoint {
    TracePoint {
        val_loss: Some(val_loss),
        ..point(step, 1.0)
    }
}

/// ASHA with η = 3 and the first rung at 20%: rungs at steps 40 and 120 of 200.
pub(crate) fn asha() -> PruningSpec {
    PruningSpec {
        rule: RungRule::Asha,
        reduction_factor: 3.0,
        grace_fraction: 0.2,
        ..PruningSpec::default()
    }
}

pub(crate) fn pruning(f: impl FnOnce(&mut PruningSpec)) -> PruningSpec {
    let mut spec = asha();
    f(&mut spec);
    spec
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}
