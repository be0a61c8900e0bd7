//! One trial: its plan, status and attempts, and the trace monitor that judges it.

use lrsweep_proto::domain::{
    OptimizerSpec, ScheduleSpec, Subset, TracePoint, Trainer, TrainerConfig, TrialId,
};
use lrsweep_proto::spec::PruningSpec;

use super::WorkerId;
use crate::prune::{behind, Incumbent, PruneReason, RungBoard, TraceMonitor};
use crate::search::{CurvePoint, TrialResult, TrialStatus};

#[derive(Clone, Debug)]
pub struct Trial {
    pub id: TrialId,
    pub round: u32,
    pub lr: f64,
    pub subset: Subset,
    pub budget: u64,
    /// Overrides the trainer's schedule (the range test's ramp).
    pub schedule: Option<ScheduleSpec>,
    /// Overrides the trainer's optimizer (the hypergradient stage).
    pub optimizer: Option<OptimizerSpec>,
    pub status: TrialStatus,
    pub prune_reason: Option<PruneReason>,
    pub attempt: u32,
    /// Training steps the current attempt has reported.
    pub steps: u64,
    /// Steps run by all attempts, including ones lost with their worker.
    pub steps_run: u64,
    /// The worker of the latest attempt.
    pub worker: Option<WorkerId>,
    /// The name of that worker, for people (kept when a restarted coordinator forgets the id).
    pub worker_name: Option<String>,
    pub error: Option<String>,
    pub(super) monitor: TraceMonitor,
    /// (step, lr, smoothed loss) of the current attempt, for strategies that read the curve.
    pub(super) curve: Vec<CurvePoint>,
    /// (step, validation loss) of the current attempt.
    pub(super) validation: Vec<(u64, f64)>,
    /// The last smoothed training loss when the trial was stopped or failed: points that arrive
    /// after a stop order count as work but are not judged, so they must not move it.
    pub(super) settled_loss: Option<f64>,
}

impl Trial {
    /// Smoothed final validation loss for completed trials; last smoothed training loss otherwise.
    pub fn final_loss(&self) -> Option<f64> {
        match self.status {
            TrialStatus::Completed => self.monitor.final_score(),
            TrialStatus::Queued | TrialStatus::Running => self.monitor.smoothed(),
            TrialStatus::Pruned | TrialStatus::Cancelled | TrialStatus::Failed => self.settled_loss,
        }
    }

    pub fn is_terminal(&self) -> bool {
        !matches!(self.status, TrialStatus::Queued | TrialStatus::Running)
    }

    pub(super) fn result(&self) -> TrialResult {
        TrialResult {
            lr: self.lr,
            replicate: self.subset.replicate,
            status: self.status,
            // A rate cancelled because a smaller one diverged is as unstable: a round whose
            // smallest rate diverged at once has only such rates, and the search must see that
            // the whole round lies past the edge.
            diverged: self.prune_reason.is_some_and(|r| r.shows_instability()),
            score: match self.status {
                TrialStatus::Completed => self.monitor.final_score(),
                _ => None,
            },
            curve: self.curve.clone(),
            validation: self.validation.clone(),
        }
    }

    /// The trainer this trial runs: the spec's, with the round's schedule and optimizer (which
    /// only the built-in trainer has: the spec refuses strategies that set them for a command).
    pub fn trainer(&self, spec: &Trainer) -> Trainer {
        match spec {
            Trainer::BuiltIn(spec) => Trainer::BuiltIn(TrainerConfig {
                schedule: self
                    .schedule
                    .clone()
                    .unwrap_or_else(|| spec.schedule.clone()),
                optimizer: self
                    .optimizer
                    .clone()
                    .unwrap_or_else(|| spec.optimizer.clone()),
                ..spec.clone()
            }),
            Trainer::Command(_) => spec.clone(),
        }
    }

    /// (step, rate actually used) along the current attempt's trace: how an adaptive optimizer
    /// or a schedule moved the rate.
    pub fn lr_trajectory(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.curve.iter().map(|p| (p.step, p.lr))
    }

    /// Feeds points (in step order) to the trial's monitor, curve and, when given, the round's
    /// rung table and incumbent, up to the first verdict on this trial. Returns every verdict: on
    /// this trial, and on larger rates of the round its values condemned (the dominated rule).
    pub(super) fn judge(
        &mut self,
        points: &[TracePoint],
        mut rungs: Option<&mut RungBoard>,
        incumbent: Option<&Incumbent>,
    ) -> Vec<(TrialId, PruneReason)> {
        let mut verdicts = Vec::new();
        for p in points {
            verdicts.extend(self.observe(p, rungs.as_deref_mut(), incumbent));
            if verdicts.iter().any(|&(id, _)| id == self.id) {
                break;
            }
        }
        verdicts
    }

    /// One point into the monitor, the curve and the rung table. Rungs are judged on validation
    /// loss, what the search ranks by: a large rate may fit its training batches fast and
    /// generalise worse.
    pub(super) fn observe(
        &mut self,
        p: &TracePoint,
        rungs: Option<&mut RungBoard>,
        incumbent: Option<&Incumbent>,
    ) -> Vec<(TrialId, PruneReason)> {
        if let Some(reason) = self.monitor.observe(p) {
            return vec![(self.id, reason)];
        }
        if let Some(val_loss) = p.val_loss {
            self.validation.push((p.step, val_loss));
            // Judged at each point that measures one, so the verdict does not depend on how
            // the points were batched.
            if incumbent
                .is_some_and(|i| behind(&self.validation, self.budget, i, self.subset.replicate))
            {
                return vec![(self.id, PruneReason::BehindIncumbent)];
            }
        }
        if let Some(smoothed) = self.monitor.smoothed() {
            self.curve.push(CurvePoint {
                step: p.step,
                lr: p.lr,
                smoothed,
            });
        }
        match (rungs, p.val_loss) {
            (Some(rungs), Some(val_loss)) => {
                rungs.observe(self.id, self.lr, self.subset.replicate, p.step, val_loss)
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the current attempt's trace: the next attempt starts from scratch.
    pub(super) fn reset_trace(&mut self, pruning: &PruningSpec) {
        self.steps = 0;
        self.monitor = TraceMonitor::new(pruning);
        self.curve.clear();
        self.validation.clear();
    }
}

/// A trial as the durable store keeps it, with the points of its latest attempt.
#[derive(Clone, Debug)]
pub struct TrialRecord {
    pub id: TrialId,
    pub round: u32,
    pub lr: f64,
    pub subset: Subset,
    pub status: TrialStatus,
    pub prune_reason: Option<PruneReason>,
    pub attempt: u32,
    pub steps_run: u64,
    pub worker_name: Option<String>,
    pub error: Option<String>,
    /// `Trial::final_loss` as stored, for trials that ended without completing.
    pub settled_loss: Option<f64>,
    pub points: Vec<TracePoint>,
}
