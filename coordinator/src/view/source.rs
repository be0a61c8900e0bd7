//! A stored sweep as the views read it: the report that `report --db` rebuilds from the
//! database alone, the sweep's spec, and each trial's trace.

use std::path::Path;

use lrsweep_proto::domain::TracePoint;

use lrsweep_proto::spec::{StrategySpec, SweepSpec};

use crate::report::{Report, TrialReport};
use crate::storage::{load_sweep, stored_spec, Store, SweepRow};
use crate::sweep::SweepStatus;
use crate::CoordinatorError;

pub struct StoredSweep {
    store: Store,
    pub row: SweepRow,
    pub spec: SweepSpec,
    pub report: Report,
}

impl StoredSweep {
    /// The sweep `sweep_id` of the database at `db`, or its latest sweep. A sweep that did not
    /// complete reports `interrupted`.
    pub fn open(db: &Path, sweep_id: Option<&str>) -> Result<StoredSweep, CoordinatorError> {
        if !db.is_file() {
            return Err(CoordinatorError::Storage(format!(
                "no database at {}",
                db.display()
            )));
        }
        let store = Store::open(db)?;
        let row = match sweep_id {
            Some(id) => store.sweep(id)?,
            None => store.latest_sweep()?,
        }
        .ok_or_else(|| CoordinatorError::Storage(format!("no such sweep in {}", db.display())))?;
        let sweep = load_sweep(&store, &row)?;
        let mut report = Report::from_sweep(&row.sweep_id, &sweep);
        if row.status != SweepStatus::Completed {
            report.outcome = SweepStatus::Interrupted;
        }
        Ok(StoredSweep {
            spec: stored_spec(&row)?,
            store,
            row,
            report,
        })
    }

    /// The points of the trial's current attempt (the one its result comes from), in step
    /// order; none for a trial that never started.
    pub fn trace(&self, trial: &TrialReport) -> Result<Vec<TracePoint>, CoordinatorError> {
        if trial.attempts == 0 {
            return Ok(Vec::new());
        }
        self.store
            .points(&self.row.sweep_id, trial.id, trial.attempts)
    }

    /// A range test's ramped runs (its round 0) have no single rate: their score is not a
    /// point of the score-against-rate plot.
    pub fn is_ramp(&self, trial: &TrialReport) -> bool {
        self.is_range_test() && trial.round == 0
    }

    pub fn is_range_test(&self) -> bool {
        matches!(self.spec.search.strategy, StrategySpec::RangeTest(_))
    }
}
