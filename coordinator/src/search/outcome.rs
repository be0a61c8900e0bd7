//! What a round's trials came to, as the strategies read it: each trial's status, trace and
//! score, and each candidate rate's result over its replicates. A leaf: it depends on nothing
//! else of the coordinator, so the sweep, the store and every strategy can share it.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    Queued,
    Running,
    Completed,
    Pruned,
    Failed,
    Cancelled,
}

impl TrialStatus {
    pub const ALL: [TrialStatus; 6] = [
        TrialStatus::Queued,
        TrialStatus::Running,
        TrialStatus::Completed,
        TrialStatus::Pruned,
        TrialStatus::Failed,
        TrialStatus::Cancelled,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            TrialStatus::Queued => "queued",
            TrialStatus::Running => "running",
            TrialStatus::Completed => "completed",
            TrialStatus::Pruned => "pruned",
            TrialStatus::Failed => "failed",
            TrialStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TrialStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One point of a trial's trace as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    pub step: u64,
    /// The rate the step actually used.
    pub lr: f64,
    /// Smoothed training loss after this point.
    pub smoothed: f64,
}

/// How one trial of a round ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialResult {
    pub lr: f64,
    pub replicate: u32,
    pub status: TrialStatus,
    pub diverged: bool,
    /// Smoothed final validation loss, when the trial completed with one.
    pub score: Option<f64>,
    /// (step, lr actually used, smoothed training loss) for every point received, in step
    /// order — needed by the range test.
    pub curve: Vec<CurvePoint>,
    /// (step, validation loss) of every point that measured one, in step order: what a later
    /// round's candidates are held against (edge descent's incumbent).
    pub validation: Vec<(u64, f64)>,
}

impl TrialResult {
    pub fn outcome(&self) -> ReplicateOutcome {
        ReplicateOutcome {
            status: self.status,
            diverged: self.diverged,
            score: self.score,
            learning: self.learning(),
        }
    }

    /// What training did to the smoothed training loss, from the first point (the loss before
    /// any update) to the last. Rates far past the edge of a model whose loss cannot blow up
    /// (cross-entropy over dead units, a saturated network) stall instead of diverging.
    pub fn learning(&self) -> Learning {
        match (self.curve.first(), self.curve.last()) {
            (Some(first), Some(last)) if last.step > first.step => {
                if last.smoothed >= first.smoothed {
                    Learning::Stalled
                } else if last.smoothed <= (1.0 - LEARNED) * first.smoothed {
                    Learning::Learned
                } else {
                    Learning::Little
                }
            }
            _ => Learning::Little,
        }
    }
}

/// The share of its first training loss a trial must have shed to count as having learned:
/// a rate too small to move the model ends within its minibatches' noise of where it began,
/// and a few of those must not pass for learning.
const LEARNED: f64 = 0.1;

/// What a trial's training did to its training loss (`TrialResult::learning`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Learning {
    /// It fell by `LEARNED` of its first value or more.
    Learned,
    /// It fell by less, or there were not two points to compare.
    Little,
    /// It ended no lower than it began.
    Stalled,
}

/// How one replicate (one data subset) of a candidate rate ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicateOutcome {
    pub status: TrialStatus,
    pub diverged: bool,
    /// Smoothed final validation loss, when the trial finished with one.
    pub score: Option<f64>,
    /// What training did to its training loss (`TrialResult::learning`).
    pub learning: Learning,
}

/// One candidate rate's result in a round, over all its replicates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CandidateResult {
    pub lr: f64,
    pub diverged: bool,
    /// Mean validation score over the replicates; lower is better.
    pub score: Option<f64>,
    /// `Learned` or `Stalled` when every replicate did so, else `Little`.
    pub learning: Learning,
}

impl CandidateResult {
    /// Diverged if any replicate diverged (stability is a property of the rate, so one
    /// divergence condemns it). Scored only if every replicate completed with a finite score: a
    /// mean over a partial set would not be paired with the other candidates' means.
    pub fn from_replicates(lr: f64, outcomes: &[ReplicateOutcome]) -> CandidateResult {
        let diverged = outcomes.iter().any(|o| o.diverged);
        let scores: Option<Vec<f64>> = outcomes
            .iter()
            .map(|o| match (o.status, o.score) {
                (TrialStatus::Completed, Some(s)) if s.is_finite() => Some(s),
                _ => None,
            })
            .collect();
        let score = scores
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().sum::<f64>() / s.len() as f64);
        CandidateResult {
            lr,
            diverged,
            score,
            learning: match outcomes.first() {
                Some(first) if outcomes.iter().all(|o| o.learning == first.learning) => {
                    first.learning
                }
                _ => Learning::Little,
            },
        }
    }

    /// Trained to the end of its budget on every replicate without diverging.
    pub(crate) fn usable(&self) -> bool {
        !self.diverged && self.score.is_some()
    }
}

/// One candidate per distinct rate of `results` (trials in any order), ascending.
pub(crate) fn candidates(results: &[TrialResult]) -> Vec<CandidateResult> {
    let mut sorted: Vec<&TrialResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.lr.total_cmp(&b.lr));
    sorted
        .chunk_by(|a, b| a.lr == b.lr)
        .map(|group| {
            let outcomes: Vec<ReplicateOutcome> = group.iter().map(|t| t.outcome()).collect();
            CandidateResult::from_replicates(group[0].lr, &outcomes)
        })
        .collect()
}

/// Lowest-scoring usable candidate; ties go to the smaller rate (the safer one).
pub(crate) fn best_index(candidates: &[CandidateResult]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.usable())
        .min_by(|(_, a), (_, b)| a.score.unwrap().total_cmp(&b.score.unwrap()))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A completed trial whose smoothed training loss went through `losses`, one a step.
    fn run(losses: &[f64]) -> TrialResult {
        TrialResult {
            lr: 0.1,
            replicate: 0,
            status: TrialStatus::Completed,
            diverged: false,
            score: Some(1.0),
            curve: losses
                .iter()
                .enumerate()
                .map(|(k, &smoothed)| CurvePoint {
                    step: k as u64 + 1,
                    lr: 0.1,
                    smoothed,
                })
                .collect(),
            validation: Vec::new(),
        }
    }

    #[test]
    fn learning_compares_the_last_smoothed_loss_with_the_first() {
        assert_eq!(run(&[2.0, 1.5, 1.8]).learning(), Learning::Learned);
        assert_eq!(run(&[2.0, 1.8]).learning(), Learning::Learned);
        assert_eq!(run(&[2.0, 0.5, 1.9]).learning(), Learning::Little);
        assert_eq!(run(&[2.0, 1.0, 2.0]).learning(), Learning::Stalled);
        assert_eq!(run(&[2.0, 3.0]).learning(), Learning::Stalled);
        assert_eq!(run(&[2.0]).learning(), Learning::Little);
        assert_eq!(run(&[]).learning(), Learning::Little);

        let candidate = |runs: &[&[f64]]| {
            let outcomes: Vec<ReplicateOutcome> = runs.iter().map(|l| run(l).outcome()).collect();
            CandidateResult::from_replicates(0.1, &outcomes).learning
        };
        assert_eq!(candidate(&[&[2.0, 3.0], &[1.0, 1.0]]), Learning::Stalled);
        assert_eq!(candidate(&[&[2.0, 3.0], &[1.0, 0.5]]), Learning::Little);
        assert_eq!(candidate(&[&[2.0, 1.0], &[1.0, 0.5]]), Learning::Learned);
    }

    #[test]
    fn candidate_result_needs_every_replicate_to_score() {
        let done = |score| ReplicateOutcome {
            status: TrialStatus::Completed,
            diverged: false,
            score: Some(score),
            learning: Learning::Little,
        };
        let r = CandidateResult::from_replicates(0.1, &[done(1.0), done(2.0)]);
        assert_eq!((r.diverged, r.score), (false, Some(1.5)));

        let pruned = ReplicateOutcome {
            status: TrialStatus::Pruned,
            diverged: false,
            score: Some(0.5),
            learning: Learning::Little,
        };
        let r = CandidateResult::from_replicates(0.1, &[done(1.0), pruned]);
        assert_eq!((r.diverged, r.score), (false, None));

        let blew_up = ReplicateOutcome {
            status: TrialStatus::Pruned,
            diverged: true,
            score: None,
            learning: Learning::Little,
        };
        let r = CandidateResult::from_replicates(0.1, &[done(1.0), blew_up]);
        assert_eq!((r.diverged, r.score), (true, None));

        assert_eq!(CandidateResult::from_replicates(0.1, &[]).score, None);
        assert_eq!(
            CandidateResult::from_replicates(0.1, &[done(f64::NAN)]).score,
            None
        );
    }
}
