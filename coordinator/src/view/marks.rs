//! How a trial ended, as the plots mark it: a filled dot for a rate that trained its budget,
//! a hollow one for a rate a rung rule stopped early (behind its peers, not unstable), a cross
//! for a rate known to be unstable (it diverged, or a smaller rate of its round did).

use plotters::element::{Circle, Cross, DynElement, IntoDynElement};
use plotters::prelude::DrawingBackend;
use plotters::style::{Color, RGBColor};

use crate::prune::PruneReason;
use crate::report::TrialReport;
use crate::search::TrialStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Completed,
    Stopped,
    Unstable,
}

impl Ending {
    /// None for trials that hold no result: failed, or still queued or running when the sweep
    /// was interrupted.
    pub fn of(trial: &TrialReport) -> Option<Ending> {
        let reason = trial.prune_reason.and_then(PruneReason::parse);
        if reason.is_some_and(|r| r.shows_instability()) {
            return Some(Ending::Unstable);
        }
        match trial.status {
            TrialStatus::Completed => Some(Ending::Completed),
            TrialStatus::Pruned | TrialStatus::Cancelled => Some(Ending::Stopped),
            TrialStatus::Failed | TrialStatus::Queued | TrialStatus::Running => None,
        }
    }

    /// The legend's words for the mark.
    pub fn legend(self) -> &'static str {
        match self {
            Ending::Completed => "trained its budget",
            Ending::Stopped => "stopped at a rung (its last validation loss)",
            Ending::Unstable => "diverged (or above a diverged rate)",
        }
    }
}

/// The mark of `ending` at `at`, in `colour`; the legend draws the same.
pub fn marker<'a, DB: DrawingBackend, C: Clone + 'static>(
    ending: Ending,
    at: C,
    colour: RGBColor,
) -> DynElement<'a, DB, C> {
    match ending {
        Ending::Completed => Circle::new(at, 5, colour.filled()).into_dyn(),
        Ending::Stopped => Circle::new(at, 5, colour.stroke_width(2)).into_dyn(),
        Ending::Unstable => Cross::new(at, 6, colour.stroke_width(2)).into_dyn(),
    }
}
